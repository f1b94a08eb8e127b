"""The articulation measure (split-time protocol): the cuts, the measuring pipeline against itself, a run of the
built-in engine, the command line. On a 4 s, 360p cut of a real talking head with its own speech."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from heygem.errors import InputError
from heygem.eval import (ArticulationReport, compare_articulation, cut_argv, cut_speech_argv, measure_articulation,
                         own_speech_lags, scaled_size, split_clip)
from heygem.media.probe import probe
from heygem.media.video import iter_frames
from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings
from conftest import REPO, make_clip

FIGURES = ("opening_r", "opening_best_r", "width_r", "width_best_r", "loudness_r", "real_loudness_r")


@pytest.fixture(scope="module")
def clip(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of videoretalking/2.mp4 (25 fps, 100 frames) at 360x360 with its own speech."""
    return make_clip(tmp_path_factory.mktemp("articulation") / "talk.mp4", "-i", str(media / "videoretalking/2.mp4"),
                     "-t", "4", "-vf", "scale=-2:360", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")


@pytest.fixture(scope="module")
def halves(clip: Path, tmp_path_factory: pytest.TempPathFactory):
    return split_clip(clip, tmp_path_factory.mktemp("halves"), preset="ultrafast")


def builtin(tmp_path: Path, drive: str = "loudness") -> Settings:
    return Settings(detection=DetectionOptions(cache_dir=None), engine=EngineOptions(engine="builtin", mouth_drive=drive),
                    encode=EncodeOptions(preset="ultrafast"), out_dir=tmp_path)


# ---- the cuts -----------------------------------------------------------------------------------------------

def test_cut_argv() -> None:
    assert cut_argv("ffmpeg", "in.mp4", "out.mp4", fps=Fraction(1350, 61), start_frame=67, end_frame=135,
                    size=(540, 960), preset="veryfast") == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", "file:in.mp4",
        "-map", "0:V:0", "-an", "-sn", "-dn",
        "-vf", "fps=1350/61,trim=start_frame=67:end_frame=135,setpts=PTS-STARTPTS,scale=540:960:flags=area",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-r", "1350/61",
        "-f", "mp4", "file:out.mp4"]
    assert cut_speech_argv("ffmpeg", "in.mp4", "s.wav", start=Fraction(2), end=Fraction(4, 1)) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", "file:in.mp4",
        "-map", "0:a:0", "-vn", "-sn", "-dn",
        "-af", "asetpts=PTS-STARTPTS,atrim=start=2.000000:end=4.000000,asetpts=PTS-STARTPTS",
        "-c:a", "pcm_s16le", "-f", "wav", "file:s.wav"]


def test_scaled_size() -> None:
    assert scaled_size(844, 844) == (844, 844)
    assert scaled_size(701, 699) == (700, 698)  # even, for H.264
    assert scaled_size(1080, 1920, 960) == (540, 960)
    assert scaled_size(512, 512, 960) == (512, 512)  # never up


def test_split_on_a_frame_boundary(clip: Path, halves) -> None:
    assert halves.split_frame == 50 and halves.fps == 25
    first, second, speech = probe(halves.first_half), probe(halves.second_half), probe(halves.speech)
    assert first.frame_count == 50 and second.frame_count == 50
    assert not first.has_audio and not second.has_audio
    assert speech.kind == "audio" and speech.duration == pytest.approx(2.0, abs=0.01)


def test_the_halves_are_the_frames_the_speech_lines_up_with(media: Path, tmp_path: Path) -> None:
    """A clip whose video starts 0.12 s after its audio (as long/french.mp4's starts 0.08 s after): frame i of
    the halves must be the frame ``iter_frames`` numbers split + i, the one the speech at (split + i) / fps
    lines up with (an ffmpeg trim counted from the video's own first frame and ran the halves early)."""
    clip = media / "videoretalking/2.mp4"
    late = make_clip(tmp_path / "late.mp4", "-itsoffset", "0.12", "-i", str(clip), "-i", str(clip),
                     "-map", "0:v", "-map", "1:a", "-t", "4", "-c", "copy")
    halves = split_clip(late, tmp_path / "halves", preset="ultrafast")
    info = probe(late)
    source = [f.astype(np.float32) for f in iter_frames(info, info.fps)]
    for half, start in ((halves.first_half, 0), (halves.second_half, halves.split_frame)):
        cut = probe(half)
        for i, frame in enumerate(iter_frames(cut, cut.fps)):
            if i >= 12:
                break
            distance = [np.abs(frame.astype(np.float32) - source[j]).mean() for j in range(start, start + 16)]
            # The nearest source frame is this one (or a duplicate of it: a late start repeats the first frame).
            assert distance[i] <= min(distance) + 0.5, (half.name, i, np.round(distance, 1))


def test_split_refuses_a_clip_without_speech(media: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="d13.mp4"):
        split_clip(media / "liveportrait/d13.mp4", tmp_path)


# ---- (a) the measuring pipeline: the real second half against itself ----------------------------------------

def test_real_second_half_against_itself_is_r_1(halves) -> None:
    report = compare_articulation(halves.second_half, halves.second_half, speech=halves.speech)
    assert report.opening_r == pytest.approx(1.0) and report.width_r == pytest.approx(1.0)
    assert report.opening_best_lag == 0 and report.width_best_lag == 0
    assert report.frames_generated == report.frames_real == report.frames_compared == 50
    assert report.frames_dropped == 0
    assert np.isfinite(report.loudness_r) and report.loudness_r == pytest.approx(report.real_loudness_r)
    assert np.nanstd(report.real_width) > 0  # a real mouth changes its width


def test_a_mouth_filmed_after_its_speech_is_read_as_late_by_that_much(halves) -> None:
    """The clip's own timing, which the split-time figures at lag 0 take in: this real mouth keeps time with
    its speech within a frame or two; the same mouth five frames (200 ms) late, as a clip cut out of sync
    would show it, is read five frames later."""
    real = compare_articulation(halves.second_half, halves.second_half).real_opening
    in_time = own_speech_lags(real, halves.speech, halves.fps)
    late = own_speech_lags(np.concatenate([np.full(5, np.nan), real[:-5]]), halves.speech, halves.fps)

    def best(by_lag: dict[int, float]) -> int:
        return max((k for k in by_lag if np.isfinite(by_lag[k])), key=by_lag.get)

    assert set(in_time) == set(range(-8, 9))
    assert abs(best(in_time)) <= 2 and in_time[best(in_time)] > 0.3
    assert best(late) == best(in_time) + 5
    assert late[0] < in_time[0] - 0.2  # at lag 0 the late mouth no longer follows its sounds


# ---- (b) the built-in engine ---------------------------------------------------------------------------------

def test_builtin_engine_report(clip: Path, tmp_path: Path) -> None:
    report = measure_articulation(clip, builtin(tmp_path), work_dir=tmp_path / "work")
    assert isinstance(report, ArticulationReport)
    assert report.engine.startswith("builtin") and report.split_frame == 50
    for name in FIGURES:
        assert np.isfinite(getattr(report, name)), name
    assert abs(report.opening_best_lag) <= 2 and abs(report.width_best_lag) <= 2
    assert report.opening_best_r >= report.opening_r and report.width_best_r >= report.width_r
    assert abs(report.frames_real - 50) <= 1 and abs(report.frames_generated - report.frames_real) <= 1
    assert report.frames_compared + report.frames_dropped == min(report.frames_generated, report.frames_real)
    assert np.nanstd(report.generated_opening) > 0.005  # the mouth moves
    data = json.loads(json.dumps(report.to_dict()))
    assert set(data["opening_r_by_lag"]) == {"-2", "-1", "0", "1", "2"}
    assert set(data["real_sync_r_by_lag"]) == {str(k) for k in range(-8, 9)}
    assert len(data["generated_opening"]) == report.frames_generated
    assert "opening r " in report.summary() and "width r " in report.summary()
    # The presenter's half keeps its own speech, as footage does (the default drive chooses mouths by it).
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == [
        "first_half.mp4", "first_half.wav", "generated.mp4", "second_half.mp4", "second_half.wav"]
    assert probe(tmp_path / "work" / "first_half.mp4").has_audio


# ---- (c) command line ---------------------------------------------------------------------------------------

def _eval(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "heygem.eval", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_cli_prints_the_three_figures(clip: Path) -> None:
    done = _eval("articulation", clip, "--engine", "builtin", "--drive", "loudness", "--max-lag", "1",
                 "--preset", "ultrafast")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    number = r"-?\d\.\d\d"
    assert any(re.fullmatch(rf"opening r: lag 0 {number}, best {number} at lag [+-][01]", s) for s in lines), done.stdout
    assert any(re.fullmatch(rf"width r: lag 0 {number}, best {number} at lag [+-][01]", s) for s in lines), done.stdout
    assert any(re.match(rf"loudness-proxy r: {number} ", s) for s in lines), done.stdout
    # and how the real half keeps time with its own speech (this clip: within two frames)
    assert any(re.match(rf"the real mouth against its own speech's sounds: lag 0 {number}, best {number} at lag "
                        r"([+-][012]|\+0) ", s) for s in lines), done.stdout


def test_cli_bad_clip_exits_2(tmp_path: Path) -> None:
    junk = tmp_path / "broken.mp4"
    junk.write_bytes(b"\0" * 1000)
    done = _eval("articulation", junk)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if not line.startswith("INFO: ")]  # TFLite's own banner
    assert len(lines) == 1 and "broken.mp4" in lines[0]
