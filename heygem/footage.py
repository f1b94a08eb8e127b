"""The study of a presenter's whole footage: every frame's mouth, in one canonical face frame, kept.

Unit selection (issue 21) shows the person's own real mouths: for each frame of a new speech it picks a frame
of their footage. So every frame of the footage (up to ``MAX_FRAMES``; beyond that, frames evenly spaced, and
``sampled`` says so) is described once:

* the face mesh, tracked frame to frame (the detector runs on the first frame and where tracking loses the
  face), moved into a canonical frame by a similarity transform on points that move with the skull
  (``heygem.study.STABLE``): the eyes level, their outer corners ``CANONICAL_EYES`` apart;
* the mouth's opening and width over the eye distance (as ``heygem.eval`` measures them);
* the lower face in that canonical frame (``PATCH_BOX``: nose base to chin, cheek to cheek), kept as JPEG,
  so that a chosen mouth can be moved into any output frame's head pose, and its mean colour: frames far from
  the footage's usual colour (a fade from white, a flash, a cut to other light) are never chosen;
* where the footage carries the person's own speech (at least ``VOICED_SHARE`` of its frames voiced): that
  speech's features at each studied frame (``heygem.speech.frames``: phones with their context, loudness,
  normalised cepstra) and its normalised loudness, for ``heygem.selection`` to choose frames by. Footage whose
  sound was recorded out of step with its picture (``sound_lag``) has each frame described by the sounds its
  mouth was making, so that the mouths chosen keep time with the new speech, not with the footage's fault.

A frame without a face keeps NaN measures and no patch. The study is kept by the video's content hash beside
the other studies; a second job, or a presenter prepared before, reads it back.
"""
from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from heygem.errors import HeyGemError
from heygem.faces import Face, get_detector
from heygem.faces.landmarks import EYE_OUTER_CORNERS, eye_distance, get_face_mesh, mouth_opening, mouth_width
from heygem.faces.schedule import cache_name, save_npz
from heygem.faces.track import select_face
from heygem.media.probe import MediaInfo
from heygem.media.video import iter_frames
from heygem.settings import DetectionOptions
from heygem.study import STABLE, apply_affine, similarity

if TYPE_CHECKING:
    from heygem.speech.phones import BackgroundPhones

log = logging.getLogger(__name__)

__all__ = ["CANONICAL_SIZE", "FootageCache", "FootageStudy", "MIN_SECONDS", "PATCH_BOX", "footage_may_speak",
           "sound_lag", "study_footage"]

# 2: the footage's own speech features; 3: the lower face's colour; 4, 5: faces as base.py finds them; 6: a deeper
# patch; 7: the speech read where the mouth says it was (``sound_lag``); 8: a quiet soundtrack read at a normal
# level (heygem.media.audio.read_speech); 9: the cepstra worked out in NumPy (librosa's to a millionth, but a
# study and a new speech's features then come from one recipe)
FOOTAGE_VERSION = 9
MAX_FRAMES = 7500  # five minutes at 25 fps; longer footage is studied at evenly spaced frames
CANONICAL_SIZE = 256
CANONICAL_EYES = ((78.0, 96.0), (178.0, 96.0))  # outer eye corners (image left, image right) in the frame
# The lower face in the canonical frame, (x1, y1, x2, y2): nose base to below the chin, cheek to cheek. It reaches
# 8 px below the 256 px frame: a long face or a raised chin (Katie Hill's 95th percentile chin at 245) still
# leaves the blend room to fade out under the chin before the patch ends, where it drew a straight edge.
PATCH_BOX = (48, 128, 208, 264)
JPEG_QUALITY = 94
VOICED_SHARE = 0.2  # share of the footage's frames that must carry voice for its speech to be used
# Seconds of footage with a face the footage drive needs to choose mouths from (the built-in engine falls back
# to its key mouths under it): on 2-4 s the choice followed the real mouth worse than the key morph
# (bench/RESULTS.md, "The own voice's mouths drawn towards the fit").
MIN_SECONDS = 5.0
# Grey levels (any channel) a frame's lower face may differ from the footage's median and still be chosen: more
# is a fade or a flash, whose mouth would show as a pale or dark blot (colour matching stops at 40).
TONE_TOLERANCE = 30.0
# A soundtrack out of step with its picture (a camera and a microphone joined late, a phone's Bluetooth headset)
# is found by where the mouth's opening best follows the opening its own sounds ask for (``sound_lag``): looked
# for up to SYNC_REACH_SECONDS either way, taken when further than SYNC_OWN_SECONDS (lips lead or trail their
# sounds by a frame or so: that is the person's, and kept) and better there than as filmed by SYNC_MIN_GAIN, on
# at least SYNC_MIN_SECONDS of footage with a face (on 5 s halves of the shared clips chance peaks reached r 0.5
# eight frames off; on 25-37 s the footage's sound moved 0.2 s early was found at 5 and 6 frames, and every
# half as filmed within a frame of 0: bench/RESULTS.md, "Footage out of sync").
SYNC_REACH_SECONDS = 0.4
SYNC_OWN_SECONDS = 0.1
SYNC_MIN_GAIN = 0.15
SYNC_MIN_SECONDS = 20.0


@dataclass
class FootageStudy:
    """Every studied frame of one presenter's footage.

    frames: (N,) source frame numbers (all frames, or evenly spaced ones when ``sampled``).
    points: (N, 468, 2) float16 face-mesh points in the canonical frame (NaN where no face was found).
    openings, widths: (N,) float32 mouth opening and corner width over the eye distance (NaN: no face).
    patches: N JPEG images of ``PATCH_BOX`` in the canonical frame (empty bytes: no face).
    tones: (N, 3) float32 mean BGR of each patch (NaN: no face).
    fps: the footage's frame rate; sampled: frames were skipped to stay within ``MAX_FRAMES``.
    features, loudness: (N, D) and (N,) float32: the footage's own speech at each studied frame
        (``speech_features`` and ``frame_loudness`` with their default options); None without usable speech.
    voice: (2, 12) float32 ``voice_print`` of that speech (whose voice it is); None without usable speech.
    sound_lag: frames the footage's mouth comes after its own sounds (negative: before them) that ``features``
        and ``loudness`` were read back by (``sound_lag``); 0 for footage in step, or where it cannot be told.
    """

    frames: np.ndarray
    points: np.ndarray
    openings: np.ndarray
    widths: np.ndarray
    patches: list[bytes]
    tones: np.ndarray
    fps: float
    sampled: bool
    features: np.ndarray | None = None
    loudness: np.ndarray | None = None
    voice: np.ndarray | None = None
    sound_lag: int = 0

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: the frames with a face."""
        return ~np.isnan(self.openings)

    @property
    def usable(self) -> np.ndarray:
        """(N,) bool: the frames with a face whose lower face has the footage's usual colour (``TONE_TOLERANCE``)."""
        found = self.found
        if not found.any():
            return found
        usual = np.median(self.tones[found], axis=0)
        return found & (np.abs(np.nan_to_num(self.tones - usual, nan=np.inf)).max(axis=1) <= TONE_TOLERANCE)

    def patch(self, index: int) -> np.ndarray | None:
        """The lower face of studied frame ``index`` (BGR, PATCH_BOX's size), or None without a face."""
        data = self.patches[index]
        if not data:
            return None
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def describe(self) -> str:
        spaced = f", evenly spaced over the footage (longer than {MAX_FRAMES} frames)" if self.sampled else ""
        return f"{int(self.found.sum())} of {len(self.frames)} frames with a mouth{spaced}"


def canonical_template() -> np.ndarray:
    """The canonical frame's eye corners as a (2, 2) array (image left, image right)."""
    return np.array(CANONICAL_EYES, np.float32)


def to_canonical(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """The 2x3 similarity taking a frame's points into the canonical frame: least squares on the skull's
    points (``STABLE``) onto ``reference`` (the same points of the footage's first face, in that frame)."""
    return similarity(np.asarray(points, np.float32)[list(STABLE)], reference)


def _reference(points: np.ndarray) -> np.ndarray:
    """The skull's points of a first face, levelled and scaled into the canonical frame by its eye corners."""
    eyes = np.asarray(points, np.float32)[list(EYE_OUTER_CORNERS)]
    affine = similarity(eyes, canonical_template())
    return apply_affine(affine, np.asarray(points, np.float32)[list(STABLE)]).astype(np.float32)


class FootageCache:
    """Footage studies on disk, one ``.npz`` per video content and everything that changes what is studied."""

    def __init__(self, folder: Path, video: MediaInfo, key_parts: tuple) -> None:
        self.path = Path(folder) / f"footage-{cache_name(FOOTAGE_VERSION, video, key_parts)}.npz"

    def load(self) -> FootageStudy | None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                blob, offsets = data["patch_bytes"].tobytes(), data["patch_offsets"]
                return FootageStudy(
                    frames=data["frames"], points=data["points"], openings=data["openings"], widths=data["widths"],
                    patches=[blob[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)], tones=data["tones"],
                    fps=float(data["fps"]), sampled=bool(data["sampled"]),
                    features=data["features"] if "features" in data else None,
                    loudness=data["loudness"] if "loudness" in data else None,
                    voice=data["voice"] if "voice" in data else None, sound_lag=int(data["sound_lag"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring an unreadable footage study %s (%s)", self.path, exc)
            return None

    def save(self, study: FootageStudy) -> None:
        """Write atomically: a crash leaves the old file or none."""
        offsets = np.concatenate([[0], np.cumsum([len(p) for p in study.patches])]).astype(np.int64)
        speech = {} if study.features is None else {"features": study.features, "loudness": study.loudness}
        if study.voice is not None:
            speech["voice"] = study.voice
        save_npz(self.path, ".footage-", frames=study.frames, points=study.points, openings=study.openings,
                 widths=study.widths, patch_bytes=np.frombuffer(b"".join(study.patches), np.uint8),
                 patch_offsets=offsets, tones=study.tones, fps=study.fps, sampled=study.sampled,
                 sound_lag=study.sound_lag, **speech)


def studied_frames(frame_count: int, limit: int = MAX_FRAMES) -> np.ndarray:
    """The source frames studied: all of them, or ``limit`` evenly spaced ones."""
    if frame_count <= limit:
        return np.arange(frame_count, dtype=np.int64)
    return np.unique(np.linspace(0, frame_count - 1, limit).round().astype(np.int64))


def study_footage(video: MediaInfo, detection: DetectionOptions, cache_dir: Path | None = None,
                  tick: Callable[[float], None] | None = None, stats: dict | None = None) -> FootageStudy | None:
    """The footage study of ``video`` (from the cache when it is there); None for a photo, or footage in which
    no frame has a face. ``tick(share done)`` is called as frames are studied (a cancel raised there stops
    the study); ``stats["footage"]`` is set to "cached" or "made"."""
    if video.kind != "video" or not video.fps:
        return None
    stats = stats if stats is not None else {}
    fps = Fraction(video.fps)
    cache = None
    if cache_dir is not None:
        cache = FootageCache(cache_dir, video, (fps, video.turn, video.width, video.height, detection.detector,
                                                detection.detect_size, detection.face, detection.box))
        cached = cache.load()
        if cached is not None:
            stats["footage"] = "cached"
            log.info("footage study of %s read from the cache: %s", video.path.name, cached.describe())
            return cached
    started = time.perf_counter()
    # The footage's own speech is read, and its sounds recognised in child processes, beside the scan (4-5 s of
    # a 60 s presenter's study when they were recognised after it, in this process).
    samples, phones = _start_phones(video, fps)
    try:
        study = _scan(video, fps, detection, tick or (lambda done: None))
        if study is None:
            log.warning("footage study: no face with landmarks in %s", video.path.name)
            return None
        study.features, study.loudness, study.voice, study.sound_lag = _own_speech(video, fps, study.frames,
                                                                                   study.openings, samples, phones)
    finally:
        if phones is not None:
            phones.close()
    stats["footage"] = "made"
    log.info("footage study of %s made in %.2f s: %s", video.path.name, time.perf_counter() - started,
             study.describe())
    if cache is not None:
        cache.save(study)
    return study


def footage_may_speak(video: MediaInfo) -> bool:
    """Whether ``video`` may give the footage drive its mouths, as far as can be told before studying it: a
    video of at least MIN_SECONDS whose soundtrack carries the voice of VOICED_SHARE of its frames (the mouth
    drive ``auto`` takes the footage drive then; the study may still find too few faces or a still mouth,
    which the engine then says). Reads the soundtrack once per file and version in this process (0.24 s for a
    74 s video): a batch of jobs on one presenter reads it once."""
    if video.kind != "video" or not video.fps or not video.has_audio or video.duration < MIN_SECONDS:
        return False
    try:
        stat = video.path.stat()
    except OSError:
        return False
    return _speaks(str(video.path), stat.st_size, stat.st_mtime_ns, Fraction(video.fps), video.frame_count,
                   video.audio_stream)


@functools.lru_cache(maxsize=256)
def _speaks(path: str, size: int, modified_ns: int, fps: Fraction, frame_count: int, stream: int = 0) -> bool:
    """``footage_may_speak``'s reading of the soundtrack, remembered by the file's path, size and time."""
    from heygem.media.audio import load_audio

    try:
        samples = load_audio(path, 16000, stream=stream)
    except HeyGemError as exc:
        log.info("%s: its soundtrack cannot be read (%s), so its mouths are not chosen by it", Path(path).name, exc)
        return False
    return _speaks_enough(samples, fps, frame_count)


def _scan(video: MediaInfo, fps: Fraction, det: DetectionOptions, tick: Callable[[float], None]) -> FootageStudy | None:
    mesh = get_face_mesh()
    detector = None if det.box else get_detector(det.detector, det.detect_size, det.detector_weights)
    wanted = studied_frames(max(1, video.frame_count or 1), MAX_FRAMES)
    wanted_set = set(wanted.tolist()) if len(wanted) < (video.frame_count or 0) else None
    x1, y1, x2, y2 = PATCH_BOX
    frames: list[int] = []
    points_out: list[np.ndarray] = []
    openings: list[float] = []
    widths: list[float] = []
    patches: list[bytes] = []
    tones: list[np.ndarray] = []
    reference: np.ndarray | None = None
    previous: np.ndarray | None = None
    previous_face: Face | None = None
    nan_points = np.full((468, 2), np.nan, np.float16)
    total = max(1, len(wanted))
    source = iter_frames(video, fps)
    try:
        for number, image in enumerate(source):
            if wanted_set is not None and number not in wanted_set:
                previous = None  # frames apart: find the face afresh rather than track across the gap
                continue
            if len(frames) % 25 == 0:
                tick(min(1.0, len(frames) / total))
            points = mesh.track(image, previous) if previous is not None else None
            if points is not None and not _plausible(points, image):
                points = None
            if points is None:
                face = Face(*map(float, det.box)) if det.box else select_face(detector.detect(image), det.face,
                                                                             previous_face)
                if face is not None:
                    previous_face = face
                    points = mesh.from_box(image, face)
                    if points is not None and not _plausible(points, image):
                        points = None
            previous = points
            frames.append(number)
            if points is None:
                points_out.append(nan_points)
                openings.append(np.nan)
                widths.append(np.nan)
                patches.append(b"")
                tones.append(np.full(3, np.nan, np.float32))
                continue
            if reference is None:
                reference = _reference(points)
            affine = to_canonical(points, reference)
            canonical = apply_affine(affine, points)
            lower = cv2.warpAffine(image, affine, (CANONICAL_SIZE, max(CANONICAL_SIZE, y2)), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)[y1:y2, x1:x2]
            ok, jpeg = cv2.imencode(".jpg", lower, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            points_out.append(canonical.astype(np.float16))
            openings.append(mouth_opening(points))
            widths.append(mouth_width(points))
            patches.append(jpeg.tobytes() if ok else b"")
            tones.append(lower.reshape(-1, 3).mean(0).astype(np.float32))
    finally:
        source.close()
    tick(1.0)
    if reference is None:
        return None
    return FootageStudy(frames=np.array(frames, np.int64), points=np.stack(points_out),
                        openings=np.array(openings, np.float32), widths=np.array(widths, np.float32),
                        patches=patches, tones=np.array(tones, np.float32).reshape(-1, 3), fps=float(fps), sampled=wanted_set is not None)


def _start_phones(video: MediaInfo, fps: Fraction) -> tuple[np.ndarray | None, BackgroundPhones | None]:
    """The footage's own speech (16 kHz mono; None without a readable soundtrack) and its phones' recognition
    started in child processes (``heygem.speech.phones.BackgroundPhones``; None where none could start, or where
    the frames the scan will study carry too little voice to be chosen by: a silent or music track is not
    decoded beside the scan for nothing)."""
    if not video.has_audio:
        return None, None
    from heygem.media.audio import load_audio
    from heygem.speech.phones import BackgroundPhones

    try:
        samples = load_audio(video.path, 16000, stream=video.audio_stream)
    except HeyGemError as exc:
        log.info("footage study: the soundtrack of %s cannot be read (%s)", video.path.name, exc)
        return None, None
    if not _speaks_enough(samples, fps, video.frame_count):
        return samples, None  # (``_own_speech`` checks again on the frames actually studied)
    try:
        return samples, BackgroundPhones(samples)
    except OSError as exc:  # no process to be had: ``_own_speech`` recognises them in this one
        log.warning("footage study: could not recognise the footage's sounds beside the scan (%s)", exc)
        return samples, None


def _speaks_enough(samples: np.ndarray, fps: Fraction, frame_count: int) -> bool:
    """Whether the footage's speech ``samples`` carry voice on VOICED_SHARE of the frames a study of its
    ``frame_count`` frames passes (the judgement before the scan; ``_own_speech`` makes it again on the frames
    the scan actually studied)."""
    return _voiced_share(samples, fps, studied_frames(max(1, frame_count or 1))) >= VOICED_SHARE


def _voiced_share(samples: np.ndarray, fps: Fraction, frames: np.ndarray) -> float:
    """The share of ``frames`` (source frame numbers) whose speech is louder than silence."""
    from heygem.speech.loudness import SILENCE_DB, voice_envelope

    return float((voice_envelope(samples, fps, int(frames[-1]) + 1)[frames] > SILENCE_DB).mean())


def _own_speech(video: MediaInfo, fps: Fraction, frames: np.ndarray, openings: np.ndarray,
                samples: np.ndarray | None, phones: BackgroundPhones | None = None
                ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, int]:
    """The features, loudness and voice print of the footage's own speech ``samples`` for the mouths of ``frames``
    (``openings``: theirs), and the frames the sound was read back by to line up with them (``sound_lag``);
    (None, None, None, 0) without enough voice. ``phones``: its recognition started by ``_start_phones``,
    collected here."""
    if samples is None or len(frames) == 0:
        return None, None, None, 0
    from heygem.speech.frames import describe_speech
    from heygem.speech.phones import mouth_shapes, recognise_phones

    count = int(frames[-1]) + 1
    voiced = _voiced_share(samples, fps, frames)
    if voiced < VOICED_SHARE:
        log.info("footage study: %s carries too little voice (%.0f%% of frames) to choose its mouths by",
                 video.path.name, 100 * voiced)
        return None, None, None, 0
    recognised = None
    if phones is not None:
        try:
            recognised = phones.result()
        except RuntimeError as exc:
            log.warning("footage study: %s; recognising the footage's sounds here", exc)
    if recognised is None:
        recognised = recognise_phones(samples)
    lag = sound_lag(openings, mouth_shapes(recognised, samples, fps, count).opening, frames, fps)
    if lag:
        log.warning("footage study: in %s the mouth comes %d ms %s its sounds (the sound was recorded out of step "
                    "with the picture); its mouths are chosen by the sounds they were making", video.path.name,
                    round(abs(lag) * 1000 / fps), "after" if lag > 0 else "before")
    heard = np.clip(frames - lag, 0, count - 1)  # the sound each studied mouth was making
    speech = describe_speech(samples, fps, count, phones=recognised)
    return speech.features[heard], speech.loudness[heard], speech.voice, lag


def sound_lag(openings: np.ndarray, asked: np.ndarray, frames: np.ndarray, fps: float | Fraction) -> int:
    """How many frames a footage's mouth comes after its own sounds (negative: before them) where its sound was
    recorded out of step with its picture; 0 where it is in step, or cannot be told (SYNC_*).

    openings: (N,) the mouth's opening at the studied ``frames`` (source frame numbers; NaN without a face).
    asked: the opening the footage's own sounds ask for at every source frame (``mouth_shapes``)."""
    found = np.isfinite(openings)
    fps = float(fps)
    if len(frames) == 0 or found.sum() * (frames[-1] + 1) / len(frames) < SYNC_MIN_SECONDS * fps:
        return 0  # (studied at evenly spaced frames, each stands for the frames up to the next)
    reach = round(SYNC_REACH_SECONDS * fps)
    mouth = openings[found].astype(np.float64)
    shown = frames[found]
    r = {}
    for lag in range(-reach, reach + 1):
        heard = asked[np.clip(shown - lag, 0, len(asked) - 1)].astype(np.float64)
        r[lag] = float(np.corrcoef(mouth, heard)[0, 1]) if mouth.std() > 0 and heard.std() > 0 else math.nan
    finite = {lag: value for lag, value in r.items() if np.isfinite(value)}
    if 0 not in finite:
        return 0
    best = max(finite, key=lambda lag: (finite[lag], -abs(lag)))
    if abs(best) < SYNC_OWN_SECONDS * fps or finite[best] - finite[0] < SYNC_MIN_GAIN:
        return 0
    return best


def _plausible(points: np.ndarray, image: np.ndarray) -> bool:
    """A face of a plausible size: the eye distance between 2% and 80% of the picture's shorter side."""
    iod = eye_distance(points)
    return 0.02 * min(image.shape[:2]) < iod < 0.8 * min(image.shape[:2])
