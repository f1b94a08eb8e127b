"""Where the footage drive loses the real mouth: in the choice of frames, or in drawing them into the picture?

Each clip (a real talking head with its own speech) is cut in two as bench/articulation.py cuts it (the first
half with its own speech as the presenter's footage, the second half's speech as the new speech, the real
second half as the truth). The built-in engine with ``--mouth-drive footage`` makes the video; the footage
frames it chose are recorded, and three pairs are compared frame by frame (Pearson r at lag 0 of the
inner-lip opening and the corner width over the eye distance, ``heygem.eval.mouth_measures``):

- chosen / real: the chosen footage frames' own mouths against the real second half (what the choice allows);
- asked / real: the mouths the engine asked to draw (each chosen mouth moved towards what the footage's fit
  predicts for the own voice's sounds, ``heygem.selection.drawn_openings`` and ``drawn_widths``; as chosen
  where it asks nothing) against the real second half;
- output / real: the rendered mouth against the real one (what bench/articulation.py reports);
- output / asked: the rendered mouth against the asked one (what drawing keeps of it).

``--ceiling`` also draws each output frame's own footage frame into it as filmed (frame t's mouth onto frame t,
the choice replaced by the identity): output / asked there is what the drawing keeps when the pose and the face
around the mouth are the mouth's own, so the gap to the real run is the cost of a mouth from another moment.

    .venv/bin/python bench/footage_fidelity.py --ceiling
    .venv/bin/python bench/footage_fidelity.py --clips long/french.mp4

Not a test: run it by hand and keep its output (bench/RESULTS.md).
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

import numpy as np  # noqa: E402 - after the environment and the path above

import heygem.engines.builtin as builtin  # noqa: E402
from heygem.bench import default_shared  # noqa: E402
from heygem.eval import lag_correlations, mouth_measures, split_clip  # noqa: E402
from heygem.pipeline import generate  # noqa: E402
from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings  # noqa: E402

CLIPS = ("latentsync/demo1_video.mp4", "long/french.mp4", "long/Chantel-Home-Intro.mp4")


def r0(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b))
    return lag_correlations(np.asarray(a[:n]), np.asarray(b[:n]), 0)[0]


def render(split, out: Path, identity: bool) -> tuple[np.ndarray, np.ndarray, Path]:
    """The footage drive over the split: its choice and the (T, 2) opening and width it asked to draw each at
    (NaN: as filmed), recorded; with ``identity`` frame t for t, as filmed."""
    chosen: dict[str, np.ndarray] = {}
    choose = builtin._choose_from_footage

    def recording(job, index):
        frames, drawn = choose(job, index)
        if identity:
            frames = np.minimum(np.arange(len(frames)), len(job.footage.usable) - 1)
            drawn = np.full_like(drawn, np.nan)
        chosen["frames"], chosen["drawn"] = frames, drawn
        return frames, drawn

    settings = Settings(engine=EngineOptions(engine="builtin", mouth_drive="footage"),
                        encode=EncodeOptions(preset="veryfast"), detection=DetectionOptions(cache_dir=None))
    builtin._choose_from_footage = recording
    try:
        result = generate(split.speech, split.first_half, out, settings)
    finally:
        builtin._choose_from_footage = choose
    if "frames" not in chosen:
        raise SystemExit(f"{split.clip.name}: the footage drive was not used ({result.engine_info.fallbacks})")
    return chosen["frames"], chosen["drawn"], result.output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--clips", nargs="+", default=list(CLIPS))
    parser.add_argument("--ceiling", action="store_true", help="also draw each frame's own footage frame into it")
    args = parser.parse_args(argv)
    print("| clip | run | chosen / real: opening, width | asked / real | output / real | output / asked |")
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory(prefix="heygem-fidelity-") as work:
        for clip in args.clips:
            folder = Path(work) / clip.replace("/", "_")
            split = split_clip(args.shared / "media" / clip, folder, max_side=960, footage_speech=True)
            real_open, real_width, _ = mouth_measures(split.second_half)
            foot_open, foot_width, _ = mouth_measures(split.first_half)
            for identity in ([False, True] if args.ceiling else [False]):
                frames, drawn, output = render(split, folder / f"out-{identity}.mp4", identity)
                out_open, out_width, _ = mouth_measures(output)
                frames = np.minimum(frames, len(foot_open) - 1)
                shown_open, shown_width = foot_open[frames], foot_width[frames]
                asked_open = np.where(np.isfinite(drawn[:, 0]), drawn[:, 0], shown_open)
                asked_width = np.where(np.isfinite(drawn[:, 1]), drawn[:, 1], shown_width)
                cells = [f"{r0(shown_open, real_open):.2f}, {r0(shown_width, real_width):.2f}",
                         f"{r0(asked_open, real_open):.2f}, {r0(asked_width, real_width):.2f}",
                         f"{r0(out_open, real_open):.2f}, {r0(out_width, real_width):.2f}",
                         f"{r0(out_open, asked_open):.2f}, {r0(out_width, asked_width):.2f}"]
                run = "each frame's own mouth (ceiling)" if identity else "chosen by the speech"
                print(f"| {clip} | {run} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
