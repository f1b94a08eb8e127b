"""A presenter that speaks live: a prepared presenter's footage on a loop, lip-synced to speech as it arrives
(a file, a microphone, PCM streamed by a TTS), sent over WebRTC on one clock.

* ``heygem.live.session``: one session's clock, speech timeline and frames (no WebRTC in it).
* ``heygem.live.footage``: the footage loop at the stream's size, each frame's face mesh found once.
* ``heygem.live.sessions``: the studio's sessions (limit, idle timeout); ``heygem.live.routes``: ``/api/live``.
* ``heygem.live.webrtc``: the aiortc peer and tracks, imported only when a peer connects.
"""
from heygem.live.session import LiveOptions, LiveSession
from heygem.live.sessions import LiveError, LiveSessions, live_available

__all__ = ["LiveError", "LiveOptions", "LiveSession", "LiveSessions", "live_available"]
