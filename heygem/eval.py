"""How well a video's mouth follows a speech, measured on the video's frames alone.

Sync proxy: the inner-lip opening of each frame (468-point face mesh, independent of whichever engine made the
video) is correlated (Pearson) with the speech loudness of the same frame (``voice_envelope``, 300-3000 Hz, dB)
over lags of a few frames; the peak correlation and its lag are reported. Real talking-head videos with their
own soundtrack score about 0.1 to 0.6. The proxy can be fooled (a dark blob pasted over the mouth scores well),
so ``lower_face_ssim`` checks that the lower face still looks like the source person's.

    python -m heygem.eval sync OUTPUT.mp4 --audio SPEECH [--max-lag N] [--json]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from heygem.errors import HeyGemError, InputError
from heygem.faces.base import Face
from heygem.features import SAMPLE_RATE, voice_envelope
from heygem.media.audio import load_audio
from heygem.media.probe import probe, require_audio_source
from heygem.media.video import iter_frames

log = logging.getLogger(__name__)

MIN_OVERLAP = 10  # frames with a face needed before a correlation means anything
DYNAMIC_RANGE_DB = 60.0  # loudness below (loudest frame - this) counts as silence when correlating


@dataclass
class SyncReport:
    """Result of ``measure_sync``.

    peak_r: the highest Pearson r over the lags (NaN when no lag had enough frames with a face).
    lag_frames: lag of the peak; positive = the mouth is late (opening at frame i + lag follows audio at i).
    r_by_lag: r for every lag tried (NaN where it could not be computed).
    frames: frames of the video measured; frames_without_face: how many of them had no face.
    opening: inner-lip opening per frame (gap / eye-corner distance), NaN where there was no face.
    envelope: speech loudness per frame in dB. fps: the video's frame rate.
    """

    peak_r: float
    lag_frames: int
    r_by_lag: dict[int, float]
    frames: int
    frames_without_face: int
    opening: np.ndarray = field(repr=False)
    envelope: np.ndarray = field(repr=False)
    fps: Fraction

    def summary(self) -> str:
        """One line for people."""
        peak = "n/a" if not np.isfinite(self.peak_r) else f"{self.peak_r:.2f}"
        return (f"peak r {peak} at lag {self.lag_frames} frames (mouth late if positive); "
                f"{self.frames_without_face} of {self.frames} frames without a face")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures (the per-frame series included, NaN as null)."""
        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {
            "peak_r": num(self.peak_r),
            "lag_frames": self.lag_frames,
            "r_by_lag": {str(k): num(v) for k, v in self.r_by_lag.items()},
            "frames": self.frames,
            "frames_without_face": self.frames_without_face,
            "fps": str(self.fps),
            "opening": [num(x) for x in self.opening],
            "envelope_db": [num(x) for x in self.envelope],
        }


def mouth_openings(video: str | Path) -> tuple[np.ndarray, Fraction]:
    """Inner-lip opening of every frame of ``video`` at its own frame rate (NaN without a face), and that rate."""
    opening, _, fps = mouth_shapes(video)
    return opening, fps


def mouth_shapes(video: str | Path) -> tuple[np.ndarray, np.ndarray, Fraction]:
    """Inner-lip opening and mouth-corner width of every frame of ``video`` at its own frame rate (both over
    the eye-corner distance, NaN without a face), and that rate: one landmark pass."""
    info = probe(video)
    if info.kind != "video" or info.fps is None:
        raise InputError(info.path, f"is {'a photo' if info.kind == 'image' else 'audio only'}; "
                                    "the mouth is measured on a video (mp4, mov, mkv, webm, avi)")
    opening, width = frame_mouth_shapes(iter_frames(info, info.fps))
    log.debug("%s: %d frames", info.path, len(opening))
    return opening, width, info.fps


def frame_mouth_shapes(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inner-lip opening (``mouth_opening``) and mouth-corner width (``mouth_width``) of each BGR frame, from
    one face-mesh pass tracked from frame to frame; NaN in both where no face is found."""
    from heygem.faces.landmarks import LandmarkTracker, mouth_opening, mouth_width

    tracker = LandmarkTracker()
    openings, widths = [], []
    for frame in frames:
        points = tracker(frame)
        openings.append(mouth_opening(points) if points is not None else np.nan)
        widths.append(mouth_width(points) if points is not None else np.nan)
    return np.asarray(openings, dtype=np.float64), np.asarray(widths, dtype=np.float64)


def frame_openings(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Inner-lip opening of each BGR frame, tracked from frame to frame (NaN where no face is found)."""
    return frame_mouth_shapes(frames)[0]


def lag_correlations(opening: np.ndarray, envelope: np.ndarray, max_lag: int) -> dict[int, float]:
    """Pearson r of opening[t + k] against envelope[t] for k in [-max_lag, max_lag], frames with NaN left out."""
    n = min(len(opening), len(envelope))
    x, y = np.asarray(opening[:n], dtype=np.float64), np.asarray(envelope[:n], dtype=np.float64)
    result: dict[int, float] = {}
    for k in range(-max_lag, max_lag + 1):
        a, b = (x[k:], y[:n - k]) if k >= 0 else (x[:n + k], y[-k:])
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < MIN_OVERLAP or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            result[k] = float("nan")  # too few frames, or a constant series: r is undefined
            continue
        result[k] = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return result


def sync_envelope(samples: np.ndarray, fps: Fraction, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The speech's voice envelope per frame (dB), raw and as it is correlated: frames past the end of the
    speech dropped, silence clamped."""
    envelope = voice_envelope(samples, fps, n_frames, SAMPLE_RATE)
    # Frames past the end of the speech carry no information about sync; leave them out.
    audio_frames = int(Fraction(len(samples), SAMPLE_RATE) * fps)
    usable = envelope[:max(0, min(len(envelope), audio_frames))]
    if usable.size:
        # Digital silence (-120 dB) next to speech would be an outlier that alone decides Pearson's r; below
        # DYNAMIC_RANGE_DB under the loudest frame the mouth is closed either way, so clamp there.
        usable = np.maximum(usable, usable.max() - DYNAMIC_RANGE_DB)
    return envelope, usable


def measure_sync(video: Path, audio: Path, max_lag: int = 3) -> SyncReport:
    """Correlate the mouth opening seen in ``video`` with the loudness of ``audio`` (see the module docstring)."""
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    require_audio_source(probe(audio))  # a clear error naming the file before the slow part
    opening, fps = mouth_openings(video)
    envelope, usable = sync_envelope(load_audio(audio, SAMPLE_RATE), fps, len(opening))
    r_by_lag = lag_correlations(opening, usable, max_lag)
    finite = {k: r for k, r in r_by_lag.items() if np.isfinite(r)}
    if finite:
        lag = max(finite, key=lambda k: (finite[k], -abs(k)))  # ties go to the smaller lag
        peak = finite[lag]
    else:
        lag, peak = 0, float("nan")
    report = SyncReport(peak, lag, r_by_lag, len(opening), int(np.isnan(opening).sum()), opening, envelope, fps)
    log.info("sync of %s against %s: %s", video, audio, report.summary())
    return report


def _box_bounds(box: Face | Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(box, Face):
        return box.x1, box.y1, box.x2, box.y2
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


def ssim(a_gray: np.ndarray, b_gray: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004) of two equal-size grayscale images, 8-bit range:
    11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03."""
    if a_gray.shape != b_gray.shape:
        raise ValueError(f"images differ in size: {a_gray.shape} and {b_gray.shape}")
    a, b = a_gray.astype(np.float64), b_gray.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def lower_face_ssim(a_bgr: np.ndarray, b_bgr: np.ndarray, box: Face | Sequence[float]) -> float:
    """SSIM of the lower half of ``box`` (x1, y1, x2, y2 in pixels, or a Face) between two same-size frames,
    on grayscale. 1.0 for identical crops; a mouth replaced by a blob or a different face scores far lower."""
    if a_bgr.shape[:2] != b_bgr.shape[:2]:
        raise ValueError(f"frames differ in size: {a_bgr.shape[:2]} and {b_bgr.shape[:2]}")
    height, width = a_bgr.shape[:2]
    x1, y1, x2, y2 = _box_bounds(box)
    left, right = max(0, int(round(x1))), min(width, int(round(x2)))
    top, bottom = max(0, int(round((y1 + y2) / 2))), min(height, int(round(y2)))
    if right - left < 11 or bottom - top < 11:
        raise ValueError(f"the lower half of box {(x1, y1, x2, y2)} is too small (under 11 px) inside a "
                         f"{width}x{height} frame")

    def gray(image: np.ndarray) -> np.ndarray:
        crop = image[top:bottom, left:right]
        return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop

    return ssim(gray(a_bgr), gray(b_bgr))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m heygem.eval sync VIDEO --audio SPEECH``: print the sync figures; exit 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m heygem.eval", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="correlate a video's mouth opening with a speech's loudness")
    sync.add_argument("video", type=Path, help="the video to judge (e.g. a lip-synced output)")
    sync.add_argument("--audio", type=Path, required=True,
                      help="the speech it should follow (audio file, or a video with a soundtrack)")
    sync.add_argument("--max-lag", type=int, default=3, help="largest lag tried, in frames (default 3)")
    sync.add_argument("--json", action="store_true", help="print the figures as JSON")
    sync.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # YuNet runs on OpenMP: on a busy machine spinning threads cost more than they give. Only the command
    # sets this (before the detector first runs), never the library.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.max_lag < 0:
        parser.error("--max-lag must be 0 or more")
    try:
        report = measure_sync(args.video, args.audio, args.max_lag)
    except HeyGemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.summary())
        print("r by lag: " + " ".join(f"{k:+d}:{'n/a' if not np.isfinite(r) else f'{r:.3f}'}"
                                      for k, r in report.r_by_lag.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
