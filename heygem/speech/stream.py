"""Mouth shapes of a speech that arrives in pieces (a live presenter): the same phones and loudness as a job's
speech, decoded as the audio comes, each frame's shape given once the audio ``lookahead`` past it is known.

A job knows its whole speech before the first frame; a live session does not. ``ShapeStream`` takes 16 kHz
mono samples as they arrive (``feed``), decodes phones incrementally with a PocketSphinx decoder of its own
(``start_utt`` once, ``process_raw`` per piece, the partial segmentation read after each), and works out
``mouth_shapes`` over a window of the recent speech. A frame's shape is *final* when the audio ``lookahead``
seconds past its end has arrived (the recogniser needs some audio after a sound to know it, and lips anticipate
closures and rounding by 40-140 ms), or when ``finish`` says no more audio comes. Final shapes never change.

    stream = ShapeStream(fps=25, lookahead=0.2)
    stream.feed(piece)               # any number of samples, as they come
    for frame, opening, spread in stream.take(): ...
    stream.flush()                   # the frames received so far become final; more may come
    stream.finish()                  # the rest of the frames become final

The loudness normalisation (``mouth_drive``'s percentiles) and any ``shape_map`` (an engine's own scaling to
its key mouths) see the last WINDOW_SECONDS of the speech: a long stream costs the same per piece as a short one.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from fractions import Fraction

import numpy as np

from heygem.speech.loudness import mouth_drive, voice_envelope
from heygem.speech.phones import (
    FRAME_OFFSET,
    FRAME_RATE,
    SAMPLE_RATE,
    SILENT_PEAK,
    MouthShapes,
    Phone,
    label_of,
    mouth_shapes,
    new_decoder,
)

log = logging.getLogger(__name__)

__all__ = ["ShapeStream", "ShapeMap"]

# (raw shapes over a window, the loudness drive over it) -> the shapes the engine draws (e.g. scaled to its keys)
ShapeMap = Callable[[MouthShapes, np.ndarray], MouthShapes]

WINDOW_SECONDS = 6.0  # the recent speech a frame's shape is worked out over (loudness levels, context)
# The decoder's utterance is begun afresh after this much audio, at a pause in what is already final: its search
# grows with the utterance, and the partial segmentation is read after every piece.
RESTART_SECONDS = 12.0
PIECE_SECONDS = 0.1  # what ``feed`` hands the decoder at a time (a long ``feed`` is cut into these)


class ShapeStream:
    """Per-frame mouth shapes (opening, spread) of a speech fed in pieces, final ``lookahead`` seconds behind
    the audio received. ``phones=False`` leaves the recogniser out (loudness alone, as the ``loudness`` drive).
    ``decoder``: a ``new_decoder()`` to use (loading one takes a while; a live session keeps one for all its
    speeches, one stream at a time); by default the stream makes its own."""

    def __init__(self, fps: float | Fraction = 25, lookahead: float = 0.2, *, phones: bool = True,
                 shape_map: ShapeMap | None = None, decoder=None) -> None:
        if lookahead < 0:
            raise ValueError(f"lookahead must be 0 or more seconds, got {lookahead}")
        self.fps = Fraction(fps).limit_denominator(1001)
        self.lookahead = float(lookahead)
        self.shape_map = shape_map
        self._samples = np.zeros(0, np.float32)  # everything fed (the window is cut from it; see _forget)
        self._origin = 0  # sample number (from the stream's start) of _samples[0]
        self._received = 0  # samples fed in all
        self._final = 0  # frames given final shapes so far
        self._finished = False
        self._phones: list[Phone] = []  # final phones of earlier utterances, in stream seconds
        self._partial: list[Phone] = []  # the current utterance's partial segmentation, in stream seconds
        self._decoder = (decoder or new_decoder()) if phones else None
        self._utt_start = 0  # stream sample where the decoder's current utterance began
        self._pending: list[tuple[int, float, float]] = []  # final shapes not yet taken
        if self._decoder is not None:
            # Fresh feature extraction: the noise estimate of an earlier speech must not change these phones.
            self._decoder.reinit_feat()
            self._decoder.start_utt()

    # ------------------------------------------------------------------------------------------------ input
    @property
    def received_seconds(self) -> float:
        return self._received / SAMPLE_RATE

    @property
    def final_frames(self) -> int:
        """Frames whose shapes are final (taken or not)."""
        return self._final

    def feed(self, samples: np.ndarray) -> None:
        """More speech: float32 mono at 16 kHz, any length."""
        if self._finished:
            raise RuntimeError("this speech was finished; start another ShapeStream")
        samples = np.asarray(samples, np.float32).reshape(-1)
        step = int(PIECE_SECONDS * SAMPLE_RATE)
        for first in range(0, len(samples), step):
            piece = samples[first:first + step]
            self._samples = np.concatenate([self._samples, piece])
            self._received += len(piece)
            self._decode(piece)
        self._advance(self._frames_known(final=False))

    def finish(self) -> None:
        """No more speech comes: the decoder ends its utterance and every frame the audio covers is final."""
        if self._finished:
            return
        self._finished = True
        if self._decoder is not None:
            self._decoder.end_utt()
            self._partial = self._segmentation()
        self._advance(self._frames_known(final=True))

    def flush(self) -> None:
        """Every frame the audio received covers is made final now, as ``finish`` makes them, but more speech may
        still come (a pushed speech that came late): its frames follow on, decoded and normalised with what came
        before."""
        if not self._finished:
            self._advance(self._frames_known(final=True))

    def close(self) -> None:
        """Ends the decoder's utterance and lets go of the decoder (a shared one is then free for the next
        stream)."""
        if self._decoder is not None and not self._finished:
            try:
                self._decoder.end_utt()
            except RuntimeError:  # no utterance running
                pass
        self._decoder = None

    # ----------------------------------------------------------------------------------------------- output
    def take(self) -> Iterator[tuple[int, float, float]]:
        """The shapes made final since the last call: (frame number from the stream's start, opening, spread)."""
        pending, self._pending = self._pending, []
        yield from pending

    # ------------------------------------------------------------------------------------------------ inside
    def _frames_known(self, final: bool) -> int:
        """Frames whose every sample and (unless ``final``) lookahead have arrived."""
        seconds = self._received / SAMPLE_RATE - (0.0 if final else self.lookahead)
        if final:  # the last partial frame too: its sound has all arrived
            return math.ceil(seconds * self.fps - 1e-9)
        return max(0, math.floor(seconds * self.fps + 1e-9))

    def _decode(self, piece: np.ndarray) -> None:
        if self._decoder is None:
            return
        pcm = (np.clip(piece, -1.0, 1.0) * 32767).astype(np.int16)
        self._decoder.process_raw(pcm.tobytes(), full_utt=False)
        self._partial = self._segmentation()
        if (self._received - self._utt_start) / SAMPLE_RATE >= RESTART_SECONDS:
            self._restart()

    def _segmentation(self) -> list[Phone]:
        """The decoder's (partial) phones of its current utterance, in stream seconds."""
        offset = self._utt_start / SAMPLE_RATE
        phones = []
        for segment in self._decoder.seg() or ():  # None before the first hypothesis
            start = offset + segment.start_frame / FRAME_RATE + FRAME_OFFSET
            end = offset + (segment.end_frame + 1) / FRAME_RATE + FRAME_OFFSET
            phones.append(Phone(label_of(segment.word), start, end))
        return phones

    def _restart(self) -> None:
        """Ends the decoder's utterance and begins another at the audio still to come: the phones so far are
        kept as they were decoded (their last one, cut by the restart, is the least sure)."""
        self._decoder.end_utt()
        self._phones.extend(self._segmentation())
        self._partial = []
        self._utt_start = self._received
        self._decoder.start_utt()

    def _advance(self, known: int) -> None:
        """Works out the shapes of frames ``_final .. known`` (exclusive) over the recent window."""
        if known <= self._final:
            return
        fps = float(self.fps)
        window_start = max(0, int((self._final / fps - WINDOW_SECONDS) * SAMPLE_RATE))
        window_start = max(window_start, self._origin)
        first_frame = math.ceil(window_start / SAMPLE_RATE * fps - 1e-9)  # a whole frame inside the window
        start_sample = round(first_frame / fps * SAMPLE_RATE)
        samples = self._samples[start_sample - self._origin:]
        end_frame = known
        count = end_frame - first_frame
        needed = math.ceil(count / fps * SAMPLE_RATE)
        if len(samples) < needed:  # the last partial frame: silence after the speech's end
            samples = np.concatenate([samples, np.zeros(needed - len(samples), np.float32)])
        shift = first_frame / fps
        phones = [Phone(p.label, p.start - shift, p.end - shift) for p in (*self._phones, *self._partial)
                  if p.end > shift]
        if self._decoder is None or np.abs(samples).max(initial=0.0) * 32767 <= SILENT_PEAK:
            phones = None
        envelope = voice_envelope(samples, self.fps, count)  # once: the drive and the shapes both need it
        drive = mouth_drive(samples, self.fps, count, envelope)
        if phones is None:  # no recogniser (or nothing to hear): the loudness drive alone, as a job's ``loudness``
            shapes = MouthShapes(np.zeros(count, np.int8), drive, np.zeros(count, np.float32))
        else:
            shapes = mouth_shapes(phones, samples, self.fps, count, envelope=envelope)
            if self.shape_map is not None:
                shapes = self.shape_map(shapes, drive)
        offset = self._final - first_frame
        for k in range(offset, count):
            self._pending.append((first_frame + k, float(shapes.opening[k]), float(shapes.spread[k])))
        self._final = known
        self._forget()

    def _forget(self) -> None:
        """Drops audio and phones the window no longer reaches."""
        keep_from = int((self._final / float(self.fps) - WINDOW_SECONDS - 1.0) * SAMPLE_RATE)
        if keep_from > self._origin:
            self._samples = self._samples[keep_from - self._origin:]
            self._origin = keep_from
            seconds = keep_from / SAMPLE_RATE
            self._phones = [p for p in self._phones if p.end > seconds]
