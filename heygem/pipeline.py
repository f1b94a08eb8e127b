"""One generation, start to finish: inputs -> probe -> mel features -> faces -> synthesis -> blend -> encode.

Frames stream through small generator stages, so memory does not grow with the video's length: a batch of
frames waits for the engine, nothing more. ``generate`` is the one entry point every front end calls.
"""
from __future__ import annotations

import itertools
import logging
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from heygem import blend
from heygem.engines import Engine, create_engine, resolve_engine_name
from heygem.engines.base import EngineDescription, EngineJob
from heygem.errors import CancelledError, CodedText, InputError, NoFaceError
from heygem.faces import Face, get_detector
from heygem.faces.mesh_memo import MeshMemo, mesh_memo
from heygem.faces.orientation import Orientation, describe_turn, find_orientation, turn_box
from heygem.faces.schedule import Anchors, CachedFaces, FaceCache, sparse_detect
from heygem.faces.track import crop_box, cut_crop, select_face, smooth_faces
from heygem.features import MelChunks, frame_count, mel_spectrogram
from heygem.footage import MIN_SECONDS as FOOTAGE_MIN_SECONDS, footage_may_speak, study_footage
from heygem.limits import check_speech, speech_too_long
from heygem.media.audio import TooLongError, read_speech
from heygem.media.encode import VideoWriter
from heygem.media.probe import MediaInfo, fit_picture, fit_rate, probe, turned
from heygem.media.video import iter_frames, iter_yuv_frames, sample_frames, turn_image, yuv_conversion
from heygem.media.yuv import Conversion, YuvFrame
from heygem.prefetch import Prefetch
from heygem.settings import DetectionOptions, Limits, Settings
from heygem.speech.loudness import voice_envelope
from heygem.speech.phones import mouth_shapes
from heygem.study import anchors as study_anchors
from heygem.study import study_kept, study_presenter

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# Frames waiting for the engine are full-size; cap what they may hold so 4K input stays within memory.
PENDING_FRAMES_BYTES = 256 * 1024 * 1024
# Frames waiting for the encoder thread (with ``Settings.overlap``).
ENCODE_QUEUE_FRAMES = 8
# A video that decodes to fewer frames than its header promises (counted within the part the speech needs)
# was probably cut short: an interrupted upload or copy. The header's count is an estimate (duration x
# average rate): variable frame rates and the last frame's length put it a frame or so off (liveportrait/
# d13.mp4 decodes to 351 of 352), so up to 3 frames or 1% may be missing without a word. Past that the
# result says so; under 80% of the promised frames it is an error: most of what the speech needed is
# missing, and the result would replay the little there is (or hold a still frame, like a photo).
CUT_SHORT_TOLERANCE_FRAMES = 3
CUT_SHORT_TOLERANCE_SHARE = 0.01
CUT_SHORT_ERROR_SHARE = 0.8
# Which way up the face is, judged on a few frames spread over the first seconds used (one short decode
# and a detection each; the turns are tried only when the upright picture has no confident face in one).
ORIENTATION_SAMPLES = 5
ORIENTATION_SECONDS = 4.0

NO_PICTURE = "has no picture; give a video (mp4, mov, mkv, avi, webm) or a photo (jpg, png, webp) of a face"

ProgressCallback = Callable[[str, float, str], None]
"""Called as ``progress(stage, fraction, file)``; raise from it (e.g. CancelledError) to stop the job."""
# A stored progress is written at most this often (seconds) within one stage, and at every change of stage.
PROGRESS_INTERVAL = 0.3


class ThrottledProgress:
    """A ProgressCallback that hands reports to ``write(stage, fraction)`` at every change of stage, at the end
    of one (fraction 1) and otherwise at most every ``PROGRESS_INTERVAL`` seconds. ``write`` returns why the
    work must stop (raised as CancelledError naming the file), or None to go on."""

    def __init__(self, write: Callable[[str, float], str | None]) -> None:
        self.write = write
        self.stage = ""
        self.written = 0.0

    def __call__(self, stage: str, fraction: float, file: str) -> None:
        now = time.monotonic()
        if stage == self.stage and now - self.written < PROGRESS_INTERVAL and fraction < 1.0:
            return
        self.stage, self.written = stage, now
        stop = self.write(stage, fraction)
        if stop:
            raise CancelledError(f"{Path(file).name}: {stop}")


class _Reporter:
    """A ProgressCallback that remembers what it last reported, so a long step without a fraction of its own
    (a detection, a decoded frame, the engine's load) can report it again: the bar stays where it is, and a
    cancel raised from the callback stops the step within a frame or so. Safe to call from the decode thread."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self._progress = progress
        self._last: tuple[str, float, str] | None = None

    def __call__(self, stage: str, fraction: float, file: str) -> None:
        self._last = (stage, fraction, file)
        if self._progress is not None:
            self._progress(stage, fraction, file)

    def again(self) -> None:
        """Report the last report again (nothing before the first one)."""
        if self._last is not None and self._progress is not None:
            self._progress(*self._last)


def _reporter(progress: ProgressCallback | None) -> _Reporter:
    return progress if isinstance(progress, _Reporter) else _Reporter(progress)


@dataclass
class PreparedAudio:
    """Speech decoded and turned into features once, reusable for every video of a batch."""

    path: Path
    info: MediaInfo
    samples: np.ndarray  # float32 mono at 16 kHz, a quiet recording raised to a normal level
    raised_db: float = 0.0  # how much louder than recorded the speech is read (heygem.media.audio.read_speech)
    silent: bool = False  # nothing anyone hears in it (heygem.media.audio.read_speech)
    _mel: np.ndarray | None = field(default=None, repr=False)
    _phones: list | None = field(default=None, repr=False)
    _background: Any = field(default=None, repr=False)  # heygem.speech BackgroundPhones while one runs
    _mel_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def duration(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    @property
    def mel(self) -> np.ndarray:
        """The mel spectrogram (80, T), on first use: a job can start the phones' recognition before it."""
        with self._mel_lock:
            if self._mel is None:
                self._mel = mel_spectrogram(self.samples)
            return self._mel

    def start_phones(self, alone: bool = False) -> None:
        """Start recognising the speech's sounds in child processes (heygem.speech.phones), to run
        beside other work (``alone``: nothing else runs until they are collected, so they take every core);
        ``phones`` collects them. Nothing happens when they are known or already being recognised."""
        if self._phones is not None or self._background is not None:
            return
        from heygem.speech.phones import BackgroundPhones

        try:
            self._background = BackgroundPhones(self.samples, SAMPLE_RATE, alone)
        except OSError as exc:  # no process to be had: ``phones`` recognises them here instead
            log.warning("could not start the phone recognition beside the study (%s); it runs after it", exc)

    def close(self) -> None:
        """Stop a background recognition nobody collected (every job of its batch cancelled, say)."""
        if self._background is not None:
            self._background.close()
            self._background = None

    def phones(self, tick: Callable[[float], None] | None = None) -> list:
        """The sounds recognised in the speech (heygem.speech), on first use; kept for the batch's next video.
        ``tick(share done)`` is called as the recognition goes, and while a background recognition
        (``start_phones``) is awaited (an exception from it stops either)."""
        if self._phones is not None:
            return self._phones
        started = time.perf_counter()
        if self._background is not None:
            background, self._background = self._background, None
            try:  # the child is gone afterwards however this ends (``result`` closes it)
                self._phones = background.result(None if tick is None else lambda: tick(0.0))
            except RuntimeError as exc:
                log.warning("%s: %s; recognising them here", self.path.name, exc)
        if self._phones is None:
            from heygem.speech.phones import recognise_phones

            self._phones = recognise_phones(self.samples, SAMPLE_RATE, tick)
        log.info("recognised %d phones in %s (%.2f s of speech); waited %.2f s for them", len(self._phones),
                 self.path.name, self.duration, time.perf_counter() - started)
        return self._phones


@dataclass
class GenerateResult:
    """What one generation produced and how."""

    output: Path
    audio: Path
    video: Path
    engine: str
    frames: int
    frames_without_face: int
    fps: float
    width: int
    height: int
    duration: float
    timings: dict[str, float] = field(default_factory=dict)
    # Seconds each stage was busy in each TIMELINE_SECONDS of the run, from its start (more than the step where
    # several threads ran the stage at once).
    timeline: dict[str, list[float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    faces_detected: int = 0  # detector calls (0 when the face cache knew the video)
    face_cache: str = "off"  # off, miss, hit, or partial (the video was cached, but for fewer frames)
    study: str = "off"  # the presenter study: off (the engine needs none), made, or cached
    engine_info: EngineDescription | None = None  # ``engine`` as data, for a front end to word in its language


def prepare_audio(path: str | Path, limits: Limits | None = None, progress: ProgressCallback | None = None) -> PreparedAudio:
    """Decode any file with an audio stream to 16 kHz mono (its mel spectrogram and phones follow on first use).

    With ``limits``, a speech longer than ``limits.speech_minutes`` is refused (LimitError), by its probed
    length and again while decoding, so no more than the limit is ever held. ``progress`` hears the stage
    ``audio`` as the decoding goes (a cancel raised from it stops the decoding).
    """
    path = Path(path)
    report = _reporter(progress)
    report("audio", 0.0, str(path))
    info = probe(path)
    if not info.has_audio:
        raise InputError(path, "has no audio stream; give a speech recording (wav, mp3, m4a, flac, ...) or a video with sound",
                         "no_sound")
    max_seconds = limits.speech_minutes * 60 if limits is not None and limits.speech_minutes else None
    if limits is not None:
        check_speech(info, limits)
    length = info.audio_duration or info.duration or 0.0

    def decoded(seconds: float) -> None:
        report("audio", min(1.0, seconds / length) if length else 0.0, str(path))

    try:
        speech = read_speech(path, SAMPLE_RATE, max_seconds, tick=decoded, stream=info.audio_stream)
    except TooLongError:
        raise speech_too_long(path, None, limits) from None
    report("audio", 1.0, str(path))
    return PreparedAudio(path, info, speech.samples, speech.raised_db, speech.silent)


def source_index(out_index: int, source_frames: int, policy: str) -> int:
    """Which source frame output frame ``out_index`` shows: the video plays once, then continues by
    ping-pong (forward, backward, forward...) or by looping."""
    if out_index < source_frames or source_frames == 1:
        return min(out_index, source_frames - 1)
    if policy == "loop":
        return out_index % source_frames
    period = 2 * (source_frames - 1)
    phase = out_index % period
    return phase if phase < source_frames else period - phase


def default_output(video: Path, audio: Path, out_dir: Path) -> Path:
    """``<video>__<audio>.mp4`` in ``out_dir``, numbered so an earlier result is never overwritten."""

    def safe(name: str) -> str:
        return re.sub(r"[^\w.-]+", "_", name).strip("._")[:60] or "input"

    base = f"{safe(video.stem)}__{safe(audio.stem)}"
    candidate = out_dir / f"{base}.mp4"
    number = 1
    while candidate.exists():
        candidate = out_dir / f"{base}-{number}.mp4"
        number += 1
    return candidate


TIMELINE_SECONDS = 0.5  # the width of one step of GenerateResult.timeline


class _Stopwatch:
    """Seconds spent per stage, summed over the whole stream, and per ``TIMELINE_SECONDS`` of the run (when
    each stage was busy: the timeline `python -m heygem.bench --timeline` draws). Stages are timed in several
    threads at once."""

    def __init__(self) -> None:
        self.timeline: dict[str, list[float]] = {}
        self._started = time.perf_counter()
        self._lock = threading.Lock()

    @property
    def seconds(self) -> dict[str, float]:
        """Each stage's seconds, summed over the stream."""
        with self._lock:
            return {stage: sum(steps) for stage, steps in self.timeline.items()}

    def forget(self, stage: str) -> None:
        """Drop ``stage`` from the seconds and the timeline (its work was read back, not done)."""
        with self._lock:
            self.timeline.pop(stage, None)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add(stage, start, time.perf_counter())

    def _add(self, stage: str, start: float, end: float) -> None:
        with self._lock:
            steps = self.timeline.setdefault(stage, [])
            begin, finish = start - self._started, end - self._started
            step = int(begin // TIMELINE_SECONDS)
            while begin < finish:  # the interval's share of each step it spans
                upto = min(finish, (step + 1) * TIMELINE_SECONDS)
                if len(steps) <= step:
                    steps.extend([0.0] * (step + 1 - len(steps)))
                steps[step] += upto - begin
                begin, step = upto, step + 1


class _BackgroundWriter:
    """Feeds frames to a VideoWriter from a thread of its own, so the engine need not wait while ffmpeg's
    pipe is full. At most ``depth`` frames wait; a failure of the writer is raised at the next call."""

    def __init__(self, writer: VideoWriter, depth: int, stopwatch: _Stopwatch) -> None:
        self.writer = writer
        self._frames: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._stopwatch = stopwatch
        self._thread = threading.Thread(target=self._run, name="heygem-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            frame = self._frames.get()
            if frame is None:
                return
            if self._error is not None:
                continue  # drain: the consumer learns of the error at its next call
            try:
                with self._stopwatch("encode"):
                    self.writer.write(frame)
            except BaseException as exc:
                self._error = exc

    def write(self, frame: np.ndarray) -> None:
        if self._error is not None:
            raise self._error
        self._frames.put(frame)

    def close(self, waiting: Callable[[], None] | None = None) -> None:
        """Wait for every frame to be written, then finish the file; ``waiting`` is called while it waits (see
        VideoWriter.close)."""
        self._frames.put(None)
        while self._thread.is_alive():
            self._thread.join(timeout=0.2)
            if waiting is not None and self._thread.is_alive():
                waiting()
        if self._error is not None:
            raise self._error
        self.writer.close(waiting)

    def abort(self) -> None:
        self._error = self._error or RuntimeError("aborted")
        self._frames.put(None)
        self._thread.join()
        self.writer.abort()


@dataclass
class _Frame:
    index: int  # output frame number; -1 for a frame read past the speech's end only to find the faces
    source: int  # source frame number
    image: np.ndarray | YuvFrame  # BGR, or as decoded (``_SourceFrames`` with a conversion)


def one_opencv_thread() -> None:
    """For a process that runs jobs on this machine (the command line, the studio, the benchmark): OpenCV does
    each call on one thread. A job already runs its stages side by side on threads of their own, with ffmpeg's
    decoder and encoder beside them, and OpenCV splitting a call over the cores as well only adds waiting (a new
    presenter's job, 60 s of 720p on two cores: 1.2 s less CPU, the same frames). Ray workers set theirs
    (heygem.cluster.worker.use_threads)."""
    cv2.setNumThreads(1)


def _bgr(image: np.ndarray | YuvFrame) -> np.ndarray:
    """The whole frame in BGR."""
    return image.bgr() if isinstance(image, YuvFrame) else image


# Of a frame kept as decoded, the part turned into BGR around its face's crop box (heygem.media.yuv): the box,
# and this share of its size on either side and below, where a mouth drawn low in a turned face may reach.
# (The drawn mouths of the shared videos stay at least 1.6% of the box inside its bottom edge, 6% of its sides.)
FACE_PART_SIDES = 0.1
FACE_PART_BELOW = 0.1


def _face_part(image: YuvFrame, box: tuple[int, int, int, int]) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The rectangle of ``image`` around the crop ``box`` that is drawn on, and its BGR."""
    x1, y1, x2, y2 = box
    side, below = round(FACE_PART_SIDES * (x2 - x1)), round(FACE_PART_BELOW * (y2 - y1))
    rect = image.even(x1 - side, y1, x2 + side, y2 + below)
    return rect, image.bgr(rect)


def _put_drawn(image: YuvFrame, rect: tuple[int, int, int, int], picture: np.ndarray,
               drawn: tuple[int, int, int, int] | None) -> None:
    """What an engine drew on ``picture`` (the face part at ``rect``) written back into ``image``: the rectangle it
    says it drew into (``Engine.paint``, grown to whole chroma blocks), or all of it where it cannot say. The
    rest of the part stays as decoded."""
    if drawn is not None:
        x0, y0, x1, y1 = drawn
        if x1 <= x0 or y1 <= y0:
            return
        left, top = rect[:2]
        rect = image.even(left + x0, top + y0, left + x1, top + y1)  # still inside the part: its edges are even
        picture = picture[rect[1] - top:rect[3] - top, rect[0] - left:rect[2] - left]
    image.put(rect, picture)


class _SpillFile:
    """Decoded source frames on disk, read back by index for ping-pong or looping (RAM stays flat); frames of
    the kind and size of ``like``."""

    def __init__(self, directory: Path, like: np.ndarray | YuvFrame) -> None:
        self.like = like.copy() if isinstance(like, YuvFrame) else None  # how a frame read back is made
        self.shape = like.shape if isinstance(like, np.ndarray) else (like.data.size,)
        self.frame_bytes = int(np.prod(self.shape))
        handle, name = tempfile.mkstemp(prefix=".heygem-frames-", suffix=".raw", dir=directory)
        self.fd = handle
        os.unlink(name)  # the data lives as long as the descriptor; nothing is left behind on a crash
        self.count = 0

    def append(self, frame: np.ndarray | YuvFrame) -> None:
        data = frame.data if isinstance(frame, YuvFrame) else np.ascontiguousarray(frame)
        os.pwrite(self.fd, data.data, self.count * self.frame_bytes)
        self.count += 1

    def read(self, index: int) -> np.ndarray | YuvFrame:
        data = os.pread(self.fd, self.frame_bytes, index * self.frame_bytes)
        frame = np.frombuffer(bytearray(data), dtype=np.uint8).reshape(self.shape)
        return frame if self.like is None else self.like.like(frame)

    def close(self) -> None:
        os.close(self.fd)


def out_of_step_note(info: MediaInfo, lag: int, fps: float) -> CodedText:
    """The note for a presenter whose footage's sound was recorded ``lag`` frames ahead of its picture (negative:
    behind; ``heygem.footage.sound_lag``): the person filming it may want to know, and its jobs' mouths are
    chosen by the sounds they were making."""
    ms = round(abs(lag) * 1000 / fps)
    code, way = ("note_sound_early", "before") if lag > 0 else ("note_sound_late", "after")
    return CodedText(code, f"{info.path.name}: its sound comes {ms} ms {way} the mouth that makes it (recorded out of "
                           "step with the picture); its jobs choose its mouths by the sounds they were making.",
                     file=info.path.name, ms=ms)


def cut_short_note(info: MediaInfo, decoded: int, total: int) -> str | None:
    """Judge a video whose decoding ended after ``decoded`` frames while ``total`` output frames were wanted:
    None when it holds what its header promised for that part (within the estimate's error), a note for the
    result when a little is missing; InputError naming the file when much is (see CUT_SHORT_*)."""
    promised = min(total, info.frame_count)
    missing = promised - decoded
    if info.kind != "video" or missing <= max(CUT_SHORT_TOLERANCE_FRAMES, CUT_SHORT_TOLERANCE_SHARE * promised):
        return None
    what = (f"decoded only {decoded} of the {info.frame_count} frames its header promises; the file is probably "
            "cut short (an interrupted upload or copy)")
    if decoded < CUT_SHORT_ERROR_SHARE * promised:
        raise InputError(info.path, f"{what}; give the complete file (upload or copy it again)", "cut_short",
                         decoded=decoded, promised=info.frame_count)
    seconds = missing / float(info.fps) if info.fps else 0.0
    return CodedText("note_cut_short", f"CUT SHORT: {info.path.name} {what}: its last {seconds:.1f} s are missing, so "
                     "the result continues from the frames there are; give the complete file for the whole video",
                     file=info.path.name, decoded=decoded, promised=info.frame_count, seconds=round(seconds, 1))


class _SourceFrames:
    """The source's frames in output order: one forward pass over the decoded video (cut at the audio's
    length), then, if the audio is longer, the rest replayed by the length policy. A video that ends well
    before its header says is judged by ``cut_short_note`` (a note appended to ``notes``, or an error)."""

    def __init__(self, info: MediaInfo, fps: Fraction, total: int, policy: str, spill_dir: Path,
                 notes: list[str] | None = None, convert: Conversion | None = None) -> None:
        self.info, self.fps, self.total, self.policy = info, fps, total, policy
        self.convert = convert  # frames kept as decoded (YuvFrame) with this conversion to BGR, or BGR
        self.spill_dir = spill_dir
        self.notes = notes if notes is not None else []
        self.decoded = 0  # source frames seen in the forward pass
        self.ended = False  # the forward pass reached the video's end
        self._spill: _SpillFile | None = None
        self._held: np.ndarray | None = None  # a still photo, or the last frame when nothing is spilled
        self.keep = self.replay_window(info, total, policy)

    @staticmethod
    def replay_window(info: MediaInfo, total: int, policy: str) -> tuple[int, int]:
        """Source frames ``[first, stop)`` the replay may need, by the probed length: ping-pong walks back from
        the end, loop starts again at the start; only as many as the speech outlasts the video, plus a margin
        for the probe's estimate. Empty when the video is clearly longer than the speech. (Keeping every frame
        would take 93 GB of disk for 10 minutes of 1080p.)"""
        if info.kind != "video":
            return 0, 0
        expected = max(1, info.frame_count)
        margin = 50 + expected // 100  # 2 s at 25 fps, and 1% for variable frame rates
        need = total - expected + margin
        if need <= 0:
            return 0, 0
        if need >= expected:
            return 0, 1 << 62  # the video replays more than once: every frame
        return (max(0, expected - need - 1), 1 << 62) if policy == "pingpong" else (0, need)

    def forward(self, ahead: Anchors | None = None) -> Iterator[_Frame]:
        """The source frames the speech needs, in order. With ``ahead``, a video longer than that is read on to
        the next of those anchors (or its end): the frames past the speech come last, with ``index`` -1, for the
        face search alone (so a frame's face never depends on where the speech ends)."""
        first, stop = self.keep
        number = end = 0  # past the speech: this frame's number, and the last one to read
        for image in self._decoded():
            if self.decoded >= self.total:
                yield _Frame(-1, number, image)
                if number >= end:
                    return
                number += 1
                continue
            if isinstance(image, np.ndarray) and not image.flags.writeable:
                image = image.copy()
            if first <= self.decoded < stop:
                if self._spill is None:
                    self._spill = _SpillFile(self.spill_dir, image)
                self._spill.append(image)
            elif self._held is None or self._held.shape != image.shape:
                self._held = image.copy()  # the last frame, should the replay need one not kept; blending writes to ``image``
            elif isinstance(image, YuvFrame):  # into the same array: a fresh one each frame costs more
                np.copyto(self._held.data, image.data)
            else:
                np.copyto(self._held, image)
            yield _Frame(self.decoded, self.decoded, image)
            self.decoded += 1
            if self.decoded >= self.total:
                if ahead is None or self.decoded - 1 in ahead:
                    return
                number, end = self.decoded, ahead.next(self.decoded)
        self.ended = True
        # The video ended before the speech: did it hold what its header promised?
        note = cut_short_note(self.info, self.decoded, self.total)
        if note:
            log.warning("%s", note)
            self.notes.append(note)

    def replay(self) -> Iterator[_Frame]:
        """Output frames past the end of the source, by the length policy."""
        first = self.keep[0]
        kept = self._spill.count if self._spill is not None else 0
        if self.info.kind == "video" and self.decoded < self.total:
            needed = [source_index(i, self.decoded, self.policy) for i in range(self.decoded, self.total)]
            lo, hi = min(needed), max(needed)
            if not first <= lo <= hi < first + kept:
                first, kept = self._keep_again(lo, hi)
        warned = False
        for index in range(self.decoded, self.total):
            src = source_index(index, self.decoded, self.policy)
            if first <= src < first + kept:
                yield _Frame(index, src, self._spill.read(src - first))
                continue
            if not warned and self.info.kind == "video":  # the probe's length was far off
                log.warning("%s decoded to %d frames, not the %d probed; holding its last frame where a kept "
                            "one is missing", self.info.path.name, self.decoded, self.info.frame_count)
                warned = True
            last = self.decoded - 1
            held = self._spill.read(last - first) if first <= last < first + kept else self._held.copy()
            yield _Frame(index, last, held)

    def _keep_again(self, lo: int, hi: int) -> tuple[int, int]:
        """Decode the video again to keep source frames ``lo``..``hi`` for the replay: it ended well before its
        header said, before the frames kept by its promised length. Better than holding one frame still (a
        video that turns into a photo). Returns the new (first, kept)."""
        log.warning("%s ended at frame %d, not the %d its header promises; decoding it again for the frames "
                    "%d-%d the replay shows", self.info.path.name, self.decoded, self.info.frame_count, lo, hi)
        self.close()
        frames = self._decoded()
        try:
            for number, image in enumerate(frames):
                if number > hi:
                    break
                if number >= lo:
                    if self._spill is None:
                        self._spill = _SpillFile(self.spill_dir, image)
                    self._spill.append(image)
        finally:
            frames.close()
        self.keep = (lo, hi + 1)
        return lo, self._spill.count if self._spill is not None else 0

    def _decoded(self) -> Iterator[np.ndarray | YuvFrame]:
        if self.convert is not None:
            return iter_yuv_frames(self.info, self.fps, self.convert)
        return iter_frames(self.info, self.fps)

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None


def _require_picture(video: MediaInfo) -> None:
    if video.kind == "audio":
        raise InputError(video.path, NO_PICTURE, "no_picture")


def _validate(audio: PreparedAudio, video: MediaInfo) -> None:
    _require_picture(video)
    if audio.duration < 0.05:
        raise InputError(audio.path, f"the speech is only {audio.duration:.3f} s long; give at least a fraction of a second",
                         "speech_too_short", seconds=round(audio.duration, 3))


def _number(rate: Fraction) -> int | float:
    """A frame rate as a note's value shows it: 60, 29.97."""
    value = round(float(rate), 2)
    return int(value) if value.is_integer() else value


def output_fps(video: MediaInfo, settings: Settings) -> Fraction:
    """The source's own frame rate; ``still_fps`` for a photo."""
    return video.fps if video.kind == "video" and video.fps else Fraction(settings.still_fps)


def _face_cache(video: MediaInfo, det: DetectionOptions, fps: Fraction) -> FaceCache | None:
    """Where the faces of ``video`` are kept, under everything that changes which face a frame gets; None for
    a photo (one frame) or without a cache folder. Jobs and presenter preparation share it."""
    if det.cache_dir is None or video.kind != "video":
        return None
    return FaceCache(det.cache_dir, video, (det.detector, det.detect_size, det.detector_weights, det.face,
                                            study_anchors(det, fps), fps))


def _known_faces(cached: CachedFaces, anchors: Anchors) -> list[Face | None]:
    """The kept faces a job may take and go on from: all of them when they reach the video's end, else up to
    their last anchor."""
    return cached.faces if cached.complete else cached.faces[:anchors.known_prefix(cached.faces)]


def _study_dir(det: DetectionOptions) -> Path | None:
    """Where presenter studies are kept: beside the face cache (None without one). Jobs and presenter
    preparation share it."""
    return det.cache_dir.parent / "studies" if det.cache_dir is not None else None


def _mesh_dir(det: DetectionOptions) -> Path | None:
    """Where face mesh points are kept (heygem.faces.mesh_memo): beside the face cache, None without one."""
    return det.cache_dir.parent / "mesh" if det.cache_dir is not None else None


def iter_synced_frames(
    audio: PreparedAudio,
    video: MediaInfo,
    engine: Engine,
    settings: Settings,
    stats: dict[str, int] | None = None,
    stopwatch: _Stopwatch | None = None,
    progress: ProgressCallback | None = None,
    notes: list[str] | None = None,
    pictures: bool = False,
) -> Iterator[tuple[int, np.ndarray | YuvFrame, tuple[int, int, int, int] | None]]:
    """The output frames in order, before encoding: ``(output index, frame, crop box or None)``.

    The frames are BGR arrays; with ``pictures``, those of a video an engine draws into may come as decoded
    (``heygem.media.yuv.YuvFrame``, for ``VideoWriter``): only the part around the face was turned into BGR and
    back, the rest is the decoder's own picture.

    Frames where no face was found come back exactly as decoded and are counted in ``stats``. A picture whose
    face is only found turned is lip-synced turned upright; its frames and boxes come back turned back, as
    the source is. What the user should know about the video (turned, cut short, faces missing) is appended
    to ``notes``.
    """
    _validate(audio, video)
    report = _reporter(progress)  # each step reports, so that a cancel (raised from the report) stops it too
    stats = stats if stats is not None else {}
    notes = notes if notes is not None else []
    stopwatch = stopwatch or _Stopwatch()
    det = settings.detection
    fps = output_fps(video, settings)
    total = frame_count(len(audio.samples), fps, SAMPLE_RATE)
    stats.update(frames=total, frames_without_face=0, turn=0)
    detector = None if det.box else get_detector(det.detector, det.detect_size, det.detector_weights)
    face_cache = _face_cache(video, det, fps) if detector is not None else None
    stats.update(faces_detected=0, face_cache="off" if face_cache is None else "miss", study="off")
    counter = {"detected": 0}  # detector calls, the orientation's included
    cached = face_cache.load_entry() if face_cache is not None else CachedFaces()
    turn = cached.turn if cached.faces else 0
    face_height = cached.face_height if cached.faces else None
    drive = settings.engine.mouth_drive
    if drive == "auto":  # the person's own mouths wherever their footage can teach them, else the key mouths
        drive = "footage" if engine.wants_study and footage_may_speak(video) else "phones"
        log.info("mouth drive: %s (%s)", drive, "the presenter's footage carries speech" if drive == "footage"
                 else f"a photo, or footage under {FOOTAGE_MIN_SECONDS:g} s or without speech of its own")
    phones_wanted = engine.wants_study and drive in ("phones", "footage")
    if phones_wanted:
        # First, in processes of their own, beside all that comes before the main pass here (the mel features,
        # the orientation, the study); on every core when the study is kept (nothing else runs until they are
        # known: the main pass needs them from its first frame).
        kept = study_kept(turned(video, turn) if turn else video, fps, det, engine.crop_size, engine.crop_margin,
                          _study_dir(det))
        audio.start_phones(alone=drive == "phones" and kept)
    chunks = MelChunks(audio.mel, fps, total) if engine.wants_mel else None  # 0.15-0.5 s of CPU a minute
    orientation: Orientation | None = None
    if detector is not None and not cached.faces:
        with stopwatch("orientation"):
            # Over the video's first seconds, however long the speech: the turn is the video's, kept with its faces.
            samples = sample_frames(video, ORIENTATION_SAMPLES, ORIENTATION_SECONDS)
            orientation = find_orientation(samples, _checking(detector.detect, report))
        counter["detected"] += orientation.detector_calls
        turn, face_height = orientation.turn, orientation.face_height
    if det.face != "largest" or video.kind != "video":
        face_height = None  # the n-th face from the left must be found however small; a photo is found once
    stats.update(turn=turn, faces_detected=counter["detected"])
    source_video = video
    if turn:
        video = turned(video, turn)  # what the engine and the face boxes see; the output is turned back
        flag = "a rotation flag that turns it otherwise" if source_video.rotation else "no rotation flag that says so"
        notes.append(CodedText(
            "note_turned", f"the face was found with the picture turned {describe_turn(turn)} ({video.path.name} "
            f"carries {flag}): it was lip-synced turned upright and turned back, so the result is the same way up "
            "as the source", file=video.path.name, turn=turn))
        log.warning("%s: %s", video.path.name, notes[-1])
    back = (360 - turn) % 360
    study = shapes = footage = phones = None
    # The stages a person sees: "study" while the presenter is studied (the slow part of a fresh video), then
    # "phones" while the speech's sounds are still being recognised (they cost with the speech's length, the
    # study with the video's); the page words each, and the queue times each for its estimates.
    reading = "probe"
    # The face mesh points of this video's crops found by earlier jobs (or the study below), kept beside its
    # faces (the engines that study presenters find them on every frame).
    mesh = (mesh_memo(_mesh_dir(det), video, (engine.name, engine.crop_size, engine.crop_margin))
            if engine.wants_study and det.cache_dir is not None and video.kind == "video" else None)
    if engine.wants_study:
        with stopwatch("study"):  # the presenter's own mouths (upright); from the cache for one seen before
            study = study_presenter(video, fps, det, engine.crop_size, engine.crop_margin, _study_dir(det), stats,
                                    tick=lambda done: report("study", done, str(video.path)), face_height=face_height,
                                    memo=mesh)
        if stats["study"] == "cached":  # read back, not made: no study stage, as kept faces make no detection stage
            stopwatch.forget("study")
        else:
            reading = "study"
        if drive == "footage" and study is not None and video.kind == "video":
            with stopwatch("footage"):  # every frame's mouth, for the engine to choose from; kept like the study
                footage = study_footage(video, det, _study_dir(det), stats=stats,
                                        tick=lambda done: report("study", done, str(video.path)))
            if stats.get("footage") == "cached":
                stopwatch.forget("footage")
            else:
                reading = "study"
        if phones_wanted:
            reading = "phones"
            report("phones", 0.0, str(video.path))  # a cancel is seen here, and while they are awaited
            with stopwatch("phones"):  # the wait for them beyond the study; once per speech for a batch
                # The loudness first, while their processes work on (65-90 ms a minute of speech, since it no
                # longer imports scipy: no thread of its own beside the study is worth it).
                envelope = voice_envelope(audio.samples, fps, total)
                phones = audio.phones(lambda done: report("phones", done, str(video.path)))
                shapes = mouth_shapes(phones, audio.samples, fps, total, envelope=envelope)
    report(reading, 1.0 if study is not None else 0.5, str(video.path))  # the faces and the study are known
    with stopwatch("engine start"):
        shown = None
        if footage is not None and video.kind == "video":  # which picture each chosen mouth is drawn on
            shown = np.array([source_index(t, max(1, video.frame_count), settings.length_policy)
                              for t in range(total)], np.int64)
        engine.start(EngineJob(video, audio.samples, audio.mel if chunks is not None else None, fps, total, det,
                               study, shapes, drive, footage, phones, settings.engine.still, mesh, shown))
    report.again()
    spill_dir = settings.out_dir if settings.out_dir.is_dir() else Path(tempfile.gettempdir())
    # Frames kept as decoded where the engine draws into them: only the face's part is turned into BGR and back.
    convert = yuv_conversion(video) if pictures and engine.paints_frames and not turn else None
    source = _SourceFrames(video, fps, total, settings.length_policy, spill_dir, notes, convert)
    faces_by_source: dict[int, Face | None] = {}
    anchors = study_anchors(det, fps)
    known = _known_faces(cached, anchors)
    # Faces to find beyond the kept ones: then the video is read on past the speech to the next anchor.
    searching = detector is not None and not cached.complete and len(known) < total

    # The study searched the faces of its seconds as this pass does, on the same anchors: the same decoded
    # frames give the same faces, so they are taken, not detected again.
    studied = study.detections if study is not None else {}

    def detect_one(frame: _Frame, previous: Face | None) -> Face | None:
        found = studied.get(frame.source)
        if found is None:
            report.again()  # a detection takes a while on a CPU: a cancel is seen between two
            counter["detected"] += 1
            with stopwatch("detect"):
                found = detector.detect(_bgr(frame.image), face_height)
        return select_face(found, det.face, previous)

    def detected(frames: Iterator[_Frame]) -> Iterator[tuple[_Frame, Face | None]]:
        if det.box:
            for frame in frames:
                yield frame, Face(*map(float, det.box))
            return
        seen: list[Face | None] = []  # by source frame number, for the cache
        for frame in frames:
            report.again()  # reading ahead of the engine (the decode thread): a cancel is seen here too
            if frame.source < len(known):
                seen.append(known[frame.source])
                yield frame, seen[-1]
                continue
            # Past the kept faces (or none kept): find this frame's and the rest's, going on from the kept ones.
            rest = ((f, f) for f in itertools.chain([frame], frames))  # detect_one looks the frame up first
            for later, face in sparse_detect(rest, detect_one, anchors, known=tuple(seen)):
                seen.append(face)
                if later.index >= 0:  # not a frame read past the speech for its face alone
                    yield later, face
            break
        stats["faces_detected"] = counter["detected"]
        if cached.faces:
            stats["face_cache"] = "hit" if len(seen) <= len(known) else "partial"
        if face_cache is not None and (len(seen) > len(cached.faces) or (source.ended and not cached.complete)):
            face_cache.save(seen, turn, complete=source.ended, face_height=face_height)

    def with_faces() -> Iterator[tuple[_Frame, Face | None]]:
        frames = source.forward(anchors if searching else None)
        for frame, face in smooth_faces(detected(_timed(stopwatch, "decode", frames)), det.smooth_window):
            faces_by_source[frame.source] = face
            yield frame, face
        if not faces_by_source:
            raise InputError(video.path, "no video frame could be decoded; the file may be damaged", "no_frames")
        if not any(face is not None for face in faces_by_source.values()):
            which = "face" if det.face == "largest" else f"face number {det.face} (counted from 0, left to right)"
            raise NoFaceError(video.path, f"no {which} found in any of the {len(faces_by_source)} frames used; "
                              "give a video or photo where the face is clearly visible, or pass a face box",
                              "no_face" if det.face == "largest" else "no_face_number", frames=len(faces_by_source),
                              **({} if det.face == "largest" else {"face": det.face}))
        for frame in _timed(stopwatch, "decode", source.replay()):
            yield frame, faces_by_source.get(frame.source)

    frame_bytes = max(1, video.width * video.height * 3)
    max_pending = max(1, min(getattr(engine, "batch_size", 16), PENDING_FRAMES_BYTES // frame_bytes))
    pending: list[tuple[_Frame, tuple[int, int, int, int] | None]] = []

    def flush() -> Iterator[tuple[int, np.ndarray | YuvFrame, tuple[int, int, int, int] | None]]:
        with_box = [(frame, box) for frame, box in pending if box is not None]
        if with_box:
            size = engine.crop_size
            if convert is not None:  # the face's part of each frame in BGR, its box there, written back below
                parts = [_face_part(f.image, b) for f, b in with_box]
                images = [picture for _, picture in parts]
                boxes = [(b[0] - r[0], b[1] - r[1], b[2] - r[0], b[3] - r[1]) for (_, b), (r, _) in zip(with_box, parts)]
            else:
                images, boxes = [f.image for f, _ in with_box], [b for _, b in with_box]
            crops = np.stack([cut_crop(image, b, size) for image, b in zip(images, boxes)])
            mels = (np.stack([chunks[f.index] for f, _ in with_box]).astype(np.float32) if chunks is not None
                    else np.zeros((len(with_box), 0, 0), np.float32))
            indices = np.array([f.index for f, _ in with_box])
            if engine.paints_frames:
                with stopwatch("synthesis"):  # its own blend included: it draws into the frames
                    drawn = engine.paint(images, boxes, crops, mels, indices)
                    if convert is not None:
                        for (frame, _), (rect, picture), where in zip(with_box, parts, drawn):
                            _put_drawn(frame.image, rect, picture, where)
            else:
                with stopwatch("synthesis"):
                    mouths = engine.synthesize(crops, mels, indices)
                with stopwatch("blend"):
                    for (frame, box), mouth in zip(with_box, mouths):
                        blend.paste(frame.image, mouth, box, settings.blend.mode, settings.blend.feather,
                                    engine.blend_top)
        for frame, box in pending:
            if back:  # the source's own way up again
                yield (frame.index, turn_image(frame.image, back),
                       None if box is None else turn_box(box, back, video.width, video.height))
            else:
                yield frame.index, frame.image, box
        if progress and pending:
            progress("lip-sync", (pending[-1][0].index + 1) / total, str(video.path))
        pending.clear()

    faces = Prefetch(with_faces(), max_pending, "heygem-decode") if settings.overlap else with_faces()
    try:
        for frame, face in faces:
            box = None
            if face is None:
                stats["frames_without_face"] += 1
            else:
                box = crop_box(face, frame.image.shape[1], frame.image.shape[0], det.pads, engine.crop_margin)
            pending.append((frame, box))
            if len(pending) >= max_pending:
                yield from flush()
        yield from flush()
        if mesh is not None:
            stats["mesh_kept"] = mesh.kept_hits  # crops whose face mesh points earlier jobs or the preparation kept
            log.debug("face mesh points: %d of %d crops found by earlier jobs, %d by the study", mesh.kept_hits,
                      total, mesh.hits - mesh.kept_hits)
            mesh.save()
    finally:
        if isinstance(faces, Prefetch):
            faces.close()  # before the source's spill file is closed under it
        source.close()
    note = _missing_faces_note(stats, orientation)
    if note:
        notes.append(note)
        log.warning("%s: %s", source_video.path.name, note)


def _missing_faces_note(stats: dict[str, int], orientation: Orientation | None) -> str | None:
    """What the result says about frames without a face: loudly when they are most of the video, since the
    result then looks like the source."""
    missing, frames = stats["frames_without_face"], stats["frames"]
    if not missing:
        return None
    if 2 * missing <= frames:
        return CodedText("note_faces_missing", f"{missing} of {frames} frames had no face and were left as they were",
                         missing=missing, frames=frames)
    tried = " (nor with the picture turned 90°, 180° or 270°)" if orientation and orientation.tried_turns else ""
    return CodedText("note_left_unchanged", f"LEFT UNCHANGED: no face in {missing} of {frames} frames{tried}; those "
                     f"frames are exactly the source's, only the other {frames - missing} were lip-synced; give a video "
                     "where the face is clearly visible, or pass a face box", missing=missing, frames=frames,
                     synced=frames - missing)


def _timed(stopwatch: _Stopwatch, stage: str, frames: Iterator[_Frame]) -> Iterator[_Frame]:
    """Count the time spent producing each item of ``frames`` as ``stage``."""
    while True:
        with stopwatch(stage):
            frame = next(frames, None)
        if frame is None:
            return
        yield frame


def _checking(detect: Callable[[np.ndarray], list[Face]], report: _Reporter) -> Callable[[np.ndarray], list[Face]]:
    """``detect`` that reports again before each detection, so a cancel stops a run of them (the orientation
    check) between two."""

    def checked(image: np.ndarray) -> list[Face]:
        report.again()
        return detect(image)

    return checked


def generate(
    audio: str | Path | PreparedAudio,
    video: str | Path,
    output: str | Path | None = None,
    settings: Settings | None = None,
    progress: ProgressCallback | None = None,
) -> GenerateResult:
    """Re-sync the mouth in ``video`` (a video or a photo) to the speech in ``audio``; write an .mp4.

    ``audio`` may be prepared once with ``prepare_audio`` and reused for many videos. The output goes to
    ``output``, or to ``settings.out_dir`` under a new name; it appears only once complete.
    """
    settings = settings or Settings()
    report = _reporter(progress)
    video_path = Path(video)
    started = time.perf_counter()

    report("probe", 0.0, str(video_path))
    info = probe(video_path)
    _require_picture(info)  # before the speech is decoded: fail fast
    notes: list[str] = []
    fitted = fit_picture(info, settings.limits.picture_side)  # before anything else reads the picture
    if fitted != info:
        notes.append(CodedText(
            "note_scaled_down", f"{video_path.name} is {info.width}x{info.height}; scaled down to {fitted.width}x"
            f"{fitted.height} (the picture-side limit; {settings.limits.how_to_raise('picture_side')})",
            file=video_path.name, width=info.width, height=info.height, new_width=fitted.width,
            new_height=fitted.height))
        log.warning("%s", notes[-1])
        info = fitted
    paced = fit_rate(info)
    if paced != info:
        fps, new_fps = _number(info.fps), _number(paced.fps)
        code, words = (("note_rate_lowered", f"runs at {fps} fps; read and made at {new_fps} fps, the most HeyGem "
                        "makes") if paced.fps < info.fps else
                       ("note_rate_raised", f"runs at {fps} fps, too slow for a mouth to speak; made at {new_fps} "
                        "fps, its frames repeated"))
        notes.append(CodedText(code, f"{video_path.name} {words}", file=video_path.name, fps=fps, new_fps=new_fps))
        log.warning("%s", notes[-1])
        info = paced
    if info.hdr is not None:
        notes.append(CodedText(
            "note_hdr_converted", f"{video_path.name} is an HDR video ({info.hdr}); its colours were turned into "
            "standard range (BT.709), as an ordinary screen shows them, and the result is in standard range",
            file=video_path.name, hdr=info.hdr))
        log.info("%s", notes[-1])
    if isinstance(audio, PreparedAudio):
        prepared = audio
    else:
        prepared = prepare_audio(audio, settings.limits, report)
    _validate(prepared, info)
    if prepared.silent:
        notes.append(CodedText(
            "note_speech_silent", f"{prepared.path.name} is silent throughout, so the mouth stays closed (of a file "
            "with several sound tracks, the one a player plays is used: the one marked default, else the first)",
            file=prepared.path.name))
        log.warning("%s", notes[-1])
    if prepared.raised_db:
        notes.append(CodedText(
            "note_speech_raised", f"{prepared.path.name} is a quiet recording; its sounds were read "
            f"{prepared.raised_db:g} dB louder so that the mouth follows all of them (the result keeps it as "
            "recorded)", file=prepared.path.name, db=f"{prepared.raised_db:g}"))
        log.info("%s", notes[-1])
    report("probe", 0.0, str(video_path))
    engine = create_engine(settings.engine)  # loaded once, then reused: long only for the first job
    report.again()
    out = Path(output) if output else default_output(video_path, prepared.path, settings.out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    fps = output_fps(info, settings)
    log.info("generating %s from video %s and audio %s (%.2f s) with the %s engine", out, video_path, prepared.path,
             prepared.duration, engine.name)

    stats: dict[str, int] = {}
    stopwatch = _Stopwatch()
    writer: VideoWriter | _BackgroundWriter | None = None
    width = height = 0
    try:
        for _, frame, _ in iter_synced_frames(prepared, info, engine, settings, stats, stopwatch, report, notes,
                                              pictures=True):
            if writer is None:  # sized by the first frame: a photo's EXIF rotation may swap its sides
                height, width = frame.shape[:2]
                writer = VideoWriter(out, width, height, fps, prepared.path, prepared.duration, settings.encode,
                                     info.pixel_aspect, prepared.info.audio_stream)
                if settings.overlap:
                    writer = _BackgroundWriter(writer, ENCODE_QUEUE_FRAMES, stopwatch)
            if isinstance(writer, _BackgroundWriter):
                writer.write(frame)
            else:
                with stopwatch("encode"):
                    writer.write(frame)
        report("encode", 1.0, str(video_path))
        with stopwatch("mux"):  # the encoder finishing its last frames and writing the file with the speech
            writer.close(report.again)  # a cancel is seen while it waits: the file is then not finished
    except BaseException:
        if writer is not None:
            writer.abort()
        raise

    timings = {stage: round(seconds, 3) for stage, seconds in stopwatch.seconds.items()}
    timings["total"] = round(time.perf_counter() - started, 3)
    per_stage = ", ".join(f"{stage} {seconds:.2f}s" for stage, seconds in timings.items())
    log.info("wrote %s: %d frames at %.3f fps by %s in %s (face detection on %d frames, face cache %s, "
             "presenter study %s)", out, stats["frames"], float(fps), engine.describe(), per_stage,
             stats["faces_detected"], stats["face_cache"], stats["study"])
    report("done", 1.0, str(video_path))
    return GenerateResult(
        output=out, audio=prepared.path, video=video_path, engine=engine.describe(), frames=stats["frames"],
        frames_without_face=stats["frames_without_face"], fps=float(fps), width=width, height=height,
        duration=stats["frames"] / float(fps), timings=timings, notes=notes,
        timeline={stage: [round(busy, 3) for busy in steps] for stage, steps in stopwatch.timeline.items()},
        faces_detected=stats["faces_detected"], face_cache=stats["face_cache"], study=stats["study"],
        engine_info=engine.description(),
    )


@dataclass
class PresenterPrep:
    """What preparing a presenter found. ``face_cache`` and ``study`` say whether this call made them or found
    them already kept (``face_cache`` is "off" for a photo: one frame, detected again by each job)."""

    frames: int  # source frames decoded (1 for a photo)
    frames_with_face: int
    turn: int  # clockwise turn that shows the face upright
    face_cache: str  # made, hit or off
    study: str  # made, cached or off (no face with landmarks for the study)
    thumbnail: np.ndarray  # BGR crop around the first face found
    notes: list[str] = field(default_factory=list)  # what its jobs' results will say of the video (cut short)
    footage: str = "off"  # the footage study (heygem.footage): made, cached or off (not one its jobs make)


def _as_a_job_reads(video: str | Path, settings: Settings) -> MediaInfo:
    """``video`` probed and described as ``generate`` reads it (without its notes): a photo over the picture-side
    limit at the size it is scaled to, a video faster than MAX_VIDEO_FPS at the rate it is read at; so a prepared
    presenter's caches are keyed as its jobs' are."""
    return fit_rate(fit_picture(probe(video), settings.limits.picture_side))


def prepare_presenter(video: str | Path, settings: Settings, progress: ProgressCallback | None = None) -> PresenterPrep:
    """Detect the face on every frame of ``video`` into the face cache and study the presenter into the study
    cache, under the very keys a job with ``settings`` uses (see ``iter_synced_frames``): its later jobs then
    detect nothing and study nothing, whatever the speech's length. The video is judged as a job judges it:
    NoFaceError when no frame has a face, InputError (``cut_short``) when it decodes to far fewer frames than its
    header promises (a note when a few are missing)."""
    report = _reporter(progress)
    det = settings.detection
    report("starting", 0.0, str(video))
    info = _as_a_job_reads(video, settings)
    _require_picture(info)
    fps = output_fps(info, settings)
    detector = get_detector(det.detector, det.detect_size, det.detector_weights)
    face_cache = _face_cache(info, det, fps)
    anchors = study_anchors(det, fps)
    cached = face_cache.load_entry() if face_cache is not None else CachedFaces()
    if cached.complete:
        turn, face_height = cached.turn, cached.face_height
    else:
        samples = sample_frames(info, ORIENTATION_SAMPLES, ORIENTATION_SECONDS)
        report("faces", 0.0, str(info.path))
        orientation = find_orientation(samples, _checking(detector.detect, report))
        turn, face_height = orientation.turn, orientation.face_height
    if det.face != "largest" or info.kind != "video":
        face_height = None  # as a job detects
    upright = turned(info, turn) if turn else info  # as the job does: the study's key holds the turn
    # The study first: the faces it detects in its frames are anchors of the face search below, as in a job.
    stats: dict[str, str] = {"study": "off"}
    study = memo = None
    memo_whole = False
    if det.cache_dir is not None:
        from heygem.engines.builtin import BuiltinEngine  # the one engine that studies presenters

        size, margin = BuiltinEngine.crop_size, BuiltinEngine.crop_margin
        if upright.kind == "video" and not det.box:  # the engine's mesh points of the crops, as a job keeps them
            memo = mesh_memo(_mesh_dir(det), upright, (BuiltinEngine.name, size, margin))
        # Points kept by an earlier preparation, or a job that went through the whole video, are all there.
        memo_whole = memo is not None and len(memo) > 0 and cached.complete
        report("study", 0.0, str(info.path))
        study = study_presenter(upright, fps, det, size, margin, _study_dir(det), stats,
                                tick=lambda done: report("study", 0.3 * done, str(info.path)),
                                face_height=face_height, memo=memo)
    studied = study.detections if study is not None else {}
    expected = max(1, info.frame_count)
    keep_mesh = study is not None and memo is not None and not memo_whole  # the mesh points' pass, below
    faces_share = 0.5 if keep_mesh else 0.7  # of the bar: the rest of it is the mesh points' pass
    faces: list[Face | None] = []
    thumbnail: np.ndarray | None = None
    report("faces", 0.3, str(info.path))
    decoder = iter_frames(upright, fps)
    try:
        if cached.complete:
            faces = cached.faces
            first = next((i for i, face in enumerate(faces) if face is not None), None)
            if first is not None:
                thumbnail = _face_picture(next(itertools.islice(decoder, first, None)), faces[first])
        else:
            def detect_one(item: tuple[int, np.ndarray], previous: Face | None) -> Face | None:
                found = studied.get(item[0])
                if found is None:
                    report.again()  # between two detections: a delete stops the preparation here
                    found = detector.detect(item[1], face_height)
                return select_face(found, det.face, previous)

            known = _known_faces(cached, anchors)
            numbered = enumerate(decoder)
            for number, image in itertools.islice(numbered, len(known)):  # faces kept by an earlier job
                faces.append(known[number])
                if thumbnail is None and faces[-1] is not None:
                    thumbnail = _face_picture(image, faces[-1])
            for (number, image), face in sparse_detect(((item, item) for item in numbered), detect_one, anchors,
                                                       known=tuple(faces)):
                faces.append(face)
                if face is not None and thumbnail is None:
                    thumbnail = _face_picture(image, face)
                report("faces", 0.3 + faces_share * min(1.0, (number + 1) / expected), str(info.path))  # throttled
    finally:
        decoder.close()
    notes = []
    note = cut_short_note(info, len(faces), info.frame_count)  # the rule a job applies, over the whole video
    if note:
        notes.append(note)
        log.warning("%s", note)
    found = sum(face is not None for face in faces)
    if not found or thumbnail is None:
        raise NoFaceError(info.path, f"no face found in any of its {len(faces)} frames; give a video or photo where "
                                     "the face is clearly visible", "no_face", frames=len(faces))
    if face_cache is not None and not cached.complete:
        face_cache.save(faces, turn, complete=True, face_height=face_height)
    if keep_mesh:
        _keep_mesh_points(upright, fps, faces, det, memo,
                          lambda done: report("faces", 0.8 + 0.2 * done, str(info.path)))
    drive = settings.engine.mouth_drive
    if (study is not None and upright.kind == "video" and resolve_engine_name(settings.engine) == "builtin"
            and (drive == "footage" or drive == "auto" and footage_may_speak(upright))):
        # Every frame's mouth, as the footage drive of its jobs studies it (the default drive takes it for a
        # video with speech of its own): the presenter's first job then studies nothing.
        report("study", 0.0, str(info.path))
        footage = study_footage(upright, det, _study_dir(det), stats=stats,
                                tick=lambda done: report("study", done, str(info.path)))
        if footage is not None and footage.sound_lag:
            notes.append(out_of_step_note(info, footage.sound_lag, footage.fps))
    report("ready", 1.0, str(info.path))
    return PresenterPrep(frames=len(faces), frames_with_face=found, turn=turn,
                         face_cache="off" if face_cache is None else "hit" if cached.complete else "made",
                         study=stats["study"], thumbnail=thumbnail, notes=notes, footage=stats.get("footage", "off"))


def _keep_mesh_points(video: MediaInfo, fps: Fraction, faces: list[Face | None], det: DetectionOptions,
                      memo: MeshMemo, tick: Callable[[float], None]) -> None:
    """The built-in engine's face mesh points of every frame's crop, cut as a job cuts them (the faces smoothed,
    the crop box, the crop's size), kept in ``memo``, where its jobs look for them: the presenter's first job
    runs no mesh. The crops the study passed are found there already. What a job's crops do not match costs
    that job the mesh, nothing else. ``tick(share done)`` for every frame (a preparation's progress, through
    which a delete stops it)."""
    from heygem.engines.builtin import BuiltinEngine, keep_mesh_points

    size, margin = BuiltinEngine.crop_size, BuiltinEngine.crop_margin
    decoder = iter_frames(video, fps)

    def crops() -> Iterator[np.ndarray]:
        for number, (image, face) in enumerate(smooth_faces(zip(decoder, faces), det.smooth_window)):
            tick(min(1.0, (number + 1) / len(faces)))
            if face is not None:
                yield cut_crop(image, crop_box(face, image.shape[1], image.shape[0], det.pads, margin), size)

    started = time.perf_counter()
    cut = Prefetch(crops(), 8, "heygem-prepare-crops")  # decoded and cut beside the mesh
    try:
        keep_mesh_points(cut, memo)
    finally:
        cut.close()
        decoder.close()
    memo.save()
    log.info("presenter %s: face mesh points of %d crops kept in %.1f s", video.path.name, len(memo),
             time.perf_counter() - started)


def _face_picture(image: np.ndarray, face: Face, side: int = 256) -> np.ndarray:
    """The face with half its size around it, at most ``side`` pixels on the longer side: a thumbnail."""
    height, width = image.shape[:2]
    pad_x, pad_y = 0.5 * (face.x2 - face.x1), 0.5 * (face.y2 - face.y1)
    x1, y1 = max(0, int(face.x1 - pad_x)), max(0, int(face.y1 - pad_y))
    x2, y2 = min(width, int(face.x2 + pad_x)), min(height, int(face.y2 + pad_y))
    crop = image[y1:y2, x1:x2] if x2 > x1 and y2 > y1 else image
    scale = min(1.0, side / max(crop.shape[:2]))
    return cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))))


@dataclass
class PreparedFootage:
    """A prepared presenter's first frames with their faces and study, as a live session draws on them (the
    same caches a job reads: nothing is detected or studied again)."""

    video: MediaInfo  # upright, as the faces and the study see it
    fps: Fraction  # the rate the faces were found at (the video's own)
    frames: list[np.ndarray]  # decoded upright BGR frames from the first
    boxes: list[tuple[int, int, int, int] | None]  # each frame's crop box (``crop_margin`` around its face)
    study: Any  # heygem.study.PresenterStudy, or None when no face with landmarks was found


def load_prepared(video: str | Path, settings: Settings, crop_size: int, crop_margin: float,
                  max_frames: int) -> PreparedFootage:
    """Up to ``max_frames`` first frames of a prepared presenter's ``video`` with their face boxes and study,
    from the caches ``prepare_presenter`` filled (a photo: its one frame, detected again, as a job does).
    InputError for a file that cannot be read, NoFaceError when no face is kept for it."""
    det = settings.detection
    info = _as_a_job_reads(video, settings)
    _require_picture(info)
    fps = output_fps(info, settings)
    face_cache = _face_cache(info, det, fps)
    cached = face_cache.load_entry() if face_cache is not None else CachedFaces()
    upright = turned(info, cached.turn) if cached.turn else info
    face_height = cached.face_height if det.face == "largest" and info.kind == "video" else None  # as a job's
    study = study_presenter(upright, fps, det, crop_size, crop_margin, _study_dir(det), {}, face_height=face_height)
    frames = list(itertools.islice(iter_frames(upright, fps), max(1, max_frames)))
    if info.kind == "video":
        faces = cached.faces[:len(frames)]
    else:
        detector = get_detector(det.detector, det.detect_size, det.detector_weights)
        faces = [select_face(detector.detect(frames[0]), det.face, None)]
    faces += [None] * (len(frames) - len(faces))
    smoothed = [face for _, face in smooth_faces(enumerate(faces), det.smooth_window)]
    boxes = [None if face is None else crop_box(face, image.shape[1], image.shape[0], det.pads, crop_margin)
             for image, face in zip(frames, smoothed)]
    if not any(box is not None for box in boxes):
        raise NoFaceError(info.path, "no face is kept for its first frames; prepare it again, or give a video where "
                                     "the face is clearly visible", "no_face", frames=len(frames))
    return PreparedFootage(upright, fps, frames, boxes, study)
