"""Wav2Lip generator on the CPU: eager PyTorch against every fast-path candidate, side by side.

All candidates run in this one process on the same real face crops (YuNet boxes cut as the pipeline cuts them,
from three videos in ../shared/media) and real mel chunks, in batches of 16 (the CPU default), interleaved
round by round (the order rotating each round) so that a load on the machine hits them alike. Reported per
candidate: median ms per frame, speed-up over eager (ratio of medians, and the median of the per-round ratios,
which is steadier when the CPU is shared), and the largest difference of its uint8 output pixels from eager's.
Not a test: run it by hand and keep its output.

    .venv/bin/python bench/fastpath.py                      # deterministic test weights (FACTS.md), 7 rounds
    .venv/bin/python bench/fastpath.py --checkpoint checkpoints/wav2lip_gan.pth --rounds 11
    .venv/bin/python bench/fastpath.py --compile            # also torch.compile (needs a C++ compiler; minutes)

Candidates whose package is not installed are listed as skipped. Writes bench/out/fastpath.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HEYGEM_SHARED", REPO.parent / "shared"))
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from heygem.engines.wav2lip import Wav2LipEngine  # noqa: E402
from heygem.engines.wav2lip_runtime import NcnnWav2Lip  # noqa: E402
from models.wav2lip import Wav2Lip, save_test_checkpoint  # noqa: E402

VIDEOS = ("videoretalking/2.mp4", "sadtalker/WDA_KatieHill_000.mp4", "latentsync/demo1_video.mp4")
SPEECH = "sadtalker/RD_Radio31_000.wav"

Run = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (B,96,96,3) uint8 crops, (B,80,16) mels -> (B,96,96,3) uint8


def real_inputs(per_video: int) -> tuple[np.ndarray, np.ndarray]:
    """Face crops as the pipeline cuts them, every 6th frame of each video, and chunks of real speech."""
    from heygem.faces import get_detector
    from heygem.faces.track import crop_box
    from heygem.features import MelChunks
    from heygem.media.probe import probe
    from heygem.media.video import iter_frames
    from heygem.pipeline import prepare_audio

    detector = get_detector("yunet")
    crops = []
    for name in VIDEOS:
        info = probe(SHARED / "media" / name)
        frames = iter_frames(info, info.fps)
        taken = 0
        for index, frame in enumerate(frames):
            faces = detector.detect(frame) if index % 6 == 0 else []
            if faces:
                face = max(faces, key=lambda f: f.area)
                x1, y1, x2, y2 = crop_box(face, frame.shape[1], frame.shape[0], (0, 10, 0, 0))
                crops.append(cv2.resize(frame[y1:y2, x1:x2], (96, 96)))
                taken += 1
            if taken == per_video:
                break
        frames.close()
    mel = prepare_audio(SHARED / "media" / SPEECH).mel
    chunks = MelChunks(mel, Fraction(25), 10 * len(crops))
    return np.stack(crops), chunks.batch(range(0, 7 * len(crops), 7))


def network_inputs(crops: np.ndarray, mels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the engine feeds the generator: (B,6,96,96) float32 masked+reference faces, (B,1,80,16) mels."""
    masked = crops.copy()
    masked[:, 48:] = 0
    faces = np.ascontiguousarray(np.concatenate((masked, crops), axis=3).transpose(0, 3, 1, 2), dtype=np.float32)
    faces /= np.float32(255.0)
    return faces, np.ascontiguousarray(mels[:, None], dtype=np.float32)


def to_pixels(pred: np.ndarray) -> np.ndarray:
    pixels = np.clip(np.rint(pred * np.float32(255.0)), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))


def fold_batchnorm(model: Wav2Lip) -> Wav2Lip:
    """A copy with each Conv+BatchNorm pair turned into one convolution (eval mode)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fused = copy.deepcopy(model)
    for module in fused.modules():
        if isinstance(module, torch.nn.Sequential) and len(module) == 2 and isinstance(module[1], torch.nn.BatchNorm2d):
            conv = module[0]
            module[0] = fuse_conv_bn_eval(conv, module[1], transpose=isinstance(conv, torch.nn.ConvTranspose2d))
            module[1] = torch.nn.Identity()
    return fused


# --- candidates: each builder returns a run function, or raises ImportError when its package is missing -------


def torch_runner(model: torch.nn.Module, channels_last: bool = False) -> Run:
    def run(crops: np.ndarray, mels: np.ndarray) -> np.ndarray:
        faces, mel = network_inputs(crops, mels)
        face_t = torch.from_numpy(faces)
        if channels_last:
            face_t = face_t.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return to_pixels(model(torch.from_numpy(mel), face_t).float().numpy())
    return run


def build_folded_channels_last(model: Wav2Lip, work: Path) -> Run:
    return torch_runner(fold_batchnorm(model).to(memory_format=torch.channels_last), channels_last=True)


def build_torch_compile(model: Wav2Lip, work: Path) -> Run:
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True  # weights as constants: lets inductor prepack them for oneDNN
    compiled = torch.compile(fold_batchnorm(model))
    return torch_runner(compiled)


def export_onnx(model: Wav2Lip, work: Path) -> Path:
    import onnx  # noqa: F401 - the exporter needs it

    path = work / "wav2lip.onnx"
    if not path.exists():
        example = (torch.zeros(16, 1, 80, 16), torch.zeros(16, 6, 96, 96))
        torch.onnx.export(fold_batchnorm(model), example, str(path), dynamo=False, opset_version=17,
                          input_names=["mel", "face"], output_names=["out"],
                          dynamic_axes={"mel": {0: "batch"}, "face": {0: "batch"}, "out": {0: "batch"}})
    return path


def build_onnxruntime(model: Wav2Lip, work: Path) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(export_onnx(model, work)), options, providers=["CPUExecutionProvider"])

    def run(crops: np.ndarray, mels: np.ndarray) -> np.ndarray:
        faces, mel = network_inputs(crops, mels)
        return to_pixels(session.run(None, {"mel": mel, "face": faces})[0])
    return run


def openvino_builder(precision: str | None) -> Callable[[Wav2Lip, Path], Run]:
    def build(model: Wav2Lip, work: Path) -> Run:
        import openvino as ov

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": str(torch.get_num_threads())}
        if precision:
            config["INFERENCE_PRECISION_HINT"] = precision
        compiled = ov.Core().compile_model(str(export_onnx(model, work)), "CPU", config)
        request = compiled.create_infer_request()

        def run(crops: np.ndarray, mels: np.ndarray) -> np.ndarray:
            faces, mel = network_inputs(crops, mels)
            return to_pixels(request.infer({"mel": mel, "face": faces})[compiled.output(0)])
        return run
    return build


def ncnn_builder(winograd: bool = True, one_frame_two_threads: bool = False, int8: bool = False
                 ) -> Callable[[Wav2Lip, Path], Run]:
    def build(model: Wav2Lip, work: Path) -> Run:
        threads = torch.get_num_threads()
        if one_frame_two_threads:  # one frame at a time, ncnn's own threads inside each layer
            fast = NcnnWav2Lip(model, 1, winograd=winograd, frame_threads=threads)
        else:
            # int8: one job, whose first batch (the warm-up's) makes its int8 network, as a job's first faces do
            fast = NcnnWav2Lip(model, threads, winograd=winograd, int8=int8)

        def run(crops: np.ndarray, mels: np.ndarray) -> np.ndarray:
            masked = crops.copy()
            masked[:, 48:] = 0
            return fast.run(np.concatenate((masked, crops), axis=3), mels)
        return run
    return build


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="a Wav2Lip checkpoint (default: deterministic test weights)")
    parser.add_argument("--batch", type=int, default=16, help="faces per generator call (default 16, the CPU default)")
    parser.add_argument("--per-video", type=int, default=16, help="face crops taken from each of the three videos")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds; every candidate runs once per round")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (inductor; slow to build)")
    parser.add_argument("--only", nargs="+", help="run only these candidates (eager always runs)")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint or OUT / "wav2lip_test.pth"
    if args.checkpoint is None and not checkpoint.exists():
        save_test_checkpoint(SHARED / "reference" / "wav2lip" / "generator_manifest.json", checkpoint)
    crops, mels = real_inputs(args.per_video)
    print(f"{len(crops)} real face crops, batch {args.batch}, {torch.get_num_threads()} torch threads, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}", flush=True)

    eager_engine = Wav2LipEngine(checkpoint, device="cpu", batch_size=args.batch, runtime="torch")
    model = eager_engine.model
    builders: dict[str, Callable[[Wav2Lip, Path], Run]] = {
        "eager PyTorch fp32 (the baseline)": lambda m, w: eager_engine._run,
        "PyTorch, BatchNorm folded, channels-last": build_folded_channels_last,
        "ONNX Runtime fp32": build_onnxruntime,
        "OpenVINO fp32": openvino_builder("f32"),
        "OpenVINO default precision (bf16 here)": openvino_builder(None),
        "ncnn fp32, Winograd off": ncnn_builder(winograd=False),
        "ncnn fp32, 1 frame at a time on all threads": ncnn_builder(one_frame_two_threads=True),
        "ncnn fp32 (HeyGem's fast path, --no-int8)": ncnn_builder(),
        "ncnn int8 (HeyGem's fast path)": ncnn_builder(int8=True),
    }
    if args.compile:
        builders["torch.compile (inductor, frozen)"] = build_torch_compile
    if args.only:
        builders = {k: v for i, (k, v) in enumerate(builders.items()) if i == 0 or any(o in k for o in args.only)}
    baseline = next(iter(builders))

    runs: dict[str, Run] = {}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="heygem-bench-") as folder:
        for name, build in builders.items():
            started = time.perf_counter()
            try:
                runs[name] = build(model, Path(folder))
                for _ in range(2):  # warm up: first calls pay for kernel selection and JIT
                    runs[name](crops[: args.batch], mels[: args.batch])
            except ImportError as exc:
                results[name] = {"skipped": f"not installed ({exc.name or exc})"}
                print(f"  skipped {name}: not installed ({exc.name or exc})", flush=True)
                continue
            except Exception as exc:  # noqa: BLE001 - a candidate that fails to build is reported, not fatal
                results[name] = {"skipped": f"failed to build: {exc}"}
                print(f"  skipped {name}: failed to build: {exc}", flush=True)
                continue
            results[name] = {"build_s": round(time.perf_counter() - started, 2)}
            print(f"  built {name} in {results[name]['build_s']} s", flush=True)

        def whole(run: Run) -> np.ndarray:
            return np.concatenate([run(crops[i:i + args.batch], mels[i:i + args.batch])
                                   for i in range(0, len(crops), args.batch)])

        reference = whole(runs[baseline]).astype(np.int16)
        for name, run in runs.items():
            difference = np.abs(whole(run).astype(np.int16) - reference)
            results[name].update(max_abs_diff=int(difference.max()), mean_abs_diff=round(float(difference.mean()), 3),
                                 pixels_differing=int(np.count_nonzero(difference)))

        names = list(runs)
        samples: dict[str, list[float]] = {name: [] for name in names}
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                started = time.perf_counter()
                whole(runs[name])
                samples[name].append((time.perf_counter() - started) * 1000 / len(crops))
            print(f"  round {round_index + 1}/{args.rounds}: load average {os.getloadavg()[0]:.2f}", flush=True)

    base = statistics.median(samples[baseline])
    header = f"{'ms/frame':>9s} {'speed-up':>9s} {'per-round':>10s} {'max|diff|':>10s} {'mean|diff|':>10s} {'build s':>8s}"
    print(f"\n{'candidate':44s} {header}")
    for name in builders:
        result = results[name]
        if "skipped" in result:
            print(f"{name:44s} skipped: {result['skipped']}")
            continue
        median = statistics.median(samples[name])
        paired = statistics.median(b / s for b, s in zip(samples[baseline], samples[name]))
        result.update(ms_per_frame=round(median, 2), speedup=round(base / median, 2),
                      speedup_per_round=round(paired, 2), ms_per_frame_samples=[round(s, 2) for s in samples[name]])
        print(f"{name:44s} {median:9.2f} {base / median:8.2f}x {paired:9.2f}x {result['max_abs_diff']:10d} "
              f"{result['mean_abs_diff']:10.2f} {result['build_s']:8.2f}")
    report = {
        "crops": len(crops), "batch": args.batch, "rounds": args.rounds, "checkpoint": str(checkpoint),
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_end": os.getloadavg()[0], "candidates": results,
    }
    (OUT / "fastpath.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {OUT / 'fastpath.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
