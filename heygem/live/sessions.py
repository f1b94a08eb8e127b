"""The studio's live sessions: brought live from a ready presenter, limited in number, ended when their peer goes
away or stays away too long. One ``LiveSessions`` per studio, used by the HTTP routes (heygem.live.routes) on
the server's event loop."""
from __future__ import annotations

import asyncio
import gc
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np

from heygem.errors import HeyGemError, InputError
from heygem.limits import duration_words
from heygem.live.footage import LoopFootage
from heygem.live.session import FPS, SAMPLE_RATE, LiveOptions, LiveSession
from heygem.presenters import READY

if TYPE_CHECKING:
    from heygem.jobs import JobQueue
    from heygem.live.webrtc import LivePeer

log = logging.getLogger(__name__)

__all__ = ["LiveError", "LiveSessions", "live_available"]

WATCH_SECONDS = 2.0  # how often ended peers and idle sessions are looked for
REQUIREMENTS = "requirements-live.txt"


class LiveError(HeyGemError):
    """A live request that cannot be served; ``status`` is the HTTP status it is answered with."""

    def __init__(self, status: int, message: str, code: str | None = None, **params: Any) -> None:
        super().__init__(message, code=code, params=params)
        self.status = status


def live_available() -> str | None:
    """None when live sessions can run here, else why not (aiortc is an optional install)."""
    try:
        import aiortc  # noqa: F401
        import av  # noqa: F401
    except ImportError as exc:
        return f"live sessions need aiortc ({exc.name} is not installed): pip install -r {REQUIREMENTS}"
    return None


class LiveSessions:
    """The live sessions of one studio, over the queue's presenters library and settings."""

    def __init__(self, queue: JobQueue, options: LiveOptions | None = None) -> None:
        self.queue = queue
        self.options = options or LiveOptions()
        self._sessions: dict[str, LiveSession] = {}
        self._peers: dict[str, LivePeer] = {}
        self._starting = 0
        self._watch: asyncio.Task | None = None

    @property
    def limit(self) -> int:
        return self.queue.defaults.limits.live_sessions

    def list(self) -> list[LiveSession]:
        return list(self._sessions.values())

    def get(self, session_id: str) -> LiveSession:
        """A running session; LiveError 404 if there is none with this id."""
        session = self._sessions.get(session_id)
        if session is None:
            raise LiveError(404, f"no live session {session_id} (it may have ended: its peer went away, or it "
                                 "was idle too long)", "live_unknown", id=session_id)
        return session

    async def create(self, presenter_id: str) -> LiveSession:
        """A new session of a ready presenter, its footage loaded (a few seconds). LiveError: 404 unknown
        presenter, 409 not ready, 501 aiortc missing, 503 at the limit."""
        missing = live_available()
        if missing:
            raise LiveError(501, missing, "live_unavailable", requirements=REQUIREMENTS)
        try:
            presenter = self.queue.presenters.get(presenter_id)
        except KeyError:
            raise LiveError(404, f"no presenter {presenter_id}; the presenters are listed at GET /api/presenters",
                            "live_no_presenter", presenter=presenter_id) from None
        if presenter.state != READY:
            raise LiveError(409, f"presenter {presenter.name} is {presenter.state}"
                                 f"{': ' + presenter.error if presenter.error else ''}; only a ready presenter can go "
                                 "live", "live_presenter_not_ready", name=presenter.name, state=presenter.state)
        limit = self.limit
        if limit and len(self._sessions) + self._starting >= limit:
            raise LiveError(503, f"{limit} live session{'s' if limit != 1 else ''} already running, the most this "
                                 f"studio runs at once ({self.queue.defaults.limits.how_to_raise('live_sessions')}); "
                                 "end one first", "live_full", limit=limit,
                            **self.queue.defaults.limits.raise_params("live_sessions"))
        self._starting += 1
        try:
            session = await asyncio.get_running_loop().run_in_executor(None, self._build, presenter)
        finally:
            self._starting -= 1
        self._sessions[session.id] = session
        # Everything the studio has made so far moves out of the garbage collector's way: a full collection over
        # it stopped every thread for up to a third of a second, and a live picture cannot wait that long.
        gc.freeze()
        self._start_watch()
        return session

    def _build(self, presenter) -> LiveSession:
        from heygem.engines.builtin import BuiltinEngine  # the engine that draws a frame at a time
        from heygem.pipeline import load_prepared

        settings = self.queue.defaults
        options = self.options
        engine = BuiltinEngine()
        fps = presenter.frames / presenter.duration if presenter.kind == "video" and presenter.duration else FPS
        footage = load_prepared(presenter.video_path, settings, engine.crop_size, engine.crop_margin,
                                max_frames=max(1, round(options.loop_seconds * fps)))
        if footage.study is None:
            raise LiveError(409, f"presenter {presenter.name} has no face whose mouth could be studied",
                            "live_no_study", name=presenter.name)
        engine.start_live(footage.study)
        loop = LoopFootage(footage, engine, options.side)
        session = LiveSession(uuid.uuid4().hex[:12], {"id": presenter.id, "name": presenter.name}, loop, engine,
                              options)
        log.info("live %s: presenter %s (%s) ready, %s", session.id, presenter.name, presenter.id, engine.describe())
        return session

    async def offer(self, session_id: str, sdp: str, kind: str) -> dict[str, str]:
        """The SDP answer to a peer's offer; a session has one peer (a new offer replaces the one before)."""
        from heygem.live.webrtc import LivePeer

        session = self.get(session_id)
        if kind != "offer" or not isinstance(sdp, str) or "v=0" not in sdp:
            raise LiveError(400, 'give the peer\'s offer as JSON {"sdp": "v=0...", "type": "offer"}', "live_bad_offer")
        # Answered before the peer it replaces is closed: an offer that cannot be answered leaves the session and
        # its viewer as they were (closing its own connection once ended the session, the peer "gone").
        peer = LivePeer(session, self._peer_gone)
        try:
            answer = await peer.answer(sdp, kind)
        except Exception as exc:  # an SDP aiortc cannot take (no ICE credentials, a line it cannot parse, ...)
            peer.replaced = True
            await peer.close()
            raise LiveError(400, f"the offer could not be answered: {exc}", "live_bad_offer") from exc
        old = self._peers.pop(session_id, None)
        self._peers[session_id] = peer
        if old is not None:
            old.replaced = True
            await old.close()
        return {"sdp": answer.sdp, "type": answer.type}

    def make_room(self, session: LiveSession, seconds: float, name: str, interrupt: bool = False) -> None:
        """LiveError 413 when ``seconds`` more speech would leave the session holding more than the longest speech
        (the studio's speech limit) waiting to be said: a client that sends speech faster than it is spoken, or
        that says file after file, would otherwise fill the studio's memory. ``interrupt``: what waits is
        dropped first, so only the new speech counts."""
        limits = self.queue.defaults.limits
        if not limits.speech_minutes:
            return
        waiting = 0.0 if interrupt else session.queued_seconds()
        if waiting + seconds > limits.speech_minutes * 60:
            raise LiveError(413, f"{name}: not queued; {duration_words(waiting)} of speech already waits to be said, "
                                 f"and a live session holds at most {limits.speech_minutes:g} minutes "
                                 f"({limits.how_to_raise('speech_minutes')}); wait until some of it is said, or "
                                 "interrupt it", "live_queue_full", file=name, waiting_minutes=f"{waiting / 60:.1f}",
                            limit=f"{limits.speech_minutes:g}", **limits.raise_params("speech_minutes"))

    def say(self, session_id: str, samples: np.ndarray, interrupt: bool, name: str) -> dict[str, Any]:
        session = self.get(session_id)
        if len(samples) == 0:
            raise InputError(name, "holds no sound", "live_empty_speech")
        self.make_room(session, len(samples) / SAMPLE_RATE, name, interrupt)
        seconds = session.say(samples, interrupt)
        return {"id": session_id, "seconds": round(seconds, 3), "interrupt": interrupt,
                "queued_seconds": session.figures()["speech_queued_seconds"]}

    async def end(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        peer = self._peers.pop(session_id, None)
        if session is not None:
            session.close()
            log.info("live %s: ended", session_id)
        if peer is not None:
            await peer.close()

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.end(session_id)
        if self._watch is not None:
            self._watch.cancel()

    async def _peer_gone(self, session_id: str) -> None:
        await self.end(session_id)

    def _start_watch(self) -> None:
        if self._watch is None or self._watch.done():
            self._watch = asyncio.ensure_future(self._watch_idle())

    async def _watch_idle(self) -> None:
        """Ends sessions whose peer has been away ``idle_seconds`` (or never came)."""
        while self._sessions:
            await asyncio.sleep(WATCH_SECONDS)
            now = time.monotonic()
            for session in list(self._sessions.values()):
                if not session.peer_connected and now - session.last_peer > self.options.idle_seconds:
                    log.info("live %s: no peer for %.0f s; ended", session.id, now - session.last_peer)
                    await self.end(session.id)


class PcmStream:
    """Signed 16-bit little-endian mono PCM at ``rate`` Hz, arriving in pieces of any size -> float32 at 16 kHz:
    the same samples as one resampling of the whole (``scipy.signal.resample_poly``), whatever the pieces.

    Each piece resampled alone (as before) began and ended on the filter's silence and rounded its length up: a
    TTS at 24 kHz in 67 ms pieces came out with a dip every piece and 1.3 ms too long every 4 s (48 kHz: 5 ms).
    Here the output samples are made once their filter has all its input (a few input samples behind: under
    2 ms), from the input since the first one still needed, cut where the output samples fall on the input's."""

    def __init__(self, rate: int) -> None:
        g = math.gcd(int(rate), SAMPLE_RATE)
        self.up, self.down = SAMPLE_RATE // g, int(rate) // g
        self.reach = 10 * max(self.up, self.down)  # resample_poly's filter: this far either side (upsampled)
        self._kept = np.zeros(0, np.float32)  # input from sample ``_first`` on, to the last received
        self._first = 0
        self._made = 0  # output samples given
        self._odd = b""  # the first byte of a sample whose second has not come

    def feed(self, data: bytes) -> np.ndarray:
        """The 16 kHz samples that this piece completes (a sample's odd byte waits for the next piece)."""
        data = self._odd + data
        whole = len(data) // 2 * 2
        self._odd = data[whole:]
        pcm = np.frombuffer(data[:whole], dtype="<i2").astype(np.float32) / 32768.0
        if self.up == self.down:
            return pcm
        self._kept = np.concatenate([self._kept, pcm])
        received = self._first + len(self._kept)
        # Output k needs input up to (k * down + reach) / up: those whose last input has come.
        ready = ((received - 1) * self.up - self.reach) // self.down + 1 if received else 0
        return self._make(max(ready, self._made))

    def finish(self) -> np.ndarray:
        """The rest, the input's end taken as silence (as one resampling of the whole takes it)."""
        if self.up == self.down:
            return np.zeros(0, np.float32)
        return self._make(-(-(self._first + len(self._kept)) * self.up // self.down))

    def _make(self, end: int) -> np.ndarray:
        from scipy.signal import resample_poly

        if end <= self._made:
            return np.zeros(0, np.float32)
        start = self._needed_from(self._made)
        segment = resample_poly(self._kept[start - self._first:], self.up, self.down)
        offset = start * self.up // self.down
        out = segment[self._made - offset:end - offset].astype(np.float32)
        self._made = end
        keep_from = self._needed_from(end)  # what the next outputs can still need
        if keep_from > self._first:
            self._kept = self._kept[keep_from - self._first:]
            self._first = keep_from
        return out

    def _needed_from(self, output: int) -> int:
        """The input sample to resample from for outputs from ``output`` on: one whose output falls on an output
        sample (a multiple of ``down``), far enough back that ``output`` sees all of its filter's input; before
        the input's start, the whole's own start (silence)."""
        return max(0, (output * self.down - self.reach) // (self.up * self.down)) * self.down
