"""The job queue: FIFO order, one bad file failing alone, cancel, batches sharing one speech, and restarts."""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, make_clip
from heygem import jobs as jobs_module
from heygem.errors import CancelledError
from heygem.jobs import CANCELLED, FAILED, QUEUED, RUNNING, SUCCEEDED, JobQueue, safe_name
from heygem.pipeline import generate


@pytest.fixture
def queue_root(tmp_path: Path) -> Path:
    return tmp_path / "outputs"


def _recording_runner(calls: list[str]):
    def run(audio, video, output, settings, progress):
        calls.append(Path(video).name)
        return generate(audio, video, output, settings, progress)

    return run


def test_safe_name_keeps_only_the_last_component() -> None:
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\me\\my talk.mp4") == "my_talk.mp4"
    assert safe_name("讲课 第1节.mp4") == "讲课_第1节.mp4"
    assert safe_name("..") == "file"


def test_jobs_run_in_submission_order_and_a_bad_file_fails_alone(short_clips, settings, queue_root: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(4096))
    pattern = make_clip(tmp_path / "pattern.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=1", "-c:v", "libx264")
    calls: list[str] = []
    queue = JobQueue(queue_root, settings, run=_recording_runner(calls), start=False)
    try:
        first = queue.submit(short_clips["speech"], [short_clips["d0"], broken], settings)
        second = queue.submit(short_clips["speech"], [pattern, short_clips["d13"]], settings,
                              video_names=["no face here.mp4", "d13.mp4"])
        assert [job.state for job in first.jobs + second.jobs] == [QUEUED] * 4
        queue.start()
        done = queue.wait([job.id for job in first.jobs + second.jobs], timeout=240)
    finally:
        queue.close()

    assert calls == ["d0.mp4", "broken.mp4", "no_face_here.mp4", "d13.mp4"]
    assert [job.state for job in done] == [SUCCEEDED, FAILED, FAILED, SUCCEEDED]
    good, corrupt, faceless, last = done
    assert good.output.is_file() and last.output.is_file()
    assert good.output.name == "d0__speech.mp4"
    # Reasons name the file as the user uploaded it, never the server's copy.
    assert corrupt.error.startswith("broken.mp4:") and "batches" not in corrupt.error
    assert faceless.error.startswith("no face here.mp4:") and "face" in faceless.error.lower()
    assert good.started < corrupt.started < faceless.started < last.started
    assert good.engine.startswith("wav2lip") and good.timings["total"] > 0


def test_a_batch_prepares_its_speech_once_and_zips_every_result(short_clips, settings, queue_root: Path, monkeypatch) -> None:
    prepared: list[Path] = []
    real_prepare = jobs_module.prepare_audio
    monkeypatch.setattr(jobs_module, "prepare_audio", lambda path, *limits: prepared.append(path) or real_prepare(path, *limits))
    queue = JobQueue(queue_root, settings)
    try:
        videos = [short_clips["d0"], short_clips["d13"], short_clips["d19"]]
        batch = queue.submit(short_clips["speech"], videos, settings, audio_name="my speech.wav",
                             video_names=["../../alice.mp4", "bob.mp4", "C:\\evil\\carol.mp4"])
        queue.wait([job.id for job in batch.jobs], timeout=240)
        batch = queue.batch(batch.id)
        archive = queue.zip_batch(batch.id)
    finally:
        queue.close()

    assert [job.state for job in batch.jobs] == [SUCCEEDED] * 3
    assert len(prepared) == 1
    assert archive.is_file() and archive.resolve().is_relative_to(queue_root.resolve())
    with zipfile.ZipFile(archive) as z:
        names = sorted(z.namelist())
        assert names == ["alice__my_speech.mp4", "bob__my_speech.mp4", "carol__my_speech.mp4"]
        for name in names:
            assert z.getinfo(name).file_size == (queue_root / "batches" / batch.id / name).stat().st_size


def _blocking_runner(entered: threading.Event):
    """Reports progress until cancelled, as generate does between frames."""

    def run(audio, video, output, settings, progress):
        entered.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            progress("lip-sync", 0.5, str(video))
            time.sleep(0.05)
        raise AssertionError("the job was not cancelled")

    return run


def test_cancel_a_running_and_a_queued_job(short_clips, settings, queue_root: Path) -> None:
    entered = threading.Event()
    queue = JobQueue(queue_root, settings, run=_blocking_runner(entered))
    try:
        batch = queue.submit(short_clips["speech"], [short_clips["d0"], short_clips["d13"], short_clips["d19"]], settings)
        running, queued, _ = batch.jobs
        assert entered.wait(20)
        assert queue.job(running.id).state == RUNNING
        assert queue.cancel(queued.id).state == CANCELLED
        queue.cancel(running.id)
        assert queue.wait([running.id], timeout=20)[0].state == CANCELLED
        # The queue goes on with the next job, which is then cancelled along with the rest of the batch.
        queue.cancel_batch(batch.id)
        states = [job.state for job in queue.wait([job.id for job in batch.jobs], timeout=20)]
    finally:
        queue.close()
    assert states == [CANCELLED] * 3
    assert not list((queue_root / "batches" / batch.id).glob("*.mp4"))


def test_deleting_a_result_removes_its_file_and_entry(short_clips, settings, queue_root: Path) -> None:
    queue = JobQueue(queue_root, settings)
    try:
        job = queue.submit(short_clips["speech"], [short_clips["d19"]], settings).jobs[0]
        job = queue.wait([job.id], timeout=120)[0]
        assert job.state == SUCCEEDED and job.output.is_file()
        queue.delete(job.id)
        assert not job.output.exists()
        assert queue.jobs() == []
        with pytest.raises(KeyError):
            queue.job(job.id)
    finally:
        queue.close()


_KILLED_WORKER = """
import sys, time
from pathlib import Path
from heygem.jobs import JobQueue

def never_finishes(audio, video, output, settings, progress):
    while True:
        progress("lip-sync", 0.3, str(video))
        time.sleep(0.1)

queue = JobQueue(Path(sys.argv[1]), run=never_finishes)
time.sleep(600)
"""


def test_a_restart_finishes_jobs_that_were_queued_or_running(short_clips, settings, queue_root: Path) -> None:
    # A finished job from an earlier run stays listed.
    queue = JobQueue(queue_root, settings)
    earlier = queue.submit(short_clips["speech"], [short_clips["d0"]], settings).jobs[0]
    assert queue.wait([earlier.id], timeout=120)[0].state == SUCCEEDED
    queue.close()

    # Two jobs queued, then a process whose worker is killed in the middle of the first.
    queue = JobQueue(queue_root, settings, start=False)
    batch = queue.submit(short_clips["speech"], [short_clips["d13"], short_clips["d19"]], settings)
    queue.close()
    process = subprocess.Popen([sys.executable, "-c", _KILLED_WORKER, str(queue_root)], cwd=REPO)
    try:
        db = sqlite3.connect(queue_root / "heygem.db")
        deadline = time.monotonic() + 60
        while db.execute("SELECT state FROM jobs WHERE id = ?", (batch.jobs[0].id,)).fetchone()[0] != RUNNING:
            assert time.monotonic() < deadline and process.poll() is None, "the first job never started"
            time.sleep(0.1)
        db.close()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()

    restarted = JobQueue(queue_root, settings)
    try:
        done = restarted.wait([job.id for job in batch.jobs], timeout=240)
        listed = {job.id: job.state for job in restarted.jobs()}
    finally:
        restarted.close()
    assert [job.state for job in done] == [SUCCEEDED, SUCCEEDED]
    assert done[0].attempts == 2 and done[1].attempts == 1
    assert all(job.output.is_file() for job in done)
    assert listed == {earlier.id: SUCCEEDED, batch.jobs[0].id: SUCCEEDED, batch.jobs[1].id: SUCCEEDED}


def test_progress_writer_stops_a_job_asked_to_cancel(short_clips, settings, queue_root: Path) -> None:
    queue = JobQueue(queue_root, settings, start=False)
    try:
        job = queue.submit(short_clips["speech"], [short_clips["d0"]], settings).jobs[0]
        claimed = queue._claim_next()
        assert claimed.id == job.id
        writer = jobs_module._ProgressWriter(queue, job.id)
        writer("lip-sync", 0.25, "d0.mp4")
        assert queue.job(job.id).progress == pytest.approx(0.25)
        queue.cancel(job.id)
        with pytest.raises(CancelledError):
            writer("encode", 0.9, "d0.mp4")
    finally:
        queue.close()
