"""What the server refuses: files a request names outside Gradio's own uploads."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx


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
