"""The quick face check at upload (heygem.faces.check): a few frames over the part of the video a job would use,
through the pipeline's detector and orientation check, on real clips."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from conftest import make_clip
from heygem.faces import check
from heygem.faces.check import check_face, seek_frame_argv, spread_frames_argv
from heygem.settings import DetectionOptions


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory, short_clips) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("face-check")
    pattern = make_clip(folder / "pattern.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=2",
                        "-c:v", "libx264", "-preset", "ultrafast")
    return {
        "pattern": pattern,
        # The face turned a quarter, with no rotation flag: the pipeline turns it upright, so it is a face.
        "sideways": make_clip(folder / "sideways.mp4", "-i", str(short_clips["d0"]), "-vf", "transpose=clock",
                              "-c:v", "libx264", "-preset", "ultrafast"),
        # 2 s of test pattern, then the presenter: a short speech uses only the pattern.
        "late_face": make_clip(folder / "late_face.mp4", "-i", str(pattern), "-i", str(short_clips["d0"]),
                               "-filter_complex", "[0:v]scale=360:360,setsar=1[a];[1:v]setsar=1[b];[a][b]concat=n=2:v=1[v]",
                               "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast"),
        "blank_photo": make_clip(folder / "blank.png", "-f", "lavfi", "-i", "color=c=gray:size=320x240", "-frames:v", "1"),
    }


def test_a_video_without_a_face_is_found_out_in_the_frames_looked_at(clips) -> None:
    assert check_face(clips["pattern"], DetectionOptions()) == check.FaceCheck(frames=6, found=False)


def test_a_face_is_found_upright_or_turned_sideways(short_clips, clips, media: Path) -> None:
    found = check_face(short_clips["d0"], DetectionOptions())
    assert (found.frames, found.found, found.turn) == (6, True, 0)
    sideways = check_face(clips["sideways"], DetectionOptions())
    assert sideways.found and sideways.turn in (90, 270), sideways
    assert check_face(media / "insightface" / "t1.jpg", DetectionOptions()) == check.FaceCheck(1, True, 0)
    assert check_face(clips["blank_photo"], DetectionOptions()) == check.FaceCheck(1, False)


def test_only_the_part_a_job_would_use_is_looked_at(clips) -> None:
    assert not check_face(clips["late_face"], DetectionOptions(), seconds=1.5).found  # a 1.5 s speech: the pattern
    assert check_face(clips["late_face"], DetectionOptions()).found  # no speech known yet: the whole video


def test_a_long_span_is_sampled_by_seeking_with_the_same_answer(clips, short_clips, monkeypatch) -> None:
    monkeypatch.setattr(check, "ONE_PASS_SECONDS", 0.5)
    assert check_face(clips["pattern"], DetectionOptions()) == check.FaceCheck(frames=6, found=False)
    assert check_face(short_clips["d0"], DetectionOptions()).found


def test_the_decoding_command_lines() -> None:
    assert spread_frames_argv("ffmpeg", "/v/a b.mp4", Fraction(3, 1), 2.0, (360, 640)) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-skip_loop_filter", "all", "-skip_frame", "noref",
        "-t", "2.000", "-i", "file:/v/a b.mp4", "-map", "0:V:0", "-an", "-sn", "-dn",
        "-vf", "fps=3/1,scale=360:640:flags=area", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
    assert seek_frame_argv("ffmpeg", "/v/a.mp4", 12.5, (640, 360)) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-skip_loop_filter", "all", "-ss", "12.500",
        "-i", "file:/v/a.mp4", "-map", "0:V:0", "-an", "-sn", "-dn", "-frames:v", "1",
        "-vf", "scale=640:360:flags=area", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]


def test_frames_reach_the_detector_at_its_size(short_clips, media: Path) -> None:
    from heygem.media.probe import probe

    assert check.detector_size(probe(media / "liveportrait" / "d13.mp4"), 640) == (360, 640)  # 720x1280
    assert check.detector_size(probe(short_clips["d0"]), 640) == (360, 360)  # smaller: as it is


def test_the_page_names_the_file_and_the_frames_in_its_language(clips, short_clips) -> None:
    from heygem.ui.studio import picture_problem

    options = DetectionOptions()
    assert picture_problem(str(clips["pattern"]), "en", options) == (
        "pattern.mp4: no face found in the 6 frames looked at. Give a video where the face is clearly visible.")
    assert picture_problem(str(clips["pattern"]), "zh", options) == (
        "pattern.mp4：查看的 6 帧中都没有找到人脸。请提供人脸清晰可见的视频。")
    assert picture_problem(str(clips["blank_photo"]), "en", options) == (
        "blank.png: no face found in the photo. Give a photo where the face is clearly visible.")
    assert picture_problem(str(clips["sideways"]), "en", options) == ""
    # With the speech known, the part of the video its job would use.
    assert picture_problem(str(clips["late_face"]), "en", options) == ""
    speech = make_clip(clips["pattern"].parent / "short_speech.wav", "-i", str(short_clips["speech"]), "-t", "1.5")
    assert "no face found in the 6 frames looked at" in picture_problem(str(clips["late_face"]), "en", options,
                                                                        str(speech))
