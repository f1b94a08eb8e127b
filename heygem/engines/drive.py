"""The mouth drive: how far open the mouth should be in each output frame, from the speech alone.

The voice band (300-3000 Hz) loudness per frame, in dB, mapped to 0..1 between low and high percentiles
of the speech's own voiced frames, behind an absolute silence gate (near-silent audio closes the mouth
whatever its own percentiles say), then smoothed: a zero-phase 3-tap filter against flicker and a
release-only follower (the mouth opens at once, closes over a couple of frames), so no peak comes late.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from heygem.features import voice_envelope

# Absolute gate: frames quieter than this in the voice band are silence (full-scale sine = -3 dBFS RMS).
SILENCE_DB = -50.0
LOW_PERCENTILE, HIGH_PERCENTILE = 15.0, 97.0
MIN_RANGE_DB = 6.0  # a flat recording still maps over at least this range
RELEASE = 0.55  # per frame, the share of the way the mouth closes towards a quieter target


def mouth_drive(samples: np.ndarray, fps: float | Fraction, n_frames: int) -> np.ndarray:
    """(n_frames,) float32 in [0, 1]: 0 closed (silence), 1 as open as the speech gets."""
    if n_frames <= 0:
        return np.zeros(0, dtype=np.float32)
    db = np.asarray(voice_envelope(samples, Fraction(fps), n_frames), dtype=np.float64)
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
