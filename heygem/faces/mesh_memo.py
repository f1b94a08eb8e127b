"""Face mesh points already found on a video's face crops, kept beside its faces.

The built-in engine runs the face mesh on every frame's crop (about 1.5 ms of CPU a frame, 2.2 s of a prepared
presenter's 60 s job). A presenter's crops are the same in every job (the faces of a video are a function of
the video and the detection options: heygem.faces.schedule), so a second job with any speech, or the first
after the presenter was prepared (heygem.pipeline.prepare_presenter), finds each crop's points here instead;
a first job finds those of the seconds its presenter study passed (heygem.study). An entry is keyed by the
crop's bytes and the points it was tracked from: what comes back is exactly what the mesh would find,
whatever the options, the turn or the path through the video (a loop, a ping-pong) that led to the crop.
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from heygem.faces.schedule import cache_name, save_npz
from heygem.media.probe import MediaInfo

log = logging.getLogger(__name__)

__all__ = ["MeshMemo", "mesh_memo"]

MEMO_VERSION = 1
# A video's file keeps at most this many crops (a 10-minute video at 25 fps, twice over): beyond it nothing is
# added, so a file cannot grow without bound under ever new detection options.
MAX_ENTRIES = 30_000

Points = np.ndarray  # (N, 2) float32, crop pixels


class MeshMemo:
    """Points by (crop, previous points); ``None`` results (no face found) are kept too."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._found: dict[bytes, Points | None] = {}
        self._added = 0
        self._from_file: frozenset[bytes] = frozenset()
        self.hits = 0  # crops whose points were found here
        self.kept_hits = 0  # of them, found by earlier jobs (read from the file), not earlier in this one
        if path is not None:
            self._load(path)

    def __len__(self) -> int:
        return len(self._found)

    def points(self, crop: np.ndarray, previous: Points | None, find: Callable[[], Points | None]) -> Points | None:
        """The points ``find()`` gives for ``crop`` tracked from ``previous``: kept, or found now and kept."""
        digest = hashlib.sha256(np.ascontiguousarray(crop).data)
        digest.update(b"-" if previous is None else np.ascontiguousarray(previous, dtype=np.float32).tobytes())
        key = digest.digest()
        if key in self._found:
            self.hits += 1
            self.kept_hits += key in self._from_file
            return self._found[key]
        found = find()
        if len(self._found) < MAX_ENTRIES:
            self._found[key] = None if found is None else np.asarray(found, dtype=np.float32)
            self._added += 1
        return found

    def save(self) -> None:
        """Write what was added (atomically); nothing to do when nothing was, or without a path."""
        if self.path is None or not self._added:
            return
        keys = list(self._found)
        found = [self._found[key] for key in keys]
        shape = next((p.shape for p in found if p is not None), (0, 2))
        points = np.stack([np.zeros(shape, np.float32) if p is None else p for p in found])
        try:
            save_npz(self.path, ".mesh-", keys=np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), -1),
                     points=points, found=np.array([p is not None for p in found]))
        except OSError as exc:  # a full disk or a read-only folder costs the next job the mesh, nothing else
            log.warning("face mesh points not kept (%s): the next job with this video finds them again", exc)
            return
        log.debug("kept the face mesh points of %d crops (%d new) in %s", len(keys), self._added, self.path)
        self._added = 0

    def _load(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, points, found = data["keys"], data["points"], data["found"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring unreadable face mesh points %s (%s)", path, exc)
            return
        if not (len(keys) == len(points) == len(found)):
            log.warning("ignoring face mesh points %s: its arrays disagree in length", path)
            return
        self._found = {bytes(key): (p if ok else None) for key, p, ok in zip(keys, points, found)}
        self._from_file = frozenset(self._found)


def mesh_memo(folder: Path | None, video: MediaInfo, key_parts: tuple = ()) -> MeshMemo:
    """The memo of ``video`` kept in ``folder`` (one in memory only without a folder)."""
    if folder is None:
        return MeshMemo()
    return MeshMemo(Path(folder) / f"{cache_name(MEMO_VERSION, video, key_parts)}.npz")
