"""Shared fixtures. Test media and reference figures are used in place from ../shared (never copied)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HEYGEM_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"
REFERENCE = SHARED / "reference" / "wav2lip"


def pytest_configure(config: pytest.Config) -> None:
    if not MEDIA.is_dir() or not REFERENCE.is_dir():
        raise pytest.UsageError(f"test media not found at {SHARED} (set HEYGEM_SHARED to the shared/ folder)")


@pytest.fixture(scope="session")
def media() -> Path:
    """../shared/media: real talking-head videos, photos and speech."""
    return MEDIA


@pytest.fixture(scope="session")
def reference() -> Path:
    """../shared/reference/wav2lip: manifests and golden outputs of the original Wav2Lip."""
    return REFERENCE


@pytest.fixture(scope="session")
def test_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Wav2Lip checkpoint in the official format with FACTS.md's deterministic weights."""
    from models.wav2lip import save_test_checkpoint

    return save_test_checkpoint(REFERENCE / "generator_manifest.json", tmp_path_factory.mktemp("checkpoint") / "wav2lip_test.pth")


@pytest.fixture
def settings(test_checkpoint: Path, tmp_path: Path):
    """Settings for a quick run with the test checkpoint; results go to this test's tmp_path."""
    from heygem.settings import EncodeOptions, EngineOptions, Settings

    return Settings(
        engine=EngineOptions(engine="wav2lip", checkpoint=test_checkpoint, device="cpu"),
        encode=EncodeOptions(preset="ultrafast"),
        out_dir=tmp_path,
    )


def make_clip(out: Path, *ffmpeg_args: str) -> Path:
    """Run ffmpeg (the one HeyGem uses) to derive a short test clip; returns ``out``."""
    import subprocess

    from heygem.media.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *ffmpeg_args, str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def short_clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two seconds of English speech and of three presenters at 360p, cut once per session from ../shared/media
    (for the queue, API and browser tests, where many jobs run)."""
    folder = tmp_path_factory.mktemp("clips")
    clips = {"speech": make_clip(folder / "speech.wav", "-i", str(MEDIA / "speechrecognition/english.wav"), "-t", "2")}
    for name in ("d0", "d13", "d19"):
        clips[name] = make_clip(folder / f"{name}.mp4", "-i", str(MEDIA / f"liveportrait/{name}.mp4"), "-t", "2",
                                "-vf", "scale=-2:360", "-an", "-c:v", "libx264", "-preset", "ultrafast")
    return clips
