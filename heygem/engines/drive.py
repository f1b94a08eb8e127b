"""The mouth drive: how far open the mouth should be in each output frame, from the speech alone.

The voice band (300-3000 Hz) loudness per frame, in dB, mapped to 0..1 between low and high percentiles
of the speech's own voiced frames, behind an absolute silence gate (near-silent audio closes the mouth
whatever its own percentiles say), then smoothed: a zero-phase 3-tap filter against flicker and a
release-only follower (the mouth opens at once, closes over a couple of frames), so no peak comes late.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np
from scipy.signal import butter, sosfiltfilt

from heygem.features import voice_envelope

SAMPLE_RATE = 16000
BAND = (300.0, 3000.0)
# Absolute gate: frames quieter than this in the voice band are silence (full-scale sine = -3 dBFS RMS).
SILENCE_DB = -50.0
LOW_PERCENTILE, HIGH_PERCENTILE = 15.0, 97.0
MIN_RANGE_DB = 6.0  # a flat recording still maps over at least this range
RELEASE = 0.55  # per frame, the share of the way the mouth closes towards a quieter target


def _band(samples: np.ndarray, low: float, high: float) -> np.ndarray:
    sos = butter(4, [low, high], btype="band", fs=SAMPLE_RATE, output="sos")
    if len(samples) <= 3 * (2 * sos.shape[0] + 1):
        return samples.astype(np.float64)
    return sosfiltfilt(sos, samples.astype(np.float64))


def _frame_rms(signal: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
    """RMS of one frame period centred on each frame's time."""
    half = 0.5 / fps
    out = np.zeros(n_frames)
    for i in range(n_frames):
        t = i / fps
        s0, s1 = int(max(0.0, t - half) * SAMPLE_RATE), int(max(0.0, t + half) * SAMPLE_RATE)
        seg = signal[s0:s1]
        out[i] = np.sqrt(np.mean(seg * seg)) if len(seg) else 0.0
    return out


def band_envelope_db(samples: np.ndarray, fps: float | Fraction, n_frames: int,
                     band: tuple[float, float] = BAND) -> np.ndarray:
    """(n_frames,) dB RMS of ``band`` (Hz) per frame of 16 kHz ``samples``."""
    rms = _frame_rms(_band(np.asarray(samples, dtype=np.float32), *band), float(fps), n_frames)
    return 20.0 * np.log10(rms + 1e-10)


def voice_envelope_db(samples: np.ndarray, fps: float | Fraction, n_frames: int) -> np.ndarray:
    """Per-frame dB RMS of the 300-3000 Hz band (heygem.features.voice_envelope)."""
    return np.asarray(voice_envelope(samples, Fraction(fps), n_frames), dtype=np.float64)


def shape_drive(samples: np.ndarray, fps: float | Fraction, n_frames: int) -> np.ndarray:
    """(n_frames,) in [-1, 1]: > 0 rounded (energy low in the voice band, o/u), < 0 wide (e/i); 0 in silence."""
    low = band_envelope_db(samples, fps, n_frames, (300.0, 1000.0))
    high = band_envelope_db(samples, fps, n_frames, (1000.0, 3000.0))
    voiced = np.maximum(low, high) > SILENCE_DB
    ratio = np.clip((low - high - 6.0) / 12.0, -1.0, 1.0)
    return np.where(voiced, ratio, 0.0)


def mouth_drive(samples: np.ndarray, fps: float | Fraction, n_frames: int) -> np.ndarray:
    """(n_frames,) float32 in [0, 1]: 0 closed (silence), 1 as open as the speech gets."""
    if n_frames <= 0:
        return np.zeros(0, dtype=np.float32)
    db = voice_envelope_db(samples, fps, n_frames)
    voiced = db > SILENCE_DB
    if not voiced.any():
        return np.zeros(n_frames, dtype=np.float32)
    low = np.percentile(db[voiced], LOW_PERCENTILE)
    high = max(np.percentile(db[voiced], HIGH_PERCENTILE), low + MIN_RANGE_DB)
    low = max(low, SILENCE_DB)
    x = np.clip((db - low) / (high - low), 0.0, 1.0)
    x[~voiced] = 0.0
    # Zero-phase 3-tap smoothing against one-frame flicker (moves no peak).
    if n_frames >= 3:
        padded = np.concatenate(([x[0]], x, [x[-1]]))
        x = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
    # Release-only follower: opening is immediate, closing eases out.
    y = np.empty_like(x)
    level = 0.0
    for i, v in enumerate(x):
        level = v if v >= level else level + RELEASE * (v - level)
        y[i] = level
    y[~voiced & (y < 0.02)] = 0.0
    return np.clip(y, 0.0, 1.0).astype(np.float32)
