"""The studio's own functions, without a browser: what the page says about uploads, engines, the queue and the log."""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from heygem import engines
from heygem.settings import EngineOptions
from heygem.jobs import Job
from heygem.presenters import Presenter
from heygem.ui.studio import batch_table_html, engine_choices, job_status_html, relative_paths, upload_problem
from heygem.ui.texts import text


@pytest.fixture
def no_installed_checkpoint(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engines, "DEFAULT_CHECKPOINTS", (tmp_path / "checkpoints" / "wav2lip_gan.pth",))


def test_wav2lip_is_not_offered_without_a_checkpoint_and_the_line_says_where_it_goes(no_installed_checkpoint) -> None:
    offered, info = engine_choices(EngineOptions())
    assert offered == ["auto", "builtin"]
    assert "checkpoints/wav2lip_gan.pth" in text("en", info)
    assert "checkpoints/wav2lip_gan.pth" in text("zh", info) and "检查点" in text("zh", info)


def test_wav2lip_is_offered_with_the_checkpoint_the_settings_name(no_installed_checkpoint, test_checkpoint: Path) -> None:
    offered, info = engine_choices(EngineOptions(checkpoint=test_checkpoint))
    assert offered == ["auto", "wav2lip", "builtin"]
    assert info == "engine_info"


def test_uploads_are_judged_by_their_content_and_named(short_clips, media: Path, tmp_path: Path, picture_bomb) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("shopping list: milk, eggs\n")
    assert upload_problem(str(notes), "picture", "en") == (
        "notes.mp4 is not a video or photo HeyGem can read. Give a video (mp4, mov, mkv, webm, avi) or a photo "
        "(jpg, png, webp).")
    assert upload_problem(str(notes), "picture", "zh").startswith("notes.mp4 不是 HeyGem 能读取的视频或照片")
    assert upload_problem(str(short_clips["d0"]), "speech", "en") == "d0.mp4: the speech file has no sound."
    assert upload_problem(str(short_clips["speech"]), "picture", "zh") == "speech.wav 只有声音：主播必须是人脸视频或照片。"
    assert upload_problem(str(short_clips["d0"]), "picture", "en") == ""
    assert upload_problem(str(media / "insightface" / "t1.jpg"), "picture", "en") == ""
    assert upload_problem(str(short_clips["speech"]), "speech", "en") == ""
    bomb = picture_bomb(tmp_path / "holiday.png", 30000, 30000)  # a photo, too large to decode: said so
    assert upload_problem(str(bomb), "picture", "en") == (
        "holiday.png: the photo is 30000×30000 pixels (900 megapixels); HeyGem takes photos of up to 268 megapixels. "
        "Scale it down first.")
    assert upload_problem(str(bomb), "picture", "zh").startswith("holiday.png：照片为 30000×30000 像素")


def test_ffprobe_words_go_to_the_log_not_the_page(tmp_path: Path, caplog) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")
    with caplog.at_level("INFO", logger="heygem.ui.studio"):
        shown = upload_problem(str(notes), "picture", "en")
    assert "ffprobe" not in shown and "Invalid data" not in shown
    assert "notes.mp4" in caplog.text


def test_log_paths_are_shown_relative_to_the_project(tmp_path: Path) -> None:
    project = tmp_path / "heygem"
    line = f"2026-12-01 10:00:00,000 INFO job 1 succeeded: {project}/outputs/batches/ab/d0__speech.mp4"
    assert relative_paths(line, [project]).endswith("job 1 succeeded: outputs/batches/ab/d0__speech.mp4")


def _job(state: str, stage: str, cancel_requested: bool = False) -> Job:
    return Job(id="j1", batch_id="b1", seq=1, state=state, audio_name="speech.wav", video_name="d0.mp4",
               audio_path=Path("speech.wav"), video_path=Path("d0.mp4"), output=None, stage=stage, progress=0.4,
               error=None, engine=None, cancel_requested=cancel_requested)


def test_a_queued_job_says_how_many_are_ahead_in_plain_words() -> None:
    queued = _job("queued", "queued")
    assert "Queued: next in line." in job_status_html(queued, "en", ahead=0)
    assert "Queued: one job ahead." in job_status_html(queued, "en", ahead=1)
    assert "Queued: 3 jobs ahead." in job_status_html(queued, "en", ahead=3)
    assert "排队中：下一个就轮到它。" in job_status_html(queued, "zh", ahead=0)


def test_a_running_job_asked_to_cancel_says_cancelling_in_the_card_and_the_table() -> None:
    cancelling = _job("running", "lip-sync", cancel_requested=True)
    assert "cancelling…" in job_status_html(cancelling, "en") and "lip-syncing" not in job_status_html(cancelling, "en")
    assert "正在取消…" in job_status_html(cancelling, "zh")
    assert "正在取消…" in batch_table_html([cancelling], "zh")
    assert "cancelling…" not in batch_table_html([_job("running", "lip-sync")], "en")


def _presenter(**changes) -> Presenter:
    fields = dict(id="p1", name="Anna", created=0.0, file_name="anna.mp4", video_path=Path("presenter.mp4"),
                  kind="video", width=640, height=360, duration=2.0, frames=50, faces_found=None, thumbnail=None,
                  state="preparing", stage="faces", progress=0.4, error=None)
    return Presenter(**{**fields, **changes})


def test_the_presenters_table_says_progress_faces_found_and_why_one_failed() -> None:
    from heygem.ui.studio import presenter_choices, presenters_table_html

    preparing = _presenter()
    ready = _presenter(id="p2", name="Ben", state="ready", stage="ready", progress=1.0, faces_found=48,
                       thumbnail=Path("thumbnail.jpg"))
    failed = _presenter(id="p3", name="Cleo", state="failed", stage="failed", error="cleo.mp4: no face found")
    table = presenters_table_html([preparing, ready, failed], "en")
    assert "preparing · finding the face · 40%" in table
    assert "48 of 50 frames" in table and "640×360" in table and "2.0 s" in table
    assert "cleo.mp4: no face found" in table
    assert "/api/presenters/p2/thumbnail" in table and "/api/presenters/p1/thumbnail" not in table
    zh = presenters_table_html([preparing, ready], "zh")
    assert "准备中 · 查找人脸" in zh and "50 帧中的 48 帧" in zh
    # Jobs may pick a ready or preparing presenter, never a failed one.
    assert presenter_choices([preparing, ready, failed], "en") == [("Anna (preparing)", "p1"), ("Ben", "p2")]
    assert presenters_table_html([], "zh").count("还没有主播") == 1
    # What its preparation found is said under its state, in the page's language.
    late = _presenter(id="p4", name="Dee", state="ready", stage="ready", progress=1.0, faces_found=50,
                      notes=["stored.mp4: its sound comes 200 ms before the mouth that makes it (recorded out of step "
                             "with the picture); its jobs choose its mouths by the sounds they were making."],
                      note_codes=[("note_sound_early", {"file": "dee.mp4", "ms": 200})])
    assert "dee.mp4: its sound comes 200 ms before the mouth that makes it" in presenters_table_html([late], "en")
    assert "dee.mp4：声音比发出它的嘴型早 200 毫秒" in presenters_table_html([late], "zh")


def test_a_running_job_shows_its_percentage_elapsed_and_the_estimated_time_left(monkeypatch) -> None:
    """The time left comes from the queue's estimates (heygem.estimates, tested in test_estimates.py), not from the
    share done so far: without one, "estimating…"."""
    from heygem.estimates import Estimate
    from heygem.ui.studio import batch_progress_words, running_words

    job = replace(_job("running", "lip-sync"), progress=0.4, started=1000.0)  # 40 % into lip-syncing
    assert running_words("en", job, now=1030.0, estimate=Estimate(13.0)) == "50% · 0:30 elapsed · about 0:13 left"
    assert running_words("zh", job, now=1030.0, estimate=Estimate(13.0)) == "50% · 已用 0:30 · 约剩 0:13"
    assert running_words("en", job, now=1030.0) == "50% · 0:30 elapsed · estimating…"
    monkeypatch.setattr("heygem.ui.studio.time.time", lambda: 1030.0)
    assert "50% · 0:30 elapsed · about 0:13 left" in job_status_html(job, "en", estimate=Estimate(13.0))
    assert "50% · 0:30 elapsed · about 0:13 left" in batch_table_html([job], "en", {job.id: Estimate(13.0)})
    queued = replace(_job("queued", "queued"), id="j2")
    assert "starts in about 0:13" in batch_table_html([job, queued], "en", {queued.id: Estimate(40.0, 13.0)})
    # The batch is done when its last job is: 40 s from now.
    estimates = {job.id: Estimate(13.0), queued.id: Estimate(40.0, 13.0)}
    assert batch_progress_words([job, queued], "en", now=1030.0, estimates=estimates) == (
        "Whole batch: 25% · 0:30 elapsed · about 0:40 left")
    assert batch_progress_words([job, queued], "zh", now=1030.0, estimates=estimates) == "整批：25% · 已用 0:30 · 约剩 0:40"
    assert batch_progress_words([job, queued], "en", now=1030.0) == "Whole batch: 25% · 0:30 elapsed · estimating…"
    assert batch_progress_words([replace(job, state="succeeded")], "en", now=1030.0) == ""
    # A batch still waiting: when it starts, when it is done.
    waiting = [replace(queued, id="q1"), replace(queued, id="q2")]
    assert batch_progress_words(waiting, "en", estimates={"q1": Estimate(50.0, 20.0), "q2": Estimate(80.0, 50.0)}) == (
        "Whole batch: starts in about 0:20, done in about 1:20")
    assert batch_progress_words(waiting, "zh", estimates={"q1": Estimate(50.0, 20.0), "q2": Estimate(80.0, 50.0)}) == (
        "整批：约 0:20 后开始，约 1:20 后全部完成")
    assert batch_progress_words(waiting, "en") == ""


def _bar_width(card: str) -> int:
    return int(re.search(r'class="hg-bar[^"]*"><div style="width:(\d+)%', card).group(1))


def test_cancelled_and_failed_jobs_show_the_bar_where_they_stopped_not_a_full_one() -> None:
    """A full bar in the accent colour means done: a cancelled job's bar stops where it stopped, grey; a failed
    one's, red. Single's card, Batch's table; History shows no bars."""
    from heygem.ui.studio import history_table_html

    cancelled = replace(_job("cancelled", "lip-sync"), progress=0.4)  # stopped 40 % into lip-syncing
    failed = replace(_job("failed", "probe"), id="j2", progress=0.0, error="d0.mp4: no face",
                     error_code="no_face", error_params={"file": "d0.mp4", "frames": 50})
    done = replace(_job("succeeded", "done"), id="j3", progress=1.0)
    assert _bar_width(job_status_html(cancelled, "en")) == 50 and "hg-bar hg-bar-cancelled" in job_status_html(cancelled, "en")
    assert _bar_width(job_status_html(failed, "en")) == 5 and "hg-bar hg-bar-failed" in job_status_html(failed, "en")
    assert _bar_width(job_status_html(done, "en")) == 100 and 'class="hg-bar"><div' in job_status_html(done, "en")
    assert "<b>d0.mp4</b> — cancelled while lip-syncing" in job_status_html(cancelled, "en")
    assert "<b>d0.mp4</b> — 已取消（停在：口型同步中）" in job_status_html(cancelled, "zh")
    table = batch_table_html([cancelled, failed, done], "en")
    assert re.findall(r'class="(hg-bar[^"]*)"><div style="width:(\d+)%', table) == [
        ("hg-bar hg-bar-cancelled", "50"), ("hg-bar hg-bar-failed", "5"), ("hg-bar", "100")]
    assert "hg-bar" not in history_table_html([cancelled, failed, done], "en")
    # A job cancelled before it ran stopped at nothing.
    assert _bar_width(job_status_html(replace(_job("cancelled", "queued"), progress=0.0), "en")) == 0


def test_a_cancelled_job_keeps_the_stage_it_stopped_in_and_the_api_says_cancelled(short_clips, tmp_path) -> None:
    import threading

    from heygem.errors import CancelledError
    from heygem.jobs import JobQueue

    reached = threading.Event()

    def run(audio, video, output, settings, progress):
        progress("lip-sync", 0.4, str(video))
        reached.set()
        for _ in range(600):
            progress("lip-sync", 0.4, str(video))
            threading.Event().wait(0.1)
        raise CancelledError("never cancelled")

    queue = JobQueue(tmp_path / "outputs", run=run)
    try:
        job = queue.submit(short_clips["speech"], [short_clips["d0"]]).jobs[0]
        assert reached.wait(60)
        queue.cancel(job.id)
        stopped = queue.wait([job.id], timeout=60)[0]
        assert (stopped.state, stopped.stage, stopped.progress) == ("cancelled", "lip-sync", 0.4)
        assert (stopped.to_json()["stage"], stopped.to_json()["state"]) == ("cancelled", "cancelled")
        assert _bar_width(job_status_html(stopped, "en")) == 50
    finally:
        queue.close()


def test_a_failed_single_job_is_headed_by_the_file_that_failed() -> None:
    """A speech without sound fails the job: its card names the speech, not the good video."""
    silent = replace(_job("failed", "audio"), audio_name="d13.mp4", error="d13.mp4: has no audio stream",
                     error_code="no_sound", error_params={"file": "d13.mp4"})
    assert "<b>d13.mp4 (the speech)</b> — failed" in job_status_html(silent, "en")
    assert "<b>d13.mp4（语音）</b> — 失败" in job_status_html(silent, "zh")
    faceless = replace(silent, error="d0.mp4: no face", error_code="no_face", error_params={"file": "d0.mp4", "frames": 50})
    assert "<b>d0.mp4</b> — failed" in job_status_html(faceless, "en")


def test_a_fresh_video_shows_the_study_as_its_own_stage(short_clips, tmp_path: Path) -> None:
    """The built-in engine's presenter study is reported as "study" (it was "probe", worded "reading the
    video", for most of a fresh job's first seconds), and worded as such; a photo's stages as a photo's."""
    from heygem.pipeline import generate
    from heygem.settings import DetectionOptions, EncodeOptions, Settings

    seen: list[tuple[str, float]] = []
    settings = Settings(detection=DetectionOptions(cache_dir=tmp_path / "cache" / "faces"),
                        engine=EngineOptions(engine="builtin", device="cpu"),
                        encode=EncodeOptions(preset="ultrafast"), out_dir=tmp_path)
    generate(short_clips["speech"], short_clips["d0"], None, settings, lambda stage, f, _: seen.append((stage, f)))
    stages = [stage for stage, _ in seen]
    studied = [f for stage, f in seen if stage == "study"]
    assert len(studied) >= 20 and studied[-1] == 1.0, seen  # every frame studied ticks in the study stage
    # Reading the video, then the study, then the wait for the speech's sounds (recognised beside the study).
    last = {stage: max(i for i, s in enumerate(stages) if s == stage) for stage in ("probe", "study", "phones")}
    first = {stage: stages.index(stage) for stage in ("study", "phones", "lip-sync")}
    assert last["probe"] < first["study"] <= last["study"] < first["phones"] <= last["phones"] < first["lip-sync"], seen
    running = replace(_job("running", "study"), progress=0.5, started=1.0)
    assert "running · studying the presenter · 14%" in job_status_html(running, "en")
    assert "运行中 · 分析主播 · 14%" in job_status_html(running, "zh")
    assert "recognising the speech sounds" in job_status_html(replace(running, stage="phones"), "en")
    photo = replace(running, video_name="anna.jpg", video_path=Path("anna.jpg"))
    assert "studying the face in the photo" in job_status_html(photo, "en")
    assert "读取照片" in job_status_html(replace(photo, stage="probe"), "zh")
    assert "reading the video" in job_status_html(replace(running, stage="probe"), "en")


def test_history_lists_queued_and_running_jobs_grouped_by_batch_with_the_zip(tmp_path: Path) -> None:
    from heygem.ui.studio import history_table_html

    result = tmp_path / "d0__speech.mp4"
    result.write_bytes(b"mp4")
    done = replace(_job("succeeded", "done"), id="j0", batch_id="b0", seq=1, output=result, finished=1.0)
    running = replace(_job("running", "lip-sync"), id="j1", batch_id="b1", seq=2, started=1.0)
    queued = replace(_job("queued", "queued"), id="j2", batch_id="b1", seq=3, video_name="d13.mp4")
    table = history_table_html([queued, running, done], "en")
    assert table.index('data-batch="b1"') < table.index('data-batch="b0"')  # the newest batch first
    assert table.count('class="hg-batch"') == 2 and "2 video(s)" in table
    assert "queued" in table and "running · lip-syncing · " in table and "d13.mp4" in table
    assert table.count("/api/batches/") == 1 and 'href="/api/batches/b0/zip"' in table  # a ZIP once one is done
    assert "排队中" in history_table_html([queued], "zh")


def test_a_batch_s_results_and_zip_are_links_the_api_serves_not_files_copied_into_the_page(tmp_path: Path) -> None:
    """A page handed the growing ZIP and the list of results at each new result had Gradio hash each file and copy
    it into outputs/.gradio: about N squared over two results' bytes for a batch of N. The links name each finished
    result and the ZIP; nothing is linked before a result is done."""
    from heygem.ui.studio import batch_downloads_html

    result = tmp_path / "d0<b>__speech.mp4"
    result.write_bytes(b"mp4")
    done = replace(_job("succeeded", "done"), id="j0", batch_id="b0", seq=1, output=result, finished=1.0)
    running = replace(_job("running", "lip-sync"), id="j1", batch_id="b0", seq=2, started=1.0)
    failed = replace(_job("failed", "failed"), id="j2", batch_id="b0", seq=3, finished=1.0)
    assert batch_downloads_html("b0", [running], "en") == ("", "")
    archive, results = batch_downloads_html("b0", [done, running, failed], "en")
    assert 'href="/api/batches/b0/zip"' in archive and "All finished results (ZIP)" in archive and "1 video(s)" in archive
    assert results.count("<li>") == 1 and 'href="/api/jobs/j0/result"' in results
    assert "d0&lt;b&gt;__speech.mp4" in results and "<b>__" not in results  # a name is shown, never read as markup
    archive, _ = batch_downloads_html("b0", [done], "zh")
    assert "全部已完成结果（ZIP）" in archive and "1 个视频" in archive


def test_a_page_finds_only_its_own_work_in_the_address_or_this_browsers_memory(short_clips, tmp_path) -> None:
    """A fresh page shows no work it did not submit (another browser's, the API's): only what its address names
    or, without one, the unfinished work this browser remembers having submitted."""
    from heygem.jobs import JobQueue
    from heygem.ui.studio import restored_work

    queue = JobQueue(tmp_path / "outputs", start=False)  # no worker: the jobs stay queued
    try:
        assert restored_work(queue, {}) == (None, None)
        single = queue.submit(short_clips["speech"], [short_clips["d0"]]).jobs[0]
        batch = queue.submit(short_clips["speech"], [short_clips["d13"], short_clips["d19"]])
        assert restored_work(queue, {}) == (None, None)  # someone's unfinished work: not this page's
        assert restored_work(queue, {"job": single.id, "batch": batch.id}) == (single.id, batch.id)
        assert restored_work(queue, {"batch": "gone"}, "", "") == (None, None)  # unknown ids are dropped
        assert restored_work(queue, {"job": single.id}, "", batch.id) == (single.id, None)  # the address first
        assert restored_work(queue, {}, single.id, batch.id) == (single.id, batch.id)  # remembered, unfinished
        queue.cancel_batch(batch.id)
        assert restored_work(queue, {}, "", batch.id) == (None, None)  # remembered, but over
        assert restored_work(queue, {"batch": batch.id}) == (None, batch.id)  # its address still shows it
    finally:
        queue.close()


def test_the_study_ticks_move_the_reading_stage_from_0_to_1(short_clips) -> None:
    from heygem.media.probe import probe
    from heygem.settings import DetectionOptions
    from heygem.study import study_presenter

    seen: list[float] = []
    video = probe(short_clips["d0"])  # 50 frames at 25 fps: each is passed (as the job will), every other sampled
    study_presenter(video, video.fps, DetectionOptions(), 256, 0.25, None, tick=seen.append)
    assert len(seen) == 50
    assert seen[0] == pytest.approx(0.02) and seen[24] == pytest.approx(0.5) and seen[-1] == 1.0
    assert seen == sorted(seen)

def test_a_failure_is_worded_from_its_code_in_the_page_language() -> None:
    from heygem.ui.studio import job_notes, job_reason

    faceless = replace(_job("failed", "failed"), error="holiday.mp4: no face found in any of the 50 frames used; ...",
                       error_code="no_face", error_params={"file": "holiday.mp4", "frames": 50})
    assert job_reason("zh", faceless) == "holiday.mp4：全部 50 帧中都没有找到人脸。请提供人脸清晰可见的视频或照片。"
    assert job_reason("en", faceless).startswith("holiday.mp4: no face found in any of its 50 frames.")
    assert "全部 50 帧中都没有找到人脸" in job_status_html(faceless, "zh")
    assert "全部 50 帧中都没有找到人脸" in batch_table_html([faceless], "zh")
    # A code the table does not know (a newer studio's, say): the stored English words.
    newer = replace(faceless, error_code="from_the_future")
    assert job_reason("zh", newer) == newer.error
    noted = replace(_job("succeeded", "done"), notes=["12 of 50 frames had no face and were left as they were", "old"],
                    note_codes=[("note_faces_missing", {"missing": 12, "frames": 50}), None])
    assert job_notes("zh", noted) == ["50 帧中有 12 帧没有人脸，保持原样。", "old"]
    from heygem.ui.studio import presenters_table_html

    failed = _presenter(state="failed", stage="failed", error="cleo.mp4: no face found in any of its 25 frames; ...",
                        error_code="no_face", error_params={"file": "cleo.mp4", "frames": 25})
    assert "cleo.mp4：全部 25 帧中都没有找到人脸" in presenters_table_html([failed], "zh")


def test_a_presenter_name_too_long_is_refused_in_the_page_language() -> None:
    from heygem.errors import HeyGemError
    from heygem.presenters import clean_name
    from heygem.ui.studio import reason_words

    with pytest.raises(HeyGemError) as refused:
        clean_name("x" * 81, "cleo.mp4")
    exc = refused.value
    assert reason_words("zh", exc.code, exc.params, str(exc)) == "主播名称最多 80 个字符，这个有 81 个。"
    assert reason_words("en", exc.code, exc.params, str(exc)) == "A presenter's name has at most 80 characters; this one has 81."


def test_engine_lines_are_worded_from_what_the_engine_said_as_data() -> None:
    from heygem.engines import EngineDescription
    from heygem.ui.studio import device_words, engine_words

    # The stored English line is what the page used to parse; the page now words the data beside it.
    morph = EngineDescription("builtin", mode="morph", keys=("closed", "half", "open", "spread", "rounded"),
                              drive="phones", fallbacks=("made_spread",)).to_dict()
    assert engine_words("zh", "builtin (own-footage mouth morph, 5 keys: ...; speech sounds)", morph) == (
        "内置引擎：用本人画面变形口型，5 个关键口型，按语音音素驱动；咧嘴口型（“衣”）由主播本人的其他口型合成")
    assert engine_words("en", "builtin (...)", morph) == (
        "built-in: own-footage mouth morph, 5 key mouths, driven by the speech sounds; the spread mouth (\"ee\") made "
        "from the presenter's other mouths")
    photo = EngineDescription("builtin", mode="photo", keys=("closed",), drive="loudness").to_dict()
    assert engine_words("zh", "builtin (photo: ...)", photo) == (
        "内置引擎·照片方式：合成张嘴动作（较简单：没有主播本人张嘴的画面可用），按音量驱动")
    assert engine_words("zh", "builtin (own-footage mouth morph)", EngineDescription("builtin").to_dict()) == (
        "内置引擎：用本人画面变形口型")
    wav2lip = EngineDescription("wav2lip", device="cpu", checkpoint="wav2lip_gan.pth", precision="fp32", batch=16,
                                runtime="torch", fallbacks=("torch_runtime",)).to_dict()
    assert engine_words("zh", "wav2lip (wav2lip_gan.pth on cpu, fp32, batch 16)", wav2lip) == (
        "Wav2Lip（wav2lip_gan.pth，CPU，单精度，每批 16 帧）；使用 PyTorch 运行：更快的 ncnn 方式不可用（原因见日志）")
    on_gpu = EngineDescription("wav2lip", device="cuda:0", checkpoint="wav2lip_gan.pth", precision="fp16", batch=64,
                               runtime="torch").to_dict()
    assert engine_words("en", "wav2lip (wav2lip_gan.pth on cuda:0, fp16, batch 64)", on_gpu) == (
        "Wav2Lip (wav2lip_gan.pth on GPU, half precision, batches of 64)")
    in_int8 = EngineDescription("wav2lip", device="cpu", checkpoint="wav2lip_gan.pth", precision="int8", batch=16,
                                runtime="ncnn").to_dict()  # the CPU's default: a job whose first faces allowed int8
    assert engine_words("en", "wav2lip (wav2lip_gan.pth on cpu, int8, batch 16)", in_int8) == (
        "Wav2Lip (wav2lip_gan.pth on CPU, 8-bit integers, batches of 16)")
    assert engine_words("zh", "wav2lip (wav2lip_gan.pth on cpu, int8, batch 16)", in_int8) == (
        "Wav2Lip（wav2lip_gan.pth，CPU，8 位整数，每批 16 帧）")
    # A job stored before engines described themselves as data keeps its stored line; so does an engine the page
    # has no words for. Data from a newer version (a field this one does not know) is still worded.
    assert engine_words("zh", "wav2lip (wav2lip_gan.pth on cpu, fp32, batch 16)", None) == (
        "wav2lip (wav2lip_gan.pth on cpu, fp32, batch 16)")
    assert engine_words("zh", "some new engine (x)", {"engine": "some new engine"}) == "some new engine (x)"
    assert engine_words("en", "builtin (...)", {**photo, "frames_per_key": 3}).startswith("built-in, photo path")
    assert device_words("zh", "cuda (NVIDIA H200)") == "GPU NVIDIA H200" and device_words("en", "cpu") == "CPU"


def test_a_limit_is_worded_with_its_lengths_in_the_page_language() -> None:
    from heygem.limits import speech_too_long
    from heygem.settings import Limits
    from heygem.ui.studio import reason_words

    refusal = speech_too_long("/srv/uploads/talk.wav", 5410.0, Limits(speech_minutes=30))
    assert reason_words("zh", refusal.code, refusal.params, str(refusal)) == (
        "talk.wav：语音长 1 小时 30 分，上限是 30 分钟（可用 --max-speech-minutes 或 HEYGEM_MAX_SPEECH_MINUTES 调高）。")
    assert reason_words("en", refusal.code, refusal.params, str(refusal)) == (
        "talk.wav: the speech is 1 h 30 min long; the limit is 30 min (raise it with --max-speech-minutes or "
        "HEYGEM_MAX_SPEECH_MINUTES).")
