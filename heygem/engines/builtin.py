"""The built-in engine: no downloaded weights, the mouth re-animated from the person's own footage.

An optical-flow morph between the person's own key mouths ("MikeTalk", Ezzat and Poggio 2000, and its
multidimensional morphable model), chosen after measuring three methods (../shared/research/builtin-engine.md):

* The pipeline hands ``start`` the presenter study (heygem.study: the person's closed, half-open, open,
  spread and rounded mouths, moved into one canonical face frame, kept per video) and the mouth shapes of
  the speech (heygem.speech: per output frame an opening and a spread from the recognised sounds, closures
  on m/b/p, rounding on o/u/w, loudness scaling the opening). A class the footage lacks (a spread or rounded
  mouth, or any open one in a photo) is made from its neighbours on the line of openings by a smooth warp.
* Dense optical flow (OpenCV DIS) links the closed key to every other key. Each frame's (opening, spread)
  becomes weights over the keys; the flows are mixed by those weights into one shape, every key is warped
  to it, and their pixels are mixed by the same weights (teeth and lips stay the person's own); the mix is
  then widened or narrowed to the width the frame's spread asks for, not the one its keys happen to have.
* ``paint`` (the pipeline's call; ``synthesize`` does the same on crops alone): per frame, the face mesh
  (tracked from the previous crop) gives the similarity transform canonical -> crop, and the crop's own
  scale carries it on to the frame; the morph is warped into the frame at its own resolution, matched in
  colour to the skin around the mouth, and blended through a soft mask over lips, mouth interior and chin
  (never the nose). Every pixel outside that mask is the frame's own, unchanged; a frame without landmarks
  is left as it was.

A photo (or footage whose mouth never opens) has no open mouth to borrow: the opening is made by pushing the
lower lip and jaw down with a smooth displacement field and painting a dark mouth interior between the lips,
and the lips are widened or narrowed for spread and rounded sounds. That path is simpler and looks less real.

``mouth_drive="loudness"`` keeps the engine as it was before phones (closed, half-open and open keys along
one line, driven by the voice band's loudness), to compare against.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import ClassVar

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from heygem import blend
from heygem.engines.alive import Alive
from heygem.engines.base import Engine, EngineDescription, EngineJob
from heygem.engines.footage_mouths import CORNER_SHARE, MouthPlacer, width_field
from heygem.engines.photo_mouth import (LOWER_TEETH, TEETH_COVER_EDGE, TEETH_EDGE_REACH, UPPER_TEETH, mouth_interior,
                                        shows_teeth, teeth_edge)
from heygem.errors import EngineError
from heygem.faces.landmarks import (
    CHIN,
    INNER_LIP,
    MOUTH_CORNERS,
    OUTER_LIP,
    eye_distance,
    get_face_mesh,
)
from heygem.faces.mesh_memo import MeshMemo
from heygem.footage import MIN_SECONDS as MIN_FOOTAGE_SECONDS, FootageStudy
from heygem.prefetch import Prefetch
from heygem.selection import (WIDTH_MIN_GAIN, FootageIndex, build_index, choose_frames, drawn_mouths, jaw_outline,
                              join_fades, mouth_measures, speech_motion_r)
from heygem.speech.frames import describe_speech, voice_distance
from heygem.speech.loudness import mouth_drive
from heygem.speech.phones import VISEMES, MouthShapes
from heygem.study import STABLE, PresenterStudy, similarity, tracked_points

log = logging.getLogger(__name__)

__all__ = ["BuiltinEngine"]

SUBNASALE = 2
CHEEKBONES = (50, 280)  # face mesh points on either cheekbone
UPPER_LIP_TOP = 0
LOWER_LIP_BOTTOM = 17
CHIN_POINTS = (176, 148, 152, 377, 400)
# Inner-lip loop split into its upper (left corner -> right corner) and lower (right -> left) halves.
INNER_UPPER = INNER_LIP[:11]
INNER_LOWER = INNER_LIP[10:] + INNER_LIP[:1]

# A spread or rounded key the footage lacks: the line of keys at SYNTHETIC_*_OPENING, stretched or squeezed sideways
# about its centre by this share (fading out away from the mouth, so the corners move about half as much); a
# rounded mouth also grows a little taller, as the lips push out.
SYNTHETIC_SPREAD = 0.40
SYNTHETIC_ROUND = -0.45
# Where on the line of openings (0 closed .. 1 open) the footage's own spread and rounded mouths lie, when it has
# them: 0.56 to 0.59 and 0.09 to 0.22 of the way on the shared clips. A spread "ee" shows the teeth a little.
SYNTHETIC_SPREAD_OPENING = 0.55
SYNTHETIC_ROUND_OPENING = 0.1
LEVELS = 33
COLOUR_SMOOTHING = 0.35  # share of the new colour offset taken per frame
SYNTHETIC_OPEN = 0.13  # photo path: how far the lower lip moves at full drive, over eye distance
UPPER_LIFT = 0.2  # photo path: how far the upper lip rises, as a share of the lower lip's drop
# Lips further apart than this (over eye distance) in a photo are closed for m, b, p and pauses; a closed mouth's
# read 0.006 on people_0, the parted lips of the shared Tom Hanks photo 0.05.
LIPS_APART = 0.02

# The speech's mouth shapes are scaled so that its widest openings reach the open key and its spread and
# rounding (about their typical value in this speech) reach the spread and rounded keys, as the loudness drive
# maps its own range onto the keys: phone targets are modest averages, and the keys are the person's extremes.
SHAPE_PERCENTILE = 95.0
MIN_SHAPE_RANGE = 0.3
# Share of the loudness drive in the opening: the sounds say when the lips close and how far each vowel opens,
# loudness how much effort the speaker puts in; each predicts real mouths better with the other on some
# speakers (../shared/research/articulation.md). Lips that must close (m b p, f v) stay closed.
LOUDNESS_SHARE = 0.5
CLOSURE_MAX_LOUDNESS = 0.6  # loudness drive (0..1) above which a recognised closure is not trusted
# Where a spread or rounded key cannot also give the opening asked for: the share of the opening kept.
OPENING_KEPT = 0.5
# The mouth's width is the sounds' to say. The keys' own widths tie it to the opening (a person's open key is
# often their widest mouth: Katie Hill's 26% wider than her closed one, Chantel's 29%), so the rendered width
# followed the opening and barely the spreading and rounding (the face mesh's width against the speech's spread
# r 0.26 to 0.52 on the shared clips). Each morph is now widened or narrowed about its centre to the person's
# neutral width (the mean of the closed, half-open and open keys') plus the spread times the way to their
# spread key or from their rounded key, at least WIDTH_MIN_GAIN of the neutral width: split-time width r over
# 36 halves 0.09 -> 0.15, better on 26 of them (bench/RESULTS.md, "The key mouths' width").
# (WIDTH_MIN_GAIN: heygem.selection's, which draws another voice's footage mouths the same way.)
WIDTH_MAX_CHANGE = 0.4  # the most a morph is widened or narrowed, as a share of its width


# The footage drive needs MIN_FOOTAGE_SECONDS of footage with a face, and a mouth that opens in it, to choose from.
MIN_FOOTAGE_OPENING = 0.04  # opening range (5th to 95th percentile, over eye distance)
# And a soundtrack that is that mouth's: a voice-over, a dub or music over the footage teaches the choice nothing
# and it chose mouths by noise, following the real mouth worse than the key mouths (bench/RESULTS.md, "A
# soundtrack that is not the mouth's"). Two signs of the footage's own voice, either is enough: its own fit
# foretells the mouth's opening on frames it has not seen (Ridge.held_out_r at least MIN_OWN_FIT), or the mouth
# moves while the voice speaks (``speech_motion_r`` at least MIN_SPEECH_MOTION). On the halves of 5 s or more of
# the shared clips with their own speech one or both held (fit 0.11-0.66 but one presenter's, whose mouth the
# mesh reads as a smile: -0.53..-0.33, her motion 0.36-0.48); with another voice laid over the same frames,
# neither held in 7 of 8 (fit -0.24..0.21, motion -0.59..0.13).
MIN_OWN_FIT = 0.1
MIN_SPEECH_MOTION = 0.2


def footage_problem(footage: FootageStudy | None, photo: bool) -> str | None:
    """Why the presenter's footage cannot give the mouths (a fallback code), or None when it can."""
    if footage is None or photo:
        return "footage_photo" if photo else "footage_none"
    found = footage.usable
    if found.sum() < MIN_FOOTAGE_SECONDS * footage.fps:
        return "footage_short"
    low, high = np.percentile(footage.openings[found], [5, 95])
    if high - low < MIN_FOOTAGE_OPENING:
        return "footage_still"
    if footage.features is None:
        return "footage_no_speech"
    return None


@threadpool_limits.wrap(limits=1, user_api="blas")
def footage_index(footage: FootageStudy) -> FootageIndex:
    """The footage study as ``heygem.selection`` chooses from it: every usable frame's mouth beside its own
    speech's features (a frame without a face, or a fade or flash, is never chosen)."""
    assert footage.features is not None and footage.loudness is not None
    points = footage.points.astype(np.float32)
    mouth = mouth_measures(points)
    mouth[~footage.usable] = np.nan
    return build_index(footage.features, mouth, footage.loudness, Fraction(footage.fps).limit_denominator(1001),
                       jaw=jaw_outline(points))


def sound_problem(index: FootageIndex, loudness: np.ndarray) -> str | None:
    """``footage_unmatched`` where the footage's soundtrack (``loudness``: its ``frame_loudness``) shows no sign
    of being its mouth's own voice (MIN_OWN_FIT, MIN_SPEECH_MOTION): a voice-over, a dub or music; else None."""
    fit = float(index.ridge.held_out_r[0])
    motion = speech_motion_r(index.mouth, loudness, index.fps)
    log.info("builtin engine: the footage's own speech foretells its mouth's opening at r %.2f (held out), its "
             "mouth moves with it at r %.2f", fit, motion)
    return None if fit >= MIN_OWN_FIT or motion >= MIN_SPEECH_MOTION else "footage_unmatched"


# On one BLAS thread: between the choice's many small products OpenBLAS's others spin, 0.4 s of CPU a minute of
# speech (over half the choice's own) that the decoding and encoding threads of the job had no use for.
@threadpool_limits.wrap(limits=1, user_api="blas")
def _choose_from_footage(job: EngineJob, index: FootageIndex) -> tuple[np.ndarray, np.ndarray]:
    """The studied footage frame to show for each output frame: chosen by the speech's sounds against the
    footage's own speech (``index``, ``footage_index``) and by its lip shapes, the more the shorter the footage
    (heygem.selection: one path for the whole speech, runs of real frames preferred, rest mouths in pauses); and
    (T, 2) the opening and width to draw each at (NaN: as filmed; towards what the footage's fit predicts for the
    own voice's sounds, another voice's loudness and lip shape: ``heygem.selection.drawn_mouths``)."""
    footage = job.footage
    assert footage is not None
    speech = describe_speech(job.samples, job.fps, job.frames, phones=job.phones)
    features, loudness, voice = speech.features, speech.loudness, speech.voice
    distance = None if footage.voice is None or voice is None else voice_distance(footage.voice, voice)
    log.info("builtin engine: the speech's voice is %s from the footage's", "unknown" if distance is None else
             f"{distance:.2f}")
    shown = None
    if job.shown is not None:  # the studied frame nearest each picture (the study may have skipped frames)
        shown = np.clip(np.searchsorted(footage.frames, job.shown), 0, len(footage.frames) - 1)
    lip_shape = None if job.shapes is None else job.shapes.spread[:job.frames]
    # No mouth drawn open where the key mouths close the lips (from a frame before an m, b or p is heard): one
    # timing of the closures for both drives.
    held_closed = None if job.shapes is None else job.shapes.viseme[:job.frames] == VISEMES.index("closed")
    chosen = choose_frames(index, features, loudness, voice_distance=distance, shown=shown, lip_shape=lip_shape)
    return chosen, drawn_mouths(index, chosen, features, loudness, voice_distance=distance, lip_shape=lip_shape,
                                held_closed=held_closed)


def studied_pictures(footage: FootageStudy, shown: np.ndarray | None) -> np.ndarray:
    """For each output frame, the studied frame that is its picture (``EngineJob.shown``), or -1 where the study
    did not keep that very frame (sampled footage) or the pictures are not known."""
    if shown is None:
        return np.zeros(0, np.int64)
    at = np.clip(np.searchsorted(footage.frames, shown), 0, len(footage.frames) - 1)
    return np.where(footage.frames[at] == shown, at, -1).astype(np.int64)


def keep_mesh_points(crops: Iterable[np.ndarray], memo: MeshMemo) -> None:
    """The points of a presenter's face crops in a job's order (every frame with a face, from the first), each
    tracked from the one before as ``paint`` tracks them, into ``memo``: the presenter's first job then finds
    them there instead of running the mesh."""
    mesh = get_face_mesh()
    previous = None
    for crop in crops:
        previous = tracked_points(mesh, crop, previous, BuiltinEngine.crop_margin, memo)


def _to_key_range(shapes: MouthShapes, loudness: np.ndarray) -> MouthShapes:
    """A copy of ``shapes`` (heygem.speech.MouthShapes) with opening and spread scaled to the keys' range, the
    opening mixed with the ``loudness`` drive (0..1 per frame)."""
    voiced = shapes.opening > 0.02
    opening, spread, viseme = shapes.opening.astype(np.float32), shapes.spread.astype(np.float32), shapes.viseme
    if voiced.any():
        top = max(float(np.percentile(opening[voiced], SHAPE_PERCENTILE)), MIN_SHAPE_RANGE)
        sounds = np.clip(opening / top, 0.0, 1.0)
        mixed = (1 - LOUDNESS_SHARE) * sounds + LOUDNESS_SHARE * loudness[: len(sounds)]
        # A closure the recogniser heard is kept only where the voice actually dips (lips shut on b/p stop the
        # sound, on m muffle it): a "b" recognised in the middle of a loud vowel is more likely a mistake.
        heard_shut = np.isin(shapes.viseme, [VISEMES.index("closed"), VISEMES.index("lip-teeth")])
        # (Held closures have an opening of 0, so "voiced" cannot tell them from pauses: the class does.)
        at_rest = shapes.viseme == VISEMES.index("rest")
        lips_shut = (heard_shut & (loudness[: len(sounds)] <= CLOSURE_MAX_LOUDNESS)) | at_rest
        opening = np.where(lips_shut, np.minimum(sounds, mixed), mixed)
        centred = spread - float(np.median(spread[voiced]))
        reach = max(float(np.percentile(np.abs(centred[voiced]), SHAPE_PERCENTILE)), MIN_SHAPE_RANGE)
        spread = np.where(voiced, np.clip(centred / reach, -1.0, 1.0), 0.0)
        # A closure not trusted is shown as the open mouth around it, and says so.
        untrusted = heard_shut & ~lips_shut
        viseme = np.where(untrusted, np.where(opening < 0.5, VISEMES.index("mid"), VISEMES.index("open")), viseme)
    return MouthShapes(viseme=viseme.astype(np.int8), opening=opening.astype(np.float32), spread=spread.astype(np.float32))


class _Key:
    """One key mouth in canonical space: the whole canonical crop and its landmarks."""

    def __init__(self, image: np.ndarray, points: np.ndarray, opening: float, frame: int) -> None:
        self.image, self.points, self.opening, self.frame = image, points, opening, frame


class BuiltinEngine(Engine):
    """Own-footage mouth morph, drawn into the frames; the face mesh is found on 256x256 crops with a
    quarter-box margin (room for the mesh)."""

    name: ClassVar[str] = "builtin"
    crop_size: ClassVar[int] = 256
    crop_margin: ClassVar[float] = 0.25
    batch_size: ClassVar[int] = 16
    wants_study: ClassVar[bool] = True
    wants_mel: ClassVar[bool] = False  # its mouths come from the study and the speech's sounds
    paints_frames: ClassVar[bool] = True  # the mouth at the frame's own resolution, the rest of it untouched

    def __init__(self) -> None:
        self.mesh = get_face_mesh()
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._reset()

    def _reset(self) -> None:
        self.drive = np.zeros(0, np.float32)
        self.shapes = None  # heygem.speech.MouthShapes, per output frame, when driven by the speech's sounds
        self.names: list[str] = []
        self.study_names: list[str] = []
        self.keys: list[_Key] = []
        # The key space (phones): per key its padded canonical image, the flow from the closed key to it, and
        # its place on the opening axis (0 closed .. 1 open); ``names`` says which is spread or rounded.
        self.key_images: list[np.ndarray] = []
        self.key_flows: list[np.ndarray] = []
        self.key_opening = np.zeros(0)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None  # pixel grid of the region the morphs cover
        self.pad_box = (0, 0, 0, 0)  # x0, y0, x1, y1 of the padded region the key space covers
        self.width_fields: dict[str, np.ndarray] = {}  # photo path: spread/rounded displacement over the ROI
        # The key space's widths: per key its corner width (canonical px); the person's neutral width and the
        # way to full spread and full rounding; the sideways displacement that widens the mouth by one unit.
        self.key_widths = np.zeros(0)
        self.width_target = (0.0, 0.0, 0.0)
        self.width_unit: np.ndarray | None = None
        self.photo = False
        self.own_teeth = False  # photo path: the photo shows its teeth, the mouth opens below them
        self.levels: np.ndarray | None = None  # (LEVELS, h, w, 3) float32 morphs of the canonical ROI
        self.round_levels: np.ndarray | None = None  # photo path: the same with the teeth hidden (rounded lips)
        self.teeth_reach = np.zeros(0, np.float32)  # photo path: (LEVELS, h, w) depth into the painted teeth
        self.roi = (0, 0, 0, 0)  # x0, y0, x1, y1 in canonical pixels
        self.mask: np.ndarray | None = None  # (h, w) float32 over the ROI
        self.ring: np.ndarray | None = None  # (h, w) float32: skin around the mouth, for colour matching
        self.canon_stable: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self.mesh_memo: MeshMemo | None = None  # the job's points found before (heygem.faces.mesh_memo)
        self.colour = blend.ColourMatch(COLOUR_SMOOTHING)  # the placed mouth matched to the skin around it
        self._counter = 0
        # The footage drive: a studied footage frame per output frame, placed by ``placer``; or why not.
        self.chosen: np.ndarray | None = None
        self.fades: tuple[np.ndarray, np.ndarray] = (np.zeros(0, np.int64), np.zeros(0))  # join_fades of chosen
        self.drawn = np.zeros((0, 2))  # the opening and width to draw each chosen mouth at (NaN: as filmed)
        self.pictures_studied = np.zeros(0, np.int64)  # the studied frame each output frame's picture is (-1: none)
        self.placer: MouthPlacer | None = None
        self.footage_frames = 0
        self.footage_resynced = False  # the footage's sound was out of step with its picture (FootageStudy.sound_lag)
        self.footage_fallback: str | None = None
        # A photo: "alive" (blinks and a slow head motion drawn over the mouth, heygem.engines.alive) or "still".
        self.motion: str | None = None
        self.alive: Alive | None = None
        self.job_timing: tuple[Fraction, int] = (Fraction(25), 0)  # the job's frame rate and frame count

    def description(self) -> EngineDescription:
        if not self.keys:  # not started yet, or no face with landmarks was studied: frames pass unchanged
            return EngineDescription(self.name)
        drive = "loudness" if self.shapes is None else "phones"
        if self.chosen is not None:
            return EngineDescription(self.name, mode="footage", drive=drive, units=self.footage_frames,
                                     fallbacks=("footage_resynced",) if self.footage_resynced else ())
        made = [name for name in self.names if name not in self.study_names]
        fallbacks = tuple(f"made_{name}" for name in made) + ((self.footage_fallback,) if self.footage_fallback else ())
        return EngineDescription(self.name, mode="photo" if self.photo else "morph", keys=tuple(self.names),
                                 drive=drive, fallbacks=fallbacks, motion=self.motion)

    def describe(self) -> str:
        about = self.description()
        if about.mode is None:
            return f"{self.name} (own-footage mouth morph)"
        drive = "speech sounds" if about.drive == "phones" else "loudness"
        if about.mode == "footage":
            return f"{self.name} (the presenter's own mouths, chosen from {about.units} frames of their footage by {drive})"
        if about.mode == "photo":
            motion = {"alive": "; blinks and a slow head motion added", "still": "; kept still but for the mouth"}
            return (f"{self.name} (photo: synthetic mouth opening, simpler than the own-footage morph; {drive}"
                    f"{motion.get(about.motion or '', '')})")
        return f"{self.name} (own-footage mouth morph, {len(about.keys)} keys: {', '.join(about.keys)}; {drive})"

    # ---------------------------------------------------------------------------------------------- start
    def start(self, job: EngineJob) -> None:
        started = time.perf_counter()
        self._reset()
        self.mesh_memo = job.mesh
        study = job.study
        if study is None:
            log.warning("builtin engine: no face with landmarks in %s; frames will pass through unchanged",
                        job.video.path.name)
            return
        self._take_study(study)
        if job.video.kind == "image":  # a video moves as filmed, even one whose mouth never opens
            self.motion = "still" if job.still else "alive"
            self.job_timing = (job.fps, job.frames)
        if job.shapes is None:  # the engine before phones: one line of openings driven by loudness
            self.drive = mouth_drive(job.samples, job.fps, job.frames)
            line = [i for i, name in enumerate(self.names) if name in ("closed", "half", "open")]
            self.keys = [self.keys[i] for i in line]
            self.names = [self.names[i] for i in line]
            if self.photo:
                self.keys, self.names = self.keys[:1], self.names[:1]
                self._build_photo_levels()
            else:
                self._build_video_levels()
        else:
            self.shapes = _to_key_range(job.shapes, mouth_drive(job.samples, job.fps, job.frames))
            self.drive = self.shapes.opening  # the opening asked of each frame, as with loudness
            if job.drive == "footage":
                self.footage_fallback = footage_problem(job.footage, self.photo)
                if self.footage_fallback is None:
                    index = footage_index(job.footage)
                    self.footage_fallback = sound_problem(index, job.footage.loudness)
                if self.footage_fallback is None:
                    self.chosen, self.drawn = _choose_from_footage(job, index)
                    self.fades = join_fades(self.chosen, job.footage.usable)
                    self.pictures_studied = studied_pictures(job.footage, job.shown)
                    self.placer = MouthPlacer(job.footage)
                    self.footage_frames = int(job.footage.usable.sum())
                    self.footage_resynced = job.footage.sound_lag != 0
                else:
                    log.info("builtin engine: footage drive not used (%s); the key mouths instead", self.footage_fallback)
            if self.chosen is None:  # the footage's own mouths need no key space
                self._build_key_space()
        log.info("builtin engine ready in %.2f s: %s", time.perf_counter() - started, self.describe())

    def _take_study(self, study: PresenterStudy) -> None:
        self.keys = [_Key(image, points, float(opening), int(frame)) for image, points, opening, frame
                     in zip(study.images, study.points, study.openings, study.frames)]
        self.names = list(study.names)
        self.study_names = list(study.names)  # the keys taken from the footage, in the order of ``keys``
        self.canon_stable = self.keys[0].points[list(STABLE)].copy()
        self.photo = study.photo

    # ----------------------------------------------------------------------------------------------- live
    def start_live(self, study: PresenterStudy) -> None:
        """Ready to draw mouths one frame at a time from shapes the caller works out as the speech arrives (a
        live session, heygem.live): the same key space as a job driven by phones, with no speech known yet."""
        started = time.perf_counter()
        self._reset()
        self._take_study(study)
        self.shapes = MouthShapes(np.zeros(0, np.int8), np.zeros(0, np.float32), np.zeros(0, np.float32))
        self._build_key_space()
        log.info("builtin engine ready for live frames in %.2f s: %s", time.perf_counter() - started, self.describe())

    @staticmethod
    def key_range(shapes: MouthShapes, loudness: np.ndarray) -> MouthShapes:
        """A speech's mouth shapes scaled to the key mouths as a job scales them (heygem.speech.stream's
        ``shape_map``)."""
        return _to_key_range(shapes, loudness)

    def face_points(self, crop: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray | None:
        """The face mesh of one ``crop_size`` crop (tracked from ``previous``), as ``paint`` finds it."""
        return self._landmarks(crop, previous)

    def draw_shape(self, image: np.ndarray, box: tuple[int, int, int, int], points: np.ndarray, opening: float,
                   spread: float) -> None:
        """Draws the mouth of (``opening``, ``spread``), in the key range, into ``image`` in place: the face at
        ``points`` (``face_points`` of the crop ``box`` of this image)."""
        x1, y1, x2, y2 = box
        size = self.crop_size
        to_frame = np.array([[(x2 - x1) / size, 0.0, x1], [0.0, (y2 - y1) / size, y1]])
        morph = self._key_space_morph(opening, spread) if self.key_images else self._photo_morph(opening, spread)
        self._render(image, points, morph, to_frame)

    def _build_region(self, lip_sets: list[np.ndarray], chin_sets: list[np.ndarray], points: np.ndarray) -> None:
        """The ROI, the soft mouth mask and the colour ring, in canonical pixels."""
        size = self.crop_size
        iod = eye_distance(points)
        lips = np.concatenate(lip_sets)
        chin = np.concatenate(chin_sets)
        hull_points = np.concatenate([lips, chin]).astype(np.float32)
        lo = np.floor(hull_points.min(0) - 0.45 * iod).astype(int)
        hi = np.ceil(hull_points.max(0) + 0.45 * iod).astype(int)
        x0, y0 = max(0, lo[0]), max(0, lo[1])
        x1, y1 = min(size, hi[0]), min(size, hi[1])
        self.roi = (x0, y0, x1, y1)
        h, w = y1 - y0, x1 - x0
        hard = np.zeros((h, w), np.uint8)
        hull = cv2.convexHull((hull_points - [x0, y0]).astype(np.int32))
        cv2.fillConvexPoly(hard, hull, 255)
        # Never above a line between the nose and the upper lip: the nose stays the person's own.
        top = points[SUBNASALE, 1] + 0.45 * (points[UPPER_LIP_TOP, 1] - points[SUBNASALE, 1]) - y0
        rows = np.arange(h)[:, None]

        def grown(pixels: float) -> np.ndarray:
            r = max(1, int(round(pixels)))
            return cv2.dilate(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))

        core = grown(0.06 * iod).astype(np.float32) / 255.0
        core[np.arange(h) < top] = 0.0
        sigma = max(1.0, 0.05 * iod)
        self.mask = cv2.GaussianBlur(core, (0, 0), sigma)
        self.mask[self.mask < 1e-3] = 0.0
        ring = (grown(0.22 * iod) > 0) & ~(grown(0.03 * iod) > 0)
        ring &= np.broadcast_to(rows >= top - 0.1 * iod, ring.shape)
        self.ring = ring.astype(np.float32)

    def _padded_roi(self) -> tuple[int, int, int, int]:
        """The ROI grown by a few pixels (within the crop): flows and warps see a little beyond it."""
        pad = 8
        x0, y0, x1, y1 = self.roi
        return max(0, x0 - pad), max(0, y0 - pad), min(self.crop_size, x1 + pad), min(self.crop_size, y1 + pad)

    def _build_video_levels(self) -> None:
        keys = self.keys
        lips = [k.points[list(OUTER_LIP)] for k in keys]
        lower = keys[0].points[LOWER_LIP_BOTTOM]
        chins = [lower + 0.7 * (k.points[list(CHIN_POINTS)] - lower) for k in keys]
        self._build_region(lips, chins, keys[0].points)
        x0, y0, x1, y1 = self.roi
        px0, py0, px1, py1 = self._padded_roi()
        images = [k.image[py0:py1, px0:px1].astype(np.float32) for k in keys]
        grays = [cv2.cvtColor(k.image[py0:py1, px0:px1], cv2.COLOR_BGR2GRAY) for k in keys]
        h, w = py1 - py0, px1 - px0
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        flows = []
        for i in range(len(keys) - 1):
            forward = self.dis.calc(grays[i], grays[i + 1], None)
            backward = self.dis.calc(grays[i + 1], grays[i], None)
            flows.append((forward, backward))
        # Openings of the keys, scaled to 0..1: drive level t lands on the segment whose keys bracket it.
        opens = np.array([k.opening for k in keys], np.float64)
        stops = (opens - opens[0]) / max(opens[-1] - opens[0], 1e-6)
        levels = np.empty((LEVELS, y1 - y0, x1 - x0, 3), np.float32)
        for li, t in enumerate(np.linspace(0.0, 1.0, LEVELS)):
            seg = int(np.clip(np.searchsorted(stops, t, side="right") - 1, 0, len(keys) - 2))
            a = float(np.clip((t - stops[seg]) / max(stops[seg + 1] - stops[seg], 1e-6), 0.0, 1.0))
            forward, backward = flows[seg]
            w0 = cv2.remap(images[seg], gx - a * forward[..., 0], gy - a * forward[..., 1], cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
            w1 = cv2.remap(images[seg + 1], gx - (1 - a) * backward[..., 0], gy - (1 - a) * backward[..., 1],
                           cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            morph = (1 - a) * w0 + a * w1
            levels[li] = morph[y0 - py0:y1 - py0, x0 - px0:x1 - px0]
        self.levels = levels

    def _build_key_space(self) -> None:
        """Flows from the closed key to every other key; a spread or rounded key the footage lacks is the line of
        keys at SYNTHETIC_*_OPENING, warped. A photo keeps the synthetic opening levels, with the width warp on
        top."""
        keys, names = self.keys, self.names
        closed = keys[0]
        if self.photo:
            self.keys = keys[:1]
            self._build_photo_levels(extra_lips=[self._warped_points(closed.points, a) for a in
                                                 (SYNTHETIC_SPREAD, SYNTHETIC_ROUND)])
            x0, y0, x1, y1 = self.roi
            gx, gy = np.meshgrid(np.arange(x1 - x0, dtype=np.float32), np.arange(y1 - y0, dtype=np.float32))
            self._grid = (gx, gy)  # over the ROI, where the photo's levels are
            origin = np.array([x0, y0], np.float32)
            self.width_fields = {"spread": width_field(closed.points - origin, SYNTHETIC_SPREAD, gx, gy),
                                 "rounded": width_field(closed.points - origin, SYNTHETIC_ROUND, gx, gy)}
            return
        lips = [k.points[list(OUTER_LIP)] for k in keys]
        lips += [self._warped_points(closed.points, a)[list(OUTER_LIP)] for name, a in
                 (("spread", SYNTHETIC_SPREAD), ("rounded", SYNTHETIC_ROUND)) if name not in names]
        lower = closed.points[LOWER_LIP_BOTTOM]
        chins = [lower + 0.7 * (k.points[list(CHIN_POINTS)] - lower) for k in keys]
        self._build_region(lips, chins, closed.points)
        self.pad_box = px0, py0, px1, py1 = self._padded_roi()
        h, w = py1 - py0, px1 - px0
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self._grid = (gx, gy)
        images = {name: k.image[py0:py1, px0:px1].astype(np.float32) for name, k in zip(names, keys)}
        grays = {name: cv2.cvtColor(k.image[py0:py1, px0:px1], cv2.COLOR_BGR2GRAY) for name, k in zip(names, keys)}
        flows = {"closed": np.zeros((h, w, 2), np.float32)}
        for name in names[1:]:
            if name == "open" and "half" in names:
                # Through the half-open key: two small steps follow the lips better than one large one.
                to_half = self._flow(grays, "closed", "half")
                half_to_open = self._flow(grays, "half", "open")
                flows[name] = to_half + cv2.remap(half_to_open, gx + to_half[..., 0], gy + to_half[..., 1],
                                                  cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            else:
                flows[name] = self._flow(grays, "closed", name)
        line = [n for n in ("closed", "half", "open") if n in images]
        self.key_images = [images[n] for n in line]
        self.key_flows = [flows[n] for n in line]
        self.names = line
        opens = {n: k.opening for n, k in zip(names, keys)}
        closed_open = opens["closed"]
        full = max(opens.get("open", closed_open) - closed_open, 1e-6)
        self.key_opening = np.array([np.clip((opens[n] - closed_open) / full, 0.0, 1.0) for n in line])
        origin = np.array([px0, py0], np.float32)
        for name, amount, opening in (("spread", SYNTHETIC_SPREAD, SYNTHETIC_SPREAD_OPENING),
                                      ("rounded", SYNTHETIC_ROUND, SYNTHETIC_ROUND_OPENING)):
            if name in names:
                continue
            # Made from the line of keys at the opening such a key has where footage shows one, then widened or
            # narrowed: the flow to it is the line's flow there plus the warp (both small and smooth).
            weights = self._line_weights(opening)
            field = width_field(closed.points - origin, amount, gx, gy)
            base, base_flow = self._mix(weights)
            images[name] = cv2.remap(base, gx - field[..., 0], gy - field[..., 1], cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE)
            flows[name] = base_flow + field
            opens[name] = closed_open + float(weights @ self.key_opening) * full
        order = [n for n in ("closed", "half", "open", "spread", "rounded") if n in images]
        self.key_images = [images[n] for n in order]
        self.key_flows = [flows[n] for n in order]
        self.names = order
        self.key_opening = np.array([np.clip((opens[n] - closed_open) / full, 0.0, 1.0) for n in order])
        self._build_widths(dict(zip(names, keys)), line, closed.points - origin, gx, gy)

    def _build_widths(self, keys: dict[str, _Key], line: list[str], closed: np.ndarray, gx: np.ndarray,
                      gy: np.ndarray) -> None:
        """Each key's corner width (a made key's from the line's points at its opening, warped as its image
        was), the width each spread asks for (WIDTH_MIN_GAIN), and the unit sideways displacement."""
        line_points = np.stack([keys[n].points for n in line])
        widths = []
        for name, opening in zip(self.names, self.key_opening):
            if name in keys:
                points = keys[name].points
            else:
                weights = self._line_weights(float(opening))[:len(line)]
                mixed = np.tensordot(weights, line_points, axes=1)
                points = self._warped_points(mixed, SYNTHETIC_SPREAD if name == "spread" else SYNTHETIC_ROUND)
            widths.append(float(np.linalg.norm(points[MOUTH_CORNERS[1]] - points[MOUTH_CORNERS[0]])))
        self.key_widths = np.array(widths)
        neutral = float(np.mean([widths[self.names.index(n)] for n in line]))
        least = WIDTH_MIN_GAIN * neutral
        self.width_target = (neutral, max(widths[self.names.index("spread")] - neutral, least),
                             max(neutral - widths[self.names.index("rounded")], least))
        # The corners lie where the displacement's bump has fallen to CORNER_SHARE of its peak.
        self.width_unit = width_field(closed, 1.0, gx, gy)[..., 0] / CORNER_SHARE

    def _flow(self, grays: dict[str, np.ndarray], a: str, b: str) -> np.ndarray:
        """Dense flow such that key ``a`` at p looks like key ``b`` at p + flow(p)."""
        return self.dis.calc(grays[a], grays[b], None)

    def _warped_points(self, points: np.ndarray, amount: float) -> np.ndarray:
        field = width_field(points, amount, points[:, 0:1].T, points[:, 1:2].T)[0]
        return points + field

    def _key_weights(self, opening: float, spread: float) -> np.ndarray:
        """Weights over the keys for a mouth shape: along the line of openings (closed, half, open) and towards
        the spread or the rounded key by ``|spread|``. Where the keys cannot make both (a wide-open rounded
        mouth when the person's rounded key is nearly shut), half of the difference goes to each: real rounded
        and spread sounds are less open, yet the opening is the more visible of the two."""
        side = "spread" if spread > 0 else "rounded"
        a = min(abs(spread), 1.0) if side in self.names else 0.0
        if a == 0:
            return self._line_weights(opening)
        side_open = float(self.key_opening[self.names.index(side)])
        feasible = a
        if side_open < 1:
            feasible = min(feasible, (1 - opening) / (1 - side_open))
        if side_open > 0:
            feasible = min(feasible, opening / side_open)
        return (1 - OPENING_KEPT) * self._side_weights(opening, side, a) + \
            OPENING_KEPT * self._side_weights(opening, side, max(feasible, 0.0))

    def _side_weights(self, opening: float, side: str, a: float) -> np.ndarray:
        """``a`` of the way to the ``side`` key, the rest on the line, aiming at ``opening`` overall."""
        side_open = float(self.key_opening[self.names.index(side)])
        line_opening = (opening - a * side_open) / (1 - a) if a < 1 else 0.0
        weights = (1 - a) * self._line_weights(line_opening)
        weights[self.names.index(side)] += a
        return weights

    def _line_weights(self, opening: float) -> np.ndarray:
        """Weights along the line of openings: between the two keys (closed, half, open) around ``opening``."""
        weights = np.zeros(len(self.names))
        line = [i for i, n in enumerate(self.names) if n in ("closed", "half", "open")]
        stops = self.key_opening[line]
        p = float(np.clip(opening, stops[0], stops[-1]))
        if len(line) == 1:
            weights[line[0]] = 1.0
            return weights
        seg = int(np.clip(np.searchsorted(stops, p, side="right") - 1, 0, len(line) - 2))
        t = (p - stops[seg]) / max(stops[seg + 1] - stops[seg], 1e-6)
        weights[line[seg]], weights[line[seg + 1]] = 1 - t, t
        return weights

    def _key_space_morph(self, opening: float, spread: float) -> np.ndarray:
        """The multidimensional morph: the keys' flows mixed into one shape, each key warped to it, their
        pixels mixed by the same weights; then widened or narrowed to the width ``spread`` asks for
        (WIDTH_MIN_GAIN)."""
        weights = self._key_weights(opening, spread)
        morph, _ = self._mix(weights)
        if self.width_unit is not None:
            mixed = float(weights @ self.key_widths) / max(float(weights.sum()), 1e-6)
            neutral, to_spread, to_round = self.width_target
            wanted = neutral + spread * (to_spread if spread > 0 else to_round)
            # (Bounded: a degenerate key must not tear the mouth apart; the shared presenters ask 19% at most.)
            amount = np.float32(np.clip(wanted / max(mixed, 1e-6) - 1.0, -WIDTH_MAX_CHANGE, WIDTH_MAX_CHANGE))
            if abs(amount) > 1e-3:
                gx, gy = self._grid
                morph = cv2.remap(morph, gx - amount * self.width_unit, gy, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = self.roi
        px0, py0, _, _ = self.pad_box
        return morph[y0 - py0:y1 - py0, x0 - px0:x1 - px0]

    def _mix(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The keys mixed by ``weights`` over the padded region: the image, and its flow from the closed key."""
        used = [i for i, w in enumerate(weights) if w > 1e-3]
        shape = sum(np.float32(weights[i]) * self.key_flows[i] for i in used)
        gx, gy = self._grid
        morph = np.zeros_like(self.key_images[0])
        for i in used:
            offset = self.key_flows[i] - shape
            morph += np.float32(weights[i]) * cv2.remap(self.key_images[i], gx + offset[..., 0], gy + offset[..., 1],
                                                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return morph / max(float(weights[used].sum()), 1e-6), shape

    def _photo_morph(self, opening: float, spread: float) -> np.ndarray:
        """A photo: the synthetic opening level, widened or narrowed by the width warp."""
        morph = self._level(opening)
        if spread < 0 and self.round_levels is not None:  # rounded: teeth hidden behind the pushed lips
            # Hidden from their free edges towards the lips (shorter teeth), not faded: a half-faded set of
            # teeth over the dark throat read as a grey blob (people_0's "oo" on 22% of her open frames).
            reach = self.teeth_reach[round(float(np.clip(opening, 0.0, 1.0)) * (LEVELS - 1))]  # the nearest level's
            teeth = ((1 + spread) / TEETH_COVER_EDGE + 0.5) - reach
            np.clip(teeth, 0.0, 1.0, out=teeth)
            hidden = self._level(opening, self.round_levels)
            morph = hidden + teeth[..., None] * (morph - hidden)
        if abs(spread) < 1e-3 or not self.width_fields:
            return morph
        field = abs(spread) * self.width_fields["spread" if spread > 0 else "rounded"]
        gx, gy = self._grid
        return cv2.remap(morph, gx - field[..., 0], gy - field[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _build_photo_levels(self, extra_lips: list[np.ndarray] = ()) -> None:
        key = self.keys[0]
        p = key.points
        iod = eye_distance(p)
        drop = SYNTHETIC_OPEN * iod
        lower = p[LOWER_LIP_BOTTOM]
        lips = [p[list(OUTER_LIP)], p[list(OUTER_LIP)] + [0.0, drop], *(e[list(OUTER_LIP)] for e in extra_lips)]
        chins = [lower + 0.7 * (p[list(CHIN_POINTS)] - lower) + [0.0, drop]]
        self._build_region(lips, chins, p)
        x0, y0, x1, y1 = self.roi
        h, w = y1 - y0, x1 - x0
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        upper = p[list(INNER_UPPER)]
        centre = p[list(INNER_LIP)].mean(0)
        half_width = max(np.linalg.norm(p[61] - p[291]) / 2, 1.0)
        chin_y = p[CHIN, 1]
        nose_y = p[SUBNASALE, 1]
        image = key.image.astype(np.float32)
        lip_colour = np.array(cv2.mean(key.image, self._poly_mask(p[list(OUTER_LIP)]))[:3], np.float32)
        skin_colour = self._skin_light(key.image, p)
        inner_lower = p[list(INNER_LOWER)]
        lower_order = np.argsort(inner_lower[:, 0])
        # The line the mouth opens at: the inner upper lip, or below the photo's own teeth where it shows them
        # (the inner lower lip, at the shadow under the teeth), so that they stay as photographed and the gap
        # opens under them.
        self.own_teeth = shows_teeth(key.image, p, skin_colour)
        if self.own_teeth:
            inner_lower = teeth_edge(key.image, inner_lower, TEETH_EDGE_REACH * iod)
        upper_line = np.interp(gx[0], *upper[np.argsort(upper[:, 0])].T).astype(np.float32)
        lower_line = np.interp(gx[0], *inner_lower[lower_order].T).astype(np.float32)
        lip_line = lower_line if self.own_teeth else upper_line
        # Lips apart in the photo (per column; on its teeth or not): the line of openings starts at lips
        # together, the lower lip raised as a jaw closes (m, b, p and pauses), and passes the photo as taken.
        own_gap = np.maximum(lower_line - upper_line, 0.0)
        if own_gap.max() < LIPS_APART * iod:
            own_gap[:] = 0.0
        # The lower lip stretches up over the teeth, the chin stays: the skin between them takes it up.
        lip_bottom = p[LOWER_LIP_BOTTOM, 1]
        lip_to_chin = 1.0 - blend.smoothstep((gy - lip_bottom) / max(chin_y - lip_bottom, 1.0))
        as_taken = float(own_gap.max() / (own_gap.max() + drop))  # where on the line the photo lies
        # Displacement in destination pixels: 0 above that line; below the opened gap the lower lip and jaw are
        # moved down by the full amount (fading out under the chin). In the gap the source is stretched, and
        # painted over by the mouth interior.
        wx = np.exp(-0.5 * ((gx - centre[0]) / (0.6 * half_width)) ** 2)
        below_chin = 1.0 - blend.smoothstep((gy - chin_y) / (0.35 * iod))
        lower_wx = np.exp(-0.5 * ((inner_lower[:, 0] - centre[0]) / (0.6 * half_width)) ** 2)
        inner_half = max(np.linalg.norm(p[78] - p[308]) / 2, 1.0)  # the inner lip corners: the opening's width
        levels = np.empty((LEVELS, h, w, 3), np.float32)
        # Painted teeth get a rounded twin of the levels with them hidden ("oo": the lips pushed forward cover
        # them), and how far into them each pixel lies, from the lip they grow from (0) to their free edge (1):
        # rounding hides them from the free edge back. A photo's own teeth are shown as photographed.
        painted = not self.own_teeth
        rounded = np.empty((LEVELS, h, w, 3), np.float32) if painted else None
        reach = np.ones((LEVELS, h, w), np.float32) if painted else None
        for li, level in enumerate(np.linspace(0.0, 1.0, LEVELS)):
            t = max(level - as_taken, 0.0) / (1.0 - as_taken)  # how far open beyond the photo
            gap = t * drop * wx
            dy = (gap * blend.smoothstep((gy - lip_line[None, :]) / np.maximum(gap, 1.0)) * below_chin).astype(np.float32)
            if level < as_taken:  # closing: rows from the raised lower lip down show what lay that far below
                rise = (1.0 - level / as_taken) * own_gap[None, :]
                dy -= (rise * blend.smoothstep(gy - (lower_line[None, :] - rise) + 0.5) * lip_to_chin).astype(np.float32)
            # The upper lip lifts a little as the mouth opens, the skin up to the nose with it.
            lift = UPPER_LIFT * gap
            dy -= np.where(gy < lip_line[None, :], lift * blend.smoothstep((gy - nose_y) / np.maximum(lip_line[None, :] - nose_y, 1.0)),
                           0.0).astype(np.float32)
            warped = cv2.remap(image, gx, gy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            levels[li] = warped
            if rounded is not None:
                rounded[li] = warped
            if t > 0:
                # The mouth interior: between the lifted line it opens at and the moved inner lower lip.
                opened = inner_lower[::-1] if self.own_teeth else upper  # left corner -> right corner
                opened_wx = np.exp(-0.5 * ((opened[:, 0] - centre[0]) / (0.6 * half_width)) ** 2)
                lifted = opened - np.stack([np.zeros_like(opened_wx), UPPER_LIFT * t * drop * opened_wx], 1)
                moved_lower = inner_lower + np.stack([np.zeros_like(lower_wx), t * drop * lower_wx], 1)
                poly = np.concatenate([lifted, moved_lower])
                alpha = self._poly_mask(poly - [x0, y0], (h, w)).astype(np.float32) / 255.0
                alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.8, 0.012 * iod))[..., None]
                moved_line = np.interp(gx[0], moved_lower[lower_order, 0], moved_lower[lower_order, 1]).astype(np.float32)
                geometry = (gx, gy, (lip_line - lift[0])[None, :], moved_line[None, :], float(centre[0]), inner_half, iod)
                inside = mouth_interior(geometry, t, lip_colour, skin_colour, teeth=painted)
                levels[li] = warped * (1 - alpha) + inside * alpha
                if rounded is not None and reach is not None:
                    hidden = mouth_interior(geometry, t, lip_colour, skin_colour, teeth=False)
                    rounded[li] = warped * (1 - alpha) + hidden * alpha
                    reach[li] = np.minimum((gy - geometry[2]) / (UPPER_TEETH * iod),
                                           (geometry[3] - gy) / (LOWER_TEETH * iod))
        self.levels = levels
        self.round_levels = rounded  # None: no painted teeth to hide
        # In the units the drawing compares it with (reach over the soft edge), so a frame spends one subtraction.
        self.teeth_reach = (np.zeros(0, np.float32) if reach is None
                            else np.clip(reach, 0.0, 1.0) / np.float32(TEETH_COVER_EDGE))

    def _skin_light(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The light on the face: the cheekbones' brighter pixels (BGR), as the mouth's inside is lit by it."""
        iod = eye_distance(points)
        mask = np.zeros(image.shape[:2], np.uint8)
        for cheek in CHEEKBONES:
            cv2.circle(mask, tuple(int(v) for v in np.round(points[cheek])), max(2, int(0.1 * iod)), 255, -1)
        pixels = image[mask > 0].astype(np.float32)
        if len(pixels) < 10:
            return np.array(cv2.mean(image)[:3], np.float32)
        brightness = pixels.mean(axis=1)
        return pixels[brightness >= np.percentile(brightness, 60)].mean(axis=0)

    def _poly_mask(self, polygon: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
        mask = np.zeros(shape or (self.crop_size, self.crop_size), np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
        return mask

    # ------------------------------------------------------------------------------------------ synthesize
    def _landmarks(self, crop: np.ndarray, previous: np.ndarray | None) -> np.ndarray | None:
        return tracked_points(self.mesh, crop, previous, self.crop_margin, self.mesh_memo)

    def _tracked(self, crops: np.ndarray) -> Prefetch:
        """The face mesh points of each crop in order, each tracked from the one before (as ``_previous``
        carries them from frame to frame), found in a thread of their own while the caller draws the frames
        already known: the mesh and the drawing both leave Python's lock while they work, so on two cores
        they overlap (a frame's points never depend on its drawing)."""

        def track(previous: np.ndarray | None) -> Iterator[np.ndarray | None]:
            for crop in crops:
                previous = self._landmarks(crop, previous)
                yield previous

        return Prefetch(track(self._previous), len(crops), "heygem-mesh")

    def synthesize(self, crops: np.ndarray, mel_chunks: np.ndarray, frame_indices: np.ndarray | None = None) -> np.ndarray:
        size = self.crop_size
        if not isinstance(crops, np.ndarray) or crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            raise EngineError(f"builtin needs face crops shaped (B, {size}, {size}, 3), got {getattr(crops, 'shape', crops)}")
        out = crops.copy()
        whole = (0, 0, size, size)
        self.paint(list(out), [whole] * len(out), crops, mel_chunks, frame_indices)
        return out

    def paint(self, images: list[np.ndarray], boxes: list[tuple[int, int, int, int]], crops: np.ndarray,
              mel_chunks: np.ndarray, frame_indices: np.ndarray | None = None) -> list[tuple[int, int, int, int] | None]:
        """The mouths drawn straight into the frames at their own resolution: the face mesh is found on the
        crop (its size is what the mesh tracks best at) and carried back to the frame's pixels."""
        if frame_indices is None:
            frame_indices = np.arange(self._counter, self._counter + len(crops))
        self._counter = int(frame_indices[-1]) + 1 if len(frame_indices) else self._counter
        drawn: list[tuple[int, int, int, int] | None] = [(0, 0, 0, 0)] * len(images)
        if self.levels is None and not self.key_images and self.chosen is None:
            return drawn
        tracked = self._tracked(crops) if self.motion is None else None
        mouths = self._footage_mouths(frame_indices) if self.chosen is not None and self.placer is not None else None
        try:
            for number, (image, box, crop, index) in enumerate(zip(images, boxes, crops, frame_indices)):
                if tracked is not None:
                    points = next(tracked)
                elif self._previous is None:
                    points = self._landmarks(crop, None)
                else:  # a photo: the same face in every frame, found once (tracking it again only made it wobble)
                    points = self._previous
                self._previous = points
                mouth = next(mouths) if mouths is not None else None
                if points is not None:
                    drawn[number] = self._paint_one(image, box, points, int(index), mouth, mouths is not None)
        finally:
            for ahead in (tracked, mouths):
                if ahead is not None:
                    ahead.close()
        return drawn

    def _footage_position(self, index: int) -> int:
        """Output frame ``index`` within the footage drive's choice (a frame past the speech's end: its last)."""
        return min(max(index, 0), len(self.chosen) - 1)

    def _footage_at(self, index: int) -> tuple[int, int, float, float, float]:
        """Output frame ``index``'s chosen studied frame, its join's fade (frame, weight), its opening and width."""
        at = self._footage_position(index)
        return (int(self.chosen[at]), int(self.fades[0][at]), float(self.fades[1][at]), float(self.drawn[at, 0]),
                float(self.drawn[at, 1]))

    def _footage_mouths(self, frame_indices: np.ndarray) -> Prefetch:
        """The footage drive's lower face of each of these output frames (``MouthPlacer.mouth``), made in a
        thread of their own ahead of the drawing, as the face mesh is: they need no picture, and their
        decoding, reopening and joins' flow leave Python's lock (2.3 ms of CPU a frame in the benchmark's 60 s job
        with another voice, off the drawing's thread)."""

        def make() -> Iterator[np.ndarray | None]:
            for index in frame_indices:
                chosen, fade_from, fade_weight, open_to, width_to = self._footage_at(int(index))
                yield self.placer.mouth(chosen, fade_from, fade_weight, open_to, width_to)

        return Prefetch(make(), len(frame_indices), "heygem-mouths")

    def _paint_one(self, image: np.ndarray, box: tuple[int, int, int, int], points: np.ndarray,
                   index: int, mouth: np.ndarray | None = None, made: bool = False) -> tuple[int, int, int, int] | None:
        """The mouth of output frame ``index`` drawn into ``image``, whose face crop ``box`` has the mesh ``points``
        (crop pixels); the rectangle drawn into (None: anywhere, a photo's head moved). ``mouth``, ``made``: the
        footage drive's lower face for it made ahead (``_footage_mouths``; None there: the studied frame has no
        face, and nothing is drawn), or not (made here)."""
        size = self.crop_size
        x1, y1, x2, y2 = box
        # The crop is the box resized to a square: a scale per axis back to the frame.
        to_frame = np.array([[(x2 - x1) / size, 0.0, x1], [0.0, (y2 - y1) / size, y1]])
        if self.chosen is not None and self.placer is not None:
            # The footage study's canonical frame was made from whole frames: place by the frame's points.
            in_frame = points @ to_frame[:, :2].T + to_frame[:, 2]
            at = self._footage_position(index)
            if made and mouth is None:  # not made here: the thread making the next ones keeps the decoder's state
                return (0, 0, 0, 0)
            chosen, fade_from, fade_weight, open_to, width_to = self._footage_at(index)
            shown = int(self.pictures_studied[at]) if at < len(self.pictures_studied) else -1
            drawn = self.placer.place(image, in_frame.astype(np.float32), chosen, fade_from, fade_weight, open_to,
                                      shown, width_to, mouth)
        else:
            drawn = self._render(image, points, self._morph(index), to_frame)
        if self.motion == "alive":  # after the mouth: it moves with the head
            self._move(image, points @ to_frame[:, :2].T + to_frame[:, 2], index)
            return None
        return drawn

    def _move(self, image: np.ndarray, points: np.ndarray, index: int) -> None:
        """Blinks and head motion of frame ``index``, drawn into ``image``; built once per job from the photo's
        first face (``points`` in frame pixels)."""
        if self.alive is None:
            self.alive = Alive(points, image.shape[:2], *self.job_timing)
        self.alive.apply(image, index)

    def _morph(self, index: int) -> np.ndarray:
        """The canonical ROI of output frame ``index``: the key space at the speech's mouth shape, or the
        loudness level along the line of openings."""
        if self.shapes is not None:
            at = min(max(index, 0), len(self.shapes.opening) - 1)
            opening, spread = float(self.shapes.opening[at]), float(self.shapes.spread[at])
            if self.key_images:
                return self._key_space_morph(opening, spread)
            return self._photo_morph(opening, spread)
        level = float(self.drive[min(max(index, 0), len(self.drive) - 1)]) if len(self.drive) else 0.0
        return self._level(level)

    def _level(self, level: float, levels: np.ndarray | None = None) -> np.ndarray:
        levels = self.levels if levels is None else levels
        position = float(np.clip(level, 0.0, 1.0)) * (LEVELS - 1)
        low = int(np.floor(position))
        high = min(low + 1, LEVELS - 1)
        frac = position - low
        return levels[low] if frac < 1e-3 else (1 - frac) * levels[low] + frac * levels[high]

    def _render(self, picture: np.ndarray, points: np.ndarray, morph: np.ndarray,
                to_frame: np.ndarray) -> tuple[int, int, int, int]:
        """Draws the canonical ``morph`` into ``picture`` (in place) in the pose of the face at ``points`` (crop
        pixels); ``to_frame``: the 2x3 affine from crop to picture pixels. The keys were taken from crops, so
        the canonical frame is a crop's: similarity to the crop, then the crop's own scale per axis."""
        x0, y0, _, _ = self.roi
        to_crop = similarity(self.canon_stable, points[list(STABLE)])
        affine = np.hstack([to_frame[:, :2] @ to_crop[:, :2], (to_frame[:, :2] @ to_crop[:, 2] + to_frame[:, 2])[:, None]])
        # The ROI sits at (x0, y0) in canonical space: fold that offset into the transform.
        affine[:, 2] += affine[:, :2] @ np.array([x0, y0], np.float64)
        return blend.warp_into(picture, np.clip(morph + 0.5, 0, 255).astype(np.uint8), self.mask, self.ring, affine,
                               self.colour)
