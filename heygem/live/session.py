"""One live presenter: its footage on a loop, the speech it is given, and the picture and sound it sends, all
on one clock.

The session's clock starts when the stream does (the first frame a peer asks for). Time on it is counted in
speech samples (16 kHz) and in frames (25 per second); speech is placed on it as *utterances*: a ``say`` (a
whole file) or a run of ``push``ed pieces (a microphone, a TTS streaming PCM). An utterance starts LEAD after
its first audio arrives (or after the one before it ends): the time the speech's features need to see
``lookahead`` past a frame, plus the pieces they are fed in. Its audio is sent at its place on the clock, and
the frame for that time shows the mouth worked out from the same samples (heygem.speech.stream): the mouth
for a sound leaves with that sound. Between utterances the mouth rests while the footage keeps playing.

A frame is drawn by the same engine a job uses (``BuiltinEngine.draw_shape``, from the presenter's study);
nothing here knows about WebRTC (heygem.live.webrtc sends what ``render`` and ``audio`` give).
"""
from __future__ import annotations

import bisect
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from heygem.live.footage import LoopFootage
from heygem.media.audio import RunningLevel
from heygem.speech.phones import new_decoder
from heygem.speech.stream import ShapeStream

log = logging.getLogger(__name__)

__all__ = ["FPS", "SAMPLE_RATE", "LiveOptions", "LiveSession"]

SAMPLE_RATE = 16000
FPS = 25
FRAME_SAMPLES = SAMPLE_RATE // FPS  # 640: speech samples per frame
FEED_SECONDS = 0.08  # pushed speech is handed to the features in pieces of at least this (cost per piece)
FEED_AHEAD_SECONDS = 1.5  # a speech given whole is worked out this far ahead of its playing, no further
FEED_BREATH = 0.004  # seconds between two pieces fed back to back
ANSWER_OPENING = 0.15  # a frame whose mouth opens this much answers a sound (for the latency figure)
RATE_WINDOW = 5.0  # seconds over which the delivered rate is counted
SHRINK = 0.75  # a machine that cannot keep up: the picture's side is cut by this much at a time
MIN_SIDE = 256
DRAW_WINDOW = 50  # frames over which drawing is judged too slow


@dataclass
class LiveOptions:
    """How a live session runs.

    side: the stream's longer side in pixels (the footage's own when smaller).
    lookahead: seconds of speech past a frame its mouth may wait for (closures and rounding are seen before
        their sound; the recogniser needs a little audio after one to know it). At most 0.3.
    phones: recognise the sounds (m/b/p closures, rounding) or follow the loudness alone.
    loop_seconds: how much of the presenter's footage plays on the loop.
    idle_seconds: a session with no peer connected for this long ends.
    degrade: shrink the picture when frames are drawn slower than the frame rate.
    """

    side: int = 512
    lookahead: float = 0.12
    phones: bool = True
    loop_seconds: float = 8.0
    idle_seconds: float = 60.0
    degrade: bool = True

    @property
    def lead_frames(self) -> int:
        """Frames between a speech's arrival and its first frame: the lookahead, the pieces the features are fed
        in, and two frames for the features' work and the pieces' uneven arrival (a microphone's come in bursts)."""
        return math.ceil((self.lookahead + FEED_SECONDS) * FPS) + 2


class _Utterance:
    """Speech placed on the session's clock from ``start`` (a sample, at a frame's start)."""

    def __init__(self, start: int, stream: ShapeStream, pushed: bool = False) -> None:
        self.start = start
        self.stream = stream
        self.pushed = pushed  # pushed in pieces (a microphone, a TTS), not given whole
        self.pieces: deque[tuple[int, np.ndarray, float]] = deque()  # (offset in the utterance, samples, arrived)
        self.length = 0
        self.cut: int | None = None  # an interrupt ended it at this sample of the clock
        self.finished = False
        self.answered = False  # its first opening mouth has been sent (latency measured)
        self.unfed: list[np.ndarray] = []  # pieces not yet handed to the features

    @property
    def end(self) -> int:
        end = self.start + self.length
        return end if self.cut is None else min(end, self.cut)

    @property
    def start_frame(self) -> int:
        return self.start // FRAME_SAMPLES

    def end_frame(self) -> int:
        return -(-self.end // FRAME_SAMPLES)

    def add(self, samples: np.ndarray, arrived: float) -> None:
        self.pieces.append((self.length, samples, arrived))
        self.length += len(samples)
        self.unfed.append(samples)

    @property
    def unfed_samples(self) -> int:
        return sum(len(piece) for piece in self.unfed)

    def arrived_at(self, sample: int) -> float:
        """When the speech at clock sample ``sample`` entered the server."""
        offsets = [offset for offset, _, _ in self.pieces]
        at = max(0, bisect.bisect_right(offsets, sample - self.start) - 1)
        return self.pieces[at][2] if self.pieces else 0.0

    def copy_into(self, out: np.ndarray, first: int) -> None:
        """Adds this utterance's samples at clock samples ``first .. first + len(out)`` into ``out``."""
        last = min(first + len(out), self.end)
        for offset, samples, _ in self.pieces:
            a, b = self.start + offset, self.start + offset + len(samples)
            lo, hi = max(a, first), min(b, last)
            if lo < hi:
                out[lo - first:hi - first] += samples[lo - a:hi - a]

    def forget_before(self, sample: int) -> None:
        """Drops pieces played before clock sample ``sample`` (memory stays flat in a long session)."""
        while len(self.pieces) > 1 and self.start + self.pieces[1][0] <= sample:
            self.pieces.popleft()


class LiveSession:
    """A presenter brought live: ``say``/``push`` speech in, ``render``/``audio`` picture and sound out."""

    def __init__(self, session_id: str, presenter: dict[str, Any], footage: LoopFootage, engine,
                 options: LiveOptions) -> None:
        self.id = session_id
        self.presenter = presenter  # {"id", "name"}
        self.footage = footage
        self.engine = engine
        self.options = options
        self.created = time.monotonic()
        self.started: float | None = None  # monotonic time of the clock's zero
        self.ended = False
        self.last_peer = self.created  # when a peer was last connected (the idle timeout counts from it)
        self.peer_connected = False
        self._lock = threading.RLock()
        self._utterances: list[_Utterance] = []
        self._waiting = 0  # samples said or pushed that the speech worker has not placed on the clock yet
        self._shapes: dict[int, tuple[float, float]] = {}
        self._pushing: _Utterance | None = None
        # A microphone's level is the same from one pushed speech to the next: followed over them all (a speech
        # given whole is read at a normal level when it is read, heygem.media.audio.read_speech).
        self._pushed_level = RunningLevel(SAMPLE_RATE)
        self._commands: queue.Queue = queue.Queue()
        self._sent_times: deque[float] = deque()
        self._render_seconds = 0.0
        self._draws: deque[float] = deque(maxlen=DRAW_WINDOW)
        self._figures = {"frames_sent": 0, "frames_late": 0, "frames_dropped": 0, "frames_unanswered": 0,
                         "utterances": 0, "interrupts": 0, "video_delay_ms": 0.0, "audio_delay_ms": 0.0,
                         "latency_ms": None, "latency_max_ms": None, "degraded": False}
        self._cpu = (time.monotonic(), time.process_time(), 0.0)
        # One phone decoder for all its speeches (loading one takes a while), used by the speech worker alone.
        self._decoder = new_decoder() if options.phones else None
        self._warm_up()
        self._worker = threading.Thread(target=self._speech_worker, name=f"heygem-live-{session_id}", daemon=True)
        self._worker.start()

    def _warm_up(self) -> None:
        """One short speech through the features before any is due: the first one otherwise spends most of a
        second on loading what they use (the filters, the decoder's first search), and its mouth would be late."""
        noise = np.random.default_rng(0).normal(0.0, 0.05, SAMPLE_RATE // 2).astype(np.float32)
        stream = ShapeStream(FPS, self.options.lookahead, phones=self.options.phones,
                             shape_map=getattr(self.engine, "key_range", None), decoder=self._decoder)
        stream.feed(noise)
        stream.finish()
        list(stream.take())
        stream.close()

    # -------------------------------------------------------------------------------------------- the clock
    def start_clock(self) -> float:
        """The clock's zero (set when the stream first asks for a frame or a sound)."""
        with self._lock:
            if self.started is None:
                self.started = time.monotonic()
                log.info("live %s: streaming at %dx%d, %d fps", self.id, self.footage.width, self.footage.height, FPS)
            return self.started

    def now_sample(self) -> int:
        """The clock now, in speech samples (0 before the stream starts)."""
        return 0 if self.started is None else int((time.monotonic() - self.started) * SAMPLE_RATE)

    # ------------------------------------------------------------------------------------------- speech in
    def say(self, samples: np.ndarray, interrupt: bool = False) -> float:
        """Queues a whole speech (float32 mono 16 kHz) after what is being said, or (``interrupt``) instead of
        it from the next frame. Returns its seconds."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        arrived = time.monotonic()
        if interrupt:
            self.interrupt()
        with self._lock:
            self._waiting += len(samples)
        self._commands.put(("say", samples, arrived))
        return len(samples) / SAMPLE_RATE

    def push(self, samples: np.ndarray) -> None:
        """A piece of a speech that is still being produced (a microphone, a TTS streaming PCM)."""
        samples = np.asarray(samples, np.float32).reshape(-1)
        with self._lock:
            self._waiting += len(samples)
        self._commands.put(("push", samples, time.monotonic()))

    def end_push(self) -> None:
        """The pushed speech has ended (its last frames need no more lookahead)."""
        self._commands.put(("end_push", None, time.monotonic()))

    def interrupt(self) -> None:
        """Stops what is being said and drops what waits, from the next frame on."""
        with self._lock:
            cut = (self.now_sample() // FRAME_SAMPLES + 1) * FRAME_SAMPLES
            for utterance in self._utterances:
                if utterance.end > cut:
                    utterance.cut = max(utterance.start, cut)
            self._utterances = [u for u in self._utterances if u.end > u.start]
            self._figures["interrupts"] += 1
        # Speech queued but not placed yet is dropped too.
        dropped = []
        while True:
            try:
                dropped.append(self._commands.get_nowait())
            except queue.Empty:
                break
        for command in dropped:
            if command[0] == "close":
                self._commands.put(command)
            elif command[1] is not None:
                with self._lock:
                    self._waiting -= len(command[1])

    def queued_seconds(self) -> float:
        """Speech given and not yet said: what is placed on the clock past now, and what waits to be placed."""
        with self._lock:
            now = self.now_sample()
            placed = sum(max(0, u.end - max(u.start, now)) for u in self._utterances)
            return (placed + self._waiting) / SAMPLE_RATE

    def _place(self) -> int:
        """Where a new utterance starts: LEAD from now, after whatever is placed already, at a frame's start."""
        lead = self.options.lead_frames * FRAME_SAMPLES
        start = self.now_sample() + lead
        for utterance in self._utterances:
            start = max(start, utterance.end)
        return -(-start // FRAME_SAMPLES) * FRAME_SAMPLES

    def _new_utterance(self, pushed: bool = False) -> _Utterance:
        stream = ShapeStream(FPS, self.options.lookahead, phones=self.options.phones,
                             shape_map=getattr(self.engine, "key_range", None), decoder=self._decoder)
        with self._lock:
            utterance = _Utterance(self._place(), stream, pushed)
            self._utterances.append(utterance)
            self._figures["utterances"] += 1
        return utterance

    def _speech_worker(self) -> None:
        while True:
            try:
                kind, samples, arrived = self._commands.get(timeout=FEED_SECONDS / 2)
            except queue.Empty:
                self._check_stalled()
                continue
            if kind == "close":
                return
            try:
                if kind == "say":
                    self._finish_push()
                    utterance = self._new_utterance()
                    with self._lock:
                        utterance.add(samples, arrived)
                        self._waiting -= len(samples)
                    self._feed(utterance, final=True)
                elif kind == "push":
                    utterance = self._pushing
                    with self._lock:
                        starved = utterance is None or utterance.cut is not None or \
                            utterance.end < self.now_sample() + FRAME_SAMPLES
                    if starved:  # (a gap in the pushed speech, or an interrupt: it starts again LEAD from now)
                        self._finish_push()
                        utterance = self._pushing = self._new_utterance(pushed=True)
                    with self._lock:
                        utterance.add(samples, arrived)
                        self._waiting -= len(samples)
                    if utterance.unfed_samples >= FEED_SECONDS * SAMPLE_RATE:
                        self._feed(utterance, final=False)
                elif kind == "end_push":
                    self._finish_push()
            except Exception:  # a session keeps running whatever one speech did
                log.exception("live %s: speech could not be followed", self.id)

    def _check_stalled(self) -> None:
        """Pushed speech that stopped coming without an end (a peer's microphone going quiet on the wire, a TTS
        or a network a little late): its last frames are made final before they are due, without the lookahead
        past them. More of it that comes before its sound has run out carries on the same utterance, without a
        gap (with a new one, a TTS 80 ms late had a gap in the middle of a word); after that, it starts anew."""
        utterance = self._pushing
        if utterance is None or utterance.finished:
            return
        with self._lock:
            stalled = utterance.end - self.now_sample() < (self.options.lookahead + 2 / FPS) * SAMPLE_RATE
        if stalled:
            self._feed(utterance, final=False)  # what came but was not fed yet (under FEED_SECONDS)
            utterance.stream.flush()
            self._keep(utterance)

    def _finish_push(self) -> None:
        if self._pushing is not None:
            self._feed(self._pushing, final=True)
            self._pushing = None

    def _feed(self, utterance: _Utterance, final: bool) -> None:
        """Hands the utterance's new samples to its features, a piece at a time, keeping the shapes made."""
        if utterance.finished:
            return
        with self._lock:
            unfed = np.concatenate(utterance.unfed) if utterance.unfed else np.zeros(0, np.float32)
            utterance.unfed = []
        if utterance.pushed:  # its features read it at a normal level; the sound sent stays as pushed
            unfed = self._pushed_level.raised(unfed)
        # Small pieces, kept FEED_AHEAD_SECONDS ahead of what is being played, not as fast as they can go: the
        # recogniser holds Python's lock while it works, and a whole file at once held it long enough to make
        # the picture miss its time.
        first = 0
        while first < len(unfed) and utterance.cut is None and not self.ended:
            played = (self.now_sample() - utterance.start) / SAMPLE_RATE
            if self.started is not None and utterance.stream.received_seconds - played > FEED_AHEAD_SECONDS:
                time.sleep(FEED_SECONDS / 2)
                continue
            step = int(FEED_SECONDS * SAMPLE_RATE * (1 if utterance.stream.received_seconds < 0.5 else 2.5))
            utterance.stream.feed(unfed[first:first + step])
            self._keep(utterance)
            first += step
            time.sleep(FEED_BREATH)  # the other threads' turn (each piece keeps Python's lock for ~10 ms)
        if final and utterance.cut is None:
            utterance.stream.finish()
            self._keep(utterance)
        if final or utterance.cut is not None:  # (an interrupted speech's features stop here: nothing more is drawn)
            utterance.finished = True
            utterance.stream.close()  # the session's decoder is free for the next speech

    def _keep(self, utterance: _Utterance) -> None:
        base = utterance.start_frame
        with self._lock:
            for frame, opening, spread in utterance.stream.take():
                self._shapes[base + frame] = (opening, spread)

    # --------------------------------------------------------------------------------------- picture, sound
    def _utterance_at(self, frame: int) -> _Utterance | None:
        for utterance in self._utterances:
            if utterance.start_frame <= frame < utterance.end_frame():
                return utterance
        return None

    def shape(self, frame: int) -> tuple[float, float, _Utterance | None]:
        """The mouth (opening, spread) of clock frame ``frame``: rest outside speech."""
        with self._lock:
            utterance = self._utterance_at(frame)
            if utterance is None:
                return 0.0, 0.0, None
            shape = self._shapes.get(frame)
            if shape is None:  # its features are not there yet (counted, never waited for): the mouth holds
                self._figures["frames_unanswered"] += 1
                before = self._shapes.get(frame - 1, (0.0, 0.0))
                shape = self._shapes[frame] = (0.8 * before[0], 0.8 * before[1])  # easing towards rest
            return shape[0], shape[1], utterance

    def render(self, frame: int) -> np.ndarray:
        """The picture of clock frame ``frame`` (BGR, the stream's size)."""
        started = time.perf_counter()
        picture = self.footage.frame(frame / FPS)
        image = picture.image.copy()
        opening, spread, utterance = self.shape(frame)
        if picture.box is not None and picture.points is not None:
            self.engine.draw_shape(image, picture.box, picture.points, opening, spread)
        spent = time.perf_counter() - started
        self._draws.append(spent)
        self._render_seconds = float(np.median(self._draws))
        # Degraded on purpose only when drawing is slow for a while (a median over DRAW_WINDOW frames), not for
        # one frame held up by something else.
        if self.options.degrade and len(self._draws) == DRAW_WINDOW and self._render_seconds > 0.6 / FPS \
                and self.footage.side * SHRINK >= MIN_SIDE:
            self.footage.scale(int(self.footage.side * SHRINK))
            self._draws.clear()
            self._figures["degraded"] = True
            log.warning("live %s: frames took %.0f ms to draw; the picture is now %dx%d to keep %d fps", self.id,
                        self._render_seconds * 1000, self.footage.width, self.footage.height, FPS)
        if utterance is not None and opening >= ANSWER_OPENING and not utterance.answered:
            utterance.answered = True
            sample = frame * FRAME_SAMPLES
            due = (self.started or time.monotonic()) + frame / FPS
            latency = (max(time.monotonic(), due) - utterance.arrived_at(sample) - (sample - utterance.start) / SAMPLE_RATE)
            self._figures["latency_ms"] = round(latency * 1000, 1)
            self._figures["latency_max_ms"] = max(self._figures["latency_max_ms"] or 0.0, self._figures["latency_ms"])
        return image

    def audio(self, first: int, count: int) -> np.ndarray:
        """int16 samples ``first .. first + count`` of the clock: the speech placed there, silence elsewhere."""
        out = np.zeros(count, np.float32)
        with self._lock:
            for utterance in self._utterances:
                if utterance.start < first + count and utterance.end > first:
                    utterance.copy_into(out, first)
            self._forget(first)
        return (np.clip(out, -1.0, 1.0) * 32767).astype(np.int16)

    def _forget(self, played: int) -> None:
        """Drops what has been played: utterances over, their pieces and shapes (memory stays flat)."""
        self._utterances = [u for u in self._utterances if u.end > played or (u is self._pushing)]
        for utterance in self._utterances:
            utterance.forget_before(played)
        old = played // FRAME_SAMPLES - 2 * FPS
        if len(self._shapes) > 4 * FPS and old > 0:
            for frame in [f for f in self._shapes if f < old]:
                del self._shapes[frame]

    # ------------------------------------------------------------------------------------------- figures
    def sent_video(self, frame: int, due: float, dropped: int) -> None:
        """The video track sent clock frame ``frame`` (due at ``due``), after skipping ``dropped``."""
        now = time.monotonic()
        with self._lock:
            figures = self._figures
            figures["frames_sent"] += 1
            figures["frames_dropped"] += dropped
            if now - due > 1.0 / FPS:
                figures["frames_late"] += 1
                log.debug("live %s: frame %d left %.0f ms after its time", self.id, frame, (now - due) * 1000)
            figures["video_delay_ms"] = 0.9 * figures["video_delay_ms"] + 0.1 * (now - due) * 1000
            self._sent_times.append(now)
            while self._sent_times and self._sent_times[0] < now - RATE_WINDOW:
                self._sent_times.popleft()

    def sent_audio(self, due: float) -> None:
        with self._lock:
            self._figures["audio_delay_ms"] = 0.9 * self._figures["audio_delay_ms"] + 0.1 * (time.monotonic() - due) * 1000

    def state(self) -> str:
        if self.ended:
            return "ended"
        if self.started is None or not self.peer_connected:
            return "waiting"
        with self._lock:
            now = self.now_sample()
            speaking = any(u.end > now for u in self._utterances) or not self._commands.empty()
        return "speaking" if speaking else "idle"

    def figures(self) -> dict[str, Any]:
        """State and live figures, as ``GET /api/live/{id}`` answers them."""
        now = time.monotonic()
        wall, cpu, percent = self._cpu
        if now - wall >= 1.0:
            percent = 100.0 * (time.process_time() - cpu) / (now - wall)
            self._cpu = (now, time.process_time(), percent)
        with self._lock:
            figures = dict(self._figures)
            elapsed = min(RATE_WINDOW, now - (self.started or now))
            rate = len(self._sent_times) / elapsed if elapsed > 0.5 else 0.0
            queued = self.queued_seconds()
        figures.update(
            id=self.id, presenter=self.presenter, state=self.state(), width=self.footage.width,
            height=self.footage.height, fps=FPS, rate=round(rate, 2), seconds=round(now - self.started, 1)
            if self.started else 0.0, speech_queued_seconds=round(queued, 2),
            av_offset_ms=round(figures.pop("video_delay_ms") - figures.pop("audio_delay_ms"), 1),
            draw_ms=round(self._render_seconds * 1000, 1), cpu_percent=round(percent, 1), memory_mb=_memory_mb(),
            lookahead_ms=round(self.options.lookahead * 1000), lead_ms=round(self.options.lead_frames * 1000 / FPS),
        )
        return figures

    def close(self) -> None:
        self.ended = True
        self._commands.put(("close", None, 0.0))


def _memory_mb() -> float:
    """This process's resident memory, MB (the whole studio's: sessions share it)."""
    try:
        with open("/proc/self/statm") as statm:
            return round(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return 0.0
