"""What an open studio page costs the machine: the studio's CPU with no page and with pages open, and a job's
time with no page and with pages following the queue.

Usage: .venv/bin/python bench/open_page.py [--seconds 30] [--pages 1] [--rounds 2] [--speech-seconds 12]

Starts the studio (app.py, on a free port, over a folder of its own in /tmp, removed at the end), measures its
process's CPU and Chromium's over ``--seconds`` idle, then submits a built-in engine job over the HTTP API
(``--speech-seconds`` of speech over a 360p presenter, the presenter studied by a first job beforehand) and times
it from submission to its end, alternately with no page and with ``--pages`` pages open, ``--rounds`` times each.
Chromium's figure is the rest of this script's process tree (Playwright's driver and Chromium, headless, as the
tests run it: it draws the page in software). Needs Chromium (tests/run.sh installs it) and ../shared/media.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heygem.bench_live import free_port  # noqa: E402
from heygem.media.ffmpeg import ffmpeg_exe  # noqa: E402

MEDIA = Path(os.environ.get("HEYGEM_SHARED", REPO.parent / "shared")) / "media"


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and every process under it (Linux's /proc)."""
    parents, spent = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        spent[child] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    family, grown = {pid}, True
    while grown:
        grown = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                grown = True
    return sum(spent.get(member, 0.0) for member in family)


def post_job(url: str, speech: Path, video: Path) -> str:
    boundary = uuid.uuid4().hex
    body = b""
    for field, path in (("audio", speech), ("video", video)):
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{path.name}\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + b"\r\n"
    body += f"--{boundary}\r\nContent-Disposition: form-data; name=\"engine\"\r\n\r\nbuiltin\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/api/jobs", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.load(answer)["id"]


def job_seconds(url: str, speech: Path, video: Path) -> float:
    started = time.perf_counter()
    job_id = post_job(url, speech, video)
    while True:
        with urllib.request.urlopen(f"{url}/api/jobs/{job_id}", timeout=30) as answer:
            job = json.load(answer)
        if job["state"] not in ("queued", "running"):
            assert job["state"] == "succeeded", job
            return time.perf_counter() - started
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--pages", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--speech-seconds", type=float, default=12)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    folder = Path(tempfile.mkdtemp(prefix="heygem-open-page-"))
    ffmpeg = ffmpeg_exe()
    speech, video = folder / "speech.wav", folder / "presenter.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-stream_loop", "-1", "-i", str(MEDIA / "speechrecognition/english.wav"),
                    "-t", str(args.speech_seconds), str(speech)], check=True)
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(MEDIA / "liveportrait/d13.mp4"), "-vf", "scale=-2:360",
                    "-an", "-c:v", "libx264", "-preset", "ultrafast", str(video)], check=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    studio = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port), "--outputs",
                               str(folder / "outputs")], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        time.sleep(5)  # past the start's own work
        job_seconds(url, speech, video)  # the presenter studied, the engine warm

        def idle(label: str) -> None:
            studio_before, all_before = cpu_seconds(studio.pid), cpu_seconds(os.getpid())
            time.sleep(args.seconds)
            studio_cpu = (cpu_seconds(studio.pid) - studio_before) / args.seconds
            # This script's tree holds the studio too: the browser's share is the rest.
            browser_cpu = (cpu_seconds(os.getpid()) - all_before) / args.seconds - studio_cpu
            print(f"{label}, idle {args.seconds:.0f} s: studio {100 * studio_cpu:.1f}% of a core, "
                  f"Chromium {100 * browser_cpu:.1f}%", flush=True)

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            idle("no page")
            times: dict[str, list[float]] = {"no page": [], f"{args.pages} page(s) open": []}
            pages = []
            for _ in range(args.rounds):
                for label in times:
                    for page in pages:
                        page.close()
                    pages = []
                    if label != "no page":
                        for _ in range(args.pages):
                            page = browser.new_page()
                            page.goto(url)
                            page.wait_for_selector("#single-generate", timeout=60_000)
                            pages.append(page)
                        time.sleep(3)
                    times[label].append(job_seconds(url, speech, video))
            idle(f"{args.pages} page(s) open")
            browser.close()
        for label, seconds in times.items():
            print(f"{args.speech_seconds:g} s job, {label}: " + ", ".join(f"{s:.2f}" for s in seconds)
                  + f" s (median {statistics.median(seconds):.2f})")
    finally:
        studio.terminate()
        studio.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
