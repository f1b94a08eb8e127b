"""Guards at the server's door: requests meant for another host name or sent by another site's page are
refused, password guessing is slowed down, and oversized uploads are refused before any of their bytes are
stored.

All answer like the rest of the API, ``{"error": "<reason>"}``, and are mounted by ``heygem.server``.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from python_multipart.exceptions import MultipartParseError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from heygem.api import error_response
from heygem.limits import disk_full
from heygem.settings import Limits

log = logging.getLogger(__name__)

__all__ = ["AllowedHosts", "BodyTooLarge", "LoginThrottle", "OriginCheck", "UploadLimit", "parse_hosts",
           "parse_proxies"]

MB = 1024 * 1024
# An upload this small passes the disk's check at the door whatever the room: the route that stores it refuses it
# by its file's name (the door knows only the request), and a megabyte is no threat to the disk.
SMALL_UPLOAD = MB


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
    """Refuses a request whose body is larger than ``limits().upload_mb`` MiB (0: no limit) with 413, and an upload
    (a multipart body: a page's file, an API submission) larger than the disk can take while keeping the space
    the studio keeps free (``room()``: bytes left before that, read per request) with 507 ``disk_full`` (one of
    up to SMALL_UPLOAD passes, for its route to refuse by the file's name).

    A declared ``Content-Length`` over either is refused before a byte of the body is read. A body without one
    (chunked) is counted as it arrives; past a limit, reading it raises ``BodyTooLarge`` in the app (which drops
    what it had received) and the client gets the refusal instead of the app's answer. ``limits`` is read per
    request, so the limit in force is the queue's current one. Other bodies (the page's own requests, a JSON
    body) pass whatever the disk holds: with a full disk the page must still delete old results.
    """

    def __init__(self, app: ASGIApp, limits: Callable[[], Limits], room: Callable[[], int] | None = None) -> None:
        self.app = app
        self.limits = limits
        self.room = room

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits()
        headers = Headers(scope=scope)
        size_limit = limits.upload_mb * MB if limits.upload_mb else None
        room = None  # bytes the body may have before it is refused for the disk
        if self.room is not None and headers.get("content-type", "").lower().startswith("multipart/"):
            room = self.room()
        if size_limit is None and room is None:
            await self.app(scope, receive, send)
            return
        what = f"{scope['method']} {scope['path']}"
        declared = headers.get("content-length", "")
        if declared.isdigit():
            if size_limit is not None and int(declared) > size_limit:
                log.warning("%s refused: a body of %s bytes, over the %d MB limit", what, declared, limits.upload_mb)
                await self._refuse(scope, receive, send, limits, what, f"{int(declared) / MB:.1f} MB")
                return
            if room is not None and int(declared) > max(room, SMALL_UPLOAD):
                log.warning("%s refused: a body of %s bytes, with room for %d before the disk's reserve", what,
                            declared, room)
                await self._refuse_for_disk(scope, receive, send, limits, what, int(declared), room)
                return

        received = 0
        cut: str | None = None  # which limit the body passed: "size" or "disk"
        answered = False

        async def counted() -> Message:
            nonlocal received, cut
            if cut is None:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                received += len(message.get("body", b""))
                if size_limit is not None and received > size_limit:
                    cut = "size"
                elif room is not None and received > max(room, SMALL_UPLOAD):
                    cut = "disk"
                else:
                    return message
            raise BodyTooLarge(f"the body passed the {limits.upload_mb} MB upload limit" if cut == "size" else
                               "the body passed the room left on the studio's disk")

        async def guarded(message: Message) -> None:
            nonlocal answered
            if cut and not answered:
                return  # the app's answer to a body cut short is replaced by the refusal below
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not cut or answered:
                raise
        if cut == "size" and not answered:
            log.warning("%s refused: the body passed the %d MB limit", what, limits.upload_mb)
            await self._refuse(scope, receive, send, limits, what, f"more than {limits.upload_mb} MB")
        elif cut == "disk" and not answered:
            log.warning("%s refused: the body passed the room left before the disk's reserve", what)
            await self._refuse_for_disk(scope, receive, send, limits, what, 0, room)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, limits: Limits, what: str, size: str) -> None:
        response = error_response(413, f"{what}: the upload is {size}; the limit is {limits.upload_mb} MB "
                                       f"({limits.how_to_raise('upload_mb')})")
        response.headers["Connection"] = "close"  # the rest of the body is not read
        await response(scope, receive, send)

    @staticmethod
    async def _refuse_for_disk(scope: Scope, receive: Receive, send: Send, limits: Limits, what: str,
                               needed: int, room: int) -> None:
        free = max(0, room + int(limits.free_gb * 2**30))
        refusal = disk_full(what, None, limits, needed, free)
        response = error_response(507, str(refusal), refusal.code, refusal.params)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


# ---- which host names the studio answers to, and which pages may use it -------------------------------------

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
ALL_ADDRESSES = frozenset({"0.0.0.0", "::", ""})
# Methods a browser lets any page send (as a form, a link, an image) without asking first, and that change nothing.
READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _name_of(authority: str) -> str | None:
    """The host name of a ``Host`` header (``name[:port]``, ``[v6]:port``): lower case, without port, brackets or
    a final dot; None when it is not one."""
    try:
        parts = urlsplit("//" + authority)
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return None
    return (parts.hostname or "").rstrip(".") or None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def parse_hosts(value: str | None) -> tuple[str, ...]:
    """The names of ``--allowed-hosts`` (comma-separated host names or addresses, ``*`` for any); ValueError
    names one that is not a host name."""
    names = []
    for item in (value or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        if item == "*" or _is_address(item.strip("[]")):
            names.append(item.strip("[]"))
        elif _name_of(item) == item.rstrip(".") and all(c.isalnum() or c in ".-_" for c in item):
            names.append(item.rstrip("."))
        else:
            raise ValueError(f"{item!r} is not a host name; give names or addresses without a scheme, port or path, "
                             "e.g. studio.example.com,10.0.0.5")
    return tuple(names)


def parse_proxies(value: str | None) -> tuple[str, ...]:
    """The addresses of ``--trusted-proxies`` (comma-separated addresses or networks such as 10.0.0.0/24);
    ValueError names one that is neither."""
    proxies = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        try:
            proxy = ipaddress.ip_network(item, strict=False) if "/" in item else ipaddress.ip_address(item)
        except ValueError:
            raise ValueError(f"{item!r} is not an address or a network (e.g. 127.0.0.1 or 10.0.0.0/24)") from None
        proxies.append(str(proxy))
    return tuple(proxies)


def _machine_names() -> set[str]:
    names = set()
    for lookup in (socket.gethostname, socket.getfqdn):
        try:
            names.add(lookup().lower().rstrip("."))
        except OSError:
            pass
    return names - {""}


@dataclass(frozen=True)
class AllowedHosts:
    """The host names the studio answers to, by a request's ``Host`` header.

    A page of another site can point a name of its own at this machine (DNS rebinding); to the browser the
    studio then is that site, and the page may read its answers. Such requests still carry the other site's
    name as their Host, so only names the studio is known by are answered: loopback names, the address it
    listens on (on all addresses, the machine's own names), and those the operator adds (``extra``, from
    ``--allowed-hosts``: a reverse proxy's public name). An IP address as the Host is always fine: without a
    name there is no rebinding. ``*`` among the names answers any.
    """

    names: frozenset[str]
    # The operator's names are also trusted as the page's origin: behind a proxy the Host may be the proxy's
    # upstream address while the page was loaded by the public name.
    extra: frozenset[str] = frozenset()

    @classmethod
    def serving(cls, host: str = "127.0.0.1", extra: Iterable[str] = ()) -> AllowedHosts:
        """The names of a studio listening on ``host`` (``--host``), plus ``extra``."""
        host = host.lower().strip("[]")
        extra = frozenset(extra)
        names = LOOPBACK_NAMES | extra | (_machine_names() if host in ALL_ADDRESSES else {host})
        return cls(frozenset(names), extra)

    def allows(self, name: str | None) -> bool:
        return name is not None and ("*" in self.names or name in self.names or _is_address(name))


class OriginCheck:
    """Answers only requests meant for this studio, from no page at all (curl, scripts) or from its own page.

    * A ``Host`` the studio does not serve (``AllowedHosts``) is refused with 400.
    * A request with an ``Origin`` header must come from the studio's own origin (the name and port the
      request was sent to) or from a name the operator added; otherwise 403. Browsers send ``Origin`` with
      every request that may change something (forms, ``fetch`` in any mode) and every cross-origin read, so
      another site's page is refused whatever it sends; so are sandboxed pages and local files (``null``).
    * A request that changes something (not GET, HEAD or OPTIONS) without ``Origin`` but with a ``Referer``
      (older browsers) must have been sent from the studio's own page; otherwise 403.
    Covers every route, the page's (Gradio's uploads, queue and file routes) as well as ``/api``, and
    WebSockets.
    """

    def __init__(self, app: ASGIApp, hosts: AllowedHosts) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        method = scope.get("method", "GET")
        what = f"{method} {scope['path']}"
        host = headers.get("host")
        if host is not None and not self.hosts.allows(_name_of(host)):
            name = _name_of(host) or host
            await self._refuse(scope, receive, send, 400, (
                f"{what} is addressed to {host[:100]!r}, a name this studio does not serve (another site's page would "
                f"address it so); if it is reached by that name, start it with --allowed-hosts {name[:100]} "
                "(or HEYGEM_ALLOWED_HOSTS)"))
            return
        source, header = headers.get("origin"), "Origin"
        if source is None and method not in READING_METHODS:
            source, header = headers.get("referer"), "Referer"
        if source is not None and not self._own(source, host):
            await self._refuse(scope, receive, send, 403, (
                f"{what} was sent by the page {source[:100]!r} ({header}), not by the studio's own page; pages of "
                "other sites may not use the studio (behind a reverse proxy, name its public host with "
                "--allowed-hosts)"))
            return
        await self.app(scope, receive, send)

    def _own(self, source: str, host: str | None) -> bool:
        """True when ``source`` (an Origin or a Referer) is the studio's own origin as the request addressed it."""
        try:
            page = urlsplit(source)
            page_port = page.port
            served = urlsplit("//" + (host or ""))
            served_port = served.port
        except ValueError:
            return False
        if page.scheme not in ("http", "https") or not page.hostname:
            return False  # "null" (sandboxed pages, local files) and anything else
        name = page.hostname.rstrip(".")
        if name in self.hosts.extra:
            return True
        default = 443 if page.scheme == "https" else 80
        return host is not None and (name, page_port or default) == ((served.hostname or "").rstrip("."),
                                                                     served_port or default)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, reason: str) -> None:
        log.warning("refused: %s", reason)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})  # before accept: a 403
            return
        await error_response(status, reason)(scope, receive, send)
