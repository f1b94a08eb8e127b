"""Putting the generated mouth back into the frame.

``feather`` (default) blends the generated crop over the lower face only, through a mask that fades to
zero at the crop's edges and above the mouth, so no box seam shows; every pixel outside the crop box, and
every pixel where the mask is zero, keeps exactly its decoded value. ``hard`` is the original Wav2Lip
paste of the whole box.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# The engines regenerate the lower half of the crop (Wav2Lip masks rows 48..95 of 96); the mask starts a
# little below the middle so the nose, which the model also redraws, stays the person's own.
MASK_TOP = 0.55


def _ramp(n: int, start: float, width: float) -> np.ndarray:
    """Smoothstep from 0 at ``start`` to 1 at ``start + width`` over positions 0..n-1 (fractions of n)."""
    t = np.arange(n, dtype=np.float32) / max(n - 1, 1)  # 0 exactly at the first pixel, 1 at the last
    x = np.clip((t - start) / max(width, 1e-6), 0.0, 1.0)
    return x * x * (3 - 2 * x)


@lru_cache(maxsize=32)
def lower_face_mask(height: int, width: int, feather: float, top: float = MASK_TOP) -> np.ndarray:
    """(height, width, 1) float32 mask in [0, 1]: 1 over the mouth and jaw (from ``top`` of the height down),
    fading out at every edge."""
    vertical = _ramp(height, top, feather) * _ramp(height, 0.0, feather)[::-1]
    horizontal = _ramp(width, 0.0, feather) * _ramp(width, 0.0, feather)[::-1]
    mask = np.outer(vertical, horizontal).astype(np.float32)
    mask[mask < 1e-3] = 0.0  # exactly zero, so those pixels stay exactly as decoded
    return mask[:, :, None]


def paste(
    frame: np.ndarray, generated: np.ndarray, box: tuple[int, int, int, int], mode: str = "feather",
    feather: float = 0.12, top: float = MASK_TOP,
) -> None:
    """Blend ``generated`` (a square crop from the engine) into ``frame`` over ``box``, in place; the soft
    mask starts at ``top`` (a fraction of the box height)."""
    x1, y1, x2, y2 = box
    width, height = x2 - x1, y2 - y1
    if width <= 0 or height <= 0:
        return
    patch = cv2.resize(generated, (width, height), interpolation=cv2.INTER_LINEAR)
    region = frame[y1:y2, x1:x2]
    if mode == "hard":
        region[:] = patch
        return
    mask = lower_face_mask(height, width, feather, top)
    rows = _first_blended_row(height, width, feather, top)  # the rows above are the frame's own anyway
    mask, patch, region = mask[rows:], patch[rows:], region[rows:]
    base = region.astype(np.float32)
    region[:] = np.clip(base + mask * (patch.astype(np.float32) - base) + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=32)
def _first_blended_row(height: int, width: int, feather: float, top: float) -> int:
    """The first row where ``lower_face_mask`` is not zero."""
    nonzero = np.flatnonzero(lower_face_mask(height, width, feather, top)[:, :, 0].any(axis=1))
    return int(nonzero[0]) if nonzero.size else height
