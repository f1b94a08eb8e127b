"""The Ray backend of the job queue: a pool of worker actors, each fed by one thread of the studio.

Each worker (heygem.cluster.worker, one Ray actor per device: one GPU each where the cluster has GPUs, else one
per machine) has a thread in the studio that does what the studio's own worker thread does: ``JobQueue.run_next``
claims the oldest queued job, and the same ``_execute`` records how it ended. Only the runner differs: it sends
the files' bytes to the worker, turns the events the worker streams back into progress (so the database, cancel
and the page work as in one process), and writes the result it receives atomically into the batch's folder. So
N workers run N jobs at once, in FIFO order.

Where workers go is decided here (``plan_workers``) and held by Ray's node affinity: one per GPU, or one per
machine, each given its share of its machine's CPU cores, and a replacement on the machine of the worker it
replaces. A machine running other HeyGem code than the studio's gets none (``code_version``).

A worker that dies mid-job (its process killed, its machine lost), or that stops answering (frozen: no event and
no answer to a ping for ``lost_after`` seconds; stuck: answering, but no word of its job for ``stall_after``;
or still at it ``cancel_after`` seconds after a cancel) raises WorkerLostError: it is stopped, nothing of its
job is written, and the job goes back to the queue for another worker (MAX_ATTEMPTS in all), or ends cancelled
when a cancel was asked. A new worker is started in its place when the cluster has room for one.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import (ActorUnschedulableError, GetTimeoutError, NodeDiedError, ObjectLostError, RayActorError,
                            RayTaskError, WorkerCrashedError)
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from heygem import errors
from heygem.cluster import LOST_AFTER_SECONDS, code_version
from heygem.cluster.worker import Worker, portable_settings, put_file
from heygem.faces.schedule import content_hash
from heygem.jobs import RUNNING, Job, JobQueue, WorkerLostError
from heygem.pipeline import GenerateResult, ProgressCallback, default_output
from heygem.settings import Settings, settings_to_dict

log = logging.getLogger(__name__)

__all__ = ["Placement", "RayBackend", "plan_workers"]

# What a lost worker or machine raises from a call to it.
_LOST = (RayActorError, ObjectLostError, WorkerCrashedError, NodeDiedError, ActorUnschedulableError)
CHECK_SECONDS = 2.0  # how often the pool is looked over: dead workers dropped, new machines given workers
POLL_SECONDS = 0.5  # the longest one wait for a worker's next event, before the studio looks at the job again
PING_SECONDS = 2.0  # a worker silent this long is asked whether it is still there
CANCEL_SECONDS = 10.0  # a worker still at a job this long after its cancel is stopped (the job ends cancelled)
STALL_SECONDS = 300.0  # a worker that answers but reports nothing of its job this long is taken as stuck
SPEECHES_SENT = 4  # speeches kept in Ray's object store for the workers still to fetch them
RETRY_START_SECONDS = 30.0  # after a worker died before it was up (an engine that cannot load, say)


@dataclass(frozen=True)
class Placement:
    """Where one worker runs and what it is given there."""

    node: str  # Ray's id of the machine (its node)
    address: str  # the machine's address in the cluster
    gpus: int  # 1 for a GPU worker, else 0
    cpus: int  # CPU cores (Ray's CPU slots), which are also its threads


def plan_workers(nodes: list[dict[str, Any]], wanted: int | None, device: str = "auto", *,
                 refused: frozenset[str] | set[str] = frozenset(),
                 current: dict[str, int] | None = None) -> list[Placement]:
    """Where the workers go, from ``ray.nodes()``: with GPUs (``device`` ``auto`` on a cluster that has any, or
    ``cuda``/``cuda:N``), one per GPU of each machine, each given the machine's CPU cores shared out by its GPUs;
    without (or ``device`` ``cpu``), one per machine that offers a CPU core, given all of them. ``wanted`` (None:
    all of those) takes that many, one per machine first, then more where there is room, sharing each machine's
    cores among its workers. Machines that are not alive or are ``refused`` get none; ``current`` (workers per
    machine now) comes first, so that a plan keeps workers where they are."""
    device = (device or "auto").strip().lower()
    alive = [node for node in nodes if node.get("Alive") and node["NodeID"] not in refused]
    has_gpus = any(node.get("Resources", {}).get("GPU", 0) >= 1 for node in alive)
    use_gpus = device.split(":")[0] == "cuda" or (device == "auto" and has_gpus)
    current = current or {}
    order = sorted(alive, key=lambda node: (-current.get(node["NodeID"], 0), node["NodeID"]))

    def room(node: dict[str, Any]) -> int:
        resources = node.get("Resources", {})
        return int(resources.get("GPU", 0) if use_gpus else resources.get("CPU", 0))

    counts = {node["NodeID"]: 0 for node in order}
    if wanted is None:
        counts.update({node["NodeID"]: room(node) if use_gpus else min(1, room(node)) for node in order})
    else:
        placed = True
        while placed and sum(counts.values()) < wanted:
            placed = False
            for node in order:
                if sum(counts.values()) < wanted and counts[node["NodeID"]] < room(node):
                    counts[node["NodeID"]] += 1
                    placed = True
    plan = []
    for node in order:
        count = counts[node["NodeID"]]
        if not count:
            continue
        resources = node.get("Resources", {})
        cpus = int(resources.get("CPU", 0) // (int(resources.get("GPU", 0)) if use_gpus else count))
        plan += [Placement(node["NodeID"], node.get("NodeManagerAddress", ""), 1 if use_gpus else 0, cpus)] * count
    return plan


@dataclass
class _Slot:
    """One worker actor and what the studio knows of it."""

    name: str
    actor: Any  # the Ray actor, once started (None before: its machine's HeyGem is checked first)
    place: Placement
    info: dict[str, Any] = field(default_factory=dict)  # describe(), once it is up
    run_id: str | None = None  # of the job it runs now
    done: int = 0  # jobs it ran to their end (succeeded, failed or cancelled)
    thread: threading.Thread | None = None
    retired: bool = False  # no longer wanted (its machine left, or the plan moved it): it stops after its job

    @property
    def label(self) -> str:
        """How jobs name the worker that ran them: name, host and device."""
        return f"{self.name} on {self.info.get('host', '?')} ({self.info.get('device', '?')})"

    def to_json(self, job: Job | None) -> dict[str, Any]:
        """The status's entry; ``job``: the one the database says this worker runs now."""
        state = "starting" if not self.info else ("busy" if self.run_id or job else "idle")
        return {"name": self.name, "host": self.info.get("host"), "device": self.info.get("device"),
                "engine": self.info.get("engine"), "threads": self.info.get("threads"), "state": state,
                "job": job.id if job else None, "video": job.video_name if job else None, "done": self.done}


class RayBackend:
    """Runs a JobQueue's jobs on Ray workers (``ray.init`` must have been called: heygem.cluster.connect).

    workers: how many; None: one per GPU of the cluster, or one per machine where it has no GPU, following
        machines as they join and leave (``plan_workers``).
    lost_after: a worker that neither sends an event nor answers a ping for this many seconds is taken for lost
        (a frozen process or machine, a cut link): its job runs elsewhere (``--ray-lost-after``).
    stall_after: a worker that answers but reports nothing of its job for this many seconds is taken as stuck.
    cancel_after: a worker still at a job this many seconds after its cancel is stopped; the job ends cancelled.
    """

    def __init__(self, workers: int | None = None, *, lost_after: float = LOST_AFTER_SECONDS,
                 stall_after: float = STALL_SECONDS, cancel_after: float = CANCEL_SECONDS) -> None:
        self.wanted = workers
        self.lost_after, self.stall_after, self.cancel_after = lost_after, stall_after, cancel_after
        self._slots: list[_Slot] = []
        self._made = 0
        self._lock = threading.Lock()
        self._speeches: OrderedDict[Path, tuple[str, list]] = OrderedDict()
        self._write_lock = threading.Lock()
        self._queue: JobQueue | None = None
        self._engine: dict[str, Any] = {}  # the studio's default engine options: each worker loads it at start
        self._device = "auto"
        self._version = code_version()
        self._code_version = ray.remote(code_version)  # run on a machine: its HeyGem's version
        self._refused: dict[str, str] = {}  # machines (node ids) running other HeyGem code, and why
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
        self._device = str(self._engine.get("device") or "auto").lower()
        if re.fullmatch(r"cuda:\d+", self._device):
            log.info("--device %s: each Ray worker uses the GPU Ray gives it (its number is not used)", self._device)
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
            if slot.actor is not None:
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

    def _top_up(self) -> None:
        """Bring the workers in line with ``plan_workers``: new ones where the plan has more than there are
        (each waits for room on its machine); where it has fewer (a machine left, a machine joined and takes
        its share), those still starting go first, then idle ones, and a busy one after its job."""
        nodes = ray.nodes()
        with self._lock:
            active = [slot for slot in self._slots if not slot.retired]
        current = Counter(slot.place.node for slot in active)
        plan = plan_workers(nodes, self.wanted, self._device, refused=set(self._refused), current=current)
        planned = Counter(place.node for place in plan)
        for node, count in current.items():
            here = sorted((slot for slot in active if slot.place.node == node),
                          key=lambda slot: (bool(slot.info), slot.run_id is not None))
            for slot in here[:max(0, count - planned[node])]:
                slot.retired = True
                log.info("%s is no longer wanted on %s; it stops%s", slot.name, slot.place.address,
                         " after its job" if slot.run_id else "")
        if time.monotonic() < self._next_start:
            return
        missing = planned - current
        for place in plan:
            if missing[place.node] > 0:
                missing[place.node] -= 1
                self._add_worker(place)

    def _add_worker(self, place: Placement) -> None:
        with self._lock:
            self._made += 1
            slot = _Slot(f"worker-{self._made}", None, place)
            self._slots.append(slot)
        slot.thread = threading.Thread(target=self._serve, args=(slot,), name=f"heygem-{slot.name}", daemon=True)
        slot.thread.start()
        log.info("%s asked of Ray on %s (%s, %d CPU cores)", slot.name, place.address,
                 "one GPU" if place.gpus else "no GPU", place.cpus)

    def _start_actor(self, slot: _Slot) -> Any:
        """The worker actor, on its machine only (node affinity, not a hint), with its GPU or none and its share
        of the machine's cores, which it also uses as threads. Threaded (4 calls at once) so that cancel and ping
        reach a worker busy with a job; max_restarts 0: a worker that dies is replaced by a new one (its job
        re-queued), never restarted under the same job."""
        actor_class = ray.remote(Worker).options(
            num_gpus=slot.place.gpus, num_cpus=slot.place.cpus, max_concurrency=4, max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(slot.place.node, soft=False))
        return actor_class.remote(slot.name, self._engine, threads=slot.place.cpus or None)

    def _same_code(self, slot: _Slot) -> bool:
        """Whether the worker's machine runs the studio's HeyGem (``code_version``, run there before any worker
        is started: a machine with other code might not even start one). False, and the machine is refused, when
        it does not; also False when the studio stops or the worker is no longer wanted meanwhile."""
        answer = self._code_version.options(
            num_cpus=0, max_retries=0, scheduling_strategy=NodeAffinitySchedulingStrategy(slot.place.node, soft=False)
        ).remote()
        while not ray.wait([answer], timeout=1.0)[0]:
            if not self._running() or slot.retired:
                return False
        try:
            theirs = ray.get(answer)
        except _LOST:
            raise  # the machine left: not a matter of versions
        except Exception as exc:  # e.g. a HeyGem without code_version, or none at all where Ray looks for it
            if not self._alive(slot.place.node):  # or the machine left meanwhile (Ray says "unschedulable")
                log.info("%s was not started: its machine %s left", slot.name, slot.place.address)
                return False
            theirs = f"unknown: {type(exc).__name__}"
        if theirs == self._version:
            return True
        why = (f"{slot.name}: the machine {slot.place.address} runs other HeyGem code than the studio (version "
               f"{theirs}, the studio's {self._version}): it gets no worker; give it the same HeyGem and start its "
               "Ray again")
        self._refused[slot.place.node] = why
        log.error("%s", why)
        return False

    def _supervise(self) -> None:
        while not self._stopped.wait(CHECK_SECONDS) and self._running():
            try:
                self._top_up()
            except Exception:  # the pool is looked over again in a moment
                log.exception("looking over the Ray workers failed")

    def _serve(self, slot: _Slot) -> None:
        """The studio's thread for one worker: check its machine's HeyGem, start it and wait until it is up,
        then run queued jobs on it until it or the studio stops."""
        try:
            if not self._same_code(slot):
                return
            slot.actor = self._start_actor(slot)
            described = slot.actor.describe.remote()
            while self._running() and not slot.info and not slot.retired:
                # Until it is up (loading its engine, or waiting for room on its machine).
                if ray.wait([described], timeout=1.0)[0]:
                    slot.info = ray.get(described)
            if not slot.info:
                return  # the studio stops, or the worker is no longer wanted
            log.info("%s is up: %s, engine %s, %s threads, pid %s", slot.label, slot.info["folder"],
                     slot.info["engine"], slot.info["threads"], slot.info["pid"])
            run = self._runner(slot)
            last_check = time.monotonic()
            while self._running() and not slot.retired:
                if self._queue.run_next(run, worker=slot.label):
                    slot.done += 1
                    last_check = time.monotonic()
                    continue
                if time.monotonic() - last_check > CHECK_SECONDS:  # an idle worker that died is noticed too
                    ray.get(slot.actor.ping.remote(), timeout=self.lost_after)
                    last_check = time.monotonic()
                self._queue.wait_for_work(1.0)
        except (WorkerLostError, *_LOST) as exc:
            if slot.info:
                log.warning("%s stopped: %s", slot.label, exc)
            elif slot.retired or not self._alive(slot.place.node):
                log.info("%s was not started: its machine %s left", slot.name, slot.place.address)
            else:
                self._next_start = time.monotonic() + RETRY_START_SECONDS
                log.error("%s could not start (%s); a new worker is tried in %.0f s", slot.name, exc,
                          RETRY_START_SECONDS)
        except GetTimeoutError:
            log.warning("%s does not answer; it is given up", slot.label)
        except Exception:
            log.exception("%s: the studio's thread for it failed", slot.label)
        finally:
            if slot.actor is not None:
                _kill(slot.actor)  # a worker given up must not go on with a job another worker now runs
            slot.run_id = None
            with self._lock:
                if slot in self._slots:
                    self._slots.remove(slot)

    @staticmethod
    def _alive(node: str) -> bool:
        return any(entry["NodeID"] == node and entry.get("Alive") for entry in ray.nodes())

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
        cancel_sent = 0.0  # when the worker was told to stop (monotonic time)
        final: dict[str, Any] = {}
        result = _PartialResult(settings.out_dir, video)
        try:
            events = slot.actor.run.options(num_returns="streaming").remote(run_id, job, put_file(video), speech)
            for event in self._events(slot, events):
                if event is None:  # nothing for a moment: a cancel asked meanwhile is seen all the same
                    if cancelled is None and self._cancel_asked(slot):
                        cancelled = errors.CancelledError(f"{video.name}: cancelled")
                elif "chunk" in event:
                    result.write(event["chunk"])
                elif "progress" not in event:
                    final = event
                    break
                elif cancelled is None and event["progress"][0] != "done":  # "done": once the file is here
                    try:
                        progress(*event["progress"], str(video))
                    except errors.CancelledError as exc:  # asked in the studio: the worker stops at its next step
                        cancelled = exc
                if cancelled is not None and not cancel_sent:
                    cancel_sent = time.monotonic()
                    slot.actor.cancel.remote(run_id)
                elif cancel_sent and time.monotonic() - cancel_sent > self.cancel_after:
                    raise _Unresponsive(f"{slot.label} was still at the job {self.cancel_after:.0f} s after its "
                                        "cancel; it was stopped")
            if cancelled is not None:
                raise cancelled  # whatever the worker sent last, a cancelled job has no result
            if not final:
                raise RuntimeError(f"{slot.label} ended the job without a result or an error")
            if "error" in final:
                raise _error_from(final, {"video": str(video), "speech": str(audio)}, slot.label)
            with self._write_lock:  # two workers finishing the same video's name at once get two names
                target = result.keep(Path(output) if output else default_output(video, audio, settings.out_dir))
        except _Unresponsive as exc:
            _kill(slot.actor)  # now, not once the studio's thread for it has wound up: its job goes elsewhere
            raise WorkerLostError(str(exc)) from None
        except _LOST as exc:
            raise WorkerLostError(f"{slot.label} stopped ({type(exc).__name__})") from exc
        except RayTaskError as exc:  # the worker's own code failed outside a job's run
            raise RuntimeError(f"{slot.label}: {exc.cause or exc}") from exc
        finally:
            slot.run_id = None
            result.discard()  # unless kept
        progress("done", 1.0, str(video))
        return GenerateResult(output=target, audio=audio, video=video, **final["result"])

    def _events(self, slot: _Slot, events: Any) -> Iterator[dict[str, Any] | None]:
        """The worker's events, in order, each once it is on this machine; None whenever nothing came for
        POLL_SECONDS. Never waits without bound: a worker silent for PING_SECONDS is pinged, and one that neither
        sends nor answers for ``lost_after``, or sends nothing of its job for ``stall_after``, raises
        _Unresponsive."""
        heard = reported = time.monotonic()  # its last sign of life; its last event
        ping = ref = None
        while True:
            if ref is None and ray.wait([events], timeout=POLL_SECONDS)[0]:
                try:
                    ref = next(events)
                except StopIteration:
                    return
            # The event itself may still be on its way from the worker's machine (a piece of the result, say).
            if ref is not None and ray.wait([ref], timeout=POLL_SECONDS, fetch_local=True)[0]:
                event = ray.get(ref)
                heard = reported = time.monotonic()
                ping = ref = None
                yield event
                continue
            now = time.monotonic()
            if ping is not None and ray.wait([ping], timeout=0)[0]:
                ray.get(ping)  # a dead worker raises here
                heard, ping = now, None
            if ping is None and now - heard >= PING_SECONDS:
                ping = slot.actor.ping.remote()
            if now - heard > self.lost_after:
                raise _Unresponsive(f"{slot.label} did not answer for {self.lost_after:.0f} s; it was stopped")
            if now - reported > self.stall_after:
                raise _Unresponsive(f"{slot.label} reported nothing of the job for {self.stall_after:.0f} s; "
                                    "it was stopped")
            yield None

    def _cancel_asked(self, slot: _Slot) -> bool:
        """Whether the job this worker runs was asked to stop (the database says so)."""
        return any(job.cancel_requested for job in self._queue.jobs([RUNNING]) if job.worker == slot.label)

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


class _Unresponsive(Exception):
    """A worker that does not answer, or does not get on with its job (the message says which)."""


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
