"""Does a result keep an earlier result's look? SSIM of two outputs of the same job, outside the mouth.

Usage: .venv/bin/python bench/same_look.py BEFORE.mp4 AFTER.mp4 [--every N]

For every N-th frame (default 5): the face mesh on BEFORE's frame, the mouth region (the outer lips' box grown
by the mouth's width to each side and by its width up and down: lips, the skin the engines redraw around
them, the chin's top), and the SSIM of the two grey frames (11x11 Gaussian, heygem.eval) averaged over every
pixel outside that region. Prints the worst and the mean, and the same over the whole frame for scale.
Issue 19 asks for at least 0.98 outside the mouth against today's output.
"""
from __future__ import annotations

import argparse
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from heygem.faces.landmarks import OUTER_LIP, LandmarkTracker  # noqa: E402
from heygem.media.probe import probe  # noqa: E402
from heygem.media.video import iter_frames  # noqa: E402


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of two grey uint8 images (the terms of heygem.eval.ssim, before its mean)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def mouth_region(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the mouth region of a frame whose face mesh is ``points``."""
    lips = points[list(OUTER_LIP)]
    (x1, y1), (x2, y2) = lips.min(0), lips.max(0)
    grow = x2 - x1  # the mouth's width
    mask = np.zeros(shape, bool)
    top, bottom = max(0, int(y1 - grow)), min(shape[0], int(np.ceil(y2 + grow)))
    left, right = max(0, int(x1 - grow)), min(shape[1], int(np.ceil(x2 + grow)))
    mask[top:bottom, left:right] = True
    return mask


def compare(before: Path, after: Path, every: int) -> dict[str, float]:
    a_info, b_info = probe(before), probe(after)
    if (a_info.width, a_info.height) != (b_info.width, b_info.height):
        raise SystemExit(f"the two results differ in size: {a_info.width}x{a_info.height} and "
                         f"{b_info.width}x{b_info.height}")
    fps = a_info.fps or Fraction(25)
    tracker = LandmarkTracker()
    outside, whole = [], []
    for number, (a, b) in enumerate(zip(iter_frames(a_info, fps), iter_frames(b_info, fps))):
        points = tracker(a)  # every frame, so the mesh keeps tracking
        if number % every or points is None:
            continue
        scores = ssim_map(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY), cv2.cvtColor(b, cv2.COLOR_BGR2GRAY))
        outside.append(float(scores[~mouth_region(points, scores.shape)].mean()))
        whole.append(float(scores.mean()))
    return {"frames": len(outside), "outside_min": min(outside), "outside_mean": float(np.mean(outside)),
            "whole_min": min(whole), "whole_mean": float(np.mean(whole))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--every", type=int, default=5, help="compare every N-th frame (default 5)")
    args = parser.parse_args()
    result = compare(args.before, args.after, args.every)
    print(f"{args.after.name} against {args.before.name}, {result['frames']} frames: SSIM outside the mouth "
          f"min {result['outside_min']:.4f} mean {result['outside_mean']:.4f}; whole frame min "
          f"{result['whole_min']:.4f} mean {result['whole_mean']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
