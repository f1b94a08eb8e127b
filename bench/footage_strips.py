"""Strips to look at: the footage drive's output frames beside the footage frames they came from.

For each presenter (its whole footage) and each speech, ``heygem.generate`` runs with ``--mouth-drive footage``
and every output frame's footage frame is recorded as the engine chose it. One tile per sound class of the speech (m/b/p,
f/v, "ah", "ee", "oo", a pause), each the output's lower face (above) over the same region of the footage
frame that was chosen for it (below), is written to tests/artifacts/footage_<presenter>_<speech>_sounds.png,
and 12 consecutive output frames across the join with the largest jump in opening to ..._join.png. The class
of a frame is the speech's viseme there (``heygem.speech.phones.mouth_shapes``, the English phone set, for any
language); the frame shown is the one in the middle of the longest stretch of that class.

    .venv/bin/python bench/footage_strips.py      # long/Chantel-Home-Intro.mp4 and long/french.mp4, English and Mandarin
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import heygem.engines.builtin as builtin  # noqa: E402
from heygem.bench import default_shared  # noqa: E402
from heygem.faces.landmarks import LandmarkTracker, mouth_opening  # noqa: E402
from heygem.media.audio import load_audio  # noqa: E402
from heygem.media.probe import probe  # noqa: E402
from heygem.media.video import iter_frames  # noqa: E402
from heygem.pipeline import generate  # noqa: E402
from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings  # noqa: E402
from heygem.speech.phones import VISEMES, mouth_shapes, recognise_phones  # noqa: E402

PRESENTERS = ("long/Chantel-Home-Intro.mp4", "long/french.mp4")
SPEECHES = {"english": "sadtalker/RD_Radio31_000.wav", "mandarin": "sadtalker/bus_chinese.wav"}
CLASSES = {"m/b/p": "closed", "f/v": "lip-teeth", "ah": "open", "ee": "spread", "oo": "rounded", "pause": "rest"}
TILE = 200


def _frames(path: Path) -> list[np.ndarray]:
    info = probe(path)
    return list(iter_frames(info, info.fps))


def _lower_face(image: np.ndarray, tracker: LandmarkTracker) -> tuple[int, int, int, int]:
    """A square around the mouth and chin, from the face mesh (the whole picture when no face is found)."""
    points = tracker(image)
    if points is None:
        return 0, 0, image.shape[1], image.shape[0]
    centre = points[[13, 14, 152]].mean(0)
    half = 0.75 * float(np.linalg.norm(points[33] - points[263]))
    x0, y0 = int(max(0, centre[0] - half)), int(max(0, centre[1] - half))
    return x0, y0, int(min(image.shape[1], centre[0] + half)), int(min(image.shape[0], centre[1] + half))


def _tile(image: np.ndarray, box: tuple[int, int, int, int], label: str) -> np.ndarray:
    x0, y0, x1, y1 = box
    tile = cv2.resize(image[y0:y1, x0:x1], (TILE, TILE), interpolation=cv2.INTER_CUBIC)
    cv2.putText(tile, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1, cv2.LINE_AA)
    return tile


def _middle_of_longest(mask: np.ndarray) -> int | None:
    best, start, where = 0, None, None
    for i, on in enumerate(np.append(mask, False)):
        if on and start is None:
            start = i
        elif not on and start is not None:
            if i - start > best:
                best, where = i - start, (start + i - 1) // 2
            start = None
    return where


def strips(media: Path, presenter: str, language: str, speech: str, out_dir: Path, work: Path) -> list[Path]:
    chosen: list[int] = []
    choose = builtin._choose_from_footage

    def recording(job, index):  # the footage frame of each output frame, as the engine chose them
        frames, drawn = choose(job, index)
        chosen.extend(int(f) for f in frames)
        return frames, drawn

    builtin._choose_from_footage = recording
    try:
        settings = Settings(engine=EngineOptions(engine="builtin", mouth_drive="footage"),
                            encode=EncodeOptions(preset="veryfast", crf=14),
                            detection=DetectionOptions(cache_dir=work / "cache"), out_dir=work)
        result = generate(media / speech, media / presenter, work / "out.mp4", settings)
    finally:
        builtin._choose_from_footage = choose
    if result.engine_info.mode != "footage":
        raise SystemExit(f"{presenter}: the footage drive fell back ({result.engine_info.fallbacks})")
    output, footage = _frames(result.output), _frames(media / presenter)
    samples = load_audio(media / speech, 16000)
    fps = probe(result.output).fps
    shapes = mouth_shapes(recognise_phones(samples), samples, fps, len(output))
    tracker = LandmarkTracker()
    name = f"footage_{Path(presenter).stem}_{language}"
    written = []
    columns = []
    for label, viseme in CLASSES.items():
        t = _middle_of_longest(shapes.viseme[:len(chosen)] == VISEMES.index(viseme))
        if t is None:
            continue
        source = footage[min(chosen[t], len(footage) - 1)]
        columns.append(np.vstack([_tile(output[t], _lower_face(output[t], tracker), f"{label} out #{t}"),
                                  _tile(source, _lower_face(source, tracker), f"footage #{chosen[t]}")]))
    path = out_dir / f"{name}_sounds.png"
    cv2.imwrite(str(path), np.hstack(columns))
    written.append(path)
    picks = np.array(chosen)
    joins = np.flatnonzero(np.diff(picks) != 1) + 1
    joins = joins[(joins >= 3) & (joins + 9 <= len(output))]
    if len(joins):
        # The join whose two footage frames differ most in opening: the hardest to hide.
        jump = {}
        for t in joins:
            a, b = (tracker(footage[min(picks[k], len(footage) - 1)]) for k in (t - 1, t))
            if a is not None and b is not None:
                jump[int(t)] = abs(mouth_opening(b) - mouth_opening(a))
        t = max(jump, key=jump.get) if jump else int(joins[0])
        box = _lower_face(output[t], tracker)
        tiles = [_tile(output[k], box, f"#{k} <- {picks[k]}") for k in range(t - 3, t + 9)]
        path = out_dir / f"{name}_join.png"
        cv2.imwrite(str(path), np.vstack([np.hstack(tiles[:6]), np.hstack(tiles[6:])]))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--presenters", nargs="+", default=list(PRESENTERS))
    parser.add_argument("--out", type=Path, default=REPO / "tests/artifacts")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for presenter in args.presenters:
        for language, speech in SPEECHES.items():
            with tempfile.TemporaryDirectory(prefix="heygem-strips-") as work:
                for path in strips(args.shared / "media", presenter, language, speech, args.out, Path(work)):
                    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
