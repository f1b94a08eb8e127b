"""heygem.engines.footage_mouths: a mouth chosen from the presenter's own footage, moved into another frame,
shows that mouth (as the face mesh measures it) and leaves the rest of the picture as it was."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import MEDIA, make_clip
from heygem.engines.footage_mouths import MouthPlacer
from heygem.faces.landmarks import LandmarkTracker, mouth_opening
from heygem.footage import study_footage
from heygem.media.probe import probe
from heygem.media.video import iter_frames
from heygem.settings import DetectionOptions


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory):
    clip = make_clip(tmp_path_factory.mktemp("mouths") / "talking.mp4", "-i", str(MEDIA / "videoretalking/1.mp4"),
                     "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-an")
    info = probe(clip)
    study = study_footage(info, DetectionOptions())
    frames = list(iter_frames(info, info.fps))
    return study, frames


def _points(image: np.ndarray) -> np.ndarray:
    return LandmarkTracker()(image)


def _placed(placer: MouthPlacer, picture: np.ndarray, index: int) -> np.ndarray:
    out = picture.copy()
    placer.place(out, _points(picture), index)
    return out


def test_a_frame_given_its_own_mouth_is_left_almost_as_it_was(footage) -> None:
    study, frames = footage
    index = int(np.argmax(study.openings))
    picture = frames[index]
    placed = _placed(MouthPlacer(study), picture, index)
    changed = np.abs(placed.astype(np.int16) - picture.astype(np.int16)).max(axis=2) > 0
    assert changed.any()
    rows, cols = np.nonzero(changed)
    points = _points(picture)
    # Only the lower face is touched: nothing above the nose's tip, nothing beyond the face's sides.
    assert rows.min() > points[1, 1] - 2 and points[:, 0].min() - 2 < cols.min() and cols.max() < points[:, 0].max() + 2
    difference = np.abs(placed.astype(np.float32) - picture.astype(np.float32))[changed]
    assert difference.mean() < 6.0  # JPEG and two resamplings, no more


def test_the_placed_mouth_is_the_chosen_one_in_the_pictures_pose(footage) -> None:
    study, frames = footage
    most_open, most_closed = int(np.argmax(study.openings)), int(np.argmin(study.openings))
    placer = MouthPlacer(study)
    closed_picture = frames[most_closed]
    opened = _placed(placer, closed_picture, most_open)
    assert mouth_opening(_points(opened)) > max(0.6 * study.openings[most_open],
                                                 study.openings[most_closed] + 0.05)
    placer.reset()
    open_picture = frames[most_open]
    closed = _placed(placer, open_picture, most_closed)
    assert mouth_opening(_points(closed)) < study.openings[most_closed] + 0.3 * (study.openings[most_open] -
                                                                                 study.openings[most_closed])
