"""Mouth shapes from the sounds of a speech: phones recognised by PocketSphinx, mapped to visemes, blended.

``recognise_phones`` runs PocketSphinx in all-phone mode (its wheel ships the US-English acoustic model and a
phone language model; nothing is downloaded). The English phone set is used for any language: it still marks
lip closures, vowel openness and rounding well enough to drive a mouth (research/articulation.md).

``mouth_shapes`` turns the phones into per-video-frame targets: an opening (0 lips together .. 1 wide open), a
lip shape (-1 rounded .. +1 spread) and the dominant viseme class. Neighbouring phones are blended with
dominance functions in the manner of Cohen and Massaro (1993): each phone pulls the mouth towards its target
with a strength that is constant over the phone and decays exponentially before it (anticipation) and after
it (carry-over). Lips (m b p, f v) pull hard and locally and are then enforced: at least one fully closed (or
lip-under-teeth) frame per such phone, starting a little ahead of its sound. Rounding pulls weakly on the
opening but strongly on the lip shape, so it spreads into neighbouring consonants. The speech's
loudness (``heygem.speech.loudness.mouth_drive``) scales the opening, so loud speech opens wider; pauses close
the mouth to rest.

``frame_visemes`` is the plain per-frame class of the phone being spoken, without blending, for labelling a
person's own footage with their own speech.

    phones = recognise_phones(samples)
    shapes = mouth_shapes(phones, samples, fps, n_frames)
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from heygem.children import Child
from heygem.speech.loudness import SILENCE_DB, mouth_drive, voice_envelope

__all__ = ["VISEMES", "BackgroundPhones", "MouthShapes", "Phone", "frame_visemes", "label_of", "mouth_shapes",
           "new_decoder", "recognise_phones", "unload_decoder"]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000  # the acoustic model's rate

# ---- the recogniser -----------------------------------------------------------------------------------------

# Language weight, beams: as in PocketSphinx's all-phone examples. Against a forced alignment of four English
# clips (their transcripts, PocketSphinx's word decoder), lw 1..4, wip, pip and wider beams moved the viseme
# agreement per 10 ms by under 1 point (about 79%; 80% of the alignment's m/b/p found); context-dependent
# phones (allphone_ci off) gained 2.5 points at 40x the time, so they stay off. Beams of 1e-15 (not 1e-20) give
# the very same phones on every shared speech and 60 s of radio speech, 8% sooner.
DECODER_OPTIONS: dict[str, float] = {"lw": 2.0, "beam": 1e-15, "pbeam": 1e-15}
FRAME_RATE = 100  # decoder frames per second
# A decoder frame k spans samples [160 k, 160 k + 410): its centre is 12.8 ms after k / 100, so a boundary
# between frames k-1 and k lies 7.8 ms after k / 100.
FRAME_OFFSET = 0.0078
# Long speech is decoded in pieces cut at the quietest moment near every CHUNK_SECONDS: one utterance's
# search memory grows with its length (about 6 MB a minute), and each piece gets its own level normalisation.
CHUNK_SECONDS = 30.0
CUT_SEARCH_SECONDS = 5.0  # how far either side of the ideal cut to look for a pause
CUT_WINDOW_SECONDS = 0.1  # the quiet stretch a cut is centred on

SILENT_PEAK = 16  # int16 steps (-66 dBFS): a piece whose loudest sample is below this is silence, not decoded

_decoder_lock = threading.Lock()
_decoder = None


@dataclass(frozen=True)
class Phone:
    """One recognised sound: ARPAbet label without stress digits ("SIL" for silence and noise), in seconds."""

    label: str
    start: float
    end: float


def new_decoder():
    """A new all-phone decoder (about 20 MB): one per process for jobs (``recognise_phones``), one per live
    speech stream (heygem.speech.stream), which keeps an utterance open across calls."""
    from pocketsphinx import Decoder, get_model_path

    models = get_model_path()
    started = time.perf_counter()
    decoder = Decoder(hmm=os.path.join(models, "en-us", "en-us"),
                      allphone=os.path.join(models, "en-us", "en-us-phone.lm.bin"),
                      loglevel="FATAL", **DECODER_OPTIONS)
    log.debug("phone decoder loaded in %.2f s", time.perf_counter() - started)
    return decoder


def _get_decoder():
    """The all-phone decoder, made on first use and kept for the process (caller holds ``_decoder_lock``)."""
    global _decoder
    if _decoder is None:
        _decoder = new_decoder()
    return _decoder


def unload_decoder() -> None:
    """Free the decoder (about 20 MB); the next ``recognise_phones`` loads it again."""
    global _decoder
    with _decoder_lock:
        _decoder = None


def label_of(word: str) -> str:
    """Decoder output -> table label: stress digits dropped; fillers (+NSN+, +SPN+, <sil>, ...) are silence."""
    label = word.strip().upper().rstrip("012")
    if label in TABLE:
        return label
    if label not in ("SIL", "<SIL>", "<S>", "</S>") and not label.startswith("+"):
        log.debug("unknown phone %r taken as silence", word)
    return "SIL"


def _cut_points(pcm: np.ndarray, sample_rate: int) -> list[int]:
    """Sample indices where long speech is cut: the quietest CUT_WINDOW near each multiple of CHUNK_SECONDS."""
    n = len(pcm)
    chunk = int(CHUNK_SECONDS * sample_rate)
    if n <= chunk + int(CUT_SEARCH_SECONDS * sample_rate):
        return []
    hop = sample_rate // FRAME_RATE
    frames = n // hop
    # Energy per 10 ms, a minute at a time (no whole-speech float copy).
    energy = np.empty(frames)
    block = 60 * FRAME_RATE
    for first in range(0, frames, block):
        last = min(frames, first + block)
        x = pcm[first * hop:last * hop].astype(np.float32).reshape(last - first, hop)
        energy[first:last] = np.einsum("ij,ij->i", x, x) / hop
    width = max(1, int(CUT_WINDOW_SECONDS * FRAME_RATE))
    # Mean energy of the window starting at each frame (cumulative sums: linear in the speech's length).
    sums = np.concatenate(([0.0], np.cumsum(energy)))
    window = (sums[width:] - sums[:-width]) / width
    cuts = []
    target = chunk
    while target < n - int(CUT_SEARCH_SECONDS * sample_rate):
        lo = max(0, (target - int(CUT_SEARCH_SECONDS * sample_rate)) // hop)
        hi = min(len(window), (target + int(CUT_SEARCH_SECONDS * sample_rate)) // hop)
        best = lo + int(np.argmin(window[lo:hi]))
        cut = (best + width // 2) * hop
        cuts.append(cut)
        target = cut + chunk
    return cuts


def _decode(decoder, pcm: np.ndarray, offset: float, sample_rate: int) -> list[Phone]:
    """Phones of one piece of int16 speech starting at ``offset`` seconds, covering the whole piece."""
    if len(pcm) == 0 or int(np.abs(pcm.astype(np.int32)).max()) <= SILENT_PEAK:
        # Nothing to hear. (All-digital-silence would decode as one long S: log of zero energy everywhere.)
        return [Phone("SIL", offset, offset + len(pcm) / sample_rate)]
    # Fresh feature extraction: its noise estimate otherwise carries over from the last speech, and the same
    # speech would give different phones depending on what was decoded before.
    decoder.reinit_feat()
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), full_utt=True)
    decoder.end_utt()
    phones = []
    for segment in decoder.seg():
        start = offset + segment.start_frame / FRAME_RATE + FRAME_OFFSET
        end = offset + (segment.end_frame + 1) / FRAME_RATE + FRAME_OFFSET  # end_frame is inclusive
        phones.append(Phone(label_of(segment.word), start, end))
    if phones:  # the decoder's frames stop short of the piece's edges: stretch the outer phones to them
        phones[0] = Phone(phones[0].label, offset, phones[0].end)
        phones[-1] = Phone(phones[-1].label, phones[-1].start, offset + len(pcm) / sample_rate)
    return phones


def _tidy(phones: list[Phone], duration: float) -> list[Phone]:
    """Clamped to the speech, empty phones dropped, runs of silence merged into one."""
    tidy: list[Phone] = []
    for phone in phones:
        start, end = max(0.0, phone.start), min(duration, phone.end)
        if end <= start:
            continue
        if tidy and tidy[-1].label == phone.label == "SIL":
            tidy[-1] = Phone("SIL", tidy[-1].start, end)
        else:
            tidy.append(Phone(phone.label, start, end))
    return tidy


def recognise_phones(samples: np.ndarray, sample_rate: int = SAMPLE_RATE,
                     tick: Callable[[float], None] | None = None) -> list[Phone]:
    """The phones of a 16 kHz mono speech, in time order (PocketSphinx all-phone mode).

    The decoder is loaded once per process; calls from several threads take turns. Speech longer than about
    35 s is decoded in pieces cut at pauses. About 2 s of one core per minute of speech. ``tick(share done)``
    is called after each piece (a job's progress, through which a cancel stops the decoding).
    """
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"phones are recognised in 16 kHz speech, got {sample_rate} Hz; "
                         f"load it with load_audio(path, 16000)")
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"expected a mono waveform (1-D), got shape {samples.shape}")
    duration = len(samples) / sample_rate
    if not _decodable(len(samples), sample_rate):
        return [Phone("SIL", 0.0, duration)] if len(samples) else []
    pcm = _pcm(samples)
    bounds = [0, *_cut_points(pcm, sample_rate), len(pcm)]
    started = time.perf_counter()
    phones = _tidy(_decode_pieces(pcm, bounds, sample_rate, tick), duration)
    log.debug("%d phones in %.1f s of speech (%d pieces), decoded in %.2f s", len(phones), duration,
              len(bounds) - 1, time.perf_counter() - started)
    return phones


def _decodable(count: int, sample_rate: int) -> bool:
    """Whether ``count`` samples are enough for the decoder's first frames."""
    return count >= sample_rate // FRAME_RATE * 3


def _pcm(samples: np.ndarray) -> np.ndarray:
    """16-bit PCM as the decoder takes it, made with one float copy (10 minutes of speech: 38 MB, then 19 MB)."""
    scaled = np.nan_to_num(np.clip(samples, -1.0, 1.0), copy=False)
    scaled *= 32767
    return scaled.astype("<i2")


def _decode_pieces(pcm: np.ndarray, bounds: list[int], sample_rate: int,
                   tick: Callable[[float], None] | None = None) -> list[Phone]:
    """Phones of the pieces between ``bounds`` (sample numbers of the whole speech; ``pcm`` starts at
    ``bounds[0]``) in order, untidied. Each piece starts afresh (``_decode``), so pieces may be decoded in
    any process and joined."""
    phones: list[Phone] = []
    origin = bounds[0]
    with _decoder_lock:  # one decoder, not thread-safe
        decoder = _get_decoder()
        for a, b in zip(bounds[:-1], bounds[1:]):
            phones += _decode(decoder, pcm[a - origin:b - origin], a / sample_rate, sample_rate)
            if tick is not None:
                tick((b - origin) / (bounds[-1] - origin))
    return phones


# The child yields to the study it runs beside (the phones are needed only after it), taking what is left.
PHONES_NICENESS = 10


# Long speech is cut in pieces anyway (CHUNK_SECONDS): up to this many children decode them side by side, one
# for every two cores, so that the study and the job's own work keep at least half of them; on two cores, two
# (niced, they take what the study leaves, and then both cores once it is done: a new presenter's 60 s job
# 18.05-18.47 s against 18.53-19.21 with one, the wait for them after the study 0.8-1.0 s against 1.4-1.6).
MAX_PHONE_PROCESSES = 4


class BackgroundPhones:
    """``recognise_phones`` of one speech in child processes, started now and collected by ``result``.

    PocketSphinx keeps Python's lock while it decodes, so a thread cannot run it beside other work (the
    presenter study, reading the video); a process can, on another core. Speech long enough to be cut in
    pieces is shared out, in runs of whole pieces, between up to MAX_PHONE_PROCESSES children (one for every
    two cores, two on two; one for every core when nothing else is to run meanwhile: ``alone``); each piece is
    decoded afresh, so the phones are the same as in one process. The children are killed when this process dies
    (heygem.children), when ``close`` is called, or when the wait is cancelled.
    """

    POLL_SECONDS = 0.1

    def __init__(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, alone: bool = False) -> None:
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"phones are recognised in 16 kHz speech, got {sample_rate} Hz")
        self.started = time.perf_counter()
        self.duration = len(samples) / sample_rate
        self._children: list[tuple[subprocess.Popen, Path, Path]] = []
        self._folder = Path(tempfile.mkdtemp(prefix="heygem-phones-"))
        self._known: list[Phone] | None = None
        if not _decodable(len(samples), sample_rate):  # nothing to decode: ``recognise_phones`` says what then
            self._known = recognise_phones(samples, sample_rate)
            return
        speech = self._folder / "speech.npy"  # the decoder's 16-bit samples, made once here for every child
        pcm = _pcm(np.asarray(samples, np.float32))
        np.save(speech, pcm)
        bounds = [0, *_cut_points(pcm, sample_rate), len(pcm)]
        # The child imports this package from where this process found it, whatever the working folder.
        env = dict(os.environ)
        project = Path(__file__).resolve().parents[2]  # the folder holding the heygem package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(project), env.get("PYTHONPATH")]))
        cores = os.cpu_count() or 1
        processes = max(1, min(MAX_PHONE_PROCESSES, cores if alone or cores <= 2 else cores // 2))
        for number, share in enumerate(_share_out(bounds, processes)):
            result, errors = self._folder / f"phones-{number}.json", self._folder / f"errors-{number}.txt"
            with open(errors, "wb") as handle:
                argv = [sys.executable, "-m", "heygem.speech.phones", str(speech), str(result), *map(str, share)]
                process = Child(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=handle)
            self._children.append((process, result, errors))

    def result(self, waiting: Callable[[], None] | None = None) -> list[Phone]:
        """The phones, once the children have them. ``waiting()`` is called about ten times a second meanwhile
        (a job's progress report: a cancel it raises kills the children). Raises RuntimeError when a child
        failed (the caller may then recognise in this process)."""
        try:
            if self._known is not None:
                return self._known
            if not self._children:
                raise RuntimeError("the phone recognition was closed")
            phones: list[Phone] = []
            for process, result, errors in self._children:
                while True:
                    try:
                        code = process.wait(timeout=self.POLL_SECONDS)
                        break
                    except subprocess.TimeoutExpired:
                        if waiting is not None:
                            waiting()
                if code != 0 or not result.is_file():
                    tail = errors.read_text(errors="replace")[-1500:].strip()
                    raise RuntimeError(f"the phone recognition process ended with code {code}: {tail or 'no message'}")
                phones += [Phone(label, start, end) for label, start, end in json.loads(result.read_text())]
            phones = _tidy(phones, self.duration)
            log.debug("%d phones from %d background processes after %.2f s", len(phones), len(self._children),
                      time.perf_counter() - self.started)
            return phones
        finally:
            self.close()

    def close(self) -> None:
        """Stop the children that still run and remove their files."""
        for process, _, _ in self._children:
            if process.poll() is None:
                process.kill()
            process.wait()
        self._children = []
        shutil.rmtree(self._folder, ignore_errors=True)


def _share_out(bounds: list[int], count: int) -> list[list[int]]:
    """The pieces ``bounds`` marks, in at most ``count`` runs of whole consecutive pieces of about equal length:
    each run as its own bounds."""
    pieces = len(bounds) - 1
    count = max(1, min(count, pieces))
    total = bounds[-1] - bounds[0]
    runs, first = [], 0
    for number in range(1, count + 1):
        if number == count:
            last = pieces
        else:  # the piece boundary nearest this run's share of the length, leaving a piece for each run left
            target = bounds[0] + total * number / count
            last = min(range(first + 1, pieces - (count - number) + 1), key=lambda i: abs(bounds[i] - target))
        runs.append(bounds[first:last + 1])
        first = last
    return runs


def _recognise_file(speech: str, result: str, bounds: list[int]) -> None:
    """A child of ``BackgroundPhones``: the phones of the pieces ``bounds`` marks in the 16-bit samples in
    ``speech`` (.npy), untidied, as JSON into ``result``."""
    os.nice(PHONES_NICENESS)
    phones = _decode_pieces(np.load(speech, mmap_mode="r")[bounds[0]:bounds[-1]], bounds, SAMPLE_RATE)
    temp = f"{result}.partial"
    with open(temp, "w") as out:
        json.dump([[p.label, p.start, p.end] for p in phones], out)
    os.replace(temp, result)


# ---- the viseme table ---------------------------------------------------------------------------------------

VISEMES: tuple[str, ...] = ("rest", "closed", "lip-teeth", "open", "mid", "spread", "rounded")
REST, CLOSED, LIP_TEETH, OPEN, MID, SPREAD, ROUNDED = range(len(VISEMES))


@dataclass(frozen=True)
class Target:
    """What a phone does to the mouth.

    viseme: index into VISEMES. opening: 0 lips together .. 1 wide open (jaw and lips). spread: -1 rounded and
    protruded .. +1 spread. open_weight, spread_weight: dominance (how hard this phone pulls each of the two
    against its neighbours); lips-only consonants pull the opening hard, tongue consonants leave the lip shape
    to their neighbours.
    """

    viseme: int
    opening: float
    spread: float
    open_weight: float
    spread_weight: float


# One entry per ARPAbet phone (CMU set). Openings follow vowel height (low vowels open the jaw most); spread
# follows lip rounding (front vowels spread, back vowels and w round; English sh/ch/zh/jh and r are made
# with protruded lips). Tongue consonants (t d n l s z th k g ng) barely constrain the lips: low spread weight.
TABLE: dict[str, Target] = {
    # label: Target(viseme, opening, spread, open_weight, spread_weight)
    # vowels
    "AA": Target(OPEN, 1.00, 0.00, 0.5, 0.4),       # father
    "AE": Target(OPEN, 0.85, 0.35, 0.5, 0.5),       # cat
    "AH": Target(OPEN, 0.65, 0.00, 0.4, 0.3),       # cut, schwa: open but weak
    "AO": Target(OPEN, 0.80, -0.40, 0.5, 0.6),      # caught: open, some rounding
    "AW": Target(OPEN, 0.90, 0.00, 0.5, 0.4),       # cow: opens, then glides to rounded (GLIDES)
    "AY": Target(OPEN, 0.90, 0.10, 0.5, 0.4),       # buy: opens, then glides to spread
    "EH": Target(MID, 0.55, 0.35, 0.5, 0.5),        # bed
    "ER": Target(MID, 0.40, -0.20, 0.4, 0.5),       # bird: r-coloured, slightly rounded
    "EY": Target(SPREAD, 0.45, 0.55, 0.5, 0.6),     # bait
    "IH": Target(SPREAD, 0.35, 0.50, 0.4, 0.6),     # bit
    "IY": Target(SPREAD, 0.25, 0.90, 0.5, 0.8),     # beat: the most spread
    "OW": Target(ROUNDED, 0.50, -0.60, 0.5, 0.9),   # boat
    "OY": Target(ROUNDED, 0.55, -0.60, 0.5, 0.9),   # boy: rounded, then glides to spread
    "UH": Target(ROUNDED, 0.35, -0.50, 0.4, 0.8),   # book
    "UW": Target(ROUNDED, 0.20, -1.00, 0.5, 1.0),   # boot: the most rounded
    # semivowels and liquids
    "W": Target(ROUNDED, 0.10, -1.00, 0.6, 1.0),
    "Y": Target(SPREAD, 0.20, 0.70, 0.4, 0.7),
    "R": Target(ROUNDED, 0.30, -0.45, 0.3, 0.6),
    "L": Target(MID, 0.35, 0.10, 0.3, 0.1),
    # lips together
    "M": Target(CLOSED, 0.00, 0.00, 1.0, 0.1),
    "B": Target(CLOSED, 0.00, 0.00, 1.0, 0.1),
    "P": Target(CLOSED, 0.00, 0.00, 1.0, 0.1),
    # lower lip under the upper teeth
    "F": Target(LIP_TEETH, 0.08, 0.15, 0.9, 0.2),
    "V": Target(LIP_TEETH, 0.08, 0.15, 0.9, 0.2),
    # tongue consonants: a fairly closed jaw, lips free
    "TH": Target(MID, 0.20, 0.10, 0.5, 0.1),
    "DH": Target(MID, 0.20, 0.10, 0.4, 0.1),
    "T": Target(MID, 0.25, 0.10, 0.4, 0.1),
    "D": Target(MID, 0.25, 0.10, 0.4, 0.1),
    "N": Target(MID, 0.25, 0.10, 0.3, 0.1),
    "S": Target(SPREAD, 0.12, 0.40, 0.6, 0.2),      # teeth nearly together, lips drawn back
    "Z": Target(SPREAD, 0.12, 0.40, 0.6, 0.2),
    "SH": Target(ROUNDED, 0.18, -0.55, 0.6, 0.6),   # English sh, zh, ch, j: lips protruded
    "ZH": Target(ROUNDED, 0.18, -0.55, 0.6, 0.6),
    "CH": Target(ROUNDED, 0.18, -0.50, 0.6, 0.6),
    "JH": Target(ROUNDED, 0.18, -0.50, 0.6, 0.6),
    "K": Target(MID, 0.35, 0.05, 0.3, 0.05),
    "G": Target(MID, 0.35, 0.05, 0.3, 0.05),
    "NG": Target(MID, 0.30, 0.05, 0.3, 0.05),
    "HH": Target(MID, 0.45, 0.00, 0.05, 0.02),      # h takes the shape of the vowel it precedes
    # silence and noise: the mouth at rest (handled by the presence envelope, not blended)
    "SIL": Target(REST, 0.00, 0.00, 0.0, 0.0),
}

# Diphthongs end in a different shape: the last GLIDE_SHARE of the phone takes this target instead.
GLIDE_SHARE = 0.45
GLIDES: dict[str, Target] = {
    "AW": Target(ROUNDED, 0.35, -0.70, 0.5, 0.9),
    "AY": Target(SPREAD, 0.35, 0.60, 0.5, 0.6),
    "EY": Target(SPREAD, 0.30, 0.75, 0.5, 0.7),
    "OW": Target(ROUNDED, 0.30, -0.85, 0.5, 1.0),
    "OY": Target(SPREAD, 0.30, 0.55, 0.5, 0.6),
}

# ---- coarticulation -----------------------------------------------------------------------------------------

# Dominance time constants in seconds, (before the phone, after it): a phone's pull falls to 1/e this far
# outside it. Lip closures act locally; vowels blend over about a syllable's half. Rounding is anticipated as
# soon as other lip shapes and lingers a little longer; its high weight against the tongue consonants (1.0
# against 0.1) still carries it over a consonant or two before it. Twice the anticipation (0.14 s) followed the
# real mouths' width less well: split-time halves of the shared clips cut at three points, both ways round, 24
# comparisons, width r 0.036 against 0.051 (better on 13, worse on 9; bench/RESULTS.md).
OPEN_TAU = {CLOSED: (0.03, 0.02), LIP_TEETH: (0.03, 0.02)}
OPEN_TAU_DEFAULT = (0.06, 0.05)
SPREAD_TAU = {ROUNDED: (0.07, 0.08)}
SPREAD_TAU_DEFAULT = (0.07, 0.05)
REACH = 0.5  # seconds: beyond this a phone's pull is negligible (exp(-0.5 / 0.08) < 0.2%)

# Enforced lip contact: from LEAD before the sound starts (the lips get there first) to TAIL before it ends
# (the release burst of b/p is part of the sound); at least one frame either way.
CLOSURE_LEAD, CLOSURE_TAIL = 0.04, 0.01
LIP_TEETH_LEAD, LIP_TEETH_TAIL = 0.03, 0.01
LIP_TEETH_OPENING = 0.08  # lower lip tucked under the teeth: the lips barely apart

# Pauses: the mouth starts to open PRESENCE_ON before speech resumes and closes over PRESENCE_OFF after it.
PRESENCE_ON, PRESENCE_OFF = 0.08, 0.10
# Loudness: opening = target x (FLOOR + (1 - FLOOR) x drive): quiet speech still shapes the mouth, loud speech
# opens it up to the full target.
LOUDNESS_FLOOR = 0.4
MIN_PAUSE = 0.15  # seconds of silent audio that count as a pause even where phones were recognised
SUBSAMPLES = 4  # points per frame at which the blend is evaluated and averaged

# Dominant class of a blended frame: the nearest of these (opening, spread) shapes, opening counted double
# (it is the more visible). Closed and lip-teeth come only from the held frames of m b p / f v themselves: a
# nearly shut t or th is still not lips together.
PROTOTYPES: dict[int, tuple[float, float]] = {
    OPEN: (0.8, 0.1), MID: (0.4, 0.2), SPREAD: (0.3, 0.75), ROUNDED: (0.3, -0.75),
}
OPENING_WEIGHT = 2.0


@dataclass
class MouthShapes:
    """Per output frame, all of length n_frames.

    viseme: int8 index into VISEMES, the dominant class. opening: float32 0..1 (0 lips together). spread:
    float32 -1..1 (-1 fully rounded/protruded, 0 neutral, +1 fully spread).
    """

    viseme: np.ndarray
    opening: np.ndarray
    spread: np.ndarray


@dataclass(frozen=True)
class _Segment:
    start: float
    end: float
    target: Target


def _segments(phones: list[Phone]) -> list[_Segment]:
    """Phones as target segments; diphthongs split into their start and their glide."""
    segments = []
    for phone in phones:
        if phone.end <= phone.start:
            continue
        label = phone.label if phone.label in TABLE else label_of(phone.label)
        target = TABLE[label]
        glide = GLIDES.get(label)
        if glide is None:
            segments.append(_Segment(phone.start, phone.end, target))
        else:
            middle = phone.end - GLIDE_SHARE * (phone.end - phone.start)
            segments += [_Segment(phone.start, middle, target), _Segment(middle, phone.end, glide)]
    return segments


def _check(fps: float | Fraction, n_frames: int, sample_rate: int) -> Fraction:
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"mouth shapes are computed from 16 kHz speech, got {sample_rate} Hz")
    fps = Fraction(fps)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    return fps


def _blend(speech: list[_Segment], t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dominance-weighted opening and spread targets at times t (0 where no phone reaches)."""
    num_o, den_o = np.zeros_like(t), np.zeros_like(t)
    num_s, den_s = np.zeros_like(t), np.zeros_like(t)
    for seg in speech:
        lo, hi = np.searchsorted(t, [seg.start - REACH, seg.end + REACH])
        if lo >= hi:
            continue
        tt = t[lo:hi]
        before = np.maximum(seg.start - tt, 0.0)  # > 0 while the phone is still ahead: anticipation
        after = np.maximum(tt - seg.end, 0.0)
        target = seg.target
        tau_b, tau_a = OPEN_TAU.get(target.viseme, OPEN_TAU_DEFAULT)
        d = target.open_weight * np.exp(-before / tau_b - after / tau_a)
        num_o[lo:hi] += d * target.opening
        den_o[lo:hi] += d
        tau_b, tau_a = SPREAD_TAU.get(target.viseme, SPREAD_TAU_DEFAULT)
        d = target.spread_weight * np.exp(-before / tau_b - after / tau_a)
        num_s[lo:hi] += d * target.spread
        den_s[lo:hi] += d
    opening = np.divide(num_o, den_o, out=np.zeros_like(t), where=den_o > 0)
    spread = np.divide(num_s, den_s, out=np.zeros_like(t), where=den_s > 0)
    return opening, spread


def _presence(speech: list[_Segment], t: np.ndarray) -> np.ndarray:
    """1 while a phone is spoken, easing to 0 into pauses (cosine ramps), so pauses close the mouth."""
    if not speech:
        return np.zeros_like(t)
    starts = np.array([s.start for s in speech])
    ends = np.array([s.end for s in speech])
    # The phones started by t (index: the last of them) and the latest end among them: t is inside speech when
    # it comes before that end, else it is that far into a pause.
    index = np.searchsorted(starts, t, side="right") - 1
    latest_end = np.maximum.accumulate(ends)[np.maximum(index, 0)]
    inside = (index >= 0) & (t < latest_end)
    since = np.where(index >= 0, t - latest_end, np.inf)
    following = np.minimum(index + 1, len(starts) - 1)
    until = np.where(index + 1 < len(starts), starts[following] - t, np.inf)

    def ramp(distance: np.ndarray, length: float) -> np.ndarray:
        x = np.clip(1.0 - distance / length, 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(np.pi * x)

    return np.where(inside, 1.0, np.maximum(ramp(since, PRESENCE_OFF), ramp(until, PRESENCE_ON)))


def _lip_frames(seg: _Segment, fps: Fraction, n_frames: int, lead: float, tail: float) -> range:
    """Frames held at the lip contact of one m/b/p/f/v: those at least half inside [start - lead, end - tail),
    else the one frame most inside it."""
    a, b = seg.start - lead, max(seg.end - tail, seg.start - lead + 1e-3)
    f = float(fps)
    first, last = max(0, math.floor(a * f)), min(n_frames - 1, math.ceil(b * f) - 1)
    if first > last:
        return range(0)
    frames = np.arange(first, last + 1)
    overlap = np.minimum(b, (frames + 1) / f) - np.maximum(a, frames / f)
    held = frames[overlap >= 0.5 / f]
    if held.size:
        return range(int(held[0]), int(held[-1]) + 1)
    best = int(frames[np.argmax(overlap)])
    return range(best, best + 1)


def _long_runs(mask: np.ndarray, min_length: int) -> np.ndarray:
    """``mask`` with its runs of True shorter than ``min_length`` set to False."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    kept = np.zeros_like(mask, dtype=bool)
    for a, b in zip(starts, stops):
        if b - a >= min_length:
            kept[a:b] = True
    return kept


def _classify(opening: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """Nearest prototype shape of each frame (see PROTOTYPES)."""
    classes = np.array(list(PROTOTYPES), dtype=np.int8)
    shapes = np.array(list(PROTOTYPES.values()))
    distance = ((OPENING_WEIGHT * (opening[:, None] - shapes[None, :, 0])) ** 2
                + (spread[:, None] - shapes[None, :, 1]) ** 2)
    return classes[np.argmin(distance, axis=1)]


def mouth_shapes(phones: list[Phone], samples: np.ndarray, fps: float | Fraction, n_frames: int,
                 sample_rate: int = SAMPLE_RATE, envelope: np.ndarray | None = None) -> MouthShapes:
    """Per-frame mouth shapes for a speech from its phones (``recognise_phones``) and its loudness.

    Frame i covers [i / fps, (i + 1) / fps). Phones are blended by dominance (see the module notes); m, b, p
    hold the lips closed (opening 0) for at least one frame from CLOSURE_LEAD before their sound, f and v hold
    the lower lip under the teeth; the loudness drive scales the opening of everything else; pauses and
    silent frames are at rest (opening 0, spread 0).
    """
    fps = _check(fps, n_frames, sample_rate)
    if n_frames == 0:
        return MouthShapes(np.zeros(0, np.int8), np.zeros(0, np.float32), np.zeros(0, np.float32))
    segments = _segments(phones)
    speech = sorted((s for s in segments if s.target.viseme != REST), key=lambda s: s.start)

    # The blend at SUBSAMPLES points inside each frame, averaged: a frame shows its whole time span.
    t = ((np.arange(n_frames)[:, None] + (np.arange(SUBSAMPLES)[None, :] + 0.5) / SUBSAMPLES) / float(fps)).ravel()
    target_open, target_spread = _blend(speech, t)
    presence = _presence(speech, t)
    target_open = target_open.reshape(n_frames, SUBSAMPLES).mean(axis=1)
    target_spread = target_spread.reshape(n_frames, SUBSAMPLES).mean(axis=1)
    presence = presence.reshape(n_frames, SUBSAMPLES).mean(axis=1)

    if envelope is None:  # (a live stream hands over the one it works out anyway)
        envelope = voice_envelope(samples, fps, n_frames)
    drive = mouth_drive(samples, fps, n_frames, envelope).astype(np.float64)
    opening = presence * target_open * (LOUDNESS_FLOOR + (1.0 - LOUDNESS_FLOOR) * drive)
    spread = presence * target_spread
    viseme = _classify(target_open, target_spread)
    viseme[presence < 0.5] = REST

    # Pauses the recogniser missed (silent by the loudness drive's own absolute gate) are at rest whatever
    # was recognised; shorter silent runs are the closures of t, k, p inside words and stay as they are.
    silent = _long_runs(envelope <= SILENCE_DB, max(1, round(MIN_PAUSE * fps)))
    opening[silent] = 0.0
    spread[silent] = 0.0
    viseme[silent] = REST

    # Lip contact wins over everything around it, and is reached ahead of the sound.
    for seg in speech:
        if seg.target.viseme == CLOSED:
            held = _lip_frames(seg, fps, n_frames, CLOSURE_LEAD, CLOSURE_TAIL)
            opening[held.start:held.stop] = 0.0
            viseme[held.start:held.stop] = CLOSED
    for seg in speech:
        if seg.target.viseme == LIP_TEETH:
            held = _lip_frames(seg, fps, n_frames, LIP_TEETH_LEAD, LIP_TEETH_TAIL)
            frames = slice(held.start, held.stop)
            free = viseme[frames] != CLOSED  # a closure next to f/v keeps its frames
            opening[frames] = np.where(free, np.minimum(opening[frames], LIP_TEETH_OPENING), opening[frames])
            viseme[frames] = np.where(free, LIP_TEETH, viseme[frames])

    return MouthShapes(viseme=viseme.astype(np.int8),
                       opening=np.clip(opening, 0.0, 1.0).astype(np.float32),
                       spread=np.clip(spread, -1.0, 1.0).astype(np.float32))


def frame_visemes(phones: list[Phone], fps: float | Fraction, n_frames: int) -> np.ndarray:
    """(n_frames,) int8: the class of the phone spoken during most of each frame (diphthongs: the part), rest
    where nothing or silence is; no blending, no anticipation."""
    fps = _check(fps, n_frames, SAMPLE_RATE)
    f = float(fps)
    share = np.zeros((n_frames, len(VISEMES)))
    for seg in _segments(phones):
        first, last = max(0, math.floor(seg.start * f)), min(n_frames - 1, math.ceil(seg.end * f) - 1)
        if first > last:
            continue
        frames = np.arange(first, last + 1)
        overlap = np.minimum(seg.end, (frames + 1) / f) - np.maximum(seg.start, frames / f)
        np.add.at(share, (frames, seg.target.viseme), np.maximum(overlap, 0.0))
    return np.argmax(share, axis=1).astype(np.int8)  # no phone at all: every share 0, argmax REST


if __name__ == "__main__":  # BackgroundPhones runs this module as its child
    _recognise_file(sys.argv[1], sys.argv[2], [int(b) for b in sys.argv[3:]])
