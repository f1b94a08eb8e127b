"""A live presenter's picture: the first seconds of its prepared footage at the stream's size, each frame with
its face mesh found once, played forwards and back (ping-pong) for as long as the session lasts."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from heygem.pipeline import PreparedFootage

log = logging.getLogger(__name__)

__all__ = ["LoopFootage", "loop_position"]


def loop_position(seconds: float, fps: Fraction | float, frames: int) -> int:
    """The footage frame shown ``seconds`` into a session: forwards, then back, then forwards (no jump at
    either end)."""
    if frames <= 1:
        return 0
    period = 2 * (frames - 1)
    index = int(math.floor(seconds * float(fps) + 1e-9)) % period
    return index if index < frames else period - index


@dataclass
class _Frame:
    image: np.ndarray  # BGR at the stream's size
    box: tuple[int, int, int, int] | None  # the face's crop box at that size
    points: np.ndarray | None  # face mesh in crop pixels (the engine's crop_size)


class LoopFootage:
    """The footage frames a session shows, scaled so that the longer side is ``side`` pixels (never up), with
    what the engine needs to draw a mouth into each: ``frame(seconds)`` is the picture at a time of the session.
    ``shrink`` makes the same at a smaller size (a machine that cannot keep up)."""

    def __init__(self, footage: PreparedFootage, engine, side: int) -> None:
        started = time.perf_counter()
        self.fps = footage.fps
        self.source_size = footage.frames[0].shape[1], footage.frames[0].shape[0]
        size = engine.crop_size
        self._source: list[tuple[np.ndarray, tuple[int, int, int, int] | None, np.ndarray | None]] = []
        previous = None
        for image, box in zip(footage.frames, footage.boxes):
            points = None
            if box is not None:
                x1, y1, x2, y2 = box
                crop = cv2.resize(image[y1:y2, x1:x2], (size, size))
                points = engine.face_points(crop, previous)
            previous = points
            self._source.append((image, box, points))
        self.frames: list[_Frame] = []
        self.side = 0
        self.scale(side)
        found = sum(points is not None for _, _, points in self._source)
        log.info("live footage: %d frames (%d with a face mesh) at %dx%d, ready in %.2f s", len(self.frames), found,
                 self.width, self.height, time.perf_counter() - started)

    @property
    def width(self) -> int:
        return self.frames[0].image.shape[1]

    @property
    def height(self) -> int:
        return self.frames[0].image.shape[0]

    def scale(self, side: int) -> None:
        """The frames at ``side`` pixels on the longer side (at most the footage's own; even sides for the
        video encoder)."""
        width, height = self.source_size
        factor = min(1.0, side / max(width, height))
        out_w, out_h = max(2, round(width * factor / 2) * 2), max(2, round(height * factor / 2) * 2)
        fx, fy = out_w / width, out_h / height
        frames = []
        for image, box, points in self._source:
            small = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA) if (out_w, out_h) != (width, height) \
                else image.copy()
            scaled = None if box is None else (round(box[0] * fx), round(box[1] * fy), round(box[2] * fx), round(box[3] * fy))
            frames.append(_Frame(small, scaled, points))
        self.frames = frames
        self.side = max(out_w, out_h)

    def frame(self, seconds: float) -> _Frame:
        return self.frames[loop_position(seconds, self.fps, len(self.frames))]
