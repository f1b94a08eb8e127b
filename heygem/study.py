"""The presenter study: which mouths THIS person makes, learnt once from their own footage and kept.

For a video (or photo) of a person, once: sampled frames of the first ``SCAN_SECONDS``, the face in each, the
face mesh on a crop of it, and the mouth's opening and width; when the video carries the person's own speech,
that speech's phones say which sound each frame shows, so that the key mouths of each class (closed lips,
open, spread, rounded) are taken where the person actually made them. Footage without usable speech (silent,
music) falls back to the mouths' shapes alone. The keys are moved into one canonical face frame (a similarity
transform on points that move with the skull) and stored with their landmarks.

The study passes those seconds as a job's main pass does (the faces searched on the job's anchors and
smoothed, the crops cut, the face mesh tracked from frame to frame), so the job takes what it found: the faces
the detector found, and the points of the crops (``heygem.faces.mesh_memo``). It is kept by the video's content
hash (``outputs/.cache/studies``, beside the face cache), with those faces: a second job with the same presenter
reads it and decodes, detects and measures nothing, and its main pass takes those faces as a first job's does.
"""
from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from heygem.faces import Face, get_detector
from heygem.faces.landmarks import EYE_OUTER_CORNERS, eye_distance, get_face_mesh, mouth_opening, mouth_width
from heygem.faces.mesh_memo import MeshMemo
from heygem.faces.schedule import Anchors, cache_name, save_npz, sparse_detect
from heygem.faces.track import crop_box, cut_crop, select_face, smooth_faces
from heygem.media.probe import MediaInfo
from heygem.media.video import iter_frames
from heygem.prefetch import Prefetch
from heygem.settings import DetectionOptions

log = logging.getLogger(__name__)

__all__ = ["KEY_CLASSES", "STABLE", "PresenterStudy", "StudyCache", "anchors", "apply_affine", "crop_landmarks",
           "sampling", "similarity", "study_kept", "study_presenter", "tracked_points"]

# 2: the detector's faces in the sampled frames are kept too; 3: found at the face's scale; 4: every frame of
# the studied seconds passed as a job passes it (faces on the job's anchors, smoothed; points tracked); 5: its
# faces found on frames shrunk in two steps (heygem.faces.base); 6: faces found 72 px high (FACE_PIXELS); 7: a quiet
# soundtrack read at a normal level (heygem.media.audio.read_speech)
STUDY_VERSION = 7
SCAN_SECONDS = 20.0
SCAN_STEP_SECONDS = 0.08  # every other frame at 25 fps
# Points that move with the skull, not the jaw: eye corners, nose bridge and tip, nose wings.
STABLE = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 98, 327)
# The key mouths, in this order: the first is the reference the others are morphed from.
KEY_CLASSES = ("closed", "half", "open", "spread", "rounded")
OPEN_PERCENTILE = 95.0
MIN_OPEN_RANGE = 0.04  # opening (over eye distance) the footage must span to borrow its own open mouth
MIN_WIDTH_RANGE = 0.03  # width change (over eye distance) that makes a spread or rounded key worth its own image
MIN_LABELLED = 3  # frames of a class the person's own speech must mark before its keys are chosen among them
VOICED_SHARE = 0.2  # share of the scanned frames that must carry voice for the footage's speech to be used
AHEAD = 8  # crops read, searched and cut ahead of the mesh


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, translation) mapping src points onto dst."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    a = (s * d).sum()
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()
    norm = (s * s).sum()
    ca, sa = a / norm, b / norm
    rot = np.array([[ca, -sa], [sa, ca]])
    t = md - rot @ ms
    return np.hstack([rot, t[:, None]]).astype(np.float64)


def apply_affine(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (points @ affine[:, :2].T + affine[:, 2]).astype(np.float32)


@dataclass
class PresenterStudy:
    """What the engine needs of one presenter, in canonical crop space.

    names: the class of each key (a subset of KEY_CLASSES, "closed" first).
    images: (K, S, S, 3) uint8 BGR canonical crops; points: (K, 468, 2) float32 landmarks on them.
    openings, widths: (K,) the keys' mouth opening and corner width over eye distance.
    frames: (K,) the source frame each key came from (-1: synthesised from another key).
    samples: face samples measured; labelled: whether the person's own speech chose the keys.
    photo: a still (or footage whose mouth never opens): the open mouth must be synthesised.
    detections: the detector's faces in each source frame it ran on (the anchors of the studied seconds, and
        the frames between two where the face was lost or jumped; none with a fixed face box): the job's main
        pass takes them instead of detecting those frames again.
    """

    names: list[str]
    images: np.ndarray
    points: np.ndarray
    openings: np.ndarray
    widths: np.ndarray
    frames: np.ndarray
    samples: int
    labelled: bool
    photo: bool
    detections: dict[int, list[Face]] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        source = "own speech" if self.labelled else "mouth shapes"
        made = [n for n, f in zip(self.names, self.frames) if f < 0]
        extra = f"; synthesised: {', '.join(made)}" if made else ""
        return f"{len(self.names)} keys ({', '.join(self.names)}) chosen by {source} from {self.samples} frames{extra}"


def sampling(fps: Fraction | float | None) -> tuple[int, int]:
    """The frames the study samples at the frame rate ``fps``: every ``step``-th frame below ``limit``."""
    rate = float(fps) if fps else 25.0
    return max(1, round(SCAN_STEP_SECONDS * rate)), int(SCAN_SECONDS * rate)


class StudyCache:
    """Studies on disk, one ``.npz`` per video content and everything that changes what is studied."""

    def __init__(self, folder: Path, video: MediaInfo, key_parts: tuple) -> None:
        self.path = Path(folder) / f"{cache_name(STUDY_VERSION, video, key_parts)}.npz"

    def load(self) -> PresenterStudy | None:
        try:
            with np.load(self.path, allow_pickle=False) as data:
                return PresenterStudy(
                    names=[str(n) for n in data["names"]], images=data["images"], points=data["points"],
                    openings=data["openings"], widths=data["widths"], frames=data["frames"],
                    samples=int(data["samples"]), labelled=bool(data["labelled"]), photo=bool(data["photo"]),
                    detections=_unpack_faces(data["detected_frames"], data["detected_counts"], data["detected_faces"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError) as exc:
            log.warning("ignoring an unreadable presenter study %s (%s)", self.path, exc)
            return None

    def save(self, study: PresenterStudy) -> None:
        """Write atomically: a crash leaves the old file or none."""
        save_npz(self.path, ".study-", names=np.array(study.names), images=study.images, points=study.points,
                 openings=study.openings, widths=study.widths, frames=study.frames, samples=study.samples,
                 labelled=study.labelled, photo=study.photo, **_packed_faces(study.detections))


def _packed_faces(detections: dict[int, list[Face]]) -> dict[str, np.ndarray]:
    """Faces by frame as three arrays (frame numbers, faces per frame, boxes with scores in float64: the very
    values the detector gave)."""
    frames = sorted(detections)
    boxes = [(f.x1, f.y1, f.x2, f.y2, f.score) for frame in frames for f in detections[frame]]
    return {"detected_frames": np.array(frames, np.int64),
            "detected_counts": np.array([len(detections[frame]) for frame in frames], np.int64),
            "detected_faces": np.array(boxes, np.float64).reshape(-1, 5)}


def _unpack_faces(frames: np.ndarray, counts: np.ndarray, boxes: np.ndarray) -> dict[int, list[Face]]:
    starts = np.concatenate([[0], np.cumsum(counts)])
    return {int(frame): [Face(*map(float, row)) for row in boxes[starts[i]:starts[i + 1]]]
            for i, frame in enumerate(frames)}


@dataclass
class _Sample:
    crop: np.ndarray
    points: np.ndarray
    opening: float
    width: float
    frame: int


def study_presenter(
    video: MediaInfo, fps: Fraction, detection: DetectionOptions, crop_size: int, crop_margin: float,
    cache_dir: Path | None = None, stats: dict | None = None, tick: Callable[[float], None] | None = None,
    face_height: float | None = None, memo: MeshMemo | None = None,
) -> PresenterStudy | None:
    """The study of ``video`` (from the cache when it is there); None when no face with landmarks is found.
    ``face_height``: the video's face size, for the detector's scale (the job's main pass detects with it too).
    ``memo``: where the face mesh points of the job's crops are kept (``heygem.faces.mesh_memo``, under the
    engine's crop size and margin, which ``crop_size`` and ``crop_margin`` must be): the study fills it for the
    frames it passes, so the job's main pass finds them there.

    ``stats["study"]`` is set to "cached" or "made". ``tick(share done)`` is called for every frame studied
    (a job's progress callback, through which a cancel stops the study too).
    """
    stats = stats if stats is not None else {}
    cache = _study_cache(video, fps, detection, crop_size, crop_margin, cache_dir)
    if cache is not None:
        cached = cache.load()
        if cached is not None:
            stats["study"] = "cached"
            log.info("presenter study of %s read from the cache: %s", video.path.name, cached.describe())
            return cached
    started = time.perf_counter()
    detections: dict[int, list[Face]] = {}
    samples = _scan(video, fps, detection, crop_size, crop_margin, tick or (lambda done: None), detections,
                    face_height, memo)
    if not samples:
        log.warning("presenter study: no face with landmarks in %s", video.path.name)
        return None
    labels = _own_speech_classes(video, fps, [s.frame for s in samples])
    study = _pick_keys(samples, labels, crop_size, still=video.kind == "image")
    study.detections = detections
    stats["study"] = "made"
    log.info("presenter study of %s made in %.2f s: %s", video.path.name, time.perf_counter() - started,
             study.describe())
    if cache is not None:
        cache.save(study)
    return study


def study_kept(video: MediaInfo, fps: Fraction, detection: DetectionOptions, crop_size: int, crop_margin: float,
               cache_dir: Path | None) -> bool:
    """Whether ``study_presenter`` would read the study of ``video`` back rather than make it."""
    cache = _study_cache(video, fps, detection, crop_size, crop_margin, cache_dir)
    return cache is not None and cache.path.is_file()


def _study_cache(video: MediaInfo, fps: Fraction, detection: DetectionOptions, crop_size: int, crop_margin: float,
                 cache_dir: Path | None) -> StudyCache | None:
    if cache_dir is None:
        return None
    return StudyCache(cache_dir, video, (fps, video.turn, video.width, video.height, detection.detector,
                                         detection.detect_size, detection.face, detection.box, detection.pads,
                                         crop_size, crop_margin))


def anchors(det: DetectionOptions, fps: Fraction | float | None) -> Anchors:
    """The frames a video's faces are detected on (``heygem.faces.schedule``): every ``det.every``-th, moved
    within the studied seconds onto the frames this study samples. The study and every job's main pass search
    the faces on these anchors alike, so the faces the study finds are the job's own."""
    step, limit = sampling(fps)
    return Anchors(det.every, step, limit)


def _scan(video: MediaInfo, fps: Fraction, det: DetectionOptions, crop_size: int, margin: float,
          tick: Callable[[float], None], detections: dict[int, list[Face]],
          face_height: float | None, memo: MeshMemo | None) -> list[_Sample]:
    """Crops, landmarks and mouth measures of sampled source frames; the detector's faces in each frame it ran
    on go into ``detections`` by frame number.

    Every frame of the studied seconds is taken as a job's main pass takes it: its face searched on the job's
    anchors and smoothed as the job smooths it, its crop cut from that, its face mesh points tracked from the
    frame before. The samples are every ``step``-th of those; the points of every crop go into ``memo``, where
    the job's own pass over these frames then finds them (the mesh runs once per frame either way: tracked,
    against twice from a box on every other frame)."""
    detector = None if det.box else get_detector(det.detector, det.detect_size, det.detector_weights)
    mesh = get_face_mesh()
    step, limit = sampling(fps)
    scanned = max(1, min(limit, video.frame_count))  # frames the scan passes, for the share done
    out: list[_Sample] = []

    def detect_one(item: tuple[int, np.ndarray], previous: Face | None) -> Face | None:
        number, frame = item
        found = detections[number] = detector.detect(frame, face_height)
        return select_face(found, det.face, previous)

    def crops() -> Iterator[tuple[int, tuple[int, int, int, int] | None, np.ndarray | None]]:
        # On to the first anchor at or past the last sampled frame, whose face ends the last gap as in the job.
        search = anchors(det, fps)
        decoder = iter_frames(video, fps)
        numbered = enumerate(itertools.islice(decoder, search.next(limit - 1) + 1))
        if detector is None:
            faced = ((item, Face(*map(float, det.box))) for item in numbered)
        else:
            faced = sparse_detect(((item, item) for item in numbered), detect_one, search)
        try:
            for (number, frame), face in smooth_faces(faced, det.smooth_window):
                if face is None:
                    yield number, None, None
                else:
                    box = crop_box(face, frame.shape[1], frame.shape[0], det.pads, margin)
                    yield number, box, cut_crop(frame, box, crop_size)
        finally:
            decoder.close()

    # Read, searched and cut a few frames ahead, in a thread of its own, while the mesh runs on the one before.
    cut = Prefetch(crops(), AHEAD, "heygem-study-read")
    previous: np.ndarray | None = None
    try:
        for number, box, crop in cut:
            tick(min(1.0, (number + 1) / scanned))
            if box is None:
                continue  # no face: the job tracks on from the last face's points, as here
            points = previous = tracked_points(mesh, crop, previous, margin, memo)
            x1, y1, x2, y2 = box
            if points is None or number >= limit or number % step or x2 - x1 < 8 or y2 - y1 < 8:
                continue
            out.append(_Sample(crop, points, mouth_opening(points), mouth_width(points), number))
    finally:
        cut.close()
    return out


def tracked_points(mesh, crop: np.ndarray, previous: np.ndarray | None, margin: float,
                   memo: MeshMemo | None) -> np.ndarray | None:
    """The face mesh points of one crop tracked from ``previous`` (``crop_landmarks``): kept in ``memo``, or found
    and kept there. The study and the built-in engine track with this one function, so the points one keeps are
    the points the other would find."""
    if memo is None:
        return crop_landmarks(mesh, crop, previous, margin)
    return memo.points(crop, previous, lambda: crop_landmarks(mesh, crop, previous, margin))


def crop_landmarks(mesh, crop: np.ndarray, previous: np.ndarray | None, margin: float) -> np.ndarray | None:
    """Face mesh points on a face crop (tracked from the previous crop's when given), or None when the mesh
    finds no face of a plausible size."""
    points = mesh.track(crop, previous) if previous is not None else None
    size = crop.shape[0]
    if points is None:
        inner = size / (1 + 2 * margin)
        lo = (size - inner) / 2
        points = mesh.from_box(crop, Face(lo, lo, lo + inner, lo + inner))
    if points is None:
        return None
    iod = eye_distance(points)
    return points if 0.12 * size < iod < 0.8 * size else None


def _own_speech_classes(video: MediaInfo, fps: Fraction, frames: list[int]) -> list[str] | None:
    """The mouth class each sampled frame shows by the person's own speech, or None when the footage has no
    usable speech (none, silent, or too little voice)."""
    if video.kind != "video" or not video.has_audio:
        return None
    from heygem.media.audio import load_audio
    from heygem.speech.loudness import mouth_drive
    from heygem.speech.phones import VISEMES, frame_visemes, recognise_phones

    try:
        samples = load_audio(video.path, 16000, SCAN_SECONDS + 1.0, stream=video.audio_stream)
    except Exception as exc:  # noqa: BLE001 - a soundtrack that cannot be read only means no labels
        log.info("presenter study: the soundtrack of %s is not used (%s)", video.path.name, exc)
        return None
    n = max(frames) + 1
    voiced = mouth_drive(samples, fps, n) > 0
    if voiced.mean() < VOICED_SHARE:
        log.info("presenter study: %s carries too little voice (%.0f%% of frames) to label its mouths",
                 video.path.name, 100 * voiced.mean())
        return None
    classes = frame_visemes(recognise_phones(samples), fps, n)
    return [VISEMES[int(classes[f])] for f in frames]


def _pose(points: np.ndarray) -> np.ndarray:
    """Yaw and pitch proxies: nose tip offset from the eye midpoint, over eye distance."""
    a, b = points[EYE_OUTER_CORNERS[0]], points[EYE_OUTER_CORNERS[1]]
    mid, iod = (a + b) / 2, max(eye_distance(points), 1e-6)
    axis = (b - a) / iod
    normal = np.array([-axis[1], axis[0]])
    nose = points[1] - mid
    return np.array([nose @ axis / iod, nose @ normal / iod])


def _pick_keys(samples: list[_Sample], labels: list[str] | None, crop_size: int, still: bool) -> PresenterStudy:
    """Key mouths among frames in the usual head pose: closed, half-open and open; spread and rounded where
    the footage has them clearly (else made by the engine from the line of keys)."""
    openings = np.array([s.opening for s in samples])
    widths = np.array([s.width for s in samples])
    poses = np.array([_pose(s.points) for s in samples])
    deviation = np.linalg.norm(poses - np.median(poses, axis=0), axis=1)
    usual = deviation <= max(np.percentile(deviation, 85), 1e-6)
    labelled = labels is not None
    label_of = np.array(labels if labels is not None else ["rest"] * len(samples))

    def among(*classes: str) -> np.ndarray:
        """Usual-pose frames the own speech marks with one of ``classes``; all usual ones without labels."""
        if labelled:
            chosen = np.flatnonzero(usual & np.isin(label_of, classes))
            if len(chosen) >= MIN_LABELLED:
                return chosen
        return np.flatnonzero(usual)

    # Closed, half-open and open by the mouths' openings alone, as the engine has always chosen them: the most
    # closed mouth is a closure whatever was said, and the loudness drive keeps comparing against the same keys.
    candidates = np.flatnonzero(usual)
    closed = int(candidates[np.argmin(openings[candidates])])
    chosen: dict[str, int] = {"closed": closed}
    open_target = np.percentile(openings, OPEN_PERCENTILE)
    if not still and open_target - openings[closed] >= MIN_OPEN_RANGE:
        wide = int(candidates[np.argmin(np.abs(openings[candidates] - open_target))])
        if openings[wide] - openings[closed] >= MIN_OPEN_RANGE:
            half = int(candidates[np.argmin(np.abs(openings[candidates] - (openings[closed] + openings[wide]) / 2))])
            if min(openings[half] - openings[closed], openings[wide] - openings[half]) > 0.02:
                chosen["half"] = half
            chosen["open"] = wide
    if "open" in chosen:
        # Spread and rounded: the widest and narrowest mouths that are not wide open (a wide-open mouth is
        # narrow because it is open, not because it is rounded).
        moderate = openings <= openings[closed] + 0.6 * (openings[chosen["open"]] - openings[closed])
        for name, classes, pick in (("spread", ("spread",), np.argmax), ("rounded", ("rounded",), np.argmin)):
            pool = np.intersect1d(among(*classes), np.flatnonzero(moderate))
            if len(pool) == 0:
                continue
            best = int(pool[pick(widths[pool])])
            if abs(widths[best] - widths[closed]) >= MIN_WIDTH_RANGE:
                chosen[name] = best
    reference = samples[closed].points[list(STABLE)]
    names = [n for n in KEY_CLASSES if n in chosen]
    images, points = [], []
    for name in names:
        sample = samples[chosen[name]]
        affine = similarity(sample.points[list(STABLE)], reference)
        images.append(cv2.warpAffine(sample.crop, affine, (crop_size, crop_size), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REPLICATE))
        points.append(apply_affine(affine, sample.points))
    return PresenterStudy(
        names=names, images=np.stack(images), points=np.stack(points).astype(np.float32),
        openings=np.array([openings[chosen[n]] for n in names], np.float32),
        widths=np.array([widths[chosen[n]] for n in names], np.float32),
        frames=np.array([samples[chosen[n]].frame for n in names], np.int64),
        samples=len(samples), labelled=labelled, photo="open" not in chosen)
