"""Video frames kept as the decoder gives them (yuv420p), turned into BGR only where they are looked at.

A lip-sync job changes a few percent of each frame: the mouth. Decoding every frame to BGR and encoding it
back converts every pixel twice, and the round trip's rounding is noise the encoder then spends bits and time
on (60 s of 720p: x264 5% more CPU, files 4% larger). Here the decoder hands over its own picture (half the
bytes of BGR, and no conversion in ffmpeg); the rectangles a job looks at (a face search, the face crop and
the drawing) are turned into BGR, and the drawn one is turned back; every other pixel reaches the encoder as
it was decoded (bench/RESULTS.md, "Issue 19: the decoder's picture passed through").

The BGR of a rectangle is exactly the BGR ffmpeg gives for the whole frame, so the face crops, the face mesh
points and the mouths are those of a job decoded to BGR. ffmpeg's conversion (libswscale, yuv420p to bgr24 at
the same size) takes each 2x2 block's chroma as it is and gives, per channel, a clipped sum of a luma term and
a chroma term; the terms are read off ffmpeg itself once per process and colour space (``conversion``) and
checked on a picture of random values. Where they do not reproduce ffmpeg to the bit (another ffmpeg build
may convert otherwise), there is no conversion and the job decodes to BGR as before.
"""
from __future__ import annotations

import functools
import logging
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np

from heygem.media.ffmpeg import base_argv

log = logging.getLogger(__name__)

__all__ = ["Conversion", "YuvFrame", "conversion", "i420_from_bgr"]

PROBE_TIMEOUT = 30.0
# Colour spaces (ffprobe's ``color_space``) and ranges a decoded picture may carry for the conversion to be
# read off ffmpeg with the same tags; anything else decodes to BGR.
COLOUR_SPACES = ("unknown", "bt470bg", "smpte170m", "bt709", "fcc", "smpte240m")
COLOUR_RANGES = ("unknown", "tv")


@dataclass(frozen=True)
class Conversion:
    """ffmpeg's yuv420p -> BGR: blue = clip(luma[Y] + blue_u[U]), green = clip(luma[Y] + green_u[U] +
    green_v[V]), red = clip(luma[Y] + red_v[V]) (each table int16 over the 256 values)."""

    luma: np.ndarray
    blue_u: np.ndarray
    green_u: np.ndarray
    green_v: np.ndarray
    red_v: np.ndarray

    def bgr(self, y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The BGR picture of luma ``y`` (h, w) and chroma ``u``, ``v`` (h/2, w/2), both of even size."""
        height, width = y.shape
        luma = cv2.LUT(y, self.luma)
        chroma = cv2.merge([cv2.LUT(u, self.blue_u), cv2.add(cv2.LUT(u, self.green_u), cv2.LUT(v, self.green_v)),
                            cv2.LUT(v, self.red_v)])
        chroma = cv2.resize(chroma, (width, height), interpolation=cv2.INTER_NEAREST)  # each sample over its block
        return cv2.add(cv2.merge([luma, luma, luma]), chroma, dtype=cv2.CV_8U)  # saturating, as ffmpeg clips


def _tags(colour_space: str | None, colour_range: str | None) -> list[str]:
    tags = []
    if colour_space and colour_space != "unknown":
        tags += ["-colorspace", colour_space]
    if colour_range and colour_range != "unknown":
        tags += ["-color_range", colour_range]
    return tags


def _ffmpeg_bgr(exe: str, y: np.ndarray, u: np.ndarray, v: np.ndarray, tags: list[str]) -> np.ndarray:
    """ffmpeg's own BGR of one yuv420p picture (tagged as the video to be decoded is)."""
    height, width = y.shape
    done = subprocess.run([*base_argv(exe), *tags, "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{width}x{height}",
                           "-i", "pipe:0", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"],
                          input=np.concatenate([y.ravel(), u.ravel(), v.ravel()]).tobytes(), capture_output=True,
                          timeout=PROBE_TIMEOUT, check=False)
    if done.returncode != 0 or len(done.stdout) != height * width * 3:
        raise RuntimeError(done.stderr.decode(errors="replace").strip()[-300:] or f"exit code {done.returncode}")
    return np.frombuffer(done.stdout, np.uint8).reshape(height, width, 3)


def _chroma_term(values: np.ndarray, luma: np.ndarray) -> np.ndarray:
    """Per chroma value (the columns of ``values``: ffmpeg's output over luma rows and chroma columns), the
    term added to ``luma`` (NaN where unknown), from the rows where the output did not clip; NaN where none."""
    unclipped = (values > 0) & (values < 255) & ~np.isnan(luma)[:, None]
    differences = np.where(unclipped, values - np.nan_to_num(luma)[:, None], np.nan)
    known = unclipped.any(axis=0)
    term = np.full(values.shape[1], np.nan)
    term[known] = np.round(np.nanmedian(differences[:, known], axis=0))
    return term


def _solve(blue: np.ndarray, green_u: np.ndarray, green_v: np.ndarray, red: np.ndarray) -> Conversion:
    """The tables from ffmpeg's output over every luma (rows) and chroma value (columns): ``blue`` over U (V
    at 128), ``red`` over V (U at 128), ``green_u``/``green_v`` the green of the same two pictures."""
    blue, green_u, green_v, red = (np.asarray(a, np.float64) for a in (blue, green_u, green_v, red))
    # Luma term: the blue at U = 128 (its chroma term taken as 0) where it did not clip; then, in turn, the
    # chroma terms from the luma known so far and the luma from the chroma terms, until both are whole (the
    # extreme U clip at every luma that does not itself clip at U = 128).
    luma = np.where((blue[:, 128] > 0) & (blue[:, 128] < 255), blue[:, 128], np.nan)
    for _ in range(4):
        blue_u = _chroma_term(blue, luma)
        found = _chroma_term(blue.T, blue_u)
        luma = np.where(np.isnan(luma), found, luma)
    red_v = _chroma_term(red, luma)
    green_v = _chroma_term(green_v, luma)  # green at U = 128: green_u[128] + green_v[V]; take green_u[128] = 0
    green_u = _chroma_term(green_u, luma) - green_v[128]
    tables = (luma, blue_u, green_u, green_v, red_v)
    if any(np.isnan(t).any() for t in tables):
        raise RuntimeError("some values never show unclipped")
    return Conversion(*(t.astype(np.int16) for t in tables))


@functools.cache
def conversion(exe: str, colour_space: str | None = None, colour_range: str | None = None) -> Conversion | None:
    """ffmpeg's (``exe``) yuv420p -> BGR for pictures tagged ``colour_space`` and ``colour_range`` (ffprobe's
    names), read off two pictures it converts and checked on a third of random values; None where the
    pictures are not of this kind, the tables do not reproduce ffmpeg to the bit, or it could not be run."""
    if (colour_space or "unknown") not in COLOUR_SPACES or (colour_range or "unknown") not in COLOUR_RANGES:
        return None
    tags = _tags(colour_space, colour_range)
    try:
        # Every luma value (columns of 2x2 blocks) against every U (rows; V at 128), then every V (U at 128).
        y = np.repeat(np.tile(np.arange(256, dtype=np.uint8), (256, 1)), 2, axis=1).repeat(2, axis=0)
        y = np.hstack([y, y])  # (512, 1024)
        rows = np.arange(256, dtype=np.uint8)[:, None].repeat(256, axis=1)
        middle = np.full((256, 256), 128, np.uint8)
        out = _ffmpeg_bgr(exe, y, np.hstack([rows, middle]), np.hstack([middle, rows]), tags).astype(np.int64)
        at = out[0::2, 0::2]  # one pixel of each block: (U or V, luma)
        found = _solve(at[:, :256, 0].T, at[:, :256, 1].T, at[:, 256:, 1].T, at[:, 256:, 2].T)
        random = np.random.default_rng(0)
        y = random.integers(0, 256, (256, 256), dtype=np.uint8)
        u, v = (random.integers(0, 256, (128, 128), dtype=np.uint8) for _ in range(2))
        exact = np.array_equal(found.bgr(y, u, v), _ffmpeg_bgr(exe, y, u, v, tags))
    except (OSError, subprocess.TimeoutExpired, RuntimeError) as exc:
        log.info("decoding to BGR: ffmpeg's yuv420p conversion could not be read (%s)", exc)
        return None
    if not exact:
        log.info("decoding to BGR: ffmpeg %s converts yuv420p (%s, %s) otherwise than a sum of terms", exe,
                 colour_space, colour_range)
        return None
    return found


# Full-range chroma (OpenCV's YCrCb, as JPEG) to the limited range of video (16..240 around 128).
_LIMITED_CHROMA = np.clip(np.round(128 + (np.arange(256) - 128) * 224 / 255), 0, 255).astype(np.uint8)


def i420_from_bgr(frame: np.ndarray) -> np.ndarray:
    """A BGR picture of even size as one yuv420p picture (BT.601, limited range): its luma, then each 2x2
    block's mean chroma (U, then V), as ffmpeg reads ``-pix_fmt yuv420p`` from a pipe. (OpenCV's own I420
    takes the chroma of one pixel in four, which frays lips against skin: bench/RESULTS.md, "Issue 21, a
    chroma fault and joins on time".)"""
    height, width = frame.shape[:2]
    out = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420)  # luma right; chroma of one pixel in four, replaced
    block_means = cv2.resize(frame, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    _, cr, cb = cv2.split(cv2.cvtColor(block_means, cv2.COLOR_BGR2YCrCb))
    quarter = (height // 2) * (width // 2)
    flat = out.reshape(-1)
    flat[height * width:height * width + quarter] = cv2.LUT(cb, _LIMITED_CHROMA).reshape(-1)  # U
    flat[height * width + quarter:] = cv2.LUT(cr, _LIMITED_CHROMA).reshape(-1)  # V
    return out


class YuvFrame:
    """One decoded yuv420p picture of even width and height (``data``: its I420 bytes, luma then U then V),
    with the BGR of any rectangle on demand (``bgr``) and BGR drawn back into it (``put``)."""

    def __init__(self, data: np.ndarray, width: int, height: int, convert: Conversion) -> None:
        if width % 2 or height % 2 or data.size != width * height * 3 // 2:
            raise ValueError(f"a yuv420p frame of even size, not {data.size} bytes for {width}x{height}")
        self.data, self.width, self.height, self.convert = data, width, height, convert
        quarter = (width // 2) * (height // 2)
        self.y = data[:width * height].reshape(height, width)
        self.u = data[width * height:width * height + quarter].reshape(height // 2, width // 2)
        self.v = data[width * height + quarter:].reshape(height // 2, width // 2)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The shape of the BGR frame it stands for."""
        return self.height, self.width, 3

    def copy(self) -> YuvFrame:
        return self.like(self.data.copy())

    def like(self, data: np.ndarray) -> YuvFrame:
        """A frame of this one's size and conversion holding ``data``."""
        return YuvFrame(data, self.width, self.height, self.convert)

    def even(self, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
        """The rectangle grown to even edges (whole chroma blocks) and kept inside the frame."""
        return (max(0, x0 - x0 % 2), max(0, y0 - y0 % 2), min(self.width, x1 + x1 % 2), min(self.height, y1 + y1 % 2))

    def bgr(self, rect: tuple[int, int, int, int] | None = None) -> np.ndarray:
        """The BGR of ``rect`` (x0, y0, x1, y1; even edges) or of the whole frame: a new array."""
        x0, y0, x1, y1 = rect if rect is not None else (0, 0, self.width, self.height)
        if x0 % 2 or y0 % 2 or x1 % 2 or y1 % 2:
            raise ValueError(f"a rectangle of whole chroma blocks (even edges), not {rect}")
        return self.convert.bgr(self.y[y0:y1, x0:x1], self.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2],
                                self.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2])

    def put(self, rect: tuple[int, int, int, int], picture: np.ndarray) -> None:
        """``picture`` (BGR, the size of ``rect``, even edges) written over ``rect``, each 2x2 block's chroma its
        mean."""
        x0, y0, x1, y1 = rect
        if x0 % 2 or y0 % 2 or x1 % 2 or y1 % 2 or picture.shape[:2] != (y1 - y0, x1 - x0):
            raise ValueError(f"a BGR picture of {rect}'s size (even edges), not {picture.shape}")
        if x1 <= x0 or y1 <= y0:
            return
        i420 = i420_from_bgr(picture).reshape(-1)
        h, w = y1 - y0, x1 - x0
        self.y[y0:y1, x0:x1] = i420[:h * w].reshape(h, w)
        quarter = (h // 2) * (w // 2)
        self.u[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = i420[h * w:h * w + quarter].reshape(h // 2, w // 2)
        self.v[y0 // 2:y1 // 2, x0 // 2:x1 // 2] = i420[h * w + quarter:].reshape(h // 2, w // 2)
