"""Cheap detection: run the detector on anchor frames only, fill the frames between, and remember the faces of
each source video (and the turn that showed them upright) so that a second job with the same video detects
nothing at all.

Between two anchors the box is interpolated linearly when both found the same face (it barely moves in 1/5 s
of a talking head); when the face was lost or jumped, every frame in between is detected instead.

The face of a frame is a function of the video and the detection options alone, never of the job that asked
for it: the anchors are fixed frame numbers (``Anchors``), the last frame of the video ends the last gap, and a
job that needs only the first frames reads on to the next anchor. So faces kept by one job (any speech, any
engine) are the faces another job would find itself, and a job that starts where the kept faces end goes on
exactly as a job that detected from the first frame.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from heygem.faces.base import Face
from heygem.faces.track import iou
from heygem.media.probe import MediaInfo

log = logging.getLogger(__name__)

T = TypeVar("T")

# Two detections this similar (intersection over union) are the same face, steady enough to interpolate.
SAME_FACE_IOU = 0.6
# 2: the turn is stored beside the faces (.npz); 3: boxes in float64 (the very values a job computes), whether
# the video's end was reached, and fixed anchor frames (``Anchors``); 4: faces detected at the scale of the
# video's face size, which is kept with them; 5: frames shrunk for the detector in two steps (FaceDetector);
# 6: faces found 72 px high, not 96 (FACE_PIXELS).
CACHE_VERSION = 6

DetectOne = Callable[[np.ndarray, "Face | None"], "Face | None"]
"""``detect_one(image, previous_face) -> face or None``: detect and choose the face in one frame."""


@dataclass(frozen=True)
class Anchors:
    """The frames the detector runs on: every ``every``-th frame (0, every, 2 every, ...). Below ``snap_until``
    each of them moves to the nearest multiple of ``snap`` (the lower one on a tie), where faces may already be
    known (the presenter study detects every ``snap``-th frame of its first seconds): there the anchors cost
    no detection. ``every`` 1 (or less) makes every frame an anchor."""

    every: int
    snap: int = 1
    snap_until: int = 0
    _early: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        early: set[int] = set()
        if self.every > self.snap > 1:
            last = (self.snap_until - 1) // self.snap * self.snap  # the last multiple of ``snap`` below snap_until
            for wanted in range(0, self.snap_until, self.every):
                whole, rest = divmod(wanted, self.snap)
                early.add(min(last, (whole + (2 * rest > self.snap)) * self.snap))
        object.__setattr__(self, "_early", frozenset(early))

    def __contains__(self, number: int) -> bool:
        if self.every <= 1:
            return True
        if self._early and number < self.snap_until:
            return number in self._early
        return number % self.every == 0

    def next(self, number: int) -> int:
        """The first anchor at or after frame ``number``."""
        while number not in self:
            number += 1
        return number

    def known_prefix(self, faces: Sequence[Face | None]) -> int:
        """How many of ``faces`` (of frames 0, 1, ...) a job may take and go on from: up to the last anchor
        among them (the frames after it were filled towards an anchor not among them)."""
        last = len(faces) - 1
        while last >= 0 and last not in self:
            last -= 1
        return last + 1


def sparse_detect(
    items: Iterable[tuple[T, np.ndarray]], detect_one: DetectOne, anchors: Anchors | int,
    counter: dict[str, int] | None = None, known: Sequence[Face | None] = (),
) -> Iterator[tuple[T, Face | None]]:
    """``(payload, image)`` of consecutive frames in, ``(payload, face)`` out, in order, detecting on the
    ``anchors`` (an ``Anchors``, or every so many frames) only; the last frame given ends the last gap.

    ``known``: the faces of the frames before the first item, as this function gave them (ending at an
    anchor: ``Anchors.known_prefix``); it then goes on as if it had found them itself. Streams with a delay of
    at most one gap. ``counter["detected"]`` counts detector calls.
    """
    anchors = anchors if isinstance(anchors, Anchors) else Anchors(anchors)
    counter = counter if counter is not None else {}
    counter.setdefault("detected", 0)

    def detect(image: np.ndarray, previous: Face | None) -> Face | None:
        counter["detected"] += 1
        return detect_one(image, previous)

    if anchors.every <= 1:
        previous = next((face for face in reversed(known) if face is not None), None)
        for payload, image in items:
            face = detect(image, previous)
            previous = face or previous
            yield payload, face
        return

    number = len(known)
    last: Face | None = known[-1] if known else None  # the face of the last anchor handed out
    gap: list[tuple[T, np.ndarray]] = []
    for payload, image in items:
        gap.append((payload, image))
        if number in anchors:  # frame 0 always is: a gap of one, detected
            faces = _fill_gap([image for _, image in gap], last, detect)
            yield from zip((payload for payload, _ in gap), faces)
            last, gap = faces[-1], []
        number += 1
    if gap:  # the video ended between two anchors: its last frame ends the gap
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
    """BLAKE2b of the file's bytes: the same video under any name or folder gives the same key. Read once per
    file as it stands (a job keys its faces, its study and its mesh points by it: four reads of the whole video
    otherwise); a file written again has another size, time or inode and is read again."""
    stat = Path(path).stat()
    return _content_hash(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


@functools.lru_cache(maxsize=256)
def _content_hash(path: str, size: int, mtime_ns: int, inode: int) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def cache_name(version: int, video: MediaInfo, key_parts: Iterable[object]) -> str:
    """The name a cache file of ``video`` is kept under: a digest of the cache's version, the video's content,
    everything that changes what is kept (the face cache, the mesh memos, the presenter and footage studies) and
    the tracks read from it (``MediaInfo.tracks``: none for a file with one track of each kind), so that what was
    found on one of a file's pictures is never taken for another's."""
    digest = hashlib.blake2b(digest_size=10)
    for part in (version, content_hash(video.path), *key_parts, *video.tracks):
        digest.update(repr(part).encode())
    return digest.hexdigest()


def save_npz(path: Path, prefix: str, **arrays: object) -> None:
    """``np.savez`` to ``path`` atomically: a crash leaves the old file or none, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **arrays)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass
class CachedFaces:
    """What the face cache holds for one video: the chosen face of each decoded source frame from the first
    (up to an anchor, or to the video's end: ``complete``), and the clockwise turn (0, 90, 180, 270) the frames
    were given first; the boxes are in the turned picture."""

    faces: list[Face | None] = field(default_factory=list)
    turn: int = 0
    complete: bool = False  # the faces run to the video's last frame
    face_height: float | None = None  # the scale the faces were detected at (``Orientation.face_height``)


class FaceCache:
    """The chosen face of every decoded source frame of one video and the turn that showed the face upright,
    stored in ``folder`` as ``.npz`` (faces ``(n, 5)`` float64: x1, y1, x2, y2, score, NaN where there is no
    face; turn; complete), keyed by the video's content and everything that changes which face a frame gets."""

    def __init__(self, folder: Path, video: MediaInfo, key_parts: Iterable[object]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / f"{cache_name(CACHE_VERSION, video, key_parts)}.npz"

    def load(self) -> list[Face | None]:
        """The stored faces, or [] when there are none (or the file is unreadable: it is then rebuilt)."""
        return self.load_entry().faces

    def load_entry(self) -> CachedFaces:
        """The stored faces, turn and whether they reach the video's end; no faces when there are none or the
        file is unreadable."""
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
                rows, turn, complete = data["faces"], int(data["turn"]), bool(data["complete"])
                face_height = float(data["face_height"])
            except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
                log.warning("ignoring an unreadable face cache %s (%s)", self.path, exc)
                return CachedFaces()
        if rows.ndim != 2 or rows.shape[1] != 5 or turn not in (0, 90, 180, 270):
            return CachedFaces()
        return CachedFaces([None if np.isnan(row[0]) else Face(*map(float, row)) for row in rows], turn, complete,
                           None if np.isnan(face_height) else face_height)

    def save(self, faces: list[Face | None], turn: int = 0, complete: bool = False,
             face_height: float | None = None) -> None:
        """Write atomically (a crash leaves the old file or none, never half of one). ``complete``: ``faces``
        run to the video's last frame; ``face_height``: the scale they were detected at, for the frames a later
        job detects beyond them."""
        rows = np.full((len(faces), 5), np.nan, dtype=np.float64)
        for i, face in enumerate(faces):
            if face is not None:
                rows[i] = (face.x1, face.y1, face.x2, face.y2, face.score)
        save_npz(self.path, ".faces-", faces=rows, turn=np.int16(turn), complete=np.bool_(complete),
                 face_height=np.float64(np.nan if face_height is None else face_height))
