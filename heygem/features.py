"""Audio features in exactly the form the Wav2Lip checkpoints were trained on (FACTS.md, "Audio features"),
and the per-video-frame mel windows of the original's inference ("Inference conventions").

The short-time Fourier transform and the mel filters are librosa's recipe written out in NumPy (tested equal
to librosa's): librosa loads SciPy's signal package and more on its first call, 2 s of every new process (a
command-line job, a worker), for arithmetic this small."""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import overload

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN, FMAX = 55.0, 7600.0
PREEMPHASIS = 0.97
REF_LEVEL_DB = 20.0
MIN_LEVEL_DB = -100.0
MAX_ABS = 4.0
MEL_PER_SECOND = SAMPLE_RATE // HOP  # 80 mel columns per second of audio
MEL_STEP = 16  # columns per chunk: 0.2 s of audio around each video frame


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    linear = hz / (200.0 / 3)
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), mel * (200.0 / 3))


@functools.cache
def mel_filters(n_fft: int, n_mels: int, fmin: float, fmax: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) float64: triangular filters on Slaney's mel scale with Slaney's area
    normalisation, librosa.filters.mel's defaults and its float32 weights. Read only (one per set of values)."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, bins)
    rising = -ramps[:n_mels] / widths[:n_mels, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    area = 2.0 / (edges[2:] - edges[:n_mels])
    filters = (weights * area[:, None]).astype(np.float32).astype(np.float64)
    filters.flags.writeable = False
    return filters


def _mel_basis() -> np.ndarray:
    """(80, 401): the filters the checkpoints were trained with."""
    return mel_filters(N_FFT, N_MELS, FMIN, FMAX)


@functools.cache
def hann_window(length: int) -> np.ndarray:
    """The periodic Hann window of ``length`` samples (scipy's get_window("hann", fftbins=True), as librosa's)."""
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)
    window.flags.writeable = False
    return window


def _stft_magnitude(signal: np.ndarray) -> np.ndarray:
    """|STFT| (401, frames) of frames of N_FFT samples every HOP from the signal's first sample, Hann-windowed."""
    frames = np.lib.stride_tricks.sliding_window_view(signal, N_FFT)[::HOP]
    return np.abs(np.fft.rfft(frames * hann_window(N_FFT), n=N_FFT, axis=1)).T


# Mel columns computed at a time: 100 s of audio, so a long speech needs a few tens of MB of working memory,
# not several float64 copies of the whole waveform and its spectrum.
MEL_BLOCK = 8000


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """16 kHz mono waveform -> normalised log-mel spectrogram, float32 (80, T), 80 columns per second.

    Computed block by block; each column sees exactly the samples it would see in one whole-signal pass
    (pre-emphasis, centred frames with reflected edges), so the result does not depend on the block size.
    """
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {wav.shape}")
    n = len(wav)
    pad = N_FFT // 2
    if n <= pad:  # too short to reflect once: the one-pass recipe, on a few hundred samples
        return _normalised_mel(_stft_magnitude(np.pad(_preemphasis_at(wav, np.arange(n)), pad, mode="reflect")))
    columns = 1 + n // HOP
    out = np.empty((N_MELS, columns), dtype=np.float32)
    for first in range(0, columns, MEL_BLOCK):
        last = min(columns, first + MEL_BLOCK)
        # Samples under columns [first, last) of the centred, reflect-padded signal, in signal coordinates.
        index = np.arange(first * HOP - pad, (last - 1) * HOP - pad + N_FFT)
        index = np.where(index < 0, -index, index)
        index = np.where(index >= n, 2 * (n - 1) - index, index)
        emphasised = _preemphasis_at(wav, index)
        out[:, first:last] = _normalised_mel(_stft_magnitude(emphasised))
    return out


def _preemphasis_at(wav: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The pre-emphasised signal (y[i] = x[i] - 0.97 x[i-1], x[-1] = 0) at the sample numbers ``index``."""
    current = wav[index].astype(np.float64)
    previous = np.where(index > 0, wav[np.maximum(index - 1, 0)], 0.0).astype(np.float64)
    return current - PREEMPHASIS * previous


def _normalised_mel(spectrum: np.ndarray) -> np.ndarray:
    # pad_mode="reflect" above: librosa >= 0.10 pads with zeros by default; the checkpoints were trained on reflect.
    mel = _mel_basis() @ spectrum
    db = 20.0 * np.log10(np.maximum(1e-5, mel)) - REF_LEVEL_DB
    return np.clip(2 * MAX_ABS * (db - MIN_LEVEL_DB) / -MIN_LEVEL_DB - MAX_ABS, -MAX_ABS, MAX_ABS).astype(np.float32)


def frame_count(n_samples: int, fps: Fraction, sample_rate: int = SAMPLE_RATE) -> int:
    """Output frames so the video lasts as long as the audio: round(seconds * fps), at least 1."""
    return max(1, round(Fraction(int(n_samples), int(sample_rate)) * Fraction(fps)))


class MelChunks(Sequence[np.ndarray]):
    """The (80, 16) mel window of each output video frame.

    Chunk i starts at column int(i * 80 / fps), as in the original. The original stops making frames once a
    window would pass the end of the mel; we keep going and clamp the start to T - 16, so the output covers
    the whole audio (the last frames share the final window).
    """

    def __init__(self, mel: np.ndarray, fps: Fraction, n_frames: int) -> None:
        if mel.ndim != 2 or mel.shape[0] != N_MELS:
            raise ValueError(f"expected a mel spectrogram of shape (80, T), got {mel.shape}")
        if n_frames < 0:
            raise ValueError(f"n_frames must be >= 0, got {n_frames}")
        mel = np.asarray(mel, dtype=np.float32)
        if mel.shape[1] < MEL_STEP:
            # Audio under 0.2 s: pad with -4, the value of silence after normalisation.
            mel = np.pad(mel, ((0, 0), (0, MEL_STEP - mel.shape[1])), constant_values=-MAX_ABS)
        self.mel = mel
        self.fps = Fraction(fps)
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.n_frames = int(n_frames)

    def __len__(self) -> int:
        return self.n_frames

    def start(self, i: int) -> int:
        """First mel column of frame i (exact rational arithmetic, then clamped to the last full window)."""
        return min(math.floor(i * MEL_PER_SECOND / self.fps), self.mel.shape[1] - MEL_STEP)

    @overload
    def __getitem__(self, i: int) -> np.ndarray: ...

    @overload
    def __getitem__(self, i: slice) -> np.ndarray: ...

    def __getitem__(self, i: int | slice) -> np.ndarray:
        """Chunk i as float32 (80, 16); a slice gives a batch (B, 80, 16)."""
        if isinstance(i, slice):
            return self.batch(range(*i.indices(self.n_frames)))
        i = int(i)
        if i < 0:
            i += self.n_frames
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} out of range for {self.n_frames} frames")
        s = self.start(i)
        return np.ascontiguousarray(self.mel[:, s:s + MEL_STEP])

    def batch(self, indices: Iterable[int]) -> np.ndarray:
        """Chunks of several frames stacked: float32 (B, 80, 16)."""
        chunks = [self[i] for i in indices]
        if not chunks:
            return np.empty((0, N_MELS, MEL_STEP), dtype=np.float32)
        return np.stack(chunks)
