"""Footage recorded with its sound out of step with its picture: do the chosen mouths keep time with the new speech?

Each clip (a real talking head with its own speech) is cut in two as bench/articulation.py cuts it. The first
half is the presenter's footage three ways: as filmed, with its own sound moved ``--shift`` seconds earlier
(each sound before the mouth that makes it, as a camera and a microphone joined late leave it), and moved as far
later. The second half's speech, in step with the real second half, is the new speech each time; the built-in
engine (``--mouth-drive footage``) makes the video, and its mouth is compared with the real second half's
(``heygem.eval.compare_articulation``: opening and width r at lag 0, and the lag within +-8 frames where the
opening follows best; positive: the made mouth late). Footage that taught the choice its fault gives mouths
late (or early) to the new speech and a lower r at lag 0; ``sound lag`` is what the footage study found
(``heygem.footage.sound_lag``: frames the footage's mouth comes after its sounds).

    .venv/bin/python bench/out_of_step.py                     # the two long clips, 0.2 s both ways (4 min)
    .venv/bin/python bench/out_of_step.py --clips long/french.mp4 --shift 0.3

Not a test: run it by hand and keep its output (bench/RESULTS.md, "Footage out of sync").
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heygem.bench import default_shared  # noqa: E402 - after the environment and the path above
from heygem.eval import compare_articulation, split_clip  # noqa: E402
from heygem.footage import study_footage  # noqa: E402
from heygem.media.ffmpeg import base_argv, ffmpeg_exe, file_url, run_ffmpeg  # noqa: E402
from heygem.media.probe import probe  # noqa: E402
from heygem.pipeline import generate  # noqa: E402
from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings  # noqa: E402

CLIPS = ("long/french.mp4", "long/Chantel-Home-Intro.mp4")
MAX_LAG = 8


def shifted_argv(footage: Path, out: Path, shift: float) -> list[str]:
    """ffmpeg argv: ``footage``'s picture as it is, its own sound ``shift`` seconds earlier (negative: later)."""
    sound = ["-ss", f"{shift:.3f}", "-i", file_url(footage)] if shift > 0 else ["-i", file_url(footage)]
    delay = [] if shift > 0 else ["-af", f"adelay={round(-shift * 1000)}:all=1"]
    return [*base_argv(ffmpeg_exe()), "-y", "-i", file_url(footage), *sound, "-map", "0:v:0", "-map", "1:a:0",
            "-c:v", "copy", *delay, "-c:a", "aac", "-shortest", "-f", "mp4", str(out)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared(), help="the shared/ folder")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), help="clips under shared/media")
    parser.add_argument("--shift", type=float, default=0.2, help="seconds the footage's sound is moved each way")
    parser.add_argument("--keep", type=Path, help="keep the halves and the videos made in this folder")
    args = parser.parse_args(argv)
    settings = Settings(detection=DetectionOptions(cache_dir=None),
                        engine=EngineOptions(engine="builtin", mouth_drive="footage"),
                        encode=EncodeOptions(preset="veryfast"))
    print("| clip | footage's sound | sound lag found (frames) | opening r, lag 0 | best (lag) | width r, lag 0 | engine |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="heygem-out-of-step-") as tmp:
        root = args.keep or Path(tmp)
        for clip in args.clips:
            folder = root / clip.replace("/", "_").rsplit(".", 1)[0]
            split = split_clip(args.shared / "media" / clip, folder, max_side=960, footage_speech=True)
            for shift in (0.0, args.shift, -args.shift):
                footage = split.first_half
                if shift:
                    footage = folder / f"first_half_{shift:+.2f}.mp4"
                    run_ffmpeg(shifted_argv(split.first_half, footage, shift), subject=split.first_half)
                study = study_footage(probe(footage), settings.detection)
                result = generate(split.speech, footage, folder / f"made_{shift:+.2f}.mp4", settings)
                report = compare_articulation(result.output, split.second_half, max_lag=MAX_LAG)
                sound = ("as filmed" if not shift else
                         f"{abs(shift):.2f} s {'early' if shift > 0 else 'late'}")
                mode = result.engine_info.mode if result.engine_info else "?"
                notes = ", ".join(result.engine_info.fallbacks) if result.engine_info else ""
                print(f"| {clip} | {sound} | {study.sound_lag if study else 'n/a'} | {report.opening_r:.2f} | "
                      f"{report.opening_best_r:.2f} ({report.opening_best_lag:+d}) | {report.width_r:.2f} | "
                      f"{mode}{' (' + notes + ')' if notes else ''} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
