"""The whole run, as a user sees it: durations, frame rates, untouched pixels, faces, errors."""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip
from heygem.errors import InputError, NoFaceError
from heygem.media.probe import probe
from heygem.media.video import iter_frames
from heygem.pipeline import default_output, generate, iter_synced_frames, prepare_audio, source_index
from heygem.engines import create_engine

SPEECH = "speechrecognition/english.wav"  # 2.74 s: short runs
VIDEOS = [
    "latentsync/demo1_video.mp4",  # 1080x1920 HEVC portrait, small face
    "liveportrait/d0.mp4",  # no audio track
    "liveportrait/d13.mp4",  # 720x1280 at 30 fps
    "liveportrait/d19.mp4",
    "musetalk/yongen.mp4",  # anime face: YuNet finds it, so it is synced like any face
    "sadtalker/WDA_KatieHill_000.mp4",  # MPEG-4 part 2
    "videoretalking/1.mp4",  # variable frame rate
    "videoretalking/2.mp4",
]
PHOTOS = ["insightface/t1.jpg", "insightface/Tom_Hanks_54745.png", "sadtalker/people_0.png", "skimage/astronaut.png"]


@pytest.fixture(scope="module")
def speech(media: Path):
    return prepare_audio(media / SPEECH)


def test_source_index_pingpong_and_loop() -> None:
    assert [source_index(i, 4, "pingpong") for i in range(10)] == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert [source_index(i, 4, "loop") for i in range(10)] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert [source_index(i, 1, "pingpong") for i in range(3)] == [0, 0, 0]


def test_default_output_never_overwrites_and_strips_paths(tmp_path: Path) -> None:
    first = default_output(Path("/x/../My Talk (v2).mov"), Path("speech.m4a"), tmp_path)
    assert first == tmp_path / "My_Talk_v2__speech.mp4"
    first.write_bytes(b"earlier result")
    assert default_output(Path("My Talk (v2).mov"), Path("speech.m4a"), tmp_path) == tmp_path / "My_Talk_v2__speech-1.mp4"


@pytest.mark.parametrize("name", VIDEOS + PHOTOS)
def test_every_face_video_and_photo_gives_a_synced_mp4(media: Path, speech, settings, name: str) -> None:
    source = probe(media / name)
    result = generate(speech, media / name, settings=settings)
    out = probe(result.output)
    fps = source.fps if source.kind == "video" else Fraction(25)
    assert out.kind == "video" and out.has_audio and out.video_codec == "h264" and out.audio_codec == "aac"
    assert (out.width, out.height) == (source.width, source.height)
    assert out.fps == fps
    assert abs(out.duration - speech.duration) <= 1 / fps
    assert abs(result.frames / fps - speech.duration) <= 1 / fps
    assert result.frames_without_face == 0
    assert result.engine.startswith("wav2lip")
    assert not [p for p in result.output.parent.iterdir() if "partial" in p.name]


def test_pixels_outside_the_face_and_frames_without_a_face_are_untouched(media: Path, speech, settings, tmp_path: Path) -> None:
    # 3 s of d19 (cut to the 2.74 s speech) with its first 10 frames blacked out: those have no face.
    clip = make_clip(tmp_path / "gap.mp4", "-i", str(media / "liveportrait/d19.mp4"), "-t", "3",
                     "-vf", "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='lt(n,10)'", "-an", "-c:v", "libx264", "-crf", "10")
    info = probe(clip)
    engine = create_engine(settings.engine)
    stats: dict[str, int] = {}
    originals = iter_frames(info, info.fps)
    changed_frames = 0
    for index, frame, box in iter_synced_frames(speech, info, engine, settings, stats):
        original = next(originals)
        if index < 10:
            assert box is None and np.array_equal(frame, original)
            continue
        assert box is not None
        x1, y1, x2, y2 = box
        outside = np.ones(frame.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(frame[outside], original[outside])
        changed_frames += not np.array_equal(frame, original)
    assert stats["frames_without_face"] == 10
    assert changed_frames >= 0.9 * (stats["frames"] - 10)
    originals.close()


def test_speech_longer_than_the_video_continues_by_pingpong(media: Path, settings, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "short.mp4", "-i", str(media / "liveportrait/d19.mp4"), "-t", "1", "-an", "-c:v", "libx264", "-crf", "10")
    info = probe(clip)
    speech = prepare_audio(media / SPEECH)  # 2.74 s against 1 s of video
    originals = list(iter_frames(info, info.fps))
    n = len(originals)
    engine = create_engine(settings.engine)
    outputs = {index: (frame, box) for index, frame, box in iter_synced_frames(speech, info, engine, settings)}
    assert len(outputs) == round(speech.duration * float(info.fps))
    for index in (n, n + 5, 2 * n - 2, 2 * n + 3):
        frame, (x1, y1, x2, y2) = outputs[index]
        source = originals[source_index(index, n, "pingpong")]
        assert np.array_equal(frame[:y1], source[:y1])  # everything above the face box is that source frame's


def test_group_photo_syncs_the_largest_face_or_the_one_asked_for(media: Path, speech, settings) -> None:
    info = probe(media / "insightface/t1.jpg")
    engine = create_engine(settings.engine)
    largest = next(iter_synced_frames(speech, info, engine, settings))[2]
    settings.detection.face = 0
    leftmost = next(iter_synced_frames(speech, info, engine, settings))[2]
    assert leftmost[0] < 200 < largest[0]  # the leftmost face is at x~60, the largest at x~465
    settings.detection.face = 9
    with pytest.raises(NoFaceError, match="t1.jpg.*face number 9"):
        next(iter_synced_frames(speech, info, engine, settings))


def test_a_video_without_any_face_fails_naming_the_file(speech, settings, tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "test-pattern.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=1", "-c:v", "libx264")
    with pytest.raises(NoFaceError, match="test-pattern.mp4: no face found"):
        generate(speech, clip, settings=settings)
    assert list(tmp_path.glob("*__*")) == [] and not list(tmp_path.glob(".*partial*"))


def test_bad_inputs_are_named(media: Path, speech, settings, tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(InputError, match="notes.mp4"):
        generate(speech, text, settings=settings)
    with pytest.raises(InputError, match="english.wav: has no picture"):
        generate(speech, media / SPEECH, settings=settings)
    with pytest.raises(InputError, match="d0.mp4: has no audio stream"):
        prepare_audio(media / "liveportrait/d0.mp4")


def test_a_video_as_the_speech_uses_its_soundtrack(media: Path, settings) -> None:
    speech = prepare_audio(media / "videoretalking/2.mp4")
    result = generate(speech, media / "sadtalker/people_0.png", settings=settings)
    assert abs(probe(result.output).duration - speech.duration) <= 1 / 25


def test_progress_reports_stages_and_file(media: Path, speech, settings) -> None:
    seen: list[tuple[str, float, str]] = []
    generate(speech, media / "sadtalker/people_0.png", settings=settings, progress=lambda *event: seen.append(event))
    stages = [stage for stage, _, _ in seen]
    assert stages[0] == "probe" and stages[-1] == "done" and "lip-sync" in stages
    fractions = [f for stage, f, _ in seen if stage == "lip-sync"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert all(file.endswith("people_0.png") for _, _, file in seen)


def test_cancelling_midway_leaves_no_file_thread_or_ffmpeg(media: Path, speech, settings, tmp_path: Path) -> None:
    import threading

    from heygem.errors import CancelledError

    def cancel_halfway(stage: str, fraction: float, file: str) -> None:
        if stage == "lip-sync" and fraction > 0.3:
            raise CancelledError(f"{Path(file).name}: cancelled")

    out = tmp_path / "cancelled.mp4"
    with pytest.raises(CancelledError):
        generate(speech, media / "liveportrait/d19.mp4", out, settings, cancel_halfway)
    assert not out.exists() and not list(tmp_path.glob("*.partial.mp4"))
    assert not [t.name for t in threading.enumerate() if t.name in ("heygem-decode", "heygem-encode")]
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
    assert not [pid for pid in children if "ffmpeg" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]


def test_the_speech_and_a_presenter_report_while_they_are_read_so_a_cancel_stops_them(media: Path, settings) -> None:
    from heygem.errors import CancelledError
    from heygem.pipeline import prepare_presenter

    def cancel_inside(first_stage: str):
        def progress(stage: str, fraction: float, file: str) -> None:
            if stage != first_stage:  # past the stage's own start: the work is under way
                raise CancelledError(f"{Path(file).name}: cancelled in {stage}")
        return progress

    seen: list[tuple[str, float]] = []
    prepare_audio(media / SPEECH, progress=lambda stage, fraction, file: seen.append((stage, fraction)))
    assert seen[0] == ("audio", 0.0) and seen[-1] == ("audio", 1.0) and len(seen) >= 3  # decoding, features
    with pytest.raises(CancelledError, match="cancelled in faces"):  # before the face search (orientation) begins
        prepare_presenter(media / "liveportrait/d0.mp4", settings, cancel_inside("starting"))


def test_a_presenter_preparation_reports_through_its_mesh_pass_and_a_delete_stops_it(media: Path, settings,
                                                                                      tmp_path: Path) -> None:
    # After the faces, the preparation keeps the built-in engine's face mesh points of every crop: the bar goes
    # on moving through that pass (not stuck at its end), and a delete (a cancel from the progress) stops it
    # there, keeping nothing half made.
    from heygem.errors import CancelledError
    from heygem.pipeline import prepare_presenter

    clip = make_clip(tmp_path / "d0.mp4", "-i", str(media / "liveportrait/d0.mp4"), "-t", "2", "-vf", "scale=-2:240",
                     "-an", "-c:v", "libx264", "-preset", "ultrafast")
    mesh_dir = settings.detection.cache_dir.parent / "mesh"
    seen: list[tuple[str, float]] = []

    def delete_in_mesh_pass(stage: str, fraction: float, file: str) -> None:
        seen.append((stage, fraction))
        if stage == "faces" and 0.9 < fraction < 1.0:
            raise CancelledError(f"{Path(file).name}: deleted")

    with pytest.raises(CancelledError, match="deleted"):
        prepare_presenter(clip, settings, delete_in_mesh_pass)
    assert list(settings.detection.cache_dir.iterdir())  # the faces were done and kept: it stopped in the mesh pass
    assert not list(mesh_dir.glob("*.npz"))
    seen.clear()
    prepare_presenter(clip, settings, lambda stage, fraction, file: seen.append((stage, fraction)))
    assert len(list(mesh_dir.glob("*.npz"))) == 1
    faces = [fraction for stage, fraction in seen if stage == "faces"]
    assert faces == sorted(faces) and len([f for f in faces if 0.8 < f < 1.0]) >= 10 and seen[-1] == ("ready", 1.0)


def test_the_timeline_adds_up_to_the_stage_seconds_and_drops_a_study_read_back(media: Path, speech, settings,
                                                                               tmp_path: Path) -> None:
    """Each stage's half-second steps add up to its seconds; a study read from the cache is neither (no work
    was done), in the timings a user sees nor in the timeline."""
    import dataclasses

    clip = make_clip(tmp_path / "d0.mp4", "-i", str(media / "liveportrait/d0.mp4"), "-t", "2", "-vf", "scale=-2:240",
                     "-an", "-c:v", "libx264", "-preset", "ultrafast")
    builtin = dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, engine="builtin"))
    first = generate(speech, clip, tmp_path / "first.mp4", builtin)
    again = generate(speech, clip, tmp_path / "again.mp4", builtin)
    assert (first.study, again.study) == ("made", "cached")
    assert "study" in first.timeline and "study" not in again.timeline and "study" not in again.timings
    for result in (first, again):
        assert set(result.timeline) == set(result.timings) - {"total"}
        for stage, steps in result.timeline.items():
            assert sum(steps) == pytest.approx(result.timings[stage], abs=0.001 + 0.0005 * len(steps)), stage


def test_overlapped_stages_give_the_same_frames_as_one_thread(media: Path, speech, settings) -> None:
    from dataclasses import replace

    engine = create_engine(settings.engine)
    info = probe(media / "liveportrait/d0.mp4")

    def frames(overlap: bool) -> list[np.ndarray]:
        return [frame.copy() for _, frame, _ in iter_synced_frames(speech, info, engine, replace(settings, overlap=overlap))]

    threaded, serial = frames(True), frames(False)
    assert len(threaded) == len(serial) > 0
    assert all(np.array_equal(a, b) for a, b in zip(threaded, serial))


def test_only_frames_a_replay_can_need_are_kept_on_disk(media: Path) -> None:
    from dataclasses import replace

    from heygem.pipeline import _SourceFrames

    ten_minutes = replace(probe(media / "liveportrait/d0.mp4"), frame_count=15000)
    window = _SourceFrames.replay_window
    # Speech as long as the video (the common case): a margin of 200 frames, not all 15000 (93 GB at 1080p).
    first, stop = window(ten_minutes, 15000, "pingpong")
    assert first == 15000 - 200 - 1 and stop > 15000
    assert window(ten_minutes, 15000, "loop") == (0, 200)
    assert window(ten_minutes, 12000, "pingpong") == (0, 0)  # the video is clearly longer: nothing kept
    assert window(ten_minutes, 15100, "loop") == (0, 300)
    assert window(ten_minutes, 40000, "pingpong")[0] == 0  # replays the whole video: every frame
    assert window(replace(ten_minutes, kind="image"), 40000, "pingpong") == (0, 0)


# ------------------------------------------------------------------------------ cut short, sideways, too large

def _first_bytes(path: Path, share: float, out: Path) -> Path:
    """The first ``share`` of ``path``'s bytes, as an interrupted upload or copy leaves a file."""
    data = path.read_bytes()
    out.write_bytes(data[:int(len(data) * share)])
    return out


@pytest.fixture
def faststart_clip(media: Path, tmp_path: Path) -> Path:
    """2 s of d0 at 25 fps, 360p, with its index up front (+faststart) as web uploads are: cut short, the
    header still promises all 50 frames."""
    return make_clip(tmp_path / "whole.mp4", "-i", str(media / "liveportrait/d0.mp4"), "-t", "2", "-vf", "scale=-2:360",
                     "-an", "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart")


def test_a_video_cut_in_half_fails_naming_the_file(speech, settings, faststart_clip: Path, tmp_path: Path) -> None:
    half = _first_bytes(faststart_clip, 0.5, tmp_path / "half.mp4")
    assert (probe(half).kind, probe(half).frame_count) == ("video", 50)  # a video, never taken for a photo
    with pytest.raises(InputError, match=r"half\.mp4: decoded only \d+ of the 50 frames its header promises; "
                                         r"the file is probably cut short \(an interrupted upload or copy\)"):
        generate(speech, half, settings=settings)
    assert not list(tmp_path.glob("half__*")) and not list(tmp_path.glob("*partial*"))


def test_a_video_missing_its_last_frames_goes_through_with_a_note(speech, settings, faststart_clip: Path,
                                                                   tmp_path: Path) -> None:
    most = _first_bytes(faststart_clip, 0.9, tmp_path / "most.mp4")  # decodes to about 42 of its 50 frames
    result = generate(speech, most, settings=settings)
    assert [note for note in result.notes if note.startswith("CUT SHORT: most.mp4 decoded only")]
    assert abs(probe(result.output).duration - speech.duration) <= 1 / 25


def test_a_shortfall_is_judged_on_what_the_speech_needed(media: Path) -> None:
    from dataclasses import replace

    from heygem.pipeline import cut_short_note

    vfr = probe(media / "videoretalking/1.mp4")  # variable frame rate: the header's count is an estimate
    decoded = sum(1 for _ in iter_frames(vfr, vfr.fps))
    assert cut_short_note(vfr, decoded, 10_000) is None
    fifty = replace(probe(media / "liveportrait/d0.mp4"), frame_count=50)
    with pytest.raises(InputError, match="d0.mp4: decoded only 20 of the 50 frames"):
        cut_short_note(fifty, 20, 69)
    assert cut_short_note(fifty, 20, 22) is None  # the speech needed only 22 frames: 2 short, within the estimate
    assert cut_short_note(fifty, 48, 69) is None
    assert cut_short_note(fifty, 45, 69).startswith("CUT SHORT: d0.mp4 decoded only 45 of the 50 frames")


def test_a_sideways_face_is_synced_upright_and_turned_back(media: Path, speech, settings, tmp_path: Path) -> None:
    # A portrait talking head stored turned 90 degrees clockwise with no rotation flag: 360x202, chin to the left.
    clip = make_clip(tmp_path / "sideways.mp4", "-i", str(media / "liveportrait/d13.mp4"), "-t", "2",
                     "-vf", "scale=-2:360,transpose=1", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "10")
    info = probe(clip)
    assert (info.width, info.height, info.rotation) == (360, 202, 0)
    result = generate(speech, clip, settings=settings)
    out = probe(result.output)
    assert (out.width, out.height) == (360, 202)
    assert [note for note in result.notes if "face was found with the picture turned 90° counterclockwise "
            "(sideways.mp4 carries no rotation flag that says so)" in note]
    assert result.frames_without_face == 0

    # The same video again: the face cache knows its faces and its turn, so nothing is detected.
    originals = [frame.copy() for frame in iter_frames(info, info.fps)]
    stats: dict = {}
    notes: list[str] = []
    engine = create_engine(settings.engine)
    for index, frame, (x1, y1, x2, y2) in iter_synced_frames(speech, info, engine, settings, stats, notes=notes):
        if index >= len(originals):
            break
        original = originals[index]
        assert frame.shape == original.shape
        outside = np.ones(frame.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(frame[outside], original[outside])
        # Turned back, the mouth and chin sit in the left part of the face box: the right part (eyes and
        # forehead) is the source's own, the left part is synced.
        split = x1 + (x2 - x1) * 6 // 10
        assert np.array_equal(frame[y1:y2, split:x2], original[y1:y2, split:x2])
        assert not np.array_equal(frame[y1:y2, x1:split], original[y1:y2, x1:split])
    assert stats["face_cache"] == "hit" and stats["faces_detected"] == 0
    assert [note for note in notes if "turned 90° counterclockwise" in note]


def test_a_mostly_faceless_video_says_prominently_it_was_left_unchanged(media: Path, speech, settings,
                                                                         tmp_path: Path, caplog) -> None:
    # 2 s of d19 (30 fps) whose first 40 frames are black: the speech's 82 frames have no face in 43.
    clip = make_clip(tmp_path / "dark.mp4", "-i", str(media / "liveportrait/d19.mp4"), "-t", "2",
                     "-vf", "scale=-2:360,drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='lt(n,40)'",
                     "-an", "-c:v", "libx264", "-preset", "ultrafast")
    result = generate(speech, clip, settings=settings)
    loud = [note for note in result.notes if note.startswith("LEFT UNCHANGED: no face in ")]
    assert loud and f"of {result.frames} frames" in loud[0]
    assert "LEFT UNCHANGED" in caplog.text


def test_a_photo_above_the_picture_side_limit_is_scaled_down(media: Path, speech, settings, tmp_path: Path) -> None:
    import cv2

    from heygem.settings import Limits

    face = cv2.resize(cv2.imread(str(media / "skimage/astronaut.png")), (3000, 3000), interpolation=cv2.INTER_CUBIC)
    photo = tmp_path / "huge.jpg"
    cv2.imwrite(str(photo), cv2.copyMakeBorder(face, 0, 0, 1000, 1000, cv2.BORDER_CONSTANT, value=(90, 90, 90)))
    settings.limits = Limits(picture_side=1024)
    result = generate(speech, photo, settings=settings)
    out = probe(result.output)
    assert (out.width, out.height) == (1024, 614)
    assert result.frames_without_face == 0
    assert ["huge.jpg is 5000x3000; scaled down to 1024x614 (the picture-side limit; raise it with "
            "--max-picture-side or HEYGEM_MAX_PICTURE_SIDE)"] == [n for n in result.notes if "scaled down" in n]


def test_a_slow_motion_video_is_read_and_made_at_60_fps_saying_so(media: Path, speech, settings, tmp_path: Path) -> None:
    """A phone's slow motion, or a forged 1000 fps file, cost that many times the work of a 25 fps video: a 3.4 s
    speech over a 500 fps one took 1688 frames and 12.4 s where 25 fps took 84 frames and 1.7 s."""
    from fractions import Fraction

    clip = make_clip(tmp_path / "slowmo.mp4", "-i", str(media / "liveportrait/d13.mp4"), "-t", "1.5",
                     "-vf", "scale=-2:160,fps=240", "-an", "-c:v", "libx264", "-preset", "ultrafast")
    assert probe(clip).fps == 240
    result = generate(speech, clip, settings=settings)
    out = probe(result.output)
    assert out.fps == Fraction(60) and result.frames == round(out.duration * 60)
    assert abs(out.duration - speech.duration) < 0.05  # as long as the speech, as always
    assert "slowmo.mp4 runs at 240 fps; read and made at 60 fps, the most HeyGem makes" in result.notes
    assert [code.params for code in result.notes if getattr(code, "code", None) == "note_rate_lowered"] == [
        {"file": "slowmo.mp4", "fps": 240, "new_fps": 60}]


def test_a_quiet_recording_moves_the_mouth_as_at_an_ordinary_level_and_a_silent_one_says_so(
        media: Path, settings, tmp_path: Path) -> None:
    """A speech recorded 30 dB down (a laptop's microphone at arm's length) plays perfectly audibly, but its sounds
    fell under the features' absolute silence gate and the mouth moved on a few frames only."""
    from dataclasses import replace

    from heygem.eval import frame_openings
    from heygem.settings import EngineOptions

    face = make_clip(tmp_path / "face.mp4", "-i", str(media / "videoretalking/2.mp4"), "-t", "3", "-vf",
                     "scale=320:320", "-an", "-c:v", "libx264", "-preset", "ultrafast")
    ordinary = make_clip(tmp_path / "ordinary.wav", "-i", str(media / "sadtalker/bus_chinese.wav"), "-t", "2.5")
    quiet = make_clip(tmp_path / "quiet.wav", "-i", str(ordinary), "-af", "volume=0.03")
    builtin = replace(settings, engine=EngineOptions(engine="builtin"))
    openings = {}
    for speech in (ordinary, quiet):
        result = generate(speech, face, settings=builtin)
        openings[speech.name] = frame_openings(list(iter_frames(probe(result.output), Fraction(25))))
    assert np.corrcoef(openings["ordinary.wav"], openings["quiet.wav"])[0, 1] > 0.85
    assert openings["quiet.wav"].std() > 0.8 * openings["ordinary.wav"].std()
    assert [code.params for code in result.notes if getattr(code, "code", None) == "note_speech_raised"] == [
        {"file": "quiet.wav", "db": "23.5"}]  # its loud parts from -44 dBFS to -20
    assert abs(probe(result.output).duration - 2.5) < 0.05
    # The result keeps the speech as recorded: as quiet as it came.
    from heygem.media.audio import load_audio
    kept = load_audio(result.output, normal_level=False)
    assert np.abs(kept).max() < 0.05
    # A speech with nothing in it (a file's silent first track, the wrong file): the closed mouth is explained.
    silent = make_clip(tmp_path / "track1.m4a", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "2")
    result = generate(silent, face, settings=builtin)
    assert [code.params for code in result.notes if getattr(code, "code", None) == "note_speech_silent"] == [
        {"file": "track1.m4a"}]


@pytest.mark.parametrize("transfer,hdr", [("arib-std-b67", "HLG"), ("smpte2084", "PQ")])
def test_an_hdr_phone_video_keeps_its_colours_in_standard_range_saying_so(media: Path, speech, settings,
                                                                         tmp_path: Path, transfer: str,
                                                                         hdr: str) -> None:
    """Phones record HDR (an iPhone's HLG by default): read as ordinary video its frames, and so the result, came
    out grey and flat, the skin 10-20 levels off what any player shows, and nothing said so."""
    source = make_clip(tmp_path / "sdr.mp4", "-i", str(media / "videoretalking/2.mp4"), "-t", "4",
                       "-vf", "scale=256:256", "-an", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0")
    clip = make_clip(tmp_path / "phone.mp4", "-i", str(source), "-vf",
                     f"zscale=tin=bt709:min=bt709:pin=bt709:t={transfer}:m=bt2020nc:p=bt2020:npl=203,"
                     "format=yuv420p10le", "-c:v", "libx265", "-preset", "ultrafast", "-x265-params",
                     f"log-level=error:lossless=1:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc")
    assert probe(clip).hdr == hdr
    from dataclasses import replace

    from heygem.settings import EngineOptions

    result = generate(speech, clip, settings=replace(settings, engine=EngineOptions(engine="builtin")))
    made = list(iter_frames(probe(result.output), Fraction(25)))[:40]
    filmed = list(iter_frames(probe(source), Fraction(25)))[:40]
    # Above the mouth, the result shows the picture as filmed (within the encoders' and the conversion's error).
    error = np.mean([np.abs(a[:110].astype(float) - b[:110]).mean() for a, b in zip(made, filmed)])
    assert error < 4, error
    assert [code.params for code in result.notes if getattr(code, "code", None) == "note_hdr_converted"] == [
        {"file": "phone.mp4", "hdr": hdr}]


def test_an_anamorphic_video_plays_as_wide_as_it_came(media: Path, speech, settings, tmp_path: Path) -> None:
    """Pixels twice as wide as high (PAL DV, a camera's wide mode): the result lost that, and played squeezed to
    half its width."""
    from dataclasses import replace

    from heygem.settings import EngineOptions

    clip = make_clip(tmp_path / "wide.mp4", "-i", str(media / "videoretalking/2.mp4"), "-t", "3",
                     "-vf", "scale=160:320,setsar=2", "-an", "-c:v", "libx264", "-preset", "ultrafast")
    assert probe(clip).pixel_aspect == 2
    result = generate(speech, clip, settings=replace(settings, engine=EngineOptions(engine="builtin")))
    out = probe(result.output)
    assert (out.width, out.height, out.pixel_aspect) == (160, 320, 2)  # shown 320 wide, as the source


def test_a_video_too_slow_for_a_mouth_is_made_at_25_fps_saying_so(media: Path, speech, settings,
                                                                  tmp_path: Path) -> None:
    """A time-lapse or slide show at 2 fps: made at its own rate, the mouth changed twice a second (0.5 fps: one
    frame for the whole speech, a still picture with sound)."""
    from dataclasses import replace

    from heygem.settings import EngineOptions

    clip = make_clip(tmp_path / "slides.mp4", "-i", str(media / "videoretalking/2.mp4"), "-t", "3",
                     "-vf", "scale=256:256,fps=2", "-an", "-c:v", "libx264", "-preset", "ultrafast")
    assert probe(clip).fps == 2
    result = generate(speech, clip, settings=replace(settings, engine=EngineOptions(engine="builtin")))
    out = probe(result.output)
    assert out.fps == Fraction(25) and abs(out.duration - speech.duration) < 0.05
    frames = list(iter_frames(out, Fraction(25)))
    mouths = [frame[130:175, 90:150].astype(float) for frame in frames]
    changes = sum(np.abs(a - b).mean() > 0.3 for a, b in zip(mouths, mouths[1:]))
    assert changes > len(frames) / 2  # the mouth moves from frame to frame, not twice a second
    assert [code.params for code in result.notes if getattr(code, "code", None) == "note_rate_raised"] == [
        {"file": "slides.mp4", "fps": 2, "new_fps": 25}]


def test_a_video_shorter_than_its_header_replays_its_own_frames_not_a_still(media: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from heygem.pipeline import _SourceFrames

    clip = make_clip(tmp_path / "small.mp4", "-i", str(media / "liveportrait/d13.mp4"), "-vf", "scale=-2:160",
                     "-an", "-c:v", "libx264", "-preset", "ultrafast")
    info = probe(clip)
    originals = [frame.copy() for frame in iter_frames(info, info.fps)]
    n = len(originals)  # 352
    # Its header promising 420 frames, and speech for 440: the frames kept for the replay (by the promised
    # length) were never decoded.
    notes: list[str] = []
    source = _SourceFrames(replace(info, frame_count=420), info.fps, 440, "pingpong", tmp_path, notes)
    assert sum(1 for _ in source.forward()) == n
    replayed = [(frame.index, frame.source, frame.image.copy()) for frame in source.replay()]
    source.close()
    assert notes[0].startswith(f"CUT SHORT: small.mp4 decoded only {n} of the 420 frames")
    assert len(replayed) == 440 - n
    for index, number, image in replayed:
        assert number == source_index(index, n, "pingpong") and np.array_equal(image, originals[number])


def test_the_tracks_a_player_plays_are_the_ones_synced(media: Path, settings, tmp_path: Path) -> None:
    """A file with several tracks (a film's languages, a recorder's microphones, a camera's second picture):
    HeyGem took each file's first, a player the one marked default. Here the first speech track is silence and
    the first picture another person: the result is the default picture (d13, not d0) speaking the default
    track, and every reader of the files took the same ones (the face check, the study, the decoder, the mux)."""
    from dataclasses import replace

    from heygem.media.audio import read_speech
    from heygem.settings import EngineOptions

    speech = make_clip(tmp_path / "tracks.m4a", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-i",
                       str(media / "speechrecognition/english.wav"), "-map", "0:a", "-map", "1:a", "-t", "2",
                       "-c:a", "aac", "-disposition:a:0", "0", "-disposition:a:1", "default")
    presenter = make_clip(tmp_path / "cameras.mp4", "-i", str(media / "liveportrait/d0.mp4"), "-i",
                          str(media / "liveportrait/d13.mp4"), "-map", "0:v", "-map", "1:v", "-t", "2",
                          "-vf", "scale=-2:240", "-c:v", "libx264", "-preset", "ultrafast",
                          "-disposition:v:0", "0", "-disposition:v:1", "default")
    assert (probe(speech).audio_stream, probe(presenter).video_stream) == (1, 1)
    # Its faces and studies are kept apart from those of its first picture; a file of one track of each kind
    # keeps the names its caches had.
    assert probe(presenter).tracks and not probe(media / "liveportrait/d13.mp4").tracks
    result = generate(speech, presenter, settings=replace(settings, engine=EngineOptions(engine="builtin")))
    out = probe(result.output)
    assert (out.width, out.height) == (136, 240)  # d13's picture (d0's is 240 x 240)
    assert not read_speech(result.output).silent  # the speech, not the silent first track
    assert abs(out.duration - 2.0) < 0.1 and result.frames_without_face == 0
