"""The command line, run as a user runs it."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from heygem import engines
from heygem.cli import build_parser, settings_from_args
from heygem.errors import CheckpointError
from heygem.media.probe import probe
from heygem.settings import EngineOptions

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heygem", "generate", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_one_bad_video_fails_alone(media: Path, test_checkpoint: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mov"
    bad.write_bytes(b"\x00" * 1000)
    done = run_cli("--audio", str(media / "speechrecognition/french.aiff"), "--video", str(bad),
                   "--video", str(media / "skimage/astronaut.png"), "--out", str(tmp_path / "out"),
                   "--checkpoint", str(test_checkpoint), "--preset", "ultrafast", "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 1
    assert "broken.mov" in done.stderr
    outputs = list((tmp_path / "out").glob("*.mp4"))
    assert [p.name for p in outputs] == ["astronaut__french.mp4"]
    assert str(outputs[0]) in done.stdout and "engine wav2lip" in done.stdout
    assert abs(probe(outputs[0]).duration - probe(media / "speechrecognition/french.aiff").duration) <= 1 / 25
    # One line on the terminal for the failed video, no traceback; the full story is in the log file.
    assert [line for line in done.stderr.splitlines() if "broken.mov" in line] == [
        line for line in done.stderr.splitlines() if line.startswith("failed: ")]
    assert len([line for line in done.stderr.splitlines() if "broken.mov" in line]) == 1
    assert "Traceback" not in done.stderr
    log = (tmp_path / "logs/heygem.log").read_text()
    assert "Traceback" in log and "broken.mov" in log


def test_verbose_shows_the_traceback_of_a_failed_video(media: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.mov"
    bad.write_bytes(b"\x00" * 1000)
    done = run_cli("--audio", str(media / "speechrecognition/english.wav"), "--video", str(bad), "--engine", "builtin",
                   "--out", str(tmp_path / "out"), "--log-dir", str(tmp_path / "logs"), "-v")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "failed: " in done.stderr


def test_a_speech_over_the_length_limit_is_refused_before_any_work(media: Path, tmp_path: Path) -> None:
    speech = media / "speechrecognition/english.wav"  # 2.7 s
    done = run_cli("--audio", str(speech), "--video", str(media / "skimage/astronaut.png"), "--engine", "builtin",
                   "--out", str(tmp_path / "out"), "--log-dir", str(tmp_path / "logs"), "--max-speech-minutes", "0.02")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {speech}: the speech is 3 s long; the limit is 1 s "
        "(raise it with --max-speech-minutes or HEYGEM_MAX_SPEECH_MINUTES)")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_an_unknown_preset_is_refused_naming_the_choices(media: Path, tmp_path: Path) -> None:
    """A misspelt x264 preset is refused at once (before any decoding), with the presets that exist; the
    default is the measured one."""
    done = run_cli("--audio", str(media / "speechrecognition/english.wav"), "--video",
                   str(media / "skimage/astronaut.png"), "--out", str(tmp_path / "out"), "--preset", "veryfats")
    assert done.returncode == 2
    assert "argument --preset: invalid choice: 'veryfats'" in done.stderr and "'veryfast'" in done.stderr
    assert not (tmp_path / "out").exists()
    assert "(default veryfast" in run_cli("--help").stdout


def test_missing_checkpoint_says_where_to_put_one(media: Path, tmp_path: Path) -> None:
    done = run_cli("--audio", str(media / "speechrecognition/english.wav"), "--video", str(media / "skimage/astronaut.png"),
                   "--engine", "wav2lip", "--checkpoint", str(tmp_path / "nowhere.pth"), "--out", str(tmp_path), "--log-dir", str(tmp_path))
    assert done.returncode == 1
    assert "nowhere.pth" in done.stderr and "checkpoints/" in done.stderr
    assert not list(tmp_path.glob("*.mp4"))


def test_auto_uses_wav2lip_only_when_a_checkpoint_is_there(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(engines, "DEFAULT_CHECKPOINTS", (tmp_path / "wav2lip_gan.pth", tmp_path / "wav2lip.pth"))
    assert engines.resolve_engine_name(EngineOptions(engine="auto")) == "builtin"
    with pytest.raises(CheckpointError, match="checkpoints/"):
        engines.create_engine(EngineOptions(engine="wav2lip"))
    (tmp_path / "wav2lip.pth").write_bytes(b"placed by the user")
    assert engines.resolve_engine_name(EngineOptions(engine="auto")) == "wav2lip"


def test_options_reach_the_settings() -> None:
    args = build_parser().parse_args(
        ["generate", "--audio", "a.wav", "--video", "v.mp4", "--face", "2", "--box", "1", "2", "3", "4", "--blend", "hard",
         "--length", "loop", "--crf", "23", "--device", "cpu", "--batch-size", "8", "--detector", "s3fd", "--smooth", "1",
         "--out", "result.mp4", "--no-int8"]
    )
    settings = settings_from_args(args)
    assert not settings.engine.int8  # fp32 throughout on the CPU
    assert settings_from_args(build_parser().parse_args(["generate", "--audio", "a.wav", "--video", "v.mp4"])).engine.int8
    assert settings.detection.face == 2 and settings.detection.box == (1, 2, 3, 4) and settings.detection.detector == "s3fd"
    assert settings.detection.smooth_window == 1
    assert settings.blend.mode == "hard" and settings.length_policy == "loop" and settings.encode.crf == 23
    assert settings.engine.device == "cpu" and settings.engine.batch_size == 8
    assert settings.out_dir == Path(".")


def test_bad_face_option_is_explained() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--audio", "a.wav", "--video", "v.mp4", "--face", "biggest"])


def test_the_terminal_shows_no_notice_from_the_face_mesh_runtime(media: Path, tmp_path: Path) -> None:
    done = run_cli("--audio", str(media / "speechrecognition/english.wav"),
                   "--video", str(media / "skimage/astronaut.png"), "--engine", "builtin", "--preset", "ultrafast",
                   "--out", str(tmp_path / "out"), "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 0, done.stderr
    assert "XNNPACK" not in done.stderr + done.stdout
    # The face mesh did run (the built-in engine studies the photo with it); its notice went to the log file.
    log = (tmp_path / "logs/heygem.log").read_text()
    assert "LiteRT: INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in log


def test_the_result_line_says_why_the_presenters_own_footage_was_not_used(media: Path, tmp_path: Path) -> None:
    done = run_cli("--audio", str(media / "speechrecognition/english.wav"),
                   "--video", str(media / "skimage/astronaut.png"), "--engine", "builtin", "--mouth-drive", "footage",
                   "--preset", "ultrafast", "--out", str(tmp_path / "out"), "--log-dir", str(tmp_path / "logs"))
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stdout.splitlines() if "astronaut__english.mp4" in line]
    assert line.endswith("(key mouths rather than the presenter's own footage: a photo has none to choose from)")


def test_what_else_the_runtime_writes_still_reaches_the_terminal(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    from heygem.faces.landmarks import _without_delegate_notice

    with _without_delegate_notice():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nERROR: a real problem\n")
    assert capfd.readouterr().err == "ERROR: a real problem\n"
