"""Cheap detection: run the detector on every Nth frame only, fill the frames between, and remember the faces
of each source video (and the turn that showed them upright) so that a second job with the same video
detects nothing at all.

Between two detected frames the box is interpolated linearly when both found the same face (it barely moves
in 1/5 s of a talking head); when the face was lost or jumped, every frame in between is detected instead.
"""
from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from heygem.faces.base import Face
from heygem.faces.track import iou

log = logging.getLogger(__name__)

T = TypeVar("T")

# Two detections this similar (intersection over union) are the same face, steady enough to interpolate.
SAME_FACE_IOU = 0.6
CACHE_VERSION = 2  # 2: the turn is stored beside the faces (.npz)

DetectOne = Callable[[np.ndarray, "Face | None"], "Face | None"]
"""``detect_one(image, previous_face) -> face or None``: detect and choose the face in one frame."""


def sparse_detect(
    items: Iterable[tuple[T, np.ndarray]], detect_one: DetectOne, every: int, counter: dict[str, int] | None = None
) -> Iterator[tuple[T, Face | None]]:
    """``(payload, image)`` in, ``(payload, face)`` out, in order, detecting every ``every``-th frame only.

    Streams with a delay of at most ``every`` frames. ``counter["detected"]`` counts detector calls.
    """
    counter = counter if counter is not None else {}
    counter.setdefault("detected", 0)

    def detect(image: np.ndarray, previous: Face | None) -> Face | None:
        counter["detected"] += 1
        return detect_one(image, previous)

    if every <= 1:
        previous = None
        for payload, image in items:
            face = detect(image, previous)
            previous = face or previous
            yield payload, face
        return

    last: Face | None = None  # the face of the last frame handed out
    gap: list[tuple[T, np.ndarray]] = []
    started = False
    for payload, image in items:
        if not started:  # the very first frame is always detected
            started = True
            last = detect(image, None)
            yield payload, last
            continue
        gap.append((payload, image))
        if len(gap) == every:
            faces = _fill_gap([image for _, image in gap], last, detect)
            yield from zip((payload for payload, _ in gap), faces)
            last, gap = faces[-1], []
    if gap:
        yield from zip((payload for payload, _ in gap), _fill_gap([image for _, image in gap], last, detect))


def _fill_gap(images: list[np.ndarray], before: Face | None, detect) -> list[Face | None]:
    """Faces of the frames after a detected one: the last frame is detected; those before it are
    interpolated, or detected one by one when the face was lost or jumped."""
    end = detect(images[-1], before)
    if before is not None and end is not None and iou(before, end) >= SAME_FACE_IOU:
        steps = len(images)
        return [_lerp(before, end, i / steps) for i in range(1, steps)] + [end]
    faces: list[Face | None] = []
    previous = before
    for image in images[:-1]:
        face = detect(image, previous)
        previous = face or previous
        faces.append(face)
    return faces + [end]


def _lerp(a: Face, b: Face, t: float) -> Face:
    return Face(a.x1 + (b.x1 - a.x1) * t, a.y1 + (b.y1 - a.y1) * t, a.x2 + (b.x2 - a.x2) * t,
                a.y2 + (b.y2 - a.y2) * t, min(a.score, b.score))


def content_hash(path: Path) -> str:
    """BLAKE2b of the file's bytes: the same video under any name or folder gives the same key."""
    digest = hashlib.blake2b(digest_size=20)
    with Path(path).open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class CachedFaces:
    """What the face cache holds for one video: the chosen face of each decoded source frame, and the
    clockwise turn (0, 90, 180, 270) the frames were given first; the boxes are in the turned picture."""

    faces: list[Face | None] = field(default_factory=list)
    turn: int = 0


class FaceCache:
    """The chosen face of every decoded source frame of one video and the turn that showed the face upright,
    stored in ``folder`` as ``.npz`` (faces ``(n, 5)`` float32: x1, y1, x2, y2, score, NaN where there is no
    face; turn), keyed by the video's content and everything that changes which face a frame gets."""

    def __init__(self, folder: Path, video: Path, key_parts: Iterable[object]) -> None:
        self.folder = Path(folder)
        digest = hashlib.blake2b(digest_size=10)
        for part in (CACHE_VERSION, content_hash(video), *key_parts):
            digest.update(repr(part).encode())
        self.path = self.folder / f"{digest.hexdigest()}.npz"

    def load(self) -> list[Face | None]:
        """The stored faces, or [] when there are none (or the file is unreadable: it is then rebuilt)."""
        return self.load_entry().faces

    def load_entry(self) -> CachedFaces:
        """The stored faces and turn; no faces when there are none or the file is unreadable."""
        try:
            data = np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            return CachedFaces()
        except (OSError, ValueError) as exc:
            log.warning("ignoring an unreadable face cache %s (%s)", self.path, exc)
            return CachedFaces()
        if not isinstance(data, np.lib.npyio.NpzFile):
            log.warning("ignoring an unreadable face cache %s (not an .npz archive)", self.path)
            return CachedFaces()
        with data:
            try:
                rows, turn = data["faces"], int(data["turn"])
            except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
                log.warning("ignoring an unreadable face cache %s (%s)", self.path, exc)
                return CachedFaces()
        if rows.ndim != 2 or rows.shape[1] != 5 or turn not in (0, 90, 180, 270):
            return CachedFaces()
        return CachedFaces([None if np.isnan(row[0]) else Face(*map(float, row)) for row in rows], turn)

    def save(self, faces: list[Face | None], turn: int = 0) -> None:
        """Write atomically (a crash leaves the old file or none, never half of one)."""
        rows = np.full((len(faces), 5), np.nan, dtype=np.float32)
        for i, face in enumerate(faces):
            if face is not None:
                rows[i] = (face.x1, face.y1, face.x2, face.y2, face.score)
        self.folder.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=self.folder, prefix=".faces-", suffix=".npz")
        try:
            with os.fdopen(handle, "wb") as out:
                np.savez(out, faces=rows, turn=np.int16(turn))
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
