"""How long jobs take on this machine, and so how long a running job has left and a queued one will wait.

The queue times each stage a job reports (reading the speech, reading the video, the presenter study, the wait
for the speech's sounds, lip-syncing, writing) by the wall clock. When a job succeeds, each stage's seconds per
unit of work (output frames for most; one per job for reading the video, which is mostly loading and the
orientation check; the frames the study passes for the study) go into a moving average kept per machine and
engine (a photo's jobs apart: its study is one frame, its mouth made another way) in the queue's database. A
running job's time left is what its stage has left (at the measured rate, and more and more at the pace seen
in this very stage as it goes on) plus the measured time of the stages after it; a queued job waits for every
job ahead of it. Until the stages every job goes through have been measured, the estimate is None
("estimating…"); the study and the sounds' wait, which some jobs skip (a presenter studied before, a speech
recognised for the batch's first video), count as nothing until they are.
"""
from __future__ import annotations

import logging
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from heygem.errors import HeyGemError

log = logging.getLogger(__name__)

__all__ = ["STAGES", "Estimate", "JobSize", "StageClock", "StageRates", "job_seconds", "machine_of", "rates_key",
           "time_left"]

# The stages a job reports, in the order it goes through them ("starting" comes before, "done" after).
STAGES = ("audio", "probe", "study", "phones", "lip-sync", "encode")
# Stages a job may skip: unmeasured, they count as nothing ahead of a job (rather than "estimating…" for ever
# where every job so far skipped them).
SKIPPABLE = frozenset({"study", "phones"})
# The newest job's weight in a stage's moving average: it weighs as much as all the jobs before it, so a
# change of machine load shows within a job or two while one odd job moves the estimate by half its error.
SMOOTHING = 0.5
# Below this share of a stage done, its own pace says little; past it, the pace seen counts more and more.
OWN_PACE_AFTER = 0.05
_SCHEMA = """
CREATE TABLE IF NOT EXISTS stage_rates (
    machine TEXT NOT NULL,
    engine TEXT NOT NULL,
    stage TEXT NOT NULL,
    seconds_per_unit REAL NOT NULL,
    jobs INTEGER NOT NULL,
    cold INTEGER NOT NULL,
    PRIMARY KEY (machine, engine, stage)
);
"""


@dataclass(frozen=True)
class JobSize:
    """How much work a job is, in the units its stages are measured in."""

    frames: int  # output frames: as long as the speech, at the video's rate
    studied: int  # source frames the presenter study passes (the built-in engine; 1 for a photo)
    photo: bool = False

    def units(self, stage: str) -> int:
        if stage == "probe":
            return 1
        return self.studied if stage == "study" else self.frames


def rates_key(engine: str, photo: bool) -> str:
    """What rates are kept under: the engine, and whether the presenter is a photo (``builtin-photo``)."""
    return f"{engine}-photo" if photo else engine


def machine_of(worker: str | None) -> str:
    """The machine a job runs on, for its rates: a cluster worker's ``host (device)`` (its label is ``worker-2
    on host (cpu)``), or this machine's name for the queue's own worker."""
    if worker and " on " in worker:
        return worker.split(" on ", 1)[1]
    return socket.gethostname()


class StageRates:
    """Seconds per unit of each stage, by machine and engine, kept in the queue's database."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db, self._lock = db, lock
        with self._lock:
            self._db.executescript(_SCHEMA)

    def record(self, machine: str, engine: str, seconds: Mapping[str, float], size: JobSize, cold: bool = False) -> None:
        """Fold one finished job's seconds per stage into the averages. ``cold``: the first job of its worker
        with this engine, which also loaded the models (a fresh studio's first built-in job took 30 s here, the
        next one 18 s): it counts only until a job without that load is measured, which then replaces it."""
        with self._lock:
            for stage, spent in seconds.items():
                units = size.units(stage) if stage in STAGES else 0
                if units <= 0 or spent < 0:
                    continue
                rate = spent / units
                row = self._db.execute("SELECT seconds_per_unit, jobs, cold FROM stage_rates WHERE machine = ? AND "
                                       "engine = ? AND stage = ?", (machine, engine, stage)).fetchone()
                if row is not None and cold and not row[2]:
                    continue  # what warm jobs measured says more than a cold start
                if row is not None and bool(row[2]) == cold:
                    rate = (1 - SMOOTHING) * row[0] + SMOOTHING * rate
                self._db.execute("INSERT OR REPLACE INTO stage_rates VALUES (?, ?, ?, ?, ?, ?)",
                                 (machine, engine, stage, rate, (row[1] if row else 0) + 1, int(cold)))
        log.debug("stage rates on %s for %s: %s", machine, engine,
                  ", ".join(f"{stage} {spent:.2f}s" for stage, spent in seconds.items()))

    def rates(self, engine: str, machine: str | None = None) -> dict[str, float]:
        """Seconds per unit by stage for ``engine`` on ``machine``; with None (a cluster's next free worker),
        the mean over the machines that measured it."""
        with self._lock:
            if machine is not None:
                rows = self._db.execute("SELECT stage, seconds_per_unit FROM stage_rates WHERE machine = ? AND engine = ?",
                                        (machine, engine)).fetchall()
                return {stage: rate for stage, rate in rows}
            rows = self._db.execute("SELECT stage, AVG(seconds_per_unit) FROM stage_rates WHERE engine = ? "
                                    "GROUP BY stage", (engine,)).fetchall()
        return {stage: rate for stage, rate in rows}


class StageClock:
    """When a running job entered the stage it is in, and the seconds each stage before took (by the clock the
    caller gives: the queue's monotonic one, a test's fake one)."""

    def __init__(self, now: float) -> None:
        self.stage = ""
        self.since = now
        self.seconds: dict[str, float] = {}

    def moved(self, stage: str, now: float) -> None:
        """The job reported ``stage`` at ``now`` (its stage so far, or a new one)."""
        if stage == self.stage:
            return
        if self.stage:
            self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + now - self.since
        self.stage, self.since = stage, now

    def in_stage(self, now: float) -> float:
        return max(0.0, now - self.since)


def _expected(rates: Mapping[str, float], size: JobSize, stage: str) -> float | None:
    rate = rates.get(stage)
    return None if rate is None else rate * size.units(stage)


def _ahead(stage: str, studies: bool) -> list[str]:
    """The stages after ``stage`` (all of them before the first): the study and the sounds' wait only for an
    engine that studies."""
    after = STAGES[STAGES.index(stage) + 1:] if stage in STAGES else STAGES
    return [s for s in after if s not in SKIPPABLE or studies]


def _later(rates: Mapping[str, float], size: JobSize, stage: str, studies: bool) -> float | None:
    """The measured time of the stages after ``stage``; None while one every job goes through is unmeasured."""
    expected = {s: _expected(rates, size, s) for s in _ahead(stage, studies)}
    if any(e is None and s not in SKIPPABLE for s, e in expected.items()):
        return None
    return sum(e for e in expected.values() if e is not None)


def job_seconds(rates: Mapping[str, float], size: JobSize, studies: bool) -> float | None:
    """The whole run of a job not yet started; None until the stages every job goes through are measured."""
    return _later(rates, size, "", studies)


def time_left(rates: Mapping[str, float], size: JobSize, stage: str, fraction: float, in_stage: float,
              studies: bool) -> float | None:
    """Seconds a running job has left: what its ``stage`` has left (``fraction`` done after ``in_stage``
    seconds in it) and the stages after it. None while too little is measured or seen to tell."""
    fraction = max(0.0, min(1.0, fraction))
    if stage not in STAGES:  # starting: everything is ahead
        return job_seconds(rates, size, studies)
    expected = _expected(rates, size, stage)
    own_pace = in_stage * (1 - fraction) / fraction if fraction >= OWN_PACE_AFTER and in_stage > 0 else None
    if expected is not None and own_pace is not None:
        # The measured rate at first, the pace of this very job more and more as the stage goes on.
        current = (1 - fraction) * expected * (1 - fraction) + fraction * own_pace
    elif expected is not None:
        current = expected * (1 - fraction)
    elif own_pace is not None and stage == "lip-sync":  # nothing measured yet: the main stage's own pace
        current = own_pace
    else:
        return None
    later = _later(rates, size, stage, studies)
    if later is None:
        if rates or stage != "lip-sync":
            return None
        later = 0.0  # nothing measured at all: the little writing left counts as nothing
    return current + later


@dataclass(frozen=True)
class Estimate:
    """A job's times ahead, in seconds (None: not known yet)."""

    left: float | None  # until it is done (a queued one: its wait and its own run)
    wait: float | None = None  # a queued job: until it starts


@lru_cache(maxsize=1024)
def _media(path: str) -> tuple[str, float, float, int] | None:
    """(kind, seconds, frame rate, frame count) of a stored input (never changed once stored); None if
    unreadable (its job will say why)."""
    from heygem.media.probe import fit_rate, probe

    try:
        info = fit_rate(probe(path))  # at the rate a job reads it
    except HeyGemError:
        return None
    return info.kind, info.audio_duration or info.duration, float(info.fps or 0), info.frame_count


def job_size(audio: Path, video: Path, still_fps: float, studies: bool) -> JobSize | None:
    """The size of a job with the speech ``audio`` and the presenter ``video``; None when either cannot be read."""
    from heygem.study import SCAN_SECONDS

    speech, picture = _media(str(audio)), _media(str(video))
    if speech is None or picture is None:
        return None
    kind, _, fps, frame_count = picture
    fps = fps if kind == "video" and fps else still_fps
    studied = 0 if not studies else 1 if kind == "image" else min(frame_count, int(SCAN_SECONDS * fps))
    return JobSize(frames=max(1, round(speech[1] * fps)), studied=studied, photo=kind == "image")


class Job(Protocol):
    """What an estimate reads of a queue's job (heygem.jobs.Job has it; this module does not import the queue,
    which imports it)."""

    id: str
    audio_path: Path
    video_path: Path
    state: str
    stage: str
    progress: float
    worker: str | None


@dataclass
class Estimator:
    """Estimates for the jobs of a queue, from its rates and the clocks of its running jobs.

    rates: the queue's StageRates. clocks: running job id -> StageClock. engine_of: a job's engine
    (``wav2lip`` or ``builtin``). workers: how many jobs run at once. now: the clocks' clock.
    """

    rates: StageRates
    clocks: Mapping[str, StageClock]
    engine_of: Callable[[Job], str]
    workers: Callable[[], int]
    now: Callable[[], float]
    still_fps: float = 25.0
    _sizes: dict[str, JobSize | None] = field(default_factory=dict)

    def _size(self, job: Job, engine: str) -> JobSize | None:
        if job.id not in self._sizes:
            if len(self._sizes) > 4096:
                self._sizes.clear()
            self._sizes[job.id] = job_size(job.audio_path, job.video_path, self.still_fps, engine == "builtin")
        return self._sizes[job.id]

    def _of(self, job: Job, now: float, rates_of: Callable[[str, str | None], Mapping[str, float]],
            next_machine: str | None) -> tuple[float | None, float | None]:
        """(time left if running, the whole run if queued; None when unknown). ``next_machine``: where a queued
        job will run (None: any of a cluster's)."""
        engine = self.engine_of(job)
        size = self._size(job, engine)
        if size is None:
            return None, None
        studies, key = engine == "builtin", rates_key(engine, size.photo)
        if job.state == "running":
            clock = self.clocks.get(job.id)
            if clock is None or clock.stage != job.stage:  # not seen by this process's clock (yet)
                return None, None
            rates = rates_of(key, machine_of(job.worker))
            return time_left(rates, size, job.stage, job.progress, clock.in_stage(now), studies), None
        return None, job_seconds(rates_of(key, next_machine), size, studies)

    def estimate(self, unfinished: Iterable[Job]) -> dict[str, Estimate]:
        """Estimates of every job in ``unfinished`` (the queue's queued and running jobs, in queue order)."""
        now = self.now()
        workers = max(1, self.workers())
        next_machine = None if workers > 1 else machine_of(None)
        looked_up: dict[tuple[str, str | None], Mapping[str, float]] = {}

        def rates_of(engine: str, machine: str | None) -> Mapping[str, float]:
            if (engine, machine) not in looked_up:
                looked_up[engine, machine] = self.rates.rates(engine, machine)
            return looked_up[engine, machine]

        out: dict[str, Estimate] = {}
        ahead: float | None = 0.0  # seconds of work before the next queued job can start, over all workers
        for job in unfinished:
            left, whole = self._of(job, now, rates_of, next_machine)
            if job.state == "running":
                out[job.id] = Estimate(left)
                ahead = None if ahead is None or left is None else ahead + left
            else:
                wait = None if ahead is None else ahead / workers
                out[job.id] = Estimate(None if wait is None or whole is None else wait + whole, wait)
                ahead = None if ahead is None or whole is None else ahead + whole
        return out
