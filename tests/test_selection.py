"""heygem.speech.frames and heygem.selection: footage frames chosen by the sounds, on real talking heads."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from heygem.media.audio import load_audio
from heygem.media.probe import probe
from heygem.media.video import iter_frames
from heygem.selection import (MAX_LOOKAHEAD, SelectionOptions, build_index, choose_frames, drawn_openings,
                              drawn_widths, fitted_mouth, jaw_outline, join_fades, mouth_measures, run_lengths)
from heygem.speech.frames import (describe_speech, feature_groups, frame_loudness, lip_closure, speech_features,
                                  voice_distance, voice_print)

RATE = 16000
# Measured by bench/selection.py on the six shared clips with their own speech, both ways round (bench/RESULTS.md,
# "Choosing footage frames"): the 0.3 s lookahead choice's opening r stayed within 0.04 of the whole-speech
# choice's on all 12 halves (its width r did not: on the 2.5 s halves it swings by up to 0.6 either way).
LOOKAHEAD_MARGIN = 0.1


class Footage:
    """A real talking head's face-mesh mouths and its own speech."""

    def __init__(self, path: Path) -> None:
        from heygem.faces.landmarks import LandmarkTracker

        info = probe(path)
        self.fps: Fraction = info.fps
        tracker = LandmarkTracker()
        points = []
        for frame in iter_frames(info, info.fps):
            found = tracker(frame)
            points.append(np.full((468, 2), np.nan) if found is None else np.asarray(found, np.float64))
        self.mouth = mouth_measures(np.stack(points))
        self.jaw = jaw_outline(np.stack(points))
        self.n = len(self.mouth)
        samples = np.asarray(load_audio(path, RATE), np.float32)
        self.samples = np.pad(samples, (0, max(0, self.samples_at(self.n) - len(samples))))

    def samples_at(self, frame: int) -> int:
        return round(Fraction(frame) / self.fps * RATE)

    def audio(self, first: int, last: int) -> np.ndarray:
        return self.samples[self.samples_at(first):self.samples_at(last)]

    def inputs(self, first: int, last: int) -> tuple[np.ndarray, np.ndarray]:
        audio = self.audio(first, last)
        return speech_features(audio, self.fps, last - first), frame_loudness(audio, self.fps, last - first)

    def index(self, first: int, last: int, options: SelectionOptions = SelectionOptions(), jaw: bool = False):
        features, loudness = self.inputs(first, last)
        return build_index(features, self.mouth[first:last], loudness, self.fps, options=options,
                           jaw=self.jaw[first:last] if jaw else None)


@pytest.fixture(scope="module")
def katie(media: Path) -> Footage:
    return Footage(media / "sadtalker/WDA_KatieHill_000.mp4")


@pytest.fixture(scope="module")
def radio(media: Path) -> np.ndarray:
    return np.asarray(load_audio(media / "sadtalker/RD_Radio31_000.wav", RATE), np.float32)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


# ---- features -----------------------------------------------------------------------------------------------

def test_features_have_the_documented_columns(radio) -> None:
    fps = Fraction(25)
    n = round(len(radio) / RATE * 25)
    features = speech_features(radio, fps, n)
    assert features.dtype == np.float32 and features.shape == (n, feature_groups()[-1][1].stop)
    assert np.isfinite(features).all()
    loud = features[:, feature_groups()[1][1]][:, 2]  # loudness at offset 0
    assert np.allclose(loud, frame_loudness(radio, fps, n), atol=1e-5)
    # Speech is louder than the pause after "ones" (2.7 to 3.0 s).
    assert loud[round(1.0 * 25):round(2.5 * 25)].mean() > loud[round(2.75 * 25):round(2.95 * 25)].mean() + 0.5


def test_a_speech_described_at_once_reads_as_each_reading_alone(radio) -> None:
    """The footage study and the drive read a speech's features, loudness and voice together (its loudness and
    cepstra worked out once): the same numbers as each read alone."""
    fps, n = Fraction(30000, 1001), 120
    described = describe_speech(radio, fps, n)
    assert np.array_equal(described.features, speech_features(radio, fps, n))
    assert np.array_equal(described.loudness, frame_loudness(radio, fps, n))
    assert np.array_equal(described.voice, voice_print(radio))
    assert describe_speech(np.zeros(RATE, np.float32), fps, 30).voice is None  # no voice to print


def test_features_of_a_speech_do_not_depend_on_what_came_before(katie: Footage, radio) -> None:
    own = katie.audio(0, katie.n)
    first = speech_features(radio, katie.fps, 100)
    other = speech_features(own, katie.fps, katie.n)
    again = speech_features(radio, katie.fps, 100)
    assert np.array_equal(first, again)
    assert np.array_equal(other, speech_features(own, katie.fps, katie.n))


def test_features_of_one_speech_at_two_loudnesses_are_near(radio) -> None:
    """Per-speech normalisation: the same speech 12 dB quieter lands near itself, far from another speech."""
    fps = Fraction(25)
    loud = speech_features(radio, fps, 150)
    quiet = speech_features(radio / 4, fps, 150)
    shifted = speech_features(np.roll(radio, RATE), fps, 150)  # the same voice, other sounds at each frame
    assert np.abs(loud - quiet).mean() < 0.25 * np.abs(loud - shifted).mean()


# ---- choosing -----------------------------------------------------------------------------------------------

def test_the_choice_is_deterministic(katie: Footage, radio) -> None:
    index = katie.index(0, katie.n)
    features, loudness = katie.inputs(0, katie.n)
    n = round(len(radio) / RATE * float(katie.fps))
    speech = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    first = choose_frames(index, *speech)
    choose_frames(index, features, loudness)  # another speech in between
    again = choose_frames(katie.index(0, katie.n), *speech)  # and a fresh index
    assert first.shape == (n,) and first.dtype == np.int64
    assert np.array_equal(first, again)
    assert index.face[first].all()


def test_a_silent_speech_shows_only_rest_mouths(katie: Footage) -> None:
    index = katie.index(0, katie.n)
    silence = np.zeros(2 * RATE, np.float32)
    frames = choose_frames(index, speech_features(silence, katie.fps, 50), frame_loudness(silence, katie.fps, 50))
    assert index.rest[frames].all()
    # The rest mouths are the person's closed ones, not their speaking ones.
    assert np.median(index.mouth[frames, 0]) < np.percentile(index.mouth[index.face, 0], 30)


def test_a_pause_in_speech_shows_rest_mouths_and_speech_shows_others(katie: Footage, radio) -> None:
    index = katie.index(0, katie.n)
    speech = radio[:4 * RATE].copy()
    speech[int(1.5 * RATE):int(2.5 * RATE)] = 0.0  # a second of silence
    n = 100
    frames = choose_frames(index, speech_features(speech, katie.fps, n), frame_loudness(speech, katie.fps, n))
    pause = frames[round(1.6 * 25):round(2.4 * 25)]
    assert index.rest[pause].all()
    talking = frames[round(0.3 * 25):round(1.4 * 25)]
    assert index.mouth[talking, 0].mean() > index.mouth[pause, 0].mean()


def test_runs_of_consecutive_real_frames_are_preferred(katie: Footage, radio) -> None:
    index = katie.index(0, katie.n)
    n = round(len(radio) / RATE * 25)
    speech = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    runs = run_lengths(choose_frames(index, *speech))
    free = run_lengths(choose_frames(index, *speech, options=SelectionOptions(jump_penalty=0.0, join_weight=0.0)))
    assert runs.mean() > 1.5
    assert runs.mean() > free.mean()  # the join cost is what makes the runs


def test_the_closure_prior_closes_the_lips_on_m_b_p(katie: Footage, radio) -> None:
    index = katie.index(0, katie.n)
    n = round(len(radio) / RATE * 25)
    features, loudness = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    bilabial = lip_closure(features) > 0.5
    assert bilabial.sum() >= 5  # the radio speech's m/b/p frames (tests/test_phones.py: most are heard)
    with_prior = index.mouth[choose_frames(index, features, loudness), 0]
    without = index.mouth[choose_frames(index, features, loudness, options=SelectionOptions(closure_weight=0.0)), 0]
    assert with_prior[bilabial].mean() < without[bilabial].mean()
    assert np.median(with_prior[bilabial]) < np.percentile(index.mouth[index.face, 0], 30)


def test_lookahead_is_within_the_margin_of_the_whole_speech_choice(katie: Footage) -> None:
    """Split-time on a real clip: footage = first half, speech = the second half's own speech."""
    split = katie.n // 2
    index = katie.index(0, split)
    features, loudness = katie.inputs(split, katie.n)
    truth = katie.mouth[split:, 0]
    whole = choose_frames(index, features, loudness)
    live = choose_frames(index, features, loudness, lookahead=MAX_LOOKAHEAD)
    r_whole, r_live = pearson(index.mouth[whole, 0], truth), pearson(index.mouth[live, 0], truth)
    assert r_whole > 0.1  # it follows the real mouth at all
    assert r_live > r_whole - LOOKAHEAD_MARGIN
    assert run_lengths(live).mean() > 1.2


def test_another_voice_is_told_from_the_persons_own(katie: Footage, radio) -> None:
    split = katie.n // 2
    first, second = voice_print(katie.audio(0, split)), voice_print(katie.audio(split, katie.n))
    other = voice_print(radio)
    own_distance, other_distance = voice_distance(first, second), voice_distance(first, other)
    low, high = SelectionOptions().voice_ramp
    assert own_distance < low < other_distance
    assert voice_print(np.zeros(RATE, np.float32)) is None  # no voice, no print


def test_with_another_voice_loudness_leads(katie: Footage, radio) -> None:
    """The person's own speech habits are trusted for their own voice; with another voice the speech's loudness
    moves the chosen mouth more (the loudness proxy: opening against the speech's loudness)."""
    index = katie.index(0, katie.n)
    n = round(len(radio) / RATE * float(katie.fps))
    features, loudness = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    as_own = index.mouth[choose_frames(index, features, loudness, voice_distance=None), 0]
    as_other = index.mouth[choose_frames(index, features, loudness, voice_distance=1.0), 0]
    voiced = loudness > loudness.min()
    assert pearson(as_other, loudness) > pearson(as_own, loudness) + 0.05
    assert as_other[voiced].mean() > as_other[~voiced].mean()


def test_with_another_voice_the_lips_still_close_on_m_b_p(katie: Footage, radio) -> None:
    """Loudness leads with another voice, and the closures hold against it: on the speech's m/b/p the chosen
    mouths are the person's closed ones."""
    index = katie.index(0, katie.n)
    n = round(len(radio) / RATE * float(katie.fps))
    features, loudness = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    bilabial = lip_closure(features) > 0.5
    closed = np.percentile(index.mouth[index.face, 0], 30)
    chosen = index.mouth[choose_frames(index, features, loudness, voice_distance=1.0), 0]
    unraised = SelectionOptions(other_voice_closure_weight=SelectionOptions().closure_weight)
    weaker = index.mouth[choose_frames(index, features, loudness, voice_distance=1.0, options=unraised), 0]
    assert (chosen[bilabial] <= closed).mean() >= 0.8
    assert (chosen[bilabial] <= closed).mean() > (weaker[bilabial] <= closed).mean()


def test_with_another_voice_the_mouth_stays_on_a_stretch_of_footage(katie: Footage, radio) -> None:
    """Another voice leaves little more than an opening to meet, which some footage frame meets at every frame:
    with the own voice's jump penalty the path jumped to another stretch every 1.8 frames, so nearly every frame
    was a join's blend. Its own penalty keeps the runs longer, and the mouth still follows the loudness."""
    index = katie.index(0, katie.n)
    n = round(len(radio) / RATE * float(katie.fps))
    features, loudness = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    kept = choose_frames(index, features, loudness, voice_distance=1.0)
    loose = choose_frames(index, features, loudness, voice_distance=1.0,
                          options=SelectionOptions(other_voice_jump_penalty=SelectionOptions().jump_penalty))
    proxy = [pearson(index.mouth[frames, 0], loudness) for frames in (kept, loose)]
    print(f"another voice: mean run {run_lengths(kept).mean():.2f} frames against {run_lengths(loose).mean():.2f}; "
          f"loudness r {proxy[0]:.2f} against {proxy[1]:.2f}")
    assert run_lengths(kept).mean() > 1.25 * run_lengths(loose).mean()
    assert proxy[0] > proxy[1] - 0.05
    own = choose_frames(index, features, loudness, voice_distance=None)
    assert np.array_equal(own, choose_frames(index, features, loudness, voice_distance=None,
                                             options=SelectionOptions(other_voice_jump_penalty=1.0)))


def test_with_another_voice_the_mouths_are_drawn_at_its_loudness(katie: Footage, radio) -> None:
    """With another voice the chosen mouths follow its loudness only as well as the footage's frames allow; the
    openings they are drawn at follow it closer, stay within the person's own openings, are never opened on the
    speech's m/b/p, and leave the pauses' rest mouths and the own voice's mouths as filmed."""
    index = katie.index(0, katie.n)
    n = round(len(radio) / RATE * float(katie.fps))
    features, loudness = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    chosen = choose_frames(index, features, loudness, voice_distance=1.0)
    drawn = drawn_openings(index, chosen, features, loudness, voice_distance=1.0)
    filmed = index.mouth[chosen, 0]
    assert np.isfinite(drawn).all()  # this speech has no pause
    bilabial = lip_closure(features) >= 0.5
    elsewhere = ~bilabial
    print(f"loudness r off the m/b/p: chosen {pearson(filmed[elsewhere], loudness[elsewhere]):.2f}, drawn "
          f"{pearson(drawn[elsewhere], loudness[elsewhere]):.2f} over {elsewhere.sum()} of {n} frames")
    # Measured 0.91 (chosen) -> 1.00 (drawn).
    assert pearson(drawn[elsewhere], loudness[elsewhere]) > pearson(filmed[elsewhere], loudness[elsewhere]) + 0.04
    person = index.mouth[index.face, 0]
    assert person.min() <= drawn.min() and drawn.max() <= person.max()
    assert bilabial.any() and (drawn[bilabial] <= filmed[bilabial]).all()  # closed lips chosen there stay closed
    own = choose_frames(index, features, loudness, voice_distance=None)
    assert np.isnan(drawn_openings(index, own, features, loudness, voice_distance=None)).all()
    assert np.isnan(drawn_openings(index, own, features, loudness, voice_distance=0.2)).all()  # below the ramp
    quiet = np.zeros(2 * RATE, np.float32)  # a pause: its rest mouths as filmed
    m = round(2 * float(katie.fps))
    quiet_features, quiet_loudness = speech_features(quiet, katie.fps, m), frame_loudness(quiet, katie.fps, m)
    rest = choose_frames(index, quiet_features, quiet_loudness, voice_distance=1.0)
    assert np.isnan(drawn_openings(index, rest, quiet_features, quiet_loudness, voice_distance=1.0)).all()


def test_with_the_own_voice_the_mouths_are_drawn_towards_what_her_footage_predicts(katie: Footage) -> None:
    """With the person's own voice each chosen mouth is drawn most of the way to the mouth her footage's fit
    predicts for its sounds (``fitted_mouth``; over 18 halves of the shared clips that follows the real mouth
    closer than the chosen frames' own: bench/RESULTS.md), less as the voice is less hers, not at all for
    another voice (drawn by its loudness alone); her pauses' rest mouths as filmed."""
    half = katie.n // 2
    index = katie.index(0, half)
    features, loudness = katie.inputs(half, katie.n)
    chosen = choose_frames(index, features, loudness)
    fitted = fitted_mouth(index, features)
    drawn = drawn_openings(index, chosen, features, loudness, fitted=fitted[:, 0])
    widths = drawn_widths(index, chosen, None, loudness, fitted=fitted[:, 1])
    filmed, truth = index.mouth[chosen], katie.mouth[half:]
    speaking = np.isfinite(drawn)
    assert 0.7 * len(drawn) < speaking.sum() < len(drawn)  # NaN only in her pauses (rest mouths as filmed)
    assert np.array_equal(speaking, np.isfinite(widths))
    seen = speaking & np.isfinite(truth[:, 0])
    print(f"opening r with her real next seconds: chosen {pearson(filmed[seen, 0], truth[seen, 0]):.2f}, drawn "
          f"{pearson(drawn[seen], truth[seen, 0]):.2f}; width {pearson(filmed[seen, 1], truth[seen, 1]):.2f} -> "
          f"{pearson(widths[seen], truth[seen, 1]):.2f}")
    # Her fit knows her own closures: where the speech's shapes hold the lips closed it is not held back.
    closed_throughout = np.ones(len(chosen), bool)
    assert np.array_equal(drawn_openings(index, chosen, features, loudness, held_closed=closed_throughout,
                                         fitted=fitted[:, 0]), drawn, equal_nan=True)
    options = SelectionOptions()  # every frame she speaks drawn the whole share
    for column, share, made in ((0, options.own_voice_opening_share, drawn), (1, options.own_voice_width_share, widths)):
        gap = np.abs(filmed[speaking, column] - fitted[speaking, column])
        assert np.allclose(np.abs(made[speaking] - fitted[speaking, column]), (1 - share) * gap)
        assert (gap > 0.01).mean() > 0.2  # the fit asks something other than the chosen mouths for many frames
    assert options.fitted_shares_for(0.2) == (options.own_voice_opening_share, options.own_voice_width_share)
    assert 0 < options.fitted_shares_for(0.3)[0] < options.own_voice_opening_share  # a voice half like hers
    assert options.fitted_shares_for(0.43) == (0.0, 0.0)  # as far as the English radio speech from her voice
    other = drawn_openings(index, chosen, features, loudness, voice_distance=1.0)
    assert np.array_equal(drawn_openings(index, chosen, features, loudness, voice_distance=1.0, fitted=fitted[:, 0]),
                          other, equal_nan=True)


def test_with_another_voice_no_mouth_is_drawn_open_where_the_lips_close_ahead_of_m_b_p(katie: Footage, radio) -> None:
    """The key mouths close the lips from a frame before an m, b or p is heard (``mouth_shapes``); the footage
    drive's drawing keeps the same closures: there no chosen mouth is opened towards the loudness, though the
    phone's own span has not begun (by the phones' spans alone that frame was drawn opening wide: an open "O"
    just before the lips met)."""
    from heygem.speech.phones import VISEMES, mouth_shapes, recognise_phones

    index = katie.index(0, katie.n)
    n = round(len(radio) / RATE * float(katie.fps))
    features, loudness = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    held = mouth_shapes(recognise_phones(radio), radio, katie.fps, n).viseme == VISEMES.index("closed")
    chosen = choose_frames(index, features, loudness, voice_distance=1.0)
    filmed = index.mouth[chosen, 0]
    by_phones = drawn_openings(index, chosen, features, loudness, voice_distance=1.0)
    drawn = drawn_openings(index, chosen, features, loudness, voice_distance=1.0, held_closed=held)
    ahead = held & (lip_closure(features) < 0.5)  # closed by the shapes, not yet by the phone's own span
    print(f"{held.sum()} frames held closed, {ahead.sum()} of them ahead of the phone; opened there by the phones' "
          f"spans alone: {(by_phones[ahead] > filmed[ahead]).sum()}")
    assert ahead.any() and (by_phones[ahead] > filmed[ahead]).any()  # what was wrong
    assert (drawn[held] <= filmed[held]).all()
    assert np.array_equal(drawn[~held], by_phones[~held])  # elsewhere drawn as before


def test_with_another_voice_the_mouths_are_drawn_as_wide_as_its_lip_shapes(katie: Footage, radio) -> None:
    """With another voice the chosen mouths are drawn as wide as the speech's lip shape asks of the person
    (rounded on "oo", spread on "ee"): the drawn widths follow its lip shape closer than the chosen ones and stay
    near the person's own widths; the own voice's mouths and the pauses' rest mouths are drawn as filmed."""
    from heygem.speech.phones import mouth_shapes, recognise_phones

    index = katie.index(0, katie.n)
    n = round(len(radio) / RATE * float(katie.fps))
    features, loudness = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)
    spread = mouth_shapes(recognise_phones(radio), radio, katie.fps, n).spread
    chosen = choose_frames(index, features, loudness, voice_distance=1.0)
    drawn = drawn_widths(index, chosen, spread, loudness, voice_distance=1.0)
    filmed = index.mouth[chosen, 1]
    assert np.isfinite(drawn).all()  # this speech has no pause
    print(f"lip shape r: chosen widths {pearson(filmed, spread):.2f}, drawn {pearson(drawn, spread):.2f}")
    assert pearson(drawn, spread) > pearson(filmed, spread) + 0.2  # measured 0.36 -> 0.79 (half the way)
    person = index.mouth[index.face, 1]
    middle = np.median(person)
    assert 0.85 * person.min() <= drawn.min() and drawn.max() <= 1.15 * person.max()
    assert drawn[spread < -0.5].mean() < middle < drawn[spread > 0.5].mean()
    own = choose_frames(index, features, loudness, voice_distance=None)
    assert np.isnan(drawn_widths(index, own, spread, loudness, voice_distance=None)).all()
    quiet = np.zeros(2 * RATE, np.float32)
    m = round(2 * float(katie.fps))
    quiet_loudness = frame_loudness(quiet, katie.fps, m)
    rest = choose_frames(index, speech_features(quiet, katie.fps, m), quiet_loudness, voice_distance=1.0)
    assert np.isnan(drawn_widths(index, rest, np.zeros(m), quiet_loudness, voice_distance=1.0)).all()


def test_on_a_few_seconds_of_footage_the_chosen_mouths_round_and_spread_with_the_sounds(katie: Footage) -> None:
    """Four seconds of her own footage teach little of how her width follows her sounds; given the speech's lip
    shape (the phone table's "oo" and "ee"), the chosen mouths of her own next four seconds are wider where she
    says "ee" than where she says "oo" (without it, the other way round); on long footage the fit leads."""
    from heygem.speech.phones import mouth_shapes, recognise_phones

    half = katie.n // 2
    index = katie.index(0, half)
    features, loudness = katie.inputs(half, katie.n)
    audio = katie.audio(half, katie.n)
    spread = mouth_shapes(recognise_phones(audio), audio, katie.fps, katie.n - half).spread
    ee, oo = spread > 0.3, spread < -0.3
    assert ee.sum() >= 5 and oo.sum() >= 5

    def widths(options: SelectionOptions) -> np.ndarray:
        return index.mouth[choose_frames(index, features, loudness, options=options, lip_shape=spread), 1]

    fit, shaped = widths(SelectionOptions(lip_shape_seconds=0.0)), widths(SelectionOptions())
    print(f"ee - oo width: fit alone {fit[ee].mean() - fit[oo].mean():.3f}, with the lip shape "
          f"{shaped[ee].mean() - shaped[oo].mean():.3f}; lip shape r {pearson(fit, spread):.2f} -> "
          f"{pearson(shaped, spread):.2f}")
    assert shaped[ee].mean() - shaped[oo].mean() > 0.02  # measured -0.020 -> 0.041 of the eye distance
    assert pearson(shaped, spread) > pearson(fit, spread) + 0.2  # measured -0.03 -> 0.34
    options = SelectionOptions()
    assert options.lip_shape_share(half, katie.fps) > 0.5 > 5 * options.lip_shape_share(60 * 25, Fraction(25))


def test_joins_keep_the_jaw_line_where_the_footage_moves_it(katie: Footage, radio) -> None:
    """Where the chosen frames jump from one run to another, the jaw line (whose head turn the placement does
    not take out) moves about as far as the footage's own head moves it from frame to frame, not the many times
    that an open mouth from a turned head would show as a jaw that jumps (bench/RESULTS.md, "Jaw lines")."""
    index = katie.index(0, katie.n, jaw=True)
    n = round(len(radio) / RATE * float(katie.fps))
    features, loudness = speech_features(radio, katie.fps, n), frame_loudness(radio, katie.fps, n)

    def jumps(options: SelectionOptions) -> np.ndarray:
        frames = choose_frames(index, features, loudness, voice_distance=1.0, options=options)
        moved = np.sqrt(((katie.jaw[frames[1:]] - katie.jaw[frames[:-1]]) ** 2).sum(2).mean(1))
        return moved[np.diff(frames) != 1]

    found = np.isfinite(katie.jaw).all((1, 2))
    own = np.sqrt(((katie.jaw[1:] - katie.jaw[:-1]) ** 2).sum(2).mean(1))[found[1:] & found[:-1]]
    kept, free = jumps(SelectionOptions()), jumps(SelectionOptions(jaw_weight=0.0))
    assert len(kept) >= 20  # another voice: many joins
    assert np.percentile(kept, 90) < 2.5 * np.percentile(own, 95)
    assert np.percentile(kept, 90) < 0.6 * np.percentile(free, 90)


def test_mouths_come_from_moments_whose_head_is_turned_as_the_pictures(katie: Footage, radio) -> None:
    """Her head turns as she speaks; each output frame is drawn on her own video's frame of that time. Told
    which picture each frame is drawn on, the choice takes mouths from moments whose jaw line lies near that
    picture's (a mouth from a head turned otherwise shows as a lower face too wide for it), and only rarely
    the picture's own moment (its old mouth)."""
    index = katie.index(0, katie.n, jaw=True)
    n = min(katie.n, round(len(radio) / RATE * float(katie.fps)))
    speech = radio[:round(n / float(katie.fps) * RATE)]
    features, loudness = speech_features(speech, katie.fps, n), frame_loudness(speech, katie.fps, n)
    shown = np.arange(n)

    def apart(frames: np.ndarray) -> np.ndarray:
        return np.sqrt(((katie.jaw[frames] - katie.jaw[shown]) ** 2).sum(2).mean(1))

    told = choose_frames(index, features, loudness, voice_distance=1.0, shown=shown)
    blind = choose_frames(index, features, loudness, voice_distance=1.0)
    assert np.median(apart(blind)) > 0.15  # measured 0.20: mouths from heads turned otherwise
    assert np.median(apart(told)) < 0.6 * np.median(apart(blind))  # measured 0.09
    assert np.median(apart(told)) < SelectionOptions().pose_free
    near = (np.abs(told - shown) <= 2).mean()  # measured 0.07 (blind: 0.01)
    assert near < 0.2  # the picture's own moment (its old mouth) is not the rule


def test_joins_fade_centred_on_the_join() -> None:
    usable = np.ones(20, bool)
    frames = np.array([0, 1, 2, 10, 11, 12, 13, 5, 6])
    source, weight = join_fades(frames, usable, length=2)
    # Before each join the new run's own earlier frames, after it the old run's next ones: the new mouth on time.
    assert source.tolist() == [-1, 8, 9, 3, 4, 3, 4, 14, 15]
    assert np.allclose(weight, [0, 1 / 5, 2 / 5, 2 / 5, 1 / 5, 1 / 5, 2 / 5, 2 / 5, 1 / 5])
    # Neither run goes on past the footage's ends, nor through a frame that may not be shown.
    usable[4] = False
    source, _ = join_fades(frames, usable, length=2)
    assert source[3] == 3 and source[4] == -1
    source, _ = join_fades(np.array([5, 6, 0, 1]), np.ones(20, bool), length=1)
    assert source.tolist() == [-1, -1, 7, -1]  # the run at 0 has no earlier frame
    # A one-frame run between two joins is given two fades as strong: it keeps the first (its old run's).
    source, weight = join_fades(np.array([0, 1, 8, 15, 16]), np.ones(20, bool), length=1)
    assert source.tolist() == [-1, 7, 2, 9, -1] and np.allclose(weight, [0, 1 / 3, 1 / 3, 1 / 3, 0])
    source, _ = join_fades(np.array([0, 1, 2, 8, 9, 15, 16]), np.ones(20, bool), length=2)
    assert source.tolist() == [-1, 6, 7, 3, 14, 10, 11]  # frame 4: the next join's 2/5 over this one's 1/5


def test_lookahead_is_bounded(katie: Footage) -> None:
    index = katie.index(0, katie.n)
    features, loudness = katie.inputs(0, 20)
    with pytest.raises(ValueError, match="lookahead"):
        choose_frames(index, features, loudness, lookahead=MAX_LOOKAHEAD + 0.1)
    # No lookahead at all still gives a frame with a face for every output frame.
    frames = choose_frames(index, features, loudness, lookahead=0.0)
    assert len(frames) == 20 and index.face[frames].all()


def test_mouth_measures_are_the_articulation_measures(katie: Footage, media: Path) -> None:
    """Opening and width are heygem.eval's (the split-time protocol's), frame for frame."""
    from heygem.eval import mouth_measures as eval_measures

    opening, width, _ = eval_measures(media / "sadtalker/WDA_KatieHill_000.mp4")
    assert np.allclose(katie.mouth[:, 0], opening, atol=1e-5)
    assert np.allclose(katie.mouth[:, 1], width, atol=1e-5)
    assert (katie.mouth[:, 2:] > 0).all()  # lip heights


def test_the_least_costs_come_in_the_order_of_a_stable_sort_whatever_the_ties() -> None:
    """The choice is deterministic: the k least costs of each frame are taken by a partition, and must be the
    same frames, in the same order, as a stable full sort gives, ties (and forbidden frames) included."""
    from heygem.selection import _smallest

    rng = np.random.default_rng(7)
    for trial in range(60):
        rows, columns, k = int(rng.integers(1, 40)), int(rng.integers(1, 200)), int(rng.integers(1, 50))
        costs = (rng.integers(0, 4, (rows, columns)).astype(float) if trial % 2 else
                 rng.normal(size=(rows, columns)))
        costs[rng.random((rows, columns)) < 0.3] = np.inf
        assert np.array_equal(_smallest(costs, k), np.argsort(costs, axis=1, kind="stable")[:, :k]), trial
