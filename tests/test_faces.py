"""Face detection backends, face choice, smoothing and the crop box."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from heygem.errors import EngineError
from heygem.faces import Face, get_detector
from heygem.faces.track import crop_box, select_face, smooth_faces


def read(path: Path):
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


@pytest.mark.parametrize(
    ("name", "faces"),
    [("sadtalker/people_0.png", 1), ("skimage/astronaut.png", 1), ("insightface/Tom_Hanks_54745.png", 1), ("insightface/t1.jpg", 6)],
)
def test_yunet_finds_every_face(media: Path, name: str, faces: int) -> None:
    found = get_detector("yunet").detect(read(media / name))
    assert len(found) == faces


def test_boxes_come_back_in_source_pixels(media: Path) -> None:
    """Detection runs on a downscaled frame; the box must land on the face of the full-size frame."""
    image = read(media / "insightface/t1.jpg")  # 1280 wide, detected at 640
    small = get_detector("yunet", detect_size=640).detect(image)
    full = get_detector("yunet", detect_size=1280).detect(image)
    for a in small:
        b = max(full, key=lambda f: min(a.x2, f.x2) - max(a.x1, f.x1))
        assert abs(a.center_x - b.center_x) < 0.1 * b.width
        assert abs(a.height - b.height) < 0.2 * b.height


def _frames(video: Path, every: int, count: int) -> list[np.ndarray]:
    from heygem.media.probe import probe
    from heygem.media.video import iter_frames

    frames = iter_frames(probe(video), 25)
    try:
        return [frame for number, frame in zip(range(every * count), frames) if number % every == 0]
    finally:
        frames.close()


def test_at_the_face_s_own_scale_the_same_face_is_found_on_a_smaller_picture(media: Path) -> None:
    from heygem.faces.orientation import find_orientation

    detector = get_detector("yunet")
    frames = _frames(media / "videoretalking/2.mp4", 5, 20)  # a 1280-wide talking head
    height = find_orientation(frames[:5], detector.detect).face_height
    seen: list[tuple[int, int]] = []
    backend = detector._detect
    detector._detect = lambda image: seen.append(image.shape[:2]) or backend(image)
    for frame in frames:
        full = max(detector.detect(frame), key=lambda f: f.area)
        scaled = max(detector.detect(frame, face_height=height), key=lambda f: f.area)
        # Within the detector's own jitter (3.4% of the face height from frame to frame at 640 px).
        assert max(abs(full.x1 - scaled.x1), abs(full.y1 - scaled.y1), abs(full.x2 - scaled.x2),
                   abs(full.y2 - scaled.y2)) < 0.08 * full.height
    widths = sorted({width for _, width in seen})
    assert widths[-1] == 640 and widths[0] <= round(frames[0].shape[1] * 96 / height) + 1  # a quarter of the pixels


def test_a_face_far_smaller_than_the_video_s_is_still_found(media: Path) -> None:
    # The scale a large face suggests loses a small one; the whole frame is then searched as without it.
    face = cv2.resize(_frames(media / "videoretalking/2.mp4", 1, 1)[0], (200, 112))  # a face ~50 px high
    canvas = np.full((720, 1280, 3), 90, np.uint8)
    canvas[300:412, 600:800] = face
    detector = get_detector("yunet")
    shrunk = cv2.resize(canvas, (307, 173), interpolation=cv2.INTER_AREA)  # as a 400 px face suggests
    assert detector._detect(shrunk) == []
    assert len(detector.detect(canvas, face_height=400.0)) == len(detector.detect(canvas)) == 1


def test_anime_face_is_found_by_yunet(media: Path) -> None:
    """musetalk/yongen.mp4 is a drawn (anime) face: YuNet takes it for a face, in the head region."""
    capture = cv2.VideoCapture(str(media / "musetalk/yongen.mp4"))
    ok, frame = capture.read()
    capture.release()
    assert ok
    faces = get_detector("yunet").detect(frame)
    assert len(faces) == 1
    face = faces[0]
    assert face.y2 < frame.shape[0] * 0.5  # the head, in the upper half of the portrait frame


def test_choice_of_face_in_a_group_photo(media: Path) -> None:
    faces = get_detector("yunet").detect(read(media / "insightface/t1.jpg"))
    largest = select_face(faces, "largest")
    assert largest.area == max(f.area for f in faces)
    by_position = sorted(faces, key=lambda f: f.center_x)
    assert select_face(faces, 0) == by_position[0]
    assert select_face(faces, 5) == by_position[5]
    assert select_face(faces, 6) is None


def test_largest_face_sticks_when_sizes_are_close() -> None:
    a, b = Face(0, 0, 100, 100), Face(200, 0, 305, 105)
    assert select_face([a, b], "largest") == b
    assert select_face([a, b], "largest", previous=a) == a  # no flip-flop between similar faces
    c = Face(200, 0, 400, 200)
    assert select_face([a, c], "largest", previous=a) == c  # a clearly larger face wins


def test_smoothing_averages_neighbours_and_keeps_gaps() -> None:
    items = [(i, Face(i * 10, 0, i * 10 + 50, 50) if i != 3 else None) for i in range(8)]
    smoothed = list(smooth_faces(iter(items), 5))
    assert [p for p, _ in smoothed] == list(range(8))
    assert smoothed[3][1] is None
    assert smoothed[5][1].x1 == pytest.approx((40 + 50 + 60 + 70) / 4)
    assert smoothed[0][1].x1 == pytest.approx(10)  # (0 + 10 + 20) / 3 at the start
    assert list(smooth_faces(iter(items), 1)) == items


def test_crop_box_pads_and_clips() -> None:
    assert crop_box(Face(10.4, 20.6, 110.2, 120.5), 640, 480, (0, 10, 0, 0)) == (10, 21, 110, 130)
    assert crop_box(Face(5, 5, 635, 475), 640, 480, (10, 10, 10, 10)) == (0, 0, 640, 480)


def test_s3fd_without_weights_says_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="s3fd-619a316812.pth"):
        get_detector("s3fd", 640, tmp_path / "missing.pth")


def test_s3fd_loads_weights_from_a_local_path(tmp_path: Path, media: Path) -> None:
    """No download: a weights file on disk is loaded as is (random weights here: S3FD's are not shippable)."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd

    torch.manual_seed(0)
    weights = tmp_path / "s3fd-local.pth"
    torch.save(s3fd().state_dict(), weights)
    detector = get_detector("s3fd", 320, weights)
    assert detector.name == "s3fd"
    faces = detector.detect(read(media / "sadtalker/people_0.png"))  # random weights: any answer, no crash
    assert isinstance(faces, list)


def test_unknown_detector_is_named() -> None:
    with pytest.raises(EngineError, match="unknown face detector 'retina'"):
        get_detector("retina")
