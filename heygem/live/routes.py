"""The live routes under ``/api/live`` (README, "Live presenter"): create a session, exchange the WebRTC offer and
answer, give it speech (a file, or PCM streamed as it is produced), read its figures, end it.

Every error is ``{"error": "<reason>"}`` as in the rest of the API; a session keeps running whatever a bad
request to it was. aiortc is imported only when a peer connects (heygem.live.webrtc).
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np
from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool

from heygem.api import error_response, save_upload, upload_name
from heygem.errors import HeyGemError, LimitError
from heygem.limits import stored_on_disk
from heygem.live.session import SAMPLE_RATE
from heygem.live.sessions import LiveError, LiveSessions, PcmStream

log = logging.getLogger(__name__)

__all__ = ["live_router"]

STREAM_READ = 3200  # bytes of pushed PCM handed on at a time (100 ms at 16 kHz)
# The rates pushed PCM may come at: those sound cards and TTS engines use. A rate sharing few factors with 16 kHz
# (47999, 44101) made the resampler design a filter of about a million taps for every piece, in the event loop:
# 0.19 s of every 100 ms pushed, and every other request of the studio waited (its status took 1.45 s).
PCM_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
# The most a JSON body here may hold (an SDP offer is a few kB). Parsed whole in the event loop, an 80 MB body
# held every other request of the studio for 4.9 s, and 300 MB took 2.7 GB; nesting 100000 deep raised a
# RecursionError, a 500.
JSON_BODY_BYTES = 256 * 1024


class _TooLarge(Exception):
    pass


async def _json_body(request: Request) -> object:
    """The request's JSON body, or None where it is not JSON; _TooLarge past JSON_BODY_BYTES (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > JSON_BODY_BYTES:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > JSON_BODY_BYTES:
            raise _TooLarge
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _too_large():
    return error_response(413, f"the JSON body is over {JSON_BODY_BYTES // 1024} kB; a live request's JSON is a "
                          "few kB", "json_too_large")


def live_router(sessions: LiveSessions) -> APIRouter:
    """The live routes, bound to the studio's sessions."""
    router = APIRouter(prefix="/api/live")

    def failed(exc: HeyGemError):
        return error_response(exc.status if isinstance(exc, LiveError) else 400, str(exc), exc.code, exc.params)

    @router.get("")
    def list_sessions():
        """The running sessions with their figures."""
        return {"sessions": [session.figures() for session in sessions.list()], "limit": sessions.limit}

    @router.post("", status_code=201)
    async def create_session(request: Request):
        """JSON ``{"presenter": id}`` -> the new session (``id``, state, figures)."""
        try:
            body = await _json_body(request)
        except _TooLarge:
            return _too_large()
        if not isinstance(body, dict) or not isinstance(body.get("presenter"), str):
            return error_response(400, 'give JSON {"presenter": "<id>"} (ids: GET /api/presenters)')
        try:
            session = await sessions.create(body["presenter"])
        except HeyGemError as exc:
            return failed(exc)
        return session.figures()

    @router.get("/{session_id}")
    def get_session(session_id: str):
        try:
            return sessions.get(session_id).figures()
        except LiveError as exc:
            return failed(exc)

    @router.delete("/{session_id}")
    async def end_session(session_id: str):
        try:
            sessions.get(session_id)
        except LiveError as exc:
            return failed(exc)
        await sessions.end(session_id)
        return {"ended": session_id}

    @router.post("/{session_id}/offer")
    async def offer(session_id: str, request: Request):
        """The peer's SDP offer (JSON ``{"sdp", "type"}``) -> the SDP answer."""
        try:
            body = await _json_body(request)
        except _TooLarge:
            return _too_large()
        if not isinstance(body, dict):
            return error_response(400, 'give the peer\'s offer as JSON {"sdp": "v=0...", "type": "offer"}')
        try:
            return await sessions.offer(session_id, body.get("sdp"), body.get("type"))
        except HeyGemError as exc:
            return failed(exc)

    @router.post("/{session_id}/say", status_code=202)
    async def say(session_id: str,
                  audio: UploadFile = File(..., description="the speech: any audio file, or a video whose sound to use"),
                  interrupt: bool = Form(False, description="replace what is being said from the next frame")):
        """A speech file, spoken after what is queued (or instead of it, with ``interrupt``)."""
        try:
            sessions.get(session_id)
        except LiveError as exc:
            return failed(exc)
        name = upload_name(audio, "audio")
        limits = sessions.queue.defaults.limits

        def decode():
            from heygem.media.audio import TooLongError, load_audio
            from heygem.media.probe import probe

            with tempfile.TemporaryDirectory(dir=sessions.queue.root, prefix=".upload-") as folder:
                try:
                    with stored_on_disk(name, sessions.queue.root, limits):
                        saved = save_upload(audio, Path(folder), 0)
                except LimitError as exc:
                    raise LiveError(507, str(exc), exc.code, **exc.params) from None
                try:
                    # The track a player plays (a job's speech is read the same way, heygem.pipeline.prepare_audio).
                    return load_audio(saved, SAMPLE_RATE,
                                      max_seconds=limits.speech_minutes * 60 if limits.speech_minutes else None,
                                      stream=probe(saved).audio_stream)
                except TooLongError:
                    raise LiveError(413, f"{name}: longer than {limits.speech_minutes:g} minutes, the longest speech "
                                         f"({limits.how_to_raise('speech_minutes')})", "live_speech_too_long",
                                    file=name, limit=f"{limits.speech_minutes:g}",
                                    **limits.raise_params("speech_minutes")) from None
                except HeyGemError as exc:
                    raise LiveError(400, f"{name}: {getattr(exc, 'problem', exc)}", "live_bad_audio", file=name) from exc

        try:
            samples = await run_in_threadpool(decode)
            return sessions.say(session_id, samples, interrupt, name)
        except HeyGemError as exc:
            return failed(exc)

    @router.post("/{session_id}/interrupt")
    def interrupt(session_id: str):
        """Stops what is being said (and drops what waits) from the next frame; the presenter rests."""
        try:
            sessions.get(session_id).interrupt()
        except LiveError as exc:
            return failed(exc)
        return {"id": session_id, "interrupted": True}

    @router.post("/{session_id}/stream", status_code=202)
    async def stream(session_id: str, request: Request, rate: int = SAMPLE_RATE):
        """Speech pushed as it is produced: the body is raw signed 16-bit little-endian mono PCM at ``rate`` Hz,
        sent as it comes (chunked); it is spoken while it arrives, and ends with the body."""
        try:
            session = sessions.get(session_id)
        except LiveError as exc:
            return failed(exc)
        if rate not in PCM_RATES:
            return error_response(400, f"rate must be one of {', '.join(map(str, PCM_RATES))} (Hz), got {rate}")
        received = 0
        left = b""
        pcm = PcmStream(rate)

        def push(samples: np.ndarray) -> None:
            if len(samples):  # (LiveError past the most a session holds waiting: the stream ends there)
                sessions.make_room(session, len(samples) / SAMPLE_RATE, "the pushed speech")
                session.push(samples)

        try:
            async for chunk in request.stream():
                data = left + chunk
                whole = len(data) // STREAM_READ * STREAM_READ
                if whole:
                    push(pcm.feed(data[:whole]))
                    received += whole
                left = data[whole:]
            received += len(left) // 2 * 2
            push(np.concatenate([pcm.feed(left), pcm.finish()]))
        except LiveError as exc:
            return failed(exc)
        finally:
            session.end_push()  # what came is said, whatever stopped the body
        return {"id": session_id, "seconds": round(received / 2 / rate, 3)}

    return router
