"""S3FD through face-alignment: the detector the Wav2Lip checkpoints were trained with.

face-alignment downloads its weights on first use; HeyGem never lets it. The weights file
(``s3fd-619a316812.pth``) must already be on disk: given as ``detector_weights`` or in torch's hub cache.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from heygem.errors import EngineError
from heygem.faces.base import Face, FaceDetector
from heygem.settings import CHECKPOINTS_DIR

log = logging.getLogger(__name__)

WEIGHTS_NAME = "s3fd-619a316812.pth"
MIN_CONFIDENCE = 0.5  # the original Wav2Lip's threshold


def find_s3fd_weights(explicit: Path | None) -> Path:
    """The local S3FD weights file, or an error that says where to put it."""
    import torch.hub

    candidates = [Path(explicit)] if explicit else []
    candidates += [CHECKPOINTS_DIR / WEIGHTS_NAME, Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_NAME]
    for path in candidates:
        if path.is_file():
            return path
    raise EngineError(
        f"S3FD weights not found (looked at {', '.join(str(p) for p in candidates)}): place {WEIGHTS_NAME} "
        "in checkpoints/ or pass --detector-weights, or use the built-in detector (--detector yunet)."
    )


class S3FDDetector(FaceDetector):
    name = "s3fd"

    def __init__(self, detect_size: int = 640, weights: Path | None = None, device: str = "cpu") -> None:
        super().__init__(detect_size)
        path = find_s3fd_weights(weights)
        try:
            from face_alignment.detection.sfd.sfd_detector import SFDDetector
        except ImportError as e:
            raise EngineError("the s3fd detector needs the face-alignment package: pip install face-alignment") from e
        try:
            self._net = SFDDetector(device, path_to_detector=str(path), filter_threshold=MIN_CONFIDENCE)
        except Exception as e:  # a wrong or damaged file: say which
            raise EngineError(f"{path}: not a usable S3FD weights file ({e})") from e
        log.info("S3FD detector loaded from %s on %s", path, device)

    def _detect(self, image: np.ndarray) -> list[Face]:
        # face-alignment's S3FD takes RGB and flips it back to the BGR the network was trained on.
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        return [Face(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(b[4])) for b in self._net.detect_from_image(rgb)]
