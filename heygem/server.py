"""The web server: the HTTP API and the Gradio studio on one port, over one job queue.

Listening on 127.0.0.1 needs nothing. Any other address needs credentials (HTTP Basic, for the page and the
API alike), so nobody on the network reaches the studio by accident; wrong passwords lock their address out
for a while (``heygem.security.LoginThrottle``). Requests addressed to a host name the studio does not serve,
or sent by another site's page, are refused (``heygem.security.OriginCheck``); the client's address is the
connection's, or ``X-Forwarded-For`` only from proxies the operator names. Only regular files under
``outputs/`` are served: results and ZIPs by the API, and Gradio's own copies, whose cache is moved into
``outputs/.gradio``. Request bodies over the upload limit, and uploads the disk could take only by eating into
the space the studio keeps free, are refused at the door (``heygem.security.UploadLimit``).
"""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import secrets
from collections import Counter
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from heygem.api import api_router, error_response
from heygem.jobs import JobQueue
from heygem.limits import room_on_disk
from heygem.live.routes import live_router
from heygem.live.sessions import LiveSessions
from heygem.security import AllowedHosts, LoginThrottle, OriginCheck, UploadLimit

log = logging.getLogger(__name__)

__all__ = ["Credentials", "create_app", "is_loopback", "parse_credentials", "serve"]


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str

    def accepts(self, header: str | None) -> bool:
        """True for an ``Authorization: Basic ...`` header with this user and password (constant time)."""
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
        except ValueError:  # not base64 (a byte past ASCII in the header too), or not UTF-8 once decoded
            return False
        return secrets.compare_digest(user.encode(), self.user.encode()) & secrets.compare_digest(
            password.encode(), self.password.encode())


def parse_credentials(value: str | None) -> Credentials | None:
    """``user:password`` (from ``--auth`` or ``HEYGEM_AUTH``); ValueError when malformed."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("credentials must look like user:password, both parts non-empty")
    return Credentials(user, password)


def is_loopback(host: str) -> bool:
    """127.0.0.1, ::1 and localhost reach only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _BasicAuth(BaseHTTPMiddleware):
    def __init__(self, app, credentials: Credentials, throttle: LoginThrottle) -> None:
        super().__init__(app)
        self.credentials = credentials
        self.throttle = throttle

    async def dispatch(self, request: Request, call_next):
        address = request.client.host if request.client else "unknown"
        if locked := self.throttle.locked_for(address):
            return self.throttle.refusal(address, locked)
        header = request.headers.get("authorization")
        if self.credentials.accepts(header):
            self.throttle.succeeded(address)
            return await call_next(request)
        # A browser asks without credentials first and shows the password dialog on the 401: not a wrong try.
        if header and (lockout := self.throttle.failed(address)):
            return self.throttle.refusal(address, lockout)
        response: Response = error_response(401, "sign in with the user and password the studio was started with")
        response.headers["WWW-Authenticate"] = 'Basic realm="HeyGem", charset="UTF-8"'
        return response


def create_app(
    queue: JobQueue,
    credentials: Credentials | None = None,
    *,
    ui: bool = True,
    log_file: Path | None = None,
    throttle: LoginThrottle | None = None,
    hosts: AllowedHosts | None = None,
    trusted_proxies: Sequence[str] = (),
) -> FastAPI:
    """The ASGI app: ``/api/...`` (see heygem.api) and, with ``ui``, the Gradio studio at ``/`` (its Logs tab
    shows ``log_file``). ``throttle``: how wrong passwords are slowed down (default ``LoginThrottle()``).
    ``hosts``: the names it answers to (default: those of a studio on 127.0.0.1). ``trusted_proxies``:
    addresses or networks whose ``X-Forwarded-For`` names the client (default none: the connection's address).
    Serve it with ``serve``: uvicorn's own default would trust ``X-Forwarded-For`` from 127.0.0.1."""
    # No Swagger page: it loads its scripts from a CDN, which an offline machine cannot reach. The schema is
    # served; README.md has curl examples.
    live = LiveSessions(queue)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await live.close()  # the peers' connections are closed, not dropped, when the studio stops

    app = FastAPI(title="HeyGem", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json", lifespan=lifespan)
    # The last added runs first: the Host and the page a request comes from are checked first, then
    # credentials, all before any of a body is read.
    app.add_middleware(UploadLimit, limits=lambda: queue.defaults.limits,
                       room=lambda: room_on_disk(queue.root, queue.defaults.limits))
    if credentials is not None:
        app.add_middleware(_BasicAuth, credentials=credentials, throttle=throttle or LoginThrottle())
    if trusted_proxies:  # before the credentials: the throttle counts by the client's address
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(trusted_proxies))
    app.add_middleware(OriginCheck, hosts=hosts or AllowedHosts.serving())

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        response = error_response(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception):
        # Starlette logs the traceback itself once this answer is sent.
        return error_response(500, "internal error; the server's log has the details")

    @app.exception_handler(RequestValidationError)
    async def _missing_field(request: Request, exc: RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ())[1:]) or 'request'}: {err.get('msg', 'invalid')}"
            for err in exc.errors())
        return error_response(400, f"bad request ({problems})")

    # Before the API's own routes: its last route answers every /api/... path no route above it takes.
    app.state.live = live
    app.include_router(live_router(live))
    app.include_router(api_router(queue))
    if ui:
        from heygem.ui import mount_studio

        mount_studio(app, queue, log_file=log_file)
    return app


# Ctrl+C gives requests under way this long to finish; then uvicorn cuts them (and prints a traceback for each).
# It would otherwise wait for every connection to close.
STOP_GRACE_SECONDS = 3


class _Server(uvicorn.Server):
    """uvicorn's server, which ends the open pages' heartbeats as it stops. Each open page keeps one stream open
    for as long as it is open, and uvicorn waited for them all: with a page open, Ctrl+C did not stop the
    studio, which had said "Ctrl+C stops"."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list | None = None) -> None:
        for route in self._app.routes:  # the Gradio studio, mounted: its streams end when its stop_event is set
            stop_event = getattr(getattr(route, "app", None), "stop_event", None)
            if isinstance(stop_event, asyncio.Event):
                stop_event.set()
        await super().shutdown(sockets)


# Connections that hold a socket and send nothing were kept for ever: about 1000 of them (a common limit of open
# files; 20000 here) made the studio answer nobody, the password check included, since it comes after. Now a
# connection must bring a request's headers within HEADER_SECONDS of opening, or of its last answer (a body may
# take as long as it takes: a large upload on a slow line), and one address holds at most CONNECTIONS_PER_ADDRESS
# at once (a browser opens six; this machine and the proxies in front of it are not counted).
HEADER_SECONDS = 20.0
CONNECTIONS_PER_ADDRESS = 256


class GuardedH11(H11Protocol):
    """uvicorn's HTTP/1.1 connection, closed when its request's headers take over HEADER_SECONDS, or refused at
    once past CONNECTIONS_PER_ADDRESS from one address."""

    open_per_address: Counter[str] = Counter()  # the event loop's thread alone touches it

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._address = self.client[0] if self.client else ""
        self._check: asyncio.TimerHandle | None = None
        self.open_per_address[self._address] += 1
        if self.open_per_address[self._address] > CONNECTIONS_PER_ADDRESS and not is_loopback(self._address):
            transport.close()
            return
        self._waiting_since = self.loop.time()
        self._check = self.loop.call_later(HEADER_SECONDS, self._close_if_still_waiting)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._check is not None:
            self._check.cancel()
        self.open_per_address[self._address] -= 1
        if self.open_per_address[self._address] <= 0:
            del self.open_per_address[self._address]
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        self._waiting_since = self.loop.time()
        super().on_response_complete()

    def _close_if_still_waiting(self) -> None:
        if self.transport.is_closing() or self.transport.get_protocol() is not self:  # closed, or a WebSocket now
            return
        waited = self.loop.time() - self._waiting_since
        between_requests = self.cycle is None or self.cycle.response_complete
        if between_requests and waited >= HEADER_SECONDS:
            self.transport.close()
            return
        self._check = self.loop.call_later(HEADER_SECONDS - waited if between_requests else HEADER_SECONDS,
                                           self._close_if_still_waiting)


def server_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """uvicorn's settings for ``app`` on ``host``:``port``."""
    # proxy_headers=False: uvicorn would otherwise take the client's address from X-Forwarded-For whenever the
    # connection comes from 127.0.0.1, so any local client could name any address to the password throttle.
    # create_app trusts only the proxies the operator names.
    return uvicorn.Config(app, host=host, port=port, log_level="warning", proxy_headers=False,
                          timeout_graceful_shutdown=STOP_GRACE_SECONDS, http=GuardedH11)


def _more_open_files() -> None:
    """Raise this process's limit of open files to what the system allows it (often 1024 of a possible 500000):
    every connection, upload and ffmpeg pipe takes some."""
    try:
        import resource
    except ImportError:  # Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.info("open files stay limited to %d (%s)", soft, exc)


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run ``app`` (from ``create_app``) on ``host``:``port`` until interrupted."""
    _more_open_files()
    _Server(server_config(app, host, port), app).run()
