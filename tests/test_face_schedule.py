"""Cheap detection: every Nth frame with interpolation, re-detection when the face is lost or jumps, and the
per-video face cache that lets a second job with the same video skip detection with identical output."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import make_clip
from heygem.engines import create_engine
from heygem.faces import Face, get_detector
from heygem.faces.schedule import FaceCache, sparse_detect
from heygem.faces.track import iou, select_face, smooth_faces
from heygem.media.probe import probe
from heygem.media.video import iter_frames
from heygem.pipeline import generate, iter_synced_frames, prepare_audio


def _detect_one(image: np.ndarray, previous: Face | None) -> Face | None:
    return select_face(get_detector("yunet").detect(image), "largest", previous)


def _frames(path: Path, limit: int) -> list[np.ndarray]:
    info = probe(path)
    frames = []
    for image in iter_frames(info, info.fps):
        frames.append(image.copy())
        if len(frames) == limit:
            break
    return frames


@pytest.mark.parametrize("name", ["videoretalking/2.mp4", "liveportrait/d13.mp4"])
def test_every_fifth_frame_tracks_a_real_talking_head(media: Path, name: str) -> None:
    frames = _frames(media / name, 75)
    raw = [face for _, face in sparse_detect(enumerate(frames), _detect_one, 1)]
    dense = [face for _, face in smooth_faces(enumerate(raw), 5)]
    counter: dict[str, int] = {}
    sparse = [face for _, face in smooth_faces(sparse_detect(enumerate(frames), _detect_one, 5, counter), 5)]
    assert counter["detected"] <= 75 // 5 + 2  # the first frame, then one in five

    def worst(a: list[Face], b: list[Face]) -> float:
        """Largest corner difference, as a fraction of the face's height."""
        return max(max(abs(p - q) for p, q in zip((x.x1, x.y1, x.x2, x.y2), (y.x1, y.y1, y.x2, y.y2))) / x.height
                   for x, y in zip(a, b))

    # The boxes the pipeline uses (smoothed) differ by less than the detector's own frame-to-frame jitter.
    assert worst(dense, sparse) <= 0.03
    assert worst(dense, sparse) <= worst(raw, dense)


def _canvas_sequence(media: Path, layout: list[tuple[int, int] | None]) -> list[np.ndarray]:
    """A face photo pasted at (x, y) on a grey canvas for each frame, or no face at all (None)."""
    face = cv2.imread(str(media / "insightface/Tom_Hanks_54745.png"))
    face = cv2.resize(face, (160, 160))
    frames = []
    for place in layout:
        canvas = np.full((360, 640, 3), 128, np.uint8)
        if place is not None:
            x, y = place
            canvas[y:y + 160, x:x + 160] = face
        frames.append(canvas)
    return frames


def test_a_lost_face_and_a_jump_are_detected_not_interpolated(media: Path) -> None:
    layout: list[tuple[int, int] | None] = [(60, 80)] * 10 + [None] * 5 + [(60, 80)] * 3 + [(420, 150)] * 7
    frames = _canvas_sequence(media, layout)
    faces = [face for _, face in sparse_detect(enumerate(frames), _detect_one, 5)]
    for number, (place, face) in enumerate(zip(layout, faces)):
        if place is None:
            assert face is None, f"frame {number} has no face but got {face}"
        else:
            truth = Face(place[0], place[1], place[0] + 160, place[1] + 160)
            assert face is not None and iou(face, truth) > 0.5, f"frame {number}: {face} is not at {place}"


def test_the_face_cache_skips_detection_and_changes_nothing(media: Path, settings, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "talk.mp4", "-i", str(media / "videoretalking/2.mp4"), "-t", "2", "-an",
                     "-c:v", "libx264", "-preset", "ultrafast")
    same_video_other_name = shutil.copy(clip, tmp_path / "renamed copy.mp4")
    audio = prepare_audio(media / "speechrecognition/english.wav")
    engine = create_engine(settings.engine)

    def synced(path: Path) -> tuple[list[np.ndarray], list, dict]:
        stats: dict = {}
        frames, boxes = [], []
        for _, frame, box in iter_synced_frames(audio, probe(path), engine, settings, stats):
            frames.append(frame.copy())
            boxes.append(box)
        return frames, boxes, stats

    first_frames, first_boxes, first = synced(clip)
    second_frames, second_boxes, second = synced(Path(same_video_other_name))
    assert first["face_cache"] == "miss" and first["faces_detected"] > 0
    assert second["face_cache"] == "hit" and second["faces_detected"] == 0
    assert second_boxes == first_boxes
    assert all(np.array_equal(a, b) for a, b in zip(first_frames, second_frames))

    # A longer speech needs more frames than the cache holds: only the new ones are detected.
    longer = generate(media / "sadtalker/RD_Radio31_000.wav", clip, tmp_path / "long.mp4", settings)
    assert longer.face_cache in ("hit", "partial")
    assert longer.faces_detected < first["faces_detected"] + longer.frames // 4


def test_a_damaged_cache_file_is_rebuilt(media: Path, tmp_path: Path, caplog) -> None:
    video = make_clip(tmp_path / "v.mp4", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25:duration=0.2", "-c:v", "libx264")
    info = probe(video)
    cache = FaceCache(tmp_path / "cache", info, ("yunet", 640))
    cache.folder.mkdir()
    cache.path.write_bytes(b"not numpy")
    assert cache.load() == []
    assert "unreadable face cache" in caplog.text
    faces = [Face(1, 2, 30, 40, 0.9), None]
    cache.save(faces)
    assert cache.load() == [Face(1.0, 2.0, 30.0, 40.0, pytest.approx(0.9)), None]
    # Another video's content, or other detection settings, give another entry.
    assert FaceCache(tmp_path / "cache", info, ("yunet", 320)).path != cache.path
    # Nor are faces found on one of a file's pictures taken for another's.
    assert FaceCache(tmp_path / "cache", replace(info, video_stream=1), ("yunet", 640)).path != cache.path


def test_going_on_from_kept_faces_gives_what_one_pass_gives(media: Path) -> None:
    # A face that stays, is lost, comes back and jumps, detected on anchors moved onto every 2nd frame at first.
    from heygem.faces.schedule import Anchors

    layout: list[tuple[int, int] | None] = [(60, 80)] * 12 + [None] * 4 + [(64, 82)] * 9 + [(420, 150)] * 14
    frames = _canvas_sequence(media, layout)
    anchors = Anchors(5, snap=2, snap_until=20)
    assert [n for n in range(40) if n in anchors] == [0, 4, 10, 14, 20, 25, 30, 35]
    whole = [face for _, face in sparse_detect(enumerate(frames), _detect_one, anchors)]
    for kept in (anchors.known_prefix(whole[:n]) for n in (1, 13, 23, 31)):
        counter: dict[str, int] = {}
        rest = [face for _, face in sparse_detect(enumerate(frames[kept:], kept), _detect_one, anchors, counter,
                                                  known=whole[:kept])]
        assert whole[:kept] + rest == whole, f"going on after {kept} kept faces"
        assert counter["detected"] <= len(frames) - kept


def _with_caches(settings, folder: Path):
    """``settings`` with the face cache in ``folder`` (and the studies beside it)."""
    from dataclasses import replace

    return replace(settings, detection=replace(settings.detection, cache_dir=folder / "faces"))


def _synced_frames(speech: Path, video: Path, settings, caches: Path) -> tuple[list[np.ndarray], dict]:
    """The output frames (before encoding) of one job with its caches in ``caches``, and its stats."""
    stats: dict = {}
    frames = [frame.copy() for _, frame, _ in iter_synced_frames(
        prepare_audio(speech), probe(video), create_engine(settings.engine), _with_caches(settings, caches), stats)]
    return frames, stats


@pytest.mark.parametrize("engine", ["builtin", "wav2lip"])
def test_the_same_presenter_and_speech_give_the_same_frames_whatever_the_caches_hold(
        media: Path, settings, tmp_path: Path, engine: str) -> None:
    from heygem.pipeline import prepare_presenter

    settings.engine.engine = engine
    # 3 s of a talking head with its own speech (the study labels its mouths by it): 75 frames.
    video = make_clip(tmp_path / "anna.mp4", "-i", str(media / "videoretalking/2.mp4"), "-t", "3", "-vf", "scale=-2:360",
                      "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12")
    speech = make_clip(tmp_path / "speech.wav", "-i", str(media / "speechrecognition/english.wav"), "-t", "2")
    shorter = make_clip(tmp_path / "shorter.wav", "-i", str(media / "sadtalker/RD_Radio31_000.wav"), "-t", "0.9")
    longer = make_clip(tmp_path / "longer.wav", "-i", str(media / "sadtalker/RD_Radio31_000.wav"), "-t", "2.9")

    fresh, first = _synced_frames(speech, video, settings, tmp_path / "fresh")
    assert first["face_cache"] == "miss" and len(fresh) == 50
    runs = {}
    for earlier in (shorter, longer):  # an earlier job with another speech filled the caches
        _synced_frames(earlier, video, settings, tmp_path / earlier.stem)
        runs[earlier.stem] = _synced_frames(speech, video, settings, tmp_path / earlier.stem)
    prepare_presenter(video, _with_caches(settings, tmp_path / "presenter"))  # added as a presenter first
    runs["presenter"] = _synced_frames(speech, video, settings, tmp_path / "presenter")

    for name, (frames, stats) in runs.items():
        differing = [i for i, (a, b) in enumerate(zip(fresh, frames)) if not np.array_equal(a, b)]
        assert len(frames) == len(fresh) and not differing, (
            f"after {name}: frames {differing} differ, by up to "
            f"{max(int(np.abs(fresh[i].astype(int) - frames[i]).max()) for i in differing)} levels")
    # What was kept is still not looked for again.
    assert runs["longer"][1]["face_cache"] == "hit" and runs["longer"][1]["faces_detected"] == 0
    assert runs["presenter"][1]["face_cache"] == "hit" and runs["presenter"][1]["faces_detected"] == 0
    assert runs["shorter"][1]["face_cache"] == "partial"
    if engine == "builtin":  # the kept study hands its faces over: nothing is detected past the kept faces either
        assert runs["shorter"][1]["study"] == "cached" and runs["shorter"][1]["faces_detected"] == 0
        # and the face mesh points of its crops are kept, by a job that went further or by the preparation: all
        # but at most the last few, whose boxes a job ending there smooths over fewer neighbours (other crops,
        # unless the smoothed box rounds to the same pixels)
        assert first["mesh_kept"] == 0
        ending = settings.detection.smooth_window // 2
        kept = runs["longer"][1]["mesh_kept"]
        assert kept == runs["presenter"][1]["mesh_kept"] and len(fresh) - ending <= kept <= len(fresh)
