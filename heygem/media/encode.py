"""Writing the result: BGR frames piped into ffmpeg, muxed with the original audio, renamed into place only
when ffmpeg succeeded, so a failed or cancelled run never leaves a half-written file at the output path.

Frames go down the pipe as yuv420p, converted here by OpenCV (BT.601, limited range, as ffmpeg converts):
half the bytes of BGR, and the encoder skips its own conversion, which costs more (20 s of 720p: 0.9 s less
CPU in all) and is less exact (a pure blue came back 5 levels off, within 3 through OpenCV). The chroma is each
2x2 block's mean (``heygem.media.yuv.i420_from_bgr``): OpenCV's own I420 takes it from one pixel of the four,
which frayed lips against skin (bench/RESULTS.md, "Issue 21, a chroma fault and joins on time"). A frame kept
as the decoder gave it (``heygem.media.yuv.YuvFrame``) goes down as it is. Odd sizes are padded black on the
right and bottom rather than scaled, so no pixel of the result moves."""
from __future__ import annotations

import functools
import logging
import os
import subprocess
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import IO

import cv2
import numpy as np

from heygem.errors import FFmpegError
from heygem.children import Child
from heygem.media.ffmpeg import (GPU_ENCODER, INSTALL_HINT, encode_argv, encoder_check_argv, encoders_argv,
                                 even_size, failure, ffmpeg_exe, stderr_tail, widen_pipe)
from heygem.media.yuv import YuvFrame, i420_from_bgr
from heygem.settings import H264_ENCODERS, EncodeOptions

log = logging.getLogger(__name__)

PROBE_SECONDS = 30.0  # a first CUDA context can take seconds; a hung driver must not hang the job


@functools.cache
def usable_encoder(exe: str, wanted: str = "auto") -> str:
    """The H.264 encoder ``exe`` is run with for ``wanted`` (``EncodeOptions.encoder``): ``libx264`` as asked;
    ``auto`` or ``h264_nvenc``: NVIDIA's encoder when this ffmpeg lists it and a test encode works, else
    ``libx264`` (for ``auto`` silently but for the log: most machines have no such GPU). Probed once per
    process for each ffmpeg and wish."""
    if wanted not in H264_ENCODERS:
        raise ValueError(f"unknown H.264 encoder {wanted!r}; use one of {', '.join(H264_ENCODERS)}")
    if wanted == "libx264":
        return wanted
    reason = _gpu_encoder_problem(exe)
    if reason is None:
        log.info("encoding with %s (NVIDIA's GPU encoder), found working in %s", GPU_ENCODER, exe)
        return GPU_ENCODER
    (log.warning if wanted == GPU_ENCODER else log.info)("encoding with libx264: %s %s", GPU_ENCODER, reason)
    return "libx264"


def _gpu_encoder_problem(exe: str) -> str | None:
    """Why ``exe`` cannot encode with the GPU here, or None when it can."""
    try:
        listed = subprocess.run(encoders_argv(exe), capture_output=True, timeout=PROBE_SECONDS, check=False)
        if GPU_ENCODER not in listed.stdout.decode(errors="replace"):
            return f"is not in this ffmpeg ({exe})"
        tried = subprocess.run(encoder_check_argv(exe, GPU_ENCODER), capture_output=True, timeout=PROBE_SECONDS,
                               check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"could not be probed ({exc})"
    if tried.returncode != 0:
        return f"does not work here ({stderr_tail(tried.stderr, 300) or f'exit code {tried.returncode}'})"
    return None


class VideoWriter:
    """H.264/AAC MP4 writer fed one BGR frame at a time.

    ``with VideoWriter(...) as out: out.write(frame)`` - leaving the block normally finishes the file; an
    exception inside it aborts: ffmpeg is killed, the temporary file removed, nothing is left at out_path.
    ``audio_path`` None writes a silent video; ``audio_stream``: which of its sound tracks
    (``MediaInfo.audio_stream``).
    """

    def __init__(self, out_path: str | Path, width: int, height: int, fps: Fraction,
                 audio_path: str | Path | None, duration: float,
                 options: EncodeOptions | None = None, pixel_aspect: Fraction | None = None,
                 audio_stream: int = 0) -> None:
        if width <= 0 or height <= 0:
            raise ValueError(f"frame size must be positive, got {width}x{height}")
        if duration <= 0:
            raise ValueError(f"duration must be positive, got {duration}")
        self.out_path = Path(out_path)
        self.width, self.height = int(width), int(height)
        self.fps = Fraction(fps)
        self.audio_path = Path(audio_path) if audio_path is not None else None
        self.duration = float(duration)
        self.options = options or EncodeOptions()
        self.frames_written = 0
        self._done = False

        self.out_path.parent.mkdir(parents=True, exist_ok=True)
        # Same folder as the result, so the final os.replace is an atomic rename, never a copy.
        fd, temp = tempfile.mkstemp(prefix=f".{self.out_path.stem}.", suffix=".partial.mp4",
                                    dir=self.out_path.parent)
        os.close(fd)
        self.temp_path = Path(temp)
        exe = ffmpeg_exe()
        self.encoder = usable_encoder(exe, self.options.encoder)
        padded = even_size(self.width, self.height)
        self._padding = (padded[1] - self.height, padded[0] - self.width)  # rows below, columns to the right
        self._argv = encode_argv(exe, self.temp_path, *padded, self.fps, self.audio_path, self.duration,
                                 self.options, self.encoder, pixel_aspect, audio_stream)
        log.debug("encoding %s: %dx%d at %s fps, %.3f s, %s, crf %d, preset %s, audio %s at %s",
                  self.out_path, self.width, self.height, self.fps, self.duration, self.encoder, self.options.crf,
                  self.options.preset, self.audio_path, self.options.audio_bitrate)
        log.debug("running %s", subprocess.list2cmdline(self._argv))
        # stderr goes to a file: a pipe nobody reads while we write frames could fill up and deadlock.
        self._errors: IO[bytes] = tempfile.TemporaryFile()
        try:
            self._proc = Child(self._argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._errors)
        except OSError as exc:
            self._errors.close()
            self._remove_temp()
            raise FFmpegError(f"{self._argv[0]} could not be started: {exc}; {INSTALL_HINT}") from exc
        widen_pipe(self._proc.stdin)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def expected_frames(self) -> int:
        """Frames needed to fill ``duration`` at ``fps``."""
        return max(1, round(self.duration * self.fps))

    def write(self, frame: np.ndarray | YuvFrame) -> None:
        """Pipe one BGR uint8 frame of (height, width, 3) to ffmpeg, or a decoded frame kept as it was
        (``YuvFrame``, of even size: its bytes as they are)."""
        if self._done:
            raise RuntimeError(f"{self.out_path}: write() after close() or abort()")
        if isinstance(frame, YuvFrame):
            if frame.shape != (self.height, self.width, 3):
                raise ValueError(f"{self.out_path}: frame must be {self.width}x{self.height}, got "
                                 f"{frame.width}x{frame.height}")
            self._send(frame.data.data)
            return
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"{self.out_path}: frame must be uint8 of shape {(self.height, self.width, 3)}, "
                             f"got {frame.dtype} {frame.shape}")
        if any(self._padding):
            frame = cv2.copyMakeBorder(frame, 0, self._padding[0], 0, self._padding[1], cv2.BORDER_CONSTANT, value=0)
        self._send(i420_from_bgr(frame).data)

    def _send(self, data: memoryview) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, OSError) as exc:
            # ffmpeg has exited early: its stderr says why.
            returncode = self._proc.wait()
            error = self._error(returncode)
            self.abort()
            raise error from exc
        self.frames_written += 1

    def close(self, waiting: Callable[[], None] | None = None) -> Path:
        """Finish the file; rename it into place only if ffmpeg succeeded. Returns out_path.

        ``waiting`` is called every WAIT_STEP seconds while ffmpeg finishes (its last frames, the sound): an
        exception from it (a cancel) leaves the file unfinished, for ``abort`` to remove.
        """
        if self._done:
            if self.out_path.exists():
                return self.out_path
            raise RuntimeError(f"{self.out_path}: close() after abort()")
        if self.frames_written < self.expected_frames - 1:
            log.warning("%s: %d frames written for %.3f s at %s fps (%d expected); the picture ends early",
                        self.out_path, self.frames_written, self.duration, self.fps, self.expected_frames)
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass  # ffmpeg already exited; its exit code below says how.
        returncode = _wait(self._proc, waiting)
        if returncode != 0 or self.frames_written == 0:
            error = self._error(returncode) if returncode != 0 else \
                FFmpegError(f"{self.out_path}: no frame was written, nothing to encode")
            self.abort()
            raise error
        self._done = True
        self._errors.close()
        os.replace(self.temp_path, self.out_path)
        log.debug("wrote %s (%d frames)", self.out_path, self.frames_written)
        return self.out_path

    def abort(self) -> None:
        """Stop ffmpeg and remove the temporary file; nothing is left at out_path. Safe to call twice."""
        if self._done:
            return
        self._done = True
        if self._proc.poll() is None:
            self._proc.kill()
        if self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
        self._proc.wait()
        self._errors.close()
        self._remove_temp()
        log.debug("aborted %s", self.out_path)

    def _error(self, returncode: int) -> Exception:
        self._errors.seek(0)
        text = self._errors.read()
        # Name the file at fault: the audio input when ffmpeg complains about it, else the output.
        subject: Path = self.out_path
        tail = stderr_tail(text)
        if self.audio_path is not None and (str(self.audio_path) in tail or "1:a:" in tail):
            subject = self.audio_path
        return failure(self._argv, returncode, text, subject)

    def _remove_temp(self) -> None:
        try:
            self.temp_path.unlink()
        except FileNotFoundError:
            pass


# How often a close that waits for ffmpeg calls its ``waiting`` (seconds).
WAIT_STEP = 0.2


def _wait(process: subprocess.Popen, waiting: Callable[[], None] | None) -> int:
    """``process``'s exit code, calling ``waiting`` every WAIT_STEP seconds until it ends."""
    while True:
        try:
            return process.wait(timeout=WAIT_STEP if waiting is not None else None)
        except subprocess.TimeoutExpired:
            waiting()
