"""Pasting the generated mouth: seamless, and nothing outside the lower face changes."""
from __future__ import annotations

import numpy as np

from heygem.blend import lower_face_mask, paste


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
