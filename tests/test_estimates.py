"""Time left and queue wait from the stage rates measured on this machine (heygem.estimates), on a fake clock:
no test here waits on real time."""
from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from heygem.estimates import Estimate, JobSize, StageClock, StageRates, job_seconds, machine_of, time_left


def _rates() -> StageRates:
    return StageRates(sqlite3.connect(":memory:", check_same_thread=False), threading.RLock())


def test_rates_are_seconds_per_unit_per_machine_and_engine_smoothed_over_jobs() -> None:
    rates = _rates()
    size = JobSize(frames=50, studied=25)
    rates.record("box", "builtin", {"audio": 1.0, "probe": 2.0, "study": 10.0, "lip-sync": 20.0, "encode": 1.0}, size)
    assert rates.rates("builtin", "box") == pytest.approx(
        {"audio": 0.02, "probe": 2.0, "study": 0.4, "lip-sync": 0.4, "encode": 0.02})
    rates.record("box", "builtin", {"lip-sync": 40.0}, size)  # a slower job: halfway to its rate
    assert rates.rates("builtin", "box")["lip-sync"] == pytest.approx(0.6)
    assert rates.rates("wav2lip", "box") == {} and rates.rates("builtin", "other") == {}
    rates.record("other", "builtin", {"lip-sync": 10.0}, size)
    assert rates.rates("builtin")["lip-sync"] == pytest.approx((0.6 + 0.2) / 2)  # any machine: the mean


def test_a_cold_start_counts_only_until_a_warm_job_is_measured() -> None:
    """The first job of a worker also loads the models: its rates stand in until a job without that load
    replaces them, and never water down what warm jobs measured."""
    rates = _rates()
    size = JobSize(frames=50, studied=50)
    rates.record("box", "builtin", {"study": 20.0}, size, cold=True)
    assert rates.rates("builtin", "box")["study"] == pytest.approx(0.4)  # something, rather than nothing
    rates.record("box", "builtin", {"study": 10.0}, size)
    assert rates.rates("builtin", "box")["study"] == pytest.approx(0.2)  # replaced, not averaged
    rates.record("box", "builtin", {"study": 40.0}, size, cold=True)  # the studio started again
    assert rates.rates("builtin", "box")["study"] == pytest.approx(0.2)
    rates.record("box", "builtin", {"study": 5.0}, size)
    assert rates.rates("builtin", "box")["study"] == pytest.approx(0.15)


def test_the_time_left_is_the_stage_left_and_the_stages_after_it() -> None:
    rates = {"audio": 0.02, "probe": 2.0, "study": 0.4, "lip-sync": 0.6, "encode": 0.02}
    size = JobSize(frames=100, studied=50)
    # The whole run: 2 + 2 + 20 + 60 + 2 seconds; without the study for an engine that makes none.
    assert job_seconds(rates, size, studies=True) == pytest.approx(86.0)
    assert job_seconds(rates, size, studies=False) == pytest.approx(66.0)
    # 10% into the study after 2 s: mostly the measured 20 s of study (18 left), a little its own pace
    # (2 s for 10%: 18 left), then lip-syncing and writing.
    assert time_left(rates, size, "study", 0.1, 2.0, studies=True) == pytest.approx(18.0 + 60.0 + 2.0)
    # Halfway through lip-syncing at twice the measured pace (15 s, not 30): its own pace weighs half.
    assert time_left(rates, size, "lip-sync", 0.5, 15.0, studies=True) == pytest.approx(
        0.5 * 30.0 + 0.5 * 15.0 + 2.0)
    assert time_left(rates, size, "starting", 0.0, 0.0, studies=True) == pytest.approx(86.0)


def test_nothing_measured_means_estimating_except_from_the_lip_sync_pace_itself() -> None:
    size = JobSize(frames=100, studied=50)
    assert time_left({}, size, "study", 0.5, 3.0, studies=True) is None
    assert time_left({}, size, "lip-sync", 0.01, 3.0, studies=True) is None  # too little done to tell
    assert time_left({}, size, "lip-sync", 0.25, 10.0, studies=True) == pytest.approx(30.0)
    assert job_seconds({"lip-sync": 0.6}, size, studies=True) is None  # reading and writing not measured yet
    # Every job so far skipped the study and the sounds' wait (presenters studied before): they count as nothing.
    assert job_seconds({"audio": 0.02, "probe": 2.0, "lip-sync": 0.6, "encode": 0.02}, size, studies=True) == (
        pytest.approx(66.0))


def test_photos_are_measured_apart(short_clips, media: Path) -> None:
    """A photo's study is one frame and its mouth is made another way: its rates are its own."""
    from heygem.estimates import job_size, rates_key

    photo = job_size(short_clips["speech"], media / "insightface" / "t1.jpg", 25.0, studies=True)
    video = job_size(short_clips["speech"], short_clips["d19"], 25.0, studies=True)
    assert (photo.frames, photo.studied, photo.photo) == (50, 1, True)  # 2 s of speech at 25 fps
    assert (video.frames, video.studied, video.photo) == (60, 60, False)  # at the video's 30 fps
    assert (rates_key("builtin", photo.photo), rates_key("builtin", video.photo)) == ("builtin-photo", "builtin")


def test_a_stage_clock_sums_the_time_of_each_stage() -> None:
    clock = StageClock(10.0)
    for stage, now in (("starting", 10.0), ("audio", 10.5), ("probe", 11.0), ("audio", 12.0), ("probe", 12.5),
                       ("lip-sync", 14.0)):
        clock.moved(stage, now)
    assert clock.seconds == pytest.approx({"starting": 0.5, "audio": 1.0, "probe": 2.5})
    assert (clock.stage, clock.in_stage(20.0)) == ("lip-sync", 6.0)
    assert machine_of("worker-2 on gpu-box (cuda)") == "gpu-box (cuda)"


class _FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_fresh_video_in_its_study_gets_the_time_its_stages_took_here_and_the_queue_its_wait(
        short_clips, tmp_path: Path) -> None:
    """The issue: "about 3:10 left" for a job that finished 13 s later. A job here took 13 s: 1 s reading the
    speech, 1 s the video, 6 s studying the presenter, 4 s lip-syncing, 1 s writing. The next one, as long and
    halfway through its study after 3 s of it, has about 8 s left (3 of study, 4 + 1 after); one queued behind
    it starts in about 8 s and is done in about 21."""
    from heygem.jobs import JobQueue
    from heygem.pipeline import GenerateResult
    from heygem.settings import EngineOptions, Settings
    from heygem.ui.studio import job_status_html

    clock = _FakeClock()
    held, holding = threading.Event(), threading.Event()
    steps = {"first": [(1, "probe", 0.0), (2, "study", 0.0), (8, "lip-sync", 0.1), (12, "encode", 0.0)],
             "second": [(101, "probe", 0.0), (102, "study", 0.5)]}

    def run(audio, video, output, settings, progress):
        second = clock.t >= 100
        for at, stage, fraction in steps["second" if second else "first"]:
            clock.t = at
            progress(stage, fraction, str(video))
        if second:
            clock.t = 105  # 3 s into the study
            holding.set()
            held.wait(60)
            raise RuntimeError("let go")
        clock.t = 13
        out = tmp_path / "first.mp4"
        out.write_bytes(b"a result")  # what the estimate needs is the timing, not the file
        return GenerateResult(output=out, audio=Path(audio.path), video=Path(video), engine="builtin (test)", frames=50,
                              frames_without_face=0, fps=25.0, width=360, height=360, duration=2.0, study="made")

    queue = JobQueue(tmp_path / "outputs", Settings(engine=EngineOptions(engine="builtin", device="cpu")), run=run,
                     start=False)
    queue.estimator.now = clock
    try:
        queue.start()
        first = queue.submit(short_clips["speech"], [short_clips["d0"]]).jobs[0]
        assert queue.wait([first.id], timeout=120)[0].state == "succeeded"
        # Per output frame (d0: 2 s at 25 fps, all 50 frames studied), reading the video per job.
        assert queue.rates.rates("builtin", machine_of(None)) == pytest.approx(
            {"audio": 1 / 50, "probe": 1.0, "study": 6 / 50, "lip-sync": 4 / 50, "encode": 1 / 50})

        clock.t = 100
        second = queue.submit(short_clips["speech"], [short_clips["d0"]]).jobs[0]
        assert holding.wait(60)
        third = queue.submit(short_clips["speech"], [short_clips["d19"]]).jobs[0]
        jobs = queue.jobs(["queued", "running"], newest_first=False)
        estimates = queue.estimator.estimate(jobs)
        assert estimates[second.id] == Estimate(pytest.approx(8.0))
        # d19 runs at 30 fps: 60 frames, so its own run is 1.2 + 1 + 7.2 + 4.8 + 1.2 s.
        assert estimates[third.id] == Estimate(pytest.approx(8.0 + 15.4), pytest.approx(8.0))
        running = queue.job(second.id)
        assert "studying the presenter · 14% · " in job_status_html(running, "en", estimate=estimates[second.id])
        assert "about 0:08 left" in job_status_html(running, "en", estimate=estimates[second.id])
        assert "分析主播" in job_status_html(running, "zh", estimate=estimates[second.id])
        queued = queue.job(third.id)
        assert "Queued: one job ahead. Starts in about 0:08." in job_status_html(queued, "en", 1, estimates[third.id])
        assert "排队中：前面还有 1 个任务。约 0:08 后开始。" in job_status_html(queued, "zh", 1, estimates[third.id])
        # Until anything is measured: "estimating…", as before.
        unmeasured = queue.estimator.estimate([replace(running, worker="worker-1 on elsewhere (cpu)")])
        assert "estimating…" in job_status_html(running, "en", estimate=next(iter(unmeasured.values())))
    finally:
        held.set()
        queue.close()
