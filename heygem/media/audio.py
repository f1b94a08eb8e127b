"""Speech as a float32 mono waveform, decoded by ffmpeg from any audio file or a video's soundtrack."""
from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from heygem.errors import InputError
from heygem.media.ffmpeg import audio_decode_argv, ffmpeg_exe, reading_output
from heygem.media.probe import ACCEPTED_SPEECH

log = logging.getLogger(__name__)

_READ_BYTES = 1 << 20


class TooLongError(Exception):
    """The decoded speech passed ``max_seconds``; decoding was stopped there."""


# A quiet recording (a laptop's microphone at arm's length, a lavalier turned down) is read as if recorded at a
# normal level: its loud parts (the 95th percentile of its 20 ms levels) below QUIET_DB are raised to LEVEL_DB,
# by at most MAX_GAIN_DB and never past full scale. The sounds' features gate silence at an absolute level, so
# a speech 20 dB down moved the mouth on half as many frames (26 of 62 against 51), 30 dB down on 6, and 40 dB
# down not at all, while it played perfectly audibly. Recordings at an ordinary level (the shared speeches'
# loud parts sit at -8 to -25 dBFS) are not touched. The result keeps the speech as recorded.
QUIET_DB = -30.0
LEVEL_DB = -20.0
MAX_GAIN_DB = 40.0
SILENT_MIX_DB = -70.0  # loud parts under this: nothing anyone hears (a mix whose channels cancel)
_LEVEL_STEP = 320  # 20 ms at 16 kHz


def _levels(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """The RMS of each whole 20 ms of ``samples`` (float64; the rest left out)."""
    step = max(1, sample_rate * _LEVEL_STEP // 16000)
    count = len(samples) // step
    return np.sqrt(np.mean(np.square(samples[:count * step].reshape(count, step), dtype=np.float64), axis=1))


def _loud_parts_db(samples: np.ndarray, sample_rate: int) -> float:
    """The 95th percentile of the 20 ms levels (dBFS; -inf for digital silence or no samples)."""
    return _percentile_db(_levels(samples, sample_rate), 95)


def _percentile_db(levels: np.ndarray, percentile: float) -> float:
    if len(levels) == 0:
        return float("-inf")
    level = float(np.percentile(levels, percentile))
    return 20 * np.log10(level) if level > 0 else float("-inf")


def _quiet_gain_db(peak: float, loud: float) -> float:
    """The gain (dB, 0 for a recording at an ordinary level) that reads a speech whose loud parts are at ``loud``
    dBFS and whose largest sample is ``peak`` at a normal level."""
    if loud == float("-inf") or loud >= QUIET_DB or peak <= 0:
        return 0.0
    gain = min(LEVEL_DB - loud, MAX_GAIN_DB, -20 * np.log10(peak / 0.99))
    return round(max(gain, 0.0), 1)


class RunningLevel:
    """``read_speech``'s normal level for a speech that arrives in pieces (a microphone or a TTS pushed to a live
    session): each piece raised by the gain that the loud parts of what came so far (the last
    ``history_seconds``) ask for, by the same rule. Only once what came has a voice in it, loud parts at least
    VOICE_RANGE_DB over its quiet ones: a microphone's room noise before anyone speaks is as flat as a hum, and
    raised it would move the mouth."""

    VOICE_RANGE_DB = 12.0

    def __init__(self, sample_rate: int = 16000, history_seconds: float = 60.0) -> None:
        self.sample_rate = sample_rate
        self._history: deque[float] = deque(maxlen=max(1, int(history_seconds * 1000 / 20)))  # 20 ms levels
        self._rest = np.zeros(0, np.float32)  # samples of the last piece short of a whole 20 ms
        self._peak = 0.0
        self.gain_db = 0.0

    def raised(self, samples: np.ndarray) -> np.ndarray:
        """``samples`` (float32 mono) at a normal level: the same array where no gain is asked."""
        joined = np.concatenate([self._rest, samples]) if len(self._rest) else samples
        levels = _levels(joined, self.sample_rate)
        step = max(1, self.sample_rate * _LEVEL_STEP // 16000)
        self._rest = np.array(joined[len(levels) * step:], np.float32)
        if len(samples):
            self._peak = max(self._peak, float(np.max(np.abs(samples))))
        if len(levels):
            self._history.extend(levels.tolist())
            every = np.fromiter(self._history, np.float64, len(self._history))
            loud = _percentile_db(every, 95)
            voiced = loud - _percentile_db(every, 10) >= self.VOICE_RANGE_DB
            gain = _quiet_gain_db(self._peak, loud) if voiced else 0.0
            if (gain == 0) != (self.gain_db == 0):  # (it drifts by tenths of a dB as speech comes: said once)
                log.info("pushed speech read %.1f dB louder from here (its loud parts at %.1f dBFS)", gain, loud)
            self.gain_db = gain
        if not self.gain_db:
            return samples
        return np.asarray(samples, np.float32) * np.float32(10 ** (self.gain_db / 20))


@dataclass(frozen=True)
class Speech:
    """A speech as ``read_speech`` reads it."""

    samples: np.ndarray  # float32 mono, a quiet recording raised to a normal level
    raised_db: float  # how much louder than recorded it is read (0: as recorded)
    silent: bool  # nothing anyone hears in it (loud parts under SILENT_MIX_DB)


def read_speech(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None,
                tick: Callable[[float], None] | None = None, normal_level: bool = True, stream: int = 0) -> Speech:
    """Audio stream ``stream`` of ``path`` (``MediaInfo.audio_stream``: the one a player plays) as float32 mono
    at ``sample_rate``, channels averaged as the original's librosa.load does (or its first channel alone, where
    the channels cancel once averaged); a quiet recording raised to a normal level unless ``normal_level`` is
    False; its level measured once for both.

    Works for wav, mp3, m4a, aac, flac, ogg, aiff and the soundtrack of a video. The samples are read from
    ffmpeg's pipe into one growing buffer that becomes the array (no second copy): 10 minutes of 16 kHz
    speech is 38 MB. With ``max_seconds``, decoding stops past that length and TooLongError is raised, so a
    file whose header understates its length cannot fill the memory. ``tick(seconds decoded)`` is called
    after each read (a job's progress, through which a cancel stops the decoding).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"does not exist or is not a file; give {ACCEPTED_SPEECH}", "missing")
    wav = _decoded(path, sample_rate, max_seconds, tick, stream=stream)
    loud = _loud_parts_db(wav, sample_rate)
    if loud < SILENT_MIX_DB:
        # Channels that cancel once averaged: a balanced microphone wired the other way round on one side plays
        # in stereo, but its mean is silence, and the mouth never opened. Its first channel is then the speech.
        first = _decoded(path, sample_rate, max_seconds, None, first_channel=True, stream=stream)
        first_loud = _loud_parts_db(first, sample_rate)
        if first_loud > loud + 20:
            log.warning("%s: its channels cancel each other when mixed to one (one is wired the other way "
                        "round); its first channel is read instead, and on a one-speaker device it plays silent",
                        path.name)
            wav, loud = first, first_loud
    gain = _quiet_gain_db(float(np.max(np.abs(wav))) if len(wav) else 0.0, loud) if normal_level else 0.0
    if gain:
        wav *= np.float32(10 ** (gain / 20))
        log.info("%s is a quiet recording: read %.1f dB louder", path.name, gain)
    return Speech(wav, gain, loud + gain < SILENT_MIX_DB)


def load_audio(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None,
               tick: Callable[[float], None] | None = None, normal_level: bool = True, stream: int = 0) -> np.ndarray:
    """``read_speech``'s samples alone."""
    return read_speech(path, sample_rate, max_seconds, tick, normal_level, stream).samples


def _decoded(path: Path, sample_rate: int, max_seconds: float | None, tick: Callable[[float], None] | None,
             first_channel: bool = False, stream: int = 0) -> np.ndarray:
    argv = audio_decode_argv(ffmpeg_exe(), path, sample_rate, first_channel, stream)
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
