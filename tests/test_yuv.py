"""Frames kept as decoded (heygem.media.yuv): their BGR is ffmpeg's to the bit, and what a job does not draw on
reaches the encoder as it was decoded."""
from __future__ import annotations

import itertools
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip
from heygem.engines import create_engine
from heygem.media import yuv
from heygem.media.ffmpeg import ffmpeg_exe
from heygem.media.probe import probe
from heygem.media.video import iter_frames, iter_yuv_frames, yuv_conversion
from heygem.media.yuv import YuvFrame, conversion, i420_from_bgr
from heygem.pipeline import FACE_PART_BELOW, FACE_PART_SIDES, iter_synced_frames, prepare_audio, source_index
from heygem.settings import DetectionOptions, EngineOptions, Settings

# Untagged, BT.601 (smpte170m) and BT.709 sources: ffmpeg converts each with its own matrix.
CLIPS = ("videoretalking/2.mp4", "long/Chantel-Home-Intro.mp4", "liveportrait/d13.mp4", "latentsync/demo1_video.mp4")


@pytest.mark.parametrize("clip", CLIPS)
def test_the_bgr_of_a_kept_frame_and_of_any_part_is_ffmpegs_own(media: Path, clip: str) -> None:
    info = probe(media / clip)
    convert = yuv_conversion(info)
    assert convert is not None, f"{clip} ({info.pixel_format}, {info.colour_space}) should be kept as decoded"
    fps = Fraction(25)
    pairs = zip(itertools.islice(iter_frames(info, fps), 6), itertools.islice(iter_yuv_frames(info, fps, convert), 6))
    for bgr, kept in pairs:
        assert isinstance(kept, YuvFrame) and kept.shape == bgr.shape
        assert np.array_equal(kept.bgr(), bgr)
        rect = kept.even(info.width // 3 + 1, info.height // 4 + 1, info.width // 3 + 151, info.height // 4 + 97)
        x0, y0, x1, y1 = rect
        assert np.array_equal(kept.bgr(rect), bgr[y0:y1, x0:x1])


def test_every_yuv_value_converts_as_ffmpeg_converts_it() -> None:
    # All 256^3 (Y, U, V): a 4096x4096 picture whose 2x2 blocks carry every (U, V) 64 times, each time with four
    # other luma values.
    blocks = np.arange(2048 * 2048).reshape(2048, 2048)
    u, v = (blocks % 256).astype(np.uint8), (blocks // 256 % 256).astype(np.uint8)
    y = np.zeros((4096, 4096), np.uint8)
    for dy, dx in itertools.product(range(2), range(2)):
        y[dy::2, dx::2] = (blocks // 65536 * 4 + dy * 2 + dx).astype(np.uint8)
    ours = conversion(ffmpeg_exe()).bgr(y, u, v)
    assert np.array_equal(ours, yuv._ffmpeg_bgr(ffmpeg_exe(), y, u, v, []))


def test_a_conversion_that_is_not_ffmpegs_is_not_used(monkeypatch) -> None:
    real = yuv._ffmpeg_bgr
    calls = []

    def off_by_one_on_random_pictures(exe, y, u, v, tags):
        calls.append(y.shape)
        out = real(exe, y, u, v, tags)
        return out if len(calls) == 1 else np.clip(out.astype(int) + (out < 255), 0, 255).astype(np.uint8)

    monkeypatch.setattr(yuv, "_ffmpeg_bgr", off_by_one_on_random_pictures)
    assert yuv.conversion.__wrapped__(ffmpeg_exe(), "bt470bg", "tv") is None
    assert len(calls) == 2  # read off the first picture, refused on the second
    assert conversion(ffmpeg_exe(), "bt2020nc", "tv") is None  # a matrix not read off ffmpeg here
    assert conversion(ffmpeg_exe(), None, "pc") is None  # full range


def test_only_even_yuv420p_videos_are_kept_as_decoded(media: Path, tmp_path: Path) -> None:
    assert yuv_conversion(probe(media / "insightface/t1.jpg")) is None  # a photo
    for name, size in (("full-chroma.mp4", 480), ("odd.mp4", 479)):
        clip = make_clip(tmp_path / name, "-i", str(media / "liveportrait/d19.mp4"), "-t", "0.2", "-vf",
                         f"format=yuv444p,crop={size}:{size}", "-c:v", "libx264", "-pix_fmt", "yuv444p")
        info = probe(clip)
        assert (info.width, info.pixel_format) == (size, "yuv444p")
        assert yuv_conversion(info) is None


def test_drawing_on_a_part_leaves_every_other_byte_as_decoded(media: Path) -> None:
    info = probe(media / "liveportrait/d19.mp4")
    frame = next(iter_yuv_frames(info, info.fps, yuv_conversion(info)))
    before = frame.copy()
    rect = frame.even(101, 151, 220, 260)
    assert rect == (100, 150, 220, 260)
    picture = frame.bgr(rect)
    picture[20:60, 30:90] = (40, 60, 200)  # a red patch
    frame.put(rect, picture)
    x0, y0, x1, y1 = rect
    outside = np.ones((info.height, info.width), bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(frame.y[outside], before.y[outside])
    outside_chroma = outside[::2, ::2]
    assert np.array_equal(frame.u[outside_chroma], before.u[outside_chroma])
    assert np.array_equal(frame.v[outside_chroma], before.v[outside_chroma])
    drawn = frame.bgr(rect).astype(int)
    assert np.abs(drawn[22:58, 32:88] - (40, 60, 200)).max() <= 3  # the patch, through yuv420p and back
    assert np.abs(drawn[:15] - picture[:15].astype(int)).max() <= 3  # the rest of the part as it was


def test_a_job_draws_the_same_mouths_on_kept_frames_and_leaves_the_rest_as_decoded(media: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "d13.mp4", "-i", str(media / "liveportrait/d13.mp4"), "-t", "1.2", "-vf", "scale=-2:480",
                     "-an", "-c:v", "libx264", "-crf", "16")
    speech = prepare_audio(make_clip(tmp_path / "speech.wav", "-i", str(media / "speechrecognition/english.wav"), "-t", "1"))
    info = probe(clip)
    settings = Settings(detection=DetectionOptions(cache_dir=None), engine=EngineOptions(engine="builtin"))
    engine = create_engine(settings.engine)
    as_bgr = [frame for _, frame, _ in iter_synced_frames(speech, info, engine, settings)]
    kept = list(iter_synced_frames(speech, info, engine, settings, pictures=True))
    decoded = list(iter_yuv_frames(info, info.fps, yuv_conversion(info)))
    assert len(kept) == len(as_bgr) == 30  # 1 s at 30 fps
    drawn = 0
    for (_, frame, box), bgr, original in zip(kept, as_bgr, decoded):
        assert isinstance(frame, YuvFrame) and box is not None
        # Every pixel away from the mouth is the decoder's own; where it was drawn, what was drawn into the BGR
        # frame (to a level: the affine's last bits).
        x1, y1, x2, y2 = box
        x0, y0, x3, y3 = frame.even(x1 - round(FACE_PART_SIDES * (x2 - x1)), y1, x2 + round(FACE_PART_SIDES * (x2 - x1)),
                                    y2 + round(FACE_PART_BELOW * (y2 - y1)))
        away = np.ones((info.height, info.width), bool)
        away[y0:y3, x0:x3] = False
        assert np.array_equal(frame.y[away], original.y[away])
        assert np.array_equal(frame.u[away[::2, ::2]], original.u[away[::2, ::2]])
        rows, columns = np.nonzero(frame.y != original.y)
        assert len(rows), "no mouth drawn"
        top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
        assert (bottom - top) * (right - left) < 0.5 * (y3 - y0) * (x3 - x0)  # only the mouth's rectangle
        assert top > y0 + 0.25 * (y3 - y0)  # below the eyes
        same = i420_from_bgr(bgr)[: info.height]  # the BGR job's frame as the encoder gets it: its luma
        assert np.abs(frame.y[top:bottom, left:right].astype(int) - same[top:bottom, left:right]).max() <= 1
        drawn += 1
    assert drawn >= 20


def test_a_speech_longer_than_the_video_replays_kept_frames(media: Path, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "short.mp4", "-i", str(media / "liveportrait/d19.mp4"), "-t", "1", "-an", "-c:v", "libx264",
                     "-crf", "10")
    info = probe(clip)
    speech = prepare_audio(media / "videoretalking/2.wav")  # 6 s against 1 s of video: ping-pong, then again
    originals = list(iter_yuv_frames(info, info.fps, yuv_conversion(info)))
    n = len(originals)
    settings = Settings(detection=DetectionOptions(cache_dir=None), engine=EngineOptions(engine="builtin"))
    outputs = {index: (frame, box) for index, frame, box in
               iter_synced_frames(speech, info, create_engine(settings.engine), settings, pictures=True)}
    assert len(outputs) == round(speech.duration * float(info.fps))
    for index in (n, n + 5, 2 * n - 2, 2 * n + 3, 4 * n + 1):
        frame, (_, y1, _, _) = outputs[index]
        assert isinstance(frame, YuvFrame)
        source = originals[source_index(index, n, "pingpong")]
        assert np.array_equal(frame.y[:y1 - 2], source.y[:y1 - 2])  # above the face, that source frame's own
