"""Peak memory against video length: does RSS stay flat as the video gets longer?

Builds talking-head inputs of each length at one resolution by looping a real clip from ../shared/media
(and its speech; ``heygem.bench.build_inputs``, cached under bench/out/inputs/), runs one generation per
length in a fresh process, and reports that process's peak RSS (and, sampled, its ffmpeg processes' and the
sum). Not a test: run it by hand and keep its output. ``python -m heygem.bench`` times every stage.

    .venv/bin/python bench/memory.py                       # 10 s and 60 s at 1280x720, wav2lip engine
    .venv/bin/python bench/memory.py --seconds 10 60 600 --size 1920x1080

Without a real checkpoint it uses the deterministic test weights of FACTS.md: same network, same cost.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heygem.bench import build_inputs, default_shared, parse_size  # noqa: E402 - needs the path above

SHARED = default_shared()

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from heygem.bench import RssSampler

# The ffmpeg processes are sampled from /proc (heygem.bench.RssSampler): ru_maxrss of children would count the
# parent's pages copied by fork() before exec.
sampler = RssSampler().start()
from pathlib import Path
from heygem import Settings, generate
from heygem.settings import DetectionOptions, EngineOptions
start = time.perf_counter()
detection = DetectionOptions()
if hasattr(detection, "cache_dir"):  # faces are found afresh, and nothing is left in outputs/
    detection.cache_dir = Path(sys.argv[5]) / "faces"
settings = Settings(detection=detection, engine=EngineOptions(engine="wav2lip", checkpoint=sys.argv[4]), out_dir=Path(sys.argv[5]))
result = generate(sys.argv[2], sys.argv[3], settings=settings)
peaks = sampler.stop()
print(json.dumps({
    "wall_s": round(time.perf_counter() - start, 2),
    "frames": result.frames,
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "peak_ffmpeg_rss_mb": peaks["peak_ffmpeg_rss_mb"],
    "peak_total_rss_mb": peaks["peak_total_rss_mb"],
    "timings": result.timings,
}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--checkpoint", type=Path, help="a Wav2Lip checkpoint (default: deterministic test weights)")
    parser.add_argument("--json", type=Path, default=REPO / "bench/out/memory.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        checkpoint = args.checkpoint
        if checkpoint is None:
            from models.wav2lip import save_test_checkpoint

            checkpoint = save_test_checkpoint(SHARED / "reference/wav2lip/generator_manifest.json", work / "test.pth")
        rows = []
        for seconds in args.seconds:
            # Cached under bench/out/inputs/, shared with python -m heygem.bench.
            video, audio = build_inputs(seconds, parse_size(args.size), SHARED / "media")
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(audio), str(video), str(checkpoint), str(work)],
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{seconds:g} s {args.size}: the run failed:\n{done.stderr[-4000:]}", file=sys.stderr)
                return 1
            row = {"seconds": seconds, "size": args.size, **json.loads(done.stdout.strip().splitlines()[-1])}
            rows.append(row)
            print(f"{seconds:>6g} s {args.size}: peak RSS {row['peak_rss_mb']:7.1f} MB (ffmpeg processes {row['peak_ffmpeg_rss_mb']:.1f} MB, together {row['peak_total_rss_mb']:.1f} MB), "
                  f"{row['frames']} frames in {row['wall_s']:.1f} s (process {time.perf_counter() - started:.1f} s)", flush=True)
    base = rows[0]["peak_rss_mb"]
    for row in rows[1:]:
        print(f"{row['seconds']:g} s vs {rows[0]['seconds']:g} s: peak RSS {100 * (row['peak_rss_mb'] / base - 1):+.1f}%")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
