"""heygem.footage: every frame of a presenter's footage studied once (its mouth measured and kept in one
canonical face frame), as unit selection needs it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import heygem.footage as footage
from conftest import MEDIA, make_clip
from heygem.eval import mouth_measures
from heygem.faces.landmarks import EYE_OUTER_CORNERS
from heygem.footage import CANONICAL_EYES, PATCH_BOX, study_footage, studied_frames
from heygem.media.probe import probe
from heygem.settings import DetectionOptions


@pytest.fixture(scope="module")
def talking(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three seconds of a real talking head with its own speech."""
    return make_clip(tmp_path_factory.mktemp("footage") / "talking.mp4", "-i", str(MEDIA / "videoretalking/1.mp4"),
                     "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")


def test_every_frame_is_studied_and_measured_as_the_evaluation_measures_it(talking: Path) -> None:
    study = study_footage(probe(talking), DetectionOptions())
    opening, width, _ = mouth_measures(talking)
    assert len(study.frames) == len(opening) and np.array_equal(study.frames, np.arange(len(opening)))
    assert study.found.all() and not study.sampled
    # The same mouths as the independent measurement sees them (it tracks the mesh its own way).
    assert np.corrcoef(study.openings, opening)[0, 1] > 0.95
    assert np.corrcoef(study.widths, width)[0, 1] > 0.9
    assert study.openings.max() - study.openings.min() > 0.05  # the footage speaks: its mouth moves


def test_the_head_pose_is_taken_out_and_each_frame_keeps_its_lower_face(talking: Path) -> None:
    study = study_footage(probe(talking), DetectionOptions())
    eyes = study.points[:, list(EYE_OUTER_CORNERS)].astype(np.float32)
    assert np.abs(eyes - np.array(CANONICAL_EYES, np.float32)).max() < 6.0  # px in the 256 px frame
    x1, y1, x2, y2 = PATCH_BOX
    most_open, most_closed = int(np.argmax(study.openings)), int(np.argmin(study.openings))
    wide, shut = study.patch(most_open), study.patch(most_closed)
    assert wide.shape == shut.shape == (y2 - y1, x2 - x1, 3)
    # Aligned by the skull: the nose's base is where it was, while the mouth is each frame's own.
    mouth = study.points[most_open, 13:15].astype(np.float32).mean(0) - (x1, y1)
    row, col = int(mouth[1]), int(mouth[0])

    def differ(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())

    nose = (slice(0, 12), slice(col - 15, col + 15))
    lips = (slice(row - 6, row + 7), slice(col - 15, col + 15))
    assert differ(wide[lips], shut[lips]) > 3 * differ(wide[nose], shut[nose]) and differ(wide[lips], shut[lips]) > 15


def test_the_study_is_kept_and_read_back(talking: Path, tmp_path: Path) -> None:
    stats: dict = {}
    made = study_footage(probe(talking), DetectionOptions(), cache_dir=tmp_path, stats=stats)
    assert stats["footage"] == "made" and len(list(tmp_path.glob("footage-*.npz"))) == 1
    again = study_footage(probe(talking), DetectionOptions(), cache_dir=tmp_path, stats=stats)
    assert stats["footage"] == "cached"
    assert np.array_equal(again.frames, made.frames) and np.array_equal(again.openings, made.openings)
    assert again.patches == made.patches and np.array_equal(again.points, made.points, equal_nan=True)


def test_long_footage_is_studied_at_evenly_spaced_frames_and_says_so(talking: Path, monkeypatch) -> None:
    assert np.array_equal(studied_frames(10, 20), np.arange(10))
    spaced = studied_frames(10_000, 2_500)
    assert len(spaced) == 2_500 and spaced[0] == 0 and spaced[-1] == 9_999 and set(np.diff(spaced)) <= {4, 5}
    monkeypatch.setattr(footage, "MAX_FRAMES", 30)
    study = study_footage(probe(talking), DetectionOptions())
    assert study.sampled and len(study.frames) == 30 and study.found.all()
    assert "30 of 30 frames with a mouth, evenly spaced over the footage" in study.describe()


def test_a_photo_or_footage_without_a_face_gives_no_study(tmp_path: Path) -> None:
    assert study_footage(probe(MEDIA / "insightface" / "Tom_Hanks_54745.png"), DetectionOptions()) is None
    pattern = make_clip(tmp_path / "pattern.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=1",
                        "-c:v", "libx264", "-preset", "ultrafast")
    assert study_footage(probe(pattern), DetectionOptions()) is None


def test_footage_whose_sound_was_recorded_out_of_step_is_described_by_the_sounds_its_mouths_made(
        out_of_step: dict[str, Path]) -> None:
    """A presenter filmed with the sound ahead of the picture (a camera and a microphone joined out of step) had
    the footage drive learn the fault: every result's mouths came late to the new speech (opening r with the
    real mouth 0.53 -> 0.17 on Chantel's split-time half, bench/RESULTS.md "Footage out of sync")."""
    from heygem.media.audio import load_audio
    from heygem.speech.frames import frame_loudness

    in_step = study_footage(probe(out_of_step["in step"]), DetectionOptions())
    early = study_footage(probe(out_of_step["sound early"]), DetectionOptions())
    assert in_step.sound_lag == 0  # his own lips' lead on his sounds is his, and kept
    assert early.sound_lag in (5, 6, 7)  # the mouth 6 frames after its sounds
    # Each frame is described by the sound its mouth was making: the early soundtrack's loudness read back by the
    # lag is the one filmed with the picture.
    samples = load_audio(out_of_step["sound early"], 16000)
    loudness = frame_loudness(samples, 30, len(early.frames) + 10)
    assert np.array_equal(early.loudness, loudness[np.clip(early.frames - early.sound_lag, 0, None)].astype(np.float32))
    assert np.corrcoef(early.loudness, in_step.loudness)[0, 1] > np.corrcoef(loudness[early.frames], in_step.loudness)[0, 1] + 0.2


def test_a_sound_lag_is_taken_only_where_the_footage_can_tell_it_from_the_person_s_own_lead() -> None:
    rng = np.random.default_rng(0)
    fps, count = 30, 900
    asked = np.convolve(rng.random(count + 20), np.ones(5) / 5, "same")[:count]  # syllables, smooth
    frames = np.arange(count)

    def mouth(late: int, noise: float = 0.02) -> np.ndarray:
        return asked[np.clip(frames - late, 0, count - 1)] + noise * rng.standard_normal(count)

    assert footage.sound_lag(mouth(6), asked, frames, fps) == 6
    assert footage.sound_lag(mouth(-7), asked, frames, fps) == -7
    assert footage.sound_lag(mouth(2), asked, frames, fps) == 0  # 67 ms: a lip's own lead or lag, kept
    assert footage.sound_lag(rng.random(count), asked, frames, fps) == 0  # a mouth its sound does not foretell
    short = frames[:300]  # 10 s: a chance peak cannot be told from a fault
    assert footage.sound_lag(mouth(6)[:300], asked, short, fps) == 0
    spaced = frames[::3]  # footage studied at evenly spaced frames: the lag still in source frames
    assert footage.sound_lag(mouth(6)[spaced], asked, spaced, fps) == 6
