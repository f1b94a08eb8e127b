"""The inside of a photo's open mouth: the photo's own teeth where it shows them, else teeth and a throat painted
in the face's own light (no weights). The built-in engine's photo path (``BuiltinEngine._build_photo_levels``)
warps the lips and jaw and fills the gap with what is here."""
from __future__ import annotations

import cv2
import numpy as np

from heygem import blend
from heygem.faces.landmarks import INNER_LIP

__all__ = ["mouth_interior", "shows_teeth", "teeth_edge"]

# A photo that smiles with its teeth shows them: at least this share of the inside of its lips is as bright as
# the light on its cheeks (OWN_TEETH_LIGHT of it). Its mouth then opens below its own teeth, which stay with the
# upper lip as upper teeth do with the skull, instead of under teeth painted over them (the shared astronaut's:
# the brightest inside her lips 235 in the photo, 196 painted over, grey).
OWN_TEETH_SHARE = 0.25
OWN_TEETH_LIGHT = 0.9
# The face mesh sets the inner lower lip a pixel or two inside such teeth (the astronaut's lowest two of six rows):
# the edge is the darkest row, the shadow between teeth and lip, within this reach below it (over eye distance).
TEETH_EDGE_REACH = 0.03

# A painted interior, over the inner upper lip's width (u) and the gap's height (v), in eye distances.
UPPER_TEETH = 0.07  # how far the upper incisors show below the upper lip
LOWER_TEETH = 0.035  # the lower ones, on wide openings only
TEETH_REACH = 0.82  # of the opening's half width: teeth stop short of the corners (they curve back into shadow)
TEETH_GAPS = (0.0, 0.3, 0.52)  # where two teeth meet, on either side of the middle (incisors wider)
TEETH_COVER_EDGE = 0.3  # the soft edge where rounded lips hide the teeth, as a share of their length


def shows_teeth(image: np.ndarray, points: np.ndarray, light: np.ndarray) -> bool:
    """Whether a face's lips are apart on its teeth (a photo that smiles with them): OWN_TEETH_SHARE of the
    inside of its lips at least OWN_TEETH_LIGHT as bright as ``light``, the light on its cheeks (BGR)."""
    inside = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(inside, [np.round(points[list(INNER_LIP)]).astype(np.int32)], 255)
    brightness = image[inside > 0].astype(np.float32).mean(axis=1)
    if len(brightness) < 10:  # lips together: a line, no inside
        return False
    return float((brightness >= OWN_TEETH_LIGHT * float(np.mean(light))).mean()) >= OWN_TEETH_SHARE


def teeth_edge(image: np.ndarray, inner_lower: np.ndarray, reach: float) -> np.ndarray:
    """``inner_lower`` (the face mesh's inner lower lip, corners first and last) with each point but the corners
    moved down to the darkest row within ``reach`` pixels below it: the shadow between the teeth and the lip."""
    grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.0)
    edge = inner_lower.astype(np.float32)
    for k in range(1, len(edge) - 1):
        x = int(np.clip(round(float(edge[k, 0])), 0, grey.shape[1] - 1))
        rows = np.arange(round(float(edge[k, 1])), round(float(edge[k, 1]) + reach) + 1)
        rows = rows[(rows >= 0) & (rows < grey.shape[0])]
        if len(rows):
            edge[k, 1] = max(float(edge[k, 1]), float(rows[np.argmin(grey[rows, x])]))
    return edge


def mouth_interior(geometry: tuple, t: float, lip_colour: np.ndarray, skin_colour: np.ndarray,
                   teeth: bool = True) -> np.ndarray:
    """The inside of an open mouth painted for a photo (no open mouth of the person's own): a dark throat,
    darkest at the back and in the corners, a tongue low in it, upper teeth under the upper lip (and lower teeth
    on wide openings), lit and tinted like the person's own skin. ``geometry``: the pixel grid (gx, gy), the inner
    upper lip's and moved inner lower lip's rows per column, the mouth's centre column, the inner half width and
    the eye distance; ``t``: how far open (0..1). (h, w, 3) float32 BGR."""
    gx, gy, top, bottom, centre_x, half, iod = geometry
    gap = np.maximum(bottom - top, 1e-3)
    u = (gx - centre_x) / half  # -1 .. 1 between the inner corners
    v = np.clip((gy - top) / gap, 0.0, 1.5)  # 0 at the upper lip, 1 at the lower
    ends = np.clip(1.0 - u * u, 0.0, 1.0)
    # Throat: the lips' colour, very dark; darker towards the back (middle of the gap) and the corners.
    throat = lip_colour * (0.42 - 0.18 * ends * np.sin(np.pi * np.clip(v, 0, 1)))[..., None] * (0.55 + 0.45 * ends)[..., None]
    out = throat.astype(np.float32)
    # Tongue: low in the mouth, the lips' hue a little paler, its top edge soft, shaded where it goes back.
    tongue_top = 1.0 - 0.45 * blend.smoothstep(np.asarray((t - 0.25) / 0.5)) * np.sqrt(np.clip(1 - (u / 0.8) ** 2, 0, 1))
    tongue = blend.smoothstep((v - tongue_top) / 0.18) * (t > 0.2)
    tongue_colour = (0.72 * lip_colour + 0.08 * skin_colour) * (0.6 + 0.4 * blend.smoothstep((v - tongue_top) / 0.5))[..., None]
    out = out * (1 - tongue[..., None]) + tongue_colour * tongue[..., None]
    if not teeth:
        return out
    # Teeth: off-white in the skin's own light and tint (a grey-world guess of the light's colour from the skin).
    light = float(skin_colour.mean())
    tint = skin_colour / max(light, 1.0)
    # BGR: enamel is warmer than paper, as much as the picture has colour at all (none in a grey photo).
    saturation = float(skin_colour.max() - skin_colour.min()) / max(float(skin_colour.max()), 1.0)
    ivory = 1.0 - np.array([0.1, 0.03, 0.0], np.float32) * min(1.0, saturation / 0.15)
    white = np.clip(min(light + 15.0, 236.0) * (0.85 + 0.15 * tint) * ivory, 0, 255).astype(np.float32)
    depth = np.clip(1.0 - (np.abs(u) / TEETH_REACH) ** 4, 0.0, 1.0)  # fall away towards the corners
    seams = np.ones_like(u)
    for at in TEETH_GAPS:
        for side in ((1, -1) if at else (1,)):
            seams -= 0.1 * np.exp(-0.5 * ((u - side * at) / 0.012) ** 2)
    upper_edge = UPPER_TEETH * iod * (1.0 - 0.35 * u * u)  # the incisors' edge curves up towards the canines
    upper = blend.smoothstep((upper_edge - (gy - top)) / max(0.012 * iod, 0.5)) * (depth > 0)
    shade = (0.62 + 0.38 * depth) * (0.86 + 0.14 * blend.smoothstep((gy - top) / max(0.03 * iod, 0.5))) * seams
    out = out * (1 - upper[..., None] * depth[..., None]) + \
        white * (shade * 0.97)[..., None] * (upper * depth)[..., None]
    if t > 0.55:  # wide open: the lower incisors' tips above the lower lip
        show = blend.smoothstep(np.asarray((t - 0.55) / 0.3)) * LOWER_TEETH * iod * (1.0 - 0.5 * u * u)
        lower = blend.smoothstep((show - (bottom - gy)) / max(0.01 * iod, 0.5)) * (np.abs(u) < 0.62)
        lower_depth = np.clip(1.0 - (np.abs(u) / 0.62) ** 4, 0.0, 1.0)
        out = out * (1 - (lower * lower_depth)[..., None]) + \
            white * (0.78 * (0.6 + 0.4 * lower_depth) * seams)[..., None] * (lower * lower_depth)[..., None]
    return out
