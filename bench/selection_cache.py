"""Per-clip face-mesh points and speech, computed once and kept under bench/out/selection/ (gitignored).

The selection bench (bench/selection.py) and the neighbour study need, for every frame of a clip with its own
speech, the 468 face-mesh points (tracked frame to frame, at the clip's own constant rate as
``heygem.media.video.iter_frames`` decodes it) and the clip's 16 kHz speech. The mesh pass is the slow part
(minutes for the long clips on 2 cores), so it is cached by the clip's path, size and modification time.

    .venv/bin/python bench/selection_cache.py CLIP.mp4 [...]     # fill the cache
"""
from __future__ import annotations

import logging
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from heygem.media.audio import load_audio  # noqa: E402
from heygem.media.probe import probe  # noqa: E402
from heygem.media.video import iter_frames  # noqa: E402

log = logging.getLogger("bench.selection_cache")

CACHE = REPO / "bench/out/selection"


def _key(clip: Path) -> str:
    stat = clip.stat()
    return f"{clip.parent.name}_{clip.stem}_{stat.st_size}_{int(stat.st_mtime)}"


def clip_points(clip: str | Path) -> tuple[np.ndarray, Fraction]:
    """(n_frames, 468, 2) float32 face-mesh points of every frame of ``clip`` (NaN where no face), and the rate."""
    clip = Path(clip).resolve()
    info = probe(clip)
    assert info.fps is not None, f"{clip} is not a video"
    path = CACHE / f"{_key(clip)}.points.npy"
    if path.is_file():
        return np.load(path), info.fps
    from heygem.faces.landmarks import LandmarkTracker

    started = time.perf_counter()
    tracker = LandmarkTracker()
    points = []
    for frame in iter_frames(info, info.fps):
        found = tracker(frame)
        points.append(np.full((468, 2), np.nan, np.float32) if found is None else np.asarray(found, np.float32))
    result = np.stack(points)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, result)
    log.info("%s: %d frames meshed in %.1f s", clip.name, len(result), time.perf_counter() - started)
    return result, info.fps


def clip_speech(clip: str | Path) -> np.ndarray:
    """The clip's own speech, 16 kHz mono float32 (cached)."""
    clip = Path(clip).resolve()
    path = CACHE / f"{_key(clip)}.speech.npy"
    if path.is_file():
        return np.load(path)
    samples = np.array(load_audio(clip, 16000), dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, samples)
    return samples


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in sys.argv[1:]:
        points, fps = clip_points(name)
        if probe(Path(name)).has_audio:
            clip_speech(name)
        log.info("%s: %d frames at %s fps, %d without a face", name, len(points), fps,
                 int(np.isnan(points[:, 0, 0]).sum()))
