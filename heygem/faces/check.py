"""A quick look for a face in an upload, before any job is queued.

A few frames spread over the part of the video a job would use go through the same detector and the same
orientation check as the pipeline (a face turned sideways counts as found), so a video or photo without a
face is named when it is uploaded, not when its job's turn comes minutes into a batch. It runs while the
page waits. Measured on 2 cores shared with other work: 0.4 s for 2 s at 360p, 0.8 s for 12 s at 720x1280, 1.1 s
for 10 s at 1080x1920 (HEVC), 0.1 s for a photo, 0.4-0.6 s for 50 s and 5 min videos (sampled by seeking);
about 1.1-1.5 s when no face is upright, since each turn is then tried on every frame.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from heygem.errors import HeyGemError
from heygem.faces import get_detector
from heygem.faces.orientation import find_orientation
from heygem.media.ffmpeg import base_argv, ffmpeg_exe, file_url, format_fps, reading_output
from heygem.media.probe import MediaInfo, probe
from heygem.media.video import sample_frames
from heygem.settings import DetectionOptions

log = logging.getLogger(__name__)

__all__ = ["CHECK_SAMPLES", "FaceCheck", "check_face", "detector_size", "seek_frame_argv", "spread_frames_argv"]

# Frames looked at in a video: with no face, the orientation check tries each of the 4 turns on each.
CHECK_SAMPLES = 6
# Up to this many seconds are decoded in one pass (fast decoding: the loop filter and the frames no other
# frame refers to are skipped; a face is still found in what is left). Past it, each sample is decoded on
# its own from the key frame before it: a 5-minute 720p video took 17 s in one pass, 0.9 s by seeking.
ONE_PASS_SECONDS = 30.0
_FAST_DECODE = ["-skip_loop_filter", "all", "-skip_frame", "noref"]


@dataclass(frozen=True)
class FaceCheck:
    """What the quick look found: ``frames`` looked at, whether a face was in any (upright or turned), the
    clockwise ``turn`` that shows it upright."""

    frames: int
    found: bool
    turn: int = 0


def spread_frames_argv(exe: str, path: str | Path, fps: Fraction, seconds: float, size: tuple[int, int],
                       stream: int = 0) -> list[str]:
    """The first ``seconds`` of the video (its picture ``stream``) as raw BGR24 frames at ``fps`` (a few per
    video) and ``size`` (width, height: the detector's), decoded fast."""
    return [*base_argv(exe), *_FAST_DECODE, "-t", f"{seconds:.3f}", "-i", file_url(path), "-map", f"0:V:{stream}",
            "-an", "-sn", "-dn", "-vf", f"fps={format_fps(fps)},{_scale(size)}", "-f", "rawvideo", "-pix_fmt",
            "bgr24", "pipe:1"]


def seek_frame_argv(exe: str, path: str | Path, seconds: float, size: tuple[int, int], stream: int = 0) -> list[str]:
    """The one frame at ``seconds`` of picture ``stream`` as raw BGR24 at ``size`` (ffmpeg seeks to the key
    frame before it and decodes on)."""
    return [*base_argv(exe), "-skip_loop_filter", "all", "-ss", f"{seconds:.3f}", "-i", file_url(path),
            "-map", f"0:V:{stream}", "-an", "-sn", "-dn", "-frames:v", "1", "-vf", _scale(size), "-f", "rawvideo",
            "-pix_fmt", "bgr24", "pipe:1"]


def _scale(size: tuple[int, int]) -> str:
    # Area averaging, as the detector shrinks a frame itself (cv2.INTER_AREA): ffmpeg does it on the way out,
    # so a 720p frame crosses the pipe at the detector's size.
    return f"scale={size[0]}:{size[1]}:flags=area"


def detector_size(info: MediaInfo, detect_size: int) -> tuple[int, int]:
    """(width, height) of the video's frames shrunk so the longer side is at most ``detect_size``."""
    scale = min(1.0, detect_size / max(info.width, info.height))
    return max(1, round(info.width * scale)), max(1, round(info.height * scale))


def _frames(argv: list[str], info: MediaInfo, size: tuple[int, int]) -> Iterator[np.ndarray]:
    shape = (size[1], size[0], 3)
    frame_bytes = size[0] * size[1] * 3
    with reading_output(argv, subject=info.path, bufsize=frame_bytes) as pipe:
        while len(data := pipe.read(frame_bytes)) == frame_bytes:
            yield np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _samples(info: MediaInfo, count: int, seconds: float, detect_size: int) -> list[np.ndarray]:
    """Up to ``count`` frames spread evenly over the first ``seconds`` of ``info`` (its one frame for a photo),
    no larger than the detector looks at."""
    if info.kind == "image":
        return sample_frames(info, 1, 0.0)
    span = max(min(seconds, info.duration), 0.001)
    size = detector_size(info, detect_size)
    if span <= ONE_PASS_SECONDS:
        fps = Fraction(count) / Fraction(span).limit_denominator(1000)
        argv = spread_frames_argv(ffmpeg_exe(), info.path, fps, span, size, info.video_stream)
        return list(_frames(argv, info, size))[:count]
    frames: list[np.ndarray] = []
    for number in range(count):
        argv = seek_frame_argv(ffmpeg_exe(), info.path, span * number / count, size, info.video_stream)
        frames += list(_frames(argv, info, size))[:1]
    return frames


def check_face(path: str | Path, detection: DetectionOptions, seconds: float | None = None,
               samples: int = CHECK_SAMPLES) -> FaceCheck:
    """Look for a face in ``samples`` frames spread over the first ``seconds`` of the video at ``path`` (all
    of it when None: a job uses as much of the video as the speech lasts), or in a photo.

    Raises HeyGemError (InputError naming the file) when the file cannot be read or decoded.
    """
    info = probe(path)
    if info.kind not in ("video", "image"):
        return FaceCheck(0, False)
    if detection.box:  # a fixed face box: the pipeline does not look for one
        return FaceCheck(0, True)
    detector = get_detector(detection.detector, detection.detect_size, detection.detector_weights)
    frames = _samples(info, samples, info.duration if seconds is None else seconds, detector.detect_size)
    if not frames:
        raise HeyGemError(f"{info.path}: no frame of the video could be decoded")
    orientation = find_orientation(frames, detector.detect)
    found = max(orientation.scores.values(), default=0.0) > 0.0
    log.debug("face check of %s: %d frames, face %s (scores by turn %s)", info.path.name, len(frames),
              "found" if found else "not found", orientation.scores)
    return FaceCheck(len(frames), found, orientation.turn if found else 0)
