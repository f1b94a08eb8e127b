"""Today's built-in engine, rendered, with other voices and Mandarin over each shared presenter: the loudness
proxy (``heygem.eval.measure_sync`` at lag 0: the rendered mouth's opening against the speech's loudness), the
figure bench/selection.py's chosen footage mouths are set beside. Each presenter clip (scaled to at most 960 px,
its own soundtrack ignored) gets each speech shorter than ``--max-speech`` seconds that is not its own, once per
mouth drive. Results are cached per (presenter, speech, drive) in bench/out/selection_today.json.

    nice -n 10 .venv/bin/python bench/selection_today.py
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heygem.bench import default_shared  # noqa: E402
from heygem.eval import cut_argv, measure_sync, scaled_size  # noqa: E402
from heygem.media.ffmpeg import ffmpeg_exe, run_ffmpeg  # noqa: E402
from heygem.media.probe import probe  # noqa: E402
from heygem.pipeline import generate  # noqa: E402
from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings  # noqa: E402

PRESENTERS = ("videoretalking/1.mp4", "videoretalking/2.mp4", "sadtalker/WDA_KatieHill_000.mp4",
              "latentsync/demo1_video.mp4", "long/french.mp4", "long/Chantel-Home-Intro.mp4")
SPEECHES = ("videoretalking/1.mp4", "videoretalking/2.mp4", "sadtalker/WDA_KatieHill_000.mp4",
            "latentsync/demo1_video.mp4", "sadtalker/bus_chinese.wav", "speechrecognition/chinese.flac")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--drives", nargs="+", default=["phones", "loudness"])
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/selection_today.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    media = args.shared / "media"
    done = json.loads(args.out.read_text()) if args.out.is_file() else {}
    with tempfile.TemporaryDirectory(prefix="heygem-selection-today-") as tmp:
        for presenter in PRESENTERS:
            info = probe(media / presenter)
            small = Path(tmp) / (presenter.replace("/", "_"))
            for speech in SPEECHES:
                if speech == presenter:
                    continue
                for drive in args.drives:
                    key = f"{presenter} | {speech} | {drive}"
                    if key in done:
                        continue
                    if not small.is_file():
                        run_ffmpeg(cut_argv(ffmpeg_exe(), info.path, small, fps=info.fps, start_frame=0,
                                            end_frame=info.frame_count, size=scaled_size(info.width, info.height, 960),
                                            preset="veryfast"), subject=info.path)
                    settings = Settings(detection=DetectionOptions(cache_dir=None),
                                        engine=EngineOptions(engine="builtin", mouth_drive=drive),
                                        encode=EncodeOptions(preset="veryfast"), out_dir=Path(tmp))
                    t0 = time.perf_counter()
                    result = generate(media / speech, small, Path(tmp) / "out.mp4", settings)
                    report = measure_sync(result.output, media / speech, max_lag=0)
                    done[key] = {"proxy": report.r_by_lag[0], "seconds": round(time.perf_counter() - t0, 1)}
                    print(key, done[key], file=sys.stderr, flush=True)
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    args.out.write_text(json.dumps(done, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
