"""Another voice over each shared presenter: does the rendered mouth still follow the speech?

Each shared presenter video (its whole footage) is given a speech that is not its own, English
(sadtalker/RD_Radio31_000.wav) and Mandarin (sadtalker/bus_chinese.wav), once per mouth drive, through
``heygem.generate`` as a user runs it; the loudness proxy (``heygem.eval.measure_sync``, lag 0: the
output's face-mesh opening against the speech's loudness) is printed as one markdown row per presenter and
speech. There is no true mouth for another voice, so this is the measure the issue asks for beside the
split-time one (bench/RESULTS.md, "Another voice"). Beside it: the share of the speech's m/b/p frames where the
lips are closed, and the jaw line (in hundredths of the eye distance; bench/RESULTS.md, "Jaw lines"): for the
footage drive, how far it moves where the chosen frames jump from one run to another (their studied jaw lines,
``heygem.selection.jaw_outline``: median and 90th percentile over the joins) and how far each chosen frame's
lies from that of the picture it is drawn on (the head's turn: median and 90th percentile over the frames);
for every drive, the output's frame-to-frame jaw steps as the face mesh reads them (``heygem.eval.jaw_steps``,
95th percentile) beside the presenter's own video's over as many frames; and how the output's mouth width (the
face mesh's corner width) follows the speech's lip shape (``heygem.speech.phones.mouth_shapes`` spread: rounded
on "oo", spread on "ee"), Pearson r at lag 0.

    .venv/bin/python bench/proxy_voices.py                    # 6 presenters x 2 speeches x phones, footage
    .venv/bin/python bench/proxy_voices.py --drives phones --presenters long/french.mp4
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

import numpy as np  # noqa: E402

from heygem.bench import default_shared  # noqa: E402
from heygem.engines import builtin  # noqa: E402
from heygem.eval import jaw_steps, measure_sync, mouth_measures  # noqa: E402
from heygem.media.audio import load_audio  # noqa: E402
from heygem.pipeline import generate  # noqa: E402
from heygem.settings import MOUTH_DRIVES, DetectionOptions, EncodeOptions, EngineOptions, Settings  # noqa: E402
from heygem.selection import jaw_outline  # noqa: E402
from heygem.speech.frames import lip_closure, speech_features  # noqa: E402
from heygem.speech.phones import SAMPLE_RATE, mouth_shapes, recognise_phones  # noqa: E402

PRESENTERS = ("videoretalking/1.mp4", "videoretalking/2.mp4", "sadtalker/WDA_KatieHill_000.mp4",
              "latentsync/demo1_video.mp4", "long/french.mp4", "long/Chantel-Home-Intro.mp4")
SPEECHES = {"English": "sadtalker/RD_Radio31_000.wav", "Mandarin": "sadtalker/bus_chinese.wav"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--presenters", nargs="+", default=list(PRESENTERS))
    parser.add_argument("--drives", nargs="+", default=["phones", "footage"], choices=MOUTH_DRIVES)
    args = parser.parse_args(argv)
    media = args.shared / "media"
    print("| presenter | speech | " + " | ".join(f"{drive}: proxy r, m/b/p closed, jaw at joins, from the picture's, "
                                                f"jaw steps, width r with the lip shape (made as)"
                                                for drive in args.drives) + " | own video's jaw steps |")
    chosen: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    choose = builtin._choose_from_footage

    def recording(job, index):  # the engine's own choice, the studied jaw lines and the pictures it is drawn on
        frames, drawn = choose(job, index)
        shown = np.clip(np.searchsorted(job.footage.frames, job.shown), 0, len(job.footage.frames) - 1)
        chosen.append((np.asarray(frames), jaw_outline(job.footage.points.astype(np.float32)), shown))
        return frames, drawn

    builtin._choose_from_footage = recording
    print("| --- | --- | " + " | ".join("---" for _ in args.drives) + " | --- |")
    with tempfile.TemporaryDirectory(prefix="heygem-proxy-") as work:
        out = Path(work)
        speeches = {language: np.asarray(load_audio(media / speech, SAMPLE_RATE), np.float32)
                    for language, speech in SPEECHES.items()}
        phones = {language: recognise_phones(samples) for language, samples in speeches.items()}
        for presenter in args.presenters:
            closed = float(np.nanpercentile(mouth_measures(media / presenter)[0], 30))
            for language, speech in SPEECHES.items():
                cells = []
                for drive in args.drives:
                    settings = Settings(engine=EngineOptions(engine="builtin", mouth_drive=drive),
                                        encode=EncodeOptions(preset="ultrafast"),
                                        detection=DetectionOptions(cache_dir=out / "cache"), out_dir=out)
                    result = generate(media / speech, media / presenter, out / f"{language}_{drive}.mp4", settings)
                    sync = measure_sync(result.output, media / speech, max_lag=0)
                    features = speech_features(speeches[language], sync.fps, sync.frames, phones=phones[language])
                    bilabial = (lip_closure(features) > 0.5) & np.isfinite(sync.opening)
                    shut = float((sync.opening[bilabial] <= closed).mean()) if bilabial.any() else float("nan")
                    about = result.engine_info
                    made = about.mode + ("/" + ",".join(about.fallbacks) if about.fallbacks else "")
                    steps = 100 * np.nanpercentile(jaw_steps(result.output), 95)
                    width = mouth_measures(result.output)[1]
                    spread = mouth_shapes(phones[language], speeches[language], sync.fps, len(width)).spread
                    drawn = np.isfinite(width)
                    shaped = float(np.corrcoef(width[drawn], spread[drawn])[0, 1])
                    joins = pose = "-"
                    if about.mode == "footage":
                        frames, jaw, shown = chosen[-1]
                        moved = 100 * np.sqrt(((jaw[frames[1:]] - jaw[frames[:-1]]) ** 2).sum(2).mean(1))
                        moved = moved[np.diff(frames) != 1]
                        joins = f"{np.median(moved):.1f} / {np.percentile(moved, 90):.1f}" if len(moved) else "none"
                        apart = 100 * np.sqrt(((jaw[frames] - jaw[shown]) ** 2).sum(2).mean(1))
                        pose = f"{np.nanmedian(apart):.1f} / {np.nanpercentile(apart, 90):.1f}"
                    cells.append(f"{sync.peak_r:.2f}, {shut:.2f} of {int(bilabial.sum())}, {joins}, {pose}, {steps:.1f}, "
                                 f"{shaped:.2f} ({made})")
                own = 100 * np.nanpercentile(jaw_steps(media / presenter, sync.frames), 95)
                print(f"| {presenter} | {language} | " + " | ".join(cells) + f" | {own:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
