"""The studio's own functions, without a browser: what the page says about uploads, engines, the queue and the log."""
from __future__ import annotations

from pathlib import Path

import pytest

from heygem import engines
from heygem.settings import EngineOptions
from heygem.jobs import Job
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


def test_uploads_are_judged_by_their_content_and_named(short_clips, media: Path, tmp_path: Path) -> None:
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


def _presenter(**changes) -> "Presenter":
    from heygem.presenters import Presenter

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
