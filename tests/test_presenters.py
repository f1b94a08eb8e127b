"""The presenters library over real HTTP: add presenters once, pick them in a batch by id, no video uploads."""
from __future__ import annotations

import time
from pathlib import Path

import httpx

from conftest import make_clip


def _wait_prepared(client: httpx.Client, presenter_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/presenters/{presenter_id}").json()
        if body["state"] != "preparing" or time.monotonic() > deadline:
            return body
        time.sleep(0.5)


def _add(client: httpx.Client, path: Path, name: str) -> httpx.Response:
    return client.post("/api/presenters", files={"video": (path.name, path.read_bytes(), "video/mp4")},
                       data={"name": name})


def test_presenters_added_once_are_picked_by_id_and_their_jobs_detect_and_study_nothing(studio, short_clips) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        added = {}
        for clip, name in (("d0", "Anna"), ("d13", "Ben")):
            response = _add(client, short_clips[clip], name)
            assert response.status_code == 201, response.text
            assert response.json()["state"] == "preparing" and response.json()["file"] == f"{clip}.mp4"
            added[name] = response.json()["id"]

        for name, presenter_id in added.items():
            ready = _wait_prepared(client, presenter_id)
            assert ready["state"] == "ready", ready
            assert ready["faces_found"] == ready["frames"] >= 50, ready  # 2 s at 25 or 30 fps, a face on every frame
            thumbnail = client.get(ready["thumbnail"])
            assert thumbnail.status_code == 200 and thumbnail.content[:2] == b"\xff\xd8"  # a JPEG

        listed = client.get("/api/presenters").json()["presenters"]
        assert {p["id"]: p["name"] for p in listed if p["id"] in added.values()} == {added["Anna"]: "Anna",
                                                                                    added["Ben"]: "Ben"}
        assert not any(str(studio.root) in str(value) for p in listed for value in p.values())

        renamed = client.patch(f"/api/presenters/{added['Ben']}", data={"name": "Ben Lee"})
        assert renamed.status_code == 200 and renamed.json()["name"] == "Ben Lee"

        # The built-in engine studies its presenter: both the faces and the study must come from preparation.
        response = client.post(
            "/api/batches", data={"presenter": [added["Anna"], added["Ben"]], "engine": "builtin"},
            files=[("audio", ("speech.wav", short_clips["speech"].read_bytes(), "audio/wav"))])
        assert response.status_code == 201, response.text
        batch = response.json()
        assert [job["video"] for job in batch["jobs"]] == ["Anna", "Ben Lee"]

        deadline = time.monotonic() + 300
        while not (batch := client.get(f"/api/batches/{batch['id']}").json())["done"] and time.monotonic() < deadline:
            time.sleep(0.5)
        for job in batch["jobs"]:
            assert job["state"] == "succeeded", job
            assert job["face_cache"] == "hit" and job["study"] == "cached", job
            # Its stage table: no face detection, no orientation check, no study.
            assert not {"detect", "orientation", "study"} & set(job["timings"]), job["timings"]
        assert [job["result"] for job in batch["jobs"]] == ["Anna__speech.mp4", "Ben_Lee__speech.mp4"]

        assert client.delete(f"/api/presenters/{added['Anna']}").status_code == 200
        gone = client.get(f"/api/presenters/{added['Anna']}")
        assert gone.status_code == 404 and gone.json() == {"error": f"no presenter {added['Anna']}"}
        assert added["Anna"] not in [p["id"] for p in client.get("/api/presenters").json()["presenters"]]
        # Its job keeps its own copy of the file: the result is still there.
        assert client.get(f"/api/jobs/{batch['jobs'][0]['id']}/result").status_code == 200


def test_a_file_that_is_not_a_video_is_refused_by_its_name(studio, tmp_path: Path) -> None:
    junk = tmp_path / "holiday.mp4"
    junk.write_bytes(bytes(range(256)) * 64)
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        response = _add(client, junk, "Junk")
        assert response.status_code == 400
        assert response.json()["error"].startswith("holiday.mp4: ")


def test_a_video_without_a_face_ends_failed_with_the_reason(studio, tmp_path: Path) -> None:
    pattern = make_clip(tmp_path / "pattern.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-t", "1",
                        "-c:v", "libx264", "-preset", "ultrafast")
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        response = _add(client, pattern, "Pattern")
        assert response.status_code == 201, response.text
        failed = _wait_prepared(client, response.json()["id"])
        assert failed["state"] == "failed", failed
        assert failed["error"].startswith("pattern.mp4: no face found") and failed["thumbnail"] is None
        assert (failed["error_code"], failed["error_params"]) == ("no_face", {"file": "pattern.mp4", "frames": 25})

        speech = make_clip(tmp_path / "speech.wav", "-f", "lavfi", "-i", "sine=frequency=200", "-t", "1")
        picked = client.post("/api/jobs", data={"presenter": failed["id"]},
                             files={"audio": ("speech.wav", speech.read_bytes(), "audio/wav")})
        assert picked.status_code == 409 and "could not be prepared" in picked.json()["error"]


def test_jobs_need_a_video_or_a_known_presenter(studio, short_clips) -> None:
    speech = ("speech.wav", short_clips["speech"].read_bytes(), "audio/wav")
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        neither = client.post("/api/jobs", files={"audio": speech})
        assert neither.status_code == 400 and "presenter" in neither.json()["error"]
        unknown = client.post("/api/batches", data={"presenter": ["nosuchid"]}, files={"audio": speech})
        assert unknown.status_code == 400 and unknown.json()["error"].startswith("nosuchid: ")


def test_a_presenter_is_one_video_two_are_refused_not_one_dropped(studio, short_clips) -> None:
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        before = len(client.get("/api/presenters").json()["presenters"])
        two = client.post("/api/presenters", data={"name": "Anna"},
                          files=[("video", ("d0.mp4", short_clips["d0"].read_bytes())),
                                 ("video", ("d13.mp4", short_clips["d13"].read_bytes()))])
        assert two.status_code == 400
        assert two.json() == {"error": "POST /api/presenters takes one video or photo; add each presenter on its own"}
        assert len(client.get("/api/presenters").json()["presenters"]) == before


def test_a_presenter_left_preparing_is_prepared_at_the_next_start(settings, short_clips, tmp_path: Path) -> None:
    from heygem.jobs import JobQueue

    root = tmp_path / "outputs"
    stopped = JobQueue(root, settings, start=False)  # the program stops before its worker prepares anything
    presenter = stopped.presenters.add(short_clips["d19"], "Cleo")
    stopped.close()

    restarted = JobQueue(root, settings)
    try:
        deadline = time.monotonic() + 120
        while (found := restarted.presenters.get(presenter.id)).state == "preparing" and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        restarted.close()
    assert found.state == "ready" and found.name == "Cleo" and found.faces_found == found.frames


def test_a_presenter_cut_short_is_judged_as_a_job_judges_its_video(studio, media: Path, tmp_path: Path) -> None:
    # 2 s of d0 at 25 fps with its index up front (+faststart), as web uploads are: cut, the header still promises
    # all 50 frames.
    whole = make_clip(tmp_path / "whole.mp4", "-i", str(media / "liveportrait/d0.mp4"), "-t", "2", "-vf", "scale=-2:360",
                      "-an", "-c:v", "libx264", "-preset", "ultrafast", "-movflags", "+faststart")
    data = whole.read_bytes()
    half, most = tmp_path / "half.mp4", tmp_path / "most.mp4"
    half.write_bytes(data[:len(data) // 2])  # an upload interrupted half way
    most.write_bytes(data[:len(data) * 9 // 10])  # one that lost its last frames
    with httpx.Client(base_url=studio.url, timeout=60) as client:
        added = {path.name: _add(client, path, path.stem) for path in (half, most)}
        assert all(response.status_code == 201 for response in added.values()), added
        cut = _wait_prepared(client, added["half.mp4"].json()["id"])
        assert cut["state"] == "failed", cut
        assert cut["error"].startswith("half.mp4: decoded only ") and "of the 50 frames its header promises; the file is " \
            "probably cut short (an interrupted upload or copy); give the complete file" in cut["error"], cut["error"]
        assert cut["error_code"] == "cut_short" and cut["error_params"]["file"] == "half.mp4"
        assert cut["error_params"]["promised"] == 50 and cut["error_params"]["decoded"] < 40
        speech = ("speech.wav", make_clip(tmp_path / "speech.wav", "-f", "lavfi", "-i", "sine=frequency=200", "-t", "1")
                  .read_bytes(), "audio/wav")
        picked = client.post("/api/jobs", data={"presenter": cut["id"]}, files={"audio": speech})
        assert picked.status_code == 409 and "decoded only" in picked.json()["error"]

        # A few frames short goes through, as a job's video does, and says so.
        short = _wait_prepared(client, added["most.mp4"].json()["id"])
        assert short["state"] == "ready", short
        assert 40 <= short["frames"] < 50 and short["faces_found"] == short["frames"], short
        assert [note for note in short["notes"] if note.startswith("CUT SHORT: most.mp4 decoded only ")], short["notes"]
        assert [code for code, params in short["note_codes"] if code == "note_cut_short" and params["file"] == "most.mp4"]
