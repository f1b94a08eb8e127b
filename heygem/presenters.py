"""The presenters library: a video or photo of a person, added once under a name, prepared once, picked by id.

Adding a presenter probes the file (a bad file is refused at once, by its name), copies it to
``outputs/presenters/<id>/`` and records it ``preparing`` in ``outputs/heygem.db``, the queue's database. The
queue's worker (which owns the CPU/GPU) prepares presenters before any lip-sync job: the face on every frame
goes into the face cache and the presenter study into the study cache, under the keys a job uses, so a job
with a ready presenter starts straight at lip-syncing. A presenter ends ``ready`` (faces found, a thumbnail)
or ``failed`` with a reason; one left ``preparing`` when the program stopped is prepared again at the next start.

A job never reads the presenter's own file: ``JobQueue.submit`` gives each job its own link (or copy) in the
batch's inputs, so deleting or renaming a presenter never changes a queued job.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from heygem.errors import CancelledError, CodedText, HeyGemError, InputError, printable
from heygem.limits import check_picture, queue_full, stored_on_disk
from heygem.media.probe import probe, require_video_source
from heygem.pipeline import PresenterPrep, ThrottledProgress, prepare_presenter
from heygem.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["FAILED", "PREPARING", "READY", "Presenter", "PresenterNotReadyError", "Presenters", "UnknownPresenterError"]

PREPARING, READY, FAILED = "preparing", "ready", "failed"
# Preparing a file that crashes the process itself is not tried at every start forever.
MAX_ATTEMPTS = 3
NAME_CHARS = 80
THUMBNAIL = "thumbnail.jpg"

SCHEMA = """
CREATE TABLE IF NOT EXISTS presenters (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    file_name TEXT NOT NULL,
    video_path TEXT NOT NULL,
    kind TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    duration REAL NOT NULL,
    frames INTEGER NOT NULL,
    faces_found INTEGER,
    thumbnail TEXT,
    state TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_params TEXT NOT NULL DEFAULT '{}',
    notes TEXT NOT NULL DEFAULT '[]',
    note_codes TEXT NOT NULL DEFAULT '[]'
);
"""
# Columns added since the table was first made, for databases made before them: (name, declaration).
_ADDED_COLUMNS = (("error_code", "TEXT"), ("error_params", "TEXT NOT NULL DEFAULT '{}'"),
                  ("notes", "TEXT NOT NULL DEFAULT '[]'"), ("note_codes", "TEXT NOT NULL DEFAULT '[]'"))

Preparer = Callable[..., PresenterPrep]


class UnknownPresenterError(InputError):
    """A job names a presenter id there is none of."""


class PresenterNotReadyError(HeyGemError):
    """A job picks a presenter whose preparation failed."""


@dataclass(frozen=True)
class Presenter:
    """One presenter, as stored."""

    id: str
    name: str
    created: float
    file_name: str  # the file's name as uploaded
    video_path: Path  # the stored copy
    kind: str  # video or image
    width: int
    height: int
    duration: float
    frames: int  # probed; the decoded count once prepared
    faces_found: int | None  # frames with a face, once prepared
    thumbnail: Path | None
    state: str
    stage: str
    progress: float
    error: str | None
    # The failure's reason as a code and its values (heygem.errors), for a page in another language.
    error_code: str | None = None
    error_params: dict[str, Any] = field(default_factory=dict)
    # What preparing found that its jobs' results will say too (a video missing its last frames), in English and
    # as codes with their values (heygem.errors.CodedText; None for a note without a code), as a job's notes.
    notes: list[str] = field(default_factory=list)
    note_codes: list[tuple[str, dict[str, Any]] | None] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """What the HTTP API shows: no server paths."""
        return {
            "id": self.id, "name": self.name, "created": self.created, "file": self.file_name, "kind": self.kind,
            "width": self.width, "height": self.height, "duration": round(self.duration, 3), "frames": self.frames,
            "faces_found": self.faces_found, "state": self.state, "stage": self.stage,
            "progress": round(self.progress, 3), "error": self.error, "error_code": self.error_code,
            "error_params": self.error_params, "notes": self.notes, "note_codes": self.note_codes,
            "thumbnail": f"/api/presenters/{self.id}/thumbnail" if self.thumbnail else None,
        }


def clean_name(name: str, fallback: str) -> str:
    """A presenter's name as shown: one line (no control characters, no marks that reorder text), trimmed. A name
    of more than NAME_CHARS characters is refused (InputError saying so, rather than a name cut where the person
    did not choose); without one, ``fallback`` (the file's name) cut to NAME_CHARS."""
    cleaned = re.sub(r"\s+", " ", printable(name)).strip()
    if len(cleaned) > NAME_CHARS:
        raise InputError("name", f"a presenter's name has at most {NAME_CHARS} characters; this one has "
                                 f"{len(cleaned)}", "name_too_long", chars=len(cleaned), limit=NAME_CHARS)
    return cleaned or re.sub(r"\s+", " ", fallback).strip()[:NAME_CHARS]


class Presenters:
    """The presenters table and folder. Shares the job queue's connection and lock (one truth in SQLite).

    defaults: the settings jobs run with by default; preparation uses their detection options, so the keys
    of the caches it fills are the jobs' keys. pending_jobs: the queue's unfinished jobs, which count with the
    presenters waiting toward ``Limits.queued_jobs`` (the one worker does both).
    """

    def __init__(self, root: Path, db: sqlite3.Connection, lock: threading.RLock, changed: threading.Condition,
                 defaults: Callable[[], Settings], prepare: Preparer = prepare_presenter,
                 pending_jobs: Callable[[], int] = lambda: 0) -> None:
        self.root = Path(root)
        self.folder = self.root / "presenters"
        self._db, self._lock, self._changed = db, lock, changed
        self._defaults = defaults
        self._prepare = prepare
        self._pending_jobs = pending_jobs
        with self._lock:
            self._db.executescript(SCHEMA)
            known = {row[1] for row in self._db.execute("PRAGMA table_info(presenters)")}
            for column, declaration in _ADDED_COLUMNS:
                if column not in known:
                    self._db.execute(f"ALTER TABLE presenters ADD COLUMN {column} {declaration}")

    # ---- what front ends call -----------------------------------------------------------------------------

    def add(self, source: Path | str, name: str = "", file_name: str | None = None) -> Presenter:
        """Probe and copy a video or photo and queue its preparation; InputError naming ``file_name`` for a file
        that is not a video or photo, or is over the limits."""
        source = Path(source)
        file_name = file_name or source.name
        try:
            info = require_video_source(probe(source))
        except InputError as exc:
            raise exc.naming(file_name) from None
        limits = self._defaults().limits
        check_picture(info, limits, file_name)
        refusal = queue_full(file_name, self._pending_jobs(), self.waiting(), 1, limits)
        if refusal is not None:
            raise refusal
        name = clean_name(name, Path(file_name).stem or "presenter")  # a name it refuses stores nothing
        presenter_id = uuid.uuid4().hex[:12]
        suffix = re.sub(r"[^a-z0-9.]", "", Path(file_name).suffix.lower())[:8] or ".mp4"
        target = self.folder / presenter_id / f"presenter{suffix}"
        with stored_on_disk(file_name, self.folder, limits, needed=source.stat().st_size, partial=target.parent):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        with self._lock:
            self._db.execute(
                "INSERT INTO presenters (id, name, created, file_name, video_path, kind, width, height, duration, "
                "frames, state, stage) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued')",
                (presenter_id, name, time.time(), file_name, self._relative(target), info.kind, info.width,
                 info.height, float(info.duration or 0.0), int(info.frame_count), PREPARING))
            self._changed.notify_all()
        log.info("presenter %s added: %s (%s), queued for preparation", presenter_id, name, file_name)
        return self.get(presenter_id)

    def get(self, presenter_id: str) -> Presenter:
        """One presenter; KeyError if there is none with this id."""
        with self._lock:
            row = self._db.execute("SELECT * FROM presenters WHERE id = ?", (presenter_id,)).fetchone()
        if row is None:
            raise KeyError(presenter_id)
        return self._presenter(row)

    def list(self) -> list[Presenter]:
        """Every presenter, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM presenters ORDER BY created, id").fetchall()
        return [self._presenter(row) for row in rows]

    def rename(self, presenter_id: str, name: str) -> Presenter:
        """A new name (KeyError for an unknown id; InputError for a blank name). Jobs already queued keep theirs."""
        cleaned = clean_name(name, "")
        if not cleaned:
            raise InputError("name", "a presenter's name cannot be empty")
        with self._lock:
            if self._db.execute("UPDATE presenters SET name = ? WHERE id = ?", (cleaned, presenter_id)).rowcount == 0:
                raise KeyError(presenter_id)
        return self.get(presenter_id)

    def delete(self, presenter_id: str) -> None:
        """Remove a presenter and its files at once, whatever its state: its jobs have their own copies, and a
        preparation under way stops at its next progress step. Its cache entries stay (keyed by content, they
        serve any job with the same file)."""
        with self._lock:
            presenter = self.get(presenter_id)
            self._db.execute("DELETE FROM presenters WHERE id = ?", (presenter_id,))
            self._changed.notify_all()
        shutil.rmtree(presenter.video_path.parent, ignore_errors=True)
        log.info("presenter %s deleted (%s)", presenter_id, presenter.name)

    def for_jobs(self, presenter_ids: Sequence[str]) -> list[Presenter]:
        """The presenters a job picks, in order. UnknownPresenterError naming an unknown id; PresenterNotReadyError
        for one that failed. One still preparing is fine: the worker prepares presenters before any job."""
        picked = []
        for presenter_id in presenter_ids:
            try:
                presenter = self.get(presenter_id.strip())
            except KeyError:
                raise UnknownPresenterError(presenter_id, "there is no presenter with this id", "unknown_presenter") from None
            if presenter.state == FAILED:
                raise PresenterNotReadyError(f"presenter {presenter.name} ({presenter.id}) could not be prepared: "
                                             f"{presenter.error}; add it again with another file",
                                             code="presenter_failed", params={"name": presenter.name})
            picked.append(presenter)
        return picked

    # ---- what the worker calls ----------------------------------------------------------------------------

    def waiting(self) -> int:
        """How many presenters wait to be prepared (or are being prepared)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM presenters WHERE state = ?", (PREPARING,)).fetchone()[0]

    def oldest_waiting(self) -> float | None:
        """When the oldest presenter waiting for its preparation was added (None: none waits)."""
        with self._lock:
            row = self._db.execute("SELECT MIN(created) FROM presenters WHERE state = ?", (PREPARING,)).fetchone()
        return row[0]

    def prepare_next(self) -> bool:
        """Prepare the oldest presenter waiting for it, in this (the worker's) thread; False when none waits."""
        presenter = self._claim_next()
        if presenter is None:
            return False
        started = time.perf_counter()
        reporter = _ProgressWriter(self, presenter.id)
        try:
            prep = self._prepare(presenter.video_path, self._defaults(), reporter)
        except CancelledError:
            log.info("presenter %s was deleted while being prepared", presenter.id)
        except HeyGemError as exc:
            reason = str(exc).replace(str(presenter.video_path), presenter.file_name)
            params = {key: presenter.file_name if key == "file" else value for key, value in exc.params.items()}
            self._fail(presenter.id, reason, exc.code, params)
            log.warning("presenter %s could not be prepared: %s", presenter.id, reason, exc_info=log.isEnabledFor(logging.DEBUG))
        except Exception as exc:
            log.exception("presenter %s: preparation failed unexpectedly", presenter.id)
            self._fail(presenter.id, f"{presenter.file_name}: unexpected error ({exc}); details in logs/heygem.log",
                       "unexpected", {"file": presenter.file_name})
        else:
            thumbnail = presenter.video_path.parent / THUMBNAIL
            cv2.imwrite(str(thumbnail), prep.thumbnail, [cv2.IMWRITE_JPEG_QUALITY, 90])
            stored = presenter.video_path.name
            notes = [str(note).replace(stored, presenter.file_name) for note in prep.notes]
            note_codes = [(note.code, {key: presenter.file_name if key == "file" else value
                                       for key, value in note.params.items()}) if isinstance(note, CodedText) else None
                          for note in prep.notes]
            with self._lock:
                self._db.execute(
                    "UPDATE presenters SET state = ?, stage = 'ready', progress = 1, frames = ?, faces_found = ?, "
                    "thumbnail = ?, error = NULL, notes = ?, note_codes = ? WHERE id = ?",
                    (READY, prep.frames, prep.frames_with_face, self._relative(thumbnail), json.dumps(notes),
                     json.dumps(note_codes), presenter.id))
                self._changed.notify_all()
            log.info("presenter %s ready in %.1f s: face in %d of %d frames (face cache %s, study %s)", presenter.id,
                     time.perf_counter() - started, prep.frames_with_face, prep.frames, prep.face_cache, prep.study)
        return True

    def _claim_next(self) -> Presenter | None:
        with self._lock:
            while True:
                row = self._db.execute("SELECT * FROM presenters WHERE state = ? ORDER BY created LIMIT 1",
                                       (PREPARING,)).fetchone()
                if row is None:
                    return None
                if row["attempts"] < MAX_ATTEMPTS:
                    break
                self._fail(row["id"], f"{row['file_name']}: the program stopped while preparing this presenter "
                                      f"{row['attempts']} times; it was not tried again", "interrupted",
                           {"file": row["file_name"], "attempts": row["attempts"]})
            self._db.execute("UPDATE presenters SET attempts = attempts + 1, stage = 'starting', progress = 0 "
                             "WHERE id = ?", (row["id"],))
            return self.get(row["id"])

    def _fail(self, presenter_id: str, reason: str, code: str | None = None, params: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE presenters SET state = ?, stage = 'failed', error = ?, error_code = ?, "
                             "error_params = ? WHERE id = ?", (FAILED, reason, code, json.dumps(params or {}), presenter_id))
            self._changed.notify_all()

    def _set_progress(self, presenter_id: str, stage: str, fraction: float) -> bool:
        """Record progress; False when the presenter was deleted meanwhile."""
        with self._lock:
            updated = self._db.execute("UPDATE presenters SET stage = ?, progress = ? WHERE id = ?",
                                       (stage, max(0.0, min(1.0, fraction)), presenter_id)).rowcount
            self._changed.notify_all()
        return bool(updated)

    # ---- rows <-> objects ---------------------------------------------------------------------------------

    def _relative(self, path: Path) -> str:
        return os.path.relpath(Path(path).resolve(), self.root.resolve())

    def _presenter(self, row: sqlite3.Row) -> Presenter:
        return Presenter(
            id=row["id"], name=row["name"], created=row["created"], file_name=row["file_name"],
            video_path=self.root / row["video_path"], kind=row["kind"], width=row["width"], height=row["height"],
            duration=row["duration"], frames=row["frames"], faces_found=row["faces_found"],
            thumbnail=self.root / row["thumbnail"] if row["thumbnail"] else None, state=row["state"],
            stage=row["stage"], progress=row["progress"], error=row["error"], error_code=row["error_code"],
            error_params=json.loads(row["error_params"]), notes=json.loads(row["notes"]),
            note_codes=[tuple(coded) if coded else None for coded in json.loads(row["note_codes"])],
        )


class _ProgressWriter(ThrottledProgress):
    """The progress callback preparation calls: writes the stage, stops when the presenter was deleted."""

    def __init__(self, presenters: Presenters, presenter_id: str) -> None:
        super().__init__(lambda stage, fraction: None if presenters._set_progress(presenter_id, stage, fraction)
                         else "the presenter was deleted")
