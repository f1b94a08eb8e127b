"""Peak memory against video length: does RSS stay flat as the video gets longer?

Builds talking-head inputs of each length at one resolution by looping a real clip from ../shared/media
(and its speech), runs one generation per length in a fresh process, and reports that process's peak RSS
(and, sampled, its ffmpeg processes' and the sum). Not a test: run it by hand and keep its output.

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
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

CHILD = r"""
import glob, json, resource, sys, threading, time
sys.path.insert(0, sys.argv[1])

# ru_maxrss of children counts the parent's pages copied by fork() before exec, so the ffmpeg processes
# are measured by sampling /proc instead: the largest sum of this process and its children seen.
def rss_mb(pid):
    try:
        return int(open(f"/proc/{pid}/status").read().split("VmRSS:")[1].split()[0]) / 1024
    except (OSError, IndexError):
        return 0.0
peak = {"children": 0.0, "total": 0.0}
def sample():
    while True:
        kids = [int(p) for f in glob.glob("/proc/self/task/*/children") for p in open(f).read().split()]
        children = sum(rss_mb(pid) for pid in kids)
        peak["children"] = max(peak["children"], children)
        peak["total"] = max(peak["total"], children + rss_mb("self"))
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
from heygem import Settings, generate
from heygem.settings import EngineOptions
start = time.perf_counter()
settings = Settings(engine=EngineOptions(engine="wav2lip", checkpoint=sys.argv[4]), out_dir=__import__("pathlib").Path(sys.argv[5]))
result = generate(sys.argv[2], sys.argv[3], settings=settings)
print(json.dumps({
    "wall_s": round(time.perf_counter() - start, 2),
    "frames": result.frames,
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    "peak_ffmpeg_rss_mb": round(peak["children"], 1),
    "peak_total_rss_mb": round(peak["total"], 1),
    "timings": result.timings,
}))
"""


def build_inputs(seconds: float, size: str, work: Path) -> tuple[Path, Path]:
    from heygem.media.ffmpeg import ffmpeg_exe

    width, height = size.split("x")
    video = work / f"talk_{seconds:g}s_{size}.mp4"
    audio = work / f"speech_{seconds:g}s.wav"
    scale = f"scale=-2:{height},pad={width}:{height}:(ow-iw)/2:0,setsar=1"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(SHARED / "media/videoretalking/2.mp4"),
                    "-t", str(seconds), "-vf", scale, "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(video)], check=True)
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-stream_loop", "-1", "-i", str(SHARED / "media/sadtalker/RD_Radio31_000.wav"),
                    "-t", str(seconds), str(audio)], check=True)
    return video, audio


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
            video, audio = build_inputs(seconds, args.size, work)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(audio), str(video), str(checkpoint), str(work)],
                                  check=True, capture_output=True, text=True)
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
