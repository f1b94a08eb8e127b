"""Serving: loopback by default, credentials required anywhere else, and checked on the API and the page."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
from starlette.testclient import TestClient

import app as studio_app
from heygem.jobs import JobQueue
from heygem.server import Credentials, create_app, is_loopback, parse_credentials

LOCAL = "http://127.0.0.1:7860"  # the studio answers only to the names it is served by (not TestClient's "testserver")


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("example.org")


def test_credentials_are_user_colon_password() -> None:
    assert parse_credentials("admin:s3:cret") == Credentials("admin", "s3:cret")
    assert parse_credentials(None) is None
    for bad in ("admin", ":pw", "admin:"):
        with pytest.raises(ValueError, match="user:password"):
            parse_credentials(bad)


def test_listening_on_the_network_without_credentials_is_refused(capsys, monkeypatch) -> None:
    monkeypatch.delenv("HEYGEM_AUTH", raising=False)
    assert studio_app.main(["--host", "0.0.0.0", "--port", "7999"]) == 2
    assert "--auth user:password" in capsys.readouterr().err


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_with_credentials_every_route_asks_for_them(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "outputs", start=False)
    try:
        client = TestClient(create_app(queue, Credentials("admin", "pw"), ui=False), base_url=LOCAL)
        denied = client.get("/api/status")
        assert denied.status_code == 401 and "error" in denied.json()
        assert denied.headers["www-authenticate"].startswith("Basic")
        assert client.get("/api/status", headers=_basic("admin", "wrong")).status_code == 401
        assert client.get("/", headers=_basic("admin", "wrong")).status_code == 401
        # A byte past ASCII in the header (a 500 and a traceback in the log, not a wrong try).
        assert client.get("/api/status", headers={"authorization": b"Basic \xc3\xa9"}).status_code == 401
        allowed = client.get("/api/status", headers=_basic("admin", "pw"))
        assert allowed.status_code == 200 and allowed.json()["pending"] == 0
        # The live routes too: the speech pushed as it is produced as much as a session's creation.
        assert client.post("/api/live", json={"presenter": "x"}).status_code == 401
        assert client.post("/api/live/abc/stream", content=b"\0" * 3200).status_code == 401
        assert client.post("/api/live", json={"presenter": "x"}, headers=_basic("admin", "pw")).status_code == 404
    finally:
        queue.close()


def test_the_api_schema_is_served_without_a_cdn_page(tmp_path: Path) -> None:
    queue = JobQueue(tmp_path / "outputs", start=False)
    try:
        client = TestClient(create_app(queue, ui=False), base_url=LOCAL)
        schema = client.get("/api/openapi.json").json()
        assert {"/api/jobs", "/api/batches", "/api/batches/{batch_id}/zip"} <= set(schema["paths"])
        assert client.get("/api/docs").status_code == 404  # Swagger's page would fetch its scripts from a CDN
    finally:
        queue.close()


def test_bad_host_names_and_proxies_are_refused_at_start(capsys, monkeypatch) -> None:
    for variable in ("HEYGEM_AUTH", "HEYGEM_ALLOWED_HOSTS", "HEYGEM_TRUSTED_PROXIES"):
        monkeypatch.delenv(variable, raising=False)
    assert studio_app.main(["--port", "7999", "--allowed-hosts", "studio.example.com,https://studio.example.com"]) == 2
    assert capsys.readouterr().err == (
        "error: --allowed-hosts: 'https://studio.example.com' is not a host name; give names or addresses without a "
        "scheme, port or path, e.g. studio.example.com,10.0.0.5\n")
    monkeypatch.setenv("HEYGEM_TRUSTED_PROXIES", "proxy.local")
    assert studio_app.main(["--port", "7999"]) == 2
    assert capsys.readouterr().err == (
        "error: --trusted-proxies: 'proxy.local' is not an address or a network (e.g. 127.0.0.1 or 10.0.0.0/24)\n")


def test_connections_that_send_nothing_are_closed_and_one_address_holds_a_few(tmp_path: Path, monkeypatch) -> None:
    """About 1000 sockets held open sending nothing (a common limit of open files) made the studio answer nobody,
    the password check included: every one was kept for ever."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    from heygem import server

    monkeypatch.setattr(server, "HEADER_SECONDS", 1.0)
    monkeypatch.setattr(server, "CONNECTIONS_PER_ADDRESS", 3)
    queue = JobQueue(tmp_path / "outputs", start=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    running = uvicorn.Server(server.server_config(create_app(queue, ui=False), "127.0.0.1", port))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    try:
        while not running.started:
            time.sleep(0.05)

        def held(count: int) -> list[socket.socket]:
            return [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]

        def closed_by_the_studio(sock: socket.socket, within: float) -> bool:
            sock.settimeout(within)
            try:
                return sock.recv(1) == b""
            except TimeoutError:
                return False

        idle, dripping = held(2)
        dripping.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the rest never comes
        assert closed_by_the_studio(idle, 3) and closed_by_the_studio(dripping, 3)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:  # a request of ordinary pace: answered
            assert client.get("/api/status").status_code == 200

        # This machine is never counted (a proxy in front of the studio connects from here); another address is.
        monkeypatch.setattr(server, "is_loopback", lambda host: False)
        kept = held(3)
        assert closed_by_the_studio(held(1)[0], 0.5)
        assert not any(closed_by_the_studio(sock, 0.2) for sock in kept)
        for sock in kept:
            sock.close()
        time.sleep(0.2)
        assert not closed_by_the_studio(held(1)[0], 0.3)
    finally:
        running.should_exit = True
        thread.join(10)
        queue.close()


def test_the_page_s_event_queue_does_not_spin_while_it_waits(tmp_path: Path) -> None:
    """Gradio's event queue looked for work every millisecond while it had none: a studio with no page open
    and no job took 9% of a core, 2% with the queue waiting 20 ms between looks (bench/open_page.py;
    bench/RESULTS.md, "What an open studio costs")."""
    import gradio as gr
    from starlette.routing import Mount

    with gr.Blocks() as plain:
        gr.Markdown("x")
    spinning = plain.queue()._queue.sleep_when_free  # Gradio's own wait, where the studio did not set one
    queue = JobQueue(tmp_path / "outputs", start=False)
    try:
        app = create_app(queue)
        studio = next(route.app for route in app.routes if isinstance(route, Mount)).get_blocks()
        assert spinning <= 0.001 < 0.02 <= studio._queue.sleep_when_free
        assert studio._queue.progress_update_sleep_when_free >= 0.02
    finally:
        queue.close()


def test_the_page_s_events_are_neither_summed_up_after_each_one_nor_shown_to_anyone(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """Mounted, Gradio answered /monitoring/summary (the page's handlers, their counts and times) to anyone, and
    after every event, the page's refresh each second among them, tabulated the last 10,000 events in a pandas
    frame for it: 4 ms of CPU per event at first, 19 ms after about three hours of one open page."""
    import time

    from fastapi.testclient import TestClient
    from gradio.queueing import Queue
    from starlette.routing import Mount

    tabulated = []
    tabulate = Queue._get_df
    monkeypatch.setattr(Queue, "_get_df", staticmethod(lambda records: tabulated.append(len(records)) or
                                                       tabulate(records)))
    queue = JobQueue(tmp_path / "outputs", start=False)
    try:
        app = create_app(queue)
        events = next(route.app for route in app.routes if isinstance(route, Mount)).get_blocks()._queue
        past = [{"time": time.time(), "status": "success", "process_time": 0.01, "function": "tick",
                 "session_hash": "x"}] * 10_000
        for _ in range(3):  # as after three of the page's events
            events.events_recorded += 1
            events.compute_analytics_summary(past)
        assert tabulated == []
        with TestClient(app, base_url="http://127.0.0.1:7860") as client:
            assert client.get("/monitoring/summary").status_code == 403
    finally:
        queue.close()


def test_the_frame_guard_comes_first_in_the_page_and_nowhere_else(tmp_path: Path) -> None:
    """heygem/ui/frames.js must run before Gradio's modules take the browser's requestAnimationFrame: it is the
    page's first script, once, with the page's length counted again; other answers pass untouched."""
    queue = JobQueue(tmp_path / "outputs", start=False)
    try:
        with TestClient(create_app(queue), base_url=LOCAL) as client:
            page = client.get("/?batch=x")
            status = client.get("/api/status")
    finally:
        queue.close()
    assert page.status_code == 200 and int(page.headers["content-length"]) == len(page.content)
    html = page.text
    assert html.count("const readyId = 'engine-line'") == 1
    first = html.index("<script", html.index("<head>"))
    assert "const readyId" in html[first:html.index("</script>", first)]  # the page's first script
    assert status.status_code == 200 and "readyId" not in status.text and status.json()
