"""Limits: refused at submission (API, page's queue, CLI in test_cli.py) before anything is copied or queued,
with the file, the limit and how to raise it; memory bounded for a long speech inside the limits."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from conftest import REPO, make_clip
from heygem.errors import LimitError
from heygem.jobs import JobQueue
from heygem.settings import Limits


def _stored(root: Path) -> set[Path]:
    return {path for path in (root / "batches").rglob("*") if path.is_file()}


def test_the_api_refuses_a_speech_over_the_limit_before_storing_anything(studio, short_clips, monkeypatch) -> None:
    monkeypatch.setattr(studio.queue.defaults, "limits", replace(studio.queue.defaults.limits, speech_minutes=1 / 60))
    before, jobs_before = _stored(studio.root), len(studio.queue.jobs())
    with short_clips["speech"].open("rb") as audio, short_clips["d0"].open("rb") as video:
        answer = httpx.post(f"{studio.url}/api/jobs", files={"audio": ("lecture 1.wav", audio), "video": ("d0.mp4", video)},
                            timeout=60)
    assert answer.status_code == 400
    assert answer.json() == {"error": "lecture 1.wav: the speech is 2 s long; the limit is 1 s "
                                      "(raise it with --max-speech-minutes or HEYGEM_MAX_SPEECH_MINUTES)"}
    assert _stored(studio.root) == before and len(studio.queue.jobs()) == jobs_before


def test_a_video_too_large_or_too_long_is_refused_naming_it(short_clips, settings, tmp_path: Path) -> None:
    settings.limits = Limits(picture_side=320)
    queue = JobQueue(tmp_path / "outputs", settings, start=False)
    try:
        with pytest.raises(LimitError) as refused:
            queue.submit(short_clips["speech"], [short_clips["d0"], short_clips["d13"]], settings,
                         video_names=["shop.mp4", "studio take.mp4"])
        assert str(refused.value) == ("shop.mp4: the video is 360x360; the limit is 320 pixels on the longer side "
                                      "(raise it with --max-picture-side or HEYGEM_MAX_PICTURE_SIDE), or scale it down first")
        settings.limits = Limits(video_minutes=1 / 60)
        with pytest.raises(LimitError, match=r"^d13.mp4: the video is 2 s long; the limit is 1 s \(raise it with "
                                             r"--max-video-minutes or HEYGEM_MAX_VIDEO_MINUTES\)"):
            queue.submit(short_clips["speech"], [short_clips["d13"]], settings)
        assert _stored(queue.root) == set() and queue.jobs() == []
    finally:
        queue.close()


def test_the_queue_refuses_work_past_its_limit(short_clips, settings, tmp_path: Path) -> None:
    settings.limits = Limits(queued_jobs=2)
    queue = JobQueue(tmp_path / "outputs", settings, start=False)
    try:
        queue.submit(short_clips["speech"], [short_clips["d0"], short_clips["d13"]], settings)
        stored = _stored(queue.root)
        with pytest.raises(LimitError, match=r"^d19.mp4: the queue already holds 2 unfinished job\(s\); the limit is 2 "
                                             r"\(raise it with --max-queued-jobs or HEYGEM_MAX_QUEUED_JOBS\)"):
            queue.submit(short_clips["speech"], [short_clips["d19"]], settings)
        assert _stored(queue.root) == stored and len(queue.jobs()) == 2
    finally:
        queue.close()


def test_presenters_waiting_to_be_prepared_count_toward_the_queue_s_limit(short_clips, settings, tmp_path: Path) -> None:
    """The one worker prepares presenters and runs jobs in turn: presenters added without end had been queued
    without end, past --max-queued-jobs, and every job waited behind them."""
    settings.limits = Limits(queued_jobs=2)
    queue = JobQueue(tmp_path / "outputs", settings, start=False)
    try:
        queue.presenters.add(short_clips["d0"], "first")
        queue.submit(short_clips["speech"], [short_clips["d13"]], settings)
        with pytest.raises(LimitError, match=r"^d19.mp4: the queue already holds 1 unfinished job\(s\) and 1 presenter\(s\) "
                                             r"waiting to be prepared; the limit is 2 \(raise it with --max-queued-jobs"):
            queue.presenters.add(short_clips["d19"], "second")
        with pytest.raises(LimitError, match=r"^d19.mp4: the queue already holds 1 unfinished job\(s\) and 1 presenter"):
            queue.submit(short_clips["speech"], [short_clips["d19"]], settings)
        assert len(queue.presenters.list()) == 1 and len(queue.jobs()) == 1
        assert [p.name for p in (queue.root / "presenters").iterdir()] == [queue.presenters.list()[0].id]
    finally:
        queue.close()


def test_limits_come_from_options_then_the_environment_then_the_defaults() -> None:
    environ = {"HEYGEM_MAX_SPEECH_MINUTES": "90", "HEYGEM_MAX_UPLOAD_MB": "0"}
    limits = Limits.from_env(environ, speech_minutes=None, picture_side=2048)
    assert limits == Limits(upload_mb=0, speech_minutes=90.0, picture_side=2048)
    with pytest.raises(ValueError, match="HEYGEM_MAX_QUEUED_JOBS / --max-queued-jobs must be a number, not 'many'"):
        Limits.from_env({"HEYGEM_MAX_QUEUED_JOBS": "many"})


_PEAK = """
import resource, sys
from heygem.pipeline import prepare_audio
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
prepared = prepare_audio(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(prepared.samples.nbytes / 1e6, (after - before) / 1e3)
"""


def test_a_long_speech_is_read_without_holding_it_several_times_over(media: Path, tmp_path: Path) -> None:
    # 20 minutes of real speech (looped): 77 MB as float32 samples at 16 kHz. The whole-signal recipe held it
    # again in float64 twice, plus its complex spectrum, well over 1 GB at the peak.
    speech = make_clip(tmp_path / "long.flac", "-stream_loop", "-1", "-i", str(media / "speechrecognition/english.wav"),
                       "-t", "1200", "-ar", "16000", "-ac", "1")
    done = subprocess.run([sys.executable, "-c", _PEAK, str(speech)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=True)
    samples_mb, peak_growth_mb = map(float, done.stdout.split())
    assert samples_mb == pytest.approx(76.8, abs=0.5)
    assert peak_growth_mb < samples_mb + 60, f"reading {samples_mb:.0f} MB of samples peaked {peak_growth_mb:.0f} MB higher"


def test_the_page_says_which_file_is_over_which_limit(studio, short_clips, monkeypatch) -> None:
    monkeypatch.setattr(studio.queue.defaults, "limits", replace(studio.queue.defaults.limits, speech_minutes=1 / 60))
    jobs_before = len(studio.queue.jobs())
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        uploaded = []
        for path in (short_clips["speech"], short_clips["d0"]):
            with path.open("rb") as handle:
                answer = client.post("/gradio_api/upload", files={"files": (path.name, handle)})
            assert answer.status_code == 200, answer.text
            uploaded.append({"path": answer.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}})
        parameters = client.get("/gradio_api/info").json()["named_endpoints"]["/submit_single"]["parameters"]
        data = uploaded + [p.get("parameter_default") for p in parameters[2:]]
        event = client.post("/gradio_api/call/submit_single", json={"data": data}).json()["event_id"]
        stream = client.get(f"/gradio_api/call/submit_single/{event}").text
    assert "the speech is 2 s long; the limit is 1 s (raise it with --max-speech-minutes or HEYGEM_MAX_SPEECH_MINUTES)" in stream
    assert len(studio.queue.jobs()) == jobs_before


def test_work_that_would_fill_the_disk_is_refused_by_name_and_stores_nothing(short_clips, settings, tmp_path: Path,
                                                                             monkeypatch) -> None:
    """The disk of the outputs keeps 1 GB free (the results of the jobs already queued, the job database): a
    submission or a new presenter whose copies would leave less is refused, naming the file and what to do."""
    import heygem.limits

    settings.limits = Limits(free_gb=1)
    queue = JobQueue(tmp_path / "outputs", settings, start=False)
    try:
        speech, video = short_clips["speech"].stat().st_size, short_clips["d0"].stat().st_size
        monkeypatch.setattr(heygem.limits, "_free_bytes", lambda folder: 2**30 + speech + video - 1)  # a byte short
        with pytest.raises(LimitError) as refused:
            queue.submit(short_clips["speech"], [short_clips["d0"]], settings, video_names=["shop.mp4"])
        assert refused.value.code == "disk_full"
        assert str(refused.value).startswith("shop.mp4: not stored: the studio's disk has 1.00 GB free")
        assert "keeps 1 GB free" in str(refused.value) and "HEYGEM_MIN_FREE_GB" in str(refused.value)
        monkeypatch.setattr(heygem.limits, "_free_bytes", lambda folder: 2**30 + video - 1)
        with pytest.raises(LimitError, match=r"^d0.mp4: not stored"):
            queue.presenters.add(short_clips["d0"], "Dora")
        assert _stored(queue.root) == set() and queue.jobs() == [] and queue.presenters.list() == []

        monkeypatch.setattr(heygem.limits, "_free_bytes", lambda folder: 2**30 + speech + video)  # room enough
        queue.submit(short_clips["speech"], [short_clips["d0"]], settings)
        assert len(queue.jobs()) == 1
    finally:
        queue.close()


def test_a_disk_that_fills_while_a_batch_is_stored_leaves_no_half_batch(short_clips, settings, tmp_path: Path,
                                                                        monkeypatch) -> None:
    """Another program filling the disk between the check and the copies: the copy's ENOSPC is the same refusal,
    and what was copied of the batch is removed (no job refers to it)."""
    import errno

    import heygem.jobs

    queue = JobQueue(tmp_path / "outputs", settings, start=False)
    store = heygem.jobs._store

    def store_until_full(source, folder, name, link=False):
        if "audio" not in str(folder):
            raise OSError(errno.ENOSPC, "No space left on device")
        return store(source, folder, name, link=link)

    monkeypatch.setattr(heygem.jobs, "_store", store_until_full)
    try:
        with pytest.raises(LimitError, match=r"^d0.mp4: not stored: the studio's disk has .* (MB|GB) free") as refused:
            queue.submit(short_clips["speech"], [short_clips["d0"]], settings)
        assert refused.value.code == "disk_full"
        assert _stored(queue.root) == set() and queue.jobs() == []
    finally:
        queue.close()


def test_the_api_answers_507_when_the_disk_is_too_full_to_store_a_submission(studio, short_clips, monkeypatch) -> None:
    import heygem.limits

    monkeypatch.setattr(heygem.limits, "_free_bytes", lambda folder: 2**29)
    before, jobs_before = _stored(studio.root), len(studio.queue.jobs())
    with short_clips["speech"].open("rb") as audio, short_clips["d0"].open("rb") as video:
        answer = httpx.post(f"{studio.url}/api/jobs", files={"audio": ("lesson.wav", audio), "video": ("shop.mp4", video)},
                            timeout=60)
    assert answer.status_code == 507
    body = answer.json()
    assert body["code"] == "disk_full" and body["error"].startswith("shop.mp4: not stored"), body
    assert body["params"]["free_gb"] == 0.5 and body["params"]["env"] == "HEYGEM_MIN_FREE_GB"
    assert _stored(studio.root) == before and len(studio.queue.jobs()) == jobs_before


@pytest.mark.parametrize("how", ["ffmpeg", "python"])
def test_a_job_whose_disk_fills_while_it_writes_says_so_in_words(short_clips, settings, tmp_path: Path,
                                                                   how: str) -> None:
    """The disk filling while a job writes (ffmpeg's muxer, or a frame store): the job fails with what happened
    and what to do, in the page's language, not a muxer's words; the queue goes on."""
    import errno

    from heygem.errors import FFmpegError
    from heygem.jobs import FAILED
    from heygem.ui.studio import reason_words

    def filling_runner(audio, video, output, settings, progress):
        if how == "ffmpeg":  # the words of a real run on a full tmpfs (bench/RESULTS.md, "a full disk")
            raise FFmpegError(f"{video}: ffmpeg failed with exit code 228: av_interleaved_write_frame(): No space "
                              "left on device; Error muxing a packet; Error writing trailer: No space left on device")
        raise OSError(errno.ENOSPC, "No space left on device")

    queue = JobQueue(tmp_path / "outputs", settings, run=filling_runner, start=False)
    try:
        job_id = queue.submit(short_clips["speech"], [short_clips["d0"]], settings, video_names=["shop.mp4"]).jobs[0].id
        queue.start()
        job = queue.wait([job_id], timeout=60)[0]
    finally:
        queue.close()
    assert job.state == FAILED and job.error_code == "disk_full_job"
    assert job.error.startswith("shop.mp4: the disk filled while its result was being written (") and \
        "delete old results in History" in job.error, job.error
    assert reason_words("zh", job.error_code, job.error_params, job.error).startswith("shop.mp4：写入结果时磁盘已满")
