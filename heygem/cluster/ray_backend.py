"""The Ray backend of the job queue: a pool of worker actors, each fed by one thread of the studio.

Each worker (heygem.cluster.worker, one Ray actor per device: one GPU each where the cluster has GPUs, else
one CPU slot, spread over the machines) has a thread in the studio that does what the studio's own worker
thread does: ``JobQueue.run_next`` claims the oldest queued job, and the same ``_execute`` records how it
ended. Only the runner differs: it sends the files' bytes to the worker, turns the events the worker streams
back into progress (so the database, cancel and the page work as in one process), and writes the result it
receives atomically into the batch's folder. So N workers run N jobs at once, in FIFO order.

A worker that dies mid-job (its process killed, its machine lost) raises WorkerLostError: the job goes back to
the queue for another worker (MAX_ATTEMPTS in all), nothing of it is written, and a new worker is started in
its place when the cluster has room for one.
"""
from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError

from heygem import errors
from heygem.cluster.worker import Worker, portable_settings, put_file
from heygem.faces.schedule import content_hash
from heygem.jobs import RUNNING, Job, JobQueue, WorkerLostError
from heygem.pipeline import GenerateResult, ProgressCallback, default_output
from heygem.settings import Settings, settings_to_dict

log = logging.getLogger(__name__)

__all__ = ["RayBackend"]

# What a lost worker or machine raises from a call to it.
_LOST = (RayActorError, ObjectLostError, WorkerCrashedError)
CHECK_SECONDS = 2.0  # how often the pool is looked over: dead workers dropped, new machines given workers
PING_SECONDS = 10.0  # an idle worker that does not answer in this time is not counted on
SPEECHES_SENT = 4  # speeches kept in Ray's object store for the workers still to fetch them
RETRY_START_SECONDS = 30.0  # after a worker died before it was up (an engine that cannot load, say)


@dataclass
class _Slot:
    """One worker actor and what the studio knows of it."""

    name: str
    actor: Any
    info: dict[str, Any] = field(default_factory=dict)  # describe(), once it is up
    run_id: str | None = None  # of the job it runs now
    done: int = 0  # jobs it ran to their end (succeeded, failed or cancelled)
    thread: threading.Thread | None = None
    retired: bool = False  # no longer wanted before it was up (a machine left meanwhile)

    @property
    def label(self) -> str:
        """How jobs name the worker that ran them: name, host and device."""
        return f"{self.name} on {self.info.get('host', '?')} ({self.info.get('device', '?')})"

    def to_json(self, job: Job | None) -> dict[str, Any]:
        """The status's entry; ``job``: the one the database says this worker runs now."""
        state = "starting" if not self.info else ("busy" if self.run_id or job else "idle")
        return {"name": self.name, "host": self.info.get("host"), "device": self.info.get("device"),
                "engine": self.info.get("engine"), "state": state, "job": job.id if job else None,
                "video": job.video_name if job else None, "done": self.done}


class RayBackend:
    """Runs a JobQueue's jobs on Ray workers (``ray.init`` must have been called: heygem.cluster.connect).

    workers: how many; None: one per GPU of the cluster, or one per machine where it has no GPU, following
        machines as they join and leave.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.wanted = workers
        self._slots: list[_Slot] = []
        self._made = 0
        self._lock = threading.Lock()
        self._speeches: OrderedDict[Path, tuple[str, list]] = OrderedDict()
        self._write_lock = threading.Lock()
        self._queue: JobQueue | None = None
        self._engine: dict[str, Any] = {}  # the studio's default engine options: each worker loads it at start
        self._next_start = 0.0  # no new worker before this (monotonic time), after one failed to start
        self._supervisor: threading.Thread | None = None
        self._presenters: threading.Thread | None = None
        self._stopped = threading.Event()

    # ---- the Backend interface (heygem.jobs) ---------------------------------------------------------------

    def start(self, queue: JobQueue) -> None:
        if self._supervisor is not None:
            return
        self._queue = queue
        self._engine = settings_to_dict(queue.defaults)["engine"]
        self._top_up()
        self._supervisor = threading.Thread(target=self._supervise, name="heygem-ray-pool", daemon=True)
        self._supervisor.start()
        # Presenters are prepared in the studio as without Ray (the library's thumbnails and checks live there).
        self._presenters = threading.Thread(target=self._prepare_presenters, name="heygem-presenters", daemon=True)
        self._presenters.start()

    def close(self, timeout: float | None) -> None:
        """Stop feeding the workers; jobs still running after ``timeout`` are stopped with their workers and
        go back to the queue (run again at the next start)."""
        self._stopped.set()
        if self._supervisor is not None:
            self._supervisor.join()
        deadline = time.monotonic() + (timeout or 0)
        for slot in self.slots():
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
        for slot in self.slots():
            _kill(slot.actor)
        for slot in self.slots():
            if slot.thread is not None:
                slot.thread.join(5)

    def workers(self) -> list[dict[str, Any]]:
        running = {job.worker: job for job in self._queue.jobs([RUNNING])} if self._queue is not None else {}
        return [slot.to_json(running.get(slot.label)) for slot in self.slots()]

    # ---- the pool ------------------------------------------------------------------------------------------

    def slots(self) -> list[_Slot]:
        with self._lock:
            return list(self._slots)

    def _running(self) -> bool:
        return not self._stopped.is_set() and self._queue is not None and not self._queue.stopping

    def _target(self) -> int:
        if self.wanted:
            return self.wanted
        gpus = int(ray.cluster_resources().get("GPU", 0))
        return gpus or sum(1 for node in ray.nodes() if node.get("Alive"))

    def _top_up(self) -> None:
        """Start workers until there are as many as wanted (a new one waits for room in the cluster); when
        fewer are wanted (a machine left), give up those still waiting to start."""
        target = self._target()
        with self._lock:
            missing = target - len(self._slots)
            waiting = [slot for slot in self._slots if not slot.info and not slot.retired]
            for slot in waiting[len(waiting) + missing:] if missing < 0 else ():
                slot.retired = True
        if time.monotonic() < self._next_start:
            return
        for _ in range(missing):
            self._add_worker()

    def _add_worker(self) -> None:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        with self._lock:
            self._made += 1
            name = f"worker-{self._made}"
        # One device each: a GPU where there are any, else one CPU slot, spread over the machines. Threaded
        # (4 calls at once) so that cancel and ping reach a worker busy with a job; max_restarts 0: a worker
        # that dies is replaced by a new one (its job re-queued), never restarted under the same job.
        actor_class = ray.remote(Worker).options(
            num_gpus=1 if gpus else 0, num_cpus=0 if gpus else 1, max_concurrency=4, max_restarts=0,
            scheduling_strategy="SPREAD")
        slot = _Slot(name, actor_class.remote(name, self._engine))
        slot.thread = threading.Thread(target=self._serve, args=(slot,), name=f"heygem-{name}", daemon=True)
        with self._lock:
            self._slots.append(slot)
        slot.thread.start()
        log.info("%s asked of Ray (%s)", name, "one GPU" if gpus else "one CPU")

    def _supervise(self) -> None:
        while not self._stopped.wait(CHECK_SECONDS) and self._running():
            try:
                self._top_up()
            except Exception:  # the pool is looked over again in a moment
                log.exception("looking over the Ray workers failed")

    def _serve(self, slot: _Slot) -> None:
        """The studio's thread for one worker: wait until it is up, then run queued jobs on it until it or
        the studio stops."""
        try:
            described = slot.actor.describe.remote()
            while self._running() and not slot.info and not slot.retired:
                # Until it is up (loading its engine, or waiting for room in the cluster).
                if ray.wait([described], timeout=1.0)[0]:
                    slot.info = ray.get(described)
            if not slot.info:
                return  # the studio stops, or the worker is no longer wanted
            log.info("%s is up: %s, engine %s, pid %s", slot.label, slot.info["folder"], slot.info["engine"],
                     slot.info["pid"])
            run = self._runner(slot)
            last_check = time.monotonic()
            while self._running():
                if self._queue.run_next(run, worker=slot.label):
                    slot.done += 1
                    last_check = time.monotonic()
                    continue
                if time.monotonic() - last_check > CHECK_SECONDS:  # an idle worker that died is noticed too
                    ray.get(slot.actor.ping.remote(), timeout=PING_SECONDS)
                    last_check = time.monotonic()
                self._queue.wait_for_work(1.0)
        except (WorkerLostError, *_LOST) as exc:
            if slot.info:
                log.warning("%s stopped: %s", slot.label, exc)
            else:
                self._next_start = time.monotonic() + RETRY_START_SECONDS
                log.error("%s could not start (%s); a new worker is tried in %.0f s", slot.name, exc,
                          RETRY_START_SECONDS)
        except GetTimeoutError:
            log.warning("%s does not answer; it is given up", slot.label)
        except Exception:
            log.exception("%s: the studio's thread for it failed", slot.label)
        finally:
            _kill(slot.actor)  # a worker given up must not go on with a job another worker now runs
            slot.run_id = None
            with self._lock:
                if slot in self._slots:
                    self._slots.remove(slot)

    def _prepare_presenters(self) -> None:
        while self._running():
            try:
                if self._queue.presenters.prepare_next():
                    continue
            except Exception:
                log.exception("preparing a presenter failed in the queue itself")
            self._queue.wait_for_work(1.0)

    # ---- one job on one worker -------------------------------------------------------------------------

    def _runner(self, slot: _Slot):
        """A Runner (heygem.jobs) that runs the job on ``slot``'s worker."""

        def run(audio: Path, video: Path, output: Path | None, settings: Settings,
                progress: ProgressCallback) -> GenerateResult:
            return self._run_on(slot, Path(audio), Path(video), output, settings, progress)

        return run

    def _run_on(self, slot: _Slot, audio: Path, video: Path, output: Path | None, settings: Settings,
                progress: ProgressCallback) -> GenerateResult:
        run_id = uuid.uuid4().hex[:12]
        audio_key, speech = self._speech(audio)
        job = {"video_file": video.name, "audio_file": audio.name, "audio_key": audio_key,
               "settings": portable_settings(settings_to_dict(settings))}
        slot.run_id = run_id
        cancelled: errors.CancelledError | None = None
        final: dict[str, Any] = {}
        result = _PartialResult(settings.out_dir, video)
        try:
            events = slot.actor.run.options(num_returns="streaming").remote(run_id, job, put_file(video), speech)
            for ref in events:
                event = ray.get(ref)
                if "chunk" in event:
                    result.write(event["chunk"])
                    continue
                if "progress" not in event:
                    final = event
                    break
                stage, fraction = event["progress"]
                if cancelled is None and stage != "done":  # "done" is said once the file is here
                    try:
                        progress(stage, fraction, str(video))
                    except errors.CancelledError as exc:  # asked in the studio: the worker stops at its next step
                        cancelled = exc
                        slot.actor.cancel.remote(run_id)
            if cancelled is not None:
                raise cancelled  # whatever the worker sent last, a cancelled job has no result
            if not final:
                raise RuntimeError(f"{slot.label} ended the job without a result or an error")
            if "error" in final:
                raise _error_from(final, {"video": str(video), "speech": str(audio)}, slot.label)
            with self._write_lock:  # two workers finishing the same video's name at once get two names
                target = result.keep(Path(output) if output else default_output(video, audio, settings.out_dir))
        except _LOST as exc:
            raise WorkerLostError(f"{slot.label} stopped ({type(exc).__name__})") from exc
        except RayTaskError as exc:  # the worker's own code failed outside a job's run
            raise RuntimeError(f"{slot.label}: {exc.cause or exc}") from exc
        finally:
            slot.run_id = None
            result.discard()  # unless kept
        progress("done", 1.0, str(video))
        return GenerateResult(output=target, audio=audio, video=video, **final["result"])

    def _speech(self, path: Path) -> tuple[str, list]:
        """The speech's content hash and its pieces in Ray's object store, put there once per batch."""
        with self._lock:
            kept = self._speeches.get(path)
            if kept is not None:
                self._speeches.move_to_end(path)
                return kept
        kept = (content_hash(path), put_file(path))
        with self._lock:
            self._speeches[path] = kept
            while len(self._speeches) > SPEECHES_SENT:
                self._speeches.popitem(last=False)
        return kept


class _PartialResult:
    """A result arriving piece by piece: a hidden partial file in the batch's folder, renamed once complete (a
    studio that dies meanwhile leaves only the partial file, which its next start removes)."""

    def __init__(self, out_dir: Path, video: Path) -> None:
        self.out_dir, self.video = out_dir, video
        self.path: Path | None = None
        self._out: Any = None

    def write(self, piece: np.ndarray) -> None:
        if self._out is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(dir=self.out_dir, prefix=f".{self.video.stem}.", suffix=".partial.mp4")
            self.path, self._out = Path(name), os.fdopen(handle, "wb")
        self._out.write(piece.tobytes())

    def keep(self, target: Path) -> Path:
        if self._out is None:
            raise RuntimeError(f"{self.video.name}: the worker sent no result")
        self._out.close()
        os.replace(self.path, target)
        self.path = None
        return target

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _kill(actor: Any) -> None:
    try:
        ray.kill(actor)
    except Exception:  # already gone
        pass


def _error_from(event: dict[str, Any], studio_paths: dict[str, str], label: str) -> Exception:
    """The worker's error as the studio's own: the same class (from heygem.errors) and message, with the
    worker's file paths replaced by the studio's (which the queue then turns into the names users know)."""
    message = event["message"]
    for worker_path, role in event["paths"].items():
        message = message.replace(worker_path, studio_paths[role])
    if not event["heygem"]:
        log.warning("%s: unexpected error\n%s", label, event["traceback"])
        return RuntimeError(message)
    cls = getattr(errors, event["error"], None)
    cls = cls if isinstance(cls, type) and issubclass(cls, errors.HeyGemError) else errors.HeyGemError
    error = cls.__new__(cls)  # their constructors differ; the message, code and values are what the queue reads
    Exception.__init__(error, message)
    error.code = event.get("code")
    error.params = {key: studio_paths.get(event["paths"].get(str(value), ""), value) if key == "file" else value
                    for key, value in (event.get("params") or {}).items()}
    if isinstance(error, errors.InputError):
        error.path, _, error.problem = message.partition(": ")
    return error
