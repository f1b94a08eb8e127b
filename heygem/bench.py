"""The benchmark: speed and memory of each engine through ``heygem.generate``, on a talking head of a chosen
length and size.

    python -m heygem.bench                                           # 60 s at 1280x720, wav2lip and builtin
    python -m heygem.bench --seconds 10 --size 1280x720 1920x1080 --engines wav2lip --batch 3
    python -m heygem.bench --ray auto --workers 2 --batch 8             # the studio's queue: one process vs Ray workers

The input is built by looping a real clip from ``shared/media`` (video and speech) to the length and size
asked for, and cached under ``bench/out/inputs/``. Each engine is loaded once (timed), warmed up on one second
of the same size, then timed on the whole input: wall time, real-time factor, frames per second of every
stage, peak RSS (the process, and its ffmpeg children), and on CUDA the peak GPU memory and how busy the GPU
was. One markdown table goes to stdout, every figure and the machine's facts to one JSON file.

With ``--ray``, the batch goes through the studio's own queue twice instead, once run in this process and once
by Ray workers (heygem.cluster), and the table gives seconds per video for each and each worker's share.

Without a checkpoint in ``checkpoints/`` the wav2lip engine runs on deterministic test weights: the same
network, so the same cost; the output says which was used.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import glob
import hashlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench" / "out" / "bench.json"
DEFAULT_INPUTS = REPO / "bench" / "out" / "inputs"
DEFAULT_VIDEO = "videoretalking/2.mp4"
# The first of these that exists is the speech (the second is the fallback the tests also use).
DEFAULT_AUDIOS = ("sadtalker/RD_Radio31_000.wav", "speechrecognition/english.wav")
# "builtin-footage": the built-in engine with the footage drive (the presenter's own mouths, heygem.footage).
ENGINES = ("wav2lip", "builtin", "builtin-footage")
DEFAULT_ENGINES = ("wav2lip", "builtin")
# Stages in the order the data flows; stages the timings hold that are not listed here follow, as they come.
STAGE_ORDER = ("features", "orientation", "study", "footage", "phones", "engine start", "decode", "detect",
               "synthesis", "blend", "encode", "mux")
WARMUP_SECONDS = 1.0
# Bump when the way inputs are built changes, so cached inputs are rebuilt.
INPUT_RECIPE = "loop-fit-pad-x264-veryfast-crf20-own-sound-v2"
SAMPLE_INTERVAL_S = 0.05  # /proc RSS sampling
GPU_SAMPLE_INTERVAL_MS = 100


def default_shared() -> Path:
    """``$HEYGEM_SHARED``, else the ``shared/`` folder beside the repository."""
    return Path(os.environ.get("HEYGEM_SHARED", REPO.parent / "shared"))


@dataclass
class BenchOptions:
    """What to benchmark, and where inputs and results go."""

    seconds: float = 60.0
    sizes: list[tuple[int, int]] = field(default_factory=lambda: [(1280, 720)])
    fps: int = 25
    engines: list[str] = field(default_factory=lambda: list(DEFAULT_ENGINES))
    batch: int = 0  # videos in the batch run; 0 = no batch run
    device: str = "auto"
    checkpoint: Path | None = None  # None: the first real one in checkpoints/, else test weights
    out: Path = DEFAULT_OUT
    shared: Path = field(default_factory=default_shared)
    inputs: Path = DEFAULT_INPUTS  # cache of the generated inputs
    video: str = DEFAULT_VIDEO  # relative to shared/media, or absolute
    audio: str | None = None  # None: the first of DEFAULT_AUDIOS present
    warmup: bool = True
    ray: str | None = None  # auto or a cluster's address: compare the queue in one process with Ray workers
    workers: int | None = None  # with ray: how many workers (None: one per GPU, or per machine)
    timeline: bool = False  # also draw each single run's stage timeline (a PNG beside ``out``)
    alternate: int = 0  # rounds of prepared jobs, one per engine, taken in turn (``_alternate``); 0 = none


def parse_size(text: str) -> tuple[int, int]:
    """``"1280x720"`` -> ``(1280, 720)``; both sides even (H.264 in yuv420p needs that)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must look like 1280x720, not {text!r}") from None
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"size {text!r}: width and height must be even and at least 16")
    return width, height


# --- inputs -------------------------------------------------------------------------------------------------


def _media_file(media: Path, name: str) -> Path:
    path = Path(name) if Path(name).is_absolute() else media / name
    if not path.is_file():
        raise FileNotFoundError(f"benchmark source {path} not found (set --shared or HEYGEM_SHARED to the shared/ folder)")
    return path


def default_audio(media: Path) -> str:
    """The first of ``DEFAULT_AUDIOS`` present under ``media``."""
    for name in DEFAULT_AUDIOS:
        if (media / name).is_file():
            return name
    raise FileNotFoundError(f"none of {', '.join(DEFAULT_AUDIOS)} found under {media}")


def _cache_key(source: Path, *params: Any) -> str:
    stat = source.stat()
    text = repr((str(source.resolve()), stat.st_size, stat.st_mtime_ns, INPUT_RECIPE, *params))
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _ffmpeg_to(out: Path, args: list[str]) -> Path:
    """Run ffmpeg into a temporary name beside ``out``, then rename: a cached input is always complete."""
    from heygem.media.ffmpeg import ffmpeg_exe

    out.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".partial-", suffix=out.suffix, dir=out.parent)
    os.close(handle)
    try:
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args, partial], check=True)
        os.replace(partial, out)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return out


def build_video(source: Path, seconds: float, width: int, height: int, fps: int, cache_dir: Path) -> Path:
    """``source`` looped to ``seconds`` at ``fps``, fitted into ``width`` x ``height`` (padded, centred), with its
    own sound looped along when it has one: a presenter's footage carries the person's own speech, which the
    footage drive chooses its mouths by and the presenter study its key mouths (without it both fall back, and
    the bench would time the fallback).

    Cached in ``cache_dir`` under a name keyed by every parameter and the source file's identity."""
    key = _cache_key(source, seconds, width, height, fps)
    out = cache_dir / f"{source.stem}_{seconds:g}s_{width}x{height}_{fps}fps_{key}.mp4"
    if out.is_file():
        return out
    log.info("building %s from %s", out.name, source)
    fit = (f"fps={fps},scale={width}:{height}:force_original_aspect_ratio=decrease:force_divisible_by=2,"
           f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1")
    return _ffmpeg_to(out, ["-stream_loop", "-1", "-i", str(source), "-map", "0:v:0", "-map", "0:a:0?", "-vf", fit,
                            "-frames:v", str(round(seconds * fps)), "-t", f"{seconds:g}", "-c:v", "libx264",
                            "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k"])


def build_audio(source: Path, seconds: float, cache_dir: Path) -> Path:
    """``source`` looped to ``seconds`` (WAV, its own sample rate). Cached like ``build_video``."""
    key = _cache_key(source, seconds)
    out = cache_dir / f"{source.stem}_{seconds:g}s_{key}.wav"
    if out.is_file():
        return out
    log.info("building %s from %s", out.name, source)
    return _ffmpeg_to(out, ["-stream_loop", "-1", "-i", str(source), "-t", f"{seconds:g}", "-vn", "-c:a", "pcm_s16le"])


def build_inputs(
    seconds: float,
    size: tuple[int, int],
    media: Path,
    cache_dir: Path = DEFAULT_INPUTS,
    fps: int = 25,
    video: str = DEFAULT_VIDEO,
    audio: str | None = None,
) -> tuple[Path, Path]:
    """A talking head of ``seconds`` at ``size`` and its speech, looped from real clips under ``media``:
    ``(video, audio)``, cached under ``cache_dir``."""
    width, height = size
    video_path = build_video(_media_file(media, video), seconds, width, height, fps, cache_dir)
    audio_path = build_audio(_media_file(media, audio or default_audio(media)), seconds, cache_dir)
    return video_path, audio_path


# --- measuring ----------------------------------------------------------------------------------------------


def _status_kb(pid: int | str, key: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def _exe(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def _children(exclude: set[str]) -> list[int]:
    """Child processes of every thread of this process that run another program (e.g. ffmpeg), except the
    programs in ``exclude``.

    A child between fork and exec still runs our own program and shows our whole RSS (the pages it shares
    with us): it is left out, or every ffmpeg start would count the HeyGem process twice."""
    skip = exclude | {_exe("self")}
    pids: list[int] = []
    for path in glob.glob("/proc/self/task/*/children"):
        try:
            with open(path) as children:
                pids += [int(pid) for pid in children.read().split()]
        except (OSError, ValueError):
            pass
    return [pid for pid in pids if (exe := _exe(pid)) is not None and exe not in skip]


class RssSampler:
    """Peak resident memory of this process and of its child processes (ffmpeg) while it runs.

    The process's own peak is exact where Linux lets it reset its high-water mark (VmHWM, via
    /proc/self/clear_refs); the children, which come and go, are sampled every ``interval`` seconds:
    ``ru_maxrss`` of children would count the parent's pages copied by fork() before exec.
    """

    def __init__(self, interval: float = SAMPLE_INTERVAL_S, exclude: set[str] | None = None) -> None:
        self.interval = interval
        self.exclude = exclude if exclude is not None else set()  # programs not counted, e.g. our own nvidia-smi
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm_reset = False
        self.peak = {"process": 0.0, "children": 0.0, "total": 0.0}  # kB

    def _sample(self) -> None:
        while True:
            own = _status_kb("self", "VmRSS")
            children = sum(_status_kb(pid, "VmRSS") for pid in _children(self.exclude))
            self.peak["process"] = max(self.peak["process"], own)
            self.peak["children"] = max(self.peak["children"], children)
            self.peak["total"] = max(self.peak["total"], own + children)
            if self._stop.wait(self.interval):
                return

    def start(self) -> RssSampler:
        try:
            with open("/proc/self/clear_refs", "w") as clear_refs:
                clear_refs.write("5")  # 5 = reset the peak RSS (VmHWM) to the current RSS
            self._hwm_reset = True
        except OSError:
            self._hwm_reset = False
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="bench-rss", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        """Peaks in MB: ``process`` (exact when resettable), ``ffmpeg`` and ``total`` (sampled)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        process = self.peak["process"]
        if self._hwm_reset:
            process = max(process, _status_kb("self", "VmHWM"))
        return {
            "peak_rss_mb": round(process / 1024, 1),
            "peak_ffmpeg_rss_mb": round(self.peak["children"] / 1024, 1),
            "peak_total_rss_mb": round(self.peak["total"] / 1024, 1),
            "peak_rss_exact": self._hwm_reset,
        }


class GpuBusySampler:
    """How busy one NVIDIA GPU is while it runs: the mean of its utilization (the share of the driver's sample
    period in which a kernel ran), read about every 100 ms through pynvml when installed, else by running
    ``nvidia-smi --query-gpu=utilization.gpu`` once per sample (one short process per reading, so nothing
    depends on how nvidia-smi buffers a stream).

    ``stop()`` gives the mean in percent, or None when neither works here (the bench then says "n/a").
    """

    def __init__(self, gpu: str) -> None:
        self.gpu = gpu  # "GPU-<uuid>" or an index, as nvidia-smi -i and NVML take it
        self.samples: list[float] = []
        self.exe: str | None = None  # the nvidia-smi program, whose processes are no part of what is measured
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> GpuBusySampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            if self.gpu.startswith(("GPU-", "MIG-")):
                handle = pynvml.nvmlDeviceGetHandleByUUID(self.gpu)
            else:
                handle = pynvml.nvmlDeviceGetHandleByIndex(int(self.gpu))
            self._thread = threading.Thread(target=self._poll_nvml, args=(pynvml, handle), name="bench-gpu", daemon=True)
        except Exception as exc:  # noqa: BLE001 - not installed, no driver, no such GPU: try nvidia-smi
            log.debug("pynvml unusable (%r); trying nvidia-smi", exc)
            smi = shutil.which("nvidia-smi")
            if smi is None:
                return self
            self.exe = os.path.realpath(smi)
            self._thread = threading.Thread(target=self._poll_smi, args=(smi,), name="bench-gpu", daemon=True)
        self._thread.start()
        return self

    def _poll_nvml(self, pynvml: Any, handle: Any) -> None:
        while not self._stop.wait(GPU_SAMPLE_INTERVAL_MS / 1000):
            try:
                self.samples.append(float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu))
            except Exception:  # noqa: BLE001 - one failed read is one sample fewer
                pass

    def _poll_smi(self, smi: str) -> None:
        command = [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", self.gpu]
        failures = 0
        while True:
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=5)
                self.samples.append(float(done.stdout.split()[0]))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                failures += 1  # "[N/A]", no driver, a hung call
                if failures >= 3 and not self.samples:
                    log.debug("nvidia-smi gives no utilization here; GPU busy share is n/a")
                    return
            if self._stop.wait(GPU_SAMPLE_INTERVAL_MS / 1000):
                return

    def stop(self) -> float | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if not self.samples:
            return None
        return round(sum(self.samples) / len(self.samples), 1)


class Measurement:
    """RSS, GPU memory and GPU busy share around one timed piece of work: ``with Measurement(device) as m: ...``
    then ``m.figures``."""

    def __init__(self, device: Any) -> None:
        self.device = device  # a torch.device
        self.figures: dict[str, Any] = {}
        self._gpu: GpuBusySampler | None = None
        self._rss: RssSampler | None = None

    def __enter__(self) -> Measurement:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._gpu = GpuBusySampler(_nvidia_id(self.device)).start()
        exclude = {self._gpu.exe} if self._gpu is not None and self._gpu.exe is not None else set()
        self._rss = RssSampler(exclude=exclude).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        import torch

        assert self._rss is not None
        self.figures.update(self._rss.stop())
        gpu_memory = gpu_busy = None
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            gpu_memory = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        if self._gpu is not None:
            gpu_busy = self._gpu.stop()
        self.figures.update(gpu_peak_memory_mb=gpu_memory, gpu_busy_pct=gpu_busy)


def _nvidia_id(device: Any) -> str:
    """How nvidia-smi and NVML name the GPU torch calls ``device``: its UUID (immune to CUDA_VISIBLE_DEVICES
    renumbering) when torch knows it, else its index."""
    import torch

    index = device.index if device.index is not None else torch.cuda.current_device()
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    if uuid:
        text = str(uuid)
        return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"
    return str(index)


def stage_figures(timings: dict[str, float], frames: int, features_s: float | None = None) -> dict[str, dict[str, float | None]]:
    """``{stage: {"seconds", "fps"}}`` in ``STAGE_ORDER``, unknown stages after; ``total`` is left out.

    fps is frames / stage seconds; None when the stage took less than the timings' resolution (1 ms)."""
    seconds = {stage: value for stage, value in timings.items() if stage != "total"}
    if features_s is not None:
        seconds["features"] = features_s
    ordered = [stage for stage in STAGE_ORDER if stage in seconds] + [s for s in seconds if s not in STAGE_ORDER]
    return {stage: {"seconds": round(seconds[stage], 4),
                    "fps": round(frames / seconds[stage], 1) if seconds[stage] > 0 else None} for stage in ordered}


# --- running ------------------------------------------------------------------------------------------------


def machine_facts(device: Any) -> dict[str, Any]:
    """CPU, memory, GPU, library versions, date and code version of this run."""
    import torch

    cpu_model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu_model = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    facts: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_gb": round(_meminfo_kb("MemTotal") / 2**20, 1),
        "load_average": [round(value, 2) for value in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "gpu": None,
        "gpu_memory_gb": None,
        "device": str(device),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "ffmpeg": _ffmpeg_version(),
        "commit": _git_commit(),
    }
    if torch.cuda.is_available():  # named even when the bench runs on the CPU: the machine has it
        props = torch.cuda.get_device_properties(device if device.type == "cuda" else 0)
        facts.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1))
    return facts


def _meminfo_kb(key: str) -> float:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith(key + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _ffmpeg_version() -> str | None:
    from heygem.media.ffmpeg import ffmpeg_exe

    try:
        done = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, timeout=30)
        return done.stdout.splitlines()[0] if done.stdout else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def resolve_checkpoint(explicit: Path | None, shared: Path, work: Path) -> tuple[Path, str]:
    """The Wav2Lip checkpoint to time and what it is: the one given, else the first real one in checkpoints/,
    else deterministic test weights written into ``work``."""
    from heygem.engines import find_checkpoint

    if explicit is not None:
        return Path(explicit), "given"
    found = find_checkpoint(None)
    if found is not None:
        return found, "real"
    from models.wav2lip import save_test_checkpoint

    manifest = shared / "reference" / "wav2lip" / "generator_manifest.json"
    return save_test_checkpoint(manifest, work / "wav2lip_test.pth"), "test"


def _settings(engine: str, checkpoint: Path | None, device: str, out_dir: Path, face_cache: Path) -> Any:
    from heygem.settings import DetectionOptions, EngineOptions, Settings

    detection = DetectionOptions()
    # A fresh face cache per run, so a first run is a first run (nothing kept from an earlier bench); the
    # option only exists once the face cache is in. Presenter studies are kept beside the face cache (its
    # parent's studies/), so each run gets a folder of its own: no run finds another's study.
    if "cache_dir" in {f.name for f in fields(DetectionOptions)}:
        detection.cache_dir = face_cache / "faces"
    # builtin-footage: the built-in engine with the footage drive; builtin: with its key mouths (phones), as it was
    # benchmarked before the default drive (auto) took the footage where it can.
    name, _, drive = engine.partition("-")
    options = EngineOptions(engine=name, checkpoint=checkpoint, device=device)
    if name == "builtin":
        options.mouth_drive = drive or "phones"
    return Settings(detection=detection, engine=options, out_dir=out_dir)


def _run_row(result: Any, features_s: float | None, generate_s: float, figures: dict[str, Any]) -> dict[str, Any]:
    """The figures of one generated video."""
    wall = generate_s + (features_s or 0.0)
    return {
        "frames": result.frames,
        "video_seconds": round(result.duration, 3),
        "width": result.width,
        "height": result.height,
        "features_s": None if features_s is None else round(features_s, 3),
        "generate_s": round(generate_s, 3),
        "wall_s": round(wall, 3),
        "rtf": round(wall / result.duration, 4),
        "fps": round(result.frames / wall, 2),
        "stages": stage_figures(result.timings, result.frames, features_s),
        "timings": result.timings,
        "timeline": getattr(result, "timeline", {}),
        "engine": result.engine,
        "frames_without_face": result.frames_without_face,
        "faces_detected": getattr(result, "faces_detected", None),
        "face_cache": getattr(result, "face_cache", None),
        "study": getattr(result, "study", None),
        "output_bytes": result.output.stat().st_size if result.output.is_file() else None,
        **figures,
    }


def _timed_video(audio: Path | Any, video: Path, settings: Any, device: Any, output: Path) -> dict[str, Any]:
    """One video, measured. ``audio`` is a path (the speech is prepared inside, timed as "features") or
    speech already prepared (no features time: a batch shares it)."""
    from heygem.pipeline import generate, prepare_audio

    gc.collect()  # garbage of the previous run is not this run's memory
    features_s = None
    with Measurement(device) as measurement:
        if isinstance(audio, Path):
            started = time.perf_counter()
            audio = prepare_audio(audio)
            features_s = time.perf_counter() - started
        started = time.perf_counter()
        result = generate(audio, video, output, settings)
        generate_s = time.perf_counter() - started
    row = _run_row(result, features_s, generate_s, measurement.figures)
    output.unlink(missing_ok=True)  # the videos are not kept: only the figures are
    return row


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run every engine at every size (and the batch, if asked); return all figures, ready for JSON."""
    import torch

    from heygem.device import pick_device
    from heygem.engines import create_engine, unload_engines

    media = options.shared / "media"
    audio_name = options.audio or default_audio(media)
    device = pick_device(options.device)
    results: dict[str, Any] = {
        "machine": machine_facts(device),
        "options": {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(options).items()},
        "checkpoint": None,
        "runs": [],
        "batches": [],
        "engine_loads": [],
        "floors": [],
        "alternations": [],
    }
    results["options"]["sizes"] = [f"{w}x{h}" for w, h in options.sizes]
    results["options"]["audio"] = audio_name
    with tempfile.TemporaryDirectory(prefix="heygem-bench-") as tmp:
        work = Path(tmp)
        checkpoint = None
        if "wav2lip" in options.engines:
            checkpoint, kind = resolve_checkpoint(options.checkpoint, options.shared, work)
            results["checkpoint"] = {"path": str(checkpoint), "kind": kind}
            log.info("wav2lip checkpoint: %s (%s)", checkpoint, kind)
        counter = 0

        def fresh(name: str) -> Path:
            nonlocal counter
            counter += 1
            return work / f"{counter:03d}-{name}"

        for size in options.sizes:
            size_text = f"{size[0]}x{size[1]}"
            video, audio = build_inputs(options.seconds, size, media, options.inputs, options.fps, options.video, audio_name)
            results["floors"].append({"size": size_text, **time_floor(video, audio, fresh("floor.mp4"))})
            warmup_inputs = None
            if options.warmup:
                warmup_inputs = build_inputs(min(WARMUP_SECONDS, options.seconds), size, media, options.inputs,
                                             options.fps, options.video, audio_name)
            prepared: dict[str, Any] = {}  # each engine's settings whose face cache and studies hold the presenter
            for engine in options.engines:
                settings = _settings(engine, checkpoint, options.device, work, fresh("faces"))
                prepared[engine] = settings
                # Each engine starts cold and alone: its load is timed, and the other's memory is let go.
                unload_engines()
                gc.collect()
                started = time.perf_counter()
                loaded = create_engine(settings.engine)
                load_s = time.perf_counter() - started
                description = loaded.describe()
                runtime = getattr(loaded, "runtime", None)  # e.g. wav2lip's CPU fast path (ncnn) or torch
                del loaded
                load = {"engine": engine, "size": size_text, "load_s": round(load_s, 3), "describe": description,
                        "runtime": runtime, "warmup": None}
                if warmup_inputs is not None:
                    warm = _settings(engine, checkpoint, options.device, work, fresh("faces"))
                    load["warmup"] = _timed_video(warmup_inputs[1], warmup_inputs[0], warm, device, fresh("warmup.mp4"))
                results["engine_loads"].append(load)
                log.info("%s %s: loaded in %.2f s (%s); timing %g s of video", engine, size_text, load_s, description,
                         options.seconds)

                row = _timed_video(audio, video, settings, device, fresh("single.mp4"))
                results["runs"].append({"engine_name": engine, "size": size_text, "run": "single", **row})
                log.info("%s %s: %d frames in %.1f s (RTF %.2f)", engine, size_text, row["frames"], row["wall_s"], row["rtf"])

                if options.batch > 0:
                    results["batches"].append(_run_batch(options.batch, engine, size_text, video, audio, checkpoint,
                                                         options.device, device, work, fresh, results["runs"]))
            if options.alternate > 0:
                results["alternations"] += _alternate(options.alternate, prepared, size_text, video, audio, device,
                                                      fresh)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    unload_engines()
    return results


def floor_argv(exe: str, video: Path, audio: Path, output: Path) -> list[str]:
    """The floor of any lip-sync job: ffmpeg alone decoding the presenter and encoding it again with the speech,
    at the product's CRF and x264 ``veryfast`` (issue 19's yardstick), nothing in between."""
    return [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-i", str(audio),
            "-map", "0:v:0", "-map", "1:a:0", "-shortest", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", str(output)]


def time_floor(video: Path, audio: Path, output: Path) -> dict[str, float]:
    """Seconds the floor (``floor_argv``) takes here, in the same run as the engines it is set against."""
    from heygem.media.ffmpeg import ffmpeg_exe

    started = time.perf_counter()
    subprocess.run(floor_argv(ffmpeg_exe(), video, audio, output), check=True)
    seconds = time.perf_counter() - started
    output.unlink()
    log.info("floor (ffmpeg re-encode, veryfast, CRF 18): %.1f s", seconds)
    return {"floor_s": round(seconds, 3)}


def _run_batch(
    count: int, engine: str, size_text: str, video: Path, audio: Path, checkpoint: Path | None, device_option: str,
    device: Any, work: Path, fresh: Any, runs: list[dict[str, Any]],
) -> dict[str, Any]:
    """``count`` copies of ``video`` against one prepared speech, as a studio batch runs them. The face cache
    starts empty, so the first video shows a first run and the rest what the cache saves on repeats."""
    from heygem.pipeline import prepare_audio

    settings = _settings(engine, checkpoint, device_option, work, fresh("faces"))
    started = time.perf_counter()
    prepared = prepare_audio(audio)
    features_s = time.perf_counter() - started
    seconds_per_video: list[float] = []
    for number in range(1, count + 1):
        copy = fresh(f"batch-{number}{video.suffix}")
        shutil.copyfile(video, copy)  # its own file, as an upload would be
        row = _timed_video(prepared, copy, settings, device, fresh(f"batch-{number}.mp4"))
        copy.unlink()
        runs.append({"engine_name": engine, "size": size_text, "run": f"batch {number}/{count}", **row})
        seconds_per_video.append(row["generate_s"])
        log.info("%s %s batch %d/%d: %.1f s (face cache %s)", engine, size_text, number, count, row["generate_s"],
                 row["face_cache"])
    total = features_s + sum(seconds_per_video)
    repeats = seconds_per_video[1:]
    return {
        "engine_name": engine,
        "size": size_text,
        "videos": count,
        "features_s": round(features_s, 3),
        "seconds_per_video": [round(s, 3) for s in seconds_per_video],
        "first_s": round(seconds_per_video[0], 3),
        "repeat_mean_s": round(sum(repeats) / len(repeats), 3) if repeats else None,
        "total_s": round(total, 3),
        "mean_s_per_video": round(total / count, 3),
    }


def _alternate(rounds: int, prepared: dict[str, Any], size_text: str, video: Path, audio: Path, device: Any,
               fresh: Any) -> list[dict[str, Any]]:
    """``rounds`` rounds of one job per engine on one prepared speech, each engine's presenter prepared by its
    runs before (``prepared``: its settings), the engines taken in turn and their order swapped every round.
    This machine's speed drifts by a third from one minute to the next: engines timed one after the other, each
    in a block of its own runs, are compared across that drift; taken in turn, each round's jobs see nearly the
    same machine."""
    from heygem.pipeline import prepare_audio

    speech = prepare_audio(audio)
    engines = list(prepared)
    rows = []
    for number in range(1, rounds + 1):
        for engine in engines if number % 2 else engines[::-1]:
            copy = fresh(f"alternate-{number}{video.suffix}")
            shutil.copyfile(video, copy)  # its own file, as an upload would be
            row = _timed_video(speech, copy, prepared[engine], device, fresh(f"alternate-{number}.mp4"))
            copy.unlink()
            rows.append({"engine_name": engine, "size": size_text, "round": number, "generate_s": row["generate_s"],
                         "face_cache": row["face_cache"], "study": row.get("study")})
            log.info("%s %s alternated %d/%d: %.1f s", engine, size_text, number, rounds, row["generate_s"])
    return rows


def alternation_notes(rows: list[dict[str, Any]]) -> list[str]:
    """A line per size and engine on the alternated prepared jobs: mean and fastest seconds, and against the
    first engine the ratio of the means and the rounds in which it was the faster."""
    lines = []
    for size in dict.fromkeys(row["size"] for row in rows):
        at_size = [row for row in rows if row["size"] == size]
        engines = list(dict.fromkeys(row["engine_name"] for row in at_size))
        seconds = {engine: {row["round"]: row["generate_s"] for row in at_size if row["engine_name"] == engine}
                   for engine in engines}
        first = engines[0]
        for engine in engines:
            times = list(seconds[engine].values())
            text = (f"{engine} at {size}, prepared presenter, {len(times)} rounds taken in turn: "
                    f"{sum(times) / len(times):.2f} s on average (fastest {min(times):.2f} s)")
            if engine != first:
                rounds = [r for r in seconds[engine] if r in seconds[first]]
                ratio = (sum(seconds[engine][r] for r in rounds) / max(sum(seconds[first][r] for r in rounds), 1e-9))
                faster = sum(seconds[engine][r] < seconds[first][r] for r in rounds)
                text += f"; {ratio:.3f} of {first}'s time, the faster in {faster} of {len(rounds)} rounds"
            lines.append(text + ".")
    return lines


def run_cluster_bench(options: BenchOptions) -> dict[str, Any]:
    """The batch through the studio's queue (``JobQueue``), first in this process, then on Ray workers: seconds
    per video for each (from submission to the last result, the workers already up), and per worker."""
    from heygem.cluster import RayUnavailableError, connect, disconnect
    from heygem.device import pick_device
    from heygem.engines import find_checkpoint
    from heygem.errors import HeyGemError
    from heygem.jobs import SUCCEEDED, JobQueue

    if "wav2lip" in options.engines and find_checkpoint(None) is None:
        raise HeyGemError("with --ray, the workers take the wav2lip checkpoint from checkpoints/, and there is none: "
                          "put one there, or give --engines builtin")
    media = options.shared / "media"
    audio_name = options.audio or default_audio(media)
    device = pick_device(options.device)
    try:
        cluster = connect(options.ray, workers=options.workers)
    except RayUnavailableError as exc:
        raise HeyGemError(str(exc)) from exc
    from heygem.cluster.ray_backend import RayBackend

    results: dict[str, Any] = {
        "machine": machine_facts(device),
        "options": {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(options).items()},
        "cluster": {"address": cluster.get("gcs_address"), "workers": options.workers},
        "batches": [],
    }
    results["options"]["sizes"] = [f"{w}x{h}" for w, h in options.sizes]
    results["options"]["audio"] = audio_name
    try:
        with tempfile.TemporaryDirectory(prefix="heygem-bench-") as tmp:
            for size in options.sizes:
                size_text = f"{size[0]}x{size[1]}"
                video, audio = build_inputs(options.seconds, size, media, options.inputs, options.fps, options.video,
                                            audio_name)
                for engine in options.engines:
                    for mode in ("in-process", "ray"):
                        root = Path(tmp) / f"{engine}-{size_text}-{mode}" / "outputs"
                        defaults = _settings(engine, None, options.device, root, root / ".cache" / "faces")
                        backend = RayBackend(options.workers) if mode == "ray" else None
                        queue = JobQueue(root, defaults, backend=backend)
                        try:
                            while backend is not None and (not queue.workers() or any(
                                    worker["state"] == "starting" for worker in queue.workers())):
                                time.sleep(0.2)  # timed from the moment the workers are up, as in a running studio
                            started = time.perf_counter()
                            batch = queue.submit(audio, [video] * options.batch,
                                                 video_names=[f"video-{n}{video.suffix}" for n in range(options.batch)])
                            jobs = queue.wait([job.id for job in batch.jobs])
                            wall = time.perf_counter() - started
                        finally:
                            queue.close()
                        failed = [job.error for job in jobs if job.state != SUCCEEDED]
                        if failed:
                            raise HeyGemError(f"the {mode} batch failed: {failed[0]}")
                        results["batches"].append(_cluster_row(engine, size_text, mode, wall, jobs))
                        log.info("%s %s %s: %d videos in %.1f s", engine, size_text, mode, len(jobs), wall)
    finally:
        disconnect()
    return results


def _cluster_row(engine: str, size_text: str, mode: str, wall: float, jobs: list[Any]) -> dict[str, Any]:
    workers: dict[str, list[float]] = {}
    for job in jobs:
        workers.setdefault(job.worker or "this process", []).append(job.timings.get("total", 0.0))
    return {
        "engine_name": engine, "size": size_text, "run": mode, "videos": len(jobs), "wall_s": round(wall, 3),
        "s_per_video": round(wall / len(jobs), 3),
        "workers": [{"worker": name, "jobs": len(seconds), "mean_generate_s": round(sum(seconds) / len(seconds), 3)}
                    for name, seconds in sorted(workers.items())],
    }


def cluster_table(results: dict[str, Any]) -> str:
    """Seconds per video in one process and on Ray workers, then each worker's share."""
    lines = ["| engine | size | run | videos | wall s | s per video | vs in-process |", "| --- | --- | --- | --- | --- | --- | --- |"]
    alone: dict[tuple[str, str], float] = {}
    for row in results["batches"]:
        key = (row["engine_name"], row["size"])
        if row["run"] == "in-process":
            alone[key] = row["s_per_video"]
        ratio = f"{alone[key] / row['s_per_video']:.2f}x" if key in alone and row["run"] != "in-process" else "-"
        lines.append(f"| {row['engine_name']} | {row['size']} | {row['run']} | {row['videos']} | {_number(row['wall_s'])} "
                     f"| {_number(row['s_per_video'], 2)} | {ratio} |")
    lines += ["", "| engine | size | run | worker | jobs | mean generate s per job |", "| --- | --- | --- | --- | --- | --- |"]
    for row in results["batches"]:
        for worker in row["workers"]:
            lines.append(f"| {row['engine_name']} | {row['size']} | {row['run']} | {worker['worker']} | {worker['jobs']} "
                         f"| {_number(worker['mean_generate_s'], 2)} |")
    machine = results["machine"]
    lines += ["", f"Machine: {machine.get('cpu', '?')}, {machine.get('cpu_count', '?')} CPUs, GPU: {machine.get('gpu') or 'none'}; "
                  f"Ray cluster {results['cluster']['address']}, workers asked: {results['cluster']['workers'] or 'default'}. "
                  "wall = from submitting the batch to its last result, the workers already up; mean generate s = "
                  "heygem.generate's own time on the worker (without the transfers and the queue)."]
    return "\n".join(lines)


# --- reporting ----------------------------------------------------------------------------------------------


def _number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def markdown_table(results: dict[str, Any]) -> str:
    """One markdown table of every run, then a few lines on engine loads, batches and the checkpoint."""
    runs = results["runs"]
    stages: list[str] = []
    for row in runs:
        stages += [stage for stage in row["stages"] if stage not in stages]
    stages = [s for s in STAGE_ORDER if s in stages] + [s for s in stages if s not in STAGE_ORDER]
    gpu = any(row["gpu_peak_memory_mb"] is not None for row in runs)
    header = ["engine", "size", "run", "video s", "frames", "wall s", "RTF", "fps"]
    header += [f"{stage} fps" for stage in stages]
    header += ["face cache", "presenter study", "peak RSS MB (+ffmpeg)"]
    if gpu:
        header += ["GPU peak MB", "GPU busy"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in runs:
        cells = [row["engine_name"], row["size"], row["run"], f"{row['video_seconds']:g}", str(row["frames"]),
                 _number(row["wall_s"]), f"{row['rtf']:.2f}", _number(row["fps"])]
        cells += [_number(row["stages"].get(stage, {}).get("fps")) for stage in stages]
        cells += [str(row["face_cache"] or "-"), str(row.get("study") or "-"),
                  f"{row['peak_rss_mb']:.0f} ({row['peak_total_rss_mb']:.0f})"]
        if gpu:
            busy = row["gpu_busy_pct"]
            cells += [_number(row["gpu_peak_memory_mb"], 0), "n/a" if busy is None else f"{busy:.0f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [""]
    machine = results["machine"]
    notes.append(f"Machine: {machine['cpu']}, {machine['cpus_usable']} CPUs, {machine['ram_gb']} GB RAM, "
                 f"GPU: {machine['gpu'] or 'none'}; torch {machine['torch']}, device {machine['device']}; "
                 f"{machine['date']}; load average at start {machine['load_average']}.")
    checkpoint = results["checkpoint"]
    if checkpoint is not None:
        what = {"test": "deterministic test weights (same network, same cost as a real checkpoint)",
                "real": "a real checkpoint from checkpoints/", "given": "the checkpoint given"}[checkpoint["kind"]]
        notes.append(f"wav2lip weights: {what}: {Path(checkpoint['path']).name}.")
    for load in results["engine_loads"]:
        runtime = f", runtime {load['runtime']}" if load.get("runtime") else ""
        text = f"{load['engine']} at {load['size']}: engine load {load['load_s']:.2f} s ({load['describe']}{runtime})"
        if load["warmup"] is not None:
            warm = load["warmup"]
            text += f"; warm-up run ({warm['video_seconds']:g} s of video) {warm['wall_s']:.2f} s, not in the table"
        else:
            text += "; no warm-up run: the first row includes first-call costs"
        notes.append(text + ".")
    for floor in results.get("floors", []):
        singles = [row for row in runs if row["size"] == floor["size"] and row["run"] == "single"]
        against = "; ".join(f"{row['engine_name']} {row['wall_s'] / floor['floor_s']:.1f}x" for row in singles)
        notes.append(f"floor at {floor['size']}: ffmpeg alone re-encoding the input with the speech (x264 veryfast, "
                     f"CRF 18) {floor['floor_s']:.1f} s" + (f"; single runs against it: {against}" if against else "") + ".")
    notes += alternation_notes(results.get("alternations", []))
    for batch in results["batches"]:
        repeat = "" if batch["repeat_mean_s"] is None else f", repeats {batch['repeat_mean_s']:.2f} s on average"
        notes.append(f"{batch['engine_name']} at {batch['size']}, batch of {batch['videos']}: "
                     f"{batch['mean_s_per_video']:.2f} s per video (speech prepared once in {batch['features_s']:.2f} s; "
                     f"first video {batch['first_s']:.2f} s{repeat}).")
    notes.append("wall = features + generate for a single run; batch rows are generate only (the speech is prepared "
                 "once per batch). RTF = wall / video seconds. Stage fps = frames / stage seconds; - = under 1 ms or "
                 "not run; stages run in parallel threads, so their seconds may add up to more than the wall time. "
                 "Peak RSS: the process (and with its ffmpeg children, sampled).")
    return "\n".join(lines + notes)


# --- command line -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[BenchOptions, bool]:
    """Command-line arguments -> ``(options, verbose)``."""
    parser = argparse.ArgumentParser(
        prog="python -m heygem.bench",
        description="Time each engine through heygem.generate on a looped talking head: wall time, real-time factor, "
                    "frames per second of every stage, peak memory; one markdown table, one JSON.",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the input video (default 60)")
    parser.add_argument("--size", nargs="+", default=["1280x720"], metavar="WxH", help="one or more sizes (default 1280x720)")
    parser.add_argument("--fps", type=int, default=25, help="frame rate of the input video (default 25)")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, default=list(DEFAULT_ENGINES),
                        help="engines to time (default wav2lip and builtin; builtin-footage: the built-in engine "
                             "with --mouth-drive footage)")
    parser.add_argument("--batch", type=int, default=0, metavar="N", help="also run a batch of N videos on one prepared speech (default 0: none)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    parser.add_argument("--checkpoint", type=Path, help="Wav2Lip checkpoint (default: the first in checkpoints/, else test weights)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON with every figure (default bench/out/bench.json)")
    parser.add_argument("--shared", type=Path, default=default_shared(), help="the shared/ folder with media/ (default ../shared or $HEYGEM_SHARED)")
    parser.add_argument("--inputs", type=Path, default=DEFAULT_INPUTS, help="cache of the generated inputs (default bench/out/inputs)")
    parser.add_argument("--video", default=DEFAULT_VIDEO, help=f"source clip under shared/media, or a path (default {DEFAULT_VIDEO})")
    parser.add_argument("--audio", help=f"source speech under shared/media, or a path (default {DEFAULT_AUDIOS[0]})")
    parser.add_argument("--no-warmup", action="store_true", help="skip the one-second warm-up run of each engine")
    parser.add_argument("--alternate", type=int, default=0, metavar="N",
                        help="then N rounds of one prepared job per engine, taken in turn (default 0: none): "
                             "engines compared where the machine's speed drifts")
    parser.add_argument("--ray", metavar="auto|ADDRESS", help="run the batch (--batch N) through the studio's queue, "
                        "in one process and on Ray workers, and compare (auto: Ray on this machine)")
    parser.add_argument("--workers", type=int, metavar="N", help="with --ray: this many workers (default: one per GPU, "
                                                                   "or per machine)")
    parser.add_argument("--timeline", action="store_true",
                        help="also draw when each stage was busy in each single run (PNG files beside --out)")
    parser.add_argument("-v", "--verbose", action="store_true", help="the full HeyGem log on the terminal")
    args = parser.parse_args(argv)
    try:
        sizes = [parse_size(text) for text in args.size]
    except ValueError as exc:
        parser.error(str(exc))
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    if args.batch < 0:
        parser.error("--batch must be 0 or more")
    if args.alternate < 0 or (args.alternate and args.ray):
        parser.error("--alternate must be 0 or more, and goes without --ray")
    if args.ray and args.batch < 1:
        parser.error("--ray compares batches: give --batch N (e.g. --batch 8)")
    if args.workers is not None and (not args.ray or args.workers < 1):
        parser.error("--workers N (1 or more) goes with --ray")
    options = BenchOptions(
        seconds=args.seconds, sizes=sizes, fps=args.fps, engines=list(dict.fromkeys(args.engines)), batch=args.batch,
        device=args.device, checkpoint=args.checkpoint, out=args.out, shared=args.shared, inputs=args.inputs,
        video=args.video, audio=args.audio, warmup=not args.no_warmup, ray=args.ray, workers=args.workers,
        timeline=args.timeline, alternate=args.alternate,
    )
    return options, args.verbose


@contextmanager
def _console_logging(verbose: bool) -> Iterator[None]:
    """HeyGem's warnings (everything with ``verbose``) and the bench's progress on stderr, for the run only.

    Handlers are added and removed again, never replaced: run in-process (tests, the studio's process) the
    host's own logging set-up is left as it was."""
    heygem_log = logging.getLogger("heygem")
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.DEBUG if verbose else logging.WARNING)
    console.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    progress = logging.StreamHandler(sys.stderr)
    progress.setFormatter(logging.Formatter("bench: %(message)s"))
    saved = heygem_log.level, log.level, log.propagate
    heygem_log.addHandler(console)
    log.addHandler(progress)
    log.propagate = False  # the progress lines show once, through their own handler
    log.setLevel(logging.INFO)
    if verbose:
        heygem_log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        heygem_log.removeHandler(console)
        log.removeHandler(progress)
        heygem_log.level, log.level, log.propagate = saved


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON; 0 on success."""
    from heygem.errors import HeyGemError

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["live"]:  # a live session measured with a WebRTC client (heygem.bench_live)
        from heygem.bench_live import main as live_main

        return live_main(argv[1:])
    options, verbose = parse_args(argv)
    if not options.ray:  # the jobs run here, as on the command line (the Ray workers set their own threads)
        from heygem.pipeline import one_opencv_thread

        one_opencv_thread()
    with _console_logging(verbose):
        try:
            results = run_cluster_bench(options) if options.ray else run_bench(options)
        except (HeyGemError, FileNotFoundError, subprocess.CalledProcessError) as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
    results["table"] = cluster_table(results) if options.ray else markdown_table(results)
    options.out.parent.mkdir(parents=True, exist_ok=True)
    options.out.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])
    print(f"\nAll figures: {options.out}")
    if options.timeline and not options.ray:
        import cv2

        for row in results["runs"]:
            if row["run"] == "single" and row.get("timeline"):
                picture = options.out.with_name(f"{options.out.stem}-timeline-{row['engine_name']}-{row['size']}.png")
                cv2.imwrite(str(picture), draw_timeline(
                    row["timeline"], f"{row['engine_name']} {row['size']}: {row['video_seconds']:g} s of video "
                    f"in {row['wall_s']:.1f} s"))
                print(f"Timeline: {picture}")
    return 0


def draw_timeline(timeline: dict[str, list[float]], title: str) -> Any:
    """A picture of when each stage was busy: one row per stage in the data's order, one column per
    ``TIMELINE_SECONDS`` step, darker the busier (blue: up to one thread at it the whole step; red: more than
    one), a tick every 10 s. BGR uint8."""
    import cv2
    import numpy as np

    from heygem.pipeline import TIMELINE_SECONDS

    stages = [s for s in STAGE_ORDER if s in timeline] + [s for s in timeline if s not in STAGE_ORDER]
    steps = max((len(busy) for busy in timeline.values()), default=0)
    label, row, cell, top = 130, 22, max(2, min(8, 1200 // max(steps, 1))), 30
    picture = np.full((top + row * len(stages) + 24, max(520, label + cell * steps + 10), 3), 255, np.uint8)
    cv2.putText(picture, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for number, stage in enumerate(stages):
        y = top + number * row
        cv2.putText(picture, stage, (6, y + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        for step, busy in enumerate(timeline[stage]):
            share = busy / TIMELINE_SECONDS
            if share <= 0:
                continue
            if share <= 1.0:
                colour = tuple(int(255 - share * (255 - c)) for c in (160, 60, 20))  # white to dark blue (BGR)
            else:
                colour = (40, 40, int(min(255, 150 + 50 * (share - 1.0))))  # several threads: red
            x = label + step * cell
            cv2.rectangle(picture, (x, y + 2), (x + cell - 1, y + row - 3), colour, -1)
    bottom = top + row * len(stages)
    for second in range(0, int(steps * TIMELINE_SECONDS) + 1, 10):
        x = label + int(second / TIMELINE_SECONDS) * cell
        cv2.line(picture, (x, top - 4), (x, bottom), (200, 200, 200), 1)
        cv2.putText(picture, f"{second}s", (x - 8, bottom + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                    cv2.LINE_AA)
    return picture


if __name__ == "__main__":
    sys.exit(main())
