"""The Ray backend against a real Ray cluster started here: this process is the head (the studio), and a second
`ray start --address` process on this machine acts as another machine, with its own working folder.

What a user checks: every result of a batch is there, with the same frames as in one process; the jobs say
which worker ran them; cancel reaches a job running on the other machine; a worker killed mid-job has its
job run again elsewhere, with no result twice or half written; a bad file fails alone, naming the file; and
the default, without Ray, never loads it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import MEDIA, REPO, make_clip
from heygem.jobs import CANCELLED, FAILED, RUNNING, SUCCEEDED, JobQueue
from heygem.settings import DetectionOptions, EncodeOptions, EngineOptions, Settings

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -r requirements-ray.txt "
                                        "(bash tests/run.sh installs it)")

from heygem.cluster import connect, disconnect, ray_environment  # noqa: E402
from heygem.cluster.ray_backend import RayBackend  # noqa: E402

WAIT_S = 240  # for a batch to finish; never reached when things work


class Cluster:
    def __init__(self, address: str, folder: Path) -> None:
        self.address, self.folder = address, folder
        self.head_work, self.node_work = folder / "head-work", folder / "node2-work"

    def start_node(self, name: str) -> subprocess.Popen:
        """Another machine: `ray start --address` in a process group of its own, with its own working folder
        (``<name>-work``) and its own current folder; returns once Ray counts it."""
        alive = sum(n["Alive"] for n in ray.nodes())
        (self.folder / name).mkdir()
        node = subprocess.Popen(
            [str(Path(sys.executable).parent / "ray"), "start", "--address", self.address, "--num-cpus=1",
             f'--resources={{"{name}": 1}}', "--block", "--disable-usage-stats"],
            env={**os.environ, **ray_environment(), "HEYGEM_WORKDIR": str(self.folder / f"{name}-work"),
                 "PYTHONPATH": str(REPO)},
            cwd=self.folder / name, stdout=open(self.folder / f"{name}.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while sum(n["Alive"] for n in ray.nodes()) <= alive:
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
    """Ray with token authentication: the head in this process (1 CPU slot), and a second node (1 CPU slot)
    in its own process group, with its own working folder. Both are stopped at the end, leaving no process.
    Ray's health checks are made quick, so that a lost machine is noticed in seconds, not half a minute."""
    folder = tmp_path_factory.mktemp("ray")
    quick = {"RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "1000",
             "RAY_health_check_failure_threshold": "3"}
    saved = {name: os.environ.get(name) for name in ("HEYGEM_RAY_TOKEN", "HEYGEM_WORKDIR", "RAY_AUTH_MODE",
                                                      "RAY_AUTH_TOKEN_PATH", *quick)}
    os.environ.update(quick)
    os.environ["HEYGEM_RAY_TOKEN"] = str(folder / "token")
    os.environ["HEYGEM_WORKDIR"] = str(folder / "head-work")  # the head's workers inherit it
    cluster = Cluster(connect("auto", cpus=1)["gcs_address"], folder)
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
             "long speech": make_clip(folder / "long.wav", "-i", speech, "-t", "6")}
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


def _wait_running_on(queue: JobQueue, batch_id: str, worker: str, past: float = 0.0):
    """The job of the batch that ``worker`` runs, once it is past ``past`` of its way (the speech prepared)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        for job in queue.batch(batch_id).jobs:
            if job.state == RUNNING and job.worker and job.worker.startswith(worker + " ") and job.progress > past \
                    and job.stage not in ("starting", "audio"):
                return job
        time.sleep(0.05)
    raise AssertionError(f"no job of batch {batch_id} ran on {worker}: {queue.batch(batch_id).to_json()}")


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
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(wrong)}
    answer = subprocess.run([sys.executable, "-c", probe, cluster.address], env=env, capture_output=True,
                            text=True, timeout=120)
    assert "refused:" in answer.stdout, answer.stdout + answer.stderr


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
    node = cluster.start_node("node3")
    try:
        deadline = time.monotonic() + 120
        while sum(worker["state"] != "starting" for worker in ray_queue.workers()) < 3:  # it shows up
            assert time.monotonic() < deadline, ray_queue.workers()
            time.sleep(0.2)
        there = next(slot for slot in ray_queue.backend.slots()
                     if Path(slot.info["folder"]).parent == cluster.folder / "node3-work")
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
