"""The Ray backend against a real Ray cluster started here: this process is the head (the studio), and a second
`ray start --address` process on this machine acts as another machine, with its own working folder.

What a user checks: every result of a batch is there, with the same frames as in one process; the jobs say
which worker ran them; cancel reaches a job running on the other machine; a worker killed mid-job has its
job run again elsewhere, with no result twice or half written; a bad file fails alone, naming the file; and
the default, without Ray, never loads it. And what an operator found (issue 17): a frozen machine or worker, or
a stuck job, gives its job up within the set time; workers keep to one per machine and use the cores they are
given; a machine with other HeyGem code gets no worker; a killed studio leaves no Ray process behind.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import MEDIA, REPO, make_clip
from heygem.jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobQueue
from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt "
                                        "(bash tests/run.sh installs it)")

import psutil  # noqa: E402  (the one Ray ships, importable once Ray is)

from heygem.cluster import LOST_AFTER_SECONDS, code_version, connect, disconnect, ray_environment  # noqa: E402
from heygem.cluster.ray_backend import RayBackend  # noqa: E402

WAIT_S = 240  # for a batch to finish; never reached when things work


class Cluster:
    def __init__(self, address: str, folder: Path) -> None:
        self.address, self.folder = address, folder
        self.head_work, self.node_work = folder / "head-work", folder / "node2-work"

    def start_node(self, name: str, cpus: int = 1, code: Path = REPO) -> subprocess.Popen:
        """Another machine: `ray start --address` in a process group of its own, with its own working folder
        (``<name>-work``), its own current folder and ``cpus`` CPU cores, running the HeyGem in ``code``; returns
        once Ray counts it alive (known by its resource ``name``: a count of live nodes stayed the same when a node
        killed by the test before was declared dead meanwhile, and this one "did not join")."""
        (self.folder / name).mkdir()
        node = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", "--address", self.address, f"--num-cpus={cpus}",
             f'--resources={{"{name}": 1}}', "--block", "--disable-usage-stats"],
            env={**os.environ, **ray_environment(), "HEYGEM_WORKDIR": str(self.folder / f"{name}-work"),
                 "PYTHONPATH": str(code)},
            cwd=self.folder / name, stdout=open(self.folder / f"{name}.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        # A node's start is a service coming up, not what is tested: on a loaded 2-core machine it once took
        # over a minute (a full run, 2026-12-04).
        deadline = time.monotonic() + 180
        while not any(n["Alive"] and n["Resources"].get(name) for n in ray.nodes()):
            assert node.poll() is None, (self.folder / f"{name}.log").read_text()
            assert time.monotonic() < deadline, f"{name} did not join"
            time.sleep(0.2)
        return node


def _stop_node(node: subprocess.Popen, kill: bool = False) -> None:
    """Stop a node as `ray start --block` is meant to be stopped (SIGTERM), or all at once (``kill``: the
    machine is lost); either way nothing of its process group is left."""
    if not kill:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    node.wait(30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    """Ray with token authentication: the head in this process (2 CPU slots: room for two one-core workers,
    were workers not kept to one per machine), and a second node (1 CPU slot) in its own process group, with its
    own working folder. Both are stopped at the end, leaving no process. Ray's health checks are the studio's
    own (``connect``'s default), as a user gets them.

    Ray puts the folder the studio starts it from first on every worker's import path, on every machine; it
    starts from a folder of its own here, so that each node's workers import the HeyGem of their own
    PYTHONPATH, as on machines of their own."""
    folder = tmp_path_factory.mktemp("ray")
    saved = {name: os.environ.get(name) for name in ("HEYGEM_RAY_TOKEN", "HEYGEM_WORKDIR", "RAY_AUTH_MODE",
                                                      "RAY_AUTH_TOKEN_PATH", "PYTHONPATH")}
    os.environ["HEYGEM_RAY_TOKEN"] = str(folder / "token")
    os.environ["HEYGEM_WORKDIR"] = str(folder / "head-work")  # the head's workers inherit it
    os.environ["PYTHONPATH"] = str(REPO)  # and their HeyGem
    here = Path.cwd()
    os.chdir(folder)
    try:
        cluster = Cluster(connect("auto", cpus=2)["gcs_address"], folder)
    finally:
        os.chdir(here)
    try:
        node = cluster.start_node("node2")
        try:
            yield cluster
        finally:
            _stop_node(node)
    finally:
        disconnect()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Six different 1.5 s presenters at 240p, a 1.5 s speech, and a 6 s one (for jobs that must still be
    running when the test acts on them)."""
    folder = tmp_path_factory.mktemp("ray-clips")
    speech = str(MEDIA / "speechrecognition/english.wav")
    clips = {"speech": make_clip(folder / "speech.wav", "-i", speech, "-t", "1.5"),
             "long speech": make_clip(folder / "long.wav", "-i", speech, "-t", "6"),
             "longer speech": make_clip(folder / "longer.wav", "-stream_loop", "5", "-i", speech, "-t", "12")}
    for name in ("d0", "d13", "d19"):
        for start in (0, 2):
            clips[f"{name}-{start}"] = make_clip(
                folder / f"{name}-{start}.mp4", "-ss", str(start), "-i", str(MEDIA / f"liveportrait/{name}.mp4"),
                "-t", "1.5", "-vf", "scale=-2:240", "-an", "-c:v", "libx264", "-preset", "ultrafast")
    return clips


def _defaults(root: Path) -> Settings:
    return Settings(detection=DetectionOptions(cache_dir=root / ".cache" / "faces"),
                    engine=EngineOptions(engine="builtin", device="cpu"), encode=EncodeOptions(preset="ultrafast"))


@pytest.fixture
def ray_queue(cluster: Cluster, tmp_path: Path):
    root = tmp_path / "outputs"
    queue = JobQueue(root, _defaults(root), backend=RayBackend())
    deadline = time.monotonic() + 120
    while sum(worker["state"] != "starting" for worker in queue.workers()) < 2:  # one worker on each node
        assert time.monotonic() < deadline, f"the workers did not start: {queue.workers()}"
        time.sleep(0.2)
    yield queue
    queue.close(timeout=10)


def _videos(clips: dict[str, Path]) -> list[Path]:
    return [path for name, path in clips.items() if "speech" not in name]


def _frames(path: Path) -> list[np.ndarray]:
    from heygem.media.probe import probe
    from heygem.media.video import iter_frames

    info = probe(path)
    return list(iter_frames(info, info.fps))


def _worker_on_node2(queue: JobQueue, cluster: Cluster) -> str:
    """The name of the worker whose working folder is in the second node's."""
    there = [slot.name for slot in queue.backend.slots() if Path(slot.info["folder"]).parent == cluster.node_work]
    assert len(there) == 1, queue.workers()
    return there[0]


def _wait_running_on(queue: JobQueue, batch_id: str, worker: str, past: float = 0.0, stage: str | None = None):
    """The job of the batch that ``worker`` runs, once it is past ``past`` of its way (the speech prepared), and
    at ``stage`` when one is given."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        job = _running_on(queue, batch_id, worker, past, stage)
        if job is not None:
            return job
        time.sleep(0.05)
    raise AssertionError(f"no job of batch {batch_id} ran on {worker}: {queue.batch(batch_id).to_json()}")


def _running_on(queue: JobQueue, batch_id: str, worker: str, past: float = 0.0, stage: str | None = None):
    """``_wait_running_on``'s job now, or None."""
    for job in queue.batch(batch_id).jobs:
        if job.state == RUNNING and job.worker and job.worker.startswith(worker + " ") and job.progress > past \
                and job.stage not in ("starting", "audio") and stage in (None, job.stage):
            return job
    return None


def test_a_batch_is_spread_over_two_workers_with_the_same_frames_as_in_one_process(
        cluster: Cluster, ray_queue: JobQueue, clips: dict[str, Path], tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from heygem.server import create_app
    from heygem.ui.studio import engine_line, job_status_html

    videos = _videos(clips)
    batch = ray_queue.submit(clips["speech"], videos)
    done = ray_queue.wait([job.id for job in batch.jobs], timeout=WAIT_S)
    assert [job.state for job in done] == [SUCCEEDED] * 6, [job.error for job in done]
    # Both workers ran some, one on each machine, and each kept its face caches in its own folder.
    assert len({job.worker for job in done}) == 2
    assert list(cluster.head_work.glob("worker-*/.cache/faces/*")) and list(cluster.node_work.glob("worker-*/.cache/faces/*"))
    with TestClient(create_app(ray_queue, ui=False), base_url="http://127.0.0.1") as client:  # a name it serves
        status = client.get("/api/status").json()
        shown = client.get(f"/api/jobs/{done[0].id}").json()
    assert len(status["workers"]) == 2
    assert all(worker["host"] and worker["device"] == "cpu" and worker["engine"] == "builtin"
               for worker in status["workers"])
    # One worker per machine, each with the threads of the cores it was given: both of the head's, the one of the
    # second machine's (Ray alone would leave each a single thread).
    assert sorted(worker["threads"] for worker in status["workers"]) == [1, 2]
    assert sum(worker["done"] for worker in status["workers"]) == 6
    assert shown["worker"] == done[0].worker and shown["attempts"] == 1
    # The studio's header says it too, in both languages.
    assert "Ray workers: 2, 0 busy, 6 jobs done" in engine_line(ray_queue, "en")
    assert "Ray 工作进程：2 个，0 个忙碌，已完成 6 个任务" in engine_line(ray_queue, "zh")
    # The job's card names its worker in the page's language: "worker 2 on HOST (CPU)", "HOST 上的工作进程 2（CPU）".
    number, host = re.match(r"worker-(\d+) on (.+) \(cpu\)$", done[0].worker).groups()
    assert f"worker {number} on {host} (CPU)" in job_status_html(done[0], "en")
    assert f"{host} 上的工作进程 {number}（CPU）" in job_status_html(done[0], "zh")

    # The same batch in one process (no Ray): the same frames, video for video.
    root = tmp_path / "in-process"
    local = JobQueue(root, _defaults(root))
    try:
        alone = local.submit(clips["speech"], videos)
        reference = local.wait([job.id for job in alone.jobs], timeout=WAIT_S)
    finally:
        local.close()
    assert [job.state for job in reference] == [SUCCEEDED] * 6
    for spread, one in zip(done, reference):
        assert spread.output.name == one.output.name
        ours, theirs = _frames(spread.output), _frames(one.output)
        assert len(ours) == len(theirs) > 0
        assert all(np.array_equal(a, b) for a, b in zip(ours, theirs)), spread.video_name


def test_cancel_reaches_a_job_running_on_the_other_machine(
        cluster: Cluster, ray_queue: JobQueue, clips: dict[str, Path]) -> None:
    batch = ray_queue.submit(clips["long speech"], [clips["d0-0"], clips["d13-0"]])
    there = _worker_on_node2(ray_queue, cluster)
    job = _wait_running_on(ray_queue, batch.id, there)
    ray_queue.cancel(job.id)
    done = {j.id: j for j in ray_queue.wait([j.id for j in batch.jobs], timeout=WAIT_S)}
    assert done[job.id].state == CANCELLED and done[job.id].output is None
    other = next(j for j in done.values() if j.id != job.id)
    assert other.state == SUCCEEDED
    assert [p.name for p in (ray_queue.batches_dir / batch.id).glob("*.mp4")] == [other.output.name]


def test_a_worker_killed_mid_job_has_its_job_run_again_on_another(
        cluster: Cluster, ray_queue: JobQueue, clips: dict[str, Path]) -> None:
    batch = ray_queue.submit(clips["long speech"], _videos(clips))
    there = _worker_on_node2(ray_queue, cluster)
    pid = next(worker for worker in ray_queue.backend.slots() if worker.name == there).info["pid"]
    victim = _wait_running_on(ray_queue, batch.id, there)
    os.kill(pid, signal.SIGKILL)
    done = {j.id: j for j in ray_queue.wait([j.id for j in batch.jobs], timeout=WAIT_S)}
    assert [j.state for j in done.values()] == [SUCCEEDED] * 6, [j.error for j in done.values()]
    again = done[victim.id]
    assert again.attempts == 2 and not again.worker.startswith(there + " ")
    # Six results, each once, none half written.
    results = sorted(p.name for p in (ray_queue.batches_dir / batch.id).iterdir() if p.is_file())
    assert results == sorted(j.output.name for j in done.values()) and len(results) == 6
    # The dead worker is replaced: two workers again, the new one on the second machine.
    deadline = time.monotonic() + 60
    while sum(w["state"] != "starting" for w in ray_queue.workers()) < 2 or there in {w["name"] for w in ray_queue.workers()}:
        assert time.monotonic() < deadline, ray_queue.workers()
        time.sleep(0.2)
    assert _worker_on_node2(ray_queue, cluster) != there


def test_a_bad_file_fails_alone_naming_it(ray_queue: JobQueue, clips: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(4096))
    batch = ray_queue.submit(clips["speech"], [clips["d0-0"], broken, clips["d13-0"]],
                             video_names=["d0.mp4", "my broken clip.mp4", "d13.mp4"])
    good, bad, last = ray_queue.wait([job.id for job in batch.jobs], timeout=WAIT_S)
    assert (good.state, bad.state, last.state) == (SUCCEEDED, FAILED, SUCCEEDED)
    # Named as uploaded: neither the studio's copy nor the worker's folder shows.
    assert bad.error.startswith("my broken clip.mp4:"), bad.error
    assert "batches" not in bad.error and "work" not in bad.error and "jobs/" not in bad.error
    # Its reason comes back as a code with the file's name too, so the page can word it in its own language.
    assert bad.error_code == "unreadable" and bad.error_params["file"] == "my broken clip.mp4", (bad.error_code, bad.error_params)


def test_the_cluster_refuses_a_client_without_its_token(cluster: Cluster, tmp_path: Path) -> None:
    token = Path(ray_environment()["RAY_AUTH_TOKEN_PATH"])
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and not token.resolve().is_relative_to(REPO)
    wrong = tmp_path / "wrong-token"
    wrong.write_text("0" * 64)
    probe = ("import ray, sys\n"
             "try:\n    ray.init(address=sys.argv[1], log_to_driver=False)\n"
             "except Exception as exc:\n    print('refused:', type(exc).__name__)\nelse:\n    print('admitted')\n")

    def client_with(token_file: Path, tries: int = 20) -> str:
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file),
               "RAY_NUM_REDIS_GET_RETRIES": str(tries)}
        answer = subprocess.run([sys.executable, "-c", probe, cluster.address], env=env, capture_output=True,
                                text=True, timeout=120)
        return answer.stdout + answer.stderr

    # Ray tries a refused connection again once a second, 20 times by default; 5 tell the same in a quarter of it.
    assert "refused:" in (said := client_with(wrong, tries=5)), said
    assert "admitted" in (said := client_with(token)), said  # the same client with the cluster's token gets in


def test_without_ray_the_studio_never_loads_it(tmp_path: Path) -> None:
    """The default install stays as it was: the studio's queue, API and page run without importing Ray."""
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from fastapi.testclient import TestClient\n"
        "import app\n"
        "from heygem.jobs import JobQueue\n"
        "from heygem.server import create_app\n"
        "app.build_parser().parse_args([])\n"
        "queue = JobQueue(Path(sys.argv[1]))\n"
        "with TestClient(create_app(queue), base_url='http://127.0.0.1') as client:\n"
        "    status = client.get('/api/status').json()\n"
        "queue.close()\n"
        "print(json.dumps({'workers': status['workers'], 'ray': 'ray' in sys.modules}))\n")
    answer = subprocess.run([sys.executable, "-c", script, str(tmp_path / "outputs")], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout.strip().splitlines()[-1]) == {"workers": [], "ray": False}


@pytest.mark.parametrize("argv", [["--workers", "2"], ["--ray-node-ip", "10.0.0.5"], ["--ray", "auto", "--workers", "0"]])
def test_the_studio_refuses_cluster_options_that_make_no_sense(argv: list[str], capsys) -> None:
    import app

    assert app.main(argv) == 2
    assert "--workers" in capsys.readouterr().err


def test_a_results_notes_keep_their_codes_on_the_way_back_from_a_worker() -> None:
    # A worker's result reaches the studio pickled (Ray's cloudpickle): its notes must still carry their codes, so
    # that the page words "cut short" or "turned" in its own language, as for a job run in one process.
    import cloudpickle

    from heygem.errors import CodedText

    note = CodedText("note_cut_short", "d0.mp4 is CUT SHORT", file="d0.mp4", decoded=40, total=50)
    back = cloudpickle.loads(cloudpickle.dumps({"notes": [note]}))["notes"][0]
    assert (str(back), back.code, back.params) == (str(note), "note_cut_short", note.params)


def test_files_travel_in_pieces_and_arrive_whole(cluster: Cluster, clips: dict[str, Path], tmp_path: Path,
                                                 monkeypatch) -> None:
    from heygem.cluster import worker

    monkeypatch.setattr(worker, "CHUNK_BYTES", 4096)
    pieces = worker.put_file(clips["d0-0"])
    assert len(pieces) == -(-clips["d0-0"].stat().st_size // 4096) > 1
    worker.get_file(pieces, tmp_path / "arrived.mp4")
    assert (tmp_path / "arrived.mp4").read_bytes() == clips["d0-0"].read_bytes()


def test_a_restarted_studio_runs_the_jobs_it_left_on_the_cluster(cluster: Cluster, clips: dict[str, Path],
                                                                tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    first = JobQueue(root, _defaults(root), backend=RayBackend())
    batch = first.submit(clips["long speech"], [clips["d0-0"], clips["d13-0"]])
    deadline = time.monotonic() + WAIT_S
    while not any(job.state == RUNNING and job.progress > 0 for job in first.batch(batch.id).jobs):
        assert time.monotonic() < deadline, first.batch(batch.id).to_json()
        time.sleep(0.1)
    first.close(timeout=0)  # the studio stops mid-job: its workers go with it
    again = JobQueue(root, _defaults(root), backend=RayBackend())
    try:
        done = again.wait([job.id for job in batch.jobs], timeout=WAIT_S)
    finally:
        again.close()
    assert [job.state for job in done] == [SUCCEEDED] * 2, [job.error for job in done]
    assert max(job.attempts for job in done) == 2
    assert sorted(p.name for p in (root / "batches" / batch.id).iterdir() if p.is_file()) == \
        sorted(job.output.name for job in done)


def test_a_worker_prepares_a_batchs_speech_once(cluster: Cluster, clips: dict[str, Path], tmp_path: Path,
                                                monkeypatch) -> None:
    """The worker class itself, run here: two jobs of one batch, the speech fetched and prepared once."""
    from heygem.cluster import worker
    from heygem.settings import settings_to_dict

    prepared: list[Path] = []
    real_prepare = worker.prepare_audio
    monkeypatch.setattr(worker, "prepare_audio", lambda path, *limits: prepared.append(path) or real_prepare(path, *limits))
    settings = worker.portable_settings(settings_to_dict(_defaults(tmp_path)))
    one = worker.Worker("worker-test", settings["engine"], workdir=str(tmp_path / "work"))
    speech = worker.put_file(clips["speech"])
    for number, name in enumerate(("d0-0", "d13-0")):
        job = {"video_file": f"{name}.mp4", "audio_file": "speech.wav", "audio_key": "speech-hash", "settings": settings}
        events = list(one.run(f"run-{number}", job, worker.put_file(clips[name]), speech))
        assert "result" in events[-1], events[-1]
        assert sum(len(event["chunk"]) for event in events if "chunk" in event) > 0
    assert len(prepared) == 1


def test_a_machine_that_joins_gets_a_worker_and_one_lost_mid_job_has_its_job_run_elsewhere(
        cluster: Cluster, ray_queue: JobQueue, clips: dict[str, Path]) -> None:
    node = cluster.start_node("node3", cpus=2)
    try:
        deadline = time.monotonic() + 120
        while sum(worker["state"] != "starting" for worker in ray_queue.workers()) < 3:  # it shows up
            assert time.monotonic() < deadline, ray_queue.workers()
            time.sleep(0.2)
        there = next(slot for slot in ray_queue.backend.slots()
                     if Path(slot.info["folder"]).parent == cluster.folder / "node3-work")
        # Its worker uses both of its cores (Ray sets OMP_NUM_THREADS=1 in every worker it gives no cores).
        assert next(w for w in ray_queue.workers() if w["name"] == there.name)["threads"] == 2
        batch = ray_queue.submit(clips["long speech"], [clips["d0-0"], clips["d13-0"], clips["d19-0"]])
        victim = _wait_running_on(ray_queue, batch.id, there.name)
        os.kill(there.info["pid"], signal.SIGKILL)  # the machine is lost: its worker, its raylet, all of it
        _stop_node(node, kill=True)
        done = {j.id: j for j in ray_queue.wait([j.id for j in batch.jobs], timeout=WAIT_S)}
        assert [j.state for j in done.values()] == [SUCCEEDED] * 3, [j.error for j in done.values()]
        assert done[victim.id].attempts == 2 and not done[victim.id].worker.startswith(there.name + " ")
        deadline = time.monotonic() + 60
        while len(ray_queue.workers()) != 2:  # and it leaves the list
            assert time.monotonic() < deadline, ray_queue.workers()
            time.sleep(0.2)
    finally:
        _stop_node(node, kill=True)


# ---- issue 17: what an operator found -------------------------------------------------------------------------


def _family(pid: int) -> list[psutil.Process]:
    """A process and all its descendants."""
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _signal(processes: list[psutil.Process], signum: int) -> None:
    for process in processes:
        try:
            process.send_signal(signum)
        except psutil.Error:  # gone already
            pass


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_up(queue: JobQueue, count: int) -> None:
    deadline = time.monotonic() + 120
    while sum(worker["state"] != "starting" for worker in queue.workers()) < count:
        assert time.monotonic() < deadline, f"the workers did not start: {queue.workers()}"
        time.sleep(0.2)


def test_a_frozen_worker_has_its_job_run_elsewhere(cluster: Cluster, ray_queue: JobQueue,
                                                   clips: dict[str, Path]) -> None:
    """A worker process that stops (SIGSTOP) sends nothing and answers nothing; Ray sees nothing wrong, since its
    machine is fine. The studio gives it up after LOST_AFTER_SECONDS and runs its job on another."""
    batch = ray_queue.submit(clips["long speech"], [clips["d0-0"], clips["d13-0"]])
    there = _worker_on_node2(ray_queue, cluster)
    frozen = psutil.Process(next(slot for slot in ray_queue.backend.slots() if slot.name == there).info["pid"])
    victim = _wait_running_on(ray_queue, batch.id, there)
    frozen.suspend()
    try:
        done = {j.id: j for j in ray_queue.wait([j.id for j in batch.jobs], timeout=WAIT_S)}
        assert [j.state for j in done.values()] == [SUCCEEDED] * 2, [(j.state, j.error) for j in done.values()]
        assert done[victim.id].attempts == 2 and not done[victim.id].worker.startswith(there + " ")
        frozen.wait(60)  # the studio ended it: it would otherwise wake up some day with a job run elsewhere
    finally:
        _signal([frozen], signal.SIGKILL)


def test_a_stuck_job_runs_again_and_one_stuck_past_its_cancel_ends_cancelled(
        cluster: Cluster, clips: dict[str, Path], tmp_path: Path) -> None:
    """Each worker's job blocks (its ffmpeg stopped) while the worker itself still answers. One job is cancelled:
    the cancel gets no answer, so after CANCEL_SECONDS its worker is stopped and the job ends cancelled. The other
    reports nothing for ``stall_after``: its worker is stopped and the job runs again, on a new worker."""
    root = tmp_path / "outputs"
    queue = JobQueue(root, _defaults(root), backend=RayBackend(stall_after=20))
    stopped: list[psutil.Process] = []
    try:
        _wait_up(queue, 2)
        batch = queue.submit(clips["longer speech"], [clips["d0-0"], clips["d13-0"]])
        # Each job blocked as soon as it is at its lip-sync, whichever worker gets there first: waiting for one
        # worker's job while the other's ran on let that one finish (2 s of lip-sync) before it was blocked.
        slots = queue.backend.slots()
        running = {}
        deadline = time.monotonic() + WAIT_S
        while len(running) < len(slots):
            assert time.monotonic() < deadline, f"not both at lip-sync: {queue.batch(batch.id).to_json()}"
            for slot in slots:
                job = None if slot.name in running else _running_on(queue, batch.id, slot.name, stage="lip-sync")
                if job is not None:
                    ffmpegs = [p for p in _family(slot.info["pid"])[1:] if "ffmpeg" in p.name()]
                    assert ffmpegs, f"{slot.name} runs no ffmpeg"
                    _signal(ffmpegs, signal.SIGSTOP)
                    stopped += ffmpegs
                    running[slot.name] = job
            time.sleep(0.05)
        cancelled, stuck = running.values()
        assert cancelled.id != stuck.id, running
        queue.cancel(cancelled.id)
        done = {j.id: j for j in queue.wait([cancelled.id, stuck.id], timeout=WAIT_S)}
        assert done[cancelled.id].state == CANCELLED and done[cancelled.id].output is None, done[cancelled.id]
        assert done[stuck.id].state == SUCCEEDED and done[stuck.id].attempts == 2, done[stuck.id]
        assert [p.name for p in (root / "batches" / batch.id).glob("*.mp4")] == [done[stuck.id].output.name]
    finally:
        queue.close(timeout=0)
        _signal(stopped, signal.SIGKILL)


def test_a_frozen_machine_is_given_up_within_the_set_time(cluster: Cluster, ray_queue: JobQueue,
                                                          clips: dict[str, Path]) -> None:
    """A machine that freezes whole (every process of it stopped, as a hung kernel or a cut link looks): Ray
    declares it dead after the studio's LOST_AFTER_SECONDS, not after its own default of about a minute; its job
    runs on another worker and its worker leaves the list."""
    node = cluster.start_node("frozen")
    frozen: list[psutil.Process] = []
    try:
        _wait_up(ray_queue, 3)
        there = next(slot for slot in ray_queue.backend.slots()
                     if Path(slot.info["folder"]).parent == cluster.folder / "frozen-work")
        batch = ray_queue.submit(clips["long speech"], [clips["d0-0"], clips["d13-0"], clips["d19-0"]])
        victim = _wait_running_on(ray_queue, batch.id, there.name)
        frozen = _family(node.pid)  # `ray start`, its raylet, its agents and its workers
        _signal(frozen, signal.SIGSTOP)
        deadline = time.monotonic() + 3 * LOST_AFTER_SECONDS
        while any(n["Alive"] for n in ray.nodes() if "frozen" in n["Resources"]):
            assert time.monotonic() < deadline, "Ray still counts the frozen machine"
            time.sleep(0.5)
        done = {j.id: j for j in ray_queue.wait([j.id for j in batch.jobs], timeout=WAIT_S)}
        assert [j.state for j in done.values()] == [SUCCEEDED] * 3, [j.error for j in done.values()]
        assert done[victim.id].attempts == 2 and not done[victim.id].worker.startswith(there.name + " ")
        deadline = time.monotonic() + 60
        while len(ray_queue.workers()) != 2 or there.name in {w["name"] for w in ray_queue.workers()}:
            assert time.monotonic() < deadline, ray_queue.workers()
            time.sleep(0.2)
    finally:
        _signal(frozen, signal.SIGKILL)
        _stop_node(node, kill=True)


def test_with_n_workers_a_machine_that_joins_takes_its_share(cluster: Cluster, clips: dict[str, Path],
                                                            tmp_path: Path) -> None:
    """`--workers 3` on two machines runs two on the head, which has room for them; a machine that joins then
    gets one of them, so that no machine idles while another runs two, and a batch runs on all three."""
    root = tmp_path / "outputs"
    queue = JobQueue(root, _defaults(root), backend=RayBackend(workers=3))
    node = None

    def per_machine() -> dict[str, int]:
        return dict(Counter(Path(slot.info["folder"]).parent.name for slot in queue.backend.slots()
                            if slot.info and not slot.retired))

    try:
        _wait_up(queue, 3)
        assert per_machine() == {"head-work": 2, "node2-work": 1}
        node = cluster.start_node("node4")
        deadline = time.monotonic() + 120
        while per_machine() != {"head-work": 1, "node2-work": 1, "node4-work": 1} or len(queue.workers()) != 3:
            assert time.monotonic() < deadline, queue.workers()
            time.sleep(0.2)
        batch = queue.submit(clips["long speech"], [clips["d0-0"], clips["d13-0"], clips["d19-0"]])
        done = queue.wait([job.id for job in batch.jobs], timeout=WAIT_S)
        assert [job.state for job in done] == [SUCCEEDED] * 3
        assert len(list((cluster.folder / "node4-work").glob("*/.cache/faces/*"))) >= 1  # it took its share
    finally:
        queue.close(timeout=0)
        if node is not None:
            _stop_node(node, kill=True)


def test_a_machine_running_other_heygem_code_gets_no_worker(cluster: Cluster, ray_queue: JobQueue,
                                                            clips: dict[str, Path], tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A machine whose HeyGem differs from the studio's (here by one comment line) is refused, with a message in
    the log naming both versions; its results could differ from the others', so it runs no job."""
    code = tmp_path / "other-heygem"
    shutil.copytree(REPO / "heygem", code / "heygem", ignore=shutil.ignore_patterns("__pycache__"))
    with (code / "heygem" / "cluster" / "worker.py").open("a") as source:
        source.write("\n# one line more: another version of HeyGem\n")
    node = cluster.start_node("stale", code=code)
    try:
        deadline = time.monotonic() + 120
        while True:  # until it is refused, or (as before) given a worker like any other machine
            refused = [record for record in caplog.records if "other HeyGem code" in record.getMessage()]
            listed = [slot for slot in ray_queue.backend.slots()
                      if slot.info and Path(slot.info["folder"]).parent == cluster.folder / "stale-work"]
            if refused or listed:
                break
            assert time.monotonic() < deadline, ray_queue.workers()
            time.sleep(0.2)
        assert len(refused) == 1 and refused[0].levelno == logging.ERROR, ray_queue.workers()
        assert code_version() in refused[0].getMessage(), refused[0].getMessage()
        batch = ray_queue.submit(clips["speech"], [clips["d0-0"], clips["d13-0"], clips["d19-0"]])
        done = ray_queue.wait([job.id for job in batch.jobs], timeout=WAIT_S)
        assert [job.state for job in done] == [SUCCEEDED] * 3
        assert len(ray_queue.workers()) == 2
        assert not list((cluster.folder / "stale-work").glob("*/.cache")), "a job ran on the refused machine"
    finally:
        _stop_node(node)


def test_a_killed_studio_leaves_no_ray_process(tmp_path: Path) -> None:
    """`--ray auto` starts Ray's processes; a studio killed outright (SIGKILL: no clean-up of its own) must not
    leave them running."""
    env = {**os.environ, "HEYGEM_RAY_TOKEN": str(tmp_path / "token"), "HEYGEM_WORKDIR": str(tmp_path / "work"),
           "PYTHONPATH": str(REPO)}
    studio = subprocess.Popen(
        [sys.executable, "app.py", "--ray", "auto", "--workers", "1", "--engine", "builtin", "--device", "cpu",
         "--outputs", str(tmp_path / "outputs"), "--port", str(_free_port())],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while not any("ray::Worker" in " ".join(process.cmdline()) for process in family if not _gone(process)):
            assert studio.poll() is None and time.monotonic() < deadline, "the studio's Ray worker did not start"
            time.sleep(0.5)
            family = _family(studio.pid)
        assert len(family) > 3, family  # Ray's own processes, its worker, and the studio's watcher of them
        studio.kill()
        studio.wait(30)
        deadline = time.monotonic() + 60
        while left := [process for process in family[1:] if not _gone(process)]:
            assert time.monotonic() < deadline, [" ".join(process.cmdline())[:80] for process in left]
            time.sleep(0.5)
    finally:
        studio.kill()
        _signal(family, signal.SIGKILL)


def test_without_ray_installed_the_studio_says_so_once_and_writes_no_token(tmp_path: Path) -> None:
    script = ("import sys\n"
              "sys.modules['ray'] = None  # as where Ray is not installed\n"
              "import app\n"
              "sys.exit(app.main(sys.argv[1:]))\n")
    env = {**os.environ, "HEYGEM_RAY_TOKEN": str(tmp_path / "config" / "ray-token")}
    answer = subprocess.run([sys.executable, "-c", script, "--ray", "auto", "--outputs", str(tmp_path / "outputs"),
                             "--port", str(_free_port())], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert answer.returncode == 2, answer.stderr
    error = answer.stderr.strip().splitlines()[-1]
    assert error.startswith("error: --ray: Ray is not installed") and error.count("--ray") == 1, error
    assert "pip install -r requirements-ray.txt" in error
    assert not (tmp_path / "config").exists()  # nothing written before Ray was found missing


@pytest.mark.parametrize(("argv", "said"), [
    (["--ray-lost-after", "30"], "go with --ray"),
    (["--ray", "auto", "--ray-lost-after", "1"], "--ray-lost-after must be 3 seconds or more"),
])
def test_the_studio_refuses_a_lost_after_that_makes_no_sense(argv: list[str], said: str, capsys) -> None:
    import app

    assert app.main(argv) == 2
    assert said in capsys.readouterr().err


def test_ray_health_checks_follow_the_lost_after_setting() -> None:
    from heygem.cluster import health_check_config

    # Ray declares a machine dead after `failures` checks in a row fail, each lasting its timeout plus the period.
    for lost_after in (LOST_AFTER_SECONDS, 6, 60):
        checks = health_check_config(lost_after)
        took = checks["health_check_failure_threshold"] * (checks["health_check_timeout_ms"]
                                                           + checks["health_check_period_ms"]) / 1000
        assert took == pytest.approx(lost_after, abs=1)
    assert LOST_AFTER_SECONDS <= 20  # Ray's own settings take about a minute (5 x (10 s + 3 s))
    assert ray_environment()["RAY_health_check_timeout_ms"] == str(health_check_config()["health_check_timeout_ms"])
    with pytest.raises(ValueError, match="3 s or more"):
        health_check_config(2)


def _node(node_id: str, cpus: float, gpus: float = 0, alive: bool = True) -> dict:
    return {"NodeID": node_id, "Alive": alive, "NodeManagerAddress": f"10.0.0.{node_id[-1]}",
            "Resources": {"CPU": cpus, **({"GPU": gpus} if gpus else {})}}


def test_workers_are_planned_one_per_gpu_or_one_per_machine_with_its_cores() -> None:
    from heygem.cluster.ray_backend import plan_workers

    def where(plan) -> list[tuple[str, int, int]]:
        return [(place.node, place.gpus, place.cpus) for place in plan]

    cpu_only = [_node("n1", 16), _node("n2", 4), _node("n3", 8, alive=False), _node("n4", 0)]
    # One per machine that offers cores, with all of them; none on a dead machine or one without CPU slots.
    assert where(plan_workers(cpu_only, None)) == [("n1", 0, 16), ("n2", 0, 4)]
    # Asked for more: one per machine first, then more where there is room, the machine's cores shared out.
    assert sorted(where(plan_workers(cpu_only, 3))) == [("n1", 0, 8), ("n1", 0, 8), ("n2", 0, 4)]
    # Machines that already have workers keep them: asked for one, the machine holding it keeps it.
    assert where(plan_workers(cpu_only, 1, current={"n2": 1})) == [("n2", 0, 4)]
    assert where(plan_workers(cpu_only, None, refused={"n1"})) == [("n2", 0, 4)]
    gpus = [_node("g1", 32, gpus=4), _node("c1", 64)]
    # One per GPU, each with its GPU's share of the machine's cores; a machine without GPUs gets none.
    assert where(plan_workers(gpus, None)) == [("g1", 1, 8)] * 4
    assert where(plan_workers(gpus, None, "cuda:1")) == [("g1", 1, 8)] * 4  # the number names no worker's GPU
    assert where(plan_workers(gpus, 2)) == [("g1", 1, 8)] * 2
    # --device cpu on a cluster with GPUs: CPU workers, one per machine; cuda on a cluster without: none.
    assert where(plan_workers(gpus, None, "cpu")) == [("c1", 0, 64), ("g1", 0, 32)]
    assert plan_workers(cpu_only, None, "cuda") == []


def test_a_gpu_worker_runs_on_the_gpu_ray_gave_it_whatever_number_the_studio_names(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """Ray shows a GPU worker its one GPU as cuda:0 (CUDA_VISIBLE_DEVICES). `--device cuda:1` (a number of the
    studio's machine) must not make it look for a second GPU, and the status names the GPU by its machine's
    number. (No GPU here: the device string is checked, not a run on CUDA.)"""
    from heygem.cluster import worker
    from heygem.cluster.worker import device_label, worker_device
    from heygem.settings import settings_to_dict

    assert [worker_device(asked, [3]) for asked in ("cuda:1", "cuda", "auto", "CUDA:0")] == ["cuda:0"] * 4
    assert [worker_device(asked, []) for asked in ("cpu", "auto", "cuda:1")] == ["cpu", "auto", "cuda:1"]
    assert worker_device("cpu", [3]) == "cpu"
    assert device_label("cuda:0", "3", "NVIDIA H200") == "cuda:3 (NVIDIA H200)"
    assert device_label("cuda:1", "2,7") == "cuda:7"
    assert device_label("cuda:0", "") == "cuda:0"
    assert device_label("cpu", "3") == "cpu"

    # The worker itself, as Ray starts it with GPU 3 of its machine: the engine and every job get cuda:0.
    monkeypatch.setattr(worker, "_ray_gpu_ids", lambda: [3])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    settings = _defaults(tmp_path)
    settings.engine.device = "cuda:1"
    stored = worker.portable_settings(settings_to_dict(settings))
    one = worker.Worker("worker-gpu", stored["engine"], workdir=str(tmp_path / "work"))
    assert one.device_option == "cuda:0" and one.describe()["device"] == "cuda:3"
    assert one._settings(stored).engine.device == "cuda:0"


def test_a_worker_uses_the_threads_it_is_given(tmp_path: Path) -> None:
    """In a process of its own (threads are per process): a worker given 2 cores sets torch, OpenCV and OpenMP
    to 2 threads, whatever Ray's OMP_NUM_THREADS=1 said."""
    script = ("import json, os, sys\n"
              "os.environ['OMP_NUM_THREADS'] = '1'  # as Ray sets it\n"
              "import cv2, torch\n"
              "from heygem.cluster.worker import Worker\n"
              "one = Worker('worker-t', {'engine': 'builtin', 'device': 'cpu'}, workdir=sys.argv[1], threads=2)\n"
              "print(json.dumps([one.describe()['threads'], torch.get_num_threads(), cv2.getNumThreads(),\n"
              "                  os.environ['OMP_NUM_THREADS']]))\n")
    answer = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout.strip().splitlines()[-1]) == [2, 2, 2, "2"]
