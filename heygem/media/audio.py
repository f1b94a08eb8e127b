"""Speech as a float32 mono waveform, decoded by ffmpeg from any audio file or a video's soundtrack."""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from heygem.errors import InputError
from heygem.media.ffmpeg import audio_decode_argv, ffmpeg_exe, reading_output
from heygem.media.probe import ACCEPTED_SPEECH

log = logging.getLogger(__name__)

_READ_BYTES = 1 << 20


class TooLongError(Exception):
    """The decoded speech passed ``max_seconds``; decoding was stopped there."""


def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None,
               tick: Callable[[float], None] | None = None) -> np.ndarray:
    """The first audio stream of ``path`` as float32 mono at ``sample_rate``, channels averaged as the
    original's librosa.load does.

    Works for wav, mp3, m4a, aac, flac, ogg, aiff and the soundtrack of a video. The samples are read from
    ffmpeg's pipe into one growing buffer that becomes the array (no second copy): 10 minutes of 16 kHz
    speech is 38 MB. With ``max_seconds``, decoding stops past that length and TooLongError is raised, so a
    file whose header understates its length cannot fill the memory. ``tick(seconds decoded)`` is called
    after each read (a job's progress, through which a cancel stops the decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"does not exist or is not a file; give {ACCEPTED_SPEECH}", "missing")
    argv = audio_decode_argv(ffmpeg_exe(), path, sample_rate)
    max_bytes = None if max_seconds is None else int(max_seconds * sample_rate) * 4
    data = bytearray()
    with reading_output(argv, subject=path) as samples:
        while chunk := samples.read(_READ_BYTES):
            data += chunk
            if max_bytes is not None and len(data) > max_bytes:
                raise TooLongError(f"{path}: longer than {max_seconds} s")
            if tick is not None:
                tick(len(data) / 4 / sample_rate)
    # A writable view of the buffer itself (a bytearray is mutable): callers may edit it in place.
    wav = np.frombuffer(data, dtype="<f4", count=len(data) // 4)
    if wav.size == 0:
        raise InputError(path, f"has an audio stream with no samples in it; give {ACCEPTED_SPEECH}", "no_sound")
    log.debug("loaded %s: %d samples at %d Hz (%.2f s)", path, wav.size, sample_rate, wav.size / sample_rate)
    return wav
