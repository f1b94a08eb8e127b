"""Pasting the generated mouth: seamless, and nothing outside the lower face changes."""
from __future__ import annotations

import numpy as np
import pytest

from heygem.blend import ColourMatch, lower_face_mask, paste, warp_into


def scene() -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    generated = np.full((96, 96, 3), 200, np.uint8)
    return frame, generated, (100, 50, 200, 170)


def test_feather_leaves_everything_outside_the_box_and_above_the_mouth_untouched() -> None:
    frame, generated, (x1, y1, x2, y2) = scene()
    before = frame.copy()
    paste(frame, generated, (x1, y1, x2, y2), "feather", 0.12)
    outside = np.ones(frame.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    assert np.array_equal(frame[outside], before[outside])
    upper_half = slice(y1, y1 + (y2 - y1) // 2)
    assert np.array_equal(frame[upper_half, x1:x2], before[upper_half, x1:x2])
    # the mouth area takes the generated pixels
    assert np.all(frame[y1 + int(0.8 * (y2 - y1)), x1 + (x2 - x1) // 2] == 200)


def test_feather_has_no_hard_edge() -> None:
    mask = lower_face_mask(120, 100, 0.12)[:, :, 0]
    assert mask.max() == 1.0
    assert np.all(mask[:, 0] == 0) and np.all(mask[:, -1] == 0) and np.all(mask[-1] == 0)
    assert np.abs(np.diff(mask, axis=0)).max() < 0.2 and np.abs(np.diff(mask, axis=1)).max() < 0.2


def test_hard_paste_replaces_the_whole_box_only() -> None:
    frame, generated, (x1, y1, x2, y2) = scene()
    before = frame.copy()
    paste(frame, generated, (x1, y1, x2, y2), "hard")
    assert np.all(frame[y1:y2, x1:x2] == 200)
    frame[y1:y2, x1:x2] = before[y1:y2, x1:x2]
    assert np.array_equal(frame, before)


def face_and_mouth() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A 60x60 patch of skin with a dark mouth, its mask (the middle) and colour ring (a band above the mask)."""
    patch = np.full((60, 60, 3), (140, 150, 190), np.uint8)
    patch[26:34, 18:42] = (60, 40, 120)  # the lips and the mouth's inside
    mask = np.zeros((60, 60), np.float32)
    mask[14:46, 10:50] = 1.0
    ring = np.zeros((60, 60), np.float32)
    ring[4:12, 10:50] = 1.0
    return patch, mask, ring, np.float64([[1, 0, 20], [0, 1, 20]])


@pytest.mark.parametrize("towards", [255, 0], ids=["from white", "to black"])
def test_a_mouth_drawn_into_a_faded_picture_fades_with_it(towards: int) -> None:
    """A presenter video that fades in from white (or out to black): the face is mostly white, and the mouth
    must be too, not a mouth of full colour floating on it."""
    patch, mask, ring, affine = face_and_mouth()
    face = np.full((100, 100, 3), (140, 150, 190), np.uint8)
    picture = (0.2 * face + 0.8 * towards).astype(np.uint8)  # 80% of the way: 90 levels and more
    warp_into(picture, patch, mask, ring, affine, ColourMatch(0.25, 40.0))
    skin, mouth = picture[20 + 40, 20 + 12].astype(float), picture[20 + 30, 20 + 30].astype(float)
    assert np.abs(skin - (0.2 * face[0, 0] + 0.8 * towards)).max() <= 3  # the skin as faded as the picture's
    patch_contrast = np.abs(patch[0, 0].astype(float) - patch[30, 30]).max()
    assert np.abs(skin - mouth).max() <= 0.3 * patch_contrast  # the mouth faded as much (0.2 of it, and some)
    assert np.abs(skin - mouth).max() >= 0.1 * patch_contrast  # but still drawn


def test_a_mouth_drawn_under_other_light_keeps_its_contrast() -> None:
    """A picture a little brighter than the patch (light, not a fade): the offset matches the skin and the mouth
    keeps its full contrast."""
    patch, mask, ring, affine = face_and_mouth()
    picture = np.full((100, 100, 3), (155, 165, 205), np.uint8)  # 15 levels brighter
    warp_into(picture, patch, mask, ring, affine, ColourMatch(0.25, 40.0))
    assert np.array_equal(picture[20 + 40, 20 + 12], [155, 165, 205])
    assert np.array_equal(picture[20 + 30, 20 + 30], [75, 55, 135])
