"""How well a video's mouth follows a speech, measured on the video's frames alone.

Sync proxy: the inner-lip opening of each frame (468-point face mesh, independent of whichever engine made the
video) is correlated (Pearson) with the speech loudness of the same frame (``voice_envelope``, 300-3000 Hz, dB)
over lags of a few frames; the peak correlation and its lag are reported. Real talking-head videos with their
own soundtrack score about 0.1 to 0.6. The proxy can be fooled (a dark blob pasted over the mouth scores well),
so ``lower_face_ssim`` checks that the lower face still looks like the source person's.

Articulation (the split-time protocol of shared/research/articulation.md): a real talking head with its own
speech is cut in two by time; the engine gets the first half's frames and the second half's speech, and its
mouth is compared frame by frame with the real second half's: inner-lip opening and mouth-corner width (over
the eye distance), Pearson r at lag 0 and the best within a few frames. Loudness alone can earn a middling
opening r but no width r; the loudness proxy is reported beside them.

    python -m heygem.eval sync OUTPUT.mp4 --audio SPEECH [--max-lag N] [--json]
    python -m heygem.eval articulation CLIP.mp4 [--engine builtin|wav2lip|auto] [--drive phones|loudness] [--json]
"""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from heygem.errors import HeyGemError, InputError
from heygem.faces.base import Face
from heygem.features import SAMPLE_RATE
from heygem.speech.loudness import voice_envelope
from heygem.media.audio import load_audio
from heygem.media.ffmpeg import base_argv, ffmpeg_exe, file_url, format_fps, run_ffmpeg
from heygem.media.encode import VideoWriter
from heygem.media.probe import MediaInfo, probe, require_audio_source
from heygem.media.video import iter_frames
from heygem.settings import ENGINE_CHOICES, MOUTH_DRIVES, DetectionOptions, EncodeOptions, EngineOptions, Settings

if TYPE_CHECKING:
    from heygem.pipeline import PreparedAudio

log = logging.getLogger(__name__)

MIN_OVERLAP = 10  # frames with a face needed before a correlation means anything
DYNAMIC_RANGE_DB = 60.0  # loudness below (loudest frame - this) counts as silence when correlating
OWN_SYNC_MAX_LAG = 8  # frames either way searched for a real mouth's timing against its own speech (320 ms at 25 fps)


@dataclass
class SyncReport:
    """Result of ``measure_sync``.

    peak_r: the highest Pearson r over the lags (NaN when no lag had enough frames with a face).
    lag_frames: lag of the peak; positive = the mouth is late (opening at frame i + lag follows audio at i).
    r_by_lag: r for every lag tried (NaN where it could not be computed).
    frames: frames of the video measured; frames_without_face: how many of them had no face.
    opening: inner-lip opening per frame (gap / eye-corner distance), NaN where there was no face.
    envelope: speech loudness per frame in dB. fps: the video's frame rate.
    """

    peak_r: float
    lag_frames: int
    r_by_lag: dict[int, float]
    frames: int
    frames_without_face: int
    opening: np.ndarray = field(repr=False)
    envelope: np.ndarray = field(repr=False)
    fps: Fraction

    def summary(self) -> str:
        """One line for people."""
        peak = "n/a" if not np.isfinite(self.peak_r) else f"{self.peak_r:.2f}"
        return (f"peak r {peak} at lag {self.lag_frames} frames (mouth late if positive); "
                f"{self.frames_without_face} of {self.frames} frames without a face")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures (the per-frame series included, NaN as null)."""
        def num(x: float) -> float | None:
            return float(x) if np.isfinite(x) else None

        return {
            "peak_r": num(self.peak_r),
            "lag_frames": self.lag_frames,
            "r_by_lag": {str(k): num(v) for k, v in self.r_by_lag.items()},
            "frames": self.frames,
            "frames_without_face": self.frames_without_face,
            "fps": str(self.fps),
            "opening": [num(x) for x in self.opening],
            "envelope_db": [num(x) for x in self.envelope],
        }


def mouth_openings(video: str | Path) -> tuple[np.ndarray, Fraction]:
    """Inner-lip opening of every frame of ``video`` at its own frame rate (NaN without a face), and that rate."""
    opening, _, fps = mouth_measures(video)
    return opening, fps


def mouth_measures(video: str | Path) -> tuple[np.ndarray, np.ndarray, Fraction]:
    """Inner-lip opening and mouth-corner width of every frame of ``video`` at its own frame rate (both over
    the eye-corner distance, NaN without a face), and that rate: one landmark pass."""
    info = _measured_video(video, "mouth")
    opening, width = frame_mouth_measures(iter_frames(info, info.fps))
    log.debug("%s: %d frames", info.path, len(opening))
    return opening, width, info.fps


def _measured_video(video: str | Path, what: str) -> MediaInfo:
    """``video`` probed, or a clear error naming it where it is not a video (``what`` is measured on one)."""
    info = probe(video)
    if info.kind != "video" or info.fps is None:
        raise InputError(info.path, f"is {'a photo' if info.kind == 'image' else 'audio only'}; "
                                    f"the {what} is measured on a video (mp4, mov, mkv, webm, avi)")
    return info


def _mesh_points(frames: Iterable[np.ndarray]) -> Iterator[np.ndarray | None]:
    """The 468 face-mesh points of each BGR frame, tracked from frame to frame; None where no face is found."""
    from heygem.faces.landmarks import LandmarkTracker

    tracker = LandmarkTracker()
    for frame in frames:
        yield tracker(frame)


def frame_mouth_measures(frames: Iterable[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inner-lip opening (``mouth_opening``) and mouth-corner width (``mouth_width``) of each BGR frame, from
    one face-mesh pass tracked from frame to frame; NaN in both where no face is found."""
    from heygem.faces.landmarks import mouth_opening, mouth_width

    openings, widths = [], []
    for points in _mesh_points(frames):
        openings.append(mouth_opening(points) if points is not None else np.nan)
        widths.append(mouth_width(points) if points is not None else np.nan)
    return np.asarray(openings, dtype=np.float64), np.asarray(widths, dtype=np.float64)


def jaw_steps(video: str | Path, frames: int | None = None) -> np.ndarray:
    """How far the jaw line moves from each of the first ``frames`` frames of ``video`` (all: None) to the
    next: the root mean square over its points of the move, with each frame's skull fitted onto the video's
    median skull (``heygem.selection.jaw_outline``), in eye-corner distances; one face-mesh pass, NaN where
    either frame has no face. A real head's jaw line moves a little from frame to frame; mouths taken from
    moments whose heads were turned otherwise make it jump where they meet."""
    from heygem.selection import jaw_outline

    info = _measured_video(video, "jaw")
    points = [np.full((468, 2), np.nan) if found is None else np.asarray(found, np.float64)
              for found in _mesh_points(itertools.islice(iter_frames(info, info.fps), frames))]
    if len(points) < 2:
        return np.zeros(0)
    jaw = jaw_outline(np.stack(points))
    return np.sqrt(((jaw[1:] - jaw[:-1]) ** 2).sum(2).mean(1))


def frame_openings(frames: Iterable[np.ndarray]) -> np.ndarray:
    """Inner-lip opening of each BGR frame, tracked from frame to frame (NaN where no face is found)."""
    return frame_mouth_measures(frames)[0]


@dataclass
class FaceMotion:
    """How a face moves and blinks over a video that shows one face which hardly moves (a talking photo),
    measured by the face mesh on one crop for every frame (the first frame's, so that the mesh sees the same
    window each time and its own tracking adds no wobble).

    eyes_showing: (n, 2) for the subject's right and left eye (image left, right): the share of the first
        frame's darkest eye pixels (iris, pupil: the darkest quarter within the lids) still dark at the same
        place around the eye. The mesh's own lid points hardly follow a blink (a real one on
        WDA_KatieHill_000.mp4 moves them 10%), so how much of the eye shows is read from the pixels within its
        outline: about 1 open, 0.2 shut.
    eye_widths: (n, 2) each eye's corner distance, pixels (the far eye of a turned face is the narrower).
    roll: (n,) degrees the skull turned in the picture's plane since the first frame (a similarity on points
        that move with the skull).
    turn, nod: (n,) the nose tip's offset from the eyes' midpoint, along the eye line and across it, over the
        eye distance: they change as the head turns and nods.
    eye_distance: (n,) pixels between the outer eye corners.
    """

    eyes_showing: np.ndarray
    eye_widths: np.ndarray
    roll: np.ndarray
    turn: np.ndarray
    nod: np.ndarray
    eye_distance: np.ndarray
    fps: Fraction


def face_motion(video: str | Path, frames: int | None = None) -> FaceMotion:
    """``FaceMotion`` of ``video`` (its first ``frames`` frames, or all); InputError when the first frame has
    no face."""
    from heygem.faces.landmarks import (EYE_OUTER_CORNERS, LEFT_EYE, LEFT_EYE_SURROUND, NOSE_TIP, RIGHT_EYE,
                                        RIGHT_EYE_SURROUND, LandmarkTracker, get_face_mesh, roi_from_points)
    from heygem.study import STABLE, similarity

    info = probe(video)
    mesh = get_face_mesh()
    first = roi = None
    eyes: list[tuple[np.ndarray, float, list[int]]] = []
    rows = []
    for number, frame in enumerate(iter_frames(info, info.fps)):
        if frames is not None and number >= frames:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if first is None:
            first = LandmarkTracker()(frame)
            if first is None:
                raise InputError(info.path, "has no face in its first frame; the face's motion is measured from it")
            roi = roi_from_points(first)
            first = mesh.run(frame, roi)[0]  # the reference as every frame is read: on the same crop
            for loop, surround in ((RIGHT_EYE, RIGHT_EYE_SURROUND), (LEFT_EYE, LEFT_EYE_SURROUND)):
                inside = np.zeros(gray.shape, np.uint8)
                cv2.fillPoly(inside, [np.round(first[list(loop)]).astype(np.int32)], 255)
                dark = float(np.percentile(gray[inside > 0], 25))
                eyes.append(((inside > 0) & (gray <= dark), dark, list(loop + surround)))
        points, _ = mesh.run(frame, roi)
        showing = []
        for where, dark, around in eyes:
            # This frame moved back onto the first by the points around the eye, to read it where it was.
            back = similarity(points[around], first[around])
            aligned = cv2.warpAffine(gray, back, (gray.shape[1], gray.shape[0]), flags=cv2.INTER_LINEAR)
            showing.append(float(np.mean(aligned[where] <= dark + 15)))
        onward = similarity(first[list(STABLE)], points[list(STABLE)])
        a, b = points[EYE_OUTER_CORNERS[0]], points[EYE_OUTER_CORNERS[1]]
        distance = float(np.linalg.norm(b - a))
        along = (b - a) / max(distance, 1e-6)
        nose = points[NOSE_TIP] - (a + b) / 2
        widths = [float(np.linalg.norm(points[loop[0]] - points[loop[8]])) for loop in (RIGHT_EYE, LEFT_EYE)]
        rows.append([*showing, np.degrees(np.arctan2(onward[1, 0], onward[0, 0])), nose @ along / distance,
                     nose @ np.array([-along[1], along[0]]) / distance, distance, *widths])
    if first is None:
        raise InputError(info.path, "has no frames to measure")
    table = np.asarray(rows, np.float64)
    return FaceMotion(table[:, :2], table[:, 6:8], table[:, 2], table[:, 3], table[:, 4], table[:, 5], info.fps)


def head_motion_against(video: str | Path, still: str | Path, frames: int | None = None) -> np.ndarray:
    """(n, 3) per frame of ``video``: how its face turned in the picture's plane (degrees) and how far its
    middle moved (x, y pixels) against the same frame of ``still``, the same job made with the head kept still
    (so the same mouth): a Euclidean registration (OpenCV's ECC) over the face the mesh finds in the first
    frame of ``still``, a few pixels inside its outline. Finer than the mesh's own points, which wobble by
    tenths of a degree from frame to frame on a photo that does not move at all."""
    from heygem.faces.landmarks import LandmarkTracker

    moving_info, still_info = probe(video), probe(still)
    mask = middle = None
    crop = (slice(0), slice(0))

    def gray(picture: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(cv2.cvtColor(picture[crop], cv2.COLOR_BGR2GRAY), (0, 0), 1.0).astype(np.float32)

    rows = []
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-5)
    for number, (frame, reference) in enumerate(zip(iter_frames(moving_info, moving_info.fps),
                                                    iter_frames(still_info, still_info.fps))):
        if frames is not None and number >= frames:
            break
        if mask is None:
            points = LandmarkTracker()(reference)
            if points is None:
                raise InputError(still_info.path, "has no face in its first frame; the head is found there")
            face = np.zeros(reference.shape[:2], np.uint8)
            cv2.fillConvexPoly(face, cv2.convexHull(np.round(points).astype(np.int32)), 255)
            face = cv2.erode(face, np.ones((9, 9), np.uint8))
            ys, xs = np.nonzero(face)
            crop = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
            mask = face[crop]
            middle = np.array([xs.mean() - xs.min(), ys.mean() - ys.min(), 1.0])
        warp = np.eye(2, 3, dtype=np.float32)
        _, warp = cv2.findTransformECC(gray(reference), gray(frame), warp, cv2.MOTION_EUCLIDEAN, criteria, mask, 1)
        rows.append([np.degrees(np.arctan2(warp[1, 0], warp[0, 0])), *(warp @ middle - middle[:2])])
    return np.asarray(rows, np.float64).reshape(-1, 3)


def blinks_in(showing: np.ndarray, fps: float | Fraction, dip: float = 0.6) -> list[tuple[float, float]]:
    """(start, length) in seconds of each run of frames where ``showing`` (an eye's ``eyes_showing``, or the
    larger of both eyes' over their medians) is below ``dip`` of its median: a blink. Its length runs from the
    last frame before the run to the first after it (the eye was open at both): the time the eye was seen
    closing and opening. An open eye on a photo whose head moves reads down to about 0.7 of its median, a
    blink's shut frames about 0.2."""
    low = np.r_[False, showing < dip * np.median(showing), False].astype(np.int8)
    starts, ends = np.flatnonzero(np.diff(low) == 1), np.flatnonzero(np.diff(low) == -1)
    step = 1.0 / float(fps)
    return [(start * step, (end - start + 1) * step) for start, end in zip(starts, ends)]


def lag_correlations(opening: np.ndarray, envelope: np.ndarray, max_lag: int) -> dict[int, float]:
    """Pearson r of opening[t + k] against envelope[t] for k in [-max_lag, max_lag], frames with NaN left out."""
    n = min(len(opening), len(envelope))
    x, y = np.asarray(opening[:n], dtype=np.float64), np.asarray(envelope[:n], dtype=np.float64)
    result: dict[int, float] = {}
    for k in range(-max_lag, max_lag + 1):
        a, b = (x[k:], y[:n - k]) if k >= 0 else (x[:n + k], y[-k:])
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < MIN_OVERLAP or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
            result[k] = float("nan")  # too few frames, or a constant series: r is undefined
            continue
        result[k] = float(np.corrcoef(a[ok], b[ok])[0, 1])
    return result


def own_speech_lags(real_opening: np.ndarray, speech: str | Path | PreparedAudio, fps: Fraction,
                    max_lag: int = OWN_SYNC_MAX_LAG) -> dict[int, float]:
    """How a real mouth keeps time with its own speech: Pearson r of its opening at frame t + k against the
    opening the speech's sounds ask for at frame t (``heygem.speech.phones.mouth_shapes``), for k in
    +-``max_lag``; a positive k means the mouth comes after its sounds. ``speech`` prepared
    (``heygem.pipeline.prepare_audio``) and already given to a generation: its sounds are not recognised again.

    People's lips lead or trail their sounds by a frame or so. A clip whose mouth follows its speech best far
    from lag 0 was filmed or cut out of sync, and the split-time figures at lag 0 measure that too: an engine
    that keeps time with the speech reads low there whatever it draws."""
    from heygem.speech.phones import mouth_shapes, recognise_phones

    if isinstance(speech, (str, Path)):
        samples = load_audio(speech, SAMPLE_RATE)
        phones = recognise_phones(samples)
    else:
        samples, phones = speech.samples, speech.phones()
    asked = mouth_shapes(phones, samples, fps, len(real_opening)).opening
    return lag_correlations(np.asarray(real_opening, np.float64), asked, max_lag)


def bootstrap_r(generated: np.ndarray, real: np.ndarray, block: int, replicates: int = 2000,
                seed: int = 0) -> np.ndarray:
    """(replicates,) Pearson r at lag 0 of ``generated`` against ``real`` (frames with NaN left out), each on a
    moving-block bootstrap of the frames: the pairs resampled in runs of ``block`` consecutive frames (wrapping
    at the end), which keeps the series' own slow swings, so the spread says how much r moves on a half of
    this length by chance. NaN where a resample is constant. The same inputs and seed give the same array."""
    if block < 1 or replicates < 1:
        raise ValueError(f"block and replicates must be >= 1, got {block} and {replicates}")
    n = min(len(generated), len(real))
    x, y = np.asarray(generated[:n], np.float64), np.asarray(real[:n], np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    result = np.full(replicates, np.nan)
    if ok.sum() < MIN_OVERLAP:
        return result
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n, size=(replicates, -(-n // block)))
    frames = ((starts[:, :, None] + np.arange(block)) % n).reshape(replicates, -1)[:, :n]
    for i, rows in enumerate(frames):
        rows = rows[ok[rows]]
        a, b = x[rows], y[rows]
        if len(rows) >= MIN_OVERLAP and np.std(a) > 0 and np.std(b) > 0:
            result[i] = np.corrcoef(a, b)[0, 1]
    return result


def sync_envelope(samples: np.ndarray, fps: Fraction, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """The speech's voice envelope per frame (dB), raw and as it is correlated: frames past the end of the
    speech dropped, silence clamped."""
    envelope = voice_envelope(samples, fps, n_frames, SAMPLE_RATE)
    # Frames past the end of the speech carry no information about sync; leave them out.
    audio_frames = int(Fraction(len(samples), SAMPLE_RATE) * fps)
    usable = envelope[:max(0, min(len(envelope), audio_frames))]
    if usable.size:
        # Digital silence (-120 dB) next to speech would be an outlier that alone decides Pearson's r; below
        # DYNAMIC_RANGE_DB under the loudest frame the mouth is closed either way, so clamp there.
        usable = np.maximum(usable, usable.max() - DYNAMIC_RANGE_DB)
    return envelope, usable


def measure_sync(video: Path, audio: Path, max_lag: int = 3) -> SyncReport:
    """Correlate the mouth opening seen in ``video`` with the loudness of ``audio`` (see the module docstring)."""
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    require_audio_source(probe(audio))  # a clear error naming the file before the slow part
    opening, fps = mouth_openings(video)
    envelope, usable = sync_envelope(load_audio(audio, SAMPLE_RATE), fps, len(opening))
    r_by_lag = lag_correlations(opening, usable, max_lag)
    finite = {k: r for k, r in r_by_lag.items() if np.isfinite(r)}
    if finite:
        lag = max(finite, key=lambda k: (finite[k], -abs(k)))  # ties go to the smaller lag
        peak = finite[lag]
    else:
        lag, peak = 0, float("nan")
    report = SyncReport(peak, lag, r_by_lag, len(opening), int(np.isnan(opening).sum()), opening, envelope, fps)
    log.info("sync of %s against %s: %s", video, audio, report.summary())
    return report


# ---- articulation: the split-time protocol ------------------------------------------------------------------

@dataclass(frozen=True)
class SplitClip:
    """A real talking-head clip cut in two by time, on a frame boundary (``split_clip``).

    first_half: frames [0, split_frame): the presenter the engine is given (video only, or with its own
        speech: ``split_clip(footage_speech=True)``).
    second_half: frames [split_frame, end), video only: the real mouth, the ground truth.
    speech: the clip's own speech over the second half, from split_frame / fps for as long as the second
        half (WAV, the clip's sample rate and channels): the audio the engine is given.
    frames: the clip's frame count as probed (an estimate: duration x rate).
    fps: the constant frame rate of both halves (the clip's own, its average for variable-rate input).
    size: width, height of both halves (the clip's, or scaled down to ``max_side``).
    """

    clip: Path
    first_half: Path
    second_half: Path
    speech: Path
    fps: Fraction
    split_frame: int
    frames: int
    size: tuple[int, int]


@dataclass
class ArticulationReport:
    """Result of ``compare_articulation`` and ``measure_articulation``: a generated mouth against a real one.

    Per frame, with the face mesh: ``opening`` = inner-lip gap, ``width`` = mouth-corner distance, both over
    the eye-corner distance. Lag convention (as ``SyncReport``): at lag k, generated frame t + k is paired
    with real frame t, so a positive lag means the generated mouth is late.

    opening_r, width_r: Pearson r of the generated trajectory against the real one at lag 0 (NaN with fewer
        than MIN_OVERLAP frames with a face in both, or when one side is constant).
    opening_best_r, opening_best_lag, width_best_r, width_best_lag: the highest r within +-max_lag and its
        lag (ties go to the smaller lag; r NaN and lag 0 when no lag gave a number).
    opening_r_by_lag, width_r_by_lag: r at every lag tried.
    loudness_r: the sync proxy: the generated opening against the speech's voice-band loudness at lag 0
        (NaN without a speech). real_loudness_r: the same for the real mouth, for scale.
    frames_generated, frames_real: frames of each video. frames_compared: frames at lag 0 with a face in
        both; frames_dropped: frames of the overlap (the shorter of the two) left out because one or both
        had no face.
    fps: the frame rate of both. engine, split_frame: the engine that made the video and the frame where
        the clip was cut (``measure_articulation`` only).
    real_sync_r_by_lag: how the real mouth keeps time with its own speech (``own_speech_lags``;
        ``measure_articulation`` only): a half whose mouth follows its sounds best several frames off was filmed
        out of sync, and no engine that keeps time with the speech reads high at lag 0 on it.
    generated_opening, generated_width, real_opening, real_width: the series (NaN without a face).
    """

    opening_r: float
    opening_best_r: float
    opening_best_lag: int
    width_r: float
    width_best_r: float
    width_best_lag: int
    loudness_r: float
    real_loudness_r: float
    opening_r_by_lag: dict[int, float]
    width_r_by_lag: dict[int, float]
    frames_generated: int
    frames_real: int
    frames_compared: int
    frames_dropped: int
    fps: Fraction
    generated_opening: np.ndarray = field(repr=False)
    generated_width: np.ndarray = field(repr=False)
    real_opening: np.ndarray = field(repr=False)
    real_width: np.ndarray = field(repr=False)
    engine: str | None = None
    split_frame: int | None = None
    real_sync_r_by_lag: dict[int, float] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for people."""
        return (f"opening r {_fmt(self.opening_r)} (best {_fmt(self.opening_best_r)} at lag "
                f"{self.opening_best_lag:+d}), width r {_fmt(self.width_r)} (best {_fmt(self.width_best_r)} at "
                f"lag {self.width_best_lag:+d}), loudness proxy r {_fmt(self.loudness_r)}; "
                f"{self.frames_compared} frames compared, {self.frames_dropped} dropped without a face")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready figures (the per-frame series included, NaN as null)."""
        return {
            "opening_r": _num(self.opening_r),
            "opening_best_r": _num(self.opening_best_r),
            "opening_best_lag": self.opening_best_lag,
            "width_r": _num(self.width_r),
            "width_best_r": _num(self.width_best_r),
            "width_best_lag": self.width_best_lag,
            "loudness_r": _num(self.loudness_r),
            "real_loudness_r": _num(self.real_loudness_r),
            "opening_r_by_lag": {str(k): _num(v) for k, v in self.opening_r_by_lag.items()},
            "width_r_by_lag": {str(k): _num(v) for k, v in self.width_r_by_lag.items()},
            "frames_generated": self.frames_generated,
            "frames_real": self.frames_real,
            "frames_compared": self.frames_compared,
            "frames_dropped": self.frames_dropped,
            "fps": str(self.fps),
            "engine": self.engine,
            "split_frame": self.split_frame,
            "real_sync_r_by_lag": {str(k): _num(v) for k, v in self.real_sync_r_by_lag.items()},
            "generated_opening": [_num(x) for x in self.generated_opening],
            "generated_width": [_num(x) for x in self.generated_width],
            "real_opening": [_num(x) for x in self.real_opening],
            "real_width": [_num(x) for x in self.real_width],
        }


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _fmt(x: float) -> str:
    return f"{x:.2f}" if np.isfinite(x) else "n/a"


def best_lag(r_by_lag: dict[int, float]) -> tuple[float, int]:
    """The highest finite r and its lag (ties to the smaller |lag|); (NaN, 0) when there is none."""
    finite = {k: r for k, r in r_by_lag.items() if np.isfinite(r)}
    if not finite:
        return float("nan"), 0
    lag = max(finite, key=lambda k: (finite[k], -abs(k)))
    return finite[lag], lag


def scaled_size(width: int, height: int, max_side: int | None = None) -> tuple[int, int]:
    """``width`` x ``height`` scaled (aspect kept) so the longer side is at most ``max_side`` (None: as is),
    rounded to even numbers for H.264."""
    if max_side is not None and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = round(width * scale), round(height * scale)
    return max(2, width - width % 2), max(2, height - height % 2)


def cut_argv(exe: str, clip: str | Path, out: str | Path, *, fps: Fraction, start_frame: int, end_frame: int,
             size: tuple[int, int], preset: str, crf: int = 18) -> list[str]:
    """ffmpeg argv: frames [start_frame, end_frame) of ``clip``'s first video stream at the constant rate
    ``fps``, re-encoded at ``size`` (H.264, no audio). Not frame-exact against ``iter_frames``: on a clip whose
    video starts after its audio, the trim counts from the video's own first frame and the cut runs a frame or
    two early, so ``split_clip`` writes its halves from the decoded frames instead; this stays for quick
    scaled copies (bench/selection_today.py)."""
    rate = format_fps(fps)
    width, height = size
    chain = (f"fps={rate},trim=start_frame={start_frame}:end_frame={end_frame},setpts=PTS-STARTPTS,"
             f"scale={width}:{height}:flags=area")
    return [*base_argv(exe), "-y", "-i", file_url(clip),
            "-map", "0:V:0", "-an", "-sn", "-dn", "-vf", chain,
            "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p", "-r", rate,
            "-f", "mp4", file_url(out)]


def cut_speech_argv(exe: str, clip: str | Path, out: str | Path, *, start: Fraction, end: Fraction) -> list[str]:
    """ffmpeg argv: ``clip``'s first audio stream from ``start`` to ``end`` seconds as 16-bit WAV (its own
    rate and channels). Seconds count from the first sample, as ``load_audio`` and the sync measure count
    them, so video frame i lines up with the audio at i / fps."""
    trim = f"asetpts=PTS-STARTPTS,atrim=start={float(start):.6f}:end={float(end):.6f},asetpts=PTS-STARTPTS"
    return [*base_argv(exe), "-y", "-i", file_url(clip),
            "-map", "0:a:0", "-vn", "-sn", "-dn", "-af", trim, "-c:a", "pcm_s16le", "-f", "wav", file_url(out)]


def _write_halves(info: MediaInfo, split: SplitClip, first_audio: Path | None, preset: str) -> None:
    """Frames [0, split) and [split, end) of the clip, numbered as ``iter_frames`` numbers them (the numbering
    the audio lines up with: frame i at i / fps), re-encoded at ``split.size``. An ffmpeg trim would count
    frames after its own timestamp handling: on a clip whose video starts a little after its audio it cut
    one or two frames off the start, so the halves ran early against their speech."""
    width, height = split.size
    fps = Fraction(info.fps)
    options = EncodeOptions(preset=preset, crf=18)
    first = VideoWriter(split.first_half, width, height, fps, first_audio, split.split_frame / fps, options)
    second = None
    try:
        for number, image in enumerate(iter_frames(info, fps)):
            if image.shape[1] != width or image.shape[0] != height:
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            if number < split.split_frame:
                first.write(image)
                continue
            if second is None:
                first.close()
                # The probed count is an estimate: room to spare (the writer stops at what it is given).
                rest = max(1, split.frames - split.split_frame) / fps
                second = VideoWriter(split.second_half, width, height, fps, None, float(rest) * 1.1 + 1.0, options)
            second.write(image)
        if second is None:
            raise InputError(info.path, f"ended before frame {split.split_frame}; the split-time protocol needs "
                                        "both halves", "no_frames")
        second.close()
    except BaseException:
        for writer in (first, second):
            if writer is not None:
                writer.abort()
        raise


def split_clip(clip: str | Path, work_dir: str | Path, *, max_side: int | None = None,
               preset: str = "veryfast", at: float = 0.5, footage_speech: bool = False) -> SplitClip:
    """Cut ``clip`` (a video with its own speech) into two halves by time, on a frame boundary, into
    ``work_dir``: ``first_half.mp4``, ``second_half.mp4`` and ``second_half.wav`` (see ``SplitClip``).
    ``at``: where, as a share of the frames (the middle by default; bench/articulation.py also tries others).

    ``max_side`` scales both halves down so their longer side is at most that many pixels: every measure is
    a ratio of landmark distances, so it does not depend on the size.

    ``footage_speech``: the first half keeps its own speech, as a presenter's footage usually does (the footage
    drive chooses its mouths by it); without it the first half is silent, as the protocol has always cut it.
    """
    info = require_audio_source(probe(clip))
    if info.kind != "video" or info.fps is None:
        raise InputError(info.path, "is not a video; the split-time protocol cuts a talking-head video that "
                                    "carries its own speech (mp4, mov, mkv, webm, avi)")
    frames = info.frame_count
    if frames < 2 * MIN_OVERLAP:
        raise InputError(info.path, f"has {frames} frames; the split-time protocol needs at least "
                                    f"{2 * MIN_OVERLAP} (two halves of {MIN_OVERLAP})")
    folder = Path(work_dir)
    folder.mkdir(parents=True, exist_ok=True)
    split = int(frames * at)
    if not 0 < at < 1 or min(split, frames - split) < MIN_OVERLAP:
        raise ValueError(f"cannot cut {info.path.name} ({frames} frames) at {at}: each part needs {MIN_OVERLAP}")
    size = scaled_size(info.width, info.height, max_side)
    result = SplitClip(info.path, folder / "first_half.mp4", folder / "second_half.mp4", folder / "second_half.wav",
                       info.fps, split, frames, size)
    exe = ffmpeg_exe()
    own = None
    if footage_speech:
        own = folder / "first_half.wav"
        run_ffmpeg(cut_speech_argv(exe, info.path, own, start=Fraction(0), end=split / info.fps), subject=info.path)
    _write_halves(info, result, own, preset)
    # The probed frame count is an estimate (duration x rate): the speech spans the frames actually cut.
    second = probe(result.second_half).frame_count
    run_ffmpeg(cut_speech_argv(exe, info.path, result.speech, start=split / info.fps,
                               end=(split + second) / info.fps), subject=info.path)
    log.debug("split %s at frame %d of %d (%s fps) into %s", info.path, split, frames, info.fps, folder)
    return result


def compare_articulation(generated: str | Path, real: str | Path, *, speech: str | Path | None = None,
                         max_lag: int = 2) -> ArticulationReport:
    """Measure the mouth of ``generated`` against the ``real`` mouth frame by frame (see
    ``ArticulationReport``); with ``speech``, also the loudness proxy. Both videos must run at one rate.

    The real video against itself gives r = 1 for both measures: the check of the measuring pipeline.
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    if speech is not None:
        require_audio_source(probe(speech))  # a clear error naming the file before the slow part
    gen_open, gen_width, gen_fps = mouth_measures(generated)
    real_open, real_width, fps = mouth_measures(real)
    if abs(gen_fps - fps) > fps / 1000:
        raise InputError(Path(generated), f"runs at {float(gen_fps):.3f} fps and {real} at {float(fps):.3f}; "
                                          "the mouths are compared frame by frame, so give videos of one rate")
    opening_by_lag = lag_correlations(gen_open, real_open, max_lag)
    width_by_lag = lag_correlations(gen_width, real_width, max_lag)
    overlap = min(len(gen_open), len(real_open))
    compared = int((np.isfinite(gen_open[:overlap]) & np.isfinite(real_open[:overlap])).sum())
    loudness_r = real_loudness_r = float("nan")
    if speech is not None:
        samples = load_audio(speech, SAMPLE_RATE)
        loudness_r = lag_correlations(gen_open, sync_envelope(samples, fps, len(gen_open))[1], 0)[0]
        real_loudness_r = lag_correlations(real_open, sync_envelope(samples, fps, len(real_open))[1], 0)[0]
    report = ArticulationReport(
        opening_r=opening_by_lag[0], opening_best_r=best_lag(opening_by_lag)[0],
        opening_best_lag=best_lag(opening_by_lag)[1],
        width_r=width_by_lag[0], width_best_r=best_lag(width_by_lag)[0], width_best_lag=best_lag(width_by_lag)[1],
        loudness_r=loudness_r, real_loudness_r=real_loudness_r,
        opening_r_by_lag=opening_by_lag, width_r_by_lag=width_by_lag,
        frames_generated=len(gen_open), frames_real=len(real_open),
        frames_compared=compared, frames_dropped=overlap - compared, fps=fps,
        generated_opening=gen_open, generated_width=gen_width, real_opening=real_open, real_width=real_width)
    log.debug("articulation of %s against %s: %s", generated, real, report.summary())
    return report


def articulation_on_split(split: SplitClip, settings: Settings, output: str | Path, *,
                          speech: PreparedAudio | None = None, max_lag: int = 2) -> ArticulationReport:
    """Run ``heygem.generate`` with the first half as the presenter and the second half's speech, writing
    ``output``, and compare its mouth with the real second half's (``compare_articulation``). ``speech``: the
    second half's speech already prepared (``heygem.pipeline.prepare_audio``), to recognise its sounds once for
    several engines or drives."""
    from heygem.pipeline import generate  # the engines are loaded only when a generation runs

    result = generate(split.speech if speech is None else speech, split.first_half, output, settings)
    report = compare_articulation(result.output, split.second_half, speech=split.speech, max_lag=max_lag)
    report.engine, report.split_frame = result.engine, split.split_frame
    return report


def measure_articulation(clip: Path, settings: Settings, *, work_dir: Path | None = None, max_lag: int = 2,
                         max_side: int | None = None, footage_speech: bool = True) -> ArticulationReport:
    """The split-time protocol (shared/research/articulation.md): cut ``clip``, a real talking head with its
    own speech, into two halves by time; generate with the FIRST half's video as the presenter and the SECOND
    half's speech as the audio (the engine never sees the second half's frames); measure the generated mouth
    against the real second half's, frame by frame (``ArticulationReport``).

    ``settings`` choose the engine (and its mouth drive) and the encoder of both the cuts and the result.
    The halves and the generated video are kept in ``work_dir`` when given, else in a temporary folder that
    is removed. ``max_side`` scales the halves down first (the measures are size-free ratios).
    ``footage_speech``: the first half keeps its own speech, as a presenter's footage does (the default drive
    chooses the person's own mouths by it, and the key study labels its mouths by it); False cuts it silent.
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    with contextlib.ExitStack() as stack:
        folder = Path(work_dir) if work_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="heygem-articulation-")))
        split = split_clip(clip, folder, max_side=max_side, preset=settings.encode.preset,
                           footage_speech=footage_speech)
        from heygem.pipeline import prepare_audio

        speech = prepare_audio(split.speech, settings.limits)
        try:
            report = articulation_on_split(split, settings, folder / "generated.mp4", speech=speech, max_lag=max_lag)
            report.real_sync_r_by_lag = own_speech_lags(report.real_opening, speech, report.fps)
        finally:
            speech.close()
    log.info("articulation of %s (%s engine, drive %s): %s", clip, report.engine, settings.engine.mouth_drive,
             report.summary())
    return report


def _box_bounds(box: Face | Sequence[float]) -> tuple[float, float, float, float]:
    if isinstance(box, Face):
        return box.x1, box.y1, box.x2, box.y2
    x1, y1, x2, y2 = (float(v) for v in box)
    return x1, y1, x2, y2


def ssim(a_gray: np.ndarray, b_gray: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004) of two equal-size grayscale images, 8-bit range:
    11x11 Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03."""
    if a_gray.shape != b_gray.shape:
        raise ValueError(f"images differ in size: {a_gray.shape} and {b_gray.shape}")
    a, b = a_gray.astype(np.float64), b_gray.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def lower_face_ssim(a_bgr: np.ndarray, b_bgr: np.ndarray, box: Face | Sequence[float]) -> float:
    """SSIM of the lower half of ``box`` (x1, y1, x2, y2 in pixels, or a Face) between two same-size frames,
    on grayscale. 1.0 for identical crops; a mouth replaced by a blob or a different face scores far lower."""
    if a_bgr.shape[:2] != b_bgr.shape[:2]:
        raise ValueError(f"frames differ in size: {a_bgr.shape[:2]} and {b_bgr.shape[:2]}")
    height, width = a_bgr.shape[:2]
    x1, y1, x2, y2 = _box_bounds(box)
    left, right = max(0, int(round(x1))), min(width, int(round(x2)))
    top, bottom = max(0, int(round((y1 + y2) / 2))), min(height, int(round(y2)))
    if right - left < 11 or bottom - top < 11:
        raise ValueError(f"the lower half of box {(x1, y1, x2, y2)} is too small (under 11 px) inside a "
                         f"{width}x{height} frame")

    def gray(image: np.ndarray) -> np.ndarray:
        crop = image[top:bottom, left:right]
        return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop

    return ssim(gray(a_bgr), gray(b_bgr))


def _articulation_settings(args: argparse.Namespace) -> Settings:
    """Settings of the generation the articulation command measures: no face cache (the halves are
    temporary), a fast encoder preset, the engine and mouth drive asked for."""
    return Settings(detection=DetectionOptions(cache_dir=None),
                    engine=EngineOptions(engine=args.engine, checkpoint=args.checkpoint, mouth_drive=args.drive),
                    encode=EncodeOptions(preset=args.preset))


def _print_articulation(report: ArticulationReport) -> None:
    def best(r: float, lag: int) -> str:
        return f"best {_fmt(r)} at lag {lag:+d}" if np.isfinite(r) else "best n/a"

    print(f"opening r: lag 0 {_fmt(report.opening_r)}, {best(report.opening_best_r, report.opening_best_lag)}")
    print(f"width r: lag 0 {_fmt(report.width_r)}, {best(report.width_best_r, report.width_best_lag)}")
    print(f"loudness-proxy r: {_fmt(report.loudness_r)} (generated opening vs the speech's loudness, lag 0; "
          f"the real mouth: {_fmt(report.real_loudness_r)})")
    if report.real_sync_r_by_lag:
        real_r, real_lag = best_lag(report.real_sync_r_by_lag)
        print(f"the real mouth against its own speech's sounds: lag 0 {_fmt(report.real_sync_r_by_lag.get(0, np.nan))}, "
              f"{best(real_r, real_lag)} (lag > 0 = the mouth after its sounds; several frames off: the clip is out "
              "of sync, and lag 0 cannot read high)")
    print(f"frames: {report.frames_generated} generated, {report.frames_real} real, {report.frames_compared} "
          f"compared, {report.frames_dropped} dropped without a face; engine {report.engine}, "
          f"cut at frame {report.split_frame}; lag > 0 = generated mouth late")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m heygem.eval sync VIDEO --audio SPEECH`` or ``articulation CLIP``: print the figures; exit 2
    on bad input."""
    parser = argparse.ArgumentParser(prog="python -m heygem.eval", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sync = commands.add_parser("sync", help="correlate a video's mouth opening with a speech's loudness")
    sync.add_argument("video", type=Path, help="the video to judge (e.g. a lip-synced output)")
    sync.add_argument("--audio", type=Path, required=True,
                      help="the speech it should follow (audio file, or a video with a soundtrack)")
    sync.add_argument("--max-lag", type=int, default=3, help="largest lag tried, in frames (default 3)")
    sync.add_argument("--json", action="store_true", help="print the figures as JSON")
    sync.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    art = commands.add_parser("articulation", help="split-time protocol: generate the second half of a real "
                                                   "talking head from its first half and its speech, compare mouths")
    art.add_argument("clip", type=Path, help="a real talking-head video with its own speech")
    art.add_argument("--engine", default="builtin", choices=ENGINE_CHOICES, help="engine to measure (default builtin)")
    art.add_argument("--checkpoint", type=Path, help="Wav2Lip checkpoint for --engine wav2lip or auto")
    art.add_argument("--drive", default=EngineOptions.mouth_drive, choices=MOUTH_DRIVES,
                     help=f"what moves the built-in engine's mouth (default {EngineOptions.mouth_drive})")
    art.add_argument("--max-lag", type=int, default=2, help="largest lag tried, in frames (default 2)")
    art.add_argument("--max-side", type=int, help="scale the halves down to this longer side first (pixels)")
    art.add_argument("--preset", default="veryfast", help="x264 preset of the cuts and the result (default veryfast)")
    art.add_argument("--silent-footage", action="store_true",
                     help="cut the first half without its own speech (by default it keeps it, as a presenter's "
                          "footage does; the footage drive falls back to the key mouths without it)")
    art.add_argument("--work-dir", type=Path, help="keep the halves and the generated video here")
    art.add_argument("--json", action="store_true", help="print the figures as JSON")
    art.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # YuNet runs on OpenMP: on a busy machine spinning threads cost more than they give. Only the command
    # sets this (before the detector first runs), never the library.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.max_lag < 0:
        parser.error("--max-lag must be 0 or more")
    if args.command == "articulation":
        if args.max_side is not None and args.max_side < 16:
            parser.error("--max-side must be 16 pixels or more")
        return _report(lambda: measure_articulation(args.clip, _articulation_settings(args), work_dir=args.work_dir,
                                                    max_lag=args.max_lag, max_side=args.max_side,
                                                    footage_speech=not args.silent_footage),
                       _print_articulation, args.json)
    return _report(lambda: measure_sync(args.video, args.audio, args.max_lag), _print_sync, args.json)


def _print_sync(report: SyncReport) -> None:
    print(report.summary())
    print("r by lag: " + " ".join(f"{k:+d}:{'n/a' if not np.isfinite(r) else f'{r:.3f}'}"
                                  for k, r in report.r_by_lag.items()))


def _report(measure: Callable[[], Any], show: Callable[[Any], None], as_json: bool) -> int:
    """Run one measure for the command line: its report as text or JSON, or the error and exit code 2."""
    try:
        report = measure()
    except HeyGemError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        show(report)
    return 0

if __name__ == "__main__":
    sys.exit(main())
