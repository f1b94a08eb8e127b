"""The HTTP API, over real HTTP as curl would use it: submit a batch, follow it, download the ZIP."""
from __future__ import annotations

import io
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from heygem.media.ffmpeg import ffprobe_exe


def _poll(client: httpx.Client, path: str, done, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if done(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def _duration(path: Path) -> float:
    out = subprocess.run([ffprobe_exe(), "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def test_a_batch_submitted_over_http_gives_a_zip_of_every_video(studio, short_clips, tmp_path: Path) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        files = [("audio", ("speech.wav", short_clips["speech"].read_bytes(), "audio/wav"))]
        files += [("video", (f"{name}.mp4", short_clips[name].read_bytes(), "video/mp4")) for name in ("d0", "d13", "d19")]
        response = client.post("/api/batches", files=files, data={"length": "loop"})
        assert response.status_code == 201, response.text
        batch = response.json()
        assert [job["video"] for job in batch["jobs"]] == ["d0.mp4", "d13.mp4", "d19.mp4"]
        assert {job["state"] for job in batch["jobs"]} <= {"queued", "running"}

        finished = _poll(client, f"/api/batches/{batch['id']}", lambda body: body["done"])
        assert finished["counts"]["succeeded"] == 3, finished

        job = finished["jobs"][1]
        single = client.get(f"/api/jobs/{job['id']}").json()
        assert single["state"] == "succeeded" and single["result"] == "d13__speech.mp4"
        assert single["engine"].startswith("wav2lip")

        archive = client.get(f"/api/batches/{batch['id']}/zip")
        assert archive.status_code == 200
        assert archive.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
            assert sorted(z.namelist()) == ["d0__speech.mp4", "d13__speech.mp4", "d19__speech.mp4"]
            z.extractall(tmp_path)
        for name in ("d0", "d13", "d19"):
            assert _duration(tmp_path / f"{name}__speech.mp4") == pytest.approx(2.0, abs=0.1)

        result = client.get(f"/api/jobs/{job['id']}/result")
        assert result.status_code == 200 and result.headers["content-type"] == "video/mp4"
        assert result.content == (tmp_path / "d13__speech.mp4").read_bytes()
        for url in (f"/api/jobs/{job['id']}/result", f"/api/batches/{batch['id']}/zip"):  # `curl -I`
            head = client.head(url)
            assert head.status_code == 200 and head.content == b""
            assert int(head.headers["content-length"]) == len(client.get(url).content)

        # A player's ranges are served; one that cannot be is refused in the API's own JSON, not plain text.
        url, size = f"/api/jobs/{job['id']}/result", len(result.content)
        part = client.get(url, headers={"range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == result.content[100:200]
        past = client.get(url, headers={"range": f"bytes={size}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
        assert past.json() == {"error": f"d13__speech.mp4: the Range 'bytes={size}-' starts past the file's {size} bytes"}
        garbled = client.get(url, headers={"range": "pages=1-2"})
        assert garbled.status_code == 400
        assert garbled.json() == {"error": "d13__speech.mp4: the Range header 'pages=1-2' cannot be read: Only support "
                                           "bytes range"}


def test_a_single_job_then_list_cancel_and_delete(studio, short_clips) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        response = client.post("/api/jobs", files={
            "audio": ("讲话.wav", short_clips["speech"].read_bytes()),
            "video": ("../../d19.mp4", short_clips["d19"].read_bytes()),
        })
        assert response.status_code == 201, response.text
        job = response.json()
        assert job["video"] == "../../d19.mp4"  # shown as given, stored under a safe name
        done = _poll(client, f"/api/jobs/{job['id']}", lambda body: body["state"] not in ("queued", "running"))
        assert done["state"] == "succeeded" and done["result"] == "d19__讲话.mp4"

        listed = client.get("/api/jobs", params={"state": "succeeded"}).json()["jobs"]
        assert job["id"] in [item["id"] for item in listed]
        # Cancelling a finished job changes nothing; deleting it removes it and its file.
        assert client.post(f"/api/jobs/{job['id']}/cancel").json()["state"] == "succeeded"
        assert client.delete(f"/api/jobs/{job['id']}").json() == {"deleted": job["id"]}
        assert client.get(f"/api/jobs/{job['id']}").status_code == 404
        assert not list(studio.root.rglob("d19__讲话.mp4"))


def test_errors_are_json_with_a_reason(studio, short_clips, tmp_path: Path) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        missing = client.post("/api/jobs", files={"audio": ("speech.wav", short_clips["speech"].read_bytes())})
        assert missing.status_code == 400 and "video" in missing.json()["error"]

        bad_option = client.post("/api/jobs", files={"audio": ("s.wav", b"x"), "video": ("v.mp4", b"x")},
                                 data={"engine": "magic"})
        assert bad_option.status_code == 400
        assert bad_option.json()["error"] == "engine must be one of auto, wav2lip, builtin, not 'magic'"

        assert client.get("/api/jobs/nope").json() == {"error": "no job nope"}
        assert client.get("/api/batches/nope/zip").status_code == 404

        # A corrupt upload is accepted as a job, which then fails with the file's own name in the reason.
        broken = client.post("/api/jobs", files={"audio": ("speech.wav", short_clips["speech"].read_bytes()),
                                                 "video": ("holiday.mp4", b"not a video at all")}).json()
        failed = _poll(client, f"/api/jobs/{broken['id']}", lambda body: body["state"] not in ("queued", "running"))
        assert failed["state"] == "failed" and failed["error"].startswith("holiday.mp4:")
        result = client.get(f"/api/jobs/{broken['id']}/result")
        assert result.status_code == 409 and result.json()["error"] == failed["error"]


def test_only_files_under_outputs_are_served(studio) -> None:
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        for path in ("/gradio_api/file=/etc/passwd", "/file=/etc/passwd", "/api/../etc/passwd",
                     f"/gradio_api/file={studio.root / 'heygem.db'}"):
            response = client.get(path)
            assert response.status_code in (403, 404), (path, response.status_code)
            assert b"root:" not in response.content and b"SQLite" not in response.content


def test_unknown_routes_and_wrong_methods_answer_with_a_reason(studio) -> None:
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        for path in ("/api/nothing", "/api/", "/api", "/api/jobs/x/y/z"):
            missing = client.get(path)
            assert missing.status_code == 404, path
            assert missing.json() == {"error": f"no route GET {path}; the routes are listed at /api/openapi.json "
                                               "and in README.md"}
        wrong = client.delete("/api/status")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
        assert wrong.json() == {"error": "DELETE is not allowed on /api/status; use GET"}
        assert client.put("/api/jobs").json() == {"error": "PUT is not allowed on /api/jobs; use GET or POST"}
        assert client.get("/api/jobs", params={"limit": "many"}).json()["error"].startswith("bad request (limit:")


def test_two_videos_for_one_job_are_refused(studio, short_clips) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        before = len(client.get("/api/jobs", params={"limit": 1000}).json()["jobs"])
        response = client.post("/api/jobs", files=[("audio", ("speech.wav", short_clips["speech"].read_bytes())),
                                                   ("video", ("d0.mp4", short_clips["d0"].read_bytes())),
                                                   ("video", ("d13.mp4", short_clips["d13"].read_bytes()))])
        assert response.status_code == 400
        assert response.json() == {"error": "POST /api/jobs takes one video or one presenter; for several use POST /api/batches"}
        assert len(client.get("/api/jobs", params={"limit": 1000}).json()["jobs"]) == before


def test_cancel_of_a_running_job_answers_cancelling_at_once(studio, short_clips, held_jobs) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        files = [("audio", ("speech.wav", short_clips["speech"].read_bytes(), "audio/wav")),
                 ("video", ("d0.mp4", short_clips["d0"].read_bytes(), "video/mp4"))]
        job = client.post("/api/jobs", files=files).json()
        assert job["cancelling"] is False
        running = _poll(client, f"/api/jobs/{job['id']}", lambda body: body["stage"] == "lip-sync", timeout=60)
        assert running["state"] == "running"

        answer = client.post(f"/api/jobs/{job['id']}/cancel").json()
        assert (answer["state"], answer["stage"], answer["cancelling"]) == ("running", "cancelling", True)
        looked_up = client.get(f"/api/jobs/{job['id']}").json()
        assert (looked_up["stage"], looked_up["cancelling"]) == ("cancelling", True)

        held_jobs.release()  # the job reaches its next step, where it notices the cancel
        stopped = _poll(client, f"/api/jobs/{job['id']}", lambda body: body["state"] != "running", timeout=60)
    assert (stopped["state"], stopped["stage"], stopped["cancelling"]) == ("cancelled", "cancelled", False)


def test_wav2lip_without_a_checkpoint_is_refused_before_queueing(short_clips, tmp_path: Path, monkeypatch) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from heygem import engines
    from heygem.api import api_router
    from heygem.jobs import JobQueue
    from heygem.settings import EngineOptions, Settings

    monkeypatch.setattr(engines, "DEFAULT_CHECKPOINTS", (tmp_path / "checkpoints" / "wav2lip_gan.pth",))
    queue = JobQueue(tmp_path / "outputs", Settings(engine=EngineOptions(device="cpu")), start=False)
    try:
        app = FastAPI()
        app.include_router(api_router(queue))
        files = [("audio", ("speech.wav", short_clips["speech"].read_bytes(), "audio/wav")),
                 ("video", ("d0.mp4", short_clips["d0"].read_bytes(), "video/mp4"))]
        with TestClient(app) as client:
            refused = client.post("/api/jobs", files=files, data={"engine": "wav2lip"})
            accepted = client.post("/api/jobs", files=files, data={"engine": "auto"})
        assert refused.status_code == 400
        assert "checkpoints/wav2lip_gan.pth" in refused.json()["error"]
        assert accepted.status_code == 201, accepted.text  # auto falls back to the built-in engine
        assert [job.video_name for job in queue.jobs()] == ["d0.mp4"]  # only the accepted one was queued
    finally:
        queue.close()


@pytest.fixture
def api_client(tmp_path: Path):
    """The API (no page, no worker: jobs stay queued) as a client on this machine reaches it; and its queue."""
    from fastapi.testclient import TestClient

    from heygem.jobs import JobQueue
    from heygem.server import create_app

    queue = JobQueue(tmp_path / "outputs", start=False)
    with TestClient(create_app(queue, ui=False), base_url="http://127.0.0.1:7860") as client:
        yield client, queue
    queue.close()


def test_a_quote_in_a_file_name_stays_a_quote(api_client, short_clips) -> None:
    client, queue = api_client
    files = {"audio": ('say "hi".wav', short_clips["speech"].read_bytes()),
             "video": ('anna "A".mp4', short_clips["d0"].read_bytes())}
    # Browsers, curl (7.81+) and httpx all send a quote in a form's file name as %22 (the HTML standard's form
    # encoding); the form parser hands the name on so.
    assert b'filename="anna %22A%22.mp4"' in client.build_request("POST", "/api/jobs", files=files).read()
    job = client.post("/api/jobs", files=files).json()
    assert (job["audio"], job["video"]) == ('say "hi".wav', 'anna "A".mp4')
    stored = queue.job(job["id"])
    assert (stored.video_path.name, stored.audio_path.name) == ("anna_A_.mp4", "say_hi_.wav")

    presenter = client.post("/api/presenters", files={"video": files["video"]}).json()
    assert presenter["name"] == 'anna "A"'


def test_a_file_or_presenter_name_cannot_forge_a_log_record_or_hide_its_ending(api_client, short_clips) -> None:
    """A name is shown, stored and logged: a newline in it wrote a forged record ("... ERROR heygem.jobs: ...")
    into the log that the Logs tab showed as the studio's own, an escape sequence coloured an admin's terminal,
    and a right-to-left override shows "report\u202egpj.mp4" as "reportmp4.jpg"."""
    client, queue = api_client
    forged = "2026-12-07 06:30:00,000 ERROR heygem.jobs: FORGED"
    files = {"audio": (f"say.wav\n{forged}", short_clips["speech"].read_bytes()),
             "video": ("report\u202egpj\x1b[31m.mp4", short_clips["d0"].read_bytes())}
    job = client.post("/api/jobs", files=files).json()
    assert (job["audio"], job["video"]) == (f"say.wav {forged}", "reportgpj [31m.mp4")
    presenter = client.post("/api/presenters", files={"video": files["video"]},
                            data={"name": "Nina\u202e\x00\nPark"}).json()
    assert presenter["name"] == "Nina Park"


def test_a_picture_bomb_is_refused_by_its_header_as_a_presenter_and_fails_its_job_at_once(api_client, short_clips,
                                                                                           picture_bomb, tmp_path) -> None:
    """2.7 MB of PNG can hold 30000 x 30000 pixels: three such uploads at once took 15.7 GB of the studio's memory
    while they were probed. Its header says so before anything is decoded."""
    client, queue = api_client
    bomb = picture_bomb(tmp_path / "bomb.png", 30000, 30000).read_bytes()
    refused = client.post("/api/presenters", files={"video": ("holiday.png", bomb)})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("holiday.png: is a photo of 30000x30000 pixels (900 megapixels")
    assert client.get("/api/presenters").json() == {"presenters": []}
    job = client.post("/api/jobs", files={"audio": ("say.wav", short_clips["speech"].read_bytes()),
                                          "video": ("holiday.png", bomb)})
    assert job.status_code == 201  # as any file that cannot be used: its job fails with the reason, the batch goes on
    queue.start()  # the worker: the job fails without decoding the picture
    queue.wait([job.json()["id"]], timeout=60)
    failed = client.get(f"/api/jobs/{job.json()['id']}").json()
    assert (failed["state"], failed["error_code"]) == ("failed", "photo_too_large")
    assert failed["error"].startswith("holiday.png: is a photo of 30000x30000 pixels")


def test_a_presenter_name_over_80_characters_is_refused_not_cut(api_client, short_clips) -> None:
    client, queue = api_client
    video = {"video": ("anna.mp4", short_clips["d0"].read_bytes())}
    refused = client.post("/api/presenters", files=video, data={"name": "N" * 10_000})
    assert refused.status_code == 400
    assert refused.json() == {"error": "name: a presenter's name has at most 80 characters; this one has 10000"}
    assert client.get("/api/presenters").json() == {"presenters": []}
    assert not [path for path in (queue.root / "presenters").rglob("*") if path.is_file()]  # nothing stored

    added = client.post("/api/presenters", files=video, data={"name": "A" * 80})
    assert added.status_code == 201 and added.json()["name"] == "A" * 80
    renamed = client.patch(f"/api/presenters/{added.json()['id']}", data={"name": "B" * 81})
    assert renamed.status_code == 400 and renamed.json()["error"].endswith("at most 80 characters; this one has 81")
    assert client.get(f"/api/presenters/{added.json()['id']}").json()["name"] == "A" * 80


def test_a_result_deleted_while_it_is_sent_is_sent_whole(tmp_path: Path) -> None:
    """A job deleted while its result was being downloaded: 7 of 10 tries answered 500 (the file gone between the
    check and the send) and downloads under way were cut off mid-body."""
    import asyncio

    from heygem.api import _serve
    from heygem.jobs import JobQueue

    queue = JobQueue(tmp_path / "outputs", start=False)
    try:
        result = queue.root / "talk__speech.mp4"
        content = bytes(range(256)) * 40000  # 10 MB, larger than any socket's buffers
        result.write_bytes(content)
        answer = _serve(queue, result, "video/mp4")
        result.unlink()  # deleted in History as the download starts
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        async def receive() -> dict:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        asyncio.run(answer({"type": "http", "method": "GET", "headers": []}, receive, send))
        assert sent[0]["status"] == 200
        assert b"".join(message.get("body", b"") for message in sent[1:]) == content
        assert _serve(queue, result, "video/mp4").status_code == 404  # and asked again: gone
    finally:
        queue.close()
