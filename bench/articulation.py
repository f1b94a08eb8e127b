"""Articulation of the built-in engine by the split-time protocol, on every shared clip with its own speech.

Each clip (a real talking head carrying its own speech) is cut in two by time on a frame boundary
(``heygem.eval.split_clip``); the built-in engine gets the first half's frames and the second half's speech,
once per mouth drive (``loudness``: the engine before phones; ``phones``: the new one), and its mouth is
compared frame by frame with the real second half's (``heygem.eval.articulation_on_split``): inner-lip
opening and mouth-corner width over the eye distance, Pearson r at lag 0 and the best within +-2 frames
(positive lag = generated mouth late), beside the loudness proxy (generated opening against the speech's
loudness, lag 0), and how the real half's mouth keeps time with its own speech (``own_sync``: a clip whose
mouth follows its speech best several frames late is itself out of sync, and no engine that keeps time with
the speech reads high at lag 0 on it). Protocol and earlier figures: shared/research/articulation.md.

    .venv/bin/python bench/articulation.py                      # 4 clips x 2 drives, table + bench/out/articulation.json
    .venv/bin/python bench/articulation.py --drives loudness --clips videoretalking/2.mp4
    .venv/bin/python bench/articulation.py --both-ways          # each clip also the other way round

``--both-ways`` also runs each clip the other way round (the second half as the presenter, the first half's
own speech as the audio, the real first half as the truth), and ``--cuts 0.35 0.5 0.65`` cuts each clip at
those shares of its frames instead of the middle only: more comparisons from the same clips, for telling a
change that holds from one that fits four halves.

Inputs are scaled down so their longer side is at most ``--max-side`` (960) pixels before anything runs:
the protocol allows it because every measure is a ratio of landmark distances (over the eye distance), so
it does not depend on the size. Of the four clips only latentsync/demo1_video.mp4 (1080x1920 HEVC) is
larger; its real second half measured at 540x960 against 1080x1920 correlates at r 1.00 (opening) and 0.99
(width), and the full size would spend most of the run decoding and encoding. The cuts and the results are
encoded with x264 ``veryfast`` (``--preset``). Each clip is cut once and reused for both drives. Not a test:
run it by hand and keep its output (bench/RESULTS.md).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the CLIs: YuNet's OpenMP threads cost more than they give here

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402 - after the environment and the path above

from heygem.bench import default_shared, machine_facts  # noqa: E402
from heygem.eval import (articulation_on_split, best_lag, bootstrap_r, compare_articulation,  # noqa: E402
                         cut_speech_argv, own_speech_lags, split_clip)
from heygem.media.ffmpeg import base_argv, ffmpeg_exe, file_url, run_ffmpeg  # noqa: E402
from heygem.media.probe import probe  # noqa: E402
from heygem.pipeline import PreparedAudio, generate, prepare_audio  # noqa: E402
from heygem.settings import MOUTH_DRIVES, DetectionOptions, EncodeOptions, EngineOptions, Settings  # noqa: E402

CLIPS = ("videoretalking/1.mp4", "videoretalking/2.mp4", "sadtalker/WDA_KatieHill_000.mp4",
         "latentsync/demo1_video.mp4")
DRIVES = MOUTH_DRIVES  # loudness: the engine before phones; footage: the presenter's own mouths (auto takes it where the footage speaks)
FIGURES = ("opening_r", "opening_best_r", "width_r", "width_best_r", "loudness_r")
# The targets are for the short clips and for the long ones (shared/media/long/) apart.
LONG_CLIPS = "long/"
INTERVAL = (5, 95)  # percentiles of the bootstrap: a 90% interval
REPLICATES = 2000


def settings_for(drive: str, preset: str) -> Settings:
    """The built-in engine with ``drive``, no face cache (the halves are temporary), a fast encoder."""
    return Settings(detection=DetectionOptions(cache_dir=None),
                    engine=EngineOptions(engine="builtin", mouth_drive=drive),
                    encode=EncodeOptions(preset=preset))


def _f(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.2f}"


def table(rows: list[dict], means: dict[str, dict[str, float | None]]) -> str:
    """One markdown table: a row per clip and drive, then the mean of each drive."""
    lines = ["| clip | drive | opening r, lag 0 | opening r, best (lag) | width r, lag 0 | width r, best (lag) "
             "| loudness-proxy r | frames compared (dropped) | opening / width r at lag 0, 90% interval "
             "| real mouth ~ own speech: lag 0, best (lag) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        r = row["report"]
        clip = row["clip"] + (f" cut at {row['cut']}" if row.get("cut", 0.5) != 0.5 else "") + \
            (" (reversed)" if row.get("reversed") else "")
        lines.append(f"| {clip} | {row['drive']} | {_f(r['opening_r'])} | {_f(r['opening_best_r'])} "
                     f"({r['opening_best_lag']:+d}) | {_f(r['width_r'])} | {_f(r['width_best_r'])} "
                     f"({r['width_best_lag']:+d}) | {_f(r['loudness_r'])} | {r['frames_compared']} "
                     f"({r['frames_dropped']}) | {_interval(row.get('opening_r_90'))} / {_interval(row.get('width_r_90'))} "
                     f"| {_own_sync(row.get('own_sync'))} |")
    for name, mean in means.items():
        drive, _, which = name.partition(" ")
        lines.append(f"| **mean of {mean['count']}{', ' + which if which else ''}** | **{drive}** | "
                     f"**{_f(mean['opening_r'])}** | **{_f(mean['opening_best_r'])}** | **{_f(mean['width_r'])}** | "
                     f"**{_f(mean['width_best_r'])}** | **{_f(mean['loudness_r'])}** | | "
                     f"{_interval(mean.get('opening_r_90'))} / {_interval(mean.get('width_r_90'))} | |")
    return "\n".join(lines)


def own_sync(report, speech: PreparedAudio) -> dict:
    """How the half's real mouth keeps time with its own speech (``heygem.eval.own_speech_lags``): r at every
    lag, at lag 0, and the best and its lag. A best far from 0 says the clip itself is out of sync, so its
    figures at lag 0 cannot be high for any engine that keeps time with the speech."""
    by_lag = own_speech_lags(report.real_opening, speech, report.fps)
    best_r, lag = best_lag(by_lag)
    return {"r_by_lag": {str(k): (float(r) if np.isfinite(r) else None) for k, r in by_lag.items()},
            "r": by_lag[0] if np.isfinite(by_lag[0]) else None, "best_r": best_r if np.isfinite(best_r) else None,
            "best_lag": lag}


def _own_sync(sync: dict | None) -> str:
    return "" if not sync else f"{_f(sync['r'])}, {_f(sync['best_r'])} ({sync['best_lag']:+d})"


def _interval(bounds: list[float | None] | None) -> str:
    return "n/a" if not bounds or None in bounds else f"{bounds[0]:.2f}..{bounds[1]:.2f}"


def _bounds(replicates: np.ndarray) -> list[float | None]:
    finite = replicates[np.isfinite(replicates)]
    if len(finite) < len(replicates) / 2:  # most resamples gave no r: no interval
        return [None, None]
    return [round(float(x), 3) for x in np.percentile(finite, INTERVAL)]


def add_intervals(row: dict) -> dict[str, np.ndarray]:
    """The row's opening and width r at lag 0 on block-bootstrapped frames (``heygem.eval.bootstrap_r``, one
    second a block): their 90% intervals go into the row (``opening_r_90``, ``width_r_90``); the replicates
    are returned for the means' intervals (the same seed for every row: only the frames differ)."""
    report = row["report"]
    block = max(1, round(float(Fraction(report["fps"]))))
    replicates = {}
    for measure in ("opening", "width"):
        generated, real = (np.array([np.nan if x is None else x for x in report[f"{side}_{measure}"]], np.float64)
                           for side in ("generated", "real"))
        replicates[measure] = bootstrap_r(generated, real, block, REPLICATES)
        row[f"{measure}_r_90"] = _bounds(replicates[measure])
    return replicates


def drive_means(rows: list[dict], replicates: list[dict[str, np.ndarray]] | None = None) -> dict[str, dict]:
    """Mean of each figure per drive over the clips where it is a number: the forward runs ("phones"), with
    reversed runs also all of them ("phones both ways"), and where the run has both short clips and long ones
    (under shared/media/long/) each kind's forward runs apart ("phones short clips", "phones long clips"), as
    the issue sets its targets. With each row's bootstrap ``replicates`` (``add_intervals``), the 90% interval
    of the mean opening and width r: the rows' replicates averaged one by one, the halves taken as independent."""
    means: dict[str, dict] = {}
    both = any(row.get("reversed") for row in rows)
    for drive in dict.fromkeys(row["drive"] for row in rows):
        forward = [i for i, row in enumerate(rows) if row["drive"] == drive and not row.get("reversed")]
        groups = [(drive, forward),
                  (f"{drive} both ways", [i for i, row in enumerate(rows) if row["drive"] == drive] if both else []),
                  *((f"{drive} {kind}", chosen) for kind, chosen in _short_and_long(forward, rows, lambda i: i))]
        for name, chosen in groups:
            if not chosen:
                continue
            mean: dict = {"count": len(chosen)}
            for key in FIGURES:
                values = [rows[i]["report"][key] for i in chosen if rows[i]["report"][key] is not None]
                mean[key] = float(np.mean(values)) if values else None
            if replicates is not None:
                for measure in ("opening", "width"):
                    with np.errstate(all="ignore"):
                        mean[f"{measure}_r_90"] = _bounds(np.mean([replicates[i][measure] for i in chosen], axis=0))
            means[name] = mean
    return means


def drive_gains(rows: list[dict], replicates: list[dict[str, np.ndarray]]) -> dict[str, dict]:
    """Each drive after the first against the first (today's engine beside the new one): the mean difference of
    their opening and width r over the halves both ran, with its 90% interval from the same resamples (each
    half's drives are resampled alike, ``add_intervals``), over all the runs and over the short and the long
    clips apart (as ``drive_means``). Empty with one drive."""
    drives = list(dict.fromkeys(row["drive"] for row in rows))
    at = {(row["clip"], row.get("cut", 0.5), bool(row.get("reversed")), row["drive"]): i for i, row in enumerate(rows)}
    gains: dict[str, dict] = {}
    for drive in drives[1:]:
        pairs = [(at[key[:3] + (drives[0],)], i) for key, i in at.items()
                 if key[3] == drive and key[:3] + (drives[0],) in at]
        for name, chosen in [(f"{drive} - {drives[0]}", pairs),
                             *((f"{drive} - {drives[0]}, {kind}", chosen)
                               for kind, chosen in _short_and_long(pairs, rows, lambda pair: pair[1]))]:
            if not chosen:
                continue
            gain: dict = {"count": len(chosen)}
            for measure in ("opening", "width"):
                with np.errstate(all="ignore"):
                    differences = np.mean([replicates[new][measure] - replicates[old][measure] for old, new in chosen], 0)
                values = [(rows[new]["report"][f"{measure}_r"], rows[old]["report"][f"{measure}_r"]) for old, new in chosen]
                gain[f"{measure}_r"] = float(np.mean([a - b for a, b in values if a is not None and b is not None]))
                gain[f"{measure}_r_90"] = _bounds(differences)
            gains[name] = gain
    return gains


def _short_and_long(items: list, rows: list[dict], row_of: Callable[[Any], int]) -> list[tuple[str, list]]:
    """``items`` (rows' indices, or pairs of them) split into the short clips' and the long ones' (under
    shared/media/long/), as the issue sets its targets; none where they are all of one kind."""
    long = [item for item in items if rows[row_of(item)]["clip"].startswith(LONG_CLIPS)]
    short = [item for item in items if not rows[row_of(item)]["clip"].startswith(LONG_CLIPS)]
    return [("short clips", short), ("long clips", long)] if long and short else []


def gains_lines(gains: dict[str, dict]) -> list[str]:
    """One line per ``drive_gains`` entry, for under the table."""
    return [f"{name} over {gain['count']} halves: opening r {gain['opening_r']:+.2f} (90% "
            f"{_interval(gain['opening_r_90'])}), width r {gain['width_r']:+.2f} (90% {_interval(gain['width_r_90'])})"
            for name, gain in gains.items()]


def first_speech_of(split, clip: Path, folder: Path) -> Path:
    """The first half's own speech, cut once into ``folder``: the audio of the clip the other way round."""
    first_speech = folder / "first_speech.wav"
    if not first_speech.exists():
        run_ffmpeg(cut_speech_argv(ffmpeg_exe(), clip, first_speech, start=Fraction(0),
                                   end=probe(split.first_half).frame_count / split.fps), subject=clip)
    return first_speech


def reversed_run(split, first_speech: PreparedAudio, drive: str, preset: str, folder: Path, max_lag: int,
                 footage_speech: bool):
    """The clip the other way round: the second half as the presenter (with ``footage_speech``, with its own
    speech, as the first half has it forwards), the first half's own speech (``first_speech_of``, prepared
    once for every drive) as the audio, the real first half as the truth."""
    presenter = split.second_half
    if footage_speech:
        presenter = folder / "second_half_speaking.mp4"
        if not presenter.exists():  # the second half's picture as cut, its own speech (split.speech) beside it
            run_ffmpeg([*base_argv(ffmpeg_exe()), "-y", "-i", file_url(split.second_half), "-i", file_url(split.speech),
                        "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-f", "mp4",
                        str(presenter)], subject=split.second_half)
    result = generate(first_speech, presenter, folder / f"{drive}-reversed.mp4", settings_for(drive, preset))
    return compare_articulation(result.output, split.first_half, speech=first_speech.path, max_lag=max_lag)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared(),
                        help="the shared/ folder (default $HEYGEM_SHARED or ../shared)")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), help="clips under shared/media")
    parser.add_argument("--drives", nargs="+", default=["loudness", "phones"], choices=DRIVES)
    parser.add_argument("--max-lag", type=int, default=2)
    parser.add_argument("--footage-speech", action="store_true",
                        help="the first half keeps its own speech (as footage does; the footage drive needs it)")
    parser.add_argument("--max-side", type=int, default=960, help="longer side the inputs are scaled down to")
    parser.add_argument("--preset", default="veryfast", help="x264 preset of the cuts and the results")
    parser.add_argument("--cuts", nargs="+", type=float, default=[0.5],
                        help="where to cut each clip, as shares of its frames (default: the middle)")
    parser.add_argument("--both-ways", action="store_true",
                        help="also run each clip the other way round (second half as the presenter)")
    parser.add_argument("--keep", type=Path, help="keep the halves and the generated videos in this folder")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/articulation.json")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    media = args.shared / "media"
    missing = [clip for clip in args.clips if not (media / clip).is_file()]
    if missing:
        parser.error(f"not found under {media}: {', '.join(missing)} (set --shared or HEYGEM_SHARED)")

    import torch

    facts = machine_facts(torch.device("cpu"))
    started = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="heygem-articulation-") as tmp:
        root = args.keep or Path(tmp)
        for clip, cut in ((clip, cut) for clip in args.clips for cut in args.cuts):
            folder = root / (clip.replace("/", "_").rsplit(".", 1)[0] + ("" if cut == 0.5 else f"_at_{cut}"))
            t0 = time.perf_counter()
            split = split_clip(media / clip, folder, max_side=args.max_side, preset=args.preset, at=cut,
                               footage_speech=args.footage_speech)
            split_s = time.perf_counter() - t0
            # Each half's speech prepared once: its sounds are recognised once for every drive and its own timing.
            speech = prepare_audio(split.speech)
            first_speech = prepare_audio(first_speech_of(split, media / clip, folder)) if args.both_ways else None
            timing: dict[bool, dict] = {}  # each real half's own timing (``own_sync``), measured once for every drive
            for drive in args.drives:
                t0 = time.perf_counter()
                report = articulation_on_split(split, settings_for(drive, args.preset), folder / f"{drive}.mp4",
                                               speech=speech, max_lag=args.max_lag)
                if False not in timing:
                    timing[False] = own_sync(report, speech)
                row = {"clip": clip, "cut": cut, "drive": drive, "size": list(split.size), "split_s": round(split_s, 2),
                       "run_s": round(time.perf_counter() - t0, 2), "report": report.to_dict(),
                       "own_sync": timing[False]}
                rows.append(row)
                print(f"{clip} {drive}: {report.summary()} ({row['run_s']:.1f} s; cut {split_s:.1f} s)",
                      file=sys.stderr, flush=True)
                if args.both_ways:
                    t0 = time.perf_counter()
                    report = reversed_run(split, first_speech, drive, args.preset, folder, args.max_lag,
                                          args.footage_speech)
                    if True not in timing:
                        timing[True] = own_sync(report, first_speech)
                    rows.append({"clip": clip, "cut": cut, "drive": drive, "reversed": True, "size": list(split.size),
                                 "run_s": round(time.perf_counter() - t0, 2), "report": report.to_dict(),
                                 "own_sync": timing[True]})
                    print(f"{clip} {drive} reversed: {report.summary()}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - started
    replicates = [add_intervals(row) for row in rows]
    means = drive_means(rows, replicates)
    gains = drive_gains(rows, replicates)
    print(table(rows, means))
    if gains:
        print("\n" + "\n".join(gains_lines(gains)))
    print(f"\n{len(rows)} runs in {wall:.0f} s; inputs at most {args.max_side} px on the longer side; "
          f"commit {facts.get('commit')}; {facts['date']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": facts, "wall_s": round(wall, 1), "max_lag": args.max_lag, "max_side": args.max_side,
        "preset": args.preset, "means": means, "gains": gains, "rows": rows,
    }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
