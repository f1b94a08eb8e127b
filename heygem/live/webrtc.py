"""A live session over WebRTC (aiortc): the peer connection, the picture and sound tracks it sends, and the
microphone it may receive. Imported only when a session is brought live: the batch studio never loads aiortc.

Both tracks take their timestamps from the session's one clock and leave when their time comes: frame ``n``
at ``n / 25`` s, sound sample ``k`` at ``k / 16000`` s. aiortc's sender reports (RTCP) tie each track's
timestamps to the wall clock at the moment it sends, so sound and picture that leave on time arrive in sync.
A frame drawn too late is counted; when the picture falls a whole frame behind, frames are skipped (never the
sound) and counted as dropped.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import time
from fractions import Fraction

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from heygem.live.session import FPS, SAMPLE_RATE, LiveSession

log = logging.getLogger(__name__)

__all__ = ["LivePeer"]

VIDEO_CLOCK = 90000  # RTP's video clock
AUDIO_PACKET = SAMPLE_RATE // 50  # 20 ms, as Opus sends it
MIC_RATE = SAMPLE_RATE
# A frame is drawn this long before its time: a busy moment of the server's event loop (a request being read)
# then delays the drawing, not the frame.
DRAW_AHEAD = 0.025


class _SessionTrack(MediaStreamTrack):
    """A track of a session, paced by its clock."""

    def __init__(self, session: LiveSession) -> None:
        super().__init__()
        self.session = session

    def _clock(self) -> float:
        """The session clock's zero (started by the first track asked); the track ends with its session."""
        if self.readyState != "live" or self.session.ended:
            raise MediaStreamError
        return self.session.start_clock()

    @staticmethod
    async def _until(when: float) -> bool:
        """Waits until monotonic time ``when``; False when it has passed already."""
        wait = when - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        return wait > 0


class _VideoTrack(_SessionTrack):
    kind = "video"

    def __init__(self, session: LiveSession, draw: concurrent.futures.Executor) -> None:
        super().__init__(session)
        self.draw = draw
        self.next_frame = 0

    async def recv(self) -> av.VideoFrame:
        start = self._clock()
        session = self.session
        frame = self.next_frame
        due = start + frame / FPS
        dropped = 0
        if not await self._until(due - DRAW_AHEAD) and time.monotonic() - due > 1.0 / FPS:
            # A whole frame behind: skip to the frame of now.
            now_frame = math.floor((time.monotonic() - start) * FPS)
            log.debug("live %s: %.0f ms behind at frame %d; %d skipped", session.id,
                      (time.monotonic() - due) * 1000, frame, now_frame - frame)
            dropped, frame = now_frame - frame, now_frame
            due = start + frame / FPS
        image = await asyncio.get_running_loop().run_in_executor(self.draw, session.render, frame)
        await self._until(due)  # drawn ahead: it leaves on time, not before
        session.sent_video(frame, due, dropped)
        self.next_frame = frame + 1
        picture = av.VideoFrame.from_ndarray(image, format="bgr24")
        picture.pts = frame * (VIDEO_CLOCK // FPS)
        picture.time_base = Fraction(1, VIDEO_CLOCK)
        return picture


class _AudioTrack(_SessionTrack):
    kind = "audio"

    def __init__(self, session: LiveSession) -> None:
        super().__init__(session)
        self.next_sample = 0

    async def recv(self) -> av.AudioFrame:
        start = self._clock()
        session = self.session
        first = self.next_sample
        due = start + first / SAMPLE_RATE
        await self._until(due)
        pcm = session.audio(first, AUDIO_PACKET)
        session.sent_audio(due)
        self.next_sample = first + AUDIO_PACKET
        sound = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        sound.sample_rate = SAMPLE_RATE
        sound.pts = first
        sound.time_base = Fraction(1, SAMPLE_RATE)
        return sound


class LivePeer:
    """One peer connection of a session: ``answer`` an offer; the microphone the peer sends (if any) is spoken."""

    def __init__(self, session: LiveSession, on_gone) -> None:
        self.session = session
        self.pc = RTCPeerConnection()  # no STUN server: the studio is reached on its own network
        self._draw = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"heygem-live-draw-{session.id}")
        self._on_gone = on_gone
        self._mic_task: asyncio.Task | None = None
        self.replaced = False  # a newer offer took over the session: this peer's end is not the session's

        @self.pc.on("connectionstatechange")
        async def _changed() -> None:
            state = self.pc.connectionState
            log.info("live %s: peer %s", session.id, state)
            if state == "connected":
                session.peer_connected = True
                session.last_peer = time.monotonic()
            elif state in ("failed", "closed", "disconnected"):
                if not self.replaced:
                    session.peer_connected = False
                    session.last_peer = time.monotonic()
                if state != "disconnected" and not self.replaced:  # (disconnected may come back; failed, closed not)
                    await on_gone(session.id)

        @self.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                self._mic_task = asyncio.ensure_future(self._listen(track))

    async def answer(self, sdp: str, kind: str) -> RTCSessionDescription:
        """The SDP answer to the peer's offer; the session's picture and sound are added to it."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
        offered = {transceiver.kind for transceiver in self.pc.getTransceivers()}
        if "video" in offered:  # (a peer may ask for the picture alone, or the sound alone)
            self.pc.addTrack(_VideoTrack(self.session, self._draw))
        if "audio" in offered:
            self.pc.addTrack(_AudioTrack(self.session))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription

    async def _listen(self, track: MediaStreamTrack) -> None:
        """The peer's microphone, spoken as it comes (16 kHz mono, in the pieces Opus brings)."""
        resampler = av.AudioResampler(format="s16", layout="mono", rate=MIC_RATE)
        try:
            while True:
                sound = await track.recv()
                for piece in resampler.resample(sound):
                    samples = piece.to_ndarray().reshape(-1).astype(np.float32) / 32768.0
                    self.session.push(samples)
        except MediaStreamError:
            self.session.end_push()
        except asyncio.CancelledError:
            pass

    async def close(self) -> None:
        if self._mic_task is not None:
            self._mic_task.cancel()
        await self.pc.close()
        self._draw.shutdown(wait=False)
