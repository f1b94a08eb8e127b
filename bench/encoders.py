"""The x264 presets measured as the product encodes: time, file size and quality, per clip and size (issue 19).

Each shared clip is looped and fitted into each size (``heygem.bench.build_video``, the benchmark's own inputs),
decoded once into memory, and then written by the product's own writer (``heygem.media.encode.VideoWriter``:
BGR frames piped into ffmpeg, libx264 at the product's CRF, yuv420p, +faststart) once per preset. Quality is
ffmpeg's SSIM and PSNR (over all planes, as ffmpeg prints them) of the result against the frames it was given,
and SSIM against the ``medium`` result. One markdown table.

    .venv/bin/python bench/encoders.py                                  # 3 clips x 720p, 1080p x 6 presets
    .venv/bin/python bench/encoders.py --seconds 4 --sizes 640x360 --presets ultrafast medium
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heygem.bench import DEFAULT_INPUTS, build_video, default_shared, machine_facts  # noqa: E402
from heygem.media.encode import VideoWriter  # noqa: E402
from heygem.media.ffmpeg import ffmpeg_exe  # noqa: E402
from heygem.media.probe import probe  # noqa: E402
from heygem.media.video import iter_frames  # noqa: E402
from heygem.settings import EncodeOptions  # noqa: E402

PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")
CLIPS = ("videoretalking/2.mp4", "latentsync/demo1_video.mp4", "liveportrait/d13.mp4")
SIZES = ("1280x720", "1920x1080")
FPS = 25


def compare(result: Path, reference: Path, measure: str) -> float:
    """ffmpeg's ``ssim`` (the "All" figure) or ``psnr`` (the "average" figure) of ``result`` against
    ``reference``, frame for frame."""
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(result), "-i", str(reference),
            "-lavfi", f"[0:v][1:v]{measure}", "-f", "null", "-"]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stderr
    pattern = r"All:([0-9.]+)" if measure == "ssim" else r"average:([0-9.]+|inf)"
    found = re.findall(pattern, text)
    if not found:
        raise RuntimeError(f"no {measure} figure in ffmpeg's output: {text[-400:]}")
    return float(found[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), help="clips under shared/media")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), metavar="WxH")
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip (looped if shorter)")
    parser.add_argument("--inputs", type=Path, default=DEFAULT_INPUTS)
    args = parser.parse_args(argv)
    crf = EncodeOptions().crf
    facts = machine_facts(torch.device("cpu"))  # the encoder runs on the CPU
    print(f"Machine: {facts['cpu']}, {facts['cpus_usable']} CPUs; load average at start {facts['load_average']}; "
          f"{facts['ffmpeg']}; commit {facts['commit']}; CRF {crf}; {args.seconds:g} s per clip at {FPS} fps.\n")
    print("| clip | size | preset | encode s | fps | MB | SSIM vs input | PSNR vs input dB | SSIM vs medium |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="heygem-encoders-") as tmp:
        work = Path(tmp)
        for clip in args.clips:
            for size in args.sizes:
                width, height = (int(v) for v in size.split("x"))
                source = build_video(args.shared / "media" / clip, args.seconds, width, height, FPS, args.inputs)
                frames = list(iter_frames(probe(source), Fraction(FPS)))
                duration = len(frames) / FPS
                outputs: dict[str, Path] = {}
                rows = []
                for preset in args.presets:
                    out = work / f"{preset}.mp4"
                    started = time.perf_counter()
                    with VideoWriter(out, width, height, Fraction(FPS), None, duration,
                                     EncodeOptions(preset=preset)) as writer:
                        for frame in frames:
                            writer.write(frame)
                    seconds = time.perf_counter() - started
                    outputs[preset] = out
                    rows.append((preset, seconds, out.stat().st_size / 1e6, compare(out, source, "ssim"),
                                 compare(out, source, "psnr")))
                for preset, seconds, megabytes, ssim, psnr in rows:
                    versus = (compare(outputs[preset], outputs["medium"], "ssim")
                              if "medium" in outputs and preset != "medium" else None)
                    print(f"| {clip} | {size} | {preset} | {seconds:.1f} | {len(frames) / seconds:.0f} | "
                          f"{megabytes:.2f} | {ssim:.4f} | {psnr:.2f} | {'-' if versus is None else f'{versus:.4f}'} |",
                          flush=True)
                for out in outputs.values():
                    out.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
