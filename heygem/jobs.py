"""The job queue: one FIFO of lip-sync jobs, one worker thread that owns the GPU (or CPU), state in SQLite.

A job's whole life, in the order it happens:

1. ``submit`` copies the uploads into ``outputs/batches/<batch>/inputs/`` (so a restart can still read
   them) and records one job per video, ``queued``, in ``outputs/heygem.db``. A single video is a batch of one.
   A presenter from the library (heygem.presenters, prepared by this worker before any job) counts as a video.
2. The worker claims the oldest queued job (``running``), prepares the batch's speech once (decoded audio
   and mel features are kept for the next job of the same batch) and calls ``heygem.generate``, writing
   the stage and progress back to the database as it goes.
3. The job ends ``succeeded`` (its result beside the inputs), ``failed`` (with a reason a person can read,
   naming the file as it was uploaded) or ``cancelled``; the worker goes on with the next one.

A backend (``Backend``; heygem.cluster runs jobs on Ray workers over many GPUs and machines) may stand in for
the worker thread: its workers claim and run jobs through the same ``run_next``, and the database stays the one
truth.

Nothing lives only in memory: a new ``JobQueue`` over the same folder finds queued jobs still queued, runs
again a job that was running when the process died (after removing what it had half written), and lists
every finished result. One folder has one owner: a ``JobQueue`` holds ``outputs/heygem.lock`` for its whole
life, and a second one over the same folder (another studio, say) is refused with the holder's process id.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import socket
import sqlite3
import stat
import tempfile
import threading
import time
import traceback
import uuid
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import portalocker

from heygem.engines import wav2lip_available
from heygem.errors import CancelledError, CodedText, HeyGemError, InputError, printable
from heygem.estimates import Estimator, JobSize, StageClock, StageRates, job_size, machine_of, rates_key
from heygem.limits import NO_SPACE_WORDS, check_inputs, disk_filled, queue_full, stored_on_disk
from heygem.pipeline import GenerateResult, PreparedAudio, ThrottledProgress, generate, prepare_audio
from heygem.presenters import Presenters
from heygem.settings import OUTPUTS_DIR, Settings, settings_from_dict, settings_to_dict

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED = frozenset({SUCCEEDED, FAILED, CANCELLED})
# Finished without a result: such a job keeps the stage it stopped in (the page's bar shows where); the API
# shows its state as its stage.
STOPPED = frozenset({FAILED, CANCELLED})

# A job that was running when the process died is run again, but not forever: a file that crashes the
# process itself (not merely fails) would otherwise take the queue down at every start.
MAX_ATTEMPTS = 3
DB_NAME = "heygem.db"
# The stage generate reports once its result file is complete and in place.
DONE_STAGE = "done"
LOCK_NAME = "heygem.lock"
# The stage a running job shows from the moment a cancel is asked until it stops.
CANCELLING_STAGE = "cancelling"

Runner = Callable[..., GenerateResult]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    audio_name TEXT NOT NULL,
    audio_path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    batch_id TEXT NOT NULL REFERENCES batches(id),
    state TEXT NOT NULL,
    video_name TEXT NOT NULL,
    video_path TEXT NOT NULL,
    settings TEXT NOT NULL,
    output TEXT,
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    engine TEXT,
    notes TEXT NOT NULL DEFAULT '[]',
    timings TEXT NOT NULL DEFAULT '{}',
    face_cache TEXT,
    study TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error_code TEXT,
    error_params TEXT NOT NULL DEFAULT '{}',
    note_codes TEXT NOT NULL DEFAULT '[]',
    engine_info TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_by_batch ON jobs(batch_id, seq);
"""
# Columns added since the first release, for databases made before them: (name, declaration).
_ADDED_COLUMNS = (("face_cache", "TEXT"), ("study", "TEXT"), ("error_code", "TEXT"),
                  ("error_params", "TEXT NOT NULL DEFAULT '{}'"), ("note_codes", "TEXT NOT NULL DEFAULT '[]'"),
                  ("worker", "TEXT"), ("engine_info", "TEXT"))


# How a multipart form writes a file name's quote, CR and LF (the HTML standard's form encoding, which browsers
# and curl since 7.81 follow); the form parsers (Starlette's, Gradio's) hand the name on still encoded.
_FORM_ESCAPES = {"%22": '"', "%0d": "\r", "%0a": "\n"}


def form_file_name(name: str) -> str:
    """A file name from a multipart upload, as its owner named it: ``a%22b.mp4`` is ``a"b.mp4``. Only the three
    escapes a form uses are undone (a name with a literal ``%22`` arrives the same way; the standard accepts that)."""
    return re.sub(r"%(22|0[dDaA])", lambda escape: _FORM_ESCAPES[escape.group(0).lower()], name)


def shown_name(name: str, fallback: str) -> str:
    """An uploaded file's name as a person is shown it, and as it is stored and logged: as its owner wrote it
    (``form_file_name``), without control characters or marks that reorder text (``heygem.errors.printable``);
    ``fallback`` where nothing is left."""
    return printable(form_file_name(name)).strip() or fallback


def safe_name(name: str, fallback: str = "file") -> str:
    """A user's file name reduced to its last component and to letters, digits, ``.``, ``-`` and ``_``.

    Nothing a user names can become a path: ``../../etc/passwd`` gives ``passwd``, ``C:\\x\\a b.mp4`` gives
    ``a_b.mp4``. Letters of any script are kept, so Chinese names stay readable. A name still in a form's
    encoding is read as its owner wrote it first, so a quote becomes ``_`` like any other sign, not ``_22``.
    """
    last = re.split(r"[\\/]", form_file_name(name).strip())[-1]
    cleaned = re.sub(r"[^\w.-]+", "_", last).strip("._")
    return cleaned[:120] or fallback


def _add_regular_file(archive: zipfile.ZipFile, path: Path) -> None:
    """Store ``path`` in ``archive`` under its name, if it still is a regular file when opened: O_NOFOLLOW, so a
    symlink swapped in after the check is not followed (it is left out, and logged)."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        log.error("left %s out of the ZIP: %s", path, exc)
        return
    with os.fdopen(handle, "rb") as source:
        facts = os.fstat(source.fileno())
        if not stat.S_ISREG(facts.st_mode):
            log.error("left %s out of the ZIP: not a regular file", path)
            return
        entry = zipfile.ZipInfo(path.name, time.localtime(facts.st_mtime)[:6])
        entry.file_size = facts.st_size  # lets the archive choose ZIP64 for a large file before writing it
        entry.external_attr = (facts.st_mode & 0xFFFF) << 16
        with archive.open(entry, "w") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)


def _zip_holds(archive: Path, results: list[Path]) -> bool:
    """Whether the ZIP at ``archive`` holds exactly ``results``, in order, as they are now (the same names and
    sizes, none changed since it was written)."""
    try:
        written = archive.stat().st_mtime_ns
        with zipfile.ZipFile(archive) as held:
            entries = [(entry.filename, entry.file_size) for entry in held.infolist()]
        now = [(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in results]
    except (OSError, zipfile.BadZipFile):
        return False
    return entries == [(name, size) for name, size, _ in now] and all(changed <= written for *_, changed in now)


def _regular_file(path: Path) -> bool:
    """A regular file itself, not a symlink to one (nor a folder, a pipe, a device)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def servable(path: Path | None, root: Path) -> bool:
    """May ``path`` be sent to a client: a regular file, never a symlink (whatever it points at), lying inside
    ``root`` by its real location (no linked folder on the way leads out). Results, ZIPs and thumbnails are
    served only so."""
    return path is not None and _regular_file(path) and path.resolve().is_relative_to(root.resolve())


@dataclass(frozen=True)
class Job:
    """One video of a batch, as stored."""

    id: str
    batch_id: str
    seq: int
    state: str
    audio_name: str  # the speech file's name as uploaded
    video_name: str  # the video's or photo's name as uploaded
    audio_path: Path  # the stored copies the worker reads
    video_path: Path
    output: Path | None
    stage: str  # the stage it is in; for a failed or cancelled job, the stage it stopped in
    progress: float  # 0..1 of the stage
    error: str | None
    engine: str | None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    face_cache: str | None = None  # off, miss, hit or partial: whether faces were detected (GenerateResult)
    study: str | None = None  # off, made or cached: whether the presenter was studied
    created: float = 0.0
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    cancel_requested: bool = False
    worker: str | None = None  # which worker runs or ran it (a Backend's name for it; None: this process's own)
    # The failure's reason and the notes as codes with their values (heygem.errors), for a front end that words
    # them in its own language; ``error`` and ``notes`` are the English words. note_codes: one per note, None for
    # a note with no code.
    error_code: str | None = None
    error_params: dict[str, Any] = field(default_factory=dict)
    note_codes: list[tuple[str, dict[str, Any]] | None] = field(default_factory=list)
    # ``engine`` as data (heygem.engines.base.EngineDescription.to_dict), for a front end to word in its own
    # language; None for a job not run yet, or finished before the engines described themselves so.
    engine_info: dict[str, Any] | None = None

    @property
    def cancelling(self) -> bool:
        """A cancel was asked for and the job has not stopped yet: it stops at its next progress step."""
        return self.state == RUNNING and self.cancel_requested

    @property
    def finished_ok(self) -> bool:
        """Succeeded, with its result in place: a regular file (a symlink put there is no result to serve)."""
        return self.state == SUCCEEDED and self.output is not None and _regular_file(self.output)

    def to_json(self) -> dict[str, Any]:
        """What the HTTP API shows: no server paths, only names. A running job asked to cancel shows
        ``"cancelling": true`` and the stage ``cancelling`` until it stops (then ``"state": "cancelled"``)."""
        return {
            "id": self.id, "batch_id": self.batch_id, "state": self.state,
            "stage": CANCELLING_STAGE if self.cancelling else self.state if self.state in STOPPED else self.stage,
            "cancelling": self.cancelling,
            "progress": round(self.progress, 3), "audio": self.audio_name, "video": self.video_name,
            "result": self.output.name if self.output else None, "error": self.error,
            "error_code": self.error_code, "error_params": self.error_params, "engine": self.engine,
            "engine_info": self.engine_info,
            "notes": self.notes, "timings": self.timings, "face_cache": self.face_cache, "study": self.study,
            "created": self.created, "started": self.started,
            "finished": self.finished, "attempts": self.attempts, "worker": self.worker,
        }


@dataclass(frozen=True)
class Batch:
    """One speech recording with one or more videos; each video is its own job."""

    id: str
    created: float
    audio_name: str
    jobs: list[Job]

    @property
    def counts(self) -> dict[str, int]:
        return {state: sum(job.state == state for job in self.jobs) for state in STATES}

    @property
    def done(self) -> bool:
        return all(job.state in FINISHED for job in self.jobs)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "created": self.created, "audio": self.audio_name, "done": self.done,
            "counts": self.counts, "jobs": [job.to_json() for job in self.jobs],
        }


class WorkerLostError(HeyGemError):
    """The worker running a job went away (its process or machine died): the job goes back to the queue."""


class Backend(Protocol):
    """What runs the queued jobs. The default is one thread in this process (``JobQueue`` itself); another
    (heygem.cluster) hands jobs to workers elsewhere, each through ``JobQueue.run_next``. The database stays
    the one truth either way."""

    def start(self, queue: JobQueue) -> None: ...

    def close(self, timeout: float | None) -> None: ...

    def workers(self) -> list[dict[str, Any]]:
        """One entry per worker, for the status: name, host, device, engine, job (running now), done."""
        ...


class FolderInUseError(HeyGemError):
    """Another process already owns the outputs folder (its queue, database and files)."""


class _FolderLock:
    """An exclusive lock on ``folder/heygem.lock``, held while the process lives (the system lets it go when
    the process dies, however it dies). The file names its holder, for the message a second owner gets."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_NAME
        handle: IO[str] = open(self.path, "a+", encoding="utf-8")
        try:
            portalocker.lock(handle, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.exceptions.LockException:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FolderInUseError(
                f"{folder} is in use by another HeyGem studio or queue ({holder}); one folder has one owner: "
                "stop that one first, or give this one another outputs folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            portalocker.unlock(self._handle)
            self._handle.close()
            self._handle = None


class JobQueue:
    """The FIFO queue and its single worker thread. Thread-safe; every front end shares one instance.

    root: the outputs folder; holds ``heygem.db`` and ``batches/``.
    defaults: settings for jobs submitted without their own.
    run: what runs one job (``heygem.generate``; tests may pass a wrapper).
    start: start the worker now (tests may start it later with ``start()``).
    backend: who runs the jobs instead of this process's own worker thread (heygem.cluster).
    """

    def __init__(
        self, root: Path = OUTPUTS_DIR, defaults: Settings | None = None, *, run: Runner = generate, start: bool = True,
        backend: Backend | None = None,
    ) -> None:
        self.root = Path(root)
        self.batches_dir = self.root / "batches"
        self.batches_dir.mkdir(parents=True, exist_ok=True)
        self._folder_lock = _FolderLock(self.root)  # first: nothing is read or changed without owning the folder
        self.defaults = defaults or Settings()
        self._run = run
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._db = sqlite3.connect(self.root / DB_NAME, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        known = {row["name"] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for column, declaration in _ADDED_COLUMNS:
            if column not in known:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {declaration}")
        self.presenters = Presenters(self.root, self._db, self._lock, self._changed, lambda: self.defaults,
                                     pending_jobs=self.pending)
        # How long each stage takes here (heygem.estimates): the clocks of running jobs, the rates measured.
        self.rates = StageRates(self._db, self._lock)
        self._clocks: dict[str, StageClock] = {}
        self._engines: dict[str, str] = {}
        self._warm: set[tuple[str, str]] = set()  # (worker, engine) that have run a job: models loaded
        self.estimator = Estimator(self.rates, self._clocks, self._engine_of,
                                   lambda: max(1, len(self.workers())), time.monotonic, self.defaults.still_fps)
        self._audio_cache: OrderedDict[Path, PreparedAudio] = OrderedDict()
        self._zipping: dict[str, threading.Lock] = {}  # per batch: one ZIP written at a time, the others wait for it
        self._zip_writers: dict[str, threading.Thread] = {}  # per batch: the thread writing its ZIP once it is over
        self.backend = backend
        self._stopping = threading.Event()
        self._worker: threading.Thread | None = None
        self._recover()
        if start:
            self.start()

    # ---- life of the worker -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (once), or the backend."""
        if self.backend is not None:
            self.backend.start(self)
            return
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._stopping.clear()
                self._worker = threading.Thread(target=self._work, name="heygem-worker", daemon=True)
                self._worker.start()

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop after the current job (a running job is left ``running`` and is run again at the next start)."""
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():  # the process is ending anyway: say what is left, and that nothing is lost
                with self._lock:
                    left = self._db.execute("SELECT id, video_name FROM jobs WHERE state = ?", (RUNNING,)).fetchall()
                for row in left:
                    log.warning("stopped while job %s (%s) was running: it is queued again at the next start",
                                row["id"], row["video_name"])
        if self.backend is not None:
            self.backend.close(timeout)
        with self._lock:
            self._db.close()
        self._folder_lock.release()

    def _recover(self) -> None:
        """Make the stored state true again after the process died: running jobs go back to the queue."""
        with self._lock:
            rows = self._db.execute("SELECT id, video_name, attempts, cancel_requested FROM jobs WHERE state = ?", (RUNNING,)).fetchall()
            for row in rows:
                state = self._after_a_stop(row["id"], row["video_name"], row["attempts"], bool(row["cancel_requested"]),
                                           "the program stopped while working on this job", "interrupted")
                if state == QUEUED:
                    log.warning("job %s (%s) was running when the program stopped; it is queued again", row["id"], row["video_name"])
            queued = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (QUEUED,)).fetchone()[0]
            outputs = {row[0] for row in self._db.execute("SELECT output FROM jobs WHERE output IS NOT NULL")}
        self._remove_leftovers(outputs)
        if queued:
            log.info("%d queued job(s) found in %s", queued, self.root / DB_NAME)

    def _remove_leftovers(self, outputs: set[str]) -> None:
        """Remove what a process that died left half done: partial results and ZIPs, upload folders, and a
        result that was complete on disk but never recorded (its job runs again and writes it anew, so it
        would otherwise be there twice). Safe only because this process owns the folder."""
        leftovers: list[Path] = [*self.root.glob(".upload-*")]
        for batch_dir in self.batches_dir.iterdir():
            if not batch_dir.is_dir():
                continue
            leftovers += batch_dir.glob(".*.partial.mp4")
            leftovers += batch_dir.glob(".zip-*.partial")
            leftovers += [result for result in batch_dir.glob("*.mp4") if self._relative(result) not in outputs]
        for path in leftovers:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            log.warning("removed %s, left half done when the program stopped", self._relative(path))

    def _work(self) -> None:
        log.info("worker started")
        while not self._stopping.is_set():
            # First come, first served across presenters to prepare and jobs to run: a job picking a presenter
            # still preparing came after it, so finds its faces and study kept; and presenters added in numbers
            # (each up to the video length limit) cannot hold back the jobs queued before them, as they did when
            # every waiting presenter went first.
            presenter, job = self.presenters.oldest_waiting(), self._oldest_queued()
            if presenter is not None and (job is None or presenter <= job):
                try:
                    self.presenters.prepare_next()
                except Exception:  # never let one presenter take the worker down (its attempts are counted)
                    log.exception("preparing a presenter failed in the queue itself")
                continue
            if not self.run_next(self._run):
                self.wait_for_work(1.0)
        log.info("worker stopped")

    def run_next(self, run: Runner, worker: str | None = None) -> bool:
        """Claim the oldest queued job and run it with ``run`` (blocking); False when none is queued. The loop
        of every worker, this process's own or a backend's (``worker`` names it on the job). WorkerLostError
        from ``run`` puts the job back in the queue (at most MAX_ATTEMPTS in all) and is raised again."""
        job = self._claim_next(worker)
        if job is None:
            return False
        try:
            self._execute(job, run)
        except WorkerLostError as exc:
            self._requeue(job, str(exc))
            raise
        except Exception:  # never let one job take the worker down
            log.exception("job %s: unexpected failure in the queue itself", job.id)
            self._finish(job.id, FAILED, stage="failed", error=f"{job.video_name}: internal error; see logs/heygem.log",
                         error_code="internal", error_params={"file": job.video_name})
        return True

    def wait_for_work(self, timeout: float) -> None:
        """Sleep until something changes in the queue (a job submitted, cancelled, finished) or ``timeout``."""
        with self._changed:
            self._changed.wait(timeout=timeout)

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _oldest_queued(self) -> float | None:
        """When the oldest queued job was submitted (None: none is queued)."""
        with self._lock:
            return self._db.execute("SELECT MIN(created) FROM jobs WHERE state = ?", (QUEUED,)).fetchone()[0]

    def _claim_next(self, worker: str | None = None) -> Job | None:
        with self._lock:
            row = self._db.execute("SELECT id FROM jobs WHERE state = ? ORDER BY seq LIMIT 1", (QUEUED,)).fetchone()
            if row is None:
                return None
            self._db.execute(
                "UPDATE jobs SET state = ?, stage = 'starting', progress = 0, started = ?, attempts = attempts + 1, "
                "worker = ? WHERE id = ?", (RUNNING, time.time(), worker, row["id"]))
            self._clocks[row["id"]] = clock = StageClock(self.estimator.now())
            clock.moved("starting", clock.since)
            self._changed.notify_all()
            return self.job(row["id"])

    def _requeue(self, job: Job, reason: str) -> None:
        """A job whose worker died goes back to the queue for another, unless it has had its attempts: then it
        fails (a file that kills every worker it reaches must not take them all down in turn)."""
        with self._lock:
            now = self.job(job.id)
            state = self._after_a_stop(job.id, job.video_name, now.attempts, now.cancel_requested,
                                       "the worker running this job stopped", "worker_lost", f" ({reason})")
        if state != CANCELLED:
            log.warning("job %s (%s): %s; %s", job.id, job.video_name, reason,
                        "failed" if state == FAILED else "queued again for another worker")

    def _after_a_stop(self, job_id: str, video_name: str, attempts: int, cancel_requested: bool, what_stopped: str,
                      code: str, detail: str = "") -> str:
        """A running job whose worker stopped under it (this program, or a cluster's worker): cancelled when a
        cancel was asked, failed once it has had MAX_ATTEMPTS (a file that stops every worker it reaches must not
        take them all down in turn), else queued again. Returns the job's new state; the caller holds the lock."""
        if cancel_requested:
            self._finish(job_id, CANCELLED, stage="cancelled", error=None)
            return CANCELLED
        if attempts >= MAX_ATTEMPTS:
            self._finish(job_id, FAILED, stage="failed", error=(
                f"{video_name}: {what_stopped} {attempts} times{detail}; it was not tried again"), error_code=code,
                error_params={"file": video_name, "attempts": attempts})
            return FAILED
        self._db.execute("UPDATE jobs SET state = ?, stage = 'queued', progress = 0 WHERE id = ? AND state = ?",
                         (QUEUED, job_id, RUNNING))
        self._changed.notify_all()
        return QUEUED

    def _execute(self, job: Job, run: Runner | None = None) -> None:
        started = time.perf_counter()
        log.info("job %s started: %s with %s (batch %s, attempt %d)", job.id, job.video_name, job.audio_name, job.batch_id, job.attempts)
        settings = self._settings_of(job)
        settings.out_dir = job.video_path.parents[2]  # outputs/batches/<batch>/
        settings.limits = self.defaults.limits  # the studio's limits now, not those of when it was queued
        reporter = _ProgressWriter(self, job.id)
        try:
            run = run or self._run
            reporter("audio", 0.0, str(job.audio_path))
            # A backend's runner is given the file: its worker prepares the speech where it runs, once per batch.
            audio = self._prepared_audio(job.audio_path, reporter) if run is self._run else job.audio_path
            reporter("audio", 1.0, str(job.audio_path))
            result = run(audio, job.video_path, None, settings, reporter)
        except WorkerLostError:
            raise  # not the job's fault: run_next queues it again
        except CancelledError:
            self._finish(job.id, CANCELLED, stage="cancelled", error=None)
            log.info("job %s cancelled after %.1f s", job.id, time.perf_counter() - started)
        except Exception as exc:
            no_space = NO_SPACE_WORDS in str(exc) or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)
            if isinstance(exc, HeyGemError) or no_space:
                log.debug("job %s traceback:\n%s", job.id, traceback.format_exc())
                if no_space:  # (ffmpeg's own words for it are a muxer's)
                    exc = disk_filled(job.video_name, self.root)
                reason = self._user_words(job, str(exc))
                self._finish(job.id, FAILED, stage="failed", error=reason, error_code=exc.code,
                             error_params=self._user_params(job, exc.params))
                log.warning("job %s failed after %.1f s: %s", job.id, time.perf_counter() - started, reason)
                return
            log.exception("job %s failed unexpectedly", job.id)
            reason = self._user_words(job, f"{job.video_name}: unexpected error ({exc}); details in logs/heygem.log")
            self._finish(job.id, FAILED, stage="failed", error=reason, error_code="unexpected",
                         error_params={"file": job.video_name})
        else:
            self._measured(job, result)
            self._finish(
                job.id, SUCCEEDED, stage="done", error=None, output=result.output, engine=result.engine,
                notes=result.notes, timings=result.timings, face_cache=result.face_cache, study=result.study,
                note_codes=[(note.code, self._user_params(job, note.params)) if isinstance(note, CodedText) else None
                            for note in result.notes],
                engine_info=result.engine_info.to_dict() if result.engine_info is not None else None,
            )
            log.info("job %s succeeded in %.1f s: %s (%s)", job.id, time.perf_counter() - started, result.output.name,
                     ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()))

    def _prepared_audio(self, path: Path, progress: ThrottledProgress | None = None) -> PreparedAudio:
        """The batch's speech, decoded and featurised once and reused by every job of the batch."""
        cached = self._audio_cache.get(path)
        if cached is not None:
            self._audio_cache.move_to_end(path)
            log.info("reusing the prepared speech %s", path.name)
            return cached
        prepared = prepare_audio(path, self.defaults.limits, progress)
        self._audio_cache[path] = prepared
        while len(self._audio_cache) > 2:  # one batch at a time, plus a single job submitted meanwhile
            self._audio_cache.popitem(last=False)[1].close()
        return prepared

    def _measured(self, job: Job, result: GenerateResult) -> None:
        """Fold the seconds each stage of a job that succeeded took into the rates its estimates come from."""
        with self._lock:
            clock = self._clocks.get(job.id)
            if clock is None:
                return
            clock.moved(DONE_STAGE, self.estimator.now())
            seconds = {stage: spent for stage, spent in clock.seconds.items() if stage != "study" or result.study == "made"}
        engine = result.engine_info.engine if result.engine_info is not None else result.engine.split(" ")[0]
        cold = (job.worker or "", engine) not in self._warm
        self._warm.add((job.worker or "", engine))
        size = job_size(job.audio_path, job.video_path, self.defaults.still_fps, studies=True)
        photo = bool(size and size.photo)
        self.rates.record(machine_of(job.worker), rates_key(engine, photo), seconds,
                          JobSize(frames=result.frames, studied=size.studied if size else 0, photo=photo), cold)

    def _engine_of(self, job: Job) -> str:
        """The engine a job runs with (``auto`` resolved as the worker will): for its estimates."""
        if job.id not in self._engines:
            options = self._settings_of(job).engine
            auto = "wav2lip" if wav2lip_available(options) else "builtin"
            self._engines[job.id] = auto if options.engine == "auto" else options.engine
        return self._engines[job.id]

    def _settings_of(self, job: Job) -> Settings:
        with self._lock:
            row = self._db.execute("SELECT settings FROM jobs WHERE id = ?", (job.id,)).fetchone()
        return settings_from_dict(json.loads(row["settings"]))

    @staticmethod
    def _user_words(job: Job, message: str) -> str:
        """Error messages name files by their stored paths; a person knows them by the names they uploaded."""
        message = message.replace(str(job.video_path), job.video_name).replace(str(job.audio_path), job.audio_name)
        return message

    @staticmethod
    def _user_params(job: Job, params: dict[str, Any]) -> dict[str, Any]:
        """An error's or note's values as stored: files by the names the user uploaded them under (the stored
        copies' names otherwise), never a path of this machine."""
        known = {str(job.video_path): job.video_name, job.video_path.name: job.video_name,
                 str(job.audio_path): job.audio_name, job.audio_path.name: job.audio_name}
        return {key: known.get(str(value), Path(str(value)).name) if key == "file" else value
                for key, value in params.items()}

    # ---- writing state ------------------------------------------------------------------------------------

    def _finish(self, job_id: str, state: str, *, stage: str, error: str | None, output: Path | None = None,
                engine: str | None = None, notes: Iterable[str] = (), timings: dict[str, float] | None = None,
                face_cache: str | None = None, study: str | None = None, error_code: str | None = None,
                error_params: dict[str, Any] | None = None,
                note_codes: Sequence[tuple[str, dict[str, Any]] | None] = (),
                engine_info: dict[str, Any] | None = None) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state = ?, stage = CASE WHEN ? THEN stage ELSE ? END, "
                "progress = CASE WHEN ? = 'succeeded' THEN 1 ELSE progress END, "
                "error = ?, output = ?, engine = COALESCE(?, engine), notes = ?, timings = ?, face_cache = ?, "
                "study = ?, finished = ?, error_code = ?, error_params = ?, note_codes = ?, "
                "engine_info = COALESCE(?, engine_info) WHERE id = ?",
                (state, state in STOPPED, stage, state, error, self._relative(output) if output else None, engine,
                 json.dumps(list(notes)), json.dumps(timings or {}), face_cache, study, time.time(), error_code,
                 json.dumps(error_params or {}), json.dumps(list(note_codes)),
                 None if engine_info is None else json.dumps(engine_info), job_id))
            self._clocks.pop(job_id, None)
            self._engines.pop(job_id, None)
            self._changed.notify_all()

    def _set_progress(self, job_id: str, stage: str, fraction: float) -> bool:
        """Record progress; True when a cancel was asked for (the worker then stops the job)."""
        with self._lock:
            self._db.execute("UPDATE jobs SET stage = ?, progress = ? WHERE id = ? AND state = ?",
                             (stage, max(0.0, min(1.0, fraction)), job_id, RUNNING))
            if (clock := self._clocks.get(job_id)) is not None:
                clock.moved(stage, self.estimator.now())
            row = self._db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
            self._changed.notify_all()
        return bool(row and row["cancel_requested"])

    # ---- what front ends call -----------------------------------------------------------------------------

    def submit(
        self,
        audio: Path | str,
        videos: Sequence[Path | str] = (),
        settings: Settings | None = None,
        *,
        audio_name: str | None = None,
        video_names: Sequence[str] | None = None,
        presenters: Sequence[str] = (),
    ) -> Batch:
        """Queue one job per video and per presenter, all with the same speech. Files are copied, so the caller
        may delete its own; a presenter's job gets its own link to (or copy of) the presenter's file.

        audio_name / video_names: the names the user knows the files by (uploads often arrive under temporary
        names); only their last component, reduced to safe characters, is used on disk.
        presenters: ids from the presenters library (``self.presenters``), after the videos; each job is named
        by its presenter's name. UnknownPresenterError for an unknown id, PresenterNotReadyError for a failed one.
        """
        if not videos and not presenters:
            raise InputError("videos", "no video, photo or presenter was given")
        video_names = list(video_names) if video_names is not None else [Path(v).name for v in videos]
        if len(video_names) != len(videos):
            raise ValueError("one name per video")
        for source in (audio, *videos):
            if not Path(source).is_file():
                raise InputError(source, "file not found", "missing")
        picked = self.presenters.for_jobs(presenters)
        sources = [*(Path(v) for v in videos), *(p.video_path for p in picked)]
        names = [*video_names, *(p.name for p in picked)]
        disk_names = [*video_names, *(p.name + p.video_path.suffix for p in picked)]
        settings = settings or self.defaults
        audio_name = audio_name or Path(audio).name
        # Refused before anything is copied or queued: the limits are the studio's, whatever the job asks.
        limits = self.defaults.limits
        refusal = queue_full(names[0] if len(sources) == 1 else f"{len(sources)} videos", self.pending(),
                             self.presenters.waiting(), len(sources), limits)
        if refusal is not None:
            raise refusal
        check_inputs(Path(audio), sources, limits, audio_name=audio_name, video_names=names)
        batch_id = uuid.uuid4().hex[:12]
        batch_dir = self.batches_dir / batch_id
        # Copies of the speech and the uploaded videos (a presenter's file is linked): refused while they would
        # leave the disk fuller than the studio keeps it, so the jobs already queued have room for their results.
        what = names[0] if len(sources) == 1 else f"{len(sources)} videos"
        with stored_on_disk(what, self.root, limits, needed=sum(Path(p).stat().st_size for p in (audio, *videos)),
                            partial=batch_dir):
            stored_audio = _store(Path(audio), batch_dir / "inputs" / "audio", safe_name(audio_name, "speech"))
            stored_videos = [
                _store(video, batch_dir / "inputs" / f"{number:03d}", safe_name(name, "video"), link=number > len(videos))
                for number, (video, name) in enumerate(zip(sources, disk_names), start=1)
            ]
        now = time.time()
        stored_settings = json.dumps(settings_to_dict(settings))
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO batches (id, created, audio_name, audio_path) VALUES (?, ?, ?, ?)",
                             (batch_id, now, audio_name, self._relative(stored_audio)))
            for stored, name in zip(stored_videos, names):
                self._db.execute(
                    "INSERT INTO jobs (id, batch_id, state, video_name, video_path, settings, stage, created) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (uuid.uuid4().hex[:12], batch_id, QUEUED, name, self._relative(stored), stored_settings, now))
            self._db.execute("COMMIT")
            self._changed.notify_all()
        log.info("batch %s queued: %s with %d video(s)", batch_id, audio_name, len(stored_videos))
        return self.batch(batch_id)

    def job(self, job_id: str) -> Job:
        """One job; KeyError if there is none with this id."""
        with self._lock:
            row = self._db.execute(_SELECT_JOBS + " WHERE jobs.id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(job_id)
        return self._job(row)

    def batch(self, batch_id: str) -> Batch:
        """One batch with its jobs in queue order; KeyError if there is none with this id."""
        with self._lock:
            head = self._db.execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
            rows = self._db.execute(_SELECT_JOBS + " WHERE jobs.batch_id = ? ORDER BY jobs.seq", (batch_id,)).fetchall()
        if head is None:
            raise KeyError(batch_id)
        return Batch(head["id"], head["created"], head["audio_name"], [self._job(r) for r in rows])

    def jobs(self, states: Iterable[str] | None = None, limit: int = 200, newest_first: bool = True) -> list[Job]:
        """Jobs, newest first by default, optionally only those in ``states``."""
        query, args = _SELECT_JOBS, []
        if states is not None:
            states = list(states)
            query += f" WHERE jobs.state IN ({', '.join('?' * len(states))})"
            args += states
        query += f" ORDER BY jobs.seq {'DESC' if newest_first else 'ASC'} LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [self._job(r) for r in rows]

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job at once, or a running one at its next progress step. Finished jobs stay as they are."""
        with self._lock:
            job = self.job(job_id)
            if job.state == QUEUED:
                self._finish(job_id, CANCELLED, stage="cancelled", error=None)
            elif job.state == RUNNING:
                self._db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
                self._changed.notify_all()
        log.info("job %s: cancel asked (it was %s)", job_id, job.state)
        return self.job(job_id)

    def cancel_batch(self, batch_id: str) -> Batch:
        """Cancel every unfinished job of a batch."""
        for job in self.batch(batch_id).jobs:
            if job.state not in FINISHED:
                self.cancel(job.id)
        return self.batch(batch_id)

    def delete(self, job_id: str) -> None:
        """Remove a finished job and its result file (a running or queued job must be cancelled first)."""
        with self._lock:
            job = self.job(job_id)
            if job.state not in FINISHED:
                raise HeyGemError(f"{job.video_name}: the job is {job.state}; cancel it before deleting it")
            self._db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            left = self._db.execute("SELECT COUNT(*) FROM jobs WHERE batch_id = ?", (job.batch_id,)).fetchone()[0]
            if not left:
                self._db.execute("DELETE FROM batches WHERE id = ?", (job.batch_id,))
                self._zipping.pop(job.batch_id, None)
            self._changed.notify_all()
        if job.output is not None:
            job.output.unlink(missing_ok=True)
        shutil.rmtree(job.video_path.parent, ignore_errors=True)
        if not left:
            shutil.rmtree(self.batches_dir / job.batch_id, ignore_errors=True)
        log.info("job %s deleted (%s)", job_id, job.video_name)

    def zip_batch(self, batch_id: str) -> Path:
        """A ZIP of the batch's finished results, named ``<video>__<audio>.mp4`` inside; rebuilt as results arrive,
        and only then: the ZIP written before is handed out while it holds the same results.

        Raises HeyGemError when no result is finished yet.
        """
        batch = self.batch(batch_id)
        results = self._results(batch)
        if not results:
            raise HeyGemError(f"batch {batch_id} has no finished video yet")
        target = self._zip_path(batch)
        with self._lock:
            zipping = self._zipping.setdefault(batch_id, threading.Lock())
        # Every open page and every API call asks for it: each wrote the whole batch again, side by side (ten calls
        # at once for a batch of 5 GB, 50 GB of partial files on the outputs' disk).
        with zipping:
            if _zip_holds(target, results):
                return target
            # A temporary file of its own: a reader of the one before keeps reading it whole.
            handle, partial = tempfile.mkstemp(dir=target.parent, prefix=".zip-", suffix=".partial")
            try:
                # mp4 does not compress further: store, so a large batch zips at disk speed.
                with os.fdopen(handle, "wb") as raw, zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as archive:
                    for path in results:
                        _add_regular_file(archive, path)
                os.replace(partial, target)
            except BaseException:
                Path(partial).unlink(missing_ok=True)
                raise
        return target

    def zip_in_background(self, batch_id: str) -> None:
        """Start writing the batch's ZIP (``zip_batch``) in a thread of its own, unless it already holds every
        finished result or is being written: the studio asks once a batch is over, so the click that follows
        is answered at once, and its page never waits for it."""
        batch = self.batch(batch_id)
        results = self._results(batch)
        if not results or _zip_holds(self._zip_path(batch), results):
            return
        with self._lock:
            writing = self._zip_writers.get(batch_id)
            if writing is None or not writing.is_alive():
                writing = self._zip_writers[batch_id] = threading.Thread(
                    target=self._zip_quietly, args=(batch_id,), name="heygem-zip", daemon=True)
                writing.start()

    def _zip_quietly(self, batch_id: str) -> None:
        try:
            self.zip_batch(batch_id)
        except Exception:  # a click writes it again, and the API's answer says why
            log.exception("the ZIP of batch %s could not be written", batch_id)
        finally:
            with self._lock:  # one entry per batch being written, not one per batch ever zipped
                if self._zip_writers.get(batch_id) is threading.current_thread():
                    del self._zip_writers[batch_id]

    def _results(self, batch: Batch) -> list[Path]:
        """The batch's finished results that may be served, in the batch's order."""
        return [job.output for job in batch.jobs if job.finished_ok and servable(job.output, self.root)]

    def _zip_path(self, batch: Batch) -> Path:
        return self.batches_dir / batch.id / f"heygem_{safe_name(Path(batch.audio_name).stem, 'speech')}_{batch.id[:6]}.zip"

    def wait(self, ids: Iterable[str], timeout: float | None = None) -> list[Job]:
        """Block until the given jobs are finished (or ``timeout`` seconds pass); returns them as they are."""
        ids = list(ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                jobs = [self.job(i) for i in ids]
                if all(job.state in FINISHED for job in jobs):
                    return jobs
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return jobs
                self._changed.wait(timeout=min(1.0, left) if left is not None else 1.0)

    def count(self, states: Iterable[str]) -> int:
        """How many jobs are in any of ``states``."""
        states = list(states)
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM jobs WHERE state IN ({', '.join('?' * len(states))})",
                                    states).fetchone()[0]

    def workers(self) -> list[dict[str, Any]]:
        """The backend's workers (name, host, device, engine, job, done); empty for this process's own thread."""
        return self.backend.workers() if self.backend is not None else []

    def pending(self) -> int:
        """How many jobs are queued or running."""
        return self.count((QUEUED, RUNNING))

    # ---- rows <-> objects ---------------------------------------------------------------------------------

    def _relative(self, path: Path) -> str:
        """Paths are stored relative to the outputs folder, so the project folder may move."""
        try:
            return str(Path(path).resolve().relative_to(self.root.resolve()))
        except ValueError:
            return str(path)

    def _job(self, row: sqlite3.Row) -> Job:
        return Job(
            id=row["id"], batch_id=row["batch_id"], seq=row["seq"], state=row["state"], audio_name=row["audio_name"],
            video_name=row["video_name"], audio_path=self.root / row["audio_path"], video_path=self.root / row["video_path"],
            output=self.root / row["output"] if row["output"] else None, stage=row["stage"], progress=row["progress"],
            error=row["error"], engine=row["engine"], notes=json.loads(row["notes"]), timings=json.loads(row["timings"]),
            face_cache=row["face_cache"], study=row["study"],
            created=row["created"], started=row["started"], finished=row["finished"], attempts=row["attempts"],
            cancel_requested=bool(row["cancel_requested"]), worker=row["worker"], error_code=row["error_code"],
            error_params=json.loads(row["error_params"]),
            note_codes=[tuple(coded) if coded else None for coded in json.loads(row["note_codes"])],
            engine_info=json.loads(row["engine_info"]) if row["engine_info"] else None,
        )


_SELECT_JOBS = (
    "SELECT jobs.*, batches.audio_name AS audio_name, batches.audio_path AS audio_path "
    "FROM jobs JOIN batches ON batches.id = jobs.batch_id"
)


def _store(source: Path, folder: Path, name: str, link: bool = False) -> Path:
    """Copy ``source`` to ``folder/name``; with ``link``, a hard link where the disk allows (a presenter's file
    never changes, and a link costs no space); the job's own either way, whatever becomes of the source."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    if link:
        try:
            os.link(source, target)
            return target
        except OSError:
            pass
    shutil.copyfile(source, target)
    return target


class _ProgressWriter(ThrottledProgress):
    """The progress callback ``generate`` calls: writes the stage to the database, stops the job on cancel."""

    def __init__(self, queue: JobQueue, job_id: str) -> None:
        def write(stage: str, fraction: float) -> str | None:
            # "done" comes once the result is in place: too late to cancel, since a cancelled job has no file.
            return "cancelled" if queue._set_progress(job_id, stage, fraction) and stage != DONE_STAGE else None

        super().__init__(write)
