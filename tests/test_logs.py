"""Where a studio logs: beside the outputs folder it describes, so its Logs tab shows only its own records."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import REPO
from heygem.logs import limits_words, log_dir_for, setup_logging
from heygem.settings import LOGS_DIR, OUTPUTS_DIR, Limits


def test_the_project_outputs_log_to_the_project_logs_and_any_other_outputs_to_its_own(tmp_path: Path) -> None:
    assert log_dir_for(OUTPUTS_DIR) == LOGS_DIR  # ./start_app.sh as the README says: logs/heygem.log
    assert log_dir_for(tmp_path / "studio-a") == tmp_path / "studio-a" / "logs"
    assert log_dir_for(tmp_path / "studio-a") != log_dir_for(tmp_path / "studio-b")  # two studios, two logs


def test_the_limits_are_worded_not_dumped() -> None:
    assert limits_words(Limits(upload_mb=0, speech_minutes=30, video_minutes=10, picture_side=1920, queued_jobs=100,
                               live_sessions=2)) == (
        "uploads unlimited, speech up to 30 min, presenter videos up to 10 min, pictures up to 1920 px on the longer "
        "side, jobs waiting or running up to 100 at once, live sessions up to 2 at once")


def test_a_studio_on_another_outputs_folder_logs_there_in_words(tmp_path: Path) -> None:
    """The issue: the Logs tab read the project's logs/heygem.log whatever --outputs was, and showed a raw
    ``Limits(...)``. The studio (app.py, as ./start_app.sh runs it) writes its log under its outputs folder."""
    outputs = tmp_path / "elsewhere" / "outputs"
    project_log = LOGS_DIR / "heygem.log"
    project_size = project_log.stat().st_size if project_log.exists() else 0
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    studio = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--outputs", str(outputs), "--port", str(port),
                               "--engine", "builtin", "--device", "cpu"], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = ""
        deadline = time.monotonic() + 180
        while "HeyGem studio:" not in line:
            assert studio.poll() is None and time.monotonic() < deadline, f"the studio did not start: {line}"
            line = studio.stdout.readline()
        own_log = outputs / "logs" / "heygem.log"
        assert f"log: {own_log}" in line
        text = own_log.read_text(encoding="utf-8")
        assert f"outputs {outputs}" in text and "limits uploads up to 1024 MB, speech up to 30 min" in text
        assert "Limits(" not in text
        # Nothing of this studio went into the project's log (another studio's Logs tab shows that one).
        assert not project_log.exists() or str(outputs) not in project_log.read_bytes()[project_size:].decode(errors="replace")
    finally:
        studio.terminate()
        studio.wait(30)


def test_what_a_record_carries_cannot_start_a_record_of_its_own(tmp_path: Path) -> None:
    """A file's name, ffmpeg's words or an exception's message logged as they came: a newline in one wrote a
    forged record that the Logs tab showed as the studio's own (found by uploading a file so named)."""
    import logging

    from heygem.ui.studio import log_tail

    log_file = setup_logging(tmp_path / "logs", console=False)
    try:
        jobs = logging.getLogger("heygem.jobs")
        jobs.info("batch queued: %s with 1 video(s)", "x.flac\n2026-12-07 06:30:00,000 ERROR heygem.jobs: FORGED\x1b[31m")
        try:
            raise ValueError("not a video:\n2026-12-07 06:30:01,000 CRITICAL heygem.api: FORGED too")
        except ValueError:
            jobs.exception("job failed")
    finally:
        setup_logging(None, console=False)
    written = log_file.read_text(encoding="utf-8")
    records = [line for line in written.splitlines() if line[:1].isdigit()]
    assert len(records) == 2 and not any("FORGED" in line for line in records) and "\x1b" not in written
    assert "\\x1b[31m" in written and "Traceback (most recent call last):" in written  # kept, as words
    shown = log_tail(log_file)  # newest first, a record's further lines under it
    assert [line.split(" ", 3)[2] for line in shown.splitlines() if line[:1].isdigit()] == ["ERROR", "INFO"]

