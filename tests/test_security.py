"""What the server refuses: files a request names outside Gradio's own uploads, requests from other sites' pages
or for host names it does not serve, password guessing (with a forged X-Forwarded-For too), results that are
no longer plain files, and uploads over the size limit (before anything of them is stored)."""
from __future__ import annotations

import base64
import http.server
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.testclient import TestClient

from conftest import REPO, wait_until_answering
from heygem.jobs import JobQueue
from heygem.security import LoginThrottle
from heygem.server import Credentials, create_app

MB = 1024 * 1024
LIMIT_MESSAGE = "the limit is 1 MB (raise it with --max-upload-mb or HEYGEM_MAX_UPLOAD_MB)"


# ---- Gradio: a request may name only files Gradio received itself ----------------------------------------

def _file_data(path: str | Path) -> dict[str, Any]:
    return {"path": str(path), "orig_name": Path(path).name, "meta": {"_type": "gradio.FileData"}}


def _takes_files(parameter: dict) -> bool:
    """An API parameter whose value is (or holds) a FileData: File, Video, Audio, Image, Gallery, ..."""
    return "gradio.FileData" in json.dumps(parameter["type"])


def _inputs(parameters: list[dict], path: Path) -> list[Any]:
    """The API inputs of an endpoint, with ``path`` in every file input (as a list where it takes several)."""
    return [([_file_data(path)] if p["type"].get("type") == "array" else _file_data(path)) if _takes_files(p)
            else p.get("parameter_default") for p in parameters]


def _call(client: httpx.Client, name: str, data: list[Any]) -> tuple[str, str]:
    """Gradio's two-step call route: post the inputs, then read the answer; (last event, its data)."""
    posted = client.post(f"/gradio_api/call/{name}", json={"data": data})
    assert posted.status_code == 200, posted.text
    answer = client.get(f"/gradio_api/call/{name}/{posted.json()['event_id']}")
    event = payload = ""
    for line in answer.text.splitlines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            payload = line.removeprefix("data: ")
    return event, payload


def _join(client: httpx.Client, fn_index: int, data: list[Any], session: str | None = None) -> str:
    """The route the page itself uses: join the queue, then read the stream up to the event's end."""
    session = session or uuid.uuid4().hex
    joined = client.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session,
                                                         "event_data": None, "trigger_id": None})
    assert joined.status_code == 200, joined.text
    with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if '"process_completed"' in line:
                return line
    return ""


def _files_under(folder: Path) -> Iterator[Path]:
    return (path for path in folder.rglob("*") if path.is_file())


def test_a_request_cannot_have_gradio_copy_out_a_file_it_did_not_receive(studio, tmp_path: Path) -> None:
    secret = tmp_path / "secret.mp4"
    content = f"heygem secret {uuid.uuid4()}".encode() * 50
    secret.write_bytes(content)
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        endpoints = client.get("/gradio_api/info", params={"all_endpoints": "true"}).json()["named_endpoints"]
        config = client.get("/config").json()
        kinds = {component["id"]: component["type"] for component in config["components"]}
        fn_index = {dep["api_name"]: (dep["id"], dep["inputs"]) for dep in config["dependencies"]}
        with_files = {name.lstrip("/"): ep["parameters"] for name, ep in endpoints.items()
                      if any(_takes_files(p) for p in ep["parameters"])}
        # Every file input of the page as it is today; the check must cover whatever is added later too.
        assert {"preview_speech", "preview_picture", "submit_single", "submit_batch"} <= set(with_files)

        pending = studio.queue.count(["queued", "running"])
        for name, parameters in with_files.items():
            inputs = _inputs(parameters, secret)
            event, answer = _call(client, name, inputs)
            assert event == "error" and "not uploaded by a user" in answer, (name, event, answer)
            assert content.decode()[:40] not in answer

            ran = client.post(f"/gradio_api/run/{name}", json={"data": inputs})
            assert ran.status_code != 200 and content not in ran.content, (name, ran.status_code)

            index, input_ids = fn_index[name]
            api_values = iter(inputs)  # the page also sends its State inputs, which the API leaves out
            joined = _join(client, index, [None if kinds[i] == "state" else next(api_values) for i in input_ids])
            assert '"success":false' in joined.replace(" ", "") and content.decode()[:40] not in joined, (name, joined)

        assert studio.queue.count(["queued", "running"]) == pending  # no job was made of the file
        copies = [path for path in _files_under(studio.root) if content in path.read_bytes()]
        assert copies == []
        for url in (f"/gradio_api/file={secret}", f"/file={secret}"):
            assert client.get(url).status_code in (403, 404)


def test_the_page_still_takes_uploads_and_shows_results(studio, short_clips) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        speech = short_clips["speech"].read_bytes()
        uploaded = client.post("/gradio_api/upload", files=[("files", ("speech.wav", speech, "audio/wav"))])
        assert uploaded.status_code == 200, uploaded.text
        [path] = uploaded.json()
        assert Path(path).is_relative_to(studio.root / ".gradio")

        event, answer = _call(client, "preview_speech", [_file_data(path)])
        assert event == "complete", answer
        shown = json.loads(answer)[0]["value"]
        assert client.get(shown["url"]).content == speech

        # The same check covers what the handlers return: a result (under outputs/) still reaches the page.
        job = client.post("/api/jobs", files={"audio": ("speech.wav", speech),
                                              "video": ("d0.mp4", short_clips["d0"].read_bytes())}).json()
        [done] = studio.queue.wait([job["id"]], timeout=240)
        assert done.state == "succeeded", done.error
        # As the page does: open History (which lists the results to pick from), then pick this one.
        events = {dep["api_name"]: dep["id"] for dep in client.get("/config").json()["dependencies"]}
        session = uuid.uuid4().hex
        _join(client, events["history"], [None], session)
        played = json.loads(_join(client, events["play"], [job["id"]], session).removeprefix("data: "))
        assert played["success"], played
        player, download = played["output"]["data"]
        result = client.get(f"/api/jobs/{job['id']}/result").content
        assert client.get(download["url"]).content == result
        assert client.get(player["url"]).content == result


def test_an_uploaded_name_with_a_quote_is_shown_as_its_owner_wrote_it(studio) -> None:
    """Gradio keeps a name in the form's encoding (a quote as %22); the page's words use the owner's name."""
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        uploaded = client.post("/gradio_api/upload", files=[("files", ('talk "final".wav', b"not a sound", "audio/wav"))])
        assert uploaded.status_code == 200, uploaded.text
        [path] = uploaded.json()
        event, answer = _call(client, "preview_speech", [_file_data(path)])
    assert event == "complete", answer
    problems = json.dumps(json.loads(answer))
    assert "talk &quot;final&quot;.wav" in problems or 'talk \\"final\\".wav' in problems, problems
    assert "%22" not in problems


# ---- passwords: wrong ones lock the address out for a while ------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def guarded(tmp_path: Path):
    """An API (no page) that asks for admin:pw, with a throttle on a fake clock: 5 free tries, then 10 s."""
    queue = JobQueue(tmp_path / "outputs", start=False)
    clock = FakeClock()
    app = create_app(queue, Credentials("admin", "pw"), ui=False,
                     throttle=LoginThrottle(free_tries=5, first_lockout=10, longest_lockout=60, clock=clock))

    def client(address: str) -> TestClient:
        return TestClient(app, base_url="http://127.0.0.1:7860", client=(address, 40000))

    yield client, clock
    queue.close()


def test_wrong_passwords_lock_the_address_out_even_for_the_right_one(guarded, caplog) -> None:
    client, clock = guarded
    guesser = client("203.0.113.5")
    with caplog.at_level(logging.WARNING, logger="heygem.security"):
        answers = [guesser.get("/api/status", headers=_basic("admin", f"guess{n}")) for n in range(300)]
    assert [a.status_code for a in answers[:4]] == [401] * 4
    assert {a.status_code for a in answers[4:]} == {429}
    assert "203.0.113.5" in caplog.text and "locked out for 10 s" in caplog.text

    refused = guesser.get("/api/status", headers=_basic("admin", "pw"))
    assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
    assert refused.json() == {"error": "too many wrong passwords from 203.0.113.5; try again in 10 s"}
    # Someone else, from another address, is not held up.
    assert client("198.51.100.7").get("/api/status", headers=_basic("admin", "pw")).status_code == 200

    clock.now += 11
    assert guesser.get("/api/status", headers=_basic("admin", "pw")).status_code == 200
    # The right password cleared the count: the next mistakes start from the free tries again.
    assert guesser.get("/api/status", headers=_basic("admin", "typo")).status_code == 401


def test_each_lockout_is_longer_than_the_last(guarded) -> None:
    client, clock = guarded
    guesser = client("203.0.113.9")
    waits = []
    for _ in range(4):
        while (answer := guesser.get("/api/status", headers=_basic("admin", "nope"))).status_code != 429:
            pass
        waits.append(int(answer.headers["retry-after"]))
        clock.now += waits[-1] + 1
    assert waits == [10, 20, 40, 60]  # doubled each time, up to longest_lockout


def test_asking_without_credentials_is_not_a_wrong_password(guarded) -> None:
    client, _ = guarded
    browser = client("192.0.2.44")
    # A browser first asks without credentials, and again after each cancelled dialog.
    assert {browser.get("/api/status").status_code for _ in range(20)} == {401}
    assert browser.get("/api/status", headers=_basic("admin", "pw")).status_code == 200


def test_the_throttle_remembers_a_bounded_number_of_addresses() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(free_tries=2, first_lockout=10, max_addresses=3, clock=clock)
    assert throttle.failed("10.0.0.1") == 0
    for n in range(2, 100):
        throttle.failed(f"10.0.0.{n}")
    # 10.0.0.1 was forgotten to make room, so this is its first wrong try again, not its second.
    assert throttle.failed("10.0.0.1") == 0
    assert throttle.failed("10.0.0.99") == 10


# ---- uploads over the size limit are refused at the door ---------------------------------------------------

def _chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """The body as a generator: httpx then sends it chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


def _stored(root: Path) -> set[Path]:
    """Every file the API or the page keeps uploads in."""
    return {*_files_under(root / "batches"), *_files_under(root / ".gradio"), *root.glob(".upload-*")}


def test_an_upload_over_the_limit_is_refused_before_it_is_stored(studio, monkeypatch) -> None:
    studio.queue.wait([job.id for job in studio.queue.jobs(["queued", "running"])], timeout=240)
    monkeypatch.setattr(studio.queue.defaults.limits, "upload_mb", 1)
    big = os.urandom(2 * MB)
    speech = b"RIFF"  # never read: the body is refused whole
    before, jobs = _stored(studio.root), len(studio.queue.jobs(limit=10_000))
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        for route, files in [
            ("/api/jobs", {"audio": ("speech.wav", speech), "video": ("big.mp4", big)}),
            ("/api/batches", {"audio": ("speech.wav", speech), "video": ("big.mp4", big)}),
            ("/gradio_api/upload", {"files": ("big.mp4", big)}),
        ]:
            refused = client.post(route, files=files)
            assert refused.status_code == 413
            assert refused.json() == {"error": f"POST {route}: the upload is 2.0 MB; {LIMIT_MESSAGE}"}

            request = client.build_request("POST", route, files=files)
            body = request.read()
            chunked = client.post(route, content=_chunks(body),
                                  headers={"content-type": request.headers["content-type"]})
            assert chunked.status_code == 413, chunked.text
            assert chunked.json() == {"error": f"POST {route}: the upload is more than 1 MB; {LIMIT_MESSAGE}"}

    assert _stored(studio.root) == before
    assert len(studio.queue.jobs(limit=10_000)) == jobs


def test_an_upload_the_disk_can_take_only_from_its_reserve_is_refused_before_it_is_stored(studio, monkeypatch) -> None:
    """A page upload was stored whole however full the disk (only its submission was held to --min-free-gb), so
    one large file could fill the disk under the jobs already running. Now an upload that would eat into the
    space the studio keeps free is refused at the door, declared or chunked, while the page's other requests
    (deleting old results) still pass."""
    import heygem.limits

    studio.queue.wait([job.id for job in studio.queue.jobs(["queued", "running"])], timeout=240)
    monkeypatch.setattr(studio.queue.defaults.limits, "free_gb", 1.0)
    monkeypatch.setattr(heygem.limits, "_free_bytes", lambda folder: 2**30 + 1 * MB)  # 1 MB over the reserve
    big = os.urandom(2 * MB)
    before, jobs = _stored(studio.root), _jobs(studio)
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        for route, files in [
            ("/api/jobs", {"audio": ("speech.wav", b"RIFF"), "video": ("big.mp4", big)}),
            ("/gradio_api/upload", {"files": ("big.mp4", big)}),
        ]:
            refused = client.post(route, files=files)
            assert refused.status_code == 507, refused.text
            body = refused.json()
            assert body["code"] == "disk_full" and body["params"]["limit"] == "1", body
            assert body["error"].startswith(f"POST {route}: not stored: the studio's disk has 1.00 GB free, 2.0 MB "
                                            "is needed, and the studio keeps 1 GB free"), body

            request = client.build_request("POST", route, files=files)
            chunked = client.post(route, content=_chunks(request.read()),
                                  headers={"content-type": request.headers["content-type"]})
            assert chunked.status_code == 507 and chunked.json()["code"] == "disk_full", chunked.text

        small = client.post("/gradio_api/upload", files={"files": ("small.wav", b"RIFF" * 1000)})
        assert small.status_code == 200, small.text
        # Not an upload: the page's own requests pass on a disk this full.
        assert client.delete("/api/jobs/nope").status_code == 404

    assert {p for p in _stored(studio.root) if p.name != "small.wav"} == before
    assert _jobs(studio) == jobs


def test_the_limit_reaches_the_page_and_zero_turns_it_off(studio, monkeypatch) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        # The page learns the limit, so the browser refuses a larger file before sending it.
        assert client.get("/config").json()["max_file_size"] == studio.queue.defaults.limits.upload_mb * MB
        monkeypatch.setattr(studio.queue.defaults.limits, "upload_mb", 0)
        let_in = client.post("/api/jobs", files={"audio": ("s.wav", b"x"), "video": ("v.mp4", os.urandom(2 * MB))},
                             data={"engine": "magic"})
        # Past the door: the route itself answers (here about the option), not the size limit.
        assert let_in.status_code == 400 and let_in.json()["error"].startswith("engine must be one of")


# ---- other sites' pages and host names the studio does not serve ------------------------------------------

def _jobs(studio) -> int:
    return len(studio.queue.jobs(limit=10_000))


def test_requests_sent_by_other_sites_pages_are_refused_on_the_api_and_the_page(studio, short_clips) -> None:
    speech, video = short_clips["speech"].read_bytes(), short_clips["d0"].read_bytes()
    job_files = {"audio": ("speech.wav", speech), "video": ("d0.mp4", video)}
    port = urlsplit(studio.url).port
    requests = [
        ("POST", "/api/jobs", {"files": job_files}),
        ("POST", "/api/batches", {"files": job_files}),
        ("POST", "/api/presenters", {"files": {"video": ("d0.mp4", video)}}),
        ("DELETE", "/api/jobs/nope", {}),
        ("POST", "/gradio_api/upload", {"files": {"files": ("d0.mp4", video)}}),
        ("POST", "/gradio_api/queue/join", {"json": {"data": [], "fn_index": 0, "session_hash": uuid.uuid4().hex}}),
    ]
    senders = [
        ({"origin": "http://evil.example"}, "'http://evil.example' (Origin)"),
        ({"origin": f"http://127.0.0.1:{port + 1}"}, f"'http://127.0.0.1:{port + 1}' (Origin)"),  # another local server
        ({"origin": "null"}, "'null' (Origin)"),  # a sandboxed page or a local file
        ({"referer": "http://evil.example/attack.html"}, "'http://evil.example/attack.html' (Referer)"),
    ]
    jobs, stored = _jobs(studio), _stored(studio.root)
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        for headers, sender in senders:
            for method, route, body in requests:
                refused = client.request(method, route, headers=headers, **body)
                assert refused.status_code == 403, (method, route, headers, refused.status_code)
                assert refused.json() == {"error": (
                    f"{method} {route} was sent by the page {sender}, not by the studio's own page; pages of other "
                    "sites may not use the studio (behind a reverse proxy, name its public host with --allowed-hosts)")}
        # Nor may another site's page read answers (a CORS request, or its preflight).
        read = client.get("/api/jobs", headers={"origin": "http://evil.example"})
        preflight = client.options("/gradio_api/upload", headers={"origin": "http://evil.example",
                                                                  "access-control-request-method": "POST"})
        for answer in (read, preflight):
            assert answer.status_code == 403 and "access-control-allow-origin" not in answer.headers
            assert "jobs" not in answer.json()
        assert _jobs(studio) == jobs and _stored(studio.root) == stored

        # The studio's own page, and clients without a page (curl, scripts), get through to the routes.
        for headers in ({"origin": studio.url, "referer": studio.url + "/"}, {}):
            reached = client.post("/api/jobs", files={"audio": ("speech.wav", speech)}, headers=headers)
            assert reached.status_code == 400 and reached.json()["error"].startswith("give a video field"), headers
            uploaded = client.post("/gradio_api/upload", files={"files": ("d0.mp4", video)}, headers=headers)
            assert uploaded.status_code == 200 and Path(uploaded.json()[0]).read_bytes() == video


def test_a_host_name_the_studio_does_not_serve_is_refused(studio) -> None:
    """DNS rebinding: another site points its own name at 127.0.0.1, and its page reads the studio as its own."""
    port = urlsplit(studio.url).port
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        for path in ("/api/jobs", "/", "/config", "/gradio_api/info"):
            refused = client.get(path, headers={"host": f"rebind.example:{port}"})
            assert refused.status_code == 400, (path, refused.status_code)
            assert refused.json() == {"error": (
                f"GET {path} is addressed to 'rebind.example:{port}', a name this studio does not serve (another "
                "site's page would address it so); if it is reached by that name, start it with --allowed-hosts "
                "rebind.example (or HEYGEM_ALLOWED_HOSTS)")}
        # Its own names, with any port (an SSH tunnel changes it), and addresses (no name, no rebinding) are fine.
        for host in (f"localhost:{port}", "localhost:9000", f"127.0.0.1:{port}", f"[::1]:{port}", "192.0.2.7:80"):
            assert client.get("/api/status", headers={"host": host}).status_code == 200, host


def test_names_behind_a_reverse_proxy_are_the_operators_to_add(tmp_path: Path) -> None:
    from heygem.security import AllowedHosts, parse_hosts, parse_proxies  # here: new in this version

    queue = JobQueue(tmp_path / "outputs", start=False)
    try:
        hosts = AllowedHosts.serving("127.0.0.1", parse_hosts("Studio.Example.com"))
        client = TestClient(create_app(queue, ui=False, hosts=hosts), base_url="http://127.0.0.1:7860")
        assert client.get("/api/status", headers={"host": "studio.example.com"}).status_code == 200
        assert client.get("/api/status", headers={"host": "other.example.com"}).status_code == 400
        # The proxy passes its own upstream address as the Host; the page was loaded by the public name.
        reached = client.post("/api/jobs", files={"audio": ("s.wav", b"x")},
                              headers={"origin": "https://studio.example.com"})
        assert reached.status_code == 400 and reached.json()["error"].startswith("give a video field")
        assert client.post("/api/jobs", files={"audio": ("s.wav", b"x")},
                           headers={"origin": "https://evil.example.com"}).status_code == 403
    finally:
        queue.close()

    # On all addresses the machine's own name is served; on 127.0.0.1 it is not (unless it is a loopback name).
    assert AllowedHosts.serving("0.0.0.0").allows(socket.gethostname().lower())
    assert not AllowedHosts.serving("127.0.0.1").allows("studio.example.com")
    assert AllowedHosts.serving("127.0.0.1", ["*"]).allows("anything.example")
    assert parse_hosts(" Studio.Example.com, 10.0.0.5,[::1] ") == ("studio.example.com", "10.0.0.5", "::1")
    for bad in ("http://studio.example.com", "studio.example.com:8443", "studio.example.com/x"):
        with pytest.raises(ValueError, match="is not a host name"):
            parse_hosts(bad)
    assert parse_proxies("127.0.0.1, 10.0.0.7/24") == ("127.0.0.1", "10.0.0.0/24")
    with pytest.raises(ValueError, match="is not an address or a network"):
        parse_proxies("proxy.local")


CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
# As in test_browser.py, and "rebind.example" resolves to this machine, as another site's name would after rebinding.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--host-resolver-rules=MAP rebind.example 127.0.0.1"]
ATTACK = """<!doctype html><title>another site</title><script>
window.submitJob = async (studio, audio) => {
  const form = new FormData();
  form.append('audio', new Blob([Uint8Array.from(atob(audio), c => c.charCodeAt(0))]), 'speech.wav');
  form.append('video', new Blob(['not even a video']), 'd0.mp4');
  await fetch(studio + '/api/jobs', {method: 'POST', mode: 'no-cors', body: form});  // an opaque answer, but sent
  const upload = new FormData();
  upload.append('files', new Blob(['not even a video']), 'planted.mp4');
  await fetch(studio + '/gradio_api/upload', {method: 'POST', mode: 'no-cors', body: upload});
  return 'sent';
};
</script>"""


@contextmanager
def _another_site() -> Iterator[str]:
    """A web server of another origin on this machine (another port), serving a page that uses the studio."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(ATTACK.encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_in_a_browser_another_sites_page_neither_runs_a_job_nor_reads_the_list(studio, short_clips) -> None:
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run the test command (bash tests/run.sh), which installs it")
    from playwright.sync_api import sync_playwright

    speech = base64.b64encode(short_clips["speech"].read_bytes()).decode()
    port = urlsplit(studio.url).port
    jobs, stored = _jobs(studio), _stored(studio.root)
    with sync_playwright() as playwright, _another_site() as site:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            studio_page = context.new_page()
            studio_page.goto(studio.url)  # the studio is open in the same browser
            attacker = context.new_page()
            attacker.goto(site)
            assert attacker.evaluate("([studio, audio]) => submitJob(studio, audio)", [studio.url, speech]) == "sent"
            time.sleep(1)  # let the studio finish with what it was sent
            assert _jobs(studio) == jobs and _stored(studio.root) == stored

            # After rebinding, the other site's page is on "rebind.example:PORT", which is the studio: its own
            # requests go to the studio with that name as their Host.
            rebound = context.new_page()
            rebound.goto(f"http://rebind.example:{port}/api/status")
            status, body = rebound.evaluate("async () => { const r = await fetch('/api/jobs');"
                                            " return [r.status, await r.text()]; }")
            assert status == 400 and "a name this studio does not serve" in json.loads(body)["error"]

            # The studio's own page still sends what it likes (here a job without a video, refused by the route).
            answer = studio_page.evaluate("""async () => { const form = new FormData();
                form.append('audio', new Blob(['x']), 'speech.wav');
                const r = await fetch('/api/jobs', {method: 'POST', body: form}); return [r.status, await r.json()]; }""")
            assert answer[0] == 400 and answer[1]["error"].startswith("give a video field"), answer
        finally:
            browser.close()


# ---- X-Forwarded-For: only from the proxies the operator names ---------------------------------------------

@contextmanager
def _app_process(tmp_path: Path, *options: str) -> Iterator[str]:
    """``python app.py`` on a free port over its own outputs folder, as ./start_app.sh starts it; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEYGEM_")}
    process = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--outputs", str(tmp_path / "outputs"),
                                "--engine", "builtin", *options], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(process, url, 180, lambda: process.communicate()[1][-2000:])
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wrong_tries(client: httpx.Client, forwarded_for: list[str]) -> list[httpx.Response]:
    return [client.get("/api/status", headers={**_basic("admin", f"guess{n}"), "X-Forwarded-For": address})
            for n, address in enumerate(forwarded_for)]


def test_a_forged_x_forwarded_for_neither_escapes_nor_aims_the_lockout(tmp_path: Path) -> None:
    """Started as the README says, the studio counts wrong passwords by the connection's address, whatever
    X-Forwarded-For a local client makes up on each try."""
    with _app_process(tmp_path, "--auth", "admin:pw") as url, httpx.Client(base_url=url, timeout=60) as client:
        answers = _wrong_tries(client, [f"198.51.100.{n}" for n in range(1, 6)])
        assert [a.status_code for a in answers] == [401] * 4 + [429]
        assert answers[-1].json()["error"].startswith("too many wrong passwords from 127.0.0.1;")


def test_x_forwarded_for_names_the_client_only_from_a_named_proxy(tmp_path: Path) -> None:
    with _app_process(tmp_path, "--auth", "admin:pw", "--trusted-proxies", "127.0.0.1") as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        answers = _wrong_tries(client, ["203.0.113.7"] * 5)
        assert [a.status_code for a in answers] == [401] * 4 + [429]
        assert answers[-1].json()["error"].startswith("too many wrong passwords from 203.0.113.7;")
        # Another client behind the same proxy is not held up.
        assert client.get("/api/status", headers={**_basic("admin", "pw"), "X-Forwarded-For": "198.51.100.1"}
                          ).status_code == 200

    # A proxy that is not named is not believed: its connection's address is counted.
    queue = JobQueue(tmp_path / "other", start=False)
    try:
        app = create_app(queue, Credentials("admin", "pw"), ui=False, trusted_proxies=["10.0.0.2"])
        client = TestClient(app, base_url="http://127.0.0.1:7860", client=("10.0.0.9", 40000))
        answers = [client.get("/api/status", headers={**_basic("admin", "x"), "X-Forwarded-For": f"192.0.2.{n}"})
                   for n in range(5)]
        assert answers[-1].json()["error"].startswith("too many wrong passwords from 10.0.0.9;")
    finally:
        queue.close()


# ---- only regular files under outputs/ are served, everywhere -----------------------------------------------

def test_a_result_replaced_by_a_symlink_is_served_nowhere(studio, short_clips, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(f"heygem secret {uuid.uuid4()}".encode())
    database = studio.root / "heygem.db"
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        job = client.post("/api/jobs", files={"audio": ("speech.wav", short_clips["speech"].read_bytes()),
                                              "video": ("d13.mp4", short_clips["d13"].read_bytes())}).json()
        [done] = studio.queue.wait([job["id"]], timeout=240)
        assert done.state == "succeeded", done.error
        result = done.output
        original = result.read_bytes()
        events = {dep["api_name"]: dep["id"] for dep in client.get("/config").json()["dependencies"]}
        try:
            for target in (secret, database):  # outside outputs/, and inside it
                leaked = target.read_bytes()[:40]
                cached = set(_files_under(studio.root / ".gradio"))
                result.unlink()
                result.symlink_to(target)

                served = client.get(f"/api/jobs/{job['id']}/result")
                assert served.status_code == 404 and served.json() == {"error": "file not found"}, target
                zipped = client.get(f"/api/batches/{job['batch_id']}/zip")
                assert zipped.status_code == 409, target
                assert zipped.json() == {"error": f"batch {job['batch_id']} has no finished video yet"}
                # The page's History no longer offers it: picking it plays nothing, and Gradio copies nothing out.
                session = uuid.uuid4().hex
                _join(client, events["history"], [None], session)
                played = _join(client, events["play"], [job["id"]], session)
                assert '"url"' not in played.replace(" ", ""), played
                assert all(leaked not in path.read_bytes() for path in _files_under(studio.root / ".gradio")
                           if path not in cached)
        finally:
            result.unlink()
            result.write_bytes(original)
        # The plain file is served again, in the ZIP too, whole.
        assert client.get(f"/api/jobs/{job['id']}/result").content == original
        archive = client.get(f"/api/batches/{job['batch_id']}/zip")
        with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
            assert z.namelist() == [result.name] and z.read(result.name) == original


def test_a_page_upload_broken_off_leaves_no_file_behind(studio, tmp_path: Path) -> None:
    """A browser that goes away mid-upload (a closed tab, a dropped line) left its part in outputs/.gradio for
    good: Gradio's cleaning knows only the uploads it completed (4 broken off left 111 MB)."""
    from heygem.ui import remove_partial_uploads

    cache = studio.root / ".gradio"
    before = set(cache.glob("tmp*"))
    host = urlsplit(studio.url)
    with socket.create_connection((host.hostname, host.port)) as raw:
        raw.sendall(f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host.netloc}\r\nContent-Type: multipart/form-data; "
                    f"boundary=b\r\nContent-Length: {50 << 20}\r\n\r\n--b\r\nContent-Disposition: form-data; "
                    'name="files"; filename="talk.mp4"\r\nContent-Type: video/mp4\r\n\r\n'.encode())
        raw.sendall(os.urandom(4 << 20))
        deadline = time.monotonic() + 30
        while not set(cache.glob("tmp*")) - before and time.monotonic() < deadline:
            time.sleep(0.1)
    deadline = time.monotonic() + 30  # the studio notices the connection is gone
    while time.monotonic() < deadline:
        left = set(cache.glob("tmp*")) - before
        if left and all(time.time() - path.stat().st_mtime > 1 for path in left):
            break
        time.sleep(0.2)
    assert left, "the broken-off upload was not written where Gradio writes uploads"
    assert remove_partial_uploads(cache, untouched_seconds=3600) == 0  # still recent: could be under way
    assert remove_partial_uploads(cache, untouched_seconds=0) >= len(left)
    assert not set(cache.glob("tmp*")) & left

    # At the start nothing is under way: whatever an earlier run left goes.
    (tmp_path / "outputs" / ".gradio").mkdir(parents=True)
    (tmp_path / "outputs" / ".gradio" / "tmpk3x9q2").write_bytes(b"\0" * 1000)
    with _app_process(tmp_path) as url:
        assert httpx.get(f"{url}/api/status").status_code == 200
        assert list((tmp_path / "outputs" / ".gradio").glob("tmp*")) == []
