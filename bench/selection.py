"""Choosing footage frames by the sounds (heygem.selection), measured before any rendering.

Split-time protocol (shared/research/articulation.md), on the footage's REAL mouths: a clip with its own speech
is cut in two on a frame boundary; the footage is the first half (its frames' face-mesh mouths and its own
speech), the speech is the second half's. The chosen footage frames' real mouths (opening, width over the eye
distance) are compared with the real second half's mouths: Pearson r at lag 0. Beside it: the ridge
regression of the same features to the mouth (fitted on the first half), the whole-speech choice and the
lookahead choice (0.3 s). The mesh is run once over each whole clip (cached under bench/out/selection/) and the
halves are its frame ranges, not re-encoded cuts; each half's speech is the clip's 16 kHz audio over the
half's time span, and its phones are recognised on that half alone.

Each choice is given how far the speech's voice is from the footage's (``voice_distance``: the split-time halves
are one voice, the other speeches other voices), as the engine does.

Also: ``neighbours`` (how well nearest neighbours in feature space share mouths, per feature variant), another
voice (every clip's footage, whole, with every other clip's speech: no true mouth, so the loudness proxy and
m/b/p closures) and Mandarin speech over each footage (loudness proxy).

    nice -n 10 .venv/bin/python bench/selection.py                 # all parts, markdown to stdout
    nice -n 10 .venv/bin/python bench/selection.py --parts split   # one part
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from fractions import Fraction
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import numpy as np  # noqa: E402

from heygem.bench import default_shared  # noqa: E402
from heygem.eval import sync_envelope  # noqa: E402
from heygem.media.audio import load_audio  # noqa: E402
from heygem.speech.phones import Phone, mouth_shapes, recognise_phones  # noqa: E402
from heygem.selection import (SelectionOptions, build_index, choose_frames, drawn_mouths,  # noqa: E402
                              mouth_measures, predict_mouth, run_lengths)
from heygem.speech.frames import (FeatureOptions, frame_loudness, speech_features, voice_distance,  # noqa: E402
                                  voice_print)
from selection_cache import clip_points, clip_speech  # noqa: E402

log = logging.getLogger("bench.selection")

SHORT = ("videoretalking/1.mp4", "videoretalking/2.mp4", "sadtalker/WDA_KatieHill_000.mp4",
         "latentsync/demo1_video.mp4")
LONG = ("long/french.mp4", "long/Chantel-Home-Intro.mp4")
MANDARIN = ("sadtalker/bus_chinese.wav", "speechrecognition/chinese.flac")
# Today's built-in engine (phones drive), rendered, split-time lag 0, opening and width: bench/RESULTS.md
# "Rounding anticipated as soon as other lip shapes", `bench/articulation.py --both-ways` (halves re-encoded at
# most 960 px). Keyed by (clip, reversed). The long clips: only the mean of both, forwards (issue 21).
TODAY = {("videoretalking/1.mp4", False): (0.78, 0.56), ("videoretalking/1.mp4", True): (0.71, -0.21),
         ("videoretalking/2.mp4", False): (0.62, 0.23), ("videoretalking/2.mp4", True): (0.18, -0.20),
         ("sadtalker/WDA_KatieHill_000.mp4", False): (0.14, -0.10),
         ("sadtalker/WDA_KatieHill_000.mp4", True): (-0.16, -0.00),
         ("latentsync/demo1_video.mp4", False): (0.13, 0.19), ("latentsync/demo1_video.mp4", True): (0.11, 0.27)}
TODAY_LONG_MEAN = (0.18, 0.08)
LOOKAHEAD = 0.3
RATE = 16000

VARIANTS: dict[str, FeatureOptions] = {
    "phones": FeatureOptions(groups=("phones",)),
    "loudness": FeatureOptions(groups=("loudness",)),
    "spectral": FeatureOptions(groups=("spectral",)),
    "phones+loudness": FeatureOptions(groups=("phones", "loudness")),
    "all, no context": FeatureOptions(offsets_ms=(0.0,)),
    "all +-100 ms": FeatureOptions(),
    "all +-200 ms": FeatureOptions(offsets_ms=(-200.0, -100.0, -50.0, 0.0, 50.0, 100.0, 200.0)),
}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


class Clip:
    """A clip's mouths, speech and rate; halves by frame."""

    def __init__(self, media: Path, name: str) -> None:
        self.name = name
        points, self.fps = clip_points(media / name)
        self.mouth = mouth_measures(points)
        self.samples = clip_speech(media / name)
        self.n = len(self.mouth)
        self.split = self.n // 2

    def audio(self, first: int, last: int) -> np.ndarray:
        a, b = (round(Fraction(f) / self.fps * RATE) for f in (first, last))
        out = self.samples[a:b]
        return np.pad(out, (0, max(0, (b - a) - len(out))))


def half_inputs(clip: Clip, options: FeatureOptions, phones_cache: dict) -> dict:
    """Features, loudness and phones of the footage half and of the speech half."""
    result = {}
    for part, (first, last) in (("footage", (0, clip.split)), ("speech", (clip.split, clip.n))):
        audio = clip.audio(first, last)
        key = (clip.name, "half", first, last)
        if key not in phones_cache:
            phones_cache[key] = recognise_phones(audio)
        result[part] = (speech_features(audio, clip.fps, last - first, phones=phones_cache[key], options=options),
                        frame_loudness(audio, clip.fps, last - first), audio, phones_cache[key])
    return result


def neighbours(clips: list[Clip], phones_cache: dict, k: int = 7) -> list[dict]:
    """For each second-half frame, the k nearest first-half frames by (standardised, group-weighted)
    features: r of their mean mouth (opening, width) with the true one; and the ridge fit for reference."""
    rows = []
    for name, options in VARIANTS.items():
        for clip in clips:
            inputs = half_inputs(clip, options, phones_cache)
            (ff, fl, _, _), (sf, _, _, _) = inputs["footage"], inputs["speech"]
            foot_mouth = clip.mouth[:clip.split]
            index = build_index(ff, foot_mouth, fl, clip.fps, feature_options=options)
            x = index.features[index.face].astype(np.float64)
            y = foot_mouth[index.face]
            s = index.standardise(sf).astype(np.float64)
            d = (s ** 2).sum(1)[:, None] + (x ** 2).sum(1)[None, :] - 2 * s @ x.T
            near = np.argsort(d, axis=1, kind="stable")[:, :k]
            guess = y[near].mean(1)
            truth = clip.mouth[clip.split:]
            ridge = predict_mouth(index, sf)
            rows.append({"variant": name, "clip": clip.name,
                         "knn_opening": pearson(guess[:, 0], truth[:, 0]),
                         "knn_width": pearson(guess[:, 1], truth[:, 1]),
                         "ridge_opening": pearson(ridge[:, 0], truth[:, 0]),
                         "ridge_width": pearson(ridge[:, 1], truth[:, 1]),
                         "ridge_alpha": index.ridge.alpha})
            log.info("neighbours %s %s: %s", name, clip.name, rows[-1])
    return rows


CONFIGS: dict[str, SelectionOptions] = {
    "features": SelectionOptions(target="features", loudness_weight=0.0, closure_weight=0.0),
    "ridge target": SelectionOptions(target="ridge", loudness_weight=0.0, closure_weight=0.0),
    "both": SelectionOptions(target="both", loudness_weight=0.0, closure_weight=0.0),
    "both + loudness prior": SelectionOptions(loudness_weight=1.0, closure_weight=0.0),
    # The default: no loudness prior for the footage's own voice, one rising to 10 for another; closure prior.
    "default (both + loudness + closure priors)": SelectionOptions(),
    # The second round's default: the loudness prior at 1 for the footage's own voice too, closures 3 -> 30.
    "default, own voice's loudness prior 1": SelectionOptions(loudness_weight=1.0, other_voice_closure_weight=30.0),
    # The first round's default: the ridge alone predicts the mouth, one loudness weight whatever the voice.
    "first round's default": SelectionOptions(neighbour_share=0.0, loudness_weight=1.0, other_voice_loudness_weight=1.0,
                                              other_voice_closure_weight=3.0),
}


DEFAULT = "default (both + loudness + closure priors)"


def halves(clip: Clip, reverse: bool) -> tuple[tuple[int, int], tuple[int, int]]:
    """(footage frames, speech frames): first half then second, or the other way round."""
    first, second = (0, clip.split), (clip.split, clip.n)
    return (second, first) if reverse else (first, second)


def split_time(clips: list[Clip], phones_cache: dict, configs: list[str], both_ways: bool) -> list[dict]:
    """Split-time rows: per clip (and direction), the ridge fit and each configuration, whole and lookahead."""
    rows = []
    options = FeatureOptions()
    for clip in clips:
        for reverse in ((False, True) if both_ways else (False,)):
            (fa, fb), (sa, sb) = halves(clip, reverse)
            parts = []
            for first, last in ((fa, fb), (sa, sb)):
                audio = clip.audio(first, last)
                key = (clip.name, first, last)
                if key not in phones_cache:
                    phones_cache[key] = recognise_phones(audio)
                parts.append((speech_features(audio, clip.fps, last - first, phones=phones_cache[key],
                                              options=options), frame_loudness(audio, clip.fps, last - first)))
            (ff, fl), (sf, sl) = parts
            # The speech's lip shapes (the engine hands them to the choice, heygem.engines.builtin).
            lip_shape = mouth_shapes(phones_cache[key], audio, clip.fps, sb - sa).spread
            voice = voice_distance(voice_print(clip.audio(fa, fb)), voice_print(clip.audio(sa, sb)))
            truth = clip.mouth[sa:sb]
            row: dict = {"clip": clip.name, "reversed": reverse, "footage_frames": fb - fa, "speech_frames": sb - sa,
                         "fps": str(clip.fps)}
            for name in configs:
                sel = CONFIGS[name]
                index = build_index(ff, clip.mouth[fa:fb], fl, clip.fps, options=sel)
                if "ridge" not in row:
                    ridge = predict_mouth(index, sf)
                    row["ridge"] = (pearson(ridge[:, 0], truth[:, 0]), pearson(ridge[:, 1], truth[:, 1]))
                for label, lookahead in (("whole", None), ("lookahead", LOOKAHEAD)):
                    t0 = time.perf_counter()
                    frames = choose_frames(index, sf, sl, lookahead=lookahead, options=sel, voice_distance=voice,
                                           lip_shape=lip_shape)
                    seconds = time.perf_counter() - t0
                    chosen = index.mouth[frames]
                    row[f"{name} {label}"] = (pearson(chosen[:, 0], truth[:, 0]), pearson(chosen[:, 1], truth[:, 1]))
                    if name == DEFAULT and lookahead is None:  # the mouths as the engine draws them
                        drawn = drawn_mouths(index, frames, sf, sl, voice_distance=voice, lip_shape=lip_shape)
                        drawn = np.where(np.isfinite(drawn), drawn, chosen[:, :2])  # NaN: drawn as filmed
                        row["drawn"] = (pearson(drawn[:, 0], truth[:, 0]), pearson(drawn[:, 1], truth[:, 1]))
                    row[f"{name} {label} run"] = float(run_lengths(frames).mean())
                    row[f"{name} {label} s"] = seconds
            rows.append(row)
            log.info("split %s: %s", clip.name, row)
    return rows


def closure_share(phones: list[Phone], opening: np.ndarray, fps: Fraction, closed: float) -> tuple[float, int]:
    """Share of the speech's m/b/p phones during which (from one frame before) some frame's opening is at
    most ``closed``; and how many there were."""
    hits = total = 0
    f = float(fps)
    for p in phones:
        if p.label not in ("M", "B", "P"):
            continue
        first = max(0, int(np.floor(p.start * f)) - 1)
        last = min(len(opening), int(np.ceil(p.end * f)))
        if last <= first:
            continue
        total += 1
        hits += bool(np.nanmin(opening[first:last]) <= closed) if np.isfinite(opening[first:last]).any() else 0
    return (hits / total if total else float("nan")), total


def closed_level(opening: np.ndarray) -> float:
    """A person's 'closed' opening: their 10th percentile plus a tenth of their range up to the 95th."""
    o = opening[np.isfinite(opening)]
    low, high = np.percentile(o, 10), np.percentile(o, 95)
    return float(low + 0.1 * (high - low))


def other_speech(clips: list[Clip], speeches: list[tuple[str, np.ndarray]], phones_cache: dict,
                 configs: tuple[str, ...] = ("both", "both + loudness prior",
                                             "default (both + loudness + closure priors)",
                                             "default, own voice's loudness prior 1",
                                             "first round's default")) -> list[dict]:
    """Each clip's whole footage with each speech: loudness proxy of the chosen mouths and of today's phone
    drive (heygem.phones.mouth_shapes, not rendered); m/b/p closures."""
    rows = []
    options = FeatureOptions()
    for clip in clips:
        key = (clip.name, "whole")
        if key not in phones_cache:
            phones_cache[key] = recognise_phones(clip.audio(0, clip.n))
        audio = clip.audio(0, clip.n)
        own = (speech_features(audio, clip.fps, clip.n, phones=phones_cache[key], options=options),
               frame_loudness(audio, clip.fps, clip.n))
        own_voice = voice_print(audio)
        closed = closed_level(clip.mouth[:, 0])
        own_share, _ = closure_share(phones_cache[key], clip.mouth[:, 0], clip.fps, closed)
        for speech_name, samples in speeches:
            if speech_name == clip.name:
                continue
            skey = (speech_name, "whole speech", len(samples))
            if skey not in phones_cache:
                phones_cache[skey] = recognise_phones(samples)
            phones = phones_cache[skey]
            n = max(1, round(len(samples) / RATE * float(clip.fps)))
            sf = speech_features(samples, clip.fps, n, phones=phones, options=options)
            sl = frame_loudness(samples, clip.fps, n)
            envelope = sync_envelope(samples, clip.fps, n)[1]
            shapes = mouth_shapes(phones, samples, clip.fps, n)
            today = shapes.opening.astype(np.float64)
            row = {"footage": clip.name, "speech": speech_name, "seconds": len(samples) / RATE,
                   "today_drive_proxy": pearson(today[:len(envelope)], envelope), "mbp": 0,
                   "own_closures": own_share}
            for name in configs:
                index = build_index(*own[:1], clip.mouth, own[1], clip.fps, options=CONFIGS[name])
                frames = choose_frames(index, sf, sl, options=CONFIGS[name], lip_shape=shapes.spread,
                                       voice_distance=voice_distance(own_voice, voice_print(samples)))
                opening = index.mouth[frames, 0]
                share, row["mbp"] = closure_share(phones, opening, clip.fps, closed)
                row[name] = {"proxy": pearson(opening[:len(envelope)], envelope), "closures": share,
                             "run": float(run_lengths(frames).mean())}
            rows.append(row)
            log.info("other %s", rows[-1])
    return rows


def speed(clips: list[Clip], phones_cache: dict) -> dict:
    """choose_frames on the longest clip's whole footage against 60 s of speech (the other long clip's, cut or
    repeated to 60 s at the footage's rate)."""
    foot = max(clips, key=lambda c: c.n)
    other = [c for c in clips if c is not foot and c.name in LONG] or [foot]
    samples = np.resize(other[0].samples, 60 * RATE).astype(np.float32)
    options = FeatureOptions()
    n = round(60 * float(foot.fps))
    t0 = time.perf_counter()
    phones = recognise_phones(samples)
    phones_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sf = speech_features(samples, foot.fps, n, phones=phones, options=options)
    sl = frame_loudness(samples, foot.fps, n)
    features_s = time.perf_counter() - t0
    audio = foot.audio(0, foot.n)
    key = (foot.name, "whole")
    if key not in phones_cache:
        phones_cache[key] = recognise_phones(audio)
    t0 = time.perf_counter()
    index = build_index(speech_features(audio, foot.fps, foot.n, phones=phones_cache[key], options=options),
                        foot.mouth, frame_loudness(audio, foot.fps, foot.n), foot.fps)
    index_s = time.perf_counter() - t0
    result = {"footage": foot.name, "footage_frames": foot.n, "speech_frames": n, "phones_s": phones_s,
              "features_s": features_s, "index_s": index_s}
    for label, lookahead in (("whole", None), ("lookahead", LOOKAHEAD)):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            choose_frames(index, sf, sl, lookahead=lookahead)
            times.append(time.perf_counter() - t0)
        result[f"choose_{label}_s"] = min(times)
    return result


def _f(x: float | None) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.2f}"


def _pair(x: tuple[float, float]) -> str:
    return f"{_f(x[0])} / {_f(x[1])}"


def _mean_pair(rows: list[dict], key: str) -> tuple[float, float]:
    return tuple(float(np.nanmean([row[key][i] for row in rows])) for i in (0, 1))  # type: ignore[return-value]


def report(result: dict, today_rendered: dict) -> str:
    """The markdown tables of a run."""
    out = []
    if "neighbours" in result:
        out += ["**Neighbours** (k = 7 nearest first-half frames per second-half frame; r of their mean mouth with "
                "the true one, opening / width; ridge fit of the same features for reference)", "",
                "| features | " + " | ".join(n.split("/")[-1] for n in (*SHORT, *LONG)) +
                " | mean short | mean long | ridge, mean short | ridge, mean long |",
                "| --- " * (len(SHORT) + len(LONG) + 5) + "|"]
        for variant in VARIANTS:
            rows = {r["clip"]: r for r in result["neighbours"] if r["variant"] == variant}
            knn = [(rows[c]["knn_opening"], rows[c]["knn_width"]) for c in (*SHORT, *LONG)]
            ridge = [(rows[c]["ridge_opening"], rows[c]["ridge_width"]) for c in (*SHORT, *LONG)]
            ms, ml = np.mean(knn[:4], 0), np.mean(knn[4:], 0)
            rs, rl = np.mean(ridge[:4], 0), np.mean(ridge[4:], 0)
            out.append(f"| {variant} | " + " | ".join(_pair(x) for x in knn) +
                       f" | {_pair(ms)} | {_pair(ml)} | {_pair(rs)} | {_pair(rl)} |")
        out.append("")
    if "split" in result:
        configs = [k[:-len(" whole")] for k in result["split"][0] if k.endswith(" whole")]
        drawn = all("drawn" in r for r in result["split"])
        out += ["**Split-time, before rendering** (chosen footage frames' real mouths against the real second "
                "half's; Pearson r at lag 0, opening / width; lookahead 0.3 s; drawn: the default's whole choice as "
                "the engine draws it, towards the fit with the own voice)", "",
                "| clip | today's engine (rendered) | ridge | " + ("default, drawn | " if drawn else "") +
                " | ".join(f"{c}, whole | {c}, lookahead" for c in configs) + " |",
                "| --- " * (3 + drawn + 2 * len(configs)) + "|"]
        forward = [r for r in result["split"] if not r["reversed"]]
        for row in result["split"]:
            today = TODAY.get((row["clip"], row["reversed"]))
            name = row["clip"] + (" (reversed)" if row["reversed"] else "")
            out.append(f"| {name} | {_pair(today) if today else 'n/a'} | {_pair(row['ridge'])} | " +
                       (f"{_pair(row['drawn'])} | " if drawn else "") + " | ".join(f"{_pair(row[c + ' whole'])} | {_pair(row[c + ' lookahead'])}" for c in configs)
                       + " |")
        for label, rows in (("short", [r for r in forward if r["clip"] in SHORT]),
                            ("long", [r for r in forward if r["clip"] in LONG]),
                            ("short, both ways", [r for r in result["split"] if r["clip"] in SHORT]),
                            ("long, both ways", [r for r in result["split"] if r["clip"] in LONG])):
            if not rows or ("both ways" in label and all(not r["reversed"] for r in rows)):
                continue
            today = {"short": "0.42 / 0.22", "long": "0.18 / 0.08", "short, both ways": "0.31 / 0.09"}.get(label, "")
            out.append(f"| **mean {label} ({len(rows)})** | {today} | {_pair(_mean_pair(rows, 'ridge'))} | " +
                       (f"**{_pair(_mean_pair(rows, 'drawn'))}** | " if drawn else "") + " | ".join(f"**{_pair(_mean_pair(rows, c + ' whole'))}** | "
                                  f"{_pair(_mean_pair(rows, c + ' lookahead'))}" for c in configs) + " |")
        runs = {c: float(np.mean([r[c + " whole run"] for r in result["split"]])) for c in configs}
        out += ["", "Mean run of consecutive footage frames (whole speech): " +
                ", ".join(f"{c} {v:.1f}" for c, v in runs.items()), ""]
    for part, title in (("other", "Another voice"), ("mandarin", "Mandarin speech")):
        if part not in result:
            continue
        rows = result[part]
        configs = [k for k in rows[0] if isinstance(rows[0][k], dict)]
        out += [f"**{title}** (each footage whole, with each speech: loudness proxy r at lag 0 of the chosen "
                "opening; today's phone drive unrendered (`mouth_shapes` opening) and today's engine rendered "
                "(bench/selection_today.py, phones / loudness drive); m/b/p: share of the speech's m/b/p phones "
                "during which a chosen mouth is closed (own: the same for the real mouth with its own speech))", "",
                "| footage | speech | s | " + " | ".join(f"{c}: proxy" for c in configs) +
                " | today's drive, unrendered | today's engine rendered, phones / loudness | " +
                " | ".join(f"{c}: m/b/p closed" for c in configs) + " | own m/b/p closed |",
                "| --- " * (6 + 2 * len(configs)) + "|"]
        for row in rows:
            rendered = [today_rendered.get(f"{row['footage']} | {row['speech']} | {d}", {}).get("proxy")
                        for d in ("phones", "loudness")]
            out.append(f"| {row['footage']} | {row['speech']} | {row['seconds']:.0f} | " +
                       " | ".join(_f(row[c]["proxy"]) for c in configs) + f" | {_f(row['today_drive_proxy'])} | "
                       f"{_f(rendered[0])} / {_f(rendered[1])} | " +
                       " | ".join(f"{_f(row[c]['closures'])} of {row['mbp']}" for c in configs) +
                       f" | {_f(row['own_closures'])} |")
        pooled = {c: (sum(r[c]["closures"] * r["mbp"] for r in rows if r["mbp"]) / max(1, sum(r["mbp"] for r in rows)))
                  for c in configs}
        both = [r for r in rows if all(f"{r['footage']} | {r['speech']} | {d}" in today_rendered
                                       for d in ("phones", "loudness"))]
        means = [np.mean([today_rendered[f"{r['footage']} | {r['speech']} | {d}"]["proxy"] for r in both])
                 for d in ("phones", "loudness")] if both else []
        rendered_mean = f"{means[0]:.2f} / {means[1]:.2f} ({len(both)} pairs)" if both else "n/a"
        if both:
            rendered_mean += "; selection on those pairs: " + ", ".join(
                f"{np.nanmean([r[c]['proxy'] for r in both]):.2f}" for c in configs)
        out.append(f"| **mean ({len(rows)})** | | | " +
                   " | ".join(f"**{np.nanmean([r[c]['proxy'] for r in rows]):.2f}**" for c in configs) +
                   f" | {np.nanmean([r['today_drive_proxy'] for r in rows]):.2f} | {rendered_mean} | " +
                   " | ".join(f"{pooled[c]:.2f} pooled" for c in configs) + " | |")
        out.append("")
    if "speed" in result:
        sp = result["speed"]
        out += [f"**Speed** (footage {sp['footage']}, {sp['footage_frames']} frames; 60 s of speech, "
                f"{sp['speech_frames']} frames; best of 3): choose_frames whole speech {sp['choose_whole_s']:.2f} s, "
                f"lookahead 0.3 s {sp['choose_lookahead_s']:.2f} s; speech features {sp['features_s']:.2f} s, "
                f"phones {sp['phones_s']:.1f} s, footage index {sp['index_s']:.2f} s (features given).", ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=default_shared())
    parser.add_argument("--parts", nargs="+", default=["neighbours", "split", "other", "mandarin", "speed"])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--one-way", action="store_true", help="split-time only forwards (footage = first half)")
    parser.add_argument("--out", type=Path, default=REPO / "bench/out/selection.json")
    parser.add_argument("--report", action="store_true", help="only print the tables of the last run (--out)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.report:
        today_path = args.out.parent / "selection_today.json"
        today = json.loads(today_path.read_text()) if today_path.is_file() else {}
        print(report(json.loads(args.out.read_text()), today))
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    media = args.shared / "media"
    clips = [Clip(media, name) for name in (*SHORT, *LONG)]
    phones_cache: dict = {}
    result: dict = {"command": " ".join(["nice -n 10 .venv/bin/python", *sys.argv]),
                    "load_before": os.getloadavg()}
    started = time.perf_counter()
    if "neighbours" in args.parts:
        result["neighbours"] = neighbours(clips, phones_cache)
    if "split" in args.parts:
        result["split"] = split_time(clips, phones_cache, args.configs, not args.one_way)
    if "other" in args.parts:
        speeches = [(c.name, c.samples[:round(c.n / c.fps * RATE)]) for c in clips]
        result["other"] = other_speech(clips, speeches, phones_cache)
    if "mandarin" in args.parts:
        speeches = [(name, np.asarray(load_audio(media / name, RATE), np.float32)) for name in MANDARIN]
        result["mandarin"] = other_speech(clips, speeches, phones_cache)
    if "speed" in args.parts:
        result["speed"] = speed(clips, phones_cache)
    result["wall_s"] = time.perf_counter() - started
    result["load_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str))
    today_path = args.out.parent / "selection_today.json"
    today_rendered = json.loads(today_path.read_text()) if today_path.is_file() else {}
    text = report(result, today_rendered)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
