"""From raw detections to the crop box of each frame: pick the face, smooth it over time, map it to the crop
convention the engine was trained on."""
from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Literal, TypeVar

import cv2
import numpy as np

from heygem.faces.base import Face

T = TypeVar("T")

# Keep following the face chosen in the previous frame unless another face is clearly larger: two faces of
# similar size must not swap from frame to frame.
STICKY_AREA_RATIO = 0.7


def iou(a: Face, b: Face) -> float:
    """Intersection over union of two boxes."""
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (a.area + b.area - inter)


def select_face(faces: list[Face], policy: Literal["largest"] | int, previous: Face | None = None) -> Face | None:
    """The face to sync in one frame: the largest (sticking to the previous one when it is about as large),
    or the ``policy``-th face counted left to right. None when there is no such face."""
    if not faces:
        return None
    if isinstance(policy, int):
        ordered = sorted(faces, key=lambda f: f.center_x)
        return ordered[policy] if 0 <= policy < len(ordered) else None
    largest = max(faces, key=lambda f: f.area)
    if previous is not None:
        same = max(faces, key=lambda f: iou(f, previous))
        if iou(same, previous) > 0.3 and same.area >= STICKY_AREA_RATIO * largest.area:
            return same
    return largest


def smooth_faces(items: Iterable[tuple[T, Face | None]], window: int) -> Iterator[tuple[T, Face | None]]:
    """Average each face box with its neighbours over ``window`` consecutive frames (centred), streaming
    with a delay of window // 2 frames. Frames without a face stay without one and are not averaged in."""
    if window <= 1:
        yield from items
        return
    half = window // 2
    buffer: deque[tuple[T, Face | None]] = deque()
    position = 0  # index in buffer of the next item to emit

    def emit(i: int) -> tuple[T, Face | None]:
        payload, face = buffer[i]
        if face is None:
            return payload, None
        near = [f for _, f in list(buffer)[max(0, i - half) : i + half + 1] if f is not None]
        n = len(near)
        return payload, Face(
            sum(f.x1 for f in near) / n, sum(f.y1 for f in near) / n,
            sum(f.x2 for f in near) / n, sum(f.y2 for f in near) / n, face.score,
        )

    for item in items:
        buffer.append(item)
        if len(buffer) - position > half:
            yield emit(position)
            position += 1
            if position > half:
                buffer.popleft()
                position -= 1
    while position < len(buffer):
        yield emit(position)
        position += 1


def crop_box(
    face: Face, frame_width: int, frame_height: int, pads: tuple[int, int, int, int], margin: float = 0.0
) -> tuple[int, int, int, int]:
    """The Wav2Lip crop (x1, y1, x2, y2) for a detector box.

    The checkpoints were trained on S3FD boxes, cropped with padding (top 0, bottom 10 px by default, which
    brings the chin in). YuNet and S3FD were both trained on WIDER FACE, whose boxes run from the forehead
    to the chin and cheek to cheek; on the frontal faces of ../shared/media the YuNet boxes sit on exactly
    that line, so the box is used as the S3FD box unchanged and the original's pixel padding is applied on
    top. This mapping is reasoned, not fitted: S3FD's weights cannot be fetched on this machine. Users who
    have them can run ``--detector s3fd`` and get the trained convention exactly.

    ``margin`` widens the box by that fraction of its size on every side, for engines that want context.
    """
    top, bottom, left, right = pads
    if margin:
        grow_x, grow_y = margin * face.width, margin * face.height
        face = Face(face.x1 - grow_x, face.y1 - grow_y, face.x2 + grow_x, face.y2 + grow_y, face.score)
    x1 = max(0, int(round(face.x1)) - left)
    y1 = max(0, int(round(face.y1)) - top)
    x2 = min(frame_width, int(round(face.x2)) + right)
    y2 = min(frame_height, int(round(face.y2)) + bottom)
    return x1, y1, x2, y2


def cut_crop(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The ``box`` (x1, y1, x2, y2) of ``image`` resized to ``size`` x ``size``: plain bilinear, as the Wav2Lip
    checkpoints saw in training. Every pass that cuts a presenter's crops cuts them here, so the same face gives
    the same crop (the kept face mesh points are keyed by the crop's pixels)."""
    x1, y1, x2, y2 = box
    return cv2.resize(image[y1:y2, x1:x2], (size, size))
