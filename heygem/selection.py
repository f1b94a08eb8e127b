"""Choosing a person's own footage frames for a new speech (concatenative visual speech: Video Rewrite, Bregler
et al. 1997; unit selection, Cosatto and Graf 2000).

The footage index describes every frame of a presenter's footage by the speech features of that moment
(``heygem.speech.frames``, from the footage's own speech), its real mouth (face-mesh measures over the eye
distance, ``mouth_measures``) and whether it is a rest mouth (closed, in a pause of the footage's speech).

``choose_frames`` picks one footage frame per output frame for the whole speech by dynamic programming
(Viterbi) over a few candidates per frame:

- target cost: how far the footage frame's sounds are from the new speech's (weighted squared distance of the
  standardised features, each feature group weighted equally), and/or how far its real mouth is from the mouth
  predicted for the new speech from this person's footage (``SelectionOptions.target``): half a ridge
  regression fitted on the footage, half the mean mouth of the footage frames whose sounds are nearest
  (``neighbours``), its width also drawn towards the speech's lip shape (the phone table's rounded "oo" and
  spread "ee", ``heygem.speech.phones.mouth_shapes``) by as much as the footage is short
  (``SelectionOptions.lip_shape_seconds``); plus a loudness prior: the footage frame's opening against the
  person's opening at the quantile the speech frame's loudness has in its speech. Another voice or language
  than the footage's lands far from the footage's sounds, and then loudness must lead: the prior's weight
  grows with the distance between the footage's voice and the speech's
  (``heygem.speech.frames.voice_distance``; bench/RESULTS.md, "The footage drive, second round"). The
  person's own voice needs no prior: what their own sounds predict already carries their loudness, and the
  prior only pulls towards a cruder guess (bench/RESULTS.md, "The person's own voice without the loudness
  prior");
- join cost: 0 for the footage's own next frame (real motion), otherwise a jump penalty plus the squared mouth
  shape jump (standardised measures), so runs of consecutive real frames are preferred; and, given the
  footage's jaw lines (``jaw_outline``), the squared excess of the jaw line's move over the footage's own
  frame-to-frame steps (a head turned otherwise: the chin jumps, a cross-fade shows two jaw lines);
- pose cost: given which footage frame each output frame is drawn on, the squared excess of the chosen frame's
  jaw line's distance from that picture's over a tolerance (a mouth from a head turned otherwise looks too
  wide or too narrow for the head); nothing within it, so the picture's old mouth gains nothing;
- candidates: the ``k`` frames of least target cost, plus the next frames of the ``beam`` best paths so far
  (so a run can continue even where its next frame is not among the k best);
- drawing (``drawn_openings``, ``drawn_widths``): with another voice each chosen mouth is drawn at the opening
  the speech's loudness asks (``heygem.engines.footage_mouths.reopened`` moves its lips), except on its m/b/p
  and in pauses, since the path meets that opening only as closely as the footage's frames in the picture's
  pose allow; with the person's own voice part of the way to the mouth the target predicts for its sounds
  (``fitted_mouth``), which follows their real mouth closer than the chosen frames' own (bench/RESULTS.md, "The
  own voice's mouths drawn towards the fit");
- silence: output frames in a pause of the new speech (``MIN_PAUSE_SECONDS`` of silence by its normalised
  loudness) may only show rest frames, and a run of rest frames continues only into rest frames: the person's
  old speech never shows in a pause.

``lookahead`` (seconds of speech past the frame being made, at most ``MAX_LOOKAHEAD``): a receding-horizon
choice for a live presenter: frame t is committed from the path that is best over frames t .. t + h, starting
from the frame committed at t - 1, where h leaves room for the features' own context reach (their largest
positive offset). Committed frames form a path, so the join costs apply to what is shown. The features
themselves are given for the whole speech (phones recognised and loudness and cepstra normalised over all of
it); a live session must compute them incrementally (running normalisation, streaming phones): not built yet.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from heygem.speech.frames import LOUDNESS_RANGE, FeatureOptions, feature_groups, lip_closure

__all__ = ["FADE_FRAMES", "MAX_LOOKAHEAD", "MOUTH_MEASURES", "WIDTH_MIN_GAIN", "FootageIndex", "SelectionOptions",
           "build_index", "choose_frames", "drawn_mouths", "drawn_openings", "drawn_widths", "fit_ridge", "fitted_mouth", "jaw_outline",
           "join_fades", "mouth_measures", "predict_mouth", "run_lengths", "speech_motion_r"]

log = logging.getLogger(__name__)

MOUTH_MEASURES = ("opening", "width", "upper_lip", "lower_lip")
MAX_LOOKAHEAD = 0.3  # seconds
FADE_FRAMES = 1  # output frames on each side of a join over which the two runs cross-fade
MIN_PAUSE_SECONDS = 0.15  # silence at least this long is a pause (shorter: a stop closure inside a word)
SILENT_LEVEL = LOUDNESS_RANGE[0] + 0.05  # normalised loudness at or below which a frame is silent
MIN_REST_FRAMES = 5
NEIGHBOUR_GAP_SECONDS = 0.5  # a footage frame's own neighbours in time are not its neighbours in sound
NEIGHBOUR_QUERIES = 1500  # footage frames the neighbour prediction's spread is measured on (evenly spaced)
JAW_FREE_PERCENTILE = 95  # of the footage's own frame-to-frame jaw steps: a join may move the jaw that far free
REST_SHARE = 0.1  # without enough quiet closed frames, the most closed tenth of the footage is its rest
RIDGE_ALPHAS = (1.0, 10.0, 100.0, 1000.0)
LINE_PERCENTILES = (5.0, 95.0)  # the ends of ``_loudness_line``, in the speech's loudness and the person's openings
# Of the person's middle width: the least a fully spread or rounded lip shape asks, of the key mouths
# (heygem.engines.builtin) and of another voice's footage mouths (drawn_widths).
WIDTH_MIN_GAIN = 0.08

# Face-mesh points: inner lip pairs (top, bottom), outer top and bottom of the lips, corners, eye corners.
_INNER_PAIRS = ((13, 14), (82, 87), (312, 317))
_OUTER_TOP, _INNER_TOP, _INNER_BOTTOM, _OUTER_BOTTOM = 0, 13, 14, 17
_CORNERS = (61, 291)
_EYES = (33, 263)
# The skull points the mouth is placed by (heygem.study.STABLE); the jaw line from ear to ear (landmarks.JAW).
_SKULL = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 98, 327)
_JAW = (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323, 454)


def mouth_measures(points: np.ndarray) -> np.ndarray:
    """(n, 4) float64 mouth of each frame's 468 face-mesh points (n, 468, 2), over the eye-corner distance:
    inner-lip opening (as ``heygem.faces.landmarks.mouth_opening``), corner width (``mouth_width``), upper and
    lower lip heights (outer to inner lip at the middle: they thicken when the lips round and protrude).
    NaN rows where the points are NaN (no face)."""
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or p.shape[1:] != (468, 2):
        raise ValueError(f"expected face-mesh points of shape (n, 468, 2), got {p.shape}")

    def dist(a: int, b: int) -> np.ndarray:
        return np.linalg.norm(p[:, a] - p[:, b], axis=1)

    eyes = np.maximum(dist(*_EYES), 1e-6)
    opening = np.mean([dist(a, b) for a, b in _INNER_PAIRS], axis=0)
    return np.stack([opening, dist(*_CORNERS), dist(_OUTER_TOP, _INNER_TOP), dist(_INNER_BOTTOM, _OUTER_BOTTOM)],
                    axis=1) / eyes[:, None]


def jaw_outline(points: np.ndarray) -> np.ndarray:
    """(n, 21, 2) float64 jaw line of each frame's 468 face-mesh points (n, 468, 2), ear to ear, where the
    mouth placement puts it (``heygem.engines.footage_mouths``): each frame's skull points (``_SKULL``: eyes
    and nose) fitted by a similarity onto the frames' median skull, in units of the eye-corner distance. Two
    frames' jaw lines differ as their jaws dropped and as their heads were turned or nodded otherwise (which a
    similarity does not take out). NaN rows where the points are NaN."""
    p = np.asarray(points, np.float64)
    if p.ndim != 3 or p.shape[1:] != (468, 2):
        raise ValueError(f"expected face-mesh points of shape (n, 468, 2), got {p.shape}")
    z = p[..., 0] + 1j * p[..., 1]
    eyes = np.abs(z[:, _EYES[1]] - z[:, _EYES[0]])
    with np.errstate(invalid="ignore"):  # frames without a face: NaN in, NaN out, without a warning per job
        z = (z - z[:, list(_SKULL)].mean(1, keepdims=True)) / np.maximum(eyes, 1e-6)[:, None]
    skull = z[:, list(_SKULL)]
    found = np.isfinite(skull).all(1)
    if not found.any():
        return np.full((len(p), len(_JAW), 2), np.nan)
    reference = np.median(skull[found].real, 0) + 1j * np.median(skull[found].imag, 0)
    # The least-squares similarity onto the reference of centred points is one complex factor.
    with np.errstate(invalid="ignore"):
        factor = (np.conj(skull) * reference).sum(1) / np.maximum((np.abs(skull) ** 2).sum(1), 1e-12)
    jaw = z[:, list(_JAW)] * factor[:, None]
    return np.stack([jaw.real, jaw.imag], axis=2)


@dataclass(frozen=True)
class SelectionOptions:
    """How frames are chosen (module notes).

    target: "features" (speech features), "ridge" (predicted mouth against the real one) or "both" (their sum,
        the ridge part weighted by ``ridge_weight``; the feature part is divided by the sum of the group weights,
        so both are mean squared z-scores). ridge_measures: which MOUTH_MEASURES the ridge part compares.
        neighbours, neighbour_share: the predicted mouth is (1 - share) x the ridge's + share x the mean real
        mouth of the ``neighbours`` footage frames nearest in sound (each stretched to unit spread).
        loudness_weight: weight of a loudness prior added to either target: the squared distance between the
        footage frame's opening and the opening at the same quantile of the person's openings as the new
        speech frame's loudness is among the speech's (standardised); any language, any voice. This weight is
        for the footage's own voice (or a voice unknown); 0: none.
        other_voice_loudness_weight, voice_ramp: the prior's weight for a voice unlike the footage's: it rises
        smoothly from ``loudness_weight`` at voice distance voice_ramp[0] to this at voice_ramp[1].
        closure_weight: weight of a lip-closure prior: in frames the speech's phones mark as m, b or p (by the
        share of the frame), the squared excess of the footage frame's opening over the person's closed
        opening (their 10th percentile), standardised. other_voice_closure_weight: its weight for a voice
        unlike the footage's, ramped as the loudness prior's (closures must hold against that prior).
    k: candidates per frame by target cost. beam: paths whose next footage frame is also a candidate.
    jump_penalty, join_weight: the join cost of any frame but the footage's own next one is jump_penalty +
        join_weight x the mean squared standardised mouth jump. other_voice_jump_penalty: the jump penalty for a
        voice unlike the footage's, ramped as the loudness prior's: there the target is little more than an
        opening to meet, which some footage frame meets at every frame, so a small penalty let the path jump
        to another stretch every 1.8 frames (14 joins a second) and nearly every frame was a join's blend.
    jaw_weight: where the index has the footage's jaw lines (``jaw_outline``), a join also costs jaw_weight x
        the square of how much further the jaw line moves between the two frames (root mean square over its
        points, in eye distances, less what the opening explains) than the footage's own frame-to-frame steps
        mostly do (``FootageIndex.jaw_free``): a join of frames whose heads were turned otherwise shows as a
        jaw that jumps, and its cross-fade as a doubled jaw line.
    group_weights: weight of each feature group in the target distance (default 1 each).
    pose_weight, pose_free: where the index has the jaw lines and the choice is told which footage frame each
        output frame is drawn on (``shown``), a footage frame whose jaw line lies more than ``pose_free`` (eye
        distances, root mean square over its points) from that picture's costs pose_weight x the square of the
        excess: a mouth from a head turned otherwise, moved into the picture by a similarity that cannot turn it,
        shows as a lower face too wide or too narrow for the head. Within pose_free nothing is added, so the
        picture's own moment (its old mouth) gains nothing over other frames of that pose.
    other_voice_opening_share: for a voice unlike the footage's, the share of the way each chosen mouth is drawn
        opened or closed towards the opening its loudness asks (``drawn_openings``), ramped as the loudness
        prior's. The path meets another voice's loudness only as well as the footage's frames in the picture's
        pose allow (before drawing r 0.66-0.85 over the shared presenters); the own voice's sounds chose the
        mouth, and it is drawn towards what they predict instead (``own_voice_opening_share``).
    lip_shape_seconds: given the speech's lip shape (``choose_frames(lip_shape=)``), the predicted width is
        drawn towards it (standardised over the speech) with the share s / (s + the footage's seconds with a
        face): the phone table's rounding and spreading weigh as much as this many seconds of the person's own
        footage. A fit on a few seconds knows little of how this person's width follows their sounds, the table
        knows it for everyone; on long footage the fit leads. 0: the fit alone.
    other_voice_width_share: the same for the width its lip shape asks (``drawn_widths``: rounded on "oo",
        spread on "ee"), which the choice, held by the head's pose and the jaw line, meets least. Half the way:
        the face mesh reads an opening partly from the width, and the whole way cost the loudness proxy with
        Mandarin speech (whose lip shapes an English phone set guesses) 0.01-0.02 on four of six presenters
        (0.757 -> 0.748; the loudness-driven morph 0.760).
    own_voice_opening_share, own_voice_width_share: for the footage's own voice, the share of the way each
        chosen mouth is drawn towards the opening and the width the target predicts for its sounds
        (``fitted_mouth``), falling to none over ``own_voice_ramp`` of the voice's distance from the footage's:
        sooner than the priors' ramp, for the fit speaks for this person's own voice only (the English radio
        speech lies 0.43 from Katie Hill's voice, inside ``voice_ramp``, and drawn half of the way towards her
        fit her mouth followed its loudness at 0.54 instead of 0.72). A chosen frame matches the
        sounds and its neighbours; its own mouth may still be more or less open than this person's mouth mostly
        is for those sounds, which the prediction (a fit and many frames' mean) knows better: before drawing,
        the drawn mouths follow the real mouth of 17 of 18 halves closer (opening) at 0.5 of the way, on average
        the most at 0.75; the whole way is worse on 4. The width's gain is smaller and flat past half the way.
    """

    target: str = "both"
    k: int = 30
    beam: int = 20
    jump_penalty: float = 1.0
    other_voice_jump_penalty: float = 3.0  # 1 -> 3: another voice's runs 1.8 -> 2.4 frames (RESULTS)
    join_weight: float = 0.5
    jaw_weight: float = 1000.0  # 0 -> 1000: joins' jaw lines move (p90) 13-16 -> 5-7 hundredths of the eyes' (RESULTS)
    ridge_weight: float = 2.0
    ridge_measures: tuple[int, ...] = (0, 1)
    neighbours: int = 7
    neighbour_share: float = 0.5
    loudness_weight: float = 0.0  # 1 -> 0: own voice, long clips' chosen mouths 0.44 / 0.47 -> 0.50 / 0.48 (RESULTS)
    other_voice_loudness_weight: float = 20.0  # 3 -> 10 -> 20: another voice's proxy 0.57 -> 0.68; 0.63 -> 0.69
    voice_ramp: tuple[float, float] = (0.35, 0.55)
    closure_weight: float = 3.0
    other_voice_closure_weight: float = 160.0  # 30 -> 80: m/b/p closed 0.72 -> 0.99; x2 with the loudness prior
    group_weights: tuple[tuple[str, float], ...] = ()
    pose_weight: float = 1000.0  # 0 -> 1000: a turning head's chosen jaw lines 0.21 -> 0.085 from the picture's (RESULTS)
    pose_free: float = 0.11
    other_voice_opening_share: float = 1.0  # 0 -> 1: another voice's proxy 0.67 / 0.70 -> 0.72 / 0.76 (RESULTS)
    other_voice_width_share: float = 0.5  # 0 -> 0.5 -> 1: width r with the lip shape 0.37 -> 0.50 -> 0.64 (RESULTS)
    own_voice_opening_share: float = 0.75  # 0 -> 0.75: 12 long halves' opening r 0.433 -> 0.450, rendered (RESULTS)
    own_voice_width_share: float = 0.5  # 0 -> 0.5: their width r 0.411 -> 0.418
    own_voice_ramp: tuple[float, float] = (0.25, 0.4)  # split-time halves' own voices 0.10-0.45 apart, most under 0.25
    lip_shape_seconds: float = 5.0  # 0 -> 5: chosen widths' r, 24 short halves 0.15 -> 0.27, 12 long 0.47 -> 0.50

    def __post_init__(self) -> None:
        if self.target not in ("features", "ridge", "both"):
            raise ValueError(f"target must be features, ridge or both, got {self.target!r}")
        if self.k < 1 or self.beam < 0:
            raise ValueError(f"k must be >= 1 and beam >= 0, got {self.k} and {self.beam}")
        if self.neighbours < 1 or not 0 <= self.neighbour_share <= 1:
            raise ValueError(f"neighbours must be >= 1 and neighbour_share in [0, 1], got {self.neighbours} and "
                             f"{self.neighbour_share}")
        if self.lip_shape_seconds < 0:
            raise ValueError(f"lip_shape_seconds must be >= 0, got {self.lip_shape_seconds}")
        if not (0 <= self.own_voice_opening_share <= 1 and 0 <= self.own_voice_width_share <= 1):
            raise ValueError(f"own_voice_opening_share and own_voice_width_share must be in [0, 1], got "
                             f"{self.own_voice_opening_share} and {self.own_voice_width_share}")

    def lip_shape_share(self, footage_frames: int, fps: float | Fraction) -> float:
        """The lip shape's share in the predicted width for footage of ``footage_frames`` frames with a face."""
        weight = self.lip_shape_seconds * float(fps)
        return weight / (weight + footage_frames) if weight > 0 else 0.0

    def loudness_weight_for(self, voice_distance: float | None) -> float:
        """The loudness prior's weight for a speech whose voice is ``voice_distance`` from the footage's (None:
        the footage's own voice)."""
        return self._ramped(self.loudness_weight, self.other_voice_loudness_weight, voice_distance)

    def jump_penalty_for(self, voice_distance: float | None) -> float:
        """The join cost's jump penalty for a speech whose voice is ``voice_distance`` from the footage's."""
        return self._ramped(self.jump_penalty, self.other_voice_jump_penalty, voice_distance)

    def opening_share_for(self, voice_distance: float | None) -> float:
        """The share of the way a chosen mouth is drawn towards the opening its loudness asks (``drawn_openings``)
        for a speech whose voice is ``voice_distance`` from the footage's: none for the own voice."""
        return self._ramped(0.0, self.other_voice_opening_share, voice_distance)

    def width_share_for(self, voice_distance: float | None) -> float:
        """The share of the way a chosen mouth is drawn towards the width its lip shape asks (``drawn_widths``)
        for a speech whose voice is ``voice_distance`` from the footage's: none for the own voice."""
        return self._ramped(0.0, self.other_voice_width_share, voice_distance)

    def fitted_shares_for(self, voice_distance: float | None) -> tuple[float, float]:
        """The shares of the way a chosen mouth is drawn towards the opening and the width the target predicts
        (``fitted_mouth``) for a speech whose voice is ``voice_distance`` from the footage's: none for another's."""
        return (self._ramped(self.own_voice_opening_share, 0.0, voice_distance, self.own_voice_ramp),
                self._ramped(self.own_voice_width_share, 0.0, voice_distance, self.own_voice_ramp))

    def closure_weight_for(self, voice_distance: float | None) -> float:
        """The lip-closure prior's weight for a speech whose voice is ``voice_distance`` from the footage's."""
        return self._ramped(self.closure_weight, self.other_voice_closure_weight, voice_distance)

    def _ramped(self, own: float, other: float, voice_distance: float | None,
                ramp: tuple[float, float] | None = None) -> float:
        if voice_distance is None:
            return own
        low, high = self.voice_ramp if ramp is None else ramp
        x = min(max((voice_distance - low) / max(high - low, 1e-9), 0.0), 1.0)
        return own + (other - own) * x * x * (3 - 2 * x)


@dataclass
class Ridge:
    """A linear map from standardised features to standardised mouth measures (``fit_ridge``)."""

    weights: np.ndarray  # (D + 1, M): last row the intercept
    alpha: float
    spread: np.ndarray  # (M,): std of the fit's predictions on its own data (shrunk below 1 by the penalty)
    # (M,): r of each measure with its cross-validated predictions at ``alpha`` (each fold fitted without it):
    # how far the features foretell the mouth on frames the fit has not seen. NaN: too few frames to tell.
    held_out_r: np.ndarray


def fit_ridge(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...] = RIDGE_ALPHAS, folds: int = 5) -> Ridge:
    """Ridge regression of ``y`` (n, M) on ``x`` (n, D), alpha chosen among ``alphas`` by contiguous
    ``folds``-fold cross-validation in time (neighbouring frames are alike: random folds would flatter)."""
    n = len(x)
    xa = np.hstack([x, np.ones((n, 1))])
    best_alpha, best_err = alphas[0], math.inf
    held_out_r = np.full(y.shape[1], np.nan)
    if n >= 4 * folds:
        bounds = np.linspace(0, n, folds + 1).astype(int)
        for alpha in alphas:
            predicted = np.empty_like(y, dtype=np.float64)
            for a, b in zip(bounds[:-1], bounds[1:]):
                train = np.r_[0:a, b:n]
                predicted[a:b] = xa[a:b] @ _solve(xa[train], y[train], alpha)
            err = float(((predicted - y) ** 2).sum())
            if err < best_err:
                best_alpha, best_err = alpha, err
                held_out_r = np.array([_pearson(predicted[:, m], y[:, m]) for m in range(y.shape[1])])
    weights = _solve(xa, y, best_alpha)
    return Ridge(weights, best_alpha, np.maximum((xa @ weights).std(0), 1e-3), held_out_r)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two series; 0 where either is flat."""
    a, b = a - a.mean(), b - b.mean()
    scale = math.sqrt(float((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / scale) if scale > 1e-12 else 0.0


def speech_motion_r(mouth: np.ndarray, loudness: np.ndarray, fps: float | Fraction, window: float = 0.4) -> float:
    """r of a footage's speech activity (its ``frame_loudness``) with its mouth's movement (the frame-to-frame
    change of opening and width, ``mouth`` as ``mouth_measures``; NaN rows without a face), each averaged over
    ``window`` seconds: a mouth moves while its own voice speaks and rests in its pauses, whatever shapes it
    makes. NaN where there is no movement to measure."""
    mouth = np.asarray(mouth, np.float64)
    if len(mouth) < 3 or len(loudness) != len(mouth):
        return math.nan
    steps = np.abs(np.diff(mouth[:, :2], axis=0)).sum(1)
    steps = np.append(steps, steps[-1:])
    if not np.isfinite(steps).any():
        return math.nan
    steps = np.where(np.isfinite(steps), steps, np.nanmedian(steps))  # a frame without a face: a usual step
    width = max(3, round(window * float(fps)))
    kernel = np.ones(width) / width
    return _pearson(np.convolve(np.asarray(loudness, np.float64), kernel, "same"), np.convolve(steps, kernel, "same"))


def _solve(xa: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    reg = alpha * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0  # the intercept is not shrunk
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y)


@dataclass
class FootageIndex:
    """Every frame of one presenter's footage, described for ``choose_frames`` (``build_index``).

    features: (N, D) float32 speech features of the footage's own speech, standardised by the footage's own
        per-column mean and scale (``mean``, ``scale``) and multiplied by the group weights' square roots.
    mouth: (N, 4) real mouth measures (MOUTH_MEASURES), NaN without a face; mouth_z: standardised, 0 where NaN.
    face: (N,) whether the frame has a face (only those are chosen). rest: (N,) rest mouths (closed, quiet).
    follows: (N,) frame c + 1 continues frame c (both have faces). ridge: the footage's features -> mouth fit.
    neighbour_spread: (4,) the spread of the neighbour prediction (``neighbour_mouths``) over the footage's own
        frames, each left out with its neighbours in time.
    fps: the footage's frame rate (the output's); options: the feature options of the features.
    jaw: (N, 42) the jaw lines (``jaw_outline``, flattened; 0 without a face) less what the mouth's opening
        explains (a line fitted on the footage: the chin drops as the mouth opens), so what is left is mostly
        the head's turn and nod; or None: no jaw line in the joins or the pose cost. jaw_free: the 95th
        percentile of the footage's own frame-to-frame steps of it (a join may move it that far free).
    """

    features: np.ndarray
    mouth: np.ndarray
    mouth_z: np.ndarray
    face: np.ndarray
    rest: np.ndarray
    follows: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    mouth_mean: np.ndarray
    mouth_scale: np.ndarray
    ridge: Ridge
    neighbour_spread: np.ndarray
    fps: Fraction
    feature_options: FeatureOptions = field(default_factory=FeatureOptions)
    jaw: np.ndarray | None = None
    jaw_free: float = 0.0

    def __len__(self) -> int:
        return len(self.features)

    def standardise(self, features: np.ndarray) -> np.ndarray:
        """A speech's features on the footage's scale, weighted as the index's."""
        return ((np.asarray(features, np.float64) - self.mean) / self.scale * self.weights).astype(np.float32)


def _pauses(loudness: np.ndarray, fps: Fraction) -> np.ndarray:
    """Frames in runs of at least MIN_PAUSE_SECONDS of silence."""
    silent = np.asarray(loudness) <= SILENT_LEVEL
    need = max(1, round(MIN_PAUSE_SECONDS * float(fps)))
    out = np.zeros(len(silent), bool)
    start = None
    for i, s in enumerate(np.append(silent, False)):
        if s and start is None:
            start = i
        elif not s and start is not None:
            if i - start >= need:
                out[start:i] = True
            start = None
    return out


def _weights(options: SelectionOptions, feature_options: FeatureOptions, dims: int) -> np.ndarray:
    """Per column: sqrt(group weight / group columns), so each group counts by its weight, not its size."""
    chosen = dict(options.group_weights)
    w = np.zeros(dims)
    groups = feature_groups(feature_options)
    for group, columns in groups:
        w[columns] = math.sqrt(chosen.get(group, 1.0) / (columns.stop - columns.start))
    if groups[-1][1].stop != dims:
        raise ValueError(f"features have {dims} columns; the feature options say {groups[-1][1].stop}")
    return w


def build_index(features: np.ndarray, mouth: np.ndarray, loudness: np.ndarray, fps: float | Fraction, *,
                feature_options: FeatureOptions = FeatureOptions(),
                options: SelectionOptions = SelectionOptions(), jaw: np.ndarray | None = None) -> FootageIndex:
    """The index of a footage: its own speech's ``features`` (``speech_features``), its real ``mouth``
    (``mouth_measures``) and its speech's normalised ``loudness`` (``frame_loudness``), frame by frame; and,
    where given, its ``jaw`` lines (``jaw_outline``), for the joins."""
    features = np.asarray(features, np.float64)
    mouth = np.asarray(mouth, np.float64)
    n = len(features)
    if len(mouth) != n or len(loudness) != n:
        raise ValueError(f"features, mouth and loudness must have one row per frame: {n}, {len(mouth)}, "
                         f"{len(loudness)}")
    face = np.isfinite(mouth).all(axis=1)
    jaw_free = 0.0
    if jaw is not None:
        jaw = np.asarray(jaw, np.float64).reshape(len(jaw), -1)
        if len(jaw) != n:
            raise ValueError(f"jaw must have one row per frame: {n} frames, {len(jaw)} jaw lines")
        face &= np.isfinite(jaw).all(axis=1)
        if face.any():
            # What the mouth's own opening explains (the chin drops as it opens) is the mouth jump's to price.
            design = np.column_stack([np.ones(int(face.sum())), mouth[face, 0]])
            fit = np.linalg.lstsq(design, jaw[face], rcond=None)[0]
            jaw = jaw - np.column_stack([np.ones(n), np.nan_to_num(mouth[:, 0])]) @ fit
        jaw = np.where(face[:, None], jaw, 0.0)
        # A join may move the jaw line as far as the footage's own frame-to-frame steps mostly do.
        steps = _jaw_distance(jaw[1:], jaw[:-1])[face[1:] & face[:-1]]
        jaw_free = float(np.percentile(steps, JAW_FREE_PERCENTILE)) if len(steps) else 0.0
    if face.sum() < MIN_REST_FRAMES:
        raise ValueError(f"the footage has {int(face.sum())} frames with a face; at least {MIN_REST_FRAMES} needed")
    mean = features[face].mean(0)
    scale = np.maximum(features[face].std(0), 1e-3)
    weights = _weights(options, feature_options, features.shape[1])
    mouth_mean = mouth[face].mean(0)
    mouth_scale = np.maximum(mouth[face].std(0), 1e-4)
    mouth_z = np.where(face[:, None], (mouth - mouth_mean) / mouth_scale, 0.0)
    # Rest: closed mouths in the footage's own pauses; else the most closed of all.
    opening = mouth[:, 0]
    quiet = _pauses(loudness, Fraction(fps)) & face
    rest = np.zeros(n, bool)
    if quiet.sum() >= MIN_REST_FRAMES:
        rest = quiet & (opening <= np.median(opening[quiet]))
    if rest.sum() < MIN_REST_FRAMES:
        rest = face & (opening <= np.quantile(opening[face], REST_SHARE))
    standard = (features - mean) / scale
    ridge = fit_ridge(standard[face], mouth_z[face])
    follows = np.zeros(n, bool)
    follows[:-1] = face[:-1] & face[1:]
    weighted = (standard * weights).astype(np.float32)
    queries = np.flatnonzero(face)
    queries = queries[np.unique(np.linspace(0, len(queries) - 1, min(len(queries), NEIGHBOUR_QUERIES)).astype(int))]
    gap = max(1, round(NEIGHBOUR_GAP_SECONDS * float(fps)))
    own = _neighbour_mouths(weighted, face, mouth_z, weighted[queries], options.neighbours, queries, gap)
    log.debug("footage index: %d frames, %d with a face, %d rest, ridge alpha %g", n, int(face.sum()),
              int(rest.sum()), ridge.alpha)
    return FootageIndex(features=weighted, mouth=mouth, mouth_z=mouth_z, face=face, rest=rest, follows=follows,
                        mean=mean, scale=scale, weights=weights, mouth_mean=mouth_mean, mouth_scale=mouth_scale,
                        ridge=ridge, neighbour_spread=np.maximum(own.std(0), 1e-3), fps=Fraction(fps),
                        feature_options=feature_options, jaw=jaw, jaw_free=jaw_free)


def _neighbour_mouths(footage: np.ndarray, face: np.ndarray, mouth_z: np.ndarray, queries: np.ndarray, k: int,
                      query_frames: np.ndarray | None = None, gap: int = 0, block: int = 256) -> np.ndarray:
    """(Q, 4) the mean standardised mouth of the ``k`` footage frames (with a face) nearest to each query in
    the weighted feature space; ``query_frames``: the footage frame each query is, whose frames within ``gap``
    are left out (ties: the earlier frame)."""
    candidates = np.flatnonzero(face)
    x = footage[candidates].astype(np.float64)
    x_sq = (x ** 2).sum(1)
    k = min(k, len(candidates))
    out = np.zeros((len(queries), mouth_z.shape[1]))
    for first in range(0, len(queries), block):
        q = np.asarray(queries[first:first + block], np.float64)
        d = x_sq[None, :] - 2.0 * q @ x.T
        if query_frames is not None:
            d[np.abs(query_frames[first:first + block, None] - candidates[None, :]) <= gap] = np.inf
        near = _smallest(d, k)
        out[first:first + block] = mouth_z[candidates[near]].mean(1)
    return out


def _smallest(rows: np.ndarray, k: int) -> np.ndarray:
    """(R, k) the columns of each row's ``k`` least values, least first, ties in column order: what a stable full
    sort gives (deterministic whatever the platform's partition does), by a partition and a sort of the ``k``
    alone (a third of the time for 1500 footage frames)."""
    if k >= rows.shape[1]:
        return np.argsort(rows, axis=1, kind="stable")[:, :k]
    kth = np.partition(rows, k - 1, axis=1)[:, k - 1:k]
    below = rows < kth
    at = rows == kth
    # Below the k-th value, and of those at it the earliest columns, as many as are missing.
    take = below | (at & (np.cumsum(at, axis=1) <= k - below.sum(1, keepdims=True)))
    if not (take.sum(1) == k).all():  # NaN costs: the full sort, which puts them last
        return np.argsort(rows, axis=1, kind="stable")[:, :k]
    columns = np.nonzero(take)[1].reshape(len(rows), k)
    order = np.argsort(np.take_along_axis(rows, columns, axis=1), axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1)


def predict_mouth(index: FootageIndex, speech_features: np.ndarray) -> np.ndarray:
    """(T, 4) the mouth measures the footage's ridge fit predicts for a speech's features (measure units)."""
    return _ridge_z(index, speech_features) * index.mouth_scale + index.mouth_mean


def _ridge_z(index: FootageIndex, speech_features: np.ndarray) -> np.ndarray:
    """(T, 4) the standardised mouth the footage's ridge fit predicts for a speech's features."""
    standard = (np.asarray(speech_features, np.float64) - index.mean) / index.scale
    return np.hstack([standard, np.ones((len(standard), 1))]) @ index.ridge.weights


class _Targets:
    """Target costs of output frames against footage frames (module notes), computed by row blocks."""

    def __init__(self, index: FootageIndex, speech_features: np.ndarray, loudness: np.ndarray, pause: np.ndarray,
                 options: SelectionOptions, voice_distance: float | None = None,
                 shown: np.ndarray | None = None, lip_shape: np.ndarray | None = None) -> None:
        self.index, self.options, self.pause = index, options, pause
        self.shown_jaw = None  # (T, 42): the jaw line of the picture each output frame is drawn on
        if shown is not None and index.jaw is not None and options.pose_weight > 0:
            shown = np.clip(np.asarray(shown, np.int64), 0, len(index) - 1)
            if len(shown) != len(pause):
                raise ValueError(f"shown has {len(shown)} frames, the speech {len(pause)}")
            self.shown_jaw = index.jaw[shown]
            self.shown_face = index.face[shown]  # a picture whose frame has no studied face: no pose to keep
        self.loudness_weight = options.loudness_weight_for(voice_distance)
        self.jump_penalty = options.jump_penalty_for(voice_distance)
        self.use_features = options.target in ("features", "both")
        self.use_ridge = options.target in ("ridge", "both")
        self.speech = index.standardise(speech_features).astype(np.float64)
        self.footage = index.features.astype(np.float64)
        self.foot_sq = (self.footage ** 2).sum(1)
        self.feature_norm = 1.0 / max(float((index.weights ** 2).sum()), 1e-9)  # 1 / the sum of group weights
        self.ridge_factor = options.ridge_weight if options.target == "both" else 1.0
        measures = list(options.ridge_measures)
        if self.use_ridge:
            self.predicted = _predicted_z(index, speech_features, options, lip_shape, self.speech)[:, measures]
        self.real = index.mouth_z[:, measures]
        if self.loudness_weight > 0:
            self.loud_open = _loudness_openings(index, np.asarray(loudness, np.float64))
        self.closure_weight = options.closure_weight_for(voice_distance)
        if self.closure_weight > 0:
            self.closure = lip_closure(speech_features, index.feature_options).astype(np.float64) * self.closure_weight
            closed = np.percentile(index.mouth_z[index.face, 0], 10)
            self.excess = np.maximum(index.mouth_z[:, 0] - closed, 0.0) ** 2

    def rows(self, first: int, last: int) -> np.ndarray:
        """(last - first, N) costs; inf where a frame may not be shown."""
        cost = np.zeros((last - first, len(self.index)))
        if self.use_features:
            s = self.speech[first:last]
            cost += np.maximum((s ** 2).sum(1)[:, None] + self.foot_sq[None, :] - 2.0 * s @ self.footage.T,
                               0.0) * self.feature_norm
        if self.use_ridge:
            p = self.predicted[first:last]
            cost += ((p[:, None, :] - self.real[None, :, :]) ** 2).mean(2) * self.ridge_factor
        if self.loudness_weight > 0:
            cost += (self.loud_open[first:last, None] - self.index.mouth_z[None, :, 0]) ** 2 * self.loudness_weight
        if self.closure_weight > 0:
            cost += self.closure[first:last, None] * self.excess[None, :]
        if self.shown_jaw is not None:
            cost += self._pose(_jaw_apart(self.shown_jaw[first:last], self.index.jaw),
                               self.shown_face[first:last, None])
        allowed = np.where(self.pause[first:last, None], self.index.rest[None, :], self.index.face[None, :])
        cost[~allowed] = np.inf
        return cost

    def at(self, t: int, frames: np.ndarray) -> np.ndarray:
        """Costs of output frame t for the footage frames ``frames``."""
        cost = np.zeros(len(frames))
        if self.use_features:
            cost += ((self.footage[frames] - self.speech[t]) ** 2).sum(1) * self.feature_norm
        if self.use_ridge:  # a sum over the measures divided by their count: ``mean``'s own arithmetic, cheaper
            squared = (self.predicted[t][None, :] - self.real[frames]) ** 2
            cost += squared.sum(1) / self.real.shape[1] * self.ridge_factor
        if self.loudness_weight > 0:
            cost += (self.loud_open[t] - self.index.mouth_z[frames, 0]) ** 2 * self.loudness_weight
        if self.closure_weight > 0:
            cost += self.closure[t] * self.excess[frames]
        if self.shown_jaw is not None:
            cost += self._pose(_jaw_distance(self.index.jaw[frames], self.shown_jaw[t]), self.shown_face[t])
        allowed = self.index.rest[frames] if self.pause[t] else self.index.face[frames]
        cost[~allowed] = np.inf
        return cost

    def _pose(self, apart: np.ndarray, face: np.ndarray | bool) -> np.ndarray:
        """The pose cost of jaw lines ``apart`` from the pictures' (module notes); 0 for a picture without a face."""
        excess = np.maximum(apart - self.options.pose_free, 0.0)
        return np.where(face, self.options.pose_weight * excess ** 2, 0.0)


def _predicted_z(index: FootageIndex, speech_features: np.ndarray, options: SelectionOptions,
                 lip_shape: np.ndarray | None, standardised: np.ndarray | None = None) -> np.ndarray:
    """(T, 4) the standardised mouth the target predicts for a speech's features (module notes): the ridge's and
    the nearest footage frames' mean mouth, each stretched to unit spread, the width drawn towards the lip shape
    (``SelectionOptions.lip_shape_seconds``). ``standardised``: ``index.standardise(speech_features)`` if made."""
    ridge = _ridge_z(index, speech_features)
    # The penalty (and the neighbours' mean) shrink the predictions towards the mean; matched against real
    # mouths they are stretched back to unit spread, so a predicted wide-open mouth finds the person's wide-open
    # frames.
    if standardised is None:
        standardised = index.standardise(speech_features).astype(np.float64)
    near = _neighbour_mouths(index.features, index.face, index.mouth_z, standardised, options.neighbours)
    share = options.neighbour_share
    predicted = (1 - share) * ridge / index.ridge.spread + share * near / index.neighbour_spread
    if lip_shape is not None:
        lip_shape = np.asarray(lip_shape, np.float64)
        if len(lip_shape) != len(predicted):
            raise ValueError(f"lip_shape has {len(lip_shape)} frames, the speech {len(predicted)}")
        spread = float(lip_shape.std())
        weight = options.lip_shape_share(int(index.face.sum()), index.fps)
        if spread >= 1e-6 and weight > 0:  # else no rounding or spreading heard: nothing to draw towards
            predicted[:, 1] = (1 - weight) * predicted[:, 1] + weight * (lip_shape - lip_shape.mean()) / spread
    return predicted


def fitted_mouth(index: FootageIndex, speech_features: np.ndarray, options: SelectionOptions = SelectionOptions(),
                 lip_shape: np.ndarray | None = None) -> np.ndarray:
    """(T, 2) the opening and the corner width (over the eye distance, as ``mouth_measures``) that the choice's
    target predicts for each frame of a speech from this person's footage: their ridge fit's and the mean of the
    footage frames nearest in sound, at the person's own spread, the width drawn towards the speech's
    ``lip_shape`` (-1 rounded .. +1 spread; None: the fit alone) by as much as the footage is short."""
    z = _predicted_z(index, speech_features, options, lip_shape)[:, :2]
    return z * index.mouth_scale[:2] + index.mouth_mean[:2]


def _closure_shares(speech_features: np.ndarray, feature_options: FeatureOptions,
                    held_closed: np.ndarray | None) -> np.ndarray:
    """(T,) how much of each frame the lips are together, 0..1, for the drawing: the share of its span in an m,
    b or p (``lip_closure``), and the whole of it where ``held_closed`` (the speech's mouth shapes,
    ``heygem.speech.phones.mouth_shapes``, which close the lips from CLOSURE_LEAD before the sound and for at
    least a frame, as the key mouths are drawn). By the phones' spans alone the frame before a closure counted
    as open and was drawn opening wide at the speech's loudness: an open "O" where the key mouths' lips had met.
    (The choice's closure prior keeps to the phones' spans: pulled towards closed mouths over the whole held
    span, another voice's loudness proxy fell by 0.02-0.03, bench/RESULTS.md.)"""
    share = np.clip(lip_closure(speech_features, feature_options).astype(np.float64), 0.0, 1.0)
    if held_closed is None:
        return share
    held_closed = np.asarray(held_closed, bool)
    if len(held_closed) != len(share):
        raise ValueError(f"held_closed has {len(held_closed)} frames, the features {len(share)}")
    return np.where(held_closed, 1.0, share)


def _loudness_openings(index: FootageIndex, loudness: np.ndarray) -> np.ndarray:
    """(T,) standardised opening for each speech frame: the person's opening at the quantile its loudness has
    among the speech's frames (ties share their mean rank)."""
    if len(loudness) == 0:
        return np.zeros(0)
    q = (_mean_ranks(np.asarray(loudness, np.float64)) - 0.5) / len(loudness)
    return np.quantile(index.mouth_z[index.face, 0], q)


def _mean_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, ties given the mean of theirs (scipy.stats.rankdata's default, without loading
    scipy.stats: 1.5 s of a new process)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.concatenate(([0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1))
    ends = np.append(starts[1:], len(values))
    ranks = np.empty(len(values))
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def _top_candidates(targets: _Targets, k: int, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(T, k) the k footage frames of least target cost per output frame (ties: the earlier frame), and costs."""
    n_out, n_foot = len(targets.pause), len(targets.index)
    k = min(k, n_foot)
    frames = np.empty((n_out, k), np.int64)
    costs = np.empty((n_out, k))
    for first in range(0, n_out, block):
        last = min(n_out, first + block)
        rows = targets.rows(first, last)
        part = _smallest(rows, k)  # ties in frame order
        frames[first:last] = part
        costs[first:last] = np.take_along_axis(rows, part, axis=1)
    return frames, costs


def _jaw_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How far flattened jaw lines ``a`` lie from ``b``, pair by pair (broadcast over leading axes): the root mean
    square over the points of their distances."""
    return np.sqrt(((a - b) ** 2).sum(-1) / a.shape[-1] * 2)  # ``mean``'s own arithmetic, without its overhead


def _jaw_apart(a: np.ndarray, b: np.ndarray, a_sq: np.ndarray | None = None,
               b_sq: np.ndarray | None = None) -> np.ndarray:
    """(len(a), len(b)) ``_jaw_distance`` of each flattened jaw line of ``a`` from each of ``b``, by dot products
    (a join's or a block's pairs at once); ``a_sq``, ``b_sq``: their lines' squared lengths, where known already."""
    a_sq = (a ** 2).sum(1) if a_sq is None else a_sq
    b_sq = (b ** 2).sum(1) if b_sq is None else b_sq
    squared = np.maximum(a_sq[:, None] + b_sq[None, :] - 2.0 * a @ b.T, 0.0)
    return np.sqrt(squared * 2 / a.shape[1])


class _Joins:
    """Join costs between footage frames (module notes), ``jump_penalty`` the speech's voice's
    (``jump_penalty_for``); what each frame alone contributes worked out once (a choice asks for 1500 joins a
    minute, ten times that with a lookahead)."""

    def __init__(self, index: FootageIndex, options: SelectionOptions, jump_penalty: float) -> None:
        self.measures = np.ascontiguousarray(index.mouth_z.T)  # one row per measure: a join's pairs by rows
        # Each frame's own next one (-1: none), whose join costs nothing.
        self.successor = np.where(index.follows, np.arange(len(index.follows)) + 1, -1)
        self.jump_penalty, self.join_weight = jump_penalty, options.join_weight
        self.jaw_weight, self.jaw_free = options.jaw_weight, index.jaw_free
        self.jaw = index.jaw if index.jaw is not None and options.jaw_weight > 0 else None
        if self.jaw is not None:
            self.jaw_sq = (self.jaw ** 2).sum(1)  # each row's as ``_jaw_apart`` sums it: the same values

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """(len(prev), len(cur)) join costs."""
        # A sum over the measures divided by their count: ``mean``'s own arithmetic (the same additions in the same
        # order), a measure at a time: a sum along an axis of four cost more than the rest of the join.
        before, after = self.measures[:, prev], self.measures[:, cur]
        jump = (before[0][:, None] - after[0][None, :]) ** 2
        for measure in range(1, len(MOUTH_MEASURES)):
            jump += (before[measure][:, None] - after[measure][None, :]) ** 2
        jump /= len(MOUTH_MEASURES)
        cost = self.jump_penalty + self.join_weight * jump
        if self.jaw is not None:
            moved = _jaw_apart(self.jaw[prev], self.jaw[cur], self.jaw_sq[prev], self.jaw_sq[cur])
            cost += self.jaw_weight * np.maximum(moved - self.jaw_free, 0.0) ** 2
        cost[self.successor[prev][:, None] == cur[None, :]] = 0.0
        return cost


def _viterbi(targets: _Targets, top: tuple[np.ndarray, np.ndarray], first: int, last: int,
             start: int | None, options: SelectionOptions, joins: _Joins) -> np.ndarray:
    """The path of least cost over output frames [first, last), from footage frame ``start`` shown at
    first - 1 (None: free start): footage frame numbers. ``joins``: the choice's join costs."""
    index = targets.index
    top_frames, top_costs = top
    prev = np.array([start]) if start is not None else None
    acc = np.zeros(1) if start is not None else None
    history: list[tuple[np.ndarray, np.ndarray]] = []  # (candidates, back-pointers) per frame
    for t in range(first, last):
        cand = top_frames[t]
        if prev is not None and options.beam > 0:
            best = prev[np.argsort(acc, kind="stable")[:options.beam]]
            nxt = best[index.follows[best]] + 1
            cand = np.unique(np.concatenate([cand, nxt]))
        else:
            cand = np.unique(cand)
        cost = targets.at(t, cand)
        keep = np.isfinite(cost)
        if keep.any():
            cand, cost = cand[keep], cost[keep]
        if prev is None:
            acc, back = cost, np.zeros(len(cand), np.int64)
        else:
            total = acc[:, None] + joins(prev, cand)
            back = np.argmin(total, axis=0)
            acc = total[back, np.arange(len(cand))] + cost
        history.append((cand, back))
        prev = cand
    path = np.empty(last - first, np.int64)
    j = int(np.argmin(acc))
    for step in range(len(history) - 1, -1, -1):
        cand, back = history[step]
        path[step] = cand[j]
        j = int(back[j])
    return path


def choose_frames(index: FootageIndex, speech_features: np.ndarray, loudness: np.ndarray,
                  lookahead: float | None = None, options: SelectionOptions = SelectionOptions(),
                  voice_distance: float | None = None, shown: np.ndarray | None = None,
                  lip_shape: np.ndarray | None = None) -> np.ndarray:
    """(T,) int64: the footage frame to show for each of the speech's T output frames (module notes).

    ``speech_features``: the new speech's ``speech_features`` with the index's feature options; ``loudness``:
    its ``frame_loudness``. ``lookahead``: None chooses for the whole speech at once; seconds (0 ..
    MAX_LOOKAHEAD) choose frame by frame with only that much speech past each frame. ``voice_distance``: how
    far the speech's voice is from the footage's (``heygem.speech.frames.voice_distance``; None: the same voice).
    ``shown``: (T,) the footage frame each output frame's picture is (the presenter's video and its footage
    are one), for the pose cost (``SelectionOptions.pose_weight``); None: no picture known. ``lip_shape``: (T,)
    the speech's lip shape, -1 rounded .. +1 spread (``heygem.speech.phones.mouth_shapes``), which the predicted
    width is drawn towards (``SelectionOptions.lip_shape_seconds``); None: the fit alone.
    """
    speech_features = np.asarray(speech_features)
    n_out = len(speech_features)
    if len(loudness) != n_out:
        raise ValueError(f"loudness has {len(loudness)} frames, the features {n_out}")
    if n_out == 0:
        return np.zeros(0, np.int64)
    pause = _pauses(loudness, index.fps)
    targets = _Targets(index, speech_features, loudness, pause, options, voice_distance, shown, lip_shape)
    top = _top_candidates(targets, options.k)
    joins = _Joins(index, options, targets.jump_penalty)
    if lookahead is None:
        return _viterbi(targets, top, 0, n_out, None, options, joins)
    if not 0 <= lookahead <= MAX_LOOKAHEAD:
        raise ValueError(f"lookahead must be between 0 and {MAX_LOOKAHEAD} s, got {lookahead}")
    # The features of frame t + h reach max(offsets) past its end: leave that room inside the lookahead.
    reach = max(0.0, max(index.feature_options.offsets_ms) / 1000.0)
    horizon = max(0, math.floor((lookahead - reach) * float(index.fps) + 1e-9))
    chosen = np.empty(n_out, np.int64)
    previous: int | None = None
    for t in range(n_out):
        path = _viterbi(targets, top, t, min(n_out, t + horizon + 1), previous, options, joins)
        chosen[t] = previous = int(path[0])
    return chosen


def drawn_mouths(index: FootageIndex, chosen: np.ndarray, speech_features: np.ndarray, loudness: np.ndarray,
                 options: SelectionOptions = SelectionOptions(), voice_distance: float | None = None,
                 lip_shape: np.ndarray | None = None, held_closed: np.ndarray | None = None) -> np.ndarray:
    """(T, 2) the opening and the corner width to draw each chosen footage frame's mouth at (``drawn_openings``,
    ``drawn_widths``; NaN: as filmed): towards what the footage's fit predicts for the own voice's sounds
    (``fitted_mouth``, worked out only where a voice this near the footage's has a share of it), towards another
    voice's loudness and ``lip_shape``."""
    fitted_opening = fitted_width = None
    if max(options.fitted_shares_for(voice_distance)) > 0:
        fitted_opening, fitted_width = fitted_mouth(index, speech_features, options, lip_shape).T
    return np.column_stack([
        drawn_openings(index, chosen, speech_features, loudness, options, voice_distance, held_closed,
                       fitted_opening),
        drawn_widths(index, chosen, lip_shape, loudness, options, voice_distance, fitted_width)])


def drawn_openings(index: FootageIndex, chosen: np.ndarray, speech_features: np.ndarray, loudness: np.ndarray,
                   options: SelectionOptions = SelectionOptions(), voice_distance: float | None = None,
                   held_closed: np.ndarray | None = None, fitted: np.ndarray | None = None) -> np.ndarray:
    """(T,) the opening (over the eye distance, as ``mouth_measures``) to draw each chosen footage frame's mouth
    at: from the chosen frame's own opening, ``other_voice_opening_share`` of the way to the one the frame's
    loudness asks of this person (``_loudness_line``) and ``own_voice_opening_share`` of the way to the one
    the target predicts, ``fitted`` ((T,) as ``fitted_mouth``'s first column; None: not drawn towards), each
    share ramped by ``voice_distance`` (the first rises, the second falls, as the voice is less the footage's).
    The loudness never opens a mouth where the lips are together over half the frame, and opens it less where
    they are for some of it (``_closure_shares``: the speech's m/b/p, where the closure prior chose closed lips;
    and the frames ``held_closed``, (T,) bool, where the speech's mouth shapes close the lips ahead of them). The
    fit is not held back there: it knows this person's own closures from their footage (an English phone set
    marks m/b/p all over French speech, where french's real lips are as far apart as elsewhere, 0.057 against
    0.059; held back, his drawn mouths followed his real ones at 0.33 instead of 0.36). NaN where the mouth is
    drawn as filmed: a pause (its rest mouth), a frame without a face, and every frame when neither share
    applies."""
    chosen = np.asarray(chosen, np.int64)
    to_line = options.opening_share_for(voice_distance)
    to_fit = 0.0 if fitted is None else options.fitted_shares_for(voice_distance)[0]
    if (to_line <= 0 and to_fit <= 0) or len(chosen) == 0:
        return np.full(len(chosen), np.nan)
    loudness = np.asarray(loudness, np.float64)
    if not len(loudness) == len(speech_features) == len(chosen):
        raise ValueError(f"loudness has {len(loudness)} frames, the features {len(speech_features)}, the choice "
                         f"{len(chosen)}")
    pause = _pauses(loudness, index.fps)
    own = index.mouth[chosen, 0]
    change = np.zeros(len(chosen))
    if to_line > 0:
        # On the speech's m/b/p the closure prior chose closed lips: closed further, never opened; next to them
        # opened by less, as much less as the frame is m/b/p.
        closure = _closure_shares(speech_features, index.feature_options, held_closed)
        towards = to_line * (_loudness_line(index, loudness, pause) - own)
        change += np.where(closure >= 0.5, np.minimum(towards, 0.0), (1.0 - closure) * towards)
    if to_fit > 0:
        change += to_fit * (_fitted_column(fitted, len(chosen)) - own)
    drawn = own + change
    drawn[pause] = np.nan
    return drawn


def drawn_widths(index: FootageIndex, chosen: np.ndarray, spread: np.ndarray | None, loudness: np.ndarray,
                 options: SelectionOptions = SelectionOptions(), voice_distance: float | None = None,
                 fitted: np.ndarray | None = None) -> np.ndarray:
    """(T,) the corner width (over the eye distance, as ``mouth_measures``) to draw each chosen footage frame's
    mouth at: from the chosen frame's own width, ``other_voice_width_share`` of the way to the one the speech's
    lip shape asks of this person (``spread``, -1 rounded .. +1 spread, ``heygem.speech.phones.mouth_shapes``;
    None: none asked): their middle width for a neutral lip, their widest (95th percentile) fully spread, their
    narrowest (5th) fully rounded, each at least WIDTH_MIN_GAIN of the middle width away from it, as the key
    mouths are drawn (``heygem.engines.builtin``); and ``own_voice_width_share`` of the way to the width the
    target predicts, ``fitted`` ((T,) as ``fitted_mouth``'s second column; None: not drawn towards); each share
    ramped by ``voice_distance`` as ``drawn_openings``'. NaN where the mouth is drawn as filmed: a pause, a frame
    without a face, and every frame when neither share applies."""
    chosen = np.asarray(chosen, np.int64)
    to_lip = 0.0 if spread is None else options.width_share_for(voice_distance)
    to_fit = 0.0 if fitted is None else options.fitted_shares_for(voice_distance)[1]
    if (to_lip <= 0 and to_fit <= 0) or len(chosen) == 0:
        return np.full(len(chosen), np.nan)
    if len(loudness) != len(chosen):
        raise ValueError(f"loudness has {len(loudness)} frames, the choice {len(chosen)}")
    own = index.mouth[chosen, 1]
    change = np.zeros(len(chosen))
    if to_lip > 0:
        spread = np.clip(np.asarray(spread, np.float64), -1.0, 1.0)
        if len(spread) != len(chosen):
            raise ValueError(f"spread has {len(spread)} frames, the choice {len(chosen)}")
        widths = index.mouth[index.face, 1]
        narrow, middle, wide = np.percentile(widths, (5.0, 50.0, 95.0))
        to_spread = max(wide - middle, WIDTH_MIN_GAIN * middle)
        to_round = max(middle - narrow, WIDTH_MIN_GAIN * middle)
        asked = middle + np.where(spread > 0, spread * to_spread, spread * to_round)
        change += to_lip * (asked - own)
    if to_fit > 0:
        change += to_fit * (_fitted_column(fitted, len(chosen)) - own)
    drawn = own + change
    drawn[_pauses(np.asarray(loudness, np.float64), index.fps)] = np.nan
    return drawn


def _fitted_column(fitted: np.ndarray, frames: int) -> np.ndarray:
    """One column of ``fitted_mouth`` (T,), checked against the choice's length."""
    fitted = np.asarray(fitted, np.float64)
    if fitted.shape != (frames,):
        raise ValueError(f"fitted has shape {fitted.shape}, the choice {frames} frames")
    return fitted


def _loudness_line(index: FootageIndex, loudness: np.ndarray, pause: np.ndarray) -> np.ndarray:
    """(T,) the opening (measure units) each speech frame's loudness asks of the person, on a straight line from
    their LINE_PERCENTILES openings at the speech's (outside its pauses) LINE_PERCENTILES loudness, held at the
    ends. The choice's prior maps by quantile instead (``_loudness_openings``: as close a frame as the footage
    has at each rank); drawn, a straight line follows the speech's loudness itself, where the quantile map
    squeezed the quiet frames and stretched the loud ones by the shape of the person's openings (another voice's
    proxy, videoretalking/2 with Mandarin: 0.53 by quantile, 0.59 by the line; bench/RESULTS.md)."""
    spoken = loudness[~pause] if (~pause).any() else loudness
    quiet, loud = np.percentile(spoken, LINE_PERCENTILES)
    closed, opened = np.percentile(index.mouth[index.face, 0], LINE_PERCENTILES)
    along = np.clip((loudness - quiet) / max(loud - quiet, 1e-9), 0.0, 1.0)
    return closed + along * (opened - closed)


def run_lengths(frames: np.ndarray) -> np.ndarray:
    """Lengths of the runs of consecutive footage frames (each next frame the footage's own next one)."""
    frames = np.asarray(frames)
    if frames.size == 0:
        return np.zeros(0, np.int64)
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    return np.diff(np.concatenate(([0], breaks, [frames.size])))


def join_fades(frames: np.ndarray, usable: np.ndarray, length: int = FADE_FRAMES) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fades centred on each join of the chosen ``frames`` (where they jump to another run): for
    ``length`` output frames after the join the run left goes on under the new one, and for ``length`` frames
    before it the new run's own earlier frames show under the old one, each weighted by its distance from the
    join (1 / (2 length + 1) .. length / (2 length + 1)). Per output frame: the footage frame faded in (-1:
    none) and its weight. Centred, the new mouth arrives on time: a fade after the join alone showed it a
    frame late (bench/RESULTS.md, "Joins centred"). A run cannot go on past the footage's ends or through a
    frame that is not ``usable``; a frame between two close joins keeps the stronger fade."""
    frames = np.asarray(frames, np.int64)
    usable = np.asarray(usable, bool)
    n = len(frames)
    source = np.full(n, -1, np.int64)
    weight = np.zeros(n)

    def fade(t: int, footage_frame: int, w: float) -> bool:
        if not 0 <= footage_frame < len(usable) or not usable[footage_frame]:
            return False
        if w > weight[t]:
            source[t], weight[t] = footage_frame, w
        return True

    for t in range(1, n):
        if frames[t] == frames[t - 1] + 1:
            continue
        for k in range(length):  # after the join: the run left goes on under the new one
            if t + k >= n or (k > 0 and frames[t + k] != frames[t + k - 1] + 1):
                break  # the new run already jumped again: its own join fades from there
            if not fade(t + k, int(frames[t - 1]) + 1 + k, (length - k) / (2 * length + 1)):
                break
        for k in range(1, length + 1):  # before it: the new run's own earlier frames under the old one
            if t - k < 0 or (k > 1 and frames[t - k + 1] != frames[t - k] + 1):
                break
            if not fade(t - k, int(frames[t]) - k, (length - k + 1) / (2 * length + 1)):
                break
    return source, weight
