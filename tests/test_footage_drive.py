"""The built-in engine's footage drive (``mouth_drive="footage"``, and the default ``auto`` wherever the presenter's
video carries speech): each output frame shows a mouth of the presenter's own footage, chosen by the speech's
sounds; where that cannot be, the key mouths, and it says why."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_clip, submitted_over_api
from heygem.eval import mouth_openings
from heygem.footage import footage_may_speak, study_footage
from heygem.media.probe import probe
from heygem.pipeline import generate, prepare_presenter
from heygem.settings import DetectionOptions
from heygem.ui.studio import engine_words

PRESENTER = "videoretalking/1.mp4"  # 6 s of a real talking head: enough footage to choose from


@pytest.fixture
def footage_settings(settings):
    settings.engine.engine = "builtin"
    settings.engine.mouth_drive = "footage"
    return settings


def test_the_mouths_come_from_the_footage_and_the_same_inputs_give_the_same_frames(
        media: Path, footage_settings, short_clips, tmp_path: Path) -> None:
    first = generate(short_clips["speech"], media / PRESENTER, tmp_path / "first.mp4", footage_settings)
    about = first.engine_info
    assert about.mode == "footage" and about.units >= 125 and about.fallbacks == ()
    assert "own mouths, chosen from" in first.engine
    assert "主播本人的真实口型" in engine_words("zh", first.engine, about.to_dict())
    # Again with every cache filled (faces, the key study, the footage study): the very same frames.
    again = generate(short_clips["speech"], media / PRESENTER, tmp_path / "again.mp4", footage_settings)
    assert first.output.read_bytes() != b"" and _frames_equal(first.output, again.output)
    opening, _ = mouth_openings(first.output)
    assert np.nanmax(opening) - np.nanmin(opening) > 0.04  # it speaks


def test_silence_shows_the_persons_rest_mouth(media: Path, footage_settings, tmp_path: Path, monkeypatch) -> None:
    import heygem.engines.builtin as builtin

    chosen = []
    choose = builtin.choose_frames
    monkeypatch.setattr(builtin, "choose_frames", lambda *args, **kwargs: chosen.append(choose(*args, **kwargs)) or chosen[-1])
    silent = make_clip(tmp_path / "silence.wav", "-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono", "-t", "3")
    result = generate(silent, media / PRESENTER, tmp_path / "silent.mp4", footage_settings)
    assert result.engine_info.mode == "footage"
    study = study_footage(probe(media / PRESENTER), DetectionOptions())
    found = study.openings[study.found]
    # Only the footage's rest mouths are chosen (closed, in its own pauses), never a mouth of its own speech.
    assert study.openings[chosen[0]].max() <= np.percentile(found, 25)
    opening, _ = mouth_openings(result.output)
    source, _ = mouth_openings(media / PRESENTER)
    # And the output's mouth stays still while the footage speaks in the same frames. (The mesh reads these
    # closed mouths at 0.05 to 0.08 through the engine's 256 px crop, the key morph's at 0.02 to 0.05.)
    assert np.ptp(opening) < 0.5 * (np.nanmax(source[: len(opening)]) - np.nanmin(source[: len(opening)]))


def test_a_photo_or_short_footage_gets_the_key_mouths_and_says_why(media: Path, footage_settings, short_clips,
                                                                   tmp_path: Path) -> None:
    photo = generate(short_clips["speech"], media / "insightface" / "Tom_Hanks_54745.png", tmp_path / "photo.mp4",
                     footage_settings)
    assert photo.engine_info.mode == "photo" and "footage_photo" in photo.engine_info.fallbacks
    assert "照片没有可选的口型" in engine_words("zh", photo.engine, photo.engine_info.to_dict())
    short = generate(short_clips["speech"], short_clips["d0"], tmp_path / "short.mp4", footage_settings)
    assert short.engine_info.mode == "morph" and "footage_short" in short.engine_info.fallbacks
    words = engine_words("en", short.engine, short.engine_info.to_dict())
    assert "key mouths rather than the presenter's own footage: under 5 s of it shows the face" in words


def test_by_default_a_presenter_video_with_its_own_speech_gets_its_own_mouths(media: Path, settings, short_clips,
                                                                            tmp_path: Path) -> None:
    """The default drive (``auto``) takes the footage drive for a video of 5 s or more whose soundtrack speaks,
    and the key mouths, with nothing to say about it, for anything else: nobody asked for the footage there."""
    settings.engine.engine = "builtin"
    assert settings.engine.mouth_drive == "auto"
    assert footage_may_speak(probe(media / PRESENTER))
    assert not footage_may_speak(probe(media / "liveportrait" / "d13.mp4"))  # 12 s with no soundtrack
    assert not footage_may_speak(probe(media / "liveportrait" / "d19.mp4"))  # 8 s, its soundtrack silent
    assert not footage_may_speak(probe(media / "insightface" / "Tom_Hanks_54745.png"))
    assert not footage_may_speak(probe(short_clips["d0"]))  # 2 s
    own = generate(short_clips["speech"], media / PRESENTER, tmp_path / "own.mp4", settings)
    assert own.engine_info.mode == "footage" and own.engine_info.fallbacks == ()
    assert "own mouths, chosen from" in own.engine
    short = generate(short_clips["speech"], short_clips["d0"], tmp_path / "short.mp4", settings)
    assert short.engine_info.mode == "morph"
    assert not [code for code in short.engine_info.fallbacks if code.startswith("footage")]


def test_a_presenter_filmed_with_its_sound_out_of_step_still_gets_its_own_mouths_and_says_so(
        out_of_step: dict[str, Path], settings, short_clips, tmp_path: Path) -> None:
    """Footage whose sound was recorded ahead of its picture taught the choice its fault (the mouths came late to
    every new speech); its mouths are now chosen by the sounds they were making, and the note says so."""
    settings.engine.engine = "builtin"
    prepared = prepare_presenter(out_of_step["sound early"], settings)  # as the library prepares a presenter
    (note,) = [note for note in prepared.notes if getattr(note, "code", None) == "note_sound_early"]
    assert note.params == {"file": "sound_early.mp4", "ms": 200}
    assert note.startswith("sound_early.mp4: its sound comes 200 ms before the mouth that makes it")
    result = generate(short_clips["speech"], out_of_step["sound early"], tmp_path / "out.mp4", settings)
    assert result.engine_info.mode == "footage" and result.engine_info.fallbacks == ("footage_resynced",)
    words = engine_words("en", result.engine, result.engine_info.to_dict())
    assert "its sound out of step with its picture: its mouths were chosen by the sounds they were making" in words
    assert "声音与画面不同步" in engine_words("zh", result.engine, result.engine_info.to_dict())


def test_a_presenter_video_whose_soundtrack_is_another_voice_gets_the_key_mouths_and_says_why(
        media: Path, settings, short_clips, tmp_path: Path) -> None:
    """A voice-over (another person's speech laid over the presenter's frames) carries speech, so ``auto`` takes
    the footage drive, but it teaches nothing of this mouth: its mouths would be chosen by noise. The key mouths,
    and the note says why, in both languages."""
    settings.engine.engine = "builtin"
    voice_over = make_clip(tmp_path / "voice_over.mp4", "-i", str(media / PRESENTER), "-ss", "3",
                           "-i", str(media / "long" / "french.mp4"), "-map", "0:v:0", "-map", "1:a:0", "-t", "5",
                           "-c:v", "copy", "-c:a", "aac")
    assert footage_may_speak(probe(voice_over))
    result = generate(short_clips["speech"], voice_over, tmp_path / "voice_over_out.mp4", settings)
    assert result.engine_info.mode == "morph" and "footage_unmatched" in result.engine_info.fallbacks
    words = engine_words("en", result.engine, result.engine_info.to_dict())
    assert "key mouths rather than the presenter's own footage: its sound does not follow the mouth" in words
    assert "画面的声音与嘴型不对应" in engine_words("zh", result.engine, result.engine_info.to_dict())
    # The same frames with their own speech, as filmed: the footage drive.
    own = make_clip(tmp_path / "own.mp4", "-i", str(media / PRESENTER), "-t", "5", "-c:v", "copy", "-c:a", "aac")
    assert generate(short_clips["speech"], own, tmp_path / "own_out.mp4", settings).engine_info.mode == "footage"


def test_a_presenter_prepared_with_speech_of_its_own_starts_with_its_footage_studied(media: Path, settings, short_clips,
                                                                                   tmp_path: Path) -> None:
    """Added to the presenters (prepared), a video its jobs take the footage drive for has its footage studied
    then, like its key mouths: its first job studies nothing."""
    settings.engine.engine = "builtin"
    prepared = prepare_presenter(media / PRESENTER, settings)
    assert (prepared.study, prepared.footage) == ("made", "made")
    result = generate(short_clips["speech"], media / PRESENTER, tmp_path / "first.mp4", settings)
    assert result.engine_info.mode == "footage" and result.study == "cached"
    assert "footage" not in result.timings and "study" not in result.timings


def test_the_key_mouths_asked_for_in_the_api_or_the_studio_are_what_a_speaking_presenter_gets(
        media: Path, settings, short_clips, tmp_path: Path) -> None:
    """The HTTP API's ``mouth`` field and the studio's *Mouth shapes* (both through ``with_choices``) choose the
    drive; a bad one is refused, naming the field and what it may be."""
    from heygem.settings import with_choices

    with pytest.raises(ValueError, match="mouth must be one of auto, phones, footage, loudness, not 'lips'"):
        with_choices(settings, mouth_drive="lips")
    files = [("audio", ("speech.wav", short_clips["speech"].read_bytes(), "audio/wav")),
             ("video", ("1.mp4", (media / PRESENTER).read_bytes(), "video/mp4"))]
    accepted, refused, asked = submitted_over_api(tmp_path / "outputs", files, {"engine": "builtin", "mouth": "phones"},
                                                  {"mouth": "lips"})
    assert accepted.status_code == 201, accepted.text
    assert refused.status_code == 400 and "mouth must be one of" in refused.json()["error"]
    assert asked.engine.mouth_drive == "phones"
    settings.engine.engine = "builtin"
    keys = generate(short_clips["speech"], media / PRESENTER, tmp_path / "keys.mp4",
                    with_choices(settings, mouth_drive=asked.engine.mouth_drive))
    assert keys.engine_info.mode == "morph"  # the key mouths, though this video speaks (the default's footage)
    assert not [code for code in keys.engine_info.fallbacks if code.startswith("footage")]  # asked for: no note


def _frames_equal(a: Path, b: Path) -> bool:
    from heygem.media.video import iter_frames

    first, second = probe(a), probe(b)
    return all(np.array_equal(x, y) for x, y in zip(iter_frames(first, first.fps), iter_frames(second, second.fps),
                                                    strict=True))
