"""What the study of a presenter's whole footage costs (heygem.footage), against the footage's own length.

Issue 21 asks for at most half the footage's duration on a 2-core machine (a 60 s presenter studied in 30 s
or less). Each clip is studied once in a fresh process (the face mesh and detector loads counted apart), and
the study's size on disk is reported. Not a test: run it by hand and keep its output.

    .venv/bin/python bench/footage.py                          # the long shared clips, and 60 s at 1280x720
    .venv/bin/python bench/footage.py --clips long/french.mp4 --size 1920x1080
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heygem.bench import DEFAULT_INPUTS, build_video, default_shared, parse_size  # noqa: E402 - needs the path above

CHILD = r"""
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
started = time.perf_counter()
from heygem.faces import get_detector
from heygem.faces.landmarks import get_face_mesh
from heygem.footage import study_footage
from heygem.media.probe import probe
from heygem.settings import DetectionOptions
det = DetectionOptions()
get_face_mesh(); get_detector(det.detector, det.detect_size, det.detector_weights)
loaded = time.perf_counter()
info = probe(sys.argv[2])
with tempfile.TemporaryDirectory() as folder:
    study = study_footage(info, det, cache_dir=Path(folder))
    done = time.perf_counter()
    size = sum(p.stat().st_size for p in Path(folder).iterdir())
print(json.dumps({"seconds": info.duration, "size": f"{info.width}x{info.height}", "codec": info.video_codec,
                  "frames": len(study.frames), "with_mouth": int(study.found.sum()), "load_s": loaded - started,
                  "study_s": done - loaded, "mb": size / 1e6}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", default=["long/french.mp4", "long/Chantel-Home-Intro.mp4",
                                                        "latentsync/demo1_video.mp4"])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the built clip (0: none)")
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="size of the built clip")
    args = parser.parse_args(argv)
    media = default_shared() / "media"
    clips = [media / clip for clip in args.clips]
    if args.seconds:
        DEFAULT_INPUTS.mkdir(parents=True, exist_ok=True)
        clips.append(build_video(media / "long/french.mp4", args.seconds, *args.size, 25, DEFAULT_INPUTS))
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores")
    print("| clip | length | picture | frames (with a mouth) | study | study / length | on disk |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for clip in clips:
        out = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(clip)], capture_output=True, text=True,
                             check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"| {clip.name} | {row['seconds']:.1f} s | {row['size']} {row['codec']} | {row['frames']} "
              f"({row['with_mouth']}) | {row['study_s']:.1f} s | {row['study_s'] / row['seconds']:.2f} | "
              f"{row['mb']:.1f} MB |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
