"""Speech as a float32 mono waveform, decoded by ffmpeg from any audio file or a video's soundtrack."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from heygem.errors import InputError
from heygem.media.ffmpeg import audio_decode_argv, ffmpeg_exe, run_ffmpeg
from heygem.media.probe import ACCEPTED_SPEECH

log = logging.getLogger(__name__)


def load_audio(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """The first audio stream of ``path`` as float32 mono at ``sample_rate``, channels averaged as the
    original's librosa.load does.

    Works for wav, mp3, m4a, aac, flac, ogg, aiff and the soundtrack of a video. The whole waveform is
    returned at once: 10 minutes of 16 kHz speech is 38 MB.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"does not exist or is not a file; give {ACCEPTED_SPEECH}")
    raw = run_ffmpeg(audio_decode_argv(ffmpeg_exe(), path, sample_rate), subject=path)
    # frombuffer shares the bytes read-only; copy so callers may edit the array in place.
    wav = np.frombuffer(raw, dtype="<f4", count=len(raw) // 4).astype(np.float32, copy=True)
    if wav.size == 0:
        raise InputError(path, f"has an audio stream with no samples in it; give {ACCEPTED_SPEECH}")
    log.debug("loaded %s: %d samples at %d Hz (%.2f s)", path, wav.size, sample_rate, wav.size / sample_rate)
    return wav
