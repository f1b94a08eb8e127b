"""Holding inputs to the ``Limits`` (heygem.settings): checked from the probe at submission, before anything
is copied or queued, and again while the speech is read, since a file's header can lie about its length.

Every refusal is a ``LimitError`` that names the file as the user knows it, the limit, and how to raise it.
"""
from __future__ import annotations

import contextlib
import errno
import logging
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

from heygem.errors import HeyGemError, InputError, LimitError
from heygem.media.probe import MediaInfo, probe
from heygem.settings import Limits

log = logging.getLogger(__name__)

__all__ = ["NO_SPACE_WORDS", "check_free_space", "check_inputs", "check_picture", "check_speech", "disk_filled",
           "disk_full", "duration_words", "queue_full", "room_on_disk", "speech_too_long", "stored_on_disk"]


def duration_words(seconds: float) -> str:
    """``3 h 05 min``, ``12 min 30 s``, ``45 s``: a length as a person reads it."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s" if secs else f"{minutes} min"
    return f"{secs} s"


def _minutes(value: float) -> str:
    return duration_words(value * 60)


def speech_too_long(name: str | Path, seconds: float | None, limits: Limits) -> LimitError:
    """The refusal of a speech of ``seconds`` (None: known only to be longer than the limit)."""
    length = f"is {duration_words(seconds)} long" if seconds is not None else "runs past the limit"
    known = {} if seconds is None else {"length_seconds": round(seconds, 1)}
    return LimitError(name, f"the speech {length}; the limit is {_minutes(limits.speech_minutes)} "
                            f"({limits.how_to_raise('speech_minutes')})",
                      "speech_too_long" if seconds is not None else "speech_over_limit", **known,
                      limit_seconds=limits.speech_minutes * 60, **limits.raise_params("speech_minutes"))


def check_speech(info: MediaInfo, limits: Limits, name: str | Path | None = None) -> None:
    """LimitError when the probed speech is longer than allowed."""
    seconds = info.audio_duration or info.duration
    if limits.speech_minutes and seconds > limits.speech_minutes * 60:
        raise speech_too_long(name or info.path, seconds, limits)


def check_picture(info: MediaInfo, limits: Limits, name: str | Path | None = None) -> None:
    """LimitError when a presenter video is too long or too large. A photo of any size passes: the pipeline
    scales a large one down and says so."""
    if info.kind != "video":
        return
    name = name or info.path
    if limits.video_minutes and info.duration > limits.video_minutes * 60:
        raise LimitError(name, f"the video is {duration_words(info.duration)} long; the limit is "
                               f"{_minutes(limits.video_minutes)} ({limits.how_to_raise('video_minutes')}); "
                               "only as much of the video as the speech lasts is used, so a shorter cut will do",
                         "video_too_long", length_seconds=round(info.duration, 1), limit_seconds=limits.video_minutes * 60,
                         **limits.raise_params("video_minutes"))
    if limits.picture_side and max(info.width, info.height) > limits.picture_side:
        raise LimitError(name, f"the video is {info.width}x{info.height}; the limit is {limits.picture_side} pixels "
                               f"on the longer side ({limits.how_to_raise('picture_side')}), or scale it down first",
                         "picture_too_large", width=info.width, height=info.height, limit=limits.picture_side,
                         **limits.raise_params("picture_side"))


def queue_full(name: str | Path, jobs: int, presenters: int, added: int, limits: Limits) -> LimitError | None:
    """The refusal of ``added`` more pieces of work (jobs, or a presenter to prepare) where ``jobs`` unfinished
    jobs and ``presenters`` presenters waiting to be prepared are queued already: the one worker does both, so
    both count toward ``limits.queued_jobs``. None where they fit (or the limit is off)."""
    if not limits.queued_jobs or jobs + presenters + added <= limits.queued_jobs:
        return None
    held = f"{jobs} unfinished job(s)" + (f" and {presenters} presenter(s) waiting to be prepared" if presenters else "")
    return LimitError(name, f"the queue already holds {held}; the limit is {limits.queued_jobs} "
                            f"({limits.how_to_raise('queued_jobs')}), or wait for some to finish",
                      "queue_full", pending=jobs + presenters, limit=limits.queued_jobs,
                      **limits.raise_params("queued_jobs"))


def disk_full(name: str | Path, folder: Path | None, limits: Limits, needed: int = 0,
              free: int | None = None) -> LimitError:
    """The refusal of ``name`` for want of disk space where ``folder`` is (``needed`` bytes to store it; ``free``
    when already known). The words name the studio's disk, not its path (an API client is told no path of this
    machine)."""
    if free is None:
        free = _free_bytes(folder)
    need = f", {_gigabytes(needed)} is needed" if needed else ""
    return LimitError(name, f"not stored: the studio's disk has {_gigabytes(free)} free{need}, and the studio keeps "
                            f"{limits.free_gb:g} GB free for the results of jobs already queued (lower it with "
                            f"{limits.OPTION['free_gb']} or {limits.ENV['free_gb']}); free some space, e.g. delete "
                            "old results in History", "disk_full", free_gb=round(free / 2**30, 2),
                      limit=f"{limits.free_gb:g}", **limits.raise_params("free_gb"))


NO_SPACE_WORDS = "No space left on device"  # how ffmpeg and the C library say ENOSPC


def disk_filled(name: str, folder: Path) -> HeyGemError:
    """A job's failure when the disk of ``folder`` filled while its result was being written."""
    free = _free_bytes(folder)
    return HeyGemError(f"{name}: the disk filled while its result was being written ({_gigabytes(free)} free now); "
                       "free some space, e.g. delete old results in History, and submit it again",
                       code="disk_full_job", params={"file": name, "free_gb": round(free / 2**30, 2)})


def room_on_disk(folder: Path, limits: Limits) -> int:
    """Bytes that may still be stored under ``folder`` before its disk has less free than the studio keeps
    (``limits.free_gb``); negative when it has less already."""
    return _free_bytes(folder) - int(limits.free_gb * 2**30)


def check_free_space(folder: Path, needed: int, limits: Limits, name: str | Path) -> None:
    """LimitError ``disk_full`` when storing ``needed`` more bytes under ``folder`` would leave less free than
    the studio keeps (``limits.free_gb``; 0: only that the bytes fit)."""
    free = _free_bytes(folder)
    if free - needed < limits.free_gb * 2**30 or free < needed:
        raise disk_full(name, folder, limits, needed, free)


@contextlib.contextmanager
def stored_on_disk(name: str | Path, folder: Path, limits: Limits, needed: int | None = None,
                   partial: Path | None = None) -> Iterator[None]:
    """Storing ``name`` under ``folder``: refused first where ``needed`` bytes (when given) would leave less free
    than the studio keeps (``check_free_space``); a disk that fills all the same while it is stored (another
    program, a race) is the same LimitError ``disk_full``, naming the file and what to do, with ``partial``
    (the folder it was being stored into) removed, so nothing half-stored stays."""
    if needed is not None:
        check_free_space(folder, needed, limits, name)
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        if partial is not None:
            shutil.rmtree(partial, ignore_errors=True)
        raise disk_full(name, folder, limits) from exc


def _free_bytes(folder: Path) -> int:
    """Free bytes on the disk where ``folder`` is (or would be: its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def _gigabytes(count: int) -> str:
    return f"{count / 2**30:.2f} GB" if count >= 2**30 // 10 else f"{count / 2**20:.1f} MB"


def check_inputs(
    audio: Path | None, videos: Sequence[Path], limits: Limits, *, audio_name: str | None = None,
    video_names: Sequence[str] | None = None,
) -> None:
    """Probe the speech (unless None) and every video and raise LimitError for the first one over a limit.

    A file that cannot be probed at all is not refused here: its job fails on its own with the reason,
    and the other videos of the batch still run.
    """
    names = list(video_names) if video_names is not None else [Path(v).name for v in videos]
    speech = [] if audio is None else [(audio, audio_name or Path(audio).name, check_speech)]
    for path, name, check in [*speech, *((v, n, check_picture) for v, n in zip(videos, names))]:
        try:
            info = probe(path)
        except InputError as exc:
            log.info("%s could not be probed at submission (%s); its job will say why", name, exc.problem)
            continue
        check(info, limits, name)
