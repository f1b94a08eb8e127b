"""CPU fast path for the Wav2Lip generator: the same weights run by ncnn with Winograd convolutions, in fp32 or,
per job, in 8-bit integers.

On a CPU the generator's cost is its 3x3 convolutions at 24 to 96 pixels. PyTorch (oneDNN), ONNX Runtime and
OpenVINO all run them as direct convolutions and are bound by the CPU's fp32 multiply rate; ncnn computes them
with Winograd transforms (about 4 to 5 times fewer multiplications, still fp32), which is what makes it about
twice as fast as eager PyTorch on 2 cores (bench/fastpath.py measures every candidate). OpenVINO in bf16 is
faster still but moves output pixels by 3/255, past the 2/255 this path promises, so nothing here runs
below fp32.

The ncnn network is written at engine load time straight from the loaded PyTorch model (nothing is exported,
downloaded or cached on disk beyond a temporary file), then checked against PyTorch on two frames; any
failure leaves the engine on eager PyTorch with one log line saying why.

int8 (the default): at each job's first faces the fp32 network measures every layer's input range on those
faces with windows of the job's whole speech, an int8 network is written with those ranges (weights per output
channel), and it must match fp32 on the same faces with their own speech within ``INT8_TOLERANCE`` before the
job uses it; otherwise the job stays fp32, with one log line. The scales come from that job's own input only, so
the same job gives the same pixels whatever ran before it. The stride-2 transposed convolutions become four
small convolutions (one per output pixel phase) and a pixel shuffle, which ncnn runs in int8 as well: about 3x
faster than its fp32 Deconvolution. The generator takes about 40% less time (bench/RESULTS.md).
"""
from __future__ import annotations

import io
import logging
import os
import struct
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from heygem.errors import EngineError
from models.wav2lip import Conv2d, Conv2dTranspose, Wav2Lip

log = logging.getLogger(__name__)

__all__ = ["RUNTIMES", "FastPathError", "NcnnWav2Lip", "build_cpu_fastpath", "ncnn_network"]

RUNTIMES = ("auto", "torch", "ncnn")

# Largest difference (output in [0, 1]) the load-time check accepts between ncnn and PyTorch. fp32 Winograd
# differs by about 1e-6; a wrongly converted layer by far more than this. The goal is 2/255 on uint8 pixels.
CHECK_TOLERANCE = 0.5 / 255

# Winograd transforms the weights into tiles 7x their size: below 12x12 pixels reading them costs more than the
# multiplications saved (measured per layer: 512 channels at 3x3 and 6x6 pixels run 1.5 to 5x slower with it).
_WINOGRAD_MIN_SIZE = 12
_FEATMASK_NO_WINOGRAD = 1 << 6  # ncnn per-layer option mask (param 31): bit 6 turns Winograd off
_RELU, _SIGMOID = 1, 4  # ncnn activation_type
_INT8_TAG = 0x000D4B38  # ncnn's tag for a weight array stored as int8
_PIXEL_SHUFFLE_PHASE_MAJOR = 1  # ncnn PixelShuffle mode: input channel (dy * 2 + dx) * C + c -> pixel (dy, dx) of c

# What a job's int8 network may differ from fp32 (output in [0, 1]) on its first faces, as (mean, 99th
# percentile) of the absolute pixel difference. With the test weights on real faces it differs by 1.4 and 5
# grey levels; a layer whose range the first faces did not show, or weights int8 cannot hold, by far more.
INT8_TOLERANCE = (2.0 / 255, 8.0 / 255)
# Every this many batches after the first, the batch's brightest face is made in fp32 too and compared: a job
# whose first faces were darker or smaller than its later ones (a fade in) would otherwise clip the later ones'
# larger values unseen (with the test weights: 3.3 grey levels on average, 15 at the 99th percentile). Past the
# tolerance, the ranges are widened by that batch and the network made again; 1 frame in 64 costs about 2%.
INT8_SPOT_CHECK_EVERY = 4
# A job of fewer frames runs in fp32: making its int8 network (the first faces' ranges measured, the network
# written, then checked against fp32 on them) costs about 2 s on this 2-core machine, which int8 wins back only
# past 150-170 frames (bench/RESULTS.md, "Speed: short Wav2Lip jobs in fp32").
INT8_MIN_FRAMES = 150


class FastPathError(RuntimeError):
    """The fast path could not be built, disagreed with PyTorch, or failed on a batch."""


# --- the ncnn network, written from the PyTorch model -----------------------------------------------------------


@dataclass
class _Layer:
    kind: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int] = field(default_factory=dict)


class _NetWriter:
    """Collects layers and weights, then writes ncnn's text param file and binary weight file."""

    def __init__(self) -> None:
        self.layers: list[_Layer] = []
        self.weights = io.BytesIO()
        self._blobs = 0
        self.block_inputs: dict[str, str] = {}  # each generator block's input blob, by layer name

    def blob(self) -> str:
        self._blobs += 1
        return f"b{self._blobs}"

    def add(self, kind: str, name: str, inputs: list[str], outputs: list[str], **params: int) -> None:
        self.layers.append(_Layer(kind, name, inputs, outputs, {int(k[1:]): v for k, v in params.items()}))

    def add_weights(self, weight: np.ndarray, bias: np.ndarray) -> None:
        # A 4-byte zero tag marks the weight array as raw float32; the bias follows untagged.
        self.weights.write(struct.pack("<I", 0))
        self.weights.write(np.ascontiguousarray(weight, dtype="<f4").tobytes())
        self.weights.write(np.ascontiguousarray(bias, dtype="<f4").tobytes())

    def add_int8_weights(self, weight: np.ndarray, bias: np.ndarray, input_range: float) -> None:
        """Weights as int8 with one scale per output channel, then the fp32 bias, the weight scales and the
        input's scale (ncnn quantizes a layer's input with it and dequantizes the output back to fp32)."""
        largest = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1)
        scales = 127.0 / np.where(largest > 0, largest, 1.0)
        quantized = np.clip(np.rint(weight * scales.reshape(-1, *[1] * (weight.ndim - 1))), -127, 127)
        data = quantized.astype(np.int8).tobytes()
        self.weights.write(struct.pack("<I", _INT8_TAG))
        self.weights.write(data + b"\0" * (-len(data) % 4))  # ncnn reads the int8 array padded to 4 bytes
        self.weights.write(np.ascontiguousarray(bias, dtype="<f4").tobytes())
        self.weights.write(scales.astype("<f4").tobytes())
        self.weights.write(np.float32(127.0 / max(float(input_range), 1e-6)).astype("<f4").tobytes())

    def param_text(self) -> str:
        # ncnn wants every blob read by one layer only: a blob read twice goes through a Split layer.
        readers: dict[str, int] = {}
        for layer in self.layers:
            for blob in layer.inputs:
                readers[blob] = readers.get(blob, 0) + 1
        taken: dict[str, int] = {}
        lines: list[str] = []
        blob_count = 0
        for layer in self.layers:
            inputs = []
            for blob in layer.inputs:
                if readers[blob] > 1:
                    inputs.append(f"{blob}_{taken.get(blob, 0)}")
                    taken[blob] = taken.get(blob, 0) + 1
                else:
                    inputs.append(blob)
            params = " ".join(f"{key}={value}" for key, value in layer.params.items())
            lines.append(f"{layer.kind} {layer.name} {len(inputs)} {len(layer.outputs)} "
                         f"{' '.join(inputs + layer.outputs)} {params}".rstrip())
            blob_count += len(layer.outputs)
            for blob in layer.outputs:
                if readers.get(blob, 0) > 1:
                    copies = [f"{blob}_{i}" for i in range(readers[blob])]
                    lines.append(f"Split split_{blob} 1 {len(copies)} {blob} {' '.join(copies)}")
                    blob_count += len(copies)
        return "\n".join(["7767517", f"{len(lines)} {blob_count}", *lines]) + "\n"


def _fold_batchnorm(conv: nn.Conv2d | nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval mode), in float64 then rounded once."""
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    weight = conv.weight.detach().double()
    if isinstance(conv, nn.ConvTranspose2d):
        # PyTorch stores (in, out, kh, kw); ncnn's Deconvolution reads (out, in, kh, kw), unflipped.
        weight = (weight * scale.view(1, -1, 1, 1)).permute(1, 0, 2, 3)
    else:
        weight = weight * scale.view(-1, 1, 1, 1)
    bias = (conv.bias.detach().double() - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return weight.numpy(), bias.numpy()


def _conv_params(conv: nn.Conv2d | nn.ConvTranspose2d, activation: int, input_size: int) -> dict[str, int]:
    (kernel_h, kernel_w), (stride_h, stride_w), (pad_h, pad_w) = conv.kernel_size, conv.stride, conv.padding
    params = {"p0": conv.out_channels, "p1": kernel_w, "p11": kernel_h, "p3": stride_w, "p13": stride_h,
              "p4": pad_w, "p14": pad_h, "p15": pad_w, "p16": pad_h, "p5": 1, "p6": conv.weight.numel(),
              "p9": activation}
    if isinstance(conv, nn.ConvTranspose2d):
        params.update(p18=conv.output_padding[1], p19=conv.output_padding[0])
    if input_size < _WINOGRAD_MIN_SIZE:
        params["p31"] = _FEATMASK_NO_WINOGRAD
    return params


Size = tuple[int, int]  # (height, width) of a blob


def _output_size(conv: nn.Conv2d | nn.ConvTranspose2d, size: Size) -> Size:
    if isinstance(conv, nn.ConvTranspose2d):
        return tuple((n - 1) * s - 2 * p + k + o for n, s, p, k, o in  # type: ignore[return-value]
                     zip(size, conv.stride, conv.padding, conv.kernel_size, conv.output_padding))
    return tuple((n + 2 * p - k) // s + 1 for n, s, p, k in  # type: ignore[return-value]
                 zip(size, conv.stride, conv.padding, conv.kernel_size))


def _emit_block(
    net: _NetWriter, block: Conv2d | Conv2dTranspose, source: tuple[str, Size], name: str,
    input_ranges: dict[str, float] | None = None,
) -> tuple[str, Size]:
    """One Conv2d or Conv2dTranspose block of the generator, in fp32, or in int8 where ``input_ranges`` names it."""
    conv, bn = block.conv_block[0], block.conv_block[1]
    weight, bias = _fold_batchnorm(conv, bn)
    blob, size = source
    net.block_inputs[name] = blob
    out_size = _output_size(conv, size)
    if input_ranges is not None and name in input_ranges:
        return _emit_int8_block(net, block, weight, bias, source, name, input_ranges[name]), out_size
    if getattr(block, "residual", False):
        # relu(conv(x) + x) is relu(conv'(x)) with 1 added at the kernel centre of each channel's own tap: the
        # skip connection becomes part of the weights, so no add layer and no second read of x are needed.
        # That needs an output the shape of the input, as every residual block of Wav2Lip has.
        _check_residual(conv, name)
        centre = conv.kernel_size[0] // 2
        channels = np.arange(weight.shape[0])
        weight[channels, channels, centre, centre] += 1.0
    out = net.blob()
    kind = "Deconvolution" if isinstance(conv, nn.ConvTranspose2d) else "Convolution"
    net.add(kind, name, [blob], [out], **_conv_params(conv, _RELU, min(size)))
    net.add_weights(weight, bias)
    return out, out_size


def _check_residual(conv: nn.Conv2d | nn.ConvTranspose2d, name: str) -> None:
    same_shape = conv.stride == (1, 1) and 2 * conv.padding[0] + 1 == conv.kernel_size[0]
    if conv.in_channels != conv.out_channels or not same_shape:
        raise FastPathError(f"{name}: a residual block whose output is not the shape of its input")


def _int8_blocks(model: Wav2Lip) -> set[str]:
    """The blocks that run in int8: every convolution block and every stride-2 transposed one (the first
    decoder block, 1x1 -> 3x3, is 1% of the work and stays fp32, as does the final 1x1 layer before the sigmoid)."""
    names = set()
    for prefix, block in _blocks(model):
        conv = block.conv_block[0]
        if not isinstance(conv, nn.ConvTranspose2d) or _is_stride2_upsampling(conv):
            names.add(prefix)
    return names


def _is_stride2_upsampling(conv: nn.ConvTranspose2d) -> bool:
    return (conv.kernel_size == (3, 3) and conv.stride == (2, 2) and conv.padding == (1, 1)
            and conv.output_padding == (1, 1))


def _emit_int8_block(
    net: _NetWriter, block: Conv2d | Conv2dTranspose, weight: np.ndarray, bias: np.ndarray,
    source: tuple[str, Size], name: str, input_range: float,
) -> str:
    conv = block.conv_block[0]
    blob, size = source
    out = net.blob()
    if isinstance(conv, nn.ConvTranspose2d):
        if not _is_stride2_upsampling(conv):
            raise FastPathError(f"{name}: only 3x3 stride-2 transposed convolutions run in int8")
        # Output pixel 2m takes tap 1 of input m; pixel 2m+1 takes tap 2 of input m and tap 0 of input m+1 (the
        # last one past the edge, zero). So each of the four (row, column) phases is a small convolution over the
        # input, padded by one on the right and bottom, and together they hold exactly the transposed one's taps.
        taps = {0: [1], 1: [2, 0]}
        phases = []
        for dy in (0, 1):
            for dx in (0, 1):
                kernel = np.ascontiguousarray(weight[:, :, taps[dy]][:, :, :, taps[dx]])
                phase = net.blob()
                kernel_h, kernel_w = kernel.shape[2:]
                net.add("Convolution", f"{name}_phase{dy}{dx}", [blob], [phase], p0=conv.out_channels, p1=kernel_w,
                        p11=kernel_h, p4=0, p14=0, p15=kernel_w - 1, p16=kernel_h - 1, p5=1, p6=kernel.size,
                        p8=1, p9=_RELU)
                net.add_int8_weights(kernel, bias, input_range)
                phases.append(phase)
        joined = net.blob()
        net.add("Concat", f"{name}_phases", phases, [joined], p0=0)
        net.add("PixelShuffle", f"{name}_shuffle", [joined], [out], p0=2, p1=_PIXEL_SHUFFLE_PHASE_MAJOR)
        return out
    residual = getattr(block, "residual", False)
    # In int8 the skip connection stays an addition: folded in, its 1.0 would set the weights' int8 scale and
    # leave the real taps (around 0.02) a few levels each.
    net.add("Convolution", name, [blob], [out], **_conv_params(conv, 0 if residual else _RELU, min(size)), p8=1)
    net.add_int8_weights(weight, bias, input_range)
    if not residual:
        return out
    _check_residual(conv, name)
    summed, activated = net.blob(), net.blob()
    net.add("BinaryOp", f"{name}_skip", [out, blob], [summed], p0=0)  # add
    net.add("ReLU", f"{name}_relu", [summed], [activated])
    return activated


def _blocks(model: Wav2Lip) -> list[tuple[str, Conv2d | Conv2dTranspose]]:
    """Every block with the layer name the ncnn network gives it."""
    blocks = [(f"face_encoder_{i}_{j}", b) for i, bs in enumerate(model.face_encoder_blocks) for j, b in enumerate(bs)]
    blocks += [(f"audio_encoder_{j}", b) for j, b in enumerate(model.audio_encoder)]
    blocks += [(f"face_decoder_{i}_{j}", b) for i, bs in enumerate(model.face_decoder_blocks) for j, b in enumerate(bs)]
    return blocks + [("output_0", model.output_block[0])]


def ncnn_network(model: Wav2Lip, input_ranges: dict[str, float] | None = None) -> tuple[str, bytes]:
    """The generator as ncnn's (param text, weight bytes): inputs ``mel`` (1, 80, 16), ``face`` (6, 96, 96);
    output ``out`` (3, 96, 96). BatchNorm is folded into the convolutions and each ReLU into its convolution.
    ``input_ranges``: the largest input magnitude of each block to run in int8, by layer name."""
    net = _write_network(model, input_ranges)
    return net.param_text(), net.weights.getvalue()


def _write_network(model: Wav2Lip, input_ranges: dict[str, float] | None = None) -> _NetWriter:
    net = _NetWriter()
    net.add("Input", "mel", [], ["mel"])
    net.add("Input", "face", [], ["face"])
    features = []
    x: tuple[str, Size] = ("face", (96, 96))
    for i, blocks in enumerate(model.face_encoder_blocks):
        for j, block in enumerate(blocks):
            x = _emit_block(net, block, x, f"face_encoder_{i}_{j}", input_ranges)
        features.append(x)
    x = ("mel", (80, 16))
    for j, block in enumerate(model.audio_encoder):
        x = _emit_block(net, block, x, f"audio_encoder_{j}", input_ranges)
    for i, blocks in enumerate(model.face_decoder_blocks):
        for j, block in enumerate(blocks):
            x = _emit_block(net, block, x, f"face_decoder_{i}_{j}", input_ranges)
        (decoded, size), (skip, _) = x, features.pop()
        joined = net.blob()
        net.add("Concat", f"skip_{i}", [decoded, skip], [joined], p0=0)  # along channels, as torch.cat(dim=1)
        x = (joined, size)
    first, last = model.output_block[0], model.output_block[1]
    blob, size = _emit_block(net, first, x, "output_0", input_ranges)
    net.add("Convolution", "output_1", [blob], ["out"], **_conv_params(last, _SIGMOID, min(size)))
    net.add_weights(last.weight.detach().double().numpy(), last.bias.detach().double().numpy())
    return net


# --- running it ------------------------------------------------------------------------------------------------


class NcnnWav2Lip:
    """The generator on ncnn: one frame per extractor, frames spread over ``threads`` single-threaded workers
    (ncnn has no batch axis, and one thread per frame keeps both cores busy where two threads on one frame
    would wait on each other in the small layers)."""

    name = "ncnn"

    def __init__(self, model: Wav2Lip, threads: int, winograd: bool = True, frame_threads: int = 1,
                 int8: bool = False) -> None:
        """``threads`` frames at a time, each on ``frame_threads`` ncnn threads. ``int8``: each job runs an int8
        network made from its first faces (``start``), where it matches fp32 within ``INT8_TOLERANCE``.
        ``winograd=False`` (direct convolutions only) and ``frame_threads`` other than 1 exist for
        bench/fastpath.py's comparisons."""
        import ncnn  # optional dependency: ImportError is the caller's signal to stay on PyTorch

        self._ncnn = ncnn
        self._model = model
        self.threads = max(1, int(threads))
        self._frame_threads = max(1, int(frame_threads))
        self._winograd = winograd
        self.int8 = int8
        written = _write_network(model)
        self._block_inputs = dict(written.block_inputs)
        self._int8_blocks = _int8_blocks(model)
        self._net = self._load(written.param_text(), written.weights.getvalue(), int8=False)
        self._pool, self._pool_pid = self._new_pool(), os.getpid()
        self._memory = threading.local()  # each worker's own pools: ncnn's unlocked ones, never shared
        self._speech: np.ndarray | None = None
        self._job_net: object | None = None  # this job's int8 network, once made; False: this job stays fp32
        self._ranges: dict[str, float] = {}  # the input ranges it was made with
        self._batches = 0  # batches of this job so far

    @property
    def precision(self) -> str:
        """What the current (or coming) job runs: ``int8`` unless it was asked for fp32 or had to stay there."""
        return "int8" if self.int8 and self._job_net is not False else "fp32"

    def _load(self, param: str, weights: bytes, int8: bool) -> object:
        ncnn = self._ncnn
        net = ncnn.Net()
        opt = net.opt
        opt.num_threads = self._frame_threads  # fixed at load: ncnn plans its kernels for it
        opt.use_vulkan_compute = False
        # fp32 or int8 exactly as written: ncnn would otherwise store weights and activations as fp16/bf16 where
        # the CPU has it.
        opt.use_fp16_storage = opt.use_fp16_packed = opt.use_fp16_arithmetic = False
        opt.use_bf16_storage = opt.use_bf16_packed = False
        opt.use_int8_inference = int8
        opt.use_winograd_convolution = self._winograd
        if net.load_param_mem(param) != 0:
            raise FastPathError("ncnn refused the network description")
        with tempfile.TemporaryDirectory(prefix="heygem-ncnn-") as folder:
            # ncnn copies the weights into its own memory on load, so the file is only needed for this call.
            path = Path(folder) / "wav2lip.bin"
            path.write_bytes(weights)
            if net.load_model(str(path)) != 0:
                raise FastPathError("ncnn could not read the weights")
        return net

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="wav2lip-ncnn")

    def start(self, mel: np.ndarray | None, frames: int | None = None) -> None:
        """A new job: its int8 network is made from its first faces, with windows of this speech (80, T); a job of
        fewer than INT8_MIN_FRAMES ``frames`` runs in fp32, where making the network would cost more than it
        saves."""
        self._speech = None if mel is None else np.asarray(mel, dtype=np.float32)
        self._job_net, self._ranges, self._batches = None, {}, 0
        if self.int8 and frames is not None and frames < INT8_MIN_FRAMES:
            self._job_net = False
            log.info("wav2lip on ncnn runs this job of %d frames in fp32: making its int8 network would take "
                     "longer than int8 saves under %d frames", frames, INT8_MIN_FRAMES)

    def _frame(self, net: object, face: np.ndarray, mel: np.ndarray, out: np.ndarray,
               ranges: dict[str, float] | None = None) -> None:
        """One frame into ``out``; with ``ranges``, also the largest input magnitude of each int8 block."""
        ncnn = self._ncnn
        memory = self._memory
        if not hasattr(memory, "blobs"):
            # The worker keeps the memory of one frame's layers for the next: without a pool ncnn asks the
            # system for it anew, layer by layer (8% of the generator's time here, the same output).
            memory.blobs, memory.workspace = ncnn.UnlockedPoolAllocator(), ncnn.UnlockedPoolAllocator()
        with net.create_extractor() as extractor:
            extractor.set_blob_allocator(memory.blobs)
            extractor.set_workspace_allocator(memory.workspace)
            if ranges is not None:
                extractor.set_light_mode(False)  # keep every blob, to read the blocks' inputs after
            # clone(): ncnn's own aligned copy. Its in-place kernels crash on numpy's memory (seen with ReLU).
            extractor.input("mel", ncnn.Mat(mel).clone())
            extractor.input("face", ncnn.Mat(face).clone())
            status, result = extractor.extract("out")
            if status != 0:
                raise FastPathError(f"ncnn returned status {status}")
            out[...] = np.asarray(result)
            if ranges is not None:
                for name in self._int8_blocks:
                    status, blob = extractor.extract(self._block_inputs[name])
                    if status != 0:
                        raise FastPathError(f"ncnn returned status {status} reading {name}'s input")
                    ranges[name] = float(np.abs(np.asarray(blob)).max())

    def _predict(self, net: object, faces: np.ndarray, mels: np.ndarray,
                 ranges: list[dict[str, float]] | None = None) -> np.ndarray:
        if os.getpid() != self._pool_pid:
            # A forked child inherits the pool without its threads: work sent there would wait forever.
            self._pool, self._pool_pid = self._new_pool(), os.getpid()
        out = np.empty((faces.shape[0], 3, faces.shape[2], faces.shape[3]), dtype=np.float32)
        jobs = [self._pool.submit(self._frame, net, faces[i], mels[i], out[i], None if ranges is None else ranges[i])
                for i in range(faces.shape[0])]
        for job in jobs:
            job.result()  # re-raises a worker's error here
        return out

    def predict(self, faces: np.ndarray, mels: np.ndarray, exact: bool = False) -> np.ndarray:
        """faces (B, 6, 96, 96) float32 in [0, 1], mels (B, 1, 80, 16) float32 -> (B, 3, 96, 96) float32.
        ``exact``: fp32 whatever the job runs."""
        if exact or not self.int8 or self._job_net is False:
            return self._predict(self._net, faces, mels)
        self._batches += 1
        if self._job_net is None:
            return self._first_faces(faces, mels)
        if self._batches % INT8_SPOT_CHECK_EVERY == 1 and INT8_SPOT_CHECK_EVERY > 1:
            return self._spot_checked(faces, mels)
        return self._predict(self._job_net, faces, mels)

    def _first_faces(self, faces: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """The job's first batch: measure the ranges, make the int8 network, and use it only if it matches fp32
        on these faces with their own speech (the ranges were measured with other windows of the speech)."""
        started = time.perf_counter()
        ranges = self._measured_ranges(faces, mels)
        network = self._load(*ncnn_network(self._model, ranges), int8=True)
        exact = self._predict(self._net, faces, mels)
        fast = self._predict(network, faces, mels)
        mean, p99 = _difference(fast, exact)
        if not _within(mean, p99):
            self._job_net = False
            log.warning("wav2lip on ncnn stays fp32 for this job: its int8 network differs from fp32 by %.1f grey "
                        "levels on average (99th percentile %.1f) on the first %d faces, more than the %.0f (%.0f) "
                        "allowed", mean * 255, p99 * 255, len(faces), INT8_TOLERANCE[0] * 255,
                        INT8_TOLERANCE[1] * 255)
            return exact
        self._job_net, self._ranges = network, ranges
        log.info("wav2lip on ncnn runs this job in int8: made from its first %d faces in %.2f s, %.2f grey levels "
                 "from fp32 on average (99th percentile %.1f)", len(faces), time.perf_counter() - started,
                 mean * 255, p99 * 255)
        return fast

    def _spot_checked(self, faces: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """A batch whose brightest face is also made in fp32: past the tolerance, the network is made again with
        the ranges widened by this batch; if that still does not match, the rest of the job runs in fp32."""
        fast = self._predict(self._job_net, faces, mels)
        # The brightest face: a face brighter than the first ones is what pushes values past their ranges.
        probe = slice(k := int(np.argmax(faces[:, 3:].mean(axis=(1, 2, 3)))), k + 1)
        exact = self._predict(self._net, faces[probe], mels[probe])
        mean, p99 = _difference(fast[probe], exact)
        if _within(mean, p99):
            return fast
        measured = self._measured_ranges(faces, mels)
        ranges = {name: max(self._ranges[name], measured[name]) for name in self._ranges}
        network = self._load(*ncnn_network(self._model, ranges), int8=True)
        widened = self._predict(network, faces, mels)
        after = _difference(widened[probe], exact)
        if _within(*after):
            self._job_net, self._ranges = network, ranges
            log.info("wav2lip on ncnn: int8 ranges widened at batch %d (%.1f grey levels from fp32 on average, %.1f "
                     "after)", self._batches, mean * 255, after[0] * 255)
            return widened
        self._job_net = False
        log.warning("wav2lip on ncnn goes on in fp32 from batch %d of this job: its int8 network differs from fp32 "
                    "by %.1f grey levels on average (99th percentile %.1f) there, even with its ranges widened",
                    self._batches, after[0] * 255, after[1] * 255)
        return self._predict(self._net, faces, mels)

    def _measured_ranges(self, faces: np.ndarray, mels: np.ndarray) -> dict[str, float]:
        """The largest input magnitude of each int8 block, over these faces with windows of the whole speech."""
        ranges: list[dict[str, float]] = [{} for _ in range(len(faces))]
        self._predict(self._net, faces, self._speech_windows(len(faces), mels), ranges)
        return {name: max(r[name] for r in ranges) for name in self._int8_blocks}

    def _speech_windows(self, count: int, own: np.ndarray) -> np.ndarray:
        """``count`` mel windows spread evenly over the job's whole speech (its own windows without one): the
        first faces' own windows may all be silence, which would leave the audio layers' ranges too small."""
        speech = self._speech
        width = own.shape[-1]
        if speech is None or speech.ndim != 2 or speech.shape[0] != own.shape[-2] or speech.shape[1] < width:
            return own
        starts = np.linspace(0, speech.shape[1] - width, count).round().astype(int)
        return np.ascontiguousarray(np.stack([speech[:, s:s + width] for s in starts])[:, None])

    def run(self, faces_u8: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """What ``Wav2LipEngine._run`` computes: (B, S, S, 6) uint8 masked+reference crops and (B, 80, 16) mels
        -> (B, S, S, 3) uint8, with the same float32 scaling and rounding as the PyTorch path."""
        faces = np.ascontiguousarray(faces_u8.transpose(0, 3, 1, 2), dtype=np.float32)
        faces /= np.float32(255.0)
        pred = self.predict(faces, np.ascontiguousarray(mels[:, None], dtype=np.float32))
        pixels = np.clip(np.rint(pred * np.float32(255.0)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(pixels.transpose(0, 2, 3, 1))

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _difference(fast: np.ndarray, exact: np.ndarray) -> tuple[float, float]:
    """Mean and 99th percentile of the absolute difference of two outputs (in [0, 1])."""
    difference = np.abs(fast - exact)
    return float(difference.mean()), float(np.percentile(difference, 99))


def _within(mean: float, p99: float) -> bool:
    return mean <= INT8_TOLERANCE[0] and p99 <= INT8_TOLERANCE[1]  # False for NaN too


def _check_against_torch(fast: NcnnWav2Lip, model: Wav2Lip) -> float:
    """Largest output difference from PyTorch on a synthetic batch shaped like real input; raises past the limit."""
    rng = np.random.default_rng(0)
    faces = rng.random((2, 6, 96, 96), dtype=np.float32)
    faces[:, :3, 48:] = 0  # the masked half, as the engine builds it
    mels = np.clip(rng.normal(-1.5, 1.5, (2, 1, 80, 16)), -4, 4).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(mels), torch.from_numpy(faces)).float().numpy()
    difference = float(np.abs(fast.predict(faces, mels, exact=True) - expected).max())
    if not difference <= CHECK_TOLERANCE:  # also catches NaN
        raise FastPathError(f"output differs from PyTorch by {difference:.2g}, more than {CHECK_TOLERANCE:.2g}")
    return difference


def build_cpu_fastpath(model: Wav2Lip, runtime: str, threads: int, int8: bool = False) -> NcnnWav2Lip | None:
    """The fast path for a CPU model, or None for eager PyTorch.

    ``runtime``: ``auto`` uses ncnn when it is installed and passes its check, otherwise PyTorch, with one log
    line saying why; ``torch`` is always PyTorch; ``ncnn`` insists, raising EngineError if it cannot be had.
    ``int8``: each job in int8 where its first faces allow (``NcnnWav2Lip``); the load check is on fp32.
    """
    if runtime not in RUNTIMES:
        raise EngineError(f"unknown wav2lip runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return None
    started = time.perf_counter()
    try:
        fast = NcnnWav2Lip(model, threads, int8=int8)
    except ImportError:
        if runtime == "ncnn":
            raise EngineError("the wav2lip runtime 'ncnn' was asked for but the ncnn package is not installed "
                              "(pip install -r requirements.txt)") from None
        log.info("ncnn is not installed: wav2lip runs on eager PyTorch (about half the speed on the CPU)")
        return None
    except Exception as exc:  # noqa: BLE001 - any build failure means: stay on PyTorch
        return _refuse(runtime, f"could not be built ({exc})", exc)
    try:
        difference = _check_against_torch(fast, model)
    except Exception as exc:  # noqa: BLE001
        fast.close()
        return _refuse(runtime, f"failed its check against PyTorch ({exc})", exc)
    log.info("wav2lip runs on ncnn (%s, Winograd, %d worker threads): built and checked in %.2f s, "
             "max difference from PyTorch %.1e (fp32)", "int8 where each job's first faces allow" if int8 else "fp32",
             fast.threads, time.perf_counter() - started, difference)
    return fast


def _refuse(runtime: str, why: str, exc: Exception) -> None:
    if runtime == "ncnn":
        raise EngineError(f"the wav2lip runtime 'ncnn' was asked for but {why}") from exc
    log.warning("the ncnn fast path %s: wav2lip runs on eager PyTorch", why)
    return None
