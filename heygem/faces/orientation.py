"""Which way up the face is. A video shot sideways and saved without a rotation flag shows its face turned;
the detectors then find it seldom, or (YuNet) often but with less confidence. The pipeline turns such frames
upright for the engine and turns every output frame back, so the result keeps the source's orientation.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from heygem.faces.base import Face
from heygem.media.video import turn_image

log = logging.getLogger(__name__)

TURNS = (0, 90, 180, 270)  # clockwise degrees
# YuNet scores a clearly visible upright face 0.90-0.95 (measured over every face of ../shared/media); the
# same faces turned 90, 180 or 270 degrees are still found, but at 0.5-0.89. When every sample has an
# upright face this confident, the turns are not tried (the cheap common case: one detection per sample).
CONFIDENT_SCORE = 0.9
# A turn must beat the upright picture's mean score by this much to be taken: an upright face can score
# nearly as well upside down (0.89 against 0.94 on liveportrait/d0.mp4).
TURN_MARGIN = 0.05

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class Orientation:
    """The chosen clockwise turn and how it was chosen."""

    turn: int
    scores: dict[int, float]  # per turn tried: the best face's score, averaged over the samples (0: no face)
    detector_calls: int
    # The median height of the best face in the samples turned so (None: none found); the later detections of
    # the video are made at the scale it suggests (``FaceDetector.detect``).
    face_height: float | None = None

    @property
    def tried_turns(self) -> bool:
        return len(self.scores) > 1


def find_orientation(samples: Sequence[np.ndarray], detect: Callable[[np.ndarray], list[Face]]) -> Orientation:
    """The clockwise turn that shows the face in ``samples`` (frames spread over a video, or a photo) upright.

    0 when every sample has a confident upright face. Otherwise each turn is tried on every sample and the
    one whose faces score best on average (a sample without a face counts 0, so finding the face in more
    samples counts most) is taken, if it beats the upright picture by ``TURN_MARGIN``; else 0.
    """
    calls = 0
    heights: dict[int, float | None] = {}

    def best_scores(turn: int) -> list[float]:
        nonlocal calls
        scores, found = [], []
        for image in samples:
            calls += 1
            best = max(detect(turn_image(image, turn)), key=lambda face: face.score, default=None)
            scores.append(best.score if best is not None else 0.0)
            if best is not None:
                found.append(best.height)
        heights[turn] = float(np.median(found)) if found else None
        return scores

    upright = best_scores(0)
    if not upright or min(upright) >= CONFIDENT_SCORE:
        return Orientation(0, {0: float(np.mean(upright)) if upright else 0.0}, calls, heights[0])
    means = {turn: float(np.mean(upright if turn == 0 else best_scores(turn))) for turn in TURNS}
    best = max(means, key=lambda turn: means[turn])  # the first of equals: upright wins a tie
    chosen = best if means[best] >= means[0] + TURN_MARGIN else 0
    log.debug("face scores by clockwise turn: %s; turning %d degrees",
              ", ".join(f"{t}: {s:.2f}" for t, s in means.items()), chosen)
    return Orientation(chosen, means, calls, heights[chosen])


def turn_box(box: Box, turn: int, width: int, height: int) -> Box:
    """``box`` (x1, y1, x2, y2) of a ``width`` x ``height`` picture, in that picture turned ``turn`` degrees
    clockwise (as ``turn_image`` turns it)."""
    x1, y1, x2, y2 = box
    turn %= 360
    if turn == 90:
        return height - y2, x1, height - y1, x2
    if turn == 180:
        return width - x2, height - y2, width - x1, height - y1
    if turn == 270:
        return y1, width - x2, y2, width - x1
    return box


def describe_turn(turn: int) -> str:
    """How a user would say the clockwise ``turn``."""
    return {90: "90° clockwise", 180: "180° (upside down)", 270: "90° counterclockwise"}.get(turn % 360, "0°")
