"""Per-video-frame features of a speech that carry across languages and voices (for choosing a person's own
footage frames by the sounds: ``heygem.selection``).

Three groups, each first computed on a 100 Hz grid (column j at j / 100 s) and then, for every output frame
and every context offset, averaged over the frame's own time span shifted by that offset:

- ``phones``: the recognised phone (PocketSphinx, English set, used for any language) as a one-hot of its
  viseme class (``heygem.phones.VISEMES``) plus the table's target opening and spread for it. The English set
  still marks closures, vowel openness and rounding in other languages (research/articulation.md).
- ``loudness``: voice-band (300-3000 Hz) RMS in dB over 25 ms windows, normalised per speech: 0 at the 90th
  percentile of its voiced columns, 20 dB per unit, clipped to [-2, 0.5], so a quiet recording and a loud one
  land on one scale.
- ``spectral``: MFCC 1..12 (c0 left to loudness), 25 ms windows, mean and variance normalised per speech over
  its voiced columns (cepstral mean and variance normalisation): a speaker's vocal tract and a microphone's
  colour are largely a constant offset in the cepstrum, so the same sound by another voice lands nearer.

Context: each group is stacked at ``offsets_ms`` (default -100, -50, 0, +50, +100 ms: coarticulation reaches
about a syllable's half either way). Past either end of the speech a column is silence.

    phones = recognise_phones(samples)
    features = speech_features(samples, fps, n_frames, phones=phones)   # (n_frames, D) float32

Deterministic: the same samples and phones give the same matrix whatever was computed before (the phone
decoder re-initialises its feature extraction for each speech; nothing else keeps state). The normalisations
use the whole speech: a live session (``heygem.selection`` lookahead mode) would use running statistics; not
built yet.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from heygem.features import SAMPLE_RATE, hann_window, mel_filters
from heygem.speech.loudness import SILENCE_DB, voice_band
from heygem.speech.phones import GLIDE_SHARE, GLIDES, TABLE, VISEMES, Phone, recognise_phones

__all__ = ["GROUPS", "FeatureOptions", "SpeechDescription", "describe_speech", "feature_groups", "frame_loudness",
           "lip_closure", "speech_features", "voice_distance", "voice_print"]

log = logging.getLogger(__name__)

RATE = 100  # columns per second of the base grid
HOP = SAMPLE_RATE // RATE
WINDOW = 400  # 25 ms analysis windows
N_CEPSTRA = 12  # MFCC 1..12
LOUDNESS_REF_PERCENTILE = 90.0
LOUDNESS_DB_PER_UNIT = 20.0
LOUDNESS_RANGE = (-2.0, 0.5)
RELATIVE_GATE_DB = 45.0  # columns this far under the speech's 90th percentile are not voiced either
MIN_VOICED_COLUMNS = 20  # fewer voiced columns than this: normalise over all columns

GROUPS = ("phones", "loudness", "spectral")
_PHONE_DIMS = len(VISEMES) + 2  # viseme one-hot, target opening, target spread


@dataclass(frozen=True)
class FeatureOptions:
    """Which features, with what context.

    groups: any of GROUPS, in that order in the matrix. offsets_ms: context offsets (ms) each group is stacked
    at; 0 alone is no context.
    """

    groups: tuple[str, ...] = GROUPS
    offsets_ms: tuple[float, ...] = (-100.0, -50.0, 0.0, 50.0, 100.0)

    def __post_init__(self) -> None:
        unknown = [g for g in self.groups if g not in GROUPS]
        if unknown or not self.groups:
            raise ValueError(f"feature groups must be some of {GROUPS}, got {self.groups}")
        if not self.offsets_ms:
            raise ValueError("give at least one context offset (0 for none)")


def _group_dims(group: str) -> int:
    return {"phones": _PHONE_DIMS, "loudness": 1, "spectral": N_CEPSTRA}[group]


def feature_groups(options: FeatureOptions = FeatureOptions()) -> list[tuple[str, slice]]:
    """The columns of ``speech_features``'s matrix each group fills (its context offsets together)."""
    result, start = [], 0
    for group in options.groups:
        width = _group_dims(group) * len(options.offsets_ms)
        result.append((group, slice(start, start + width)))
        start += width
    return result


def _columns(n_samples: int) -> int:
    return 1 + n_samples // HOP


def _loudness_db(samples: np.ndarray) -> np.ndarray:
    """Voice-band RMS in dB of each base column (25 ms windows centred at j / 100 s)."""
    wav = voice_band(samples, SAMPLE_RATE)
    padded = np.pad(wav, WINDOW // 2)
    energy = np.concatenate(([0.0], np.cumsum(padded * padded)))
    starts = np.arange(_columns(wav.size)) * HOP
    mean = np.maximum(energy[starts + WINDOW] - energy[starts], 0.0) / WINDOW
    return 20.0 * np.log10(np.maximum(np.sqrt(mean), 1e-6))


def _voiced(db: np.ndarray) -> np.ndarray:
    """Columns loud enough to be speech: above the absolute gate and within RELATIVE_GATE_DB of the speech's
    90th percentile."""
    above = db > SILENCE_DB
    if not above.any():
        return above
    return above & (db > np.percentile(db[above], LOUDNESS_REF_PERCENTILE) - RELATIVE_GATE_DB)


def _normalised_loudness(db: np.ndarray, voiced: np.ndarray) -> np.ndarray:
    if not voiced.any():
        return np.full(db.shape, LOUDNESS_RANGE[0])
    ref = np.percentile(db[voiced], LOUDNESS_REF_PERCENTILE)
    x = np.clip((db - ref) / LOUDNESS_DB_PER_UNIT, *LOUDNESS_RANGE)
    x[~voiced] = LOUDNESS_RANGE[0]
    return x


# The cepstra are librosa.feature.mfcc's (40 Slaney mel bands 50-7600 Hz of the power spectrum of centred,
# zero-padded, Hann-windowed 25 ms frames, in dB with an 80 dB floor under the loudest, DCT-II orthonormal),
# written out in NumPy: librosa's feature module loads SciPy's signal and stats packages and Numba, 4 s of every
# new process (a command-line job, a worker, the studio's first job) for arithmetic this small.
N_MEL_BANDS = 40
CEPSTRA_FMIN, CEPSTRA_FMAX = 50.0, 7600.0
TOP_DB = 80.0
MEL_BLOCK_COLUMNS = 10000  # 100 s of columns at a time: the power spectrum of a long speech is not held whole


@functools.cache
def _dct_basis() -> np.ndarray:
    """(N_CEPSTRA + 1, N_MEL_BANDS) rows of the orthonormal DCT-II (scipy.fft.dct's norm="ortho")."""
    k = np.arange(N_CEPSTRA + 1)[:, None]
    n = np.arange(N_MEL_BANDS)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * N_MEL_BANDS)) * np.sqrt(2.0 / N_MEL_BANDS)
    basis[0] /= np.sqrt(2.0)
    return basis


def _mel_power_db(wav: np.ndarray) -> np.ndarray:
    """(columns, N_MEL_BANDS) mel power in dB (10 log10, floored at 1e-10) of the centred frames every HOP."""
    filters = mel_filters(WINDOW, N_MEL_BANDS, CEPSTRA_FMIN, CEPSTRA_FMAX)
    window = hann_window(WINDOW)
    padded = np.pad(wav.astype(np.float64), WINDOW // 2)
    columns = 1 + (len(padded) - WINDOW) // HOP
    out = np.empty((columns, N_MEL_BANDS))
    for first in range(0, columns, MEL_BLOCK_COLUMNS):
        last = min(columns, first + MEL_BLOCK_COLUMNS)
        frames = np.lib.stride_tricks.sliding_window_view(padded[first * HOP:(last - 1) * HOP + WINDOW], WINDOW)[::HOP]
        power = np.square(np.abs(np.fft.rfft(frames * window, axis=1)))
        out[first:last] = 10.0 * np.log10(np.maximum(power @ filters.T, 1e-10))
    return out


def _raw_cepstra(samples: np.ndarray) -> np.ndarray:
    """(columns, N_CEPSTRA) MFCC 1..12 of each base column, not normalised."""
    wav = np.asarray(samples, np.float32)
    n = _columns(wav.size)
    if wav.size < WINDOW:
        return np.zeros((n, N_CEPSTRA))
    db = _mel_power_db(wav)
    db = np.maximum(db, db.max() - TOP_DB)
    mfcc = (db @ _dct_basis().T)[:, 1:]
    return mfcc[:n] if len(mfcc) >= n else np.pad(mfcc, ((0, n - len(mfcc)), (0, 0)), mode="edge")


class _Columns:
    """One speech on the base grid: its loudness, which columns are voiced, and (on first use) its raw
    cepstra, each worked out once for every reading of the speech (``describe_speech``)."""

    def __init__(self, samples: np.ndarray) -> None:
        self.samples = np.asarray(samples, np.float32)
        if self.samples.ndim != 1:
            raise ValueError(f"expected a mono waveform (1-D), got shape {self.samples.shape}")
        self.count = _columns(self.samples.size)
        self.db = _loudness_db(self.samples)
        self.voiced = _voiced(self.db)

    @functools.cached_property
    def raw_cepstra(self) -> np.ndarray:
        return _raw_cepstra(self.samples)

    def cepstra(self) -> np.ndarray:
        """(columns, N_CEPSTRA) MFCC 1..12, mean and variance normalised over the voiced columns; silent
        columns 0."""
        mfcc = self.raw_cepstra
        if self.samples.size < WINDOW:
            return mfcc
        basis = mfcc[self.voiced] if self.voiced.sum() >= MIN_VOICED_COLUMNS else mfcc
        normalised = (mfcc - basis.mean(0)) / np.maximum(basis.std(0), 1e-3)
        normalised[~self.voiced] = 0.0
        return np.clip(normalised, -4.0, 4.0)

    def voice_print(self) -> np.ndarray | None:
        if self.voiced.sum() < MIN_VOICED_COLUMNS:
            return None
        mfcc = self.raw_cepstra[self.voiced]
        return np.stack([mfcc.mean(0), np.maximum(mfcc.std(0), 1e-3)]).astype(np.float32)

    @functools.cached_property
    def loudness(self) -> np.ndarray:
        return _normalised_loudness(self.db, self.voiced)


def voice_print(samples: np.ndarray) -> np.ndarray | None:
    """(2, N_CEPSTRA) the mean and spread of a speech's cepstrum over its voiced columns: the colour of the
    voice (vocal tract, microphone) that ``speech_features`` normalises away; None with too little voice."""
    return _Columns(samples).voice_print()


def voice_distance(own: np.ndarray, other: np.ndarray) -> float:
    """How far the voice of ``other`` (a ``voice_print``) is from ``own``: the RMS over the cepstral
    coefficients of their mean difference in units of ``own``'s spread. On the shared clips, two halves of one
    person's recording measure 0.13-0.38 and another person's speech 0.42 and more (bench/RESULTS.md, "The
    footage drive, second round"; no TTS voice was measured)."""
    own, other = np.asarray(own, np.float64), np.asarray(other, np.float64)
    return float(np.sqrt((((other[0] - own[0]) / own[1]) ** 2).mean()))


def _phone_columns(phones: list[Phone], n: int) -> np.ndarray:
    """(n, _PHONE_DIMS): viseme one-hot, target opening and spread of the phone at each column's time."""
    out = np.zeros((n, _PHONE_DIMS))
    out[:, 0] = 1.0  # rest (VISEMES[0]) wherever no phone is
    times = np.arange(n) / RATE
    for phone in phones:
        label = phone.label if phone.label in TABLE else "SIL"
        parts = [(phone.start, phone.end, TABLE[label])]
        glide = GLIDES.get(label)
        if glide is not None:
            middle = phone.end - GLIDE_SHARE * (phone.end - phone.start)
            parts = [(phone.start, middle, TABLE[label]), (middle, phone.end, glide)]
        for start, end, target in parts:
            first, last = np.searchsorted(times, [start, end], side="left")
            if last <= first:
                continue
            out[first:last] = 0.0
            out[first:last, target.viseme] = 1.0
            out[first:last, len(VISEMES)] = target.opening
            out[first:last, len(VISEMES) + 1] = target.spread
    return out


def lip_closure(features: np.ndarray, options: FeatureOptions = FeatureOptions()) -> np.ndarray:
    """(n_frames,) the share of each frame's span spent in a lips-together phone (m, b, p), read from
    ``speech_features``'s phone columns at the context offset nearest 0; zeros without the phones group."""
    features = np.asarray(features)
    columns = dict(feature_groups(options)).get("phones")
    if columns is None:
        return np.zeros(len(features), np.float32)
    nearest = int(np.argmin(np.abs(np.asarray(options.offsets_ms))))
    return features[:, columns.start + nearest * _PHONE_DIMS + VISEMES.index("closed")].astype(np.float32)


def frame_loudness(samples: np.ndarray, fps: float | Fraction, n_frames: int) -> np.ndarray:
    """(n_frames,) float32: the normalised loudness (see the module notes; -2 is silence) averaged over each
    frame's span: what ``heygem.selection`` gates silence on."""
    return _frame_loudness(_Columns(samples), Fraction(fps), n_frames)


def _frame_loudness(speech: _Columns, fps: Fraction, n_frames: int) -> np.ndarray:
    base = speech.loudness[:, None]
    return _stack(base, fps, n_frames, (0.0,), np.array([LOUDNESS_RANGE[0]]))[:, 0].astype(np.float32)


def _stack(base: np.ndarray, fps: Fraction, n_frames: int, offsets_ms: tuple[float, ...],
           silence: np.ndarray) -> np.ndarray:
    """(n_frames, len(offsets) * dims): the mean of ``base``'s columns over each frame's span shifted by each
    offset; columns past the ends count as ``silence``."""
    n, dims = base.shape
    f = float(fps)
    # Pad with silence far enough that every shifted span stays inside the padded grid.
    reach = int(np.ceil(max(abs(o) for o in offsets_ms) / 1000 * RATE)) + int(np.ceil(RATE / f)) + 2
    padded = np.vstack([np.tile(silence, (reach, 1)), base, np.tile(silence, (reach, 1))])
    sums = np.vstack([np.zeros((1, dims)), np.cumsum(padded, axis=0)])
    frames = np.arange(n_frames)
    out = np.empty((n_frames, len(offsets_ms) * dims))
    for k, offset in enumerate(offsets_ms):
        # Columns j with start <= j / RATE < end, for the frame's span [i / fps, (i + 1) / fps) + offset.
        first = np.ceil((frames / f + offset / 1000) * RATE - 1e-9).astype(np.int64) + reach
        last = np.ceil(((frames + 1) / f + offset / 1000) * RATE - 1e-9).astype(np.int64) + reach
        first = np.clip(first, 0, len(padded) - 1)
        last = np.clip(np.maximum(last, first + 1), 1, len(padded))
        out[:, k * dims:(k + 1) * dims] = (sums[last] - sums[first]) / (last - first)[:, None]
    return out


def speech_features(samples: np.ndarray, fps: float | Fraction, n_frames: int, *, phones: list[Phone] | None = None,
                    options: FeatureOptions = FeatureOptions()) -> np.ndarray:
    """(n_frames, D) float32 features of a 16 kHz mono speech for video frames [i / fps, (i + 1) / fps)
    (module notes; ``feature_groups`` says which columns are which). ``phones``: already recognised
    (``recognise_phones``), else recognised here when the phones group is asked for."""
    return _features(_Columns(samples), _frame_rate(fps, n_frames), n_frames, phones, options)


@dataclass(frozen=True)
class SpeechDescription:
    """A speech read for choosing footage frames by it: ``speech_features``, ``frame_loudness`` and
    ``voice_print`` of the same samples, the loudness and cepstra under them worked out once."""

    features: np.ndarray  # (n_frames, D) float32
    loudness: np.ndarray  # (n_frames,) float32
    voice: np.ndarray | None


def describe_speech(samples: np.ndarray, fps: float | Fraction, n_frames: int, *, phones: list[Phone] | None = None,
                    options: FeatureOptions = FeatureOptions()) -> SpeechDescription:
    """``speech_features``, ``frame_loudness`` and ``voice_print`` of one speech at once (what a footage study
    keeps of its footage's speech, and what the footage drive reads of a new one)."""
    speech, fps = _Columns(samples), _frame_rate(fps, n_frames)
    return SpeechDescription(_features(speech, fps, n_frames, phones, options),
                             _frame_loudness(speech, fps, n_frames), speech.voice_print())


def _frame_rate(fps: float | Fraction, n_frames: int) -> Fraction:
    fps = Fraction(fps)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    return fps


def _features(speech: _Columns, fps: Fraction, n_frames: int, phones: list[Phone] | None,
              options: FeatureOptions) -> np.ndarray:
    blocks = []
    for group in options.groups:
        if group == "phones":
            if phones is None:
                phones = recognise_phones(speech.samples)
            base = _phone_columns(phones, speech.count)
            silence = np.zeros(_PHONE_DIMS)
            silence[0] = 1.0
        elif group == "loudness":
            base = speech.loudness[:, None]
            silence = np.array([LOUDNESS_RANGE[0]])
        else:
            base = speech.cepstra()
            silence = np.zeros(N_CEPSTRA)
        blocks.append(_stack(base, fps, n_frames, options.offsets_ms, silence))
    matrix = np.hstack(blocks).astype(np.float32)
    log.debug("speech features: %d frames x %d (%s), %.1f%% of columns voiced", n_frames, matrix.shape[1],
              "+".join(options.groups), 100.0 * speech.voiced.mean() if speech.count else 0.0)
    return matrix
