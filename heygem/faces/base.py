"""Face detectors as replaceable backends behind one small API."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

# How high a face the detector is given when the video's face size is known: YuNet finds a talking head of
# this size as surely and as steadily as at 640 px, at a sixth of the cost on 720p. Measured on the first
# 100 frames of five shared clips: nothing missed; boxes 1.5-2.1% of the face height from those at 640 px (at
# 96 px: 1.3-1.8%); frame-to-frame jitter 0.4-1.2% of it at every size; 3.6-4.5 ms a detection (at 96 px:
# 6.0-7.4 ms; smaller is no cheaper).
FACE_PIXELS = 72


@dataclass(frozen=True)
class Face:
    """One detected face: its box in frame pixels and the detector's confidence (0..1)."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    @property
    def center_x(self) -> float:
        return (self.x1 + self.x2) / 2

    def scaled(self, factor: float) -> Face:
        return Face(self.x1 * factor, self.y1 * factor, self.x2 * factor, self.y2 * factor, self.score)


class FaceDetector(ABC):
    """Finds faces in BGR frames.

    Frames are downscaled so their longer side is at most ``detect_size`` before the backend sees them
    (detection cost grows with pixels, accuracy on talking heads does not), and boxes are mapped back.
    """

    name: ClassVar[str]

    def __init__(self, detect_size: int = 640) -> None:
        self.detect_size = detect_size

    def detect(self, frame: np.ndarray, face_height: float | None = None) -> list[Face]:
        """All faces in ``frame`` (BGR uint8), in its pixel coordinates, clipped to the frame.

        ``face_height``: how high the video's face is (``Orientation.face_height``). The frame is then shrunk
        further, until a face that high is ``FACE_PIXELS`` high; faces far smaller than it may go unseen, so
        only a caller that keeps the largest face passes it. When nothing is found so, the frame is searched
        again as without it. A function of the frame and that height alone: every pass over a video that is
        given the same height finds the same faces in the same frame.
        """
        height, width = frame.shape[:2]
        scale = min(1.0, self.detect_size / max(height, width))
        if face_height and FACE_PIXELS / face_height < scale:
            faces = self._detect_scaled(frame, FACE_PIXELS / face_height)
            if faces:
                return faces
        return self._detect_scaled(frame, scale)

    def _detect_scaled(self, frame: np.ndarray, scale: float) -> list[Face]:
        height, width = frame.shape[:2]
        small = frame
        if scale < 1.0:
            if scale < 0.5:  # halved first, where OpenCV averages 2x2 blocks fast: 720p at 0.29 in 1.5 ms, not 3.5
                small = cv2.resize(frame, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
            small = cv2.resize(small, (max(1, round(width * scale)), max(1, round(height * scale))),
                               interpolation=cv2.INTER_AREA)
        faces = [face.scaled(1.0 / scale) for face in self._detect(small)]
        return [
            Face(max(0.0, f.x1), max(0.0, f.y1), min(float(width), f.x2), min(float(height), f.y2), f.score)
            for f in faces
            if f.area > 0
        ]

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[Face]:
        """Faces in a BGR image small enough for the backend."""
