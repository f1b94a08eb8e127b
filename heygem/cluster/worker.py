"""One worker: owns one device, loads the engine once, runs jobs through ``heygem.generate`` in its own folder.

It is given file contents, never paths of the studio's: the video and the speech arrive as bytes (pieces of
``CHUNK_BYTES`` in Ray's object store, fetched one at a time), are written into its working folder
(``$HEYGEM_WORKDIR/<worker>`` or a new temporary folder), and the result goes back the same way, piece by piece. Its face and presenter caches live there too, so a worker that saw a presenter before skips detection.
A batch's speech is prepared once per worker: kept by the content hash the studio sends with it.

``Worker.run`` yields what happens, in order: progress events, the result's pieces, then its figures or one
error. Ray runs this class as an actor (heygem.cluster.ray_backend).
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import socket
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from heygem.engines import create_engine, engine_status, resolve_engine_name
from heygem.errors import HeyGemError
from heygem.pipeline import PreparedAudio, ThrottledProgress, generate, prepare_audio
from heygem.settings import CHECKPOINTS_DIR, EngineOptions, Settings, settings_from_dict

log = logging.getLogger(__name__)

WORKDIR_ENV = "HEYGEM_WORKDIR"
DONE_STAGE = "done"  # as heygem.jobs: too late to cancel once the result is written
SPEECHES_KEPT = 2  # one batch at a time, plus a single job submitted meanwhile
CHUNK_BYTES = 32 * 2**20  # files travel in pieces of this size: neither side holds a whole long video at once
EVENTS_AHEAD = 4  # events (pieces of the result) waiting to leave, at most
# The GenerateResult fields that travel back (its paths are the worker's own and stay here).
RESULT_FIELDS = ("engine", "frames", "frames_without_face", "fps", "width", "height", "duration", "timings", "notes",
                 "faces_detected", "face_cache", "study", "engine_info")


def portable_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A job's stored settings without the studio's paths: the caches and the output folder are the worker's,
    and a checkpoint or detector weights file is named only, looked for in the worker's own checkpoints/."""
    settings = {**settings, "out_dir": None, "detection": {**settings.get("detection", {}), "cache_dir": None},
                "engine": {**settings.get("engine", {})}}
    for part, key in (("engine", "checkpoint"), ("detection", "detector_weights")):
        if settings[part].get(key):
            settings[part][key] = Path(settings[part][key]).name
    return settings


class Worker:
    """One device's worker. ``engine``: the studio's default EngineOptions as a dict (loaded now, once).
    ``threads``: the CPU cores it was given (Ray's ``num_cpus``), for torch, OpenCV and OpenMP; Ray itself
    leaves every worker one thread (``OMP_NUM_THREADS=1``) unless told otherwise."""

    def __init__(self, name: str, engine: dict[str, Any], workdir: str | None = None,
                 threads: int | None = None) -> None:
        self.name = name
        root = workdir or os.environ.get(WORKDIR_ENV)
        self.folder = Path(root) / name if root else Path(tempfile.mkdtemp(prefix=f"heygem-{name}-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        if threads:
            use_threads(threads)  # before the engine loads: the CPU runtimes fix their threads then
        # The GPU Ray gave this worker, whatever number the studio's --device names (heygem.cluster.worker_device).
        self.device_option = worker_device(engine.get("device") or "auto", _ray_gpu_ids())
        options = EngineOptions(**{**_local_paths(engine, "checkpoint"), "device": self.device_option})
        started = time.perf_counter()
        self.engine_name = resolve_engine_name(options)
        try:
            create_engine(options)  # kept loaded (heygem.engines caches it) for every job after
        except HeyGemError as exc:  # e.g. no checkpoint on this machine: each job then fails saying so
            log.error("worker %s: the %s engine could not be loaded: %s", name, self.engine_name, exc)
            self.engine_name += " (not loaded: see the jobs' errors)"
        self.device = _device_name(options)
        self._speeches: OrderedDict[str, PreparedAudio] = OrderedDict()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        log.info("worker %s ready on %s (%s, %d threads) in %.1f s; working folder %s", name, socket.gethostname(),
                 self.device, _torch_threads(), time.perf_counter() - started, self.folder)

    def describe(self) -> dict[str, Any]:
        """Who this worker is, for the studio's list of workers (``threads``: torch's, as it runs jobs)."""
        return {"name": self.name, "host": socket.gethostname(), "device": self.device, "engine": self.engine_name,
                "pid": os.getpid(), "folder": str(self.folder), "threads": _torch_threads()}

    def ping(self) -> bool:
        return True

    def cancel(self, run_id: str) -> None:
        """Stop the run ``run_id`` at its next progress step (it then ends with a CancelledError)."""
        with self._lock:
            self._cancelled.add(run_id)

    def run(self, run_id: str, job: dict[str, Any], video: list, speech: list) -> Iterator[dict[str, Any]]:
        """Run one job. ``job``: video_file and audio_file (the names to write them under), audio_key (the
        speech's content hash) and settings (``portable_settings``). ``video``, ``speech``: references to the
        files' pieces (``put_file``); the speech's are fetched only when this worker has not prepared it yet.

        Yields ``{"progress": (stage, fraction)}`` as the job goes; then ``{"chunk": bytes}`` for each piece of
        the result and ``{"result": {...}}``, or ``{"error": class name, "message": ..., "paths": {worker path:
        "video" or "speech"}}``."""
        events: queue.Queue[dict[str, Any]] = queue.Queue(EVENTS_AHEAD)
        # generate reports through a callback; the events leave from this (the call's) thread.
        thread = threading.Thread(target=self._generate, args=(run_id, job, video, speech, events),
                                  name=f"heygem-{self.name}", daemon=True)
        thread.start()
        while True:
            event = events.get()
            yield event
            if "result" in event or "error" in event:
                break
        thread.join()

    def _generate(self, run_id: str, job: dict[str, Any], video: list, speech: list,
                  events: queue.Queue) -> None:
        folder = self.folder / "jobs" / run_id
        folder.mkdir(parents=True)
        video_path = folder / job["video_file"]
        audio_path = self.folder / "speech" / job["audio_key"] / job["audio_file"]
        audio: PreparedAudio | None = None
        try:
            get_file(video, video_path)
            audio = self._speech(job, speech, audio_path)
            settings = self._settings(job["settings"])

            def write(stage: str, fraction: float) -> str | None:
                events.put({"progress": (stage, fraction)})
                with self._lock:
                    return "cancelled" if run_id in self._cancelled and stage != DONE_STAGE else None

            output = folder / "result.mp4"
            result = generate(audio, video_path, output, settings, ThrottledProgress(write))
            with output.open("rb") as data:
                while piece := data.read(CHUNK_BYTES):
                    events.put({"chunk": np.frombuffer(piece, dtype=np.uint8)})
            events.put({"result": {name: getattr(result, name) for name in RESULT_FIELDS}})
        except Exception as exc:  # every way a job ends goes back to the studio, which records it
            if not isinstance(exc, HeyGemError):
                log.exception("worker %s: job %s failed unexpectedly", self.name, run_id)
            # The studio puts its own paths in their place (a speech kept from before may bear another name).
            paths = {str(video_path): "video", str(audio_path): "speech", **({str(audio.path): "speech"} if audio else {})}
            events.put({"error": type(exc).__name__,
                        "message": str(exc), "paths": paths, "heygem": isinstance(exc, HeyGemError),
                        "code": getattr(exc, "code", None), "params": dict(getattr(exc, "params", None) or {}),
                        "traceback": traceback.format_exc()})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            with self._lock:
                self._cancelled.discard(run_id)

    def _speech(self, job: dict[str, Any], speech: list, path: Path) -> PreparedAudio:
        """The batch's speech, prepared once per worker and kept by its content hash (else written to
        ``path`` and prepared)."""
        key = job["audio_key"]
        with self._lock:
            kept = self._speeches.get(key)
            if kept is not None:
                self._speeches.move_to_end(key)
        if kept is not None:
            log.info("worker %s: reusing the prepared speech %s", self.name, job["audio_file"])
            return kept
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            get_file(speech, path)
            prepared = prepare_audio(path, settings_from_dict(job["settings"]).limits)
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        with self._lock:
            self._speeches[key] = prepared
            while len(self._speeches) > SPEECHES_KEPT:
                _, dropped = self._speeches.popitem(last=False)
                dropped.close()
                shutil.rmtree(dropped.path.parent, ignore_errors=True)
        return prepared

    def _settings(self, stored: dict[str, Any]) -> Settings:
        """A job's settings (``portable_settings``) on this machine: its model files in its own checkpoints/,
        its caches and outputs in this worker's folder."""
        settings = settings_from_dict({**stored, "engine": _local_paths(stored.get("engine", {}), "checkpoint"),
                                       "detection": _local_paths(stored.get("detection", {}), "detector_weights")})
        settings.engine.device = self.device_option  # this worker's own device, never the studio's number
        settings.detection.cache_dir = self.folder / ".cache" / "faces"  # studies go beside it
        settings.out_dir = self.folder / "jobs"
        return settings


def put_file(path: Path) -> list:
    """The file's bytes into Ray's object store, in pieces of CHUNK_BYTES: the references, in order."""
    import ray

    pieces = []
    with Path(path).open("rb") as data:
        while piece := data.read(CHUNK_BYTES):
            pieces.append(ray.put(np.frombuffer(piece, dtype=np.uint8)))
    return pieces


def get_file(pieces: list, path: Path) -> None:
    """Write the file ``put_file`` sent to ``path``, fetching one piece at a time."""
    import ray

    with path.open("wb") as out:
        for piece in pieces:
            out.write(ray.get(piece).tobytes())


def _local_paths(options: dict[str, Any], key: str) -> dict[str, Any]:
    """A file named in ``options[key]`` is looked for in this machine's checkpoints/ folder."""
    value = options.get(key)
    return {**options, key: CHECKPOINTS_DIR / Path(value).name if value else None}


def worker_device(requested: str, gpu_ids: list[int | str]) -> str:
    """The device option a worker runs with. Ray gives a GPU worker one GPU and shows it that GPU alone
    (``CUDA_VISIBLE_DEVICES``), as ``cuda:0``: there, ``auto``, ``cuda`` and ``cuda:N`` all mean that GPU (N numbers
    the studio machine's GPUs, which mean nothing on a worker's). Without a GPU from Ray the option is kept."""
    requested = (requested or "auto").strip().lower()
    if gpu_ids and (requested == "auto" or requested.split(":")[0] == "cuda"):
        return "cuda:0"
    return requested


def device_label(device: str, visible_gpus: str, gpu_name: str | None = None) -> str:
    """How the status names a worker's device: a GPU by its number on its machine (``cuda:3 (NVIDIA H200)``),
    not by the number the worker sees (Ray shows a GPU worker its GPU alone, as ``cuda:0``). ``visible_gpus``:
    the worker's ``CUDA_VISIBLE_DEVICES``, which maps the one to the other."""
    if not device.startswith("cuda"):
        return device
    index = int(device.split(":")[1]) if ":" in device else 0
    visible = [gpu.strip() for gpu in visible_gpus.split(",") if gpu.strip()]
    number = visible[index] if index < len(visible) else str(index)
    return f"cuda:{number}" + (f" ({gpu_name})" if gpu_name else "")


def use_threads(threads: int) -> None:
    """Let torch, OpenCV and OpenMP (and the processes this one starts) use ``threads`` cores."""
    import cv2
    import torch

    threads = max(1, int(threads))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _ray_gpu_ids() -> list:
    """The GPUs Ray gave this process (none outside a Ray worker)."""
    try:
        import ray

        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:  # not under Ray
        return []


def _device_name(options: EngineOptions) -> str:
    """What this worker computes on, as the status shows it (``device_label``)."""
    device = str(engine_status(options)["device"])  # cuda:0, cpu, mps, or "cuda (NVIDIA H200)" for auto
    if not device.startswith("cuda"):
        return device
    import torch

    index = torch.device(device.split()[0]).index or 0
    gpu_name = torch.cuda.get_device_name(index) if torch.cuda.is_available() else None
    return device_label(f"cuda:{index}", os.environ.get("CUDA_VISIBLE_DEVICES", ""), gpu_name)
