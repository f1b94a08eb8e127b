"""Shared fixtures. Test media and reference figures are used in place from ../shared (never copied)."""
from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HEYGEM_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"
REFERENCE = SHARED / "reference" / "wav2lip"


def pytest_configure(config: pytest.Config) -> None:
    if not MEDIA.is_dir() or not REFERENCE.is_dir():
        raise pytest.UsageError(f"test media not found at {SHARED} (set HEYGEM_SHARED to the shared/ folder)")


_SESSION_END: dict[str, int] = {}


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SESSION_END["status"] = int(exitstatus)


@atexit.register
def _end_without_the_c_libraries_exit_handlers() -> None:
    """The test process ends as the studio does (heygem.ending): a thread of a test's queue or live session still
    inside a BLAS call at exit would freeze OpenBLAS's exit handler, and the run with it."""
    if "status" in _SESSION_END:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(_SESSION_END["status"])


@pytest.fixture(scope="session")
def media() -> Path:
    """../shared/media: real talking-head videos, photos and speech."""
    return MEDIA


@pytest.fixture(scope="session")
def picture_bomb() -> Callable[[Path, int, int], Path]:
    """Writes what a PNG picture bomb of ``width`` x ``height`` pixels begins with to a path: its signature and
    header and the start of a deflate stream of zeros (the rest, megabytes of it, need never be read)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def write(path: Path, width: int, height: int) -> Path:
        rows = zlib.compressobj().compress(b"\x00" * (width * 3 + 1) * 64)
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                         + chunk(b"IDAT", rows))
        return path

    return write


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
    from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings

    return Settings(
        detection=DetectionOptions(cache_dir=tmp_path / "face-cache"),
        engine=EngineOptions(engine="wav2lip", checkpoint=test_checkpoint, device="cpu"),
        encode=EncodeOptions(preset="ultrafast"),
        out_dir=tmp_path,
    )


def wait_until_answering(process: subprocess.Popen, url: str, seconds: float, output: Callable[[], str]) -> None:
    """Return once the studio that ``process`` runs answers ``url``/api/status; fail, with ``output()`` (what it
    printed), if it ends first, or if ``seconds`` pass."""
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        assert process.poll() is None, f"the studio stopped before it answered: {output()}"
        try:
            httpx.get(f"{url}/api/status", timeout=5)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"the studio did not answer within {seconds:g} s"
            time.sleep(0.2)


def make_clip(out: Path, *ffmpeg_args: str) -> Path:
    """Run ffmpeg (the one HeyGem uses) to derive a short test clip; returns ``out``."""
    import subprocess

    from heygem.media.ffmpeg import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *ffmpeg_args, str(out)], check=True)
    return out


@pytest.fixture(scope="session")
def out_of_step(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """22 s of a real talking head with its own speech (30 fps, 256 px), as filmed ("in step") and with its sound
    recorded 0.2 s (6 frames) ahead of its picture ("sound early"): each sound comes before the mouth making it."""
    folder = tmp_path_factory.mktemp("out-of-step")
    source = str(MEDIA / "long/french.mp4")
    common = ("-t", "22", "-vf", "scale=-2:256", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")
    return {"in step": make_clip(folder / "in_step.mp4", "-i", source, *common),
            "sound early": make_clip(folder / "sound_early.mp4", "-i", source, "-ss", "0.2", "-i", source,
                                     "-map", "0:v:0", "-map", "1:a:0", *common)}


def submitted_over_api(folder: Path, files: list, accepted: dict[str, str], refused: dict[str, str]):
    """POST ``files`` with the form fields ``accepted`` to /api/jobs and with ``refused`` to /api/batches, on a
    queue under ``folder`` that runs nothing; returns both responses and the Settings the first job was stored
    with (None when none was)."""
    from fastapi.testclient import TestClient

    from heygem.jobs import JobQueue
    from heygem.server import create_app

    queue = JobQueue(folder, start=False)
    try:
        with TestClient(create_app(queue, ui=False), base_url="http://127.0.0.1:7860") as client:
            job = client.post("/api/jobs", files=files, data=accepted)
            batch = client.post("/api/batches", files=files, data=refused)
        jobs = queue.jobs()
        return job, batch, queue._settings_of(jobs[0]) if jobs else None
    finally:
        queue.close()


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


class Studio:
    """A running studio (HTTP API + web UI) on a free local port, over its own outputs folder."""

    def __init__(self, url: str, queue, root: Path, log_file: Path) -> None:
        self.url, self.queue, self.root, self.log_file = url, queue, root, log_file


@pytest.fixture(scope="session")
def studio(tmp_path_factory: pytest.TempPathFactory, test_checkpoint: Path):
    """The studio as ``./start_app.sh`` serves it, in this process: uvicorn on 127.0.0.1, one job queue whose
    default engine is Wav2Lip with the deterministic test weights (on the CPU, fast x264)."""
    from heygem.jobs import JobQueue
    from heygem.logs import setup_logging
    from heygem.server import create_app
    from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings

    root = tmp_path_factory.mktemp("studio") / "outputs"
    log_file = setup_logging(root.parent / "logs", console=False)
    defaults = Settings(detection=DetectionOptions(cache_dir=root / ".cache" / "faces"),
                        engine=EngineOptions(engine="wav2lip", checkpoint=test_checkpoint, device="cpu"),
                        encode=EncodeOptions(preset="ultrafast"))
    queue = JobQueue(root, defaults)
    with serving(create_app(queue, log_file=log_file)) as url:
        yield Studio(url, queue, root, log_file)
    queue.close()


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread of this process, as ./start_app.sh
    serves the studio; gives its URL, and stops it on leaving."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    from heygem.server import server_config

    server = uvicorn.Server(server_config(app, "127.0.0.1", port))  # its settings and connection guard as served
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the studio did not start"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


class HeldJobs:
    """What ``held_jobs`` gives: ``release()`` lets the job held now go on to its next step."""

    def __init__(self) -> None:
        import threading

        self.go_on = threading.Event()
        self.over = False

    def release(self) -> None:
        self.go_on.set()


@pytest.fixture
def held_jobs(studio, monkeypatch):
    """While this fixture lasts, each job of the studio stays in its lip-sync stage, without looking for a
    cancel, until ``release()``; then a cancelled job stops at its next progress step (one not cancelled
    fails). So a test sees a running job asked to cancel for as long as it needs to."""
    from heygem.errors import HeyGemError

    hold = HeldJobs()

    def held(audio, video, output, settings, progress):
        progress("lip-sync", 0.5, str(video))
        if not hold.over:
            hold.go_on.wait(120)
            hold.go_on.clear()  # one worker: the next job is held again
        progress("encode", 0.0, str(video))  # a new stage is always written, and a cancel noticed, here
        raise HeyGemError(f"{Path(video).name}: released without a cancel (test runner)")

    monkeypatch.setattr(studio.queue, "_run", held)
    yield hold
    hold.over = True
    hold.release()
