"""Guards at the server's door: password guessing is slowed down, and oversized uploads are refused before
any of their bytes are stored.

Both answer like the rest of the API, ``{"error": "<reason>"}``, and are mounted by ``heygem.server``.
"""
from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heygem.api import error_response
from heygem.settings import Limits

log = logging.getLogger(__name__)

__all__ = ["BodyTooLarge", "LoginThrottle", "UploadLimit"]

MB = 1024 * 1024


class BodyTooLarge(MultipartParseError):
    """Raised to the app from reading a body that passed the upload limit. A multipart parse error, because
    that is what the form parsers clean up after: Starlette's drops any error's files, but Gradio's upload
    route deletes the temporary files it had begun (in its cache) only on a parse error."""


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Counts wrong passwords per client address and locks an address out after too many.

    After ``free_tries`` wrong passwords in a row, the address is locked out for ``first_lockout`` seconds;
    each further wrong try (once the lockout has passed) doubles the lockout, up to ``longest_lockout``.
    While locked out, every request from the address is refused, the right password included. A right
    password clears the count, and so does a quiet ``longest_lockout`` since the last wrong one. At most
    ``max_addresses`` addresses are remembered; the one idle longest is forgotten first. ``clock`` gives
    seconds (tests pass a fake one).
    """

    free_tries: int = 5
    first_lockout: float = 2.0
    longest_lockout: float = 900.0
    max_addresses: int = 10_000
    clock: Callable[[], float] = time.monotonic
    # Touched only from the event loop's thread (the auth middleware is async), so no lock is needed.
    _table: OrderedDict[str, _Failures] = field(default_factory=OrderedDict, init=False, repr=False)

    def locked_for(self, address: str) -> float:
        """Seconds until ``address`` may try again; 0 when it is not locked out."""
        entry = self._table.get(address)
        return max(0.0, entry.locked_until - self.clock()) if entry else 0.0

    def failed(self, address: str) -> float:
        """Count a wrong password from ``address``; returns the lockout it starts, in seconds (0: none yet)."""
        now = self.clock()
        entry = self._table.pop(address, None) or _Failures()
        if now - entry.last > self.longest_lockout:
            entry = _Failures()
        entry.count += 1
        entry.last = now
        self._table[address] = entry  # newest at the end: the oldest are forgotten first
        while len(self._table) > self.max_addresses:
            self._table.popitem(last=False)
        if entry.count < self.free_tries:
            return 0.0
        lockout = min(self.first_lockout * 2 ** (entry.count - self.free_tries), self.longest_lockout)
        entry.locked_until = now + lockout
        log.warning("%s: %d wrong passwords in a row; locked out for %.0f s", address, entry.count, lockout)
        return lockout

    def succeeded(self, address: str) -> None:
        self._table.pop(address, None)

    def refusal(self, address: str, seconds: float) -> JSONResponse:
        """The 429 answer to a locked-out address, with ``Retry-After``."""
        wait = max(1, math.ceil(seconds))
        response = error_response(429, f"too many wrong passwords from {address}; try again in {wait} s")
        response.headers["Retry-After"] = str(wait)
        return response


class UploadLimit:
    """Refuses a request whose body is larger than ``limits().upload_mb`` MiB (0: no limit) with 413.

    A declared ``Content-Length`` over the limit is refused before a byte of the body is read. A body without
    one (chunked) is counted as it arrives; past the limit, reading it raises ``BodyTooLarge`` in the app
    (which drops what it had received) and the client gets the 413 instead of the app's answer. ``limits``
    is read per request, so the limit in force is the queue's current one.
    """

    def __init__(self, app: ASGIApp, limits: Callable[[], Limits]) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = self.limits()
        if scope["type"] != "http" or not limits.upload_mb:
            await self.app(scope, receive, send)
            return
        limit = limits.upload_mb * MB
        what = f"{scope['method']} {scope['path']}"
        declared = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
        if declared.isdigit() and int(declared) > limit:
            log.warning("%s refused: a body of %s bytes, over the %d MB limit", what, declared, limits.upload_mb)
            await self._refuse(scope, receive, send, limits, what, f"{int(declared) / MB:.1f} MB")
            return

        received = 0
        cut = False
        answered = False

        async def counted() -> Message:
            nonlocal received, cut
            if not cut:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                received += len(message.get("body", b""))
                if received <= limit:
                    return message
                cut = True
            raise BodyTooLarge(f"the body passed the {limits.upload_mb} MB upload limit")

        async def guarded(message: Message) -> None:
            nonlocal answered
            if cut and not answered:
                return  # the app's answer to a body cut short is replaced by the 413 below
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not cut or answered:
                raise
        if cut and not answered:
            log.warning("%s refused: the body passed the %d MB limit", what, limits.upload_mb)
            await self._refuse(scope, receive, send, limits, what, f"more than {limits.upload_mb} MB")

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limits: Limits, what: str, size: str) -> None:
        response = error_response(413, f"{what}: the upload is {size}; the limit is {limits.upload_mb} MB "
                                       f"({limits.how_to_raise('upload_mb')})")
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)
