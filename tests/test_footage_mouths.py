"""heygem.engines.footage_mouths: a mouth chosen from the presenter's own footage, moved into another frame,
shows that mouth (as the face mesh measures it) and leaves the rest of the picture as it was."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import MEDIA, make_clip
from heygem.engines.footage_mouths import MouthPlacer
from heygem.faces.landmarks import LandmarkTracker, mouth_opening
from heygem.footage import study_footage
from heygem.media.probe import probe
from heygem.media.video import iter_frames
from heygem.settings import DetectionOptions


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory):
    clip = make_clip(tmp_path_factory.mktemp("mouths") / "talking.mp4", "-i", str(MEDIA / "videoretalking/1.mp4"),
                     "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-an")
    info = probe(clip)
    study = study_footage(info, DetectionOptions())
    frames = list(iter_frames(info, info.fps))
    return study, frames


def _points(image: np.ndarray) -> np.ndarray:
    return LandmarkTracker()(image)


def _placed(placer: MouthPlacer, picture: np.ndarray, index: int, shown: int) -> np.ndarray:
    """Studied frame ``index``'s mouth drawn on ``picture``, which is studied frame ``shown``."""
    out = picture.copy()
    placer.place(out, _points(picture), index, shown=shown)
    return out


def test_a_frame_given_its_own_mouth_is_left_almost_as_it_was(footage) -> None:
    study, frames = footage
    index = int(np.argmax(study.openings))
    picture = frames[index]
    placed = _placed(MouthPlacer(study), picture, index, index)
    changed = np.abs(placed.astype(np.int16) - picture.astype(np.int16)).max(axis=2) > 0
    assert changed.any()
    rows, cols = np.nonzero(changed)
    points = _points(picture)
    # Only the lower face is touched: nothing above the nose's tip, nothing beyond the face's sides.
    assert rows.min() > points[1, 1] - 2 and points[:, 0].min() - 2 < cols.min() and cols.max() < points[:, 0].max() + 2
    difference = np.abs(placed.astype(np.float32) - picture.astype(np.float32))[changed]
    assert difference.mean() < 6.0  # JPEG and two resamplings, no more


def test_the_placed_mouth_is_the_chosen_one_in_the_pictures_pose(footage) -> None:
    study, frames = footage
    most_open, most_closed = int(np.argmax(study.openings)), int(np.argmin(study.openings))
    placer = MouthPlacer(study)
    closed_picture = frames[most_closed]
    opened = _placed(placer, closed_picture, most_open, most_closed)
    assert mouth_opening(_points(opened)) > max(0.6 * study.openings[most_open],
                                                 study.openings[most_closed] + 0.05)
    placer.reset()
    open_picture = frames[most_open]
    closed = _placed(placer, open_picture, most_closed, most_open)
    assert mouth_opening(_points(closed)) < study.openings[most_closed] + 0.3 * (study.openings[most_open] -
                                                                                 study.openings[most_closed])


def test_a_mouth_is_drawn_as_open_as_asked_within_its_own_reach(footage) -> None:
    """``open_to`` draws the filmed mouth more or less open (the face mesh reads the change), the same when
    asked its own opening; a nearly closed mouth is opened by at most its own gap (no lips torn apart)."""
    study, frames = footage
    openings = np.where(study.usable, study.openings, np.nan)
    middle = int(np.nanargmin(np.abs(openings - np.nanpercentile(openings, 70))))
    picture, filmed = frames[middle], float(study.openings[middle])
    points = _points(picture)

    def drawn(index: int, open_to: float) -> tuple[np.ndarray, float]:
        out = picture.copy()
        MouthPlacer(study).place(out, points, index, open_to=open_to, shown=middle)
        return out, mouth_opening(_points(out))

    as_filmed, read = drawn(middle, float("nan"))
    same, read_same = drawn(middle, filmed)
    _, read_wider = drawn(middle, filmed + 0.03)
    _, read_narrower = drawn(middle, filmed - 0.03)
    print(f"filmed {filmed:.3f}, read {read:.3f}; asked +0.03: {read_wider:.3f}, -0.03: {read_narrower:.3f}")
    assert np.array_equal(as_filmed, same) and read_same == read
    assert read_wider > read + 0.015 and read_narrower < read - 0.01  # measured +0.027, -0.015
    shut = int(np.nanargmin(openings))
    _, read_shut = drawn(shut, float("nan"))
    _, read_forced = drawn(shut, float(study.openings[shut]) + 0.1)
    assert read_forced < read_shut + 1.5 * float(study.openings[shut]) + 0.01


def test_a_mouth_is_drawn_as_wide_as_asked(footage) -> None:
    """``width_to`` draws the filmed mouth wider or narrower about its centre: its corners move out or in by the
    change (the dense flow from the mouth as filmed, at the corners), the same when asked its own width, and no
    further than WIDTH_MAX_CHANGE. (The face mesh reads little of it: it finds a mouth's corners mostly from the
    face around them.)"""
    import cv2

    from heygem.faces.landmarks import MOUTH_CORNERS

    study, frames = footage
    widths = np.where(study.usable, study.widths, np.nan)
    middle = int(np.nanargmin(np.abs(widths - np.nanmedian(widths))))
    picture, filmed = frames[middle], float(study.widths[middle])
    points = _points(picture)
    corners = points[list(MOUTH_CORNERS)]
    span = float(corners[1, 0] - corners[0, 0])

    def drawn(width_to: float) -> np.ndarray:
        out = picture.copy()
        MouthPlacer(study).place(out, points, middle, shown=middle, width_to=width_to)
        return out

    as_filmed = drawn(float("nan"))
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def corners_moved(width_to: float) -> float:  # how much wider the corners lie, over the mouth's width
        grey = [cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) for image in (as_filmed, drawn(width_to))]
        moves = flow.calc(grey[0], grey[1], None)
        (left, _), (right, _) = (moves[int(round(y)), int(round(x))] for x, y in corners)
        return float(right - left) / span

    assert np.array_equal(as_filmed, drawn(filmed))
    wider, narrower, far = corners_moved(1.2 * filmed), corners_moved(0.8 * filmed), corners_moved(2.0 * filmed)
    print(f"corners moved apart by {wider:+.3f} (asked +0.2), {narrower:+.3f} (-0.2), {far:+.3f} (+1.0, at most 0.25)")
    assert 0.08 < wider < 0.3 and -0.3 < narrower < -0.08  # measured +0.12 and -0.16 (the flow smooths them)
    assert far < 0.35  # measured +0.15


@pytest.fixture(scope="module")
def turning(tmp_path_factory: pytest.TempPathFactory):
    """Katie Hill's first two seconds: she faces the camera, then turns her head."""
    clip = make_clip(tmp_path_factory.mktemp("turning") / "turning.mp4", "-i",
                     str(MEDIA / "sadtalker/WDA_KatieHill_000.mp4"), "-t", "2", "-c:v", "libx264", "-preset",
                     "ultrafast", "-crf", "12", "-an")
    info = probe(clip)
    return study_footage(info, DetectionOptions()), list(iter_frames(info, info.fps))


def test_a_mouth_from_a_turned_head_brings_no_second_jaw_line(turning, monkeypatch) -> None:
    """A lower face from a moment whose head was turned is narrower than the frontal picture's: the shading
    along its own jaw line lies inside the picture's face (in the output, a second jaw line). It stays out:
    along it the picture keeps its own pixels (its jaw moved to the chosen chin, ``jaw_moved``), which the chosen
    face drawn up to its jaw line changed."""
    from heygem.engines import footage_mouths
    from heygem.faces.landmarks import JAW
    from heygem.selection import jaw_outline
    from heygem.study import STABLE, similarity

    study, frames = turning
    jaw = jaw_outline(study.points.astype(np.float32))
    apart = np.sqrt(((jaw - jaw[0]) ** 2).sum(2).mean(1))
    turned = int(np.nanargmax(apart))
    assert apart[turned] > 0.2  # measured 0.33
    picture = frames[0]
    points = _points(picture)

    jaw_moved = footage_mouths.jaw_moved

    def along_own_jaw(inset: int) -> float:
        monkeypatch.setattr(footage_mouths, "JAW_INSET", inset)
        out = picture.copy()
        before_the_mouth = []

        def moving(image: np.ndarray, *args):
            moved = jaw_moved(image, *args)
            before_the_mouth.append(image.copy())
            return moved

        monkeypatch.setattr(footage_mouths, "jaw_moved", moving)
        drawn = MouthPlacer(study).place(out, points, turned, shown=0)
        assert drawn != (0, 0, 0, 0)
        # The chosen frame's jaw line where the placement puts it in the picture, its sides only.
        to_picture = similarity(study.points[turned].astype(np.float32)[list(STABLE)], points[list(STABLE)])
        own = study.points[turned].astype(np.float32)[list(JAW)] @ to_picture[:, :2].T + to_picture[:, 2]
        front = footage_mouths._CHIN_FRONT
        sides = [i for i in range(len(JAW)) if not front[0] <= i <= front[1]]
        diff = np.abs(out.astype(np.float32) - before_the_mouth[0].astype(np.float32)).max(axis=2)
        return float(np.mean([diff[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3].mean() for x, y in own[sides]]))

    inset, whole = along_own_jaw(footage_mouths.JAW_INSET), along_own_jaw(0)
    print(f"along the chosen jaw line: {inset:.2f} grey levels drawn in, {whole:.2f} without the inset")
    assert inset < 0.5 and inset < 0.25 * whole  # measured 0.14 and 1.97 grey levels


def test_a_join_shows_one_mouth_between_the_two_not_both(turning) -> None:
    """Halfway through a join from Katie Hill's widest-open mouth (teeth showing) to her most closed one, the
    in-between frame is one mouth: its lips' edges as strong as the weaker of the two mouths'. A cross-fade
    shows both at half strength (the teeth through the closed lips, each lip's outline twice): its edges read
    0.88 of the weaker mouth's here."""
    import cv2

    from heygem.engines.footage_mouths import between, join_flow
    from heygem.faces.landmarks import OUTER_LIP
    from heygem.footage import PATCH_BOX

    study, _ = turning
    openings = np.where(study.usable, study.openings, np.nan)
    wide, shut = int(np.nanargmax(openings)), int(np.nanargmin(openings))
    a, b = study.patch(wide), study.patch(shut)
    lips = np.vstack([study.points[i].astype(np.float32)[list(OUTER_LIP)] for i in (wide, shut)]) - PATCH_BOX[:2]
    (x0, y0), (x1, y1) = lips.min(0).astype(int) - 4, lips.max(0).astype(int) + 4

    def edges(image: np.ndarray) -> float:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        strength = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        return float(np.percentile(strength[y0:y1, x0:x1], 98))

    weaker = min(edges(a), edges(b))
    morphed = between(a, b, 0.5, join_flow())
    faded = cv2.addWeighted(a, 0.5, b, 0.5, 0.0)
    print(f"edges: the two {edges(a):.0f}, {edges(b):.0f}; morphed {edges(morphed):.0f}, "
          f"cross-faded {edges(faded):.0f}")
    assert edges(morphed) > 0.95 * weaker  # measured 0.99 (1.01 with the flow's variational refinement)
    assert edges(faded) < 0.92 * weaker  # what the morph is for: the plain fade does show two mouths here
    # Drawn into a picture (as a join's frame is), the face mesh reads it between the two: more open than the
    # shut mouth, less than the wide one.
    study_frames = turning[1]
    picture = study_frames[shut]
    points = _points(picture)

    def opening(index: int, fade_from: int = -1, weight: float = 0.0) -> float:
        out = picture.copy()
        MouthPlacer(study).place(out, points, index, fade_from, weight, shown=shut)
        return mouth_opening(_points(out))

    shut_opening, wide_opening, halfway = opening(shut), opening(wide), opening(wide, shut, 0.5)
    print(f"openings: shut {shut_opening:.3f}, halfway {halfway:.3f}, wide {wide_opening:.3f}")
    span = wide_opening - shut_opening
    assert shut_opening + 0.2 * span < halfway < wide_opening - 0.2 * span


def test_a_closed_mouth_on_an_open_jaw_lifts_the_jaw_no_second_chin_shows(turning, monkeypatch) -> None:
    """Katie Hill's highest chin (a closed mouth) drawn on her lowest (her jaw dropped): the picture's jaw is
    lifted to the chosen chin, so the picture's own chin (its edge against the neck, across the chin's front)
    no longer shows under the chosen one as a second chin; left where it was, it does."""
    import cv2

    from heygem.engines import footage_mouths
    from heygem.engines.footage_mouths import EYE_SPAN
    from heygem.faces.landmarks import CHIN, JAW

    study, frames = turning
    chins = np.where(study.usable, study.points[:, CHIN, 1], np.nan)
    wide, shut = int(np.nanargmax(chins)), int(np.nanargmin(chins))
    assert study.openings[wide] > study.openings[shut] + 0.1  # measured 0.22 and 0.04
    picture = frames[wide]
    points = _points(picture)
    above = (study.points[wide][CHIN, 1] - study.points[shut][CHIN, 1]) / EYE_SPAN
    print(f"the chosen chin {above:.2f} eye distances above the picture's")
    assert above > 0.15  # measured 0.30
    front = footage_mouths._CHIN_FRONT
    chin_front = points[list(JAW)][front[0]:front[1] + 1]

    def chin_edge(image: np.ndarray) -> float:  # the up-down contrast along the picture's chin
        grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.5)
        down = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
        return float(np.mean([down[int(y) - 2:int(y) + 3, int(x) - 1:int(x) + 2].max() for x, y in chin_front]))

    def placed() -> np.ndarray:
        out = picture.copy()
        MouthPlacer(study).place(out, points, shut, shown=wide)
        return out

    lifted = chin_edge(placed())
    monkeypatch.setattr(footage_mouths, "jaw_moved", lambda picture, points, chin_to: (points, (0, 0, 0, 0)))
    left = chin_edge(placed())
    own = chin_edge(picture)
    print(f"the picture's chin edge: {own:.0f}; drawn with its jaw lifted {lifted:.0f}, left {left:.0f}")
    assert lifted < 0.5 * own and lifted < 0.6 * left


def test_a_mouth_made_ahead_in_another_thread_draws_the_same_pixels(footage) -> None:
    """The engine makes each frame's lower face (decoded, reopened, widened, a join's two mouths morphed) in a
    thread ahead of the drawing: the frames come out exactly as when all is done in the drawing."""
    import threading

    study, frames = footage
    openings = np.where(study.usable, study.openings, np.nan)
    wide, shut = int(np.nanargmax(openings)), int(np.nanargmin(openings))
    picture = frames[shut]
    points = _points(picture)
    asked = (wide, shut, 1 / 3, float(openings[wide]) * 0.8, float(study.widths[wide]) * 1.1)
    inline = picture.copy()
    MouthPlacer(study).place(inline, points, wide, shut, asked[2], asked[3], shut, asked[4])
    made: list[np.ndarray | None] = []
    ahead = MouthPlacer(study)
    thread = threading.Thread(target=lambda: made.append(ahead.mouth(*asked)))
    thread.start()
    thread.join()
    assert made[0] is not None
    drawn = picture.copy()
    ahead.place(drawn, points, wide, shut, asked[2], asked[3], shut, asked[4], mouth=made[0])
    assert np.array_equal(drawn, inline)
    assert not np.array_equal(drawn, picture)
