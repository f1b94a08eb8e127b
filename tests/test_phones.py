"""heygem.speech.phones: phones recognised in real speech, and the mouth shapes they give, frame by frame."""
from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import heygem.speech.phones as phones_module
from heygem.features import frame_count
from heygem.media.audio import load_audio
from heygem.errors import CancelledError
from heygem.speech.phones import VISEMES, BackgroundPhones, MouthShapes, Phone, frame_visemes, mouth_shapes, recognise_phones

REST, CLOSED, LIP_TEETH, OPEN, MID, SPREAD, ROUNDED = (VISEMES.index(name) for name in VISEMES)
BILABIALS = {"M", "B", "P"}
ARPABET = {"AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
           "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y",
           "Z", "ZH", "SIL"}

# RD_Radio31_000.wav: "holidays are a time of celebrating with loved ones, enjoying the festivities, and Melinda
# was back to school. But for many this year has been ..." The lip closures of its m/b/p words, in seconds
# (where the words' m/b/p begin, read off a forced alignment of that transcript).
RADIO_BILABIALS = {"time": 1.28, "celebrating": 1.67, "Melinda": 4.50, "back": 5.17, "but": 6.29, "many": 6.53,
                   "been": 7.70}


@pytest.fixture(scope="module")
def radio(media: Path) -> tuple[np.ndarray, list[Phone]]:
    samples = load_audio(media / "sadtalker/RD_Radio31_000.wav", 16000)
    return samples, recognise_phones(samples)


def frames_between(a: float, b: float, fps: float) -> range:
    """Frames whose time span [i/fps, (i+1)/fps) overlaps [a, b)."""
    return range(max(0, int(np.floor(a * fps))), int(np.ceil(b * fps)))


def voice(spans: list[tuple[float, float, float]], duration: float) -> np.ndarray:
    """A voice-like buzz (150 Hz and its harmonics up to 3 kHz) with amplitude ``level`` over each (start, end,
    level) span, digital silence elsewhere."""
    t = np.arange(int(duration * 16000)) / 16000
    buzz = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 21))
    gain = np.zeros_like(t)
    for start, end, level in spans:
        gain[(t >= start) & (t < end)] = level
    return (0.3 * gain * buzz).astype(np.float32)


def seq(*items: tuple[str, float, float]) -> list[Phone]:
    return [Phone(label, start, end) for label, start, end in items]


# ---- recognition ------------------------------------------------------------------------------------------------

def test_recognised_phones_are_arpabet_in_order_and_cover_the_speech(radio) -> None:
    samples, phones = radio
    assert len(phones) > 40  # about ten phones a second of speech
    assert {p.label for p in phones} <= ARPABET
    assert phones[0].start == 0.0 and phones[-1].end == pytest.approx(len(samples) / 16000)
    for a, b in zip(phones, phones[1:]):
        assert a.end == pytest.approx(b.start) and a.start < a.end
        assert not (a.label == b.label == "SIL")  # silences merged
    # The pause after "ones" (2.7 to 3.0 s) is silence.
    assert any(p.label == "SIL" and p.start <= 2.8 and p.end >= 2.95 for p in phones)


def test_bilabial_words_are_heard_as_bilabials(radio) -> None:
    _, phones = radio
    heard = [word for word, at in RADIO_BILABIALS.items()
             if any(p.label in BILABIALS and p.start - 0.06 <= at <= p.end + 0.06 for p in phones)]
    # The recogniser is English all-phone, no words: most, not all, closures are heard (today 5 of 7: the m of
    # "time" comes out as n, the b of "back" as k).
    assert len(heard) >= 4, heard


def test_english_one_two_three(media: Path) -> None:
    phones = recognise_phones(load_audio(media / "speechrecognition/english.wav", 16000))
    labels = [p.label for p in phones]
    assert labels[0] == labels[-1] == "SIL"
    assert sum(label == "SIL" for label in labels) >= 3  # the pauses between the three words
    assert "UW" in labels and "IY" in labels  # "two", "three"


def test_rejects_wrong_rate_and_stereo() -> None:
    with pytest.raises(ValueError, match="16 kHz"):
        recognise_phones(np.zeros(44100, np.float32), 44100)
    with pytest.raises(ValueError, match="mono"):
        recognise_phones(np.zeros((2, 16000), np.float32))
    with pytest.raises(ValueError, match="16 kHz"):
        mouth_shapes([], np.zeros(48000, np.float32), 25, 25, sample_rate=48000)


def test_same_speech_same_phones_whatever_came_before(media: Path, radio) -> None:
    short = load_audio(media / "speechrecognition/chinese.flac", 16000)
    first = recognise_phones(short)
    recognise_phones(radio[0])
    assert recognise_phones(short) == recognise_phones(short) == first


def test_threads_take_turns_with_one_decoder(media: Path) -> None:
    samples = load_audio(media / "speechrecognition/english.wav", 16000)
    alone = recognise_phones(samples)
    results: list[list[Phone]] = []
    threads = [threading.Thread(target=lambda: results.append(recognise_phones(samples))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [alone] * 3
    phones_module.unload_decoder()  # freed; the next call loads it again
    assert recognise_phones(samples) == alone


def test_phones_recognised_in_a_child_process_are_the_same(radio, tmp_path: Path, monkeypatch) -> None:
    # From another working folder (the studio works inside outputs/): the child still finds the package.
    monkeypatch.chdir(tmp_path)
    background = BackgroundPhones(radio[0])
    folder = background._folder
    assert background.result() == radio[1]
    assert not folder.exists()  # its speech and result files are gone with it


def test_a_cancel_while_waiting_for_the_phones_stops_the_child(radio) -> None:
    background = BackgroundPhones(np.tile(radio[0], 6))  # about 1 min of speech: several seconds of decoding
    processes, folder = [child[0] for child in background._children], background._folder
    assert processes

    def cancelled() -> None:
        raise CancelledError("speech.wav: cancelled")

    with pytest.raises(CancelledError):
        background.result(cancelled)
    assert all(process.poll() is not None for process in processes) and not folder.exists()


def test_pieces_shared_out_between_child_processes_give_the_same_phones(radio, monkeypatch) -> None:
    # Pieces of ~3 s instead of ~30 s, so an 8 s speech is cut twice and three children take a piece each.
    monkeypatch.setattr(phones_module, "CHUNK_SECONDS", 3.0)
    monkeypatch.setattr(phones_module, "CUT_SEARCH_SECONDS", 1.0)
    monkeypatch.setattr(phones_module.os, "cpu_count", lambda: 6)
    samples = radio[0]
    background = BackgroundPhones(samples)
    assert len(background._children) == 3
    assert background.result() == recognise_phones(samples)
    # On four cores: one child for every two beside the study, one for every core (as many as there are
    # pieces) when nothing else runs meanwhile; on two cores, two either way (niced beside the study, they
    # take both cores once it is done). The same phones each way.
    monkeypatch.setattr(phones_module.os, "cpu_count", lambda: 4)
    beside, alone = BackgroundPhones(samples), BackgroundPhones(samples, alone=True)
    assert (len(beside._children), len(alone._children)) == (2, 3)
    assert beside.result() == alone.result() == recognise_phones(samples)
    monkeypatch.setattr(phones_module.os, "cpu_count", lambda: 2)
    beside = BackgroundPhones(samples)
    assert len(beside._children) == 2 and beside.result() == recognise_phones(samples)
    assert phones_module._share_out([0, 10, 30, 60, 70, 100], 2) == [[0, 10, 30, 60], [60, 70, 100]]
    assert phones_module._share_out([0, 100], 4) == [[0, 100]]


def test_long_speech_is_decoded_in_pieces_cut_at_pauses(radio, monkeypatch: pytest.MonkeyPatch) -> None:
    samples, whole = radio
    # Pieces of ~3 s instead of ~30 s, so an 8 s speech is cut twice.
    monkeypatch.setattr(phones_module, "CHUNK_SECONDS", 3.0)
    monkeypatch.setattr(phones_module, "CUT_SEARCH_SECONDS", 1.0)
    cuts = phones_module._cut_points((samples * 32767).astype(np.int16), 16000)
    assert len(cuts) == 2
    assert 2.7 <= cuts[0] / 16000 <= 3.0  # the pause after "loved ones"
    pieces = recognise_phones(samples)
    assert pieces[0].start == 0.0 and pieces[-1].end == pytest.approx(8.0)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(pieces, pieces[1:]))
    # Cut at pauses, the pieces hear much the same phones as the whole.
    assert abs(len(pieces) - len(whole)) <= 0.1 * len(whole)
    assert sum(p.label in BILABIALS for p in pieces) >= sum(p.label in BILABIALS for p in whole) - 1

    # Each piece reports how far the recognition is, and a cancel raised there stops it after that piece.
    done: list[float] = []
    recognise_phones(samples, tick=done.append)
    assert len(done) == 3 and done == sorted(done) and done[-1] == 1.0

    def cancel(share: float) -> None:
        raise RuntimeError(f"cancelled at {share:.2f}")

    with pytest.raises(RuntimeError, match="cancelled at 0.3"):
        recognise_phones(samples, tick=cancel)


# ---- mouth shapes from real speech -------------------------------------------------------------------------------

def test_lips_close_on_m_b_p(radio) -> None:
    samples, phones = radio
    fps = 25
    shapes = mouth_shapes(phones, samples, fps, frame_count(len(samples), Fraction(fps)))
    closed = (shapes.viseme == CLOSED) & (shapes.opening <= 0.0)
    # Every recognised m, b, p has a frame with the lips together, at its sound or just ahead of it.
    for phone in phones:
        if phone.label in BILABIALS:
            assert closed[frames_between(phone.start - 0.08, phone.end, fps)].any(), phone
    # And so do the words the speaker says with a closure, for as many as were heard as m, b, p.
    closed_words = [word for word, at in RADIO_BILABIALS.items()
                    if closed[frames_between(at - 0.06, at + 0.06, fps)].any()]
    assert len(closed_words) >= 4, closed_words
    # Closed is a few frames, not the whole speech; the vowels between open the mouth.
    assert closed.mean() < 0.25
    assert np.percentile(shapes.opening, 90) > 0.3
    assert (shapes.opening[shapes.viseme == OPEN] > 0.2).mean() > 0.8


def test_rounded_two_spread_three(media: Path) -> None:
    samples = load_audio(media / "speechrecognition/english.wav", 16000)
    fps = 25
    n = frame_count(len(samples), Fraction(fps))
    phones = recognise_phones(samples)
    shapes = mouth_shapes(phones, samples, fps, n)
    # "two" (1.05 to 1.43 s): rounded lips; "three" (2.0 to 2.57 s): spread lips, its vowel from 2.3 s.
    two, three = frames_between(1.2, 1.4, fps), frames_between(2.36, 2.52, fps)
    assert shapes.spread[two].mean() < -0.3
    assert shapes.spread[three].mean() > 0.3
    assert ROUNDED in shapes.viseme[two] and SPREAD in shapes.viseme[three]
    own = frame_visemes(phones, fps, n)
    assert ROUNDED in own[two] and SPREAD in own[three]


def test_silence_is_rest(radio) -> None:
    zeros = np.zeros(32000, np.float32)
    assert {p.label for p in recognise_phones(zeros)} == {"SIL"}
    shapes = mouth_shapes(recognise_phones(zeros), zeros, 25, 50)
    assert np.all(shapes.opening == 0) and np.all(shapes.spread == 0) and np.all(shapes.viseme == REST)
    # Even phones over digital silence (nothing heard) leave the mouth at rest.
    shapes = mouth_shapes(seq(("SIL", 0, 0.5), ("AA", 0.5, 1.5), ("SIL", 1.5, 2)), zeros, 25, 50)
    assert np.all(shapes.opening == 0) and np.all(shapes.viseme == REST)


@pytest.mark.parametrize("noise_level", [3e-4, 1e-2])
def test_quiet_pause_is_rest(radio, noise_level: float) -> None:
    samples, _ = radio
    # One second of room noise put into the pause after "loved ones" (at 2.8 s): -70 dB, below the loudness
    # drive's silence gate, and -40 dB, above it (only the recognised silence closes the mouth there).
    noise = (np.random.default_rng(1).standard_normal(16000) * noise_level).astype(np.float32)
    cut = int(2.8 * 16000)
    speech = np.concatenate([samples[:cut], noise, samples[cut:]])
    fps = Fraction(30000, 1001)
    shapes = mouth_shapes(recognise_phones(speech), speech, fps, frame_count(len(speech), fps))
    pause = frames_between(2.9, 3.8, float(fps))
    assert np.all(shapes.opening[pause] == 0)
    assert np.all(shapes.spread[pause] == 0)
    assert np.all(shapes.viseme[pause] == REST)
    assert (shapes.viseme != REST).mean() > 0.7  # the speech around it moves


@pytest.mark.parametrize("clip", ["speechrecognition/chinese.flac", "sadtalker/bus_chinese.wav",
                                  "speechrecognition/french.aiff"])
def test_other_languages_move_the_mouth(media: Path, clip: str) -> None:
    samples = load_audio(media / clip, 16000)
    fps = 25
    shapes = mouth_shapes(recognise_phones(samples), samples, fps, frame_count(len(samples), Fraction(fps)))
    speaking = shapes.viseme != REST
    assert speaking.mean() > 0.4
    assert len(set(shapes.viseme[speaking].tolist())) >= 2  # more than one mouth shape
    # The mouth opens and narrows again within the speech, and takes both lip shapes' directions.
    assert shapes.opening.max() > 0.3
    assert shapes.opening[speaking].min() < 0.15
    assert np.ptp(shapes.spread) > 0.5


def test_closures_in_french_and_chinese(media: Path) -> None:
    # French "... m ... m ..." and the Chinese bus announcement: lips closed somewhere in each.
    for clip in ("speechrecognition/french.aiff", "sadtalker/bus_chinese.wav"):
        samples = load_audio(media / clip, 16000)
        shapes = mouth_shapes(recognise_phones(samples), samples, 25, frame_count(len(samples), Fraction(25)))
        assert ((shapes.viseme == CLOSED) & (shapes.opening == 0)).any(), clip


@pytest.mark.parametrize("fps", [Fraction(30000, 1001), Fraction(1350, 61), 29.97, Fraction(25), 60])
def test_exactly_n_frames(radio, fps) -> None:
    samples, phones = radio
    n = frame_count(len(samples), Fraction(fps))
    extra = int(np.ceil(0.4 * float(fps)))
    for frames in (n, n + extra, 1, 0):  # n + extra: 0.4 s past the end of the speech
        shapes = mouth_shapes(phones, samples, fps, frames)
        assert isinstance(shapes, MouthShapes)
        assert len(shapes.viseme) == len(shapes.opening) == len(shapes.spread) == frames
        assert shapes.viseme.dtype == np.int8 and shapes.opening.dtype == shapes.spread.dtype == np.float32
        assert np.all((shapes.opening >= 0) & (shapes.opening <= 1))
        assert np.all((shapes.spread >= -1) & (shapes.spread <= 1))
        assert np.all((shapes.viseme >= 0) & (shapes.viseme < len(VISEMES)))
        own = frame_visemes(phones, fps, frames)
        assert own.dtype == np.int8 and len(own) == frames
        if frames == n + extra:  # the speech ends mid-word: the mouth closes within 0.15 s, then rests
            after = range(frames_between(8.15, 9, float(fps)).start, frames)
            assert np.all(shapes.viseme[after] == REST) and np.all(shapes.opening[after] == 0)
            assert np.all(own[n + 1:] == REST)


# ---- coarticulation, on phone lists whose timing is known --------------------------------------------------------

@pytest.mark.parametrize("fps", [25, 60])
def test_closure_is_reached_before_its_sound_and_wins(fps: int) -> None:
    phones = seq(("SIL", 0, 0.52), ("M", 0.52, 0.6), ("AA", 0.6, 0.9), ("SIL", 0.9, 1.4))
    samples = voice([(0.52, 0.9, 1.0)], 1.4)
    shapes = mouth_shapes(phones, samples, fps, round(1.4 * fps))
    closed = np.flatnonzero(shapes.viseme == CLOSED)
    assert closed.size and np.all(shapes.opening[closed] == 0)
    # The lips are together in a frame that ends before the m is heard (at 60 fps, two such frames).
    assert (closed[0] + 1) / fps <= 0.52 + 1e-9
    assert np.sum((closed + 1) / fps <= 0.52 + 1e-9) == (2 if fps == 60 else 1)
    vowel = frames_between(0.66, 0.86, fps)
    assert np.all(shapes.viseme[vowel] == OPEN) and np.all(shapes.opening[vowel] > 0.2)
    assert closed[-1] < vowel[0]
    assert np.all(shapes.viseme[:round(0.4 * fps)] == REST) and np.all(shapes.viseme[-round(0.4 * fps):] == REST)


@pytest.mark.parametrize("fps", [25, 30, 60])
def test_short_closure_still_closes_a_frame(fps: int) -> None:
    # A 20 ms b between two loud open vowels: neighbours pull hard, the lips still meet for a frame.
    phones = seq(("AA", 0, 0.5), ("B", 0.5, 0.52), ("AA", 0.52, 1.0))
    samples = voice([(0, 1.0, 1.0)], 1.0)
    shapes = mouth_shapes(phones, samples, fps, fps)
    closed = np.flatnonzero((shapes.viseme == CLOSED) & (shapes.opening == 0))
    assert closed.size >= 1
    assert all(0.5 - 0.1 <= i / fps <= 0.52 for i in closed)
    assert shapes.opening[frames_between(0.1, 0.35, fps)].min() > 0.3  # open away from it


def test_lower_lip_under_teeth_on_f() -> None:
    fps = 25
    phones = seq(("AA", 0, 0.4), ("F", 0.4, 0.5), ("AA", 0.5, 0.9))
    shapes = mouth_shapes(phones, voice([(0, 0.9, 1.0)], 0.9), fps, 23)
    held = np.flatnonzero(shapes.viseme == LIP_TEETH)
    assert held.size and np.all(shapes.opening[held] <= phones_module.LIP_TEETH_OPENING)
    assert held[0] / fps < 0.4
    assert shapes.opening[frames_between(0.1, 0.3, fps)].min() > 3 * phones_module.LIP_TEETH_OPENING


def test_rounding_reaches_into_the_consonant_before() -> None:
    fps = 50
    samples = voice([(0.2, 0.8, 1.0)], 1.0)
    def s_then(vowel: str) -> MouthShapes:
        phones = seq(("SIL", 0, 0.2), ("S", 0.2, 0.42), (vowel, 0.42, 0.8), ("SIL", 0.8, 1))
        return mouth_shapes(phones, samples, fps, 50)

    before_oo, before_ee = s_then("UW"), s_then("IY")
    late_s = frames_between(0.32, 0.42, fps)  # the last 100 ms of the s
    assert np.all(before_oo.spread[late_s] < 0)  # "soo": lips already rounding during the s
    assert np.all(before_ee.spread[late_s] > 0.3)  # "see": spread
    vowel = frames_between(0.5, 0.75, fps)
    assert np.all(before_oo.spread[vowel] < -0.7) and np.all(before_oo.viseme[vowel] == ROUNDED)
    assert np.all(before_ee.spread[vowel] > 0.6) and np.all(before_ee.viseme[vowel] == SPREAD)


def test_vowels_blend_smoothly() -> None:
    fps = 100
    shapes = mouth_shapes(seq(("AA", 0, 0.3), ("IY", 0.3, 0.6)), voice([(0, 0.6, 1.0)], 0.6), fps, 60)
    # Opening from aa's to ee's and spread from neutral to spread, with no jump larger than a fifth of the way.
    assert shapes.opening[10] > shapes.opening[50] and shapes.spread[10] < shapes.spread[50]
    assert np.abs(np.diff(shapes.opening[5:55])).max() < 0.2 * (shapes.opening[10] - shapes.opening[50])
    assert np.abs(np.diff(shapes.spread[5:55])).max() < 0.2 * (shapes.spread[50] - shapes.spread[10])


def test_loud_opens_wider_but_closure_stays_closed() -> None:
    fps = 25
    phones = seq(("SIL", 0, 0.2), ("AA", 0.2, 0.6), ("SIL", 0.6, 0.9), ("AA", 0.9, 1.2), ("M", 1.2, 1.3),
                 ("AA", 1.3, 1.6), ("SIL", 1.6, 2.0))
    samples = voice([(0.2, 0.6, 0.05), (0.9, 1.6, 0.8)], 2.0)  # quiet first "ah", shouted "ahma"
    shapes = mouth_shapes(phones, samples, fps, 50)
    quiet, loud = frames_between(0.3, 0.5, fps), frames_between(1.0, 1.1, fps)
    assert shapes.opening[loud].max() > 1.5 * shapes.opening[quiet].max() > 0
    assert (shapes.opening[frames_between(1.16, 1.3, fps)] == 0).any()


def test_frame_visemes_label_each_frame_with_its_phone() -> None:
    phones = seq(("SIL", 0, 0.2), ("M", 0.2, 0.3), ("AA", 0.3, 0.5), ("F", 0.5, 0.6), ("AY", 0.6, 1.0),
                 ("SIL", 1.0, 1.2))
    own = frame_visemes(phones, 10, 13)  # 100 ms frames: one phone each
    expected = [REST, REST, CLOSED, OPEN, OPEN, LIP_TEETH, OPEN, OPEN, SPREAD, SPREAD, REST, REST, REST]
    assert own.tolist() == expected  # "ay" opens, then glides to spread; past the phones: rest
    # No anticipation: the frame before the m is still rest, unlike mouth_shapes.
    assert frame_visemes(phones, 25, 30)[4] == REST
