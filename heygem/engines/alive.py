"""Alive between words: blinks and a small, slow head motion for a talking photo (issue 18, item 2).

A still with a moving mouth reads as a still. Two things made without weights, on the photo's own face mesh
(the built-in engine's photo path draws them after the mouth, so the mouth moves with the head):

* Blinks at a human rate: start times drawn from a generator seeded by the job (a few seconds apart, not
  periodic), each 150 to 300 ms, closing fast (30%), a short hold, opening slower. Per eye, in the eye's own
  frame (along the line through its corners, and across it), the upper lid slides down over the eye as a real
  lid slides over a still eyeball: the lid's skin from the fold down is stretched to the moving lid margin (the
  fold's shadow keeping its size, the skin towards the lashes taking the stretch), the open eye's lashes and
  the eye itself filled beforehand by the skin around them (an inpainting, lightened towards the lid's skin
  above), a lash line riding on the margin, the eye below the margin staying where it is until it is covered,
  and the lower lid rising a little to meet it. The occluding edges are anti-aliased over a pixel; nothing
  beyond the rings of mesh points around the eye, or outside the face, is touched; the far eye of a face
  turned far away (on its outline, mostly hidden) is left as it is.
* A head motion of about two degrees of roll, nod and turn and a little sway, as sums of slow sines with
  random phases. The head is the face mesh's outline (on the far side of a turned face, its profile): roll and
  sway move it rigidly and fade to nothing within a band outside it (a few pixels beyond a turned face's
  profile, so the background and the far cheek behind it stay); turn and nod move each point by its depth,
  nothing on the outline and most in the middle of the face, as a rounded head turns. Every pixel outside
  that region is the photo's own.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from heygem.blend import smoothstep
from heygem.faces.landmarks import CHIN, EYE_OUTER_CORNERS, NOSE_TIP

log = logging.getLogger(__name__)

__all__ = ["Alive", "Blink", "blink_closures", "blink_schedule", "head_motion", "plan"]

SEED = 18  # fixed: the same job gives the same blinks and motion (mixed with its length and picture size)

# Blinks: the first within FIRST_BLINK seconds, then gaps drawn from a gamma distribution (shape BLINK_SHAPE,
# mean BLINK_GAP) held within BLINK_GAP_RANGE; spontaneous blinks of a speaker come about every 3 to 4 s.
FIRST_BLINK = (0.8, 2.5)
BLINK_GAP = 3.8
BLINK_SHAPE = 4.0
BLINK_GAP_RANGE = (1.6, 8.0)
BLINK_SECONDS = (0.15, 0.30)
CLOSING, HOLD = 0.30, 0.12  # shares of a blink; the rest is the slower opening

# Head motion, each a sum of three slow sines whose amplitudes add up to at most this much.
ROLL_DEGREES = 1.5
NOD_DEGREES = 1.5
TURN_DEGREES = 2.0
SWAY = 0.006  # of the face's height, each way
FREQUENCIES = (0.04, 0.22)  # Hz
HEAD_GROWTH = 0.15  # the motion fades out this far outside the face mesh, over the mesh's width
PROFILE_MARGIN = 0.04  # ... and this far beyond a turned face's profile
HEAD_DEPTH = 0.6  # the front of the face from the axis it turns about, over the face mesh's width
DEPTH_REACH = 0.35  # the depth rises from the face's outline to its full over this share of the mesh's width
FIELD_STEP = 4  # the head's displacement is worked out on every FIELD_STEP-th pixel and interpolated

# Rings of the 468-point mesh around each eye (MediaPipe's rightEyeUpper0, Upper1, Upper2, Lower1 and Lower2,
# and their left twins): the upper lid's margin, the lid's fold, under the brow, the lower lid's edge (or just
# below it), the cheek under the eye. Corners: the image-left one first.
RIGHT_EYE = {"corners": (33, 133), "upper": (246, 161, 160, 159, 158, 157, 173),
             "fold": (247, 30, 29, 27, 28, 56, 190), "brow": (113, 225, 224, 223, 222, 221, 189),
             "under": (130, 25, 110, 24, 23, 22, 26, 112, 243),
             "cheek": (226, 31, 228, 229, 230, 231, 232, 233, 244)}
LEFT_EYE = {"corners": (362, 263), "upper": (398, 384, 385, 386, 387, 388, 466),
            "fold": (414, 286, 258, 257, 259, 260, 467), "brow": (413, 441, 442, 443, 444, 445, 342),
            "under": (463, 341, 256, 252, 253, 254, 339, 255, 359),
            "cheek": (464, 453, 452, 451, 450, 449, 448, 261, 446)}
CORNER_SLACK = 0.06  # the lids meet this far beyond the mesh's eye corners, over the eye's width
FAR_EYE = 0.6  # an eye narrower than this share of the other is on the far side of a turned face
# The face's middle from the forehead over the nose and lips to the chin: a turned face's outline on its far side.
PROFILE = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 2, 164, 0, 13, 14, 17, 18, 200, 199, 175, 152)
MEET = 0.7  # where the lids meet, from the upper lid margin to the lower lid's edge
DARK = 0.7  # above the lid, a pixel darker than this share of the skin around the eye is lash or liner
LASH_REACH = 0.2  # the open eye's lashes reach this far from it, over the eye's width
LASH_WIDTH = 0.05  # the closed eye's lash line, over the eye's width
LASH_STRENGTH = 0.95
LID_LIGHT = 0.5  # how far the shut lid's colour moves from the fill's towards the skin above it
LID_SHADE = 0.12  # how much darker the shut lid is just above its lashes than at its top
LOWER_RIM = 0.2  # the lower lid's rim hidden as the lids meet: this share of the way down to the cheek ring


@dataclass(frozen=True)
class Blink:
    """One blink: its first frame's time and how long it lasts, in seconds."""

    start: float
    seconds: float


def blink_schedule(seconds: float, fps: float | Fraction, rng: np.random.Generator) -> list[Blink]:
    """Blinks over ``seconds``, each starting on a frame (so its closed frame is drawn whatever the rate)."""
    fps = float(fps)
    blinks: list[Blink] = []
    at = rng.uniform(*FIRST_BLINK)
    while True:
        length = float(rng.uniform(*BLINK_SECONDS))
        start = round(at * fps) / fps
        if start + length > seconds:
            return blinks
        blinks.append(Blink(start, length))
        gap = rng.gamma(BLINK_SHAPE, BLINK_GAP / BLINK_SHAPE)
        at = start + length + float(np.clip(gap, *BLINK_GAP_RANGE))


def blink_closures(blinks: list[Blink], fps: float | Fraction, frames: int) -> np.ndarray:
    """(frames,) how closed the eyes are in each frame, 0 open .. 1 shut: per blink a fast close, a short hold
    and a slower opening, scaled so that its most closed frame is shut."""
    fps = float(fps)
    closed = np.zeros(frames, np.float32)
    for blink in blinks:
        first = int(round(blink.start * fps))
        last = min(frames, first + int(np.ceil(blink.seconds * fps)) + 1)
        if first >= frames:
            continue
        t = (np.arange(first, last) / fps - blink.start) / blink.seconds
        opening = 1.0 - smoothstep((t - CLOSING - HOLD) / (1.0 - CLOSING - HOLD))
        amount = np.where(t < CLOSING, smoothstep(t / CLOSING), opening)
        amount = np.where((t >= CLOSING) & (t < CLOSING + HOLD), 1.0, amount)
        if amount.max() > 0:
            closed[first:last] = np.maximum(closed[first:last], amount / amount.max())
    return closed


def _slow_wave(times: np.ndarray, peak: float, rng: np.random.Generator) -> np.ndarray:
    """Three slow sines with random phases and shares, their amplitudes adding up to ``peak``."""
    shares = rng.dirichlet(np.ones(3)) * peak
    frequencies = rng.uniform(*FREQUENCIES, size=3)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    return sum(a * np.sin(2 * np.pi * f * times + p) for a, f, p in zip(shares, frequencies, phases))


def head_motion(frames: int, fps: float | Fraction, rng: np.random.Generator) -> np.ndarray:
    """(frames, 5) float32 per frame: roll, nod and turn in radians, sideways and vertical sway over the face's
    height."""
    times = np.arange(frames) / float(fps)
    columns = [_slow_wave(times, np.radians(ROLL_DEGREES), rng), _slow_wave(times, np.radians(NOD_DEGREES), rng),
               _slow_wave(times, np.radians(TURN_DEGREES), rng), _slow_wave(times, SWAY, rng),
               _slow_wave(times, SWAY, rng)]
    return np.stack(columns, 1).astype(np.float32)


def plan(fps: float | Fraction, frames: int, size: tuple[int, int], seed: int = SEED) -> tuple[list[Blink], np.ndarray]:
    """A job's blinks and head motion (``head_motion``), from its frame rate, length and picture size (height,
    width). Seeded by the job, never the clock: the same job blinks the same way, and two presenters of one
    batch do not blink in step."""
    rng = np.random.default_rng([seed, frames, *size])
    return blink_schedule(frames / float(fps), fps, rng), head_motion(frames, fps, rng)


class _Lid:
    """One eye's blink, in the eye's own frame: u along the line from its image-left corner to the other, v
    across it, downwards. The lid lines are functions of u, from the mesh's rings around the eye; the upper lid's
    margin and the lower lid's edge meet at the eye's corners."""

    def __init__(self, points: np.ndarray, rings: dict[str, tuple[int, ...]], face: np.ndarray) -> None:
        self.origin = points[rings["corners"][0]].astype(np.float64)
        span = points[rings["corners"][1]] - self.origin
        self.width = max(float(np.linalg.norm(span)), 1.0)
        self.axis = axis = span / self.width
        self.normal = np.array([-axis[1], axis[0]])

        def knots(indices: tuple[int, ...] | list[int], other: tuple[int, ...] | None = None,
                  share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
            """(u, v) of a ring of points (or ``share`` of the way from it to ``other``), by u."""
            ring = points[list(indices)].astype(np.float64)
            if other is not None:
                ring = ring + share * (points[list(other)] - ring)
            local = ring - self.origin
            u, v = local @ axis, local @ self.normal
            order = np.argsort(u)
            return u[order], v[order]

        slack = CORNER_SLACK * self.width

        def between_corners(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """The knots well inside the eye, and the corners (the lids meet there, and beyond them), a little
            beyond the mesh's: its corners tend to fall inside the real ones."""
            inside = (u > 0.08 * self.width) & (u < 0.92 * self.width)
            return np.r_[-slack, u[inside], self.width + slack], np.r_[0.0, v[inside], 0.0]

        lines = {
            "brow": knots(rings["brow"]),  # under the eyebrow: a lash reaching higher is not drawn over
            "top": knots(rings["fold"], rings["brow"], 0.5),  # the lid's skin stretched down starts here
            "margin": between_corners(*knots(rings["upper"])),
            # The under-eye ring lies at or just below the lower lid's edge.
            "lower": between_corners(*knots(rings["under"])),
            "bottom": knots(rings["cheek"]),
        }
        ring_points = points[[i for name in ("brow", "cheek", "corners") for i in rings[name]]]
        lo = np.floor(ring_points.min(0) - 0.1 * self.width).astype(int)
        hi = np.ceil(ring_points.max(0) + 0.1 * self.width).astype(int)
        height, width_px = face.shape
        self.box = (max(0, lo[0]), max(0, lo[1]), min(width_px, hi[0]), min(height, hi[1]))
        x0, y0, x1, y1 = self.box
        gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float64), np.arange(y0, y1, dtype=np.float64))
        local = np.dstack([gx, gy]) - self.origin
        self.u, self.v = local @ axis, local @ self.normal
        at = {name: np.interp(self.u, *line) for name, line in lines.items()}
        self.margin = at["margin"]
        self.top = np.minimum(at["top"], self.margin - 1.0)
        self.brow = np.minimum(at["brow"], self.top)
        self.lower = np.maximum(at["lower"], self.margin)
        self.bottom = np.maximum(at["bottom"], self.lower + 1.0)
        # Where the lid may change at all: along the eye (a little past its corners), and inside the face (the
        # far eye of a turned face lies on its outline, with the background beside it).
        edge = 0.15 * self.width
        along = smoothstep((self.u + 0.1 * self.width) / edge) * smoothstep((1.1 * self.width - self.u) / edge)
        self.reach = (along * face[y0:y1, x0:x1]).astype(np.float32)
        self.lash_width = max(0.7, LASH_WIDTH * self.width)
        # The lash line is thickest in the middle of the eye and thins towards its corners.
        self.lash_weight = LASH_STRENGTH * (0.4 + 0.6 * np.sin(np.pi * np.clip(self.u / self.width, 0, 1)))
        self.skin: np.ndarray | None = None  # the region with the eye and its lashes filled by the skin around

    def _lid_skin(self, region: np.ndarray) -> None:
        """The region with the open eye and its lashes filled from the skin around (the lid's skin as it looks
        once the eye is shut), and the lashes' own colour."""
        # The open eye, down to the lower lid's lashes, and its lashes: by their darkness against the skin
        # around the eye (the mesh's lid line may be off by a pixel or two), near the eye.
        eye = (self.v >= self.margin) & (self.v <= self.lower + 0.25 * (self.bottom - self.lower))
        eye &= (self.u >= -CORNER_SLACK * self.width) & (self.u <= (1 + CORNER_SLACK) * self.width) & (self.reach > 0)
        eye = eye.astype(np.uint8)

        def grown(pixels: float) -> np.ndarray:
            r = max(1, int(round(pixels)))
            return cv2.dilate(eye, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0

        brightness = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY).astype(np.float32)
        skin = ((self.v < self.top) | (self.v > self.bottom)) & (self.reach > 0)
        level = float(np.median(brightness[skin])) if skin.any() else float(np.median(brightness))
        lashes = grown(LASH_REACH * self.width) & (brightness < DARK * level) & (self.v >= self.brow + 1.0)
        inside = grown(0.04 * self.width) | lashes
        # Two pixels more all round: the known pixels the fill starts from are then skin, not lashes' tips.
        mask = cv2.dilate(inside.astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
        radius = max(2.0, 0.15 * self.width)
        filled = cv2.inpaint(region, mask, radius, cv2.INPAINT_TELEA).astype(np.float32)
        # The fill takes the colour of the dark lid line and eye shadow around the open eye; a shut lid catches
        # the light as the skin over it does: moved part of the way to that skin's colour.
        lid = (self.v >= self.brow) & (self.v <= self.top) & (mask == 0) & (self.reach > 0.5)
        if lid.any():
            shift = np.median(region[lid].astype(np.float32), axis=0) - np.median(filled[mask > 0], axis=0)
            filled[mask > 0] += LID_LIGHT * shift
        # Its edge softened over a pixel or so: no outline where the fill meets the picture.
        soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.8, 0.03 * self.width))[..., None]
        self.skin = region + soft * (filled - region)
        near_margin = grown(0.1 * self.width) & (self.v <= self.margin) & ~(eye > 0)
        pixels = (region[near_margin] if near_margin.any() else region.reshape(-1, 3)).astype(np.float32)
        darkness = pixels.sum(1)
        self.lash_colour = pixels[darkness <= np.percentile(darkness, 25)].mean(0)

    def close(self, image: np.ndarray, amount: float) -> None:
        """Draws this eye ``amount`` closed (0 open .. 1 shut) into ``image``, in place."""
        x0, y0, x1, y1 = self.box
        if amount <= 0 or x1 <= x0 or y1 <= y0:
            return
        region = image[y0:y1, x0:x1]
        if self.skin is None:
            self._lid_skin(region)
        top, margin, lower, bottom, v = self.top, self.margin, self.lower, self.bottom, self.v
        meet = margin + MEET * (lower - margin)
        new_margin = margin + amount * (meet - margin)
        new_lower = lower - amount * (lower - meet)
        # The upper lid: [top, new_margin] shows [top, margin] of the lid's skin, stretched as the fold opens:
        # the fold's own shadow at its top keeps its size, the smooth skin towards the lashes takes the stretch
        # (a cubic from slope 1 at the top to 1/stretch^2 at the bottom; 1 and 1 when barely closed). The lower
        # lid: [new_lower, bottom] shows [lower, bottom] of the picture, its rim (the wet edge, bright) tucked
        # under the upper lid as they meet; between them the eye stays where it is.
        rim = lower + amount * LOWER_RIM * (bottom - lower)
        stretch = np.minimum((new_margin - top) / (margin - top), 2.5)
        t = (v - top) / (new_margin - top)
        start, end = stretch, 1.0 / stretch ** 2
        unfolded = (start + end - 2) * t ** 3 + (3 - 2 * start - end) * t ** 2 + start * t
        lid = np.where(v < top, v, top + (margin - top) * np.where(t <= 1, unfolded, t))
        under = np.where(v > bottom, v, bottom - (bottom - rim) * (bottom - v) / (bottom - new_lower))
        # (Above the lid's skin, up to the brow, the lid's source is shown unmoved: the open eye's lashes that
        # reach up there are gone once it shuts.)
        upper_share = np.clip(new_margin - v + 0.5, 0.0, 1.0) * (v >= self.brow)
        lower_share = np.clip(v - new_lower + 0.5, 0.0, 1.0) * (v <= bottom)
        eye_share = 1.0 - upper_share - np.minimum(lower_share, 1.0 - upper_share)
        source = region.astype(np.float32)
        # Barely closing (a blink's first and last frames) the lid is the picture's own; from a third closed
        # on, the skin without the open eye's lashes.
        skin_share = float(smoothstep(amount / 0.3))
        lid_source = source + skin_share * (self.skin - source)

        def sample(picture: np.ndarray, across: np.ndarray) -> np.ndarray:
            place = self.origin + self.u[..., None] * self.axis + across[..., None] * self.normal
            return cv2.remap(picture, (place[..., 0] - x0).astype(np.float32), (place[..., 1] - y0).astype(np.float32),
                             cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

        # The shut lid curves away under the brow's light towards its lashes: a little darker there.
        shade = 1.0 - LID_SHADE * skin_share * smoothstep((v - top) / np.maximum(new_margin - top, 1.0) * 2 - 1)
        mixed = source * eye_share[..., None]
        mixed += sample(lid_source, lid) * (upper_share * shade)[..., None]
        mixed += sample(source, under) * (1.0 - upper_share - eye_share)[..., None]
        # The lashes ride on the lid's edge.
        lash = skin_share * self.lash_weight * np.exp(-0.5 * ((v - new_margin + 0.5 * self.lash_width)
                                                              / self.lash_width) ** 2)
        mixed += lash[..., None] * (self.lash_colour - mixed)
        mixed = source + self.reach[..., None] * (mixed - source)
        region[:] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


class Alive:
    """Blinks and a slow head motion for one job on a photo: built once from the photo's face mesh (468 points
    in frame pixels) and the frame size; ``apply`` draws frame ``index`` of the job into a frame in place."""

    def __init__(self, points: np.ndarray, size: tuple[int, int], fps: float | Fraction, frames: int,
                 seed: int = SEED) -> None:
        points = np.asarray(points, np.float64)
        self.blinks, self.motion = plan(fps, frames, size, seed)
        self.closures = blink_closures(self.blinks, fps, frames)
        left, right = points[EYE_OUTER_CORNERS[0]], points[EYE_OUTER_CORNERS[1]]
        axis = (right - left) / max(float(np.linalg.norm(right - left)), 1e-6)
        # The face's outline (the mesh's hull, a pixel in, softened): a lid never reaches past it.
        face = np.zeros(size, np.uint8)
        cv2.fillConvexPoly(face, cv2.convexHull(np.round(points).astype(np.int32)), 255)
        face = cv2.GaussianBlur(cv2.erode(face, np.ones((3, 3), np.uint8)), (0, 0), 1.0).astype(np.float32) / 255.0
        lids = [_Lid(points, RIGHT_EYE, face), _Lid(points, LEFT_EYE, face)]
        # A face turned far away shows its far eye foreshortened on its outline, mostly hidden: left as it is.
        widest = max(lid.width for lid in lids)
        self.lids = [lid for lid in lids if lid.width >= FAR_EYE * widest]
        self._build_head(points, axis, size)
        log.debug("alive: %d blinks over %d frames, %d eyes", len(self.blinks), frames, len(self.lids))

    def _build_head(self, points: np.ndarray, axis: np.ndarray, size: tuple[int, int]) -> None:
        """The head's region (the face mesh's outline) and, on a coarse grid around it, the fields each motion is
        a multiple of: ``rigid``, 1 over the face and fading to 0 a little outside it, and ``depth``, how far a
        point stands out towards the camera, 0 on the outline."""
        normal = np.array([-axis[1], axis[0]])
        along, across = points @ axis, points @ normal
        mesh_width, face_height = float(np.ptp(along)), float(np.ptp(across))
        # A turned face hides its far cheek behind its profile, where the mesh may still put it: on that side
        # the head reaches only as far as the profile (forehead, nose, lips, chin), the more so the more it is
        # turned (the far eye's width against the near one's says how far), and fades out within a few pixels.
        right_eye, left_eye = (float(np.linalg.norm(points[a] - points[b])) for a, b in (RIGHT_EYE["corners"],
                                                                                          LEFT_EYE["corners"]))
        shown = float(smoothstep((min(right_eye, left_eye) / max(right_eye, left_eye, 1e-6) - 0.55) / 0.35))
        profile = along[list(PROFILE)]
        far = -1.0 if right_eye < left_eye else 1.0  # the far side: the image's left (-1) or right (+1)
        outline = float(profile.min() if far < 0 else profile.max())
        limit = outline + shown * (float(along.min() if far < 0 else along.max()) - outline)
        visible = points + np.minimum(far * (limit - along), 0.0)[:, None] * far * axis
        grow = HEAD_GROWTH * mesh_width  # how far outside the face the motion fades out: temples, hair's edge
        tight = grow * (PROFILE_MARGIN / HEAD_GROWTH + shown * (1 - PROFILE_MARGIN / HEAD_GROWTH))
        height, width = size
        lo = np.floor(visible.min(0) - grow).astype(int)
        hi = np.ceil(visible.max(0) + grow).astype(int)
        x0, y0 = np.maximum(lo, 0)
        x1, y1 = np.minimum(hi + 1, [width, height])
        self.head_box = (int(x0), int(y0), int(x1), int(y1))
        step = FIELD_STEP
        gx, gy = np.meshgrid(np.arange(x0, x1 + step, step, dtype=np.float64),
                             np.arange(y0, y1 + step, step, dtype=np.float64))
        inside = np.zeros(gx.shape, np.uint8)
        hull = cv2.convexHull(np.round((visible - [x0, y0]) / step).astype(np.int32))
        cv2.fillConvexPoly(inside, hull, 1)
        outward = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 5) * step
        inward = cv2.distanceTransform(inside, cv2.DIST_L2, 5) * step
        # The fading band: narrow beyond a turned face's profile, wider elsewhere.
        beyond = smoothstep((far * ((np.dstack([gx, gy]) @ axis) - limit) + 0.05 * mesh_width) / (0.1 * mesh_width))
        band = grow + (tight - grow) * beyond
        self.rigid = (1.0 - smoothstep(outward / band)).astype(np.float32)
        # Depth: 0 on the outline, rising smoothly to the most inside the face (a rounded head).
        self.depth = (HEAD_DEPTH * mesh_width * smoothstep(inward / (DEPTH_REACH * mesh_width))).astype(np.float32)
        pivot = (points[NOSE_TIP] + points[CHIN]) / 2  # roll turns about the mouth's height, near the neck's axis
        self.offset = (np.dstack([gx, gy]) - pivot).astype(np.float32)
        self.axis, self.normal, self.face_height = axis.astype(np.float32), normal.astype(np.float32), face_height
        self.grid = np.meshgrid(np.arange(x1 - x0, dtype=np.float32), np.arange(y1 - y0, dtype=np.float32))

    def head_field(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(dx, dy) on the coarse grid: where each point of the head moves in frame ``index``."""
        at = min(max(index, 0), len(self.motion) - 1)
        roll, nod, turn, sway_along, sway_across = (float(x) for x in self.motion[at])
        c, s = np.cos(roll) - 1.0, np.sin(roll)
        ox, oy = self.offset[..., 0], self.offset[..., 1]
        sway = (sway_along * self.axis + sway_across * self.normal) * self.face_height
        # Turn and nod: along the eye line and across it, by the depth; roll and sway: rigid in the middle.
        depth_x = (turn * self.axis[0] + nod * self.normal[0]) * self.depth
        depth_y = (turn * self.axis[1] + nod * self.normal[1]) * self.depth
        dx = self.rigid * (c * ox - s * oy + sway[0]) + depth_x
        dy = self.rigid * (s * ox + c * oy + sway[1]) + depth_y
        return dx.astype(np.float32), dy.astype(np.float32)

    def apply(self, image: np.ndarray, index: int) -> None:
        """Frame ``index`` of the job: blinks, then the head moved; in place. Pixels outside the head's region
        and the eyes' are left exactly as they were."""
        amount = float(self.closures[min(max(index, 0), len(self.closures) - 1)]) if len(self.closures) else 0.0
        for lid in self.lids:
            lid.close(image, amount)
        x0, y0, x1, y1 = self.head_box
        if x1 <= x0 or y1 <= y0:
            return
        dx, dy = self.head_field(index)
        size = (x1 - x0, y1 - y0)
        # The coarse grid's points sit at x0 + k * step; resized to that span (cv2.resize's half-pixel alignment
        # moves the field by under a step: it is smooth, and nothing where it is zero).
        span = ((dx.shape[1] - 1) * FIELD_STEP, (dx.shape[0] - 1) * FIELD_STEP)
        fine_x = cv2.resize(dx, (span[0] + 1, span[1] + 1), interpolation=cv2.INTER_LINEAR)[: size[1], : size[0]]
        fine_y = cv2.resize(dy, (span[0] + 1, span[1] + 1), interpolation=cv2.INTER_LINEAR)[: size[1], : size[0]]
        # Each pixel shows what was at itself minus the (small, smooth) motion there.
        map_x = self.grid[0] - fine_x
        map_y = self.grid[1] - fine_y
        region = image[y0:y1, x0:x1]
        region[:] = cv2.remap(region.copy(), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
