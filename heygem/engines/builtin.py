"""The built-in engine: no downloaded weights, the mouth re-animated from the person's own footage.

A two-to-three-key optical-flow morph ("MikeTalk", Ezzat and Poggio 2000), chosen after measuring three
methods (../shared/research/builtin-engine.md):

* ``start``: the speech becomes a 0..1 mouth drive (heygem.engines.drive). The source is scanned (every
  other frame, at most ``SCAN_SECONDS``), each face cropped exactly as the pipeline will crop it, and the
  face mesh measures the mouth opening. Key mouths are picked among frames in the usual head pose: the most
  closed, a half-open one and a nearly widest one (a high percentile, not the maximum). Each key is moved
  into one canonical face frame (a similarity transform on stable points: eye corners and nose) and dense
  optical flow (OpenCV DIS) links consecutive keys. The morph is precomputed at ``LEVELS`` openings.
* ``synthesize``: per crop, the face mesh (tracked from the previous crop) gives the similarity transform
  canonical -> crop; the morph at this frame's drive is warped in, matched in colour to the skin around
  this crop's mouth, and blended through a soft mask over lips, mouth interior and chin (never the nose).
  Every pixel outside that mask is the input crop unchanged; a crop without landmarks comes back unchanged.

A photo (or footage whose mouth never opens) has no open mouth to borrow: the open key is made by pushing
the lower lip and jaw down with a smooth displacement field and painting a dark mouth interior between the
lips. That path is simpler and looks less real.
"""
from __future__ import annotations

import logging
import time
from typing import ClassVar

import cv2
import numpy as np

from heygem.engines.base import Engine, EngineJob
from heygem.engines.drive import mouth_drive
from heygem.errors import EngineError
from heygem.faces import Face, get_detector
from heygem.faces.landmarks import (
    CHIN,
    EYE_OUTER_CORNERS,
    INNER_LIP,
    OUTER_LIP,
    eye_distance,
    get_face_mesh,
    mouth_opening,
)
from heygem.faces.track import crop_box, select_face
from heygem.media.video import iter_frames

log = logging.getLogger(__name__)

__all__ = ["BuiltinEngine"]

# Points that move with the skull, not the jaw: eye corners, nose bridge and tip, nose wings.
STABLE = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4, 1, 98, 327)
SUBNASALE = 2
UPPER_LIP_TOP = 0
LOWER_LIP_BOTTOM = 17
CHIN_POINTS = (176, 148, 152, 377, 400)
# Inner-lip loop split into its upper (left corner -> right corner) and lower (right -> left) halves.
INNER_UPPER = INNER_LIP[:11]
INNER_LOWER = INNER_LIP[10:] + INNER_LIP[:1]

SCAN_SECONDS = 20.0
SCAN_STEP_SECONDS = 0.08  # every other frame at 25 fps
OPEN_PERCENTILE = 95.0
MIN_OPEN_RANGE = 0.04  # opening (over eye distance) the footage must span to borrow its own open mouth
LEVELS = 33
COLOUR_SMOOTHING = 0.35  # share of the new colour offset taken per frame
SYNTHETIC_OPEN = 0.13  # photo path: how far the lower lip moves at full drive, over eye distance


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, translation) mapping src points onto dst."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s, d = src - ms, dst - md
    a = (s * d).sum()  # sum of x x' + y y'
    b = (s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()
    norm = (s * s).sum()
    ca, sa = a / norm, b / norm
    rot = np.array([[ca, -sa], [sa, ca]])
    t = md - rot @ ms
    return np.hstack([rot, t[:, None]]).astype(np.float64)


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (points @ affine[:, :2].T + affine[:, 2]).astype(np.float32)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


class _Key:
    """One key mouth in canonical space: the whole canonical crop and its landmarks."""

    def __init__(self, image: np.ndarray, points: np.ndarray, opening: float, frame: int) -> None:
        self.image, self.points, self.opening, self.frame = image, points, opening, frame


class BuiltinEngine(Engine):
    """Own-footage mouth morph on 256x256 crops with a quarter-box margin (room for the face mesh)."""

    name: ClassVar[str] = "builtin"
    crop_size: ClassVar[int] = 256
    crop_margin: ClassVar[float] = 0.25
    # Its own mask already stops below the nose; the pipeline's mask must not cut the upper lip, which sits at ~60%.
    blend_top: ClassVar[float] = 0.45
    batch_size: ClassVar[int] = 16

    def __init__(self) -> None:
        self.mesh = get_face_mesh()
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._reset()

    def _reset(self) -> None:
        self.drive = np.zeros(0, np.float32)
        self.keys: list[_Key] = []
        self.photo = False
        self.levels: np.ndarray | None = None  # (LEVELS, h, w, 3) float32 morphs of the canonical ROI
        self.roi = (0, 0, 0, 0)  # x0, y0, x1, y1 in canonical pixels
        self.mask: np.ndarray | None = None  # (h, w) float32 over the ROI
        self.ring: np.ndarray | None = None  # (h, w) float32: skin around the mouth, for colour matching
        self.canon_stable: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self._offset: np.ndarray | None = None
        self._counter = 0

    def describe(self) -> str:
        if self.photo:
            return f"{self.name} (photo: synthetic mouth opening, simpler than the own-footage morph)"
        if self.keys:
            return f"{self.name} (own-footage mouth morph, {len(self.keys)} keys)"
        return f"{self.name} (own-footage mouth morph)"

    # ---------------------------------------------------------------------------------------------- start
    def start(self, job: EngineJob) -> None:
        started = time.perf_counter()
        self._reset()
        self.drive = mouth_drive(job.samples, job.fps, job.frames)
        samples = self._scan(job)
        if not samples:
            log.warning("builtin engine: no face with landmarks in %s; frames will pass through unchanged",
                        job.video.path.name)
            return
        openings = np.array([s[2] for s in samples])
        keys = self._pick_keys(samples, openings)
        photo = job.video.kind == "image" or len(keys) < 2
        self.canon_stable = keys[0].points[list(STABLE)].copy()
        if photo:
            self.photo = True
            self.keys = keys[:1]
            why = "a photo" if job.video.kind == "image" else "footage whose mouth hardly opens"
            log.info("builtin engine: %s has no open mouth to borrow; using the simpler photo path "
                     "(lower lip and jaw pushed down, mouth interior painted)", why)
            self._build_photo_levels()
        else:
            self.keys = keys
            self._build_video_levels()
        log.info("builtin engine ready in %.2f s: %d face samples, keys at openings %s (frames %s), drive mean %.2f",
                 time.perf_counter() - started, len(samples),
                 ", ".join(f"{k.opening:.3f}" for k in self.keys), ", ".join(str(k.frame) for k in self.keys),
                 float(self.drive.mean()) if len(self.drive) else 0.0)

    def _scan(self, job: EngineJob) -> list[tuple[np.ndarray, np.ndarray, float, int]]:
        """(crop, points, opening, frame number) of sampled source frames."""
        det = job.detection
        detector = None if det.box else get_detector(det.detector, det.detect_size, det.detector_weights)
        fps = float(job.fps) if job.fps else 25.0
        step = max(1, round(SCAN_STEP_SECONDS * fps))
        limit = int(SCAN_SECONDS * fps)
        size = self.crop_size
        out = []
        previous_face: Face | None = None
        frames = iter_frames(job.video, job.fps)
        try:
            for number, frame in enumerate(frames):
                if number >= limit:
                    break
                if number % step:
                    continue
                if det.box:
                    face: Face | None = Face(*map(float, det.box))
                else:
                    face = select_face(detector.detect(frame), det.face, previous_face)
                if face is None:
                    continue
                previous_face = face
                x1, y1, x2, y2 = crop_box(face, frame.shape[1], frame.shape[0], det.pads, self.crop_margin)
                if x2 - x1 < 8 or y2 - y1 < 8:
                    continue
                crop = cv2.resize(frame[y1:y2, x1:x2], (size, size))
                points = self._landmarks(crop, None)
                if points is None:
                    continue
                out.append((crop, points, mouth_opening(points), number))
        finally:
            frames.close()
        return out

    def _pose(self, points: np.ndarray) -> np.ndarray:
        """Yaw and pitch proxies: nose tip offset from the eye midpoint, over eye distance."""
        a, b = points[EYE_OUTER_CORNERS[0]], points[EYE_OUTER_CORNERS[1]]
        mid, iod = (a + b) / 2, max(eye_distance(points), 1e-6)
        axis = (b - a) / iod
        normal = np.array([-axis[1], axis[0]])
        nose = points[1] - mid
        return np.array([nose @ axis / iod, nose @ normal / iod])

    def _pick_keys(self, samples: list, openings: np.ndarray) -> list[_Key]:
        """Closed, half-open and open keys among frames in the usual pose, moved into canonical space."""
        poses = np.array([self._pose(s[1]) for s in samples])
        deviation = np.linalg.norm(poses - np.median(poses, axis=0), axis=1)
        usual = deviation <= max(np.percentile(deviation, 85), 1e-6)
        candidates = np.flatnonzero(usual)
        closed = candidates[np.argmin(openings[candidates])]
        chosen = [closed]
        open_target = np.percentile(openings, OPEN_PERCENTILE)
        if open_target - openings[closed] >= MIN_OPEN_RANGE:
            wide = candidates[np.argmin(np.abs(openings[candidates] - open_target))]
            half_target = (openings[closed] + openings[wide]) / 2
            half = candidates[np.argmin(np.abs(openings[candidates] - half_target))]
            if openings[wide] - openings[closed] >= MIN_OPEN_RANGE:
                if min(openings[half] - openings[closed], openings[wide] - openings[half]) > 0.02:
                    chosen.append(half)
                chosen.append(wide)
        reference = samples[closed][1][list(STABLE)]
        keys = []
        for index in chosen:
            crop, points, opening, frame = samples[index]
            affine = _similarity(points[list(STABLE)], reference)
            image = cv2.warpAffine(crop, affine, (self.crop_size, self.crop_size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
            keys.append(_Key(image, _apply(affine, points), opening, frame))
        return keys

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

    def _build_video_levels(self) -> None:
        keys = self.keys
        lips = [k.points[list(OUTER_LIP)] for k in keys]
        lower = keys[0].points[LOWER_LIP_BOTTOM]
        chins = [lower + 0.7 * (k.points[list(CHIN_POINTS)] - lower) for k in keys]
        self._build_region(lips, chins, keys[0].points)
        x0, y0, x1, y1 = self.roi
        pad = 8  # flow and warps see a little beyond the ROI
        px0, py0 = max(0, x0 - pad), max(0, y0 - pad)
        px1, py1 = min(self.crop_size, x1 + pad), min(self.crop_size, y1 + pad)
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

    def _build_photo_levels(self) -> None:
        key = self.keys[0]
        p = key.points
        iod = eye_distance(p)
        drop = SYNTHETIC_OPEN * iod
        lower = p[LOWER_LIP_BOTTOM]
        lips = [p[list(OUTER_LIP)], p[list(OUTER_LIP)] + [0.0, drop]]
        chins = [lower + 0.7 * (p[list(CHIN_POINTS)] - lower) + [0.0, drop]]
        self._build_region(lips, chins, p)
        x0, y0, x1, y1 = self.roi
        h, w = y1 - y0, x1 - x0
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
        upper = p[list(INNER_UPPER)]
        centre = p[list(INNER_LIP)].mean(0)
        half_width = max(np.linalg.norm(p[61] - p[291]) / 2, 1.0)
        chin_y = p[CHIN, 1]
        order = np.argsort(upper[:, 0])
        lip_line = np.interp(gx[0], upper[order, 0], upper[order, 1]).astype(np.float32)
        # Displacement in destination pixels: 0 above the inner upper lip; below the opened gap the lower lip
        # and jaw are moved down by the full amount (fading out under the chin). In the gap the source is
        # stretched, and painted over by the mouth interior.
        wx = np.exp(-0.5 * ((gx - centre[0]) / (0.6 * half_width)) ** 2)
        below_chin = 1.0 - _smoothstep((gy - chin_y) / (0.35 * iod))
        image = key.image.astype(np.float32)
        lip_colour = cv2.mean(key.image, self._poly_mask(p[list(OUTER_LIP)]))[:3]
        dark = np.array(lip_colour, np.float32) * 0.4
        inner_lower = p[list(INNER_LOWER)]
        lower_wx = np.exp(-0.5 * ((inner_lower[:, 0] - centre[0]) / (0.6 * half_width)) ** 2)
        levels = np.empty((LEVELS, h, w, 3), np.float32)
        for li, t in enumerate(np.linspace(0.0, 1.0, LEVELS)):
            gap = t * drop * wx
            dy = (gap * _smoothstep((gy - lip_line[None, :]) / np.maximum(gap, 1.0)) * below_chin).astype(np.float32)
            warped = cv2.remap(image, gx, gy - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            if t > 0:
                # The mouth interior: between the inner upper lip and the moved inner lower lip.
                moved_lower = inner_lower + np.stack([np.zeros_like(lower_wx), t * drop * lower_wx], 1)
                poly = np.concatenate([upper, moved_lower])
                alpha = self._poly_mask(poly - [x0, y0], (h, w)).astype(np.float32) / 255.0
                alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.8, 0.012 * iod))[..., None]
                shade = dark * (0.7 + 0.6 * _smoothstep((gy - lip_line[None, :]) / max(drop, 1.0)))[..., None]
                warped = warped * (1 - alpha) + shade * alpha
            levels[li] = warped
        self.levels = levels

    def _poly_mask(self, polygon: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
        mask = np.zeros(shape or (self.crop_size, self.crop_size), np.uint8)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
        return mask

    # ------------------------------------------------------------------------------------------ synthesize
    def _landmarks(self, crop: np.ndarray, previous: np.ndarray | None) -> np.ndarray | None:
        points = self.mesh.track(crop, previous) if previous is not None else None
        if points is None:
            size = self.crop_size
            inner = size / (1 + 2 * self.crop_margin)
            lo = (size - inner) / 2
            points = self.mesh.from_box(crop, Face(lo, lo, lo + inner, lo + inner))
        if points is None:
            return None
        iod = eye_distance(points)
        if not (0.12 * self.crop_size < iod < 0.8 * self.crop_size):
            return None
        return points

    def synthesize(self, crops: np.ndarray, mel_chunks: np.ndarray, frame_indices: np.ndarray | None = None) -> np.ndarray:
        size = self.crop_size
        if not isinstance(crops, np.ndarray) or crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            raise EngineError(f"builtin needs face crops shaped (B, {size}, {size}, 3), got {getattr(crops, 'shape', crops)}")
        out = crops.copy()
        if frame_indices is None:
            frame_indices = np.arange(self._counter, self._counter + len(crops))
        self._counter = int(frame_indices[-1]) + 1 if len(frame_indices) else self._counter
        if self.levels is None:
            return out
        for i, (crop, index) in enumerate(zip(crops, frame_indices)):
            points = self._landmarks(crop, self._previous)
            self._previous = points
            if points is None:
                continue
            level = float(self.drive[min(max(int(index), 0), len(self.drive) - 1)]) if len(self.drive) else 0.0
            out[i] = self._render(crop, points, level)
        return out

    def _render(self, crop: np.ndarray, points: np.ndarray, level: float) -> np.ndarray:
        x0, y0, _, _ = self.roi
        position = level * (LEVELS - 1)
        low = int(np.floor(position))
        high = min(low + 1, LEVELS - 1)
        frac = position - low
        morph = self.levels[low] if frac < 1e-3 else (1 - frac) * self.levels[low] + frac * self.levels[high]
        affine = _similarity(self.canon_stable, points[list(STABLE)])
        # The ROI sits at (x0, y0) in canonical space: fold that offset into the transform.
        affine[:, 2] += affine[:, :2] @ np.array([x0, y0], np.float64)
        size = (self.crop_size, self.crop_size)
        stack = np.dstack([morph, self.mask * 255.0, self.ring * 255.0]).astype(np.float32)
        warped = cv2.warpAffine(stack, affine, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        patch, mask, ring = warped[..., :3], warped[..., 3:4] / 255.0, warped[..., 4] > 127
        base = crop.astype(np.float32)
        if ring.any():
            offset = base[ring].mean(0) - patch[ring].mean(0)
            offset = np.clip(offset, -40.0, 40.0)
            if self._offset is None:
                self._offset = offset
            else:
                self._offset = self._offset + COLOUR_SMOOTHING * (offset - self._offset)
        if self._offset is not None:
            patch = patch + self._offset
        result = base + mask * (patch - base)
        return np.clip(result + 0.5, 0, 255).astype(np.uint8)
