"""Putting the generated mouth back into the frame.

``feather`` (default) blends the generated crop over the lower face only, through a mask that fades to
zero at the crop's edges and above the mouth, so no box seam shows; every pixel outside the crop box, and
every pixel where the mask is zero, keeps exactly its decoded value. ``hard`` is the original Wav2Lip
paste of the whole box.

An engine that draws into the frame itself (the built-in one: ``Engine.paints_frames``) uses ``warp_into``: its
patch warped onto the face by an affine, matched in colour to the skin around it (``ColourMatch``; where the
picture is far brighter or darker than light explains, a fade or a flash, faded with it: ``fade_like``) and
blended through its own mask at the frame's resolution.
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

# The engines regenerate the lower half of the crop (Wav2Lip masks rows 48..95 of 96); the mask starts a
# little below the middle so the nose, which the model also redraws, stays the person's own.
MASK_TOP = 0.55


def smoothstep(x: np.ndarray | float) -> np.ndarray:
    """0 below 0, 1 above 1, and the cubic 3x^2 - 2x^3 between: a ramp with no kink at either end."""
    x = np.minimum(np.maximum(x, 0.0), 1.0)  # np.clip's own, without its wrapper's cost (a mouth calls it often)
    return x * x * (3 - 2 * x)


def _ramp(n: int, start: float, width: float) -> np.ndarray:
    """Smoothstep from 0 at ``start`` to 1 at ``start + width`` over positions 0..n-1 (fractions of n)."""
    t = np.arange(n, dtype=np.float32) / max(n - 1, 1)  # 0 exactly at the first pixel, 1 at the last
    return smoothstep((t - start) / max(width, 1e-6))


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


class ColourMatch:
    """The colour offset that makes a placed patch match the skin around it, smoothed over frames so it does
    not flicker; an offset beyond ``limit`` grey levels is a wrong match, not lighting, and is clipped."""

    def __init__(self, smoothing: float, limit: float = 40.0) -> None:
        self.smoothing, self.limit = smoothing, limit
        self.offset: np.ndarray | None = None

    def reset(self) -> None:
        self.offset = None

    def update(self, measured: np.ndarray) -> np.ndarray:
        measured = np.clip(measured, -self.limit, self.limit)
        self.offset = measured if self.offset is None else self.offset + self.smoothing * (measured - self.offset)
        return self.offset


def warp_into(picture: np.ndarray, patch: np.ndarray, mask: np.ndarray, ring: np.ndarray, affine: np.ndarray,
              colour: ColourMatch) -> tuple[int, int, int, int]:
    """Warp ``patch`` (uint8 BGR, in its own pixels) into ``picture`` (in place) by the 2x3 ``affine`` and blend
    it through ``mask`` (float32 in [0, 1], the patch's size), its colour matched on ``ring`` (the patch's
    size, non-zero on the skin to match against). Only the rectangle the patch lands on is touched, and in it
    only where the mask is not zero: every other pixel stays exactly as it was. Returns that rectangle (x0,
    y0, x1, y1; empty when the patch falls outside the picture)."""
    h, w = patch.shape[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64) @ np.asarray(affine).T
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + 2, picture.shape[1])
    y1 = min(int(np.ceil(corners[:, 1].max())) + 2, picture.shape[0])
    if x1 <= x0 or y1 <= y0:
        return 0, 0, 0, 0
    local = np.array(affine, np.float64)
    local[:, 2] -= (x0, y0)
    size = (int(x1 - x0), int(y1 - y0))
    moved = cv2.warpAffine(patch, local, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    weight = cv2.warpAffine(mask.astype(np.float32), local, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)
    around = cv2.warpAffine((ring > 0).astype(np.uint8), local, size, flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT)
    region = picture[y0:y1, x0:x1]
    fade = None
    fading = 0.0  # how far the picture's difference from the patch is a fade rather than light (0..1)
    if around.any():
        skin, own = np.array(cv2.mean(region, around)[:3]), np.array(cv2.mean(moved, around)[:3])
        # From the offset's limit to twice that, the offset hands over to the fade, so neither pops in. (Light
        # alone moves the skin by up to about 55 levels between moments of one shared video; a fade from white
        # by over 100.)
        fading = float(np.clip(np.abs(skin - own).max() / colour.limit - 1.0, 0.0, 1.0))
        if fading > 0:
            fade = fade_like(moved, own, skin)
        if fading < 1:
            colour.update(skin - own)
    if fading < 1 and colour.offset is not None:
        moved = cv2.add(moved, (*map(float, colour.offset), 0.0))  # saturating, as the clip to 0..255 was
    if fade is not None:
        moved = fade if fading >= 1 else cv2.addWeighted(fade, fading, moved, 1.0 - fading, 0.0)
    region[:] = cv2.blendLinear(moved, np.ascontiguousarray(region), weight, 1.0 - weight)
    return int(x0), int(y0), int(x1), int(y1)


def fade_like(patch: np.ndarray, own: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """``patch`` faded as the picture is: a picture far brighter or darker than any light explains (a fade from
    or to white or black, a flash) is its face blended towards white or black, so the patch, whose skin has the
    mean colour ``own``, is blended towards the same by the share that brings that mean to the picture's
    ``skin`` (per channel). A mouth of full colour on a faded face would float on it."""
    target = np.where(skin > own, 255.0, 0.0)
    kept = np.clip((skin - target) / np.where(np.abs(own - target) < 1.0, 1.0, own - target), 0.0, 1.0)
    faded = patch.astype(np.float32) * kept.astype(np.float32) + (target * (1.0 - kept)).astype(np.float32)
    return np.clip(faded + 0.5, 0, 255).astype(np.uint8)
