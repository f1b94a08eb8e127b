"""Face detection: backends behind one API (``FaceDetector.detect``), chosen by name."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from heygem.errors import EngineError
from heygem.faces.base import Face, FaceDetector

__all__ = ["DETECTORS", "Face", "FaceDetector", "get_detector"]

DETECTORS = ("yunet", "s3fd")


@lru_cache(maxsize=4)
def get_detector(name: str, detect_size: int = 640, weights: Path | None = None, device: str = "cpu") -> FaceDetector:
    """The detector called ``name``, loaded once per (name, size, weights, device) and reused."""
    if name == "yunet":
        from heygem.faces.yunet import YuNetDetector

        return YuNetDetector(detect_size)
    if name == "s3fd":
        from heygem.faces.s3fd import S3FDDetector

        return S3FDDetector(detect_size, weights, device)
    raise EngineError(f"unknown face detector {name!r}: choose one of {', '.join(DETECTORS)}")
