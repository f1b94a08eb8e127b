"""What the server refuses: files a request names outside Gradio's own uploads, password guessing, and uploads
over the size limit (before anything of them is stored)."""
from __future__ import annotations

import base64
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

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
        return TestClient(app, client=(address, 40000))

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


def test_the_limit_reaches_the_page_and_zero_turns_it_off(studio, monkeypatch) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        # The page learns the limit, so the browser refuses a larger file before sending it.
        assert client.get("/config").json()["max_file_size"] == studio.queue.defaults.limits.upload_mb * MB
        monkeypatch.setattr(studio.queue.defaults.limits, "upload_mb", 0)
        let_in = client.post("/api/jobs", files={"audio": ("s.wav", b"x"), "video": ("v.mp4", os.urandom(2 * MB))},
                             data={"engine": "magic"})
        # Past the door: the route itself answers (here about the option), not the size limit.
        assert let_in.status_code == 400 and let_in.json()["error"].startswith("engine must be one of")
