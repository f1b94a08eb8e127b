"""Child processes: started with nothing between fork and exec, ended with their parent however it ends; and the
studio, which starts them from request threads while its worker computes, never freezes (issue 17)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import wait_until_answering
from heygem.children import Child, guarded_groups

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals")


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its parent counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_child_leads_its_own_group_and_is_forgotten_once_waited_for() -> None:
    child = Child(["sleep", "30"])
    try:
        assert os.getpgid(child.pid) == child.pid != os.getpgid(0)
        assert child.pid in guarded_groups()
    finally:
        child.kill()
        child.wait()
    assert child.pid not in guarded_groups()


def test_child_refuses_code_between_fork_and_exec() -> None:
    with pytest.raises(ValueError, match="preexec_fn"):
        Child(["true"], preexec_fn=lambda: None)


_PARENT = """
import sys, time
from heygem.children import Child
children = [Child(["sleep", "600"]) for _ in range(2)]
print(" ".join(str(c.pid) for c in children), flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_children_end_when_their_parent_is_killed(how: signal.Signals) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    finally:
        parent.send_signal(how)
        parent.wait()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids), "a child outlived its killed parent"


# A thread keeps OpenBLAS busy (as a job's speech features do) while the main thread runs ffprobe again and
# again (as a request thread probes an upload). With a preexec_fn this froze within seconds, in most runs. The
# BLAS thread is stopped before the end: ending beside it is the next test's matter.
_PROBES_BESIDE_BLAS = """
import sys, threading, time
import numpy as np
from heygem.media.ffmpeg import ffprobe_exe, probe_argv, run_ffmpeg

stop = threading.Event()

def blas():
    matrix = np.random.default_rng(0).random((400, 400))
    while not stop.is_set():
        matrix @ matrix

computing = threading.Thread(target=blas)
computing.start()
end = time.monotonic() + float(sys.argv[2])
runs = 0
while time.monotonic() < end:
    run_ffmpeg(probe_argv(ffprobe_exe(), sys.argv[1]), subject=sys.argv[1])
    runs += 1
    print(runs, flush=True)
stop.set()
computing.join()
"""


def test_starting_children_beside_blas_work_never_freezes(short_clips: dict[str, Path]) -> None:
    # Watched from outside: a frozen process holds its interpreter lock, so no thread of its own could tell.
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen([sys.executable, "-c", _PROBES_BESIDE_BLAS, str(short_clips["speech"]), "20"],
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            last, last_change = 0, time.monotonic()
            while process.poll() is None:
                time.sleep(0.5)
                out.seek(0)
                lines = out.read().split()
                runs = int(lines[-1]) if lines and lines[-1].isdigit() else 0
                if runs != last:
                    last, last_change = runs, time.monotonic()
                assert time.monotonic() - last_change < 10, f"frozen after {last} probes"
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
        assert process.returncode == 0 and last > 20


# A program of ours ending while a thread of it is inside a BLAS call, as the studio does when Ctrl+C stops it
# while its worker computes a job's speech features (the worker is given 2 s, then left).
_ENDS_BESIDE_BLAS = """
import threading, time
import numpy as np
from heygem.ending import run_to_the_end

def blas():
    matrix = np.random.default_rng(0).random((2000, 2000))  # a product takes about half a second here
    while True:
        matrix @ matrix

def main():
    threading.Thread(target=blas, daemon=True).start()
    busy_until = time.monotonic() + 0.2
    while time.monotonic() < busy_until:  # the main thread at work meanwhile, as the studio's server is
        pass
    print("done", flush=True)
    return 3

run_to_the_end(main)
"""


def test_a_program_ends_at_once_while_a_thread_computes() -> None:
    # Ended by sys.exit, this froze in OpenBLAS's exit handler in 25 of 30 runs.
    for attempt in range(10):
        try:
            ended = subprocess.run([sys.executable, "-c", _ENDS_BESIDE_BLAS], cwd=REPO, capture_output=True,
                                   text=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"end {attempt + 1} froze: the process was still there 30 s after it was told to end")
        assert (ended.returncode, ended.stdout) == (3, "done\n"), ended.stderr[-2000:]


@pytest.mark.parametrize("how, code", [("raise ValueError('the settings file names no engine')", 1),
                                       ("raise KeyboardInterrupt", 130), ("return None", 0),
                                       ("sys.exit('error: no such file: speech.wav')", 1)])
def test_a_program_ends_with_the_code_and_message_python_would_give(how: str, code: int) -> None:
    program = f"import sys\nfrom heygem.ending import run_to_the_end\ndef main():\n    {how}\nrun_to_the_end(main)\n"
    ended = subprocess.run([sys.executable, "-c", program], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ended.returncode == code
    if "ValueError" in how:
        assert "ValueError: the settings file names no engine" in ended.stderr and "Traceback" in ended.stderr
    if "sys.exit" in how:
        assert ended.stderr == "error: no such file: speech.wav\n"


# The studio as ./start_app.sh serves it, in a process of its own so that a freeze can be seen and its threads'
# stacks dumped (faulthandler answers SIGUSR1 without the interpreter lock).
_STUDIO = """
import faulthandler, signal, sys
from pathlib import Path
import uvicorn
from heygem.jobs import JobQueue
from heygem.logs import setup_logging
from heygem.server import create_app
from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings

faulthandler.register(signal.SIGUSR1, all_threads=True)
root, port = Path(sys.argv[1]), int(sys.argv[2])
log_file = setup_logging(root.parent / "logs", console=False)
defaults = Settings(detection=DetectionOptions(cache_dir=root / ".cache" / "faces"),
                    engine=EngineOptions(engine="builtin", device="cpu"), encode=EncodeOptions(preset="ultrafast"))
queue = JobQueue(root, defaults)
uvicorn.run(create_app(queue, log_file=log_file), host="127.0.0.1", port=port, log_level="warning")
"""
SUBMISSIONS = 300
SUBMITTERS = 4
# A request that takes longer than this counts as a stall. Requests here take a fraction of a second, even with
# a job on both cores; a frozen studio never answers.
STALL_SECONDS = 8.0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_studio_answers_hundreds_of_submissions_while_jobs_run(short_clips: dict[str, Path], tmp_path: Path) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    stacks = tmp_path / "stacks.txt"
    with stacks.open("wb") as errors:
        studio = subprocess.Popen([sys.executable, "-c", _STUDIO, str(tmp_path / "outputs"), str(port)], cwd=REPO,
                                  stdout=subprocess.DEVNULL, stderr=errors)
    client = httpx.Client(base_url=url, timeout=STALL_SECONDS)

    def stalled(what: str) -> str:
        studio.send_signal(signal.SIGUSR1)
        time.sleep(2)
        return f"{what} took over {STALL_SECONDS} s: the studio froze. Its threads:\n{stacks.read_text()[-6000:]}"

    try:
        wait_until_answering(studio, url, 120, lambda: stacks.read_text()[-3000:])
        presenters = [short_clips[name] for name in ("d0", "d13", "d19")]
        speech = short_clips["speech"].read_bytes()

        def submit(number: int) -> str:
            video = presenters[number % len(presenters)]
            answer = client.post("/api/jobs", files={"audio": ("speech.wav", speech),
                                                     "video": (video.name, video.read_bytes())})
            assert answer.status_code == 201, answer.text
            client.get(f"/api/jobs/{answer.json()['id']}")  # as a page's timer reads it
            return answer.json()["id"]

        # A few at a time, as several pages and scripts would: more children started while the worker computes.
        with ThreadPoolExecutor(SUBMITTERS) as pool:
            try:
                ids = list(pool.map(submit, range(SUBMISSIONS)))
            except httpx.TimeoutException:
                pytest.fail(stalled("a submission"))
        try:
            # The worker went on meanwhile, and still does: jobs finish one after another.
            deadline = time.monotonic() + 240
            while len(client.get("/api/jobs", params={"state": "succeeded"}).json()["jobs"]) < 3:
                assert time.monotonic() < deadline, client.get("/api/jobs", params={"limit": 5}).json()
                time.sleep(1)
            assert not client.get("/api/jobs", params={"state": "failed"}).json()["jobs"]
        except httpx.TimeoutException:
            pytest.fail(stalled("reading the jobs"))
    finally:
        client.close()
        studio.kill()
        studio.wait()


@pytest.mark.slow
@pytest.mark.parametrize("how, codes", [(signal.SIGINT, (0, 130)), (signal.SIGTERM, (143,))],
                         ids=["ctrl-c", "kill"])
def test_ctrl_c_or_kill_stops_the_studio_with_a_page_open_and_a_job_running(
        how: signal.Signals, codes: tuple[int, ...], short_clips: dict[str, Path], media: Path, tmp_path: Path) -> None:
    # SIGINT is Ctrl+C; SIGTERM is `kill`, systemd's and docker's stop: the same stop.
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    studio = subprocess.Popen([sys.executable, "app.py", "--port", str(port), "--outputs", str(tmp_path / "outputs"),
                               "--engine", "builtin", "--device", "cpu"], cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    client = httpx.Client(base_url=url, timeout=30)
    try:
        deadline = time.monotonic() + 180  # for the start and for the job's lip-sync stage
        wait_until_answering(studio, url, 180, lambda: studio.communicate()[0][-3000:])

        def page() -> None:  # an open page keeps its heartbeat stream open for as long as it is open
            try:
                with httpx.stream("GET", f"{url}/gradio_api/heartbeat/an-open-page", timeout=None) as stream:
                    for _ in stream.iter_bytes():
                        pass
            except httpx.HTTPError:
                pass

        threading.Thread(target=page, daemon=True).start()
        video = short_clips["d0"]
        # 50 s of speech (a video's sound track): the job is still drawing mouths long past the 2 s the worker is
        # given to finish it.
        speech = media / "long/french.mp4"
        answer = client.post("/api/jobs", files={"audio": (speech.name, speech.read_bytes()),
                                                 "video": (video.name, video.read_bytes())})
        assert answer.status_code == 201, answer.text
        job_id = answer.json()["id"]
        job = f"/api/jobs/{job_id}"
        while client.get(job).json()["stage"] != "lip-sync":
            assert time.monotonic() < deadline, client.get(job).json()
            time.sleep(0.1)
        studio.send_signal(how)
        try:
            studio.wait(20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the studio was still running 20 s after {how.name}")
        output = studio.communicate()[0]
        # 128 + the signal's number, as a shell reports a process the signal ended (uvicorn raises it again once
        # it has stopped; after Ctrl+C it may also return 0).
        assert studio.returncode in codes, output[-3000:]
        assert "Traceback" not in output, output[-3000:]
        # Told, on the terminal, which job was left and that it is not lost.
        assert f"job {job_id} (d0.mp4) was running: it is queued again at the next start" in output, output[-3000:]
    finally:
        client.close()
        if studio.poll() is None:
            studio.kill()
        studio.wait()
