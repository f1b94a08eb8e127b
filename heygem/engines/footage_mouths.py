"""Moving a mouth chosen from the presenter's own footage (heygem.footage) into an output frame.

The footage study keeps every frame's lower face in one canonical face frame. To show studied frame ``j``'s
mouth in an output picture, the canonical frame is mapped onto that picture's head pose by a similarity
transform from frame ``j``'s own skull points to the picture's (``heygem.study.STABLE``: eyes and nose, which
the jaw does not move), the lower face is warped there, its colour matched to the picture on a ring around it
(the light of the output frame, not of the footage's moment; smoothed over frames so it does not flicker), and
blended through a feathered mask from below the nose to below the lowest chin the footage shows, cheek to
cheek, and within both faces' jaw lines (the footage frame's own drawn in from its sides, so neither the
background of that moment nor the shading along its jaw comes along, though hair fallen over the cheek inside
it can: bench/RESULTS.md; the picture's; each lowered to the lower of the two chins, so neither an opening nor
a closing jaw is cut off). Before that the picture's own jaw is moved to where the chosen chin lands
(``jaw_moved``: the chin, the jaw's sides less towards its corners, the neck under it less and less), so a
closed mouth on a picture whose jaw had dropped shows no second chin under it, and the jaw's outline moves with
the chosen mouths, not with the picture's old speech. Pixels outside the mask and the jaw's move are the
picture's own. Where the chosen frames jump from one run of the footage to another, the two runs
meet over a frame on each side of the join, the new run's own earlier frame under the old and the old run's
next frame under the new (``heygem.selection.join_fades``), so a join never pops and the new mouth is not late.
They meet by a flow morph (``between``: both moved part of the way towards each other along their dense
optical flow, then mixed), not a plain cross-fade, which showed two mouths at once: the teeth of one through the
closed lips of the other, a lip's outline twice (with another voice nearly every frame is next to a join).
A mouth may be drawn a little more or less open than it was filmed (``open_to``; ``reopened``): the lower lip
and the jaw under it moved down or up by a smooth field, the upper lip a fifth as far the other
way, by at most its own opening more (a closed mouth is never torn open) and at most OPENING_STEP, and closed
by at most CLOSING_SHARE of its opening (with another voice: ``heygem.selection.drawn_openings``).
What needs no picture (decoding, reopening, rewidening, a join's morph: ``MouthPlacer.mouth``) is apart from
the placing, so the engine makes the next frames' lower faces in a thread of its own while it draws; and only the
part of a patch that is blended or matched in colour is warped.
"""
from __future__ import annotations

import functools
import logging

import cv2
import numpy as np

from heygem import blend
from heygem.faces.landmarks import (CHIN, EYE_OUTER_CORNERS, INNER_LIP_LOWER, INNER_LIP_UPPER, JAW,
                                    MOUTH_CORNERS, OUTER_LIP)
from heygem.footage import CANONICAL_EYES, PATCH_BOX, FootageStudy
from heygem.study import STABLE, similarity

log = logging.getLogger(__name__)

__all__ = ["CORNER_SHARE", "MouthPlacer", "between", "jaw_moved", "join_flow", "reopened", "rewidened", "width_field"]

FEATHER = 9.0  # px in the canonical frame (eye corners 100 px apart): the width of the mask's soft edge
RING = 8  # px: the band outside the mask whose colour the placed mouth is matched to
COLOUR_SMOOTHING = 0.25  # per frame, the share of the way the colour offset moves towards this frame's
MAX_OFFSET = 40.0  # grey levels: a larger difference is a wrong match, not lighting
NOSE_BASE = 2  # face-mesh point under the nose
JAW_INSET = 8  # px in the canonical frame: the chosen face's jaw line is left out this far from its sides
_CHIN_FRONT = (JAW.index(149), JAW.index(378))  # jaw-line points under the mouth's corners, left and right
EYE_SPAN = CANONICAL_EYES[1][0] - CANONICAL_EYES[0][0]  # px: the canonical frame's eye distance
OPENING_STEP = 4.0  # px in the canonical frame (4% of the eye distance): the most a mouth is opened further
CLOSING_SHARE = 0.7  # the most of its own opening a mouth is closed by
UPPER_LIP_SHARE = 0.2  # the upper lip's share of a change in opening (the jaw moves the lower lip)
WIDTH_MAX_CHANGE = 0.25  # the most a mouth is widened or narrowed, as a share of its width
WIDTH_FIELD_REACH = (1.1, 0.8)  # ``width_field``'s bump: its spread across and down, in half mouth widths
CORNER_SHARE = float(np.exp(-0.5 / WIDTH_FIELD_REACH[0] ** 2))  # the bump at the mouth's corners
LOWER_LIP_BOTTOM = 17  # face-mesh point at the middle of the lower lip's lower edge
JAW_NECK = 0.45  # eye distances under the chin over which the neck follows less and less of the jaw's move
JAW_SLACK = 0.015  # eye distances of the chin's move left undone: too little to show (and no resampling)
# Decoded lower faces kept (64 MB), the latest used: the benchmark's 60 s job with another voice shows 587 of its
# footage's 1500 frames, each 4.4 times on average (its own and its joins' fades).
DECODED_KEPT = 1024
USED_MARGIN = 2  # px of the patch kept around what is blended: a bilinear warp samples 1 px beyond
JAW_FIELD_STEP = 6  # px in the picture: the jaw's move is worked out this far apart and spread between


class MouthPlacer:
    """Places studied frames' lower faces into pictures of the same person, frame after frame."""

    def __init__(self, study: FootageStudy) -> None:
        if not study.found.any():
            raise ValueError("the footage study has no frame with a face")
        self.study = study
        # Worked out once: each is read for every frame placed (``usable`` is a median over the footage).
        self.usable = study.usable
        self.points = study.points.astype(np.float32)
        self._decoded: dict[int, np.ndarray | None] = {}
        ellipse, self.ring = _masks(self.points[self.usable])
        self.ellipse = ellipse.astype(np.uint8)  # 0 and 1 (bytes: the masks' erosions are cheaper)
        self.ring_box = _nonzero_box(self.ring > 0) or (0, 0, 0, 0)
        self.colour = blend.ColourMatch(COLOUR_SMOOTHING, MAX_OFFSET)
        self.flow = join_flow()

    def reset(self) -> None:
        """Forget the colour of earlier frames (a new video, or a cut)."""
        self.colour.reset()

    def mouth(self, index: int, fade_from: int = -1, fade_weight: float = 0.0, open_to: float = float("nan"),
              width_to: float = float("nan")) -> np.ndarray | None:
        """Studied frame ``index``'s lower face as ``place`` draws it (BGR, PATCH_BOX's size; None without a face):
        drawn ``open_to`` open (``reopened``) and ``width_to`` wide (``rewidened``), and with ``fade_weight`` of
        studied frame ``fade_from`` morphed in (``between``). It needs no picture, so a thread can make the next
        frames' ahead of their drawing (``heygem.engines.builtin``); one thread at a time (it keeps the decoded
        faces and the flow's state)."""
        patch = self._patch(index)
        if patch is None:
            return None
        under = self._patch(fade_from) if self._fading(fade_from, fade_weight) else None
        if np.isfinite(open_to):  # each of a join's two mouths drawn from its own opening to the one asked
            patch = reopened(patch, self.points[index], float(self.study.openings[index]), open_to)
            if under is not None:
                under = reopened(under, self.points[fade_from], float(self.study.openings[fade_from]), open_to)
        if np.isfinite(width_to):  # and from its own width
            patch = rewidened(patch, self.points[index], float(self.study.widths[index]), width_to)
            if under is not None:
                under = rewidened(under, self.points[fade_from], float(self.study.widths[fade_from]), width_to)
        return patch if under is None else between(patch, under, fade_weight, self.flow)

    def place(self, picture: np.ndarray, points: np.ndarray, index: int, fade_from: int = -1,
              fade_weight: float = 0.0, open_to: float = float("nan"), shown: int = -1,
              width_to: float = float("nan"), mouth: np.ndarray | None = None) -> tuple[int, int, int, int]:
        """Draws the lower face of studied frame ``index`` into ``picture`` (BGR, in place), in the pose of the
        face whose 468 mesh ``points`` (picture pixels) are given; nothing when that frame has no face.
        ``fade_from``, ``fade_weight``: a studied frame morphed in with that weight (a join's fade,
        ``heygem.selection.join_fades``; ``between``). ``open_to``: the opening (over the eye distance) to draw
        the mouth at, as far as ``reopened`` may move it (NaN: as filmed). ``shown``: the studied frame that
        is the picture (-1: none); its jaw is moved by as much as the chosen chin lies above or below its own
        first (``jaw_moved``: both chins as the study read them, for the face mesh on a job's face crops reads
        a chin 8-13% of the eye distance lower than on whole frames). Returns the rectangle drawn into
        (``blend.warp_into``'s and the jaw's). ``width_to``: the corner width (over the eye distance) to draw
        the mouth at, as far as ``rewidened`` may move it (NaN: as filmed). ``mouth``: ``mouth`` of the same
        arguments, made already (None: made here)."""
        patch = self.mouth(index, fade_from, fade_weight, open_to, width_to) if mouth is None else mouth
        if patch is None:
            return 0, 0, 0, 0
        fading = self._fading(fade_from, fade_weight)
        x1, y1, _, _ = PATCH_BOX
        # From the chosen frame's own skull points (in the canonical frame, where a head turned or tilted in
        # that frame still differs from the footage's median): its lower face sits under its own eyes and nose.
        own = self.points[index][list(STABLE)]
        to_picture = similarity(own, np.asarray(points, np.float32)[list(STABLE)])
        # The picture's own jaw is moved as far as the chosen chin lies from its own: its sides and the neck under
        # it follow the chosen mouth, so neither a second chin nor the jaw of the picture's old speech shows.
        jaw_rect = (0, 0, 0, 0)
        if 0 <= shown < len(self.points) and self.usable[shown]:
            chin = self._chin(index, open_to) if not fading else (
                (1.0 - fade_weight) * self._chin(index, open_to) + fade_weight * self._chin(fade_from, open_to))
            own_chin = self.points[shown][CHIN].astype(np.float64)
            points = np.asarray(points, np.float32)
            points, jaw_rect = jaw_moved(picture, points, points[CHIN] + to_picture[:, :2] @ (chin - own_chin))
        affine = to_picture.copy()
        affine[:, 2] += affine[:, :2] @ np.array([x1, y1], np.float64)  # the patch starts at (x1, y1)
        # The mask follows both jaw lines, so it is made in the patch's pixels for this picture's face.
        to_patch, jaw_points = cv2.invertAffineTransform(affine), np.asarray(points, np.float32)
        mask = self._mask((index, fade_from) if fading else (index,), to_patch, jaw_points)
        # Only the part of the patch that is blended or matched in colour is warped (two thirds of it): the same
        # pixels drawn within a grey level or two (the warp's fixed-point origin moves), a third less warping.
        (x0, y0, x1, y1), kept = self._used(mask), affine.copy()
        if x1 <= x0 or y1 <= y0:
            return jaw_rect
        kept[:, 2] += kept[:, :2] @ np.array([x0, y0], np.float64)
        return _union(blend.warp_into(picture, patch[y0:y1, x0:x1], mask[y0:y1, x0:x1], self.ring[y0:y1, x0:x1],
                                      kept, self.colour), jaw_rect)

    def _fading(self, fade_from: int, fade_weight: float) -> bool:
        """Whether a join's second mouth, studied frame ``fade_from``, is morphed in (it has a face)."""
        return fade_from >= 0 and fade_weight > 0 and bool(self.study.patches[fade_from])

    def _used(self, mask: np.ndarray) -> tuple[int, int, int, int]:
        """The rectangle (x0, y0, x1, y1) of the patch where ``mask`` or the colour ring is not zero, grown by
        USED_MARGIN px: every pixel a warp samples for a drawn or matched pixel lies in it."""
        box = _nonzero_box(mask > 0)
        box = self.ring_box if box is None else _union(box, self.ring_box)
        if box[2] <= box[0] or box[3] <= box[1]:
            return 0, 0, 0, 0  # nothing to warp
        (h, w), (x0, y0, x1, y1) = mask.shape, box
        return (max(x0 - USED_MARGIN, 0), max(y0 - USED_MARGIN, 0), min(x1 + USED_MARGIN, w), min(y1 + USED_MARGIN, h))

    def _patch(self, index: int) -> np.ndarray | None:
        """Studied frame ``index``'s lower face, decoded once while it is among the DECODED_KEPT latest used (a
        mouth is shown on its own frames and faded under a join's neighbour, and chosen again later)."""
        patch = self._decoded.pop(index, False)
        if patch is False:
            if len(self._decoded) >= DECODED_KEPT:
                del self._decoded[next(iter(self._decoded))]  # the one used longest ago
            patch = self.study.patch(index)
            if patch is not None:
                patch.flags.writeable = False  # shared by the frames that show it: never drawn on
        self._decoded[index] = patch  # last in the order: the latest used
        return patch

    def _chin(self, index: int, open_to: float) -> np.ndarray:
        """Where studied frame ``index``'s chin is drawn (canonical frame): moved with its lower lip when it is
        drawn more or less open (``reopened``)."""
        lower = _opening_move(float(self.study.openings[index]), open_to) * (1.0 - UPPER_LIP_SHARE)
        return self.points[index][CHIN].astype(np.float64) + (0.0, lower)

    def _mask(self, indices: tuple[int, ...], to_patch: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The blend mask of studied frames ``indices`` (one, or a join's two: where either is) over a picture
        whose points ``to_patch`` maps into the patch's pixels: the ellipse, within both jaw lines, feathered."""
        h, w = self.ellipse.shape
        theirs = (points[list(JAW)] @ to_patch[:, :2].T + to_patch[:, 2]).astype(np.float32)
        hard = np.zeros((h, w), np.uint8)
        for index in indices:
            own = self.points[index][list(JAW)] - PATCH_BOX[:2]
            drop = float(own[:, 1].max() - theirs[:, 1].max())  # > 0: the chosen chin is the lower one
            inside = self.ellipse.copy()
            for jaw, lower_by, chosen in ((own, max(0.0, -drop), True), (theirs, max(0.0, drop), False)):
                allowed = np.zeros((h, w), np.uint8)
                lowered = np.vstack([jaw, jaw + (0.0, lower_by)])
                cv2.fillConvexPoly(allowed, cv2.convexHull(np.round(lowered).astype(np.int32)), 1)
                inside *= _inset_sides(allowed, jaw) if chosen else allowed
            hard |= inside
        # One feathering for a join's two (their union's, a hair wider where they meet than two feathered apart).
        hard = cv2.erode(hard, np.ones((3, 3), np.uint8), iterations=int(FEATHER // 2))
        mask = cv2.GaussianBlur(hard.astype(np.float32), (0, 0), FEATHER / 2)
        mask[:2], mask[-2:], mask[:, :2], mask[:, -2:] = 0, 0, 0, 0
        return mask


def jaw_moved(picture: np.ndarray, points: np.ndarray,
              chin_to: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Moves the jaw of the face whose mesh ``points`` (picture pixels) are given, in ``picture`` (in place), so
    its chin lands at ``chin_to`` along the face's up-down axis: the chin and the jaw line near it by the whole
    move, less towards the jaw's corners, the lower face from nothing at the nose base to all of it at the chin,
    and the neck under the chin less and less over JAW_NECK eye distances (or what the picture leaves under the
    chin, by at most half of which the chin moves). Returns the points moved with it and the rectangle moved (x0,
    y0, x1, y1; empty when nothing moved)."""
    pts = np.asarray(points, np.float64)
    eyes = pts[EYE_OUTER_CORNERS[1]] - pts[EYE_OUTER_CORNERS[0]]
    eye = float(np.hypot(*eyes))
    if eye < 1.0:
        return points, (0, 0, 0, 0)
    right = eyes / eye
    down = np.array([-right[1], right[0]])
    chin = pts[CHIN]
    asked = float((np.asarray(chin_to, np.float64) - chin) @ down)
    # A chin within JAW_SLACK of the chosen one shows no second chin: that much of any move is left undone.
    move = float(np.sign(asked)) * max(abs(asked) - JAW_SLACK * eye, 0.0)
    if move == 0.0:
        return points, (0, 0, 0, 0)
    jaw = pts[list(JAW)]
    half = max(float(np.abs((jaw - chin) @ right).max()), 1.0)
    above = max(float((chin - pts[NOSE_BASE]) @ down), 1.0)
    # The picture may be a face's work area cut from the frame: the neck's fade ends inside it, and a move too
    # large for the room left under the chin is made smaller (the neck stretched by at most half again).
    room = (picture.shape[0] - 3 - chin[1]) / max(down[1], 0.5)
    neck = min(JAW_NECK * eye, room)
    move = float(np.clip(move, -neck / 2, neck / 2))
    # The rectangle the move reaches: the jaw from corner to corner, nose base to the neck's fade (and the move).
    corners = np.vstack([jaw, pts[NOSE_BASE], chin + down * (neck + abs(move))])
    x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int) - 2, 0)
    x1 = min(int(np.ceil(corners[:, 0].max())) + 3, picture.shape[1])
    y1 = min(int(np.ceil(corners[:, 1].max())) + 3, picture.shape[0])
    if x1 - x0 < 2 or y1 - y0 < 2:
        return points, (0, 0, 0, 0)

    # 1 - smoothstep(u) is smoothstep(1 - u): each factor is one smoothstep (this runs five times a frame).
    per_along, per_depth = 1.0 / (0.85 * half), (1.0 / above, -1.0 / neck)

    def shift_at(x: np.ndarray, y: np.ndarray) -> np.ndarray:  # how far down the face's axis each point moves
        dx, dy = x - chin[0], y - chin[1]
        along = dx * right[0] + dy * right[1]
        depth = dx * down[0] + dy * down[1]
        across = blend.smoothstep((1.0 + 0.25 / 0.85) - np.abs(along) * per_along)
        vertical = blend.smoothstep(1.0 + depth * np.where(depth < 0, *per_depth))
        return move * across * vertical

    # Each pixel samples the one that lands on it: p = s + shift(s) down, solved for s by fixed-point steps on
    # every JAW_FIELD_STEP-th pixel (the field is smooth; a tenth of the cost), then spread to every pixel.
    h, w = y1 - y0, x1 - x0
    columns, rows = -(-w // JAW_FIELD_STEP), -(-h // JAW_FIELD_STEP)
    # Where cv2.resize takes its samples from: the small grid's k-th at (k + 0.5) * size / count - 0.5.
    gx, gy = np.meshgrid(x0 + (np.arange(columns) + 0.5) * w / columns - 0.5,
                         y0 + (np.arange(rows) + 0.5) * h / rows - 0.5)
    source = np.zeros_like(gx)
    for _ in range(4):
        source = shift_at(gx - source * down[0], gy - source * down[1])
    amount = cv2.resize(source.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    # The region's pixel coordinates as a row and a column, spread by broadcasting (its size differs each frame).
    fx = np.arange(w, dtype=np.float32)[None, :] + np.float32(x0)
    fy = np.arange(h, dtype=np.float32)[:, None] + np.float32(y0)
    region = picture[y0:y1, x0:x1]
    region[:] = cv2.remap(picture, fx - amount * np.float32(down[0]), fy - amount * np.float32(down[1]),
                          cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = pts + shift_at(pts[:, 0], pts[:, 1])[:, None] * down
    return moved.astype(np.float32), (int(x0), int(y0), int(x1), int(y1))


def join_flow() -> cv2.DISOpticalFlow:
    """The dense flow ``between`` is given: OpenCV DIS, its medium preset without the variational refinement,
    which took half the flow's time (0.39 of 0.81 ms a join's frame) to bring the two mouths, each moved along
    it, 1% closer (bench/RESULTS.md)."""
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    flow.setVariationalRefinementIterations(0)
    return flow


def between(a: np.ndarray, b: np.ndarray, weight: float, flow: cv2.DISOpticalFlow) -> np.ndarray:
    """The image ``weight`` of the way from ``a`` to ``b`` (same-size BGR): the dense flow from a to b (``flow``,
    OpenCV DIS), a moved that share along it and b the rest of the way back, mixed by the same share: one mouth
    between the two, where a cross-fade shows both."""
    h, w = a.shape[:2]
    # The flow at half the size, then doubled: a quarter of the cost (about 1 ms a frame), and the lips meet as well.
    small = [cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
             for image in (a, b)]
    moves = cv2.resize(flow.calc(small[0], small[1], None), (w, h), interpolation=cv2.INTER_LINEAR) * np.float32(2.0)
    share = np.float32(weight)
    # a at p looks like b at p + moves(p): the in-between shape samples a behind and b ahead of p (x and y in
    # one map of two channels, as the flow comes).
    grid = _grid_xy(h, w)
    from_a = cv2.remap(a, grid - share * moves, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    from_b = cv2.remap(b, grid + (1 - share) * moves, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(from_a, 1.0 - weight, from_b, weight, 0.0)


def reopened(patch: np.ndarray, points: np.ndarray, filmed: float, open_to: float) -> np.ndarray:
    """``patch`` (BGR, PATCH_BOX of the canonical frame) with its mouth, filmed ``filmed`` open (over the eye
    distance) with the canonical face-mesh ``points``, drawn towards ``open_to``: the lower lip moves by the
    change (and the jaw under it), the upper lip a fifth as far the other way, the gap
    between them stretched or squeezed evenly, nothing beyond the mouth's corners. Opened by at most its own
    opening more and OPENING_STEP, closed by at most CLOSING_SHARE of its opening; returned as it is when that
    leaves under a quarter pixel or the opening is unknown."""
    move = _opening_move(filmed, open_to)
    if move == 0.0:
        return patch
    p = np.asarray(points, np.float32) - np.asarray(PATCH_BOX[:2], np.float32)
    top, bottom = p[INNER_LIP_UPPER[0], 1], p[INNER_LIP_LOWER[0], 1]
    nose = p[NOSE_BASE, 1]
    left, right = p[MOUTH_CORNERS[0], 0], p[MOUTH_CORNERS[1], 0]
    centre, half = 0.5 * (left + right), max(0.5 * abs(right - left), 1.0)
    h, w = patch.shape[:2]
    # Only the columns the move reaches (within 1.5 half widths of the mouth's centre) are worked on: every
    # other one samples itself. Each column samples only itself, so the band is cut out exactly.
    first = int(np.clip(np.floor(centre - 1.5 * half), 0, w))
    last = int(np.clip(np.ceil(centre + 1.5 * half) + 1, first, w))
    if last <= first:
        return patch
    gx, gy = _grid(h, last - first)
    lower, upper = move * (1.0 - UPPER_LIP_SHARE), -move * UPPER_LIP_SHARE
    # Where each filmed row goes (down: +), times how much of that each column takes: the gap's content evenly
    # between the lips' two moves, so it is stretched or squeezed without folding (the move is at most the gap).
    y = gy[:, 0]
    across_gap = np.clip((y - top) / max(bottom - top, 1.0), 0.0, 1.0)
    towards_nose = 1.0 - blend.smoothstep((top - y) / max(top - nose, 1.0))
    # Under the lips the whole jaw moves with the lower one (the picture's jaw is moved to its chin, jaw_moved).
    down = np.where(y < top, upper * towards_nose, np.where(y <= bottom, upper + (lower - upper) * across_gap, lower))
    # Beside the mouth the move fades out by the corners; under it, by the jaw's sides.
    across = 1.0 - blend.smoothstep((np.abs(gx[0] + first - centre) - 0.9 * half) / (0.6 * half))
    shift = np.outer(down, across).astype(np.float32)
    # Each output pixel samples the filmed one that lands on it: y = s + shift(s), solved for s by fixed-point
    # steps (the shift changes by less than a pixel a pixel, so they converge).
    source = gy
    for _ in range(4):
        source = gy - cv2.remap(shift, gx, source, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    out = patch.copy()
    out[:, first:last] = cv2.remap(np.ascontiguousarray(patch[:, first:last]), gx, source, cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE)
    return out


def rewidened(patch: np.ndarray, points: np.ndarray, filmed: float, width_to: float) -> np.ndarray:
    """``patch`` (BGR, PATCH_BOX of the canonical frame) with its mouth, filmed ``filmed`` wide (corner width over
    the eye distance) with the canonical face-mesh ``points``, drawn ``width_to`` wide: widened or narrowed about
    the mouth's centre by a smooth sideways bump (never taller or shorter: closed lips stay closed), by at most
    WIDTH_MAX_CHANGE of its width; the key mouths' width warp (``heygem.engines.builtin``). Returned as it is when
    either width is unknown or the change is under 1%."""
    if not (np.isfinite(filmed) and np.isfinite(width_to)) or filmed <= 0:
        return patch
    amount = float(np.clip(width_to / filmed - 1.0, -WIDTH_MAX_CHANGE, WIDTH_MAX_CHANGE))
    if abs(amount) < 0.01:
        return patch
    p = np.asarray(points, np.float32) - np.asarray(PATCH_BOX[:2], np.float32)
    h, w = patch.shape[:2]
    gx, gy = _grid(h, w)
    # The bump is 1 at the centre and CORNER_SHARE at the corners: scaled so that the corners move by the whole
    # change, sideways only. Each output pixel samples the filmed one the bump moved there (the move is small and
    # smooth: its inverse is the move backwards). Worked out on the grid's row and column: the bump is a product of
    # an across and an up-down factor (``_width_moves``' values, h + w exponentials instead of h x w).
    dx = _width_moves(p, amount / CORNER_SHARE, gx[:1], gy[:, :1], separable=True)[0]
    return cv2.remap(patch, gx - dx, gy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def width_field(points: np.ndarray, amount: float, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """(h, w, 2) float32 displacement that widens (amount > 0) or narrows and heightens (amount < 0) the mouth of
    the face-mesh ``points`` about its centre, at the grid ``gx``, ``gy`` (the points' pixels): ``amount`` times
    each pixel's distance from the centre times a smooth bump (WIDTH_FIELD_REACH half mouth widths), so the
    corners move by CORNER_SHARE x amount of their distance. The key mouths' width (``heygem.engines.builtin``)
    and ``rewidened``."""
    dx, dy = _width_moves(points, amount, gx, gy, sideways_only=False)
    return np.dstack([dx, dy]).astype(np.float32)


def _width_moves(points: np.ndarray, amount: float, gx: np.ndarray, gy: np.ndarray, sideways_only: bool = True,
                 separable: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """``width_field``'s sideways and up-down moves (the latter None when ``sideways_only``). ``separable``: ``gx``
    is a grid's one row (1, w) and ``gy`` its one column (h, 1); the moves come at the whole grid (h, w)."""
    centre = points[list(OUTER_LIP)].mean(0)
    half_width = max(float(np.linalg.norm(points[MOUTH_CORNERS[0]] - points[MOUTH_CORNERS[1]])) / 2, 1.0)
    across, down = WIDTH_FIELD_REACH
    if separable:  # exp(a + b) = exp(a) exp(b): the bump is an outer product, broadcast from a row and a column
        bump = (np.exp(-0.5 * ((gx - centre[0]) / (across * half_width)) ** 2) *
                np.exp(-0.5 * ((gy - centre[1]) / (down * half_width)) ** 2))
    else:
        bump = np.exp(-0.5 * (((gx - centre[0]) / (across * half_width)) ** 2 +
                              ((gy - centre[1]) / (down * half_width)) ** 2))
    dx = amount * (gx - centre[0]) * bump
    if sideways_only:
        return dx.astype(np.float32), None
    return dx, -0.5 * amount * (gy - centre[1]) * bump if amount < 0 else np.zeros_like(gx)


def _union(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The smallest rectangle (x0, y0, x1, y1) holding both; an empty one (x1 <= x0) holds nothing."""
    if a[2] <= a[0] or a[3] <= a[1]:
        return b
    if b[2] <= b[0] or b[3] <= b[1]:
        return a
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _nonzero_box(nonzero: np.ndarray) -> tuple[int, int, int, int] | None:
    """The smallest rectangle (x0, y0, x1, y1) holding every True of ``nonzero``; None when there is none."""
    rows, columns = np.flatnonzero(nonzero.any(1)), np.flatnonzero(nonzero.any(0))
    if not len(rows):
        return None
    return int(columns[0]), int(rows[0]), int(columns[-1]) + 1, int(rows[-1]) + 1


def _opening_move(filmed: float, open_to: float) -> float:
    """How far (canonical px, down: opened) ``reopened`` moves the lips apart for a mouth filmed ``filmed`` open
    and asked ``open_to`` (over the eye distance): at most its own opening more and OPENING_STEP, at most
    CLOSING_SHARE of its opening less; 0 when that is under a quarter pixel or either is unknown."""
    gap = float(filmed) * EYE_SPAN
    if not np.isfinite(gap) or not np.isfinite(open_to):
        return 0.0
    move = float(np.clip((open_to - filmed) * EYE_SPAN, -CLOSING_SHARE * gap, min(gap, OPENING_STEP)))
    return move if abs(move) >= 0.25 else 0.0


@functools.lru_cache(maxsize=32)  # the reopening's band of columns differs in width from mouth to mouth
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The pixel coordinates of an h x w image (x, y; float32, read only)."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = gy.flags.writeable = False
    return gx, gy


@functools.lru_cache(maxsize=2)
def _grid_xy(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32: the pixel coordinates of an h x w image as one map of two channels (x, y; read only)."""
    grid = np.dstack(_grid(h, w))
    grid.flags.writeable = False
    return grid


def _inset_sides(inside: np.ndarray, jaw: np.ndarray) -> np.ndarray:
    """The chosen frame's face (``inside``, its jaw line ``jaw`` in the patch's pixels) drawn in from the sides of
    its jaw by JAW_INSET px: the shading along its own jaw line stays out, which on a head turned otherwise than
    the picture's lay inside the picture's face as a second jaw line. The chin's front (between the jaw line's
    points under the mouth corners) keeps its whole height, so an opening jaw is not cut off."""
    inset = cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=JAW_INSET)
    left, right = sorted((float(jaw[_CHIN_FRONT[0], 0]), float(jaw[_CHIN_FRONT[1], 0])))
    front = slice(max(0, int(round(left))), max(0, int(round(right)) + 1))
    inset[:, front] = inside[:, front]
    return inset


def _masks(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The blend ellipse (hard) and the colour ring in the patch's pixels, from the studied faces (canonical
    points): an ellipse from just below the nose to below the lowest chin, as wide as the widest mouth and then some."""
    x1, y1, x2, y2 = PATCH_BOX
    width, height = x2 - x1, y2 - y1
    corners = faces[:, list(MOUTH_CORNERS)]
    centre_x = float(np.median(corners[:, :, 0].mean(1))) - x1
    half_width = float(np.percentile(np.abs(corners[:, 1, 0] - corners[:, 0, 0]), 95)) * 0.5 * 1.8
    top = float(np.median(faces[:, NOSE_BASE, 1])) - y1 - 6.0  # the feather ends at the nose, not on the lip
    bottom = float(np.percentile(faces[:, CHIN, 1], 95)) - y1 + 6.0
    centre_y, half_height = (top + bottom) / 2, (bottom - top) / 2
    grid_y, grid_x = np.mgrid[0:height, 0:width].astype(np.float32)
    inside = ((grid_x - centre_x) / max(half_width, 1.0)) ** 2 + ((grid_y - centre_y) / max(half_height, 1.0)) ** 2
    hard = (inside <= 1.0).astype(np.float32)
    # The blend fades out inside the patch, never at its edge: an ellipse cut by the patch's border (a low chin, a
    # nose near its top) drew a straight line across the picture's face.
    edge = int(np.ceil(FEATHER))
    hard[:edge], hard[-edge:], hard[:, :edge], hard[:, -edge:] = 0, 0, 0, 0
    grown = cv2.dilate(hard, np.ones((3, 3), np.uint8), iterations=RING)
    # Only beside and above the mouth: below the chin the ring would meet the neck, a collar or the background.
    ring = (grown > 0) & (hard == 0) & (grid_y < centre_y)
    ring[:2], ring[-2:], ring[:, :2], ring[:, -2:] = False, False, False, False
    return hard, ring.astype(np.float32)

