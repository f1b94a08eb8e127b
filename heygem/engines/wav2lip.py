"""The Wav2Lip engine: loads a user's Wav2Lip checkpoint and turns face crops plus mel chunks into new mouths."""
from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from heygem.device import pick_device
from heygem.engines.base import Engine, EngineDescription, EngineJob
from heygem.engines.wav2lip_runtime import RUNTIMES, NcnnWav2Lip, build_cpu_fastpath
from heygem.errors import CheckpointError, EngineError
from models.wav2lip import Wav2Lip

log = logging.getLogger(__name__)

__all__ = ["Wav2LipEngine", "load_wav2lip"]

_WHERE = "checkpoints/wav2lip_gan.pth or checkpoints/wav2lip.pth"
_USE_INSTEAD = "use wav2lip_gan.pth or wav2lip.pth"

# Signatures of the other two networks the original trains, read off their state_dict manifests
# (reference/wav2lip/disc_manifest.json, syncnet_color_manifest.json) so that the library needs no data files:
# only the discriminator has a "binary_pred" head; SyncNet_color names its face tower "face_encoder"
# where the generator has "face_encoder_blocks".
_DISCRIMINATOR_PREFIXES = ("binary_pred.",)
_SYNCNET_PREFIXES = ("face_encoder.",)

_CUDA_BATCH = 128  # when free GPU memory cannot be read
_OTHER_BATCH = 16
# GPU memory per face in fp16: the sum of every layer's output for one 96x96 face (13.4 M values, 25.6 MiB),
# an upper bound since inference frees most as it goes; doubled for fp32. A batch takes at most half the free
# memory. (Counted on the CPU with forward hooks; not yet checked on a GPU.)
_CUDA_BYTES_PER_FACE = 26 * 1024 * 1024
_CUDA_BATCH_LIMITS = (16, 512)


def cuda_batch_size(free_bytes: int, fp16: bool) -> int:
    """Faces per generator call on a GPU with ``free_bytes`` free: half of it, within 16..512, a power of two."""
    per_face = _CUDA_BYTES_PER_FACE * (1 if fp16 else 2)
    fits = max(1, (free_bytes // 2) // per_face)
    low, high = _CUDA_BATCH_LIMITS
    size = max(low, min(high, fits))
    return 1 << (size.bit_length() - 1)


def _fmt_shape(shape: torch.Size | tuple[int, ...]) -> str:
    return str(tuple(int(s) for s in shape))


def _read_checkpoint(path: Path) -> Any:
    """torch.load with nothing but weights allowed: a checkpoint must not be able to run code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # Only a disallowed class means a real pickle with objects; other unpickling errors mean garbage bytes.
        if "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"{path} holds pickled Python objects besides weights (for example a whole saved model), "
                f"which are not loaded for safety; {_USE_INSTEAD}"
            ) from exc
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (it is truncated, corrupt, or another kind of file)"
        ) from exc
    except Exception as exc:  # torch raises RuntimeError, EOFError, KeyError, ... for damaged files
        log.debug("torch.load(%s) failed: %r", path, exc)
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (it is truncated, corrupt, or another kind of file)"
        ) from exc


def _extract_state_dict(path: Path, obj: Any) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint, wrapped under "state_dict" or bare, with the DataParallel prefix removed."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        raw = obj["state_dict"]
    elif isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        raw = obj
    else:
        raise CheckpointError(f"{path} is a PyTorch file but holds no model weights (no 'state_dict'); {_USE_INSTEAD}")

    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path} has a 'state_dict' entry {key!r} that is not a tensor; {_USE_INSTEAD}")
        state[key[len("module."):] if key.startswith("module.") else key] = value
    return state


def _check_architecture(path: Path, state: dict[str, torch.Tensor], model: Wav2Lip) -> None:
    """Refuse, with the first difference named, anything that is not the generator's exact state_dict."""
    keys = state.keys()
    if any(k.startswith(_DISCRIMINATOR_PREFIXES) for k in keys):
        raise CheckpointError(
            f"{path} is the Wav2Lip visual-quality discriminator (visual_quality_disc.pth), not the generator; "
            f"{_USE_INSTEAD}"
        )
    if any(k.startswith(_SYNCNET_PREFIXES) for k in keys):
        raise CheckpointError(
            f"{path} is the SyncNet lip-sync expert (lipsync_expert.pth), not the Wav2Lip generator; {_USE_INSTEAD}"
        )

    expected = model.state_dict()
    # BatchNorm fills in a missing num_batches_tracked itself (checkpoints from old PyTorch lack it).
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    if missing:
        raise CheckpointError(
            f"{path} does not match the Wav2Lip generator: {len(missing)} of its {len(expected)} weights are "
            f"missing, the first being {missing[0]}"
        )
    if unexpected:
        raise CheckpointError(
            f"{path} does not match the Wav2Lip generator: it has {len(unexpected)} weights the model does not, "
            f"the first being {unexpected[0]}"
        )
    for key, want in expected.items():
        if key in state and state[key].shape != want.shape:
            raise CheckpointError(
                f"{path} does not match the Wav2Lip generator: {key} has shape {_fmt_shape(state[key].shape)} "
                f"in the file but the model expects {_fmt_shape(want.shape)}"
            )


def load_wav2lip(path: Path, device: torch.device) -> Wav2Lip:
    """Load a Wav2Lip generator checkpoint strictly, in eval mode, on ``device``. Raises CheckpointError."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"Wav2Lip checkpoint not found: {path} (place wav2lip_gan.pth or wav2lip.pth at {_WHERE})"
        )
    if not path.is_file():
        raise CheckpointError(f"{path} is a folder, not a Wav2Lip checkpoint file (expected {_WHERE})")

    state = _extract_state_dict(path, _read_checkpoint(path))
    model = Wav2Lip()
    _check_architecture(path, state, model)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # dtype or other load failures the checks above do not foresee
        raise CheckpointError(f"{path} could not be loaded into the Wav2Lip generator: {exc}") from exc
    return model.eval().to(device)


class Wav2LipEngine(Engine):
    """Wav2Lip on 96x96 crops: the lower half of each crop is redrawn to match its mel chunk."""

    name: ClassVar[str] = "wav2lip"
    crop_size: ClassVar[int] = 96

    def __init__(
        self,
        checkpoint: Path,
        device: str = "auto",
        batch_size: int | None = None,
        fp16: bool = True,
        runtime: str = "auto",
        int8: bool = True,
    ) -> None:
        """``runtime`` (CPU only): ``auto`` runs the generator on ncnn when it is installed and checks out, else
        on PyTorch; ``torch`` always PyTorch; ``ncnn`` insists on ncnn. On CUDA and MPS it is always PyTorch.
        ``int8`` (ncnn only): each job in 8-bit integers where its first faces show it matches fp32
        (heygem.engines.wav2lip_runtime)."""
        if batch_size is not None and batch_size < 1:
            raise EngineError(f"batch size must be at least 1, not {batch_size}")
        if runtime not in RUNTIMES:
            raise EngineError(f"unknown wav2lip runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}")
        self.checkpoint = Path(checkpoint)
        self.requested_runtime = runtime
        self.device = pick_device(device)
        on_cuda = self.device.type == "cuda"
        if runtime == "ncnn" and self.device.type != "cpu":
            raise EngineError(f"the wav2lip runtime 'ncnn' runs on the CPU only, not on {self.device}; "
                              "use runtime 'auto' or device 'cpu'")
        # Half precision only pays (and is only well supported) on CUDA.
        self.fp16 = bool(fp16 and on_cuda)
        if batch_size is not None:
            self.batch_size = batch_size
        elif on_cuda:
            try:
                free, _ = torch.cuda.mem_get_info(self.device)
                self.batch_size = cuda_batch_size(free, self.fp16)
            except RuntimeError:
                self.batch_size = _CUDA_BATCH
        else:
            self.batch_size = _OTHER_BATCH
        self.dtype = torch.float16 if self.fp16 else torch.float32

        started = time.perf_counter()
        model = load_wav2lip(self.checkpoint, self.device)
        self.model = model.half() if self.fp16 else model
        log.info(
            "loaded %s on %s (%s, batch %d) in %.2f s",
            self.checkpoint.name,
            self.device,
            "fp16" if self.fp16 else "fp32",
            self.batch_size,
            time.perf_counter() - started,
        )
        # The CPU fast path (ncnn, fp32) is built from the loaded model; None means eager PyTorch.
        self._fast: NcnnWav2Lip | None = None
        self._pins: dict[str, torch.Tensor] = {}  # page-locked host buffers for CUDA copies, by input
        if self.device.type == "cpu":
            self._fast = build_cpu_fastpath(self.model, runtime, threads=torch.get_num_threads(), int8=int8)
        self.runtime = self._fast.name if self._fast is not None else "torch"

    def start(self, job: EngineJob) -> None:
        """A new video: on ncnn in int8, its network is made from this job's own first faces and speech (a short
        job stays in fp32)."""
        if self._fast is not None:
            self._fast.start(job.mel, job.frames)

    def _precision(self) -> str:
        if self._fast is not None:
            return self._fast.precision
        return "fp16" if self.fp16 else "fp32"

    def description(self) -> EngineDescription:
        # On the CPU without ncnn where it was wanted (not installed, not built, not agreeing, or failed mid-job).
        slower = self.device.type == "cpu" and self.requested_runtime != "torch" and self.runtime == "torch"
        return EngineDescription(self.name, device=str(self.device), checkpoint=self.checkpoint.name,
                                 precision=self._precision(), batch=self.batch_size, runtime=self.runtime,
                                 fallbacks=("torch_runtime",) if slower else ())

    def describe(self) -> str:
        """E.g. ``wav2lip (wav2lip_gan.pth on cpu, fp32, batch 16)``."""
        about = self.description()
        return f"{about.engine} ({about.checkpoint} on {about.device}, {about.precision}, batch {about.batch})"

    def synthesize(self, crops: np.ndarray, mel_chunks: np.ndarray, frame_indices: np.ndarray | None = None) -> np.ndarray:
        """crops (B, 96, 96, 3) uint8 BGR, mel_chunks (B, 80, 16) float32 -> new crops (B, 96, 96, 3) uint8 BGR."""
        crops, mel_chunks = self._validate(crops, mel_chunks)
        total = crops.shape[0]
        out = np.empty_like(crops)
        start = 0
        while start < total:
            stop = min(total, start + self.batch_size)
            try:
                out[start:stop] = self._run(crops[start:stop], mel_chunks[start:stop])
            except torch.cuda.OutOfMemoryError:
                out_of_memory = True
            else:
                out_of_memory = False
                start = stop
            # Outside the except block, so the failed batch's tensors are freed before the cache is emptied.
            if out_of_memory:
                self._shrink_batch()
        return out

    def _validate(self, crops: np.ndarray, mel_chunks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        size = self.crop_size
        if not isinstance(crops, np.ndarray) or crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            got = getattr(crops, "shape", type(crops).__name__)
            raise EngineError(f"wav2lip needs face crops shaped (B, {size}, {size}, 3), got {got}")
        if crops.dtype != np.uint8:
            raise EngineError(f"wav2lip needs uint8 face crops, got {crops.dtype}")
        if not isinstance(mel_chunks, np.ndarray) or mel_chunks.ndim != 3 or mel_chunks.shape[1:] != (80, 16):
            got = getattr(mel_chunks, "shape", type(mel_chunks).__name__)
            raise EngineError(f"wav2lip needs mel chunks shaped (B, 80, 16), got {got}")
        if not np.issubdtype(mel_chunks.dtype, np.floating):
            raise EngineError(f"wav2lip needs float mel chunks, got {mel_chunks.dtype}")
        if mel_chunks.shape[0] != crops.shape[0]:
            raise EngineError(
                f"wav2lip needs one mel chunk per face crop, "
                f"got {crops.shape[0]} crops and {mel_chunks.shape[0]} chunks"
            )
        return np.ascontiguousarray(crops), np.ascontiguousarray(mel_chunks, dtype=np.float32)

    def _run(self, crops: np.ndarray, mels: np.ndarray) -> np.ndarray:
        """One generator call, inputs exactly as the original builds them."""
        masked = crops.copy()
        masked[:, self.crop_size // 2 :] = 0  # the mouth half is hidden; the reference shows the whole face
        faces = np.concatenate((masked, crops), axis=3)  # (b, S, S, 6): masked first, as in training
        if self._fast is not None:
            try:
                return self._fast.run(faces, mels)
            except Exception as exc:  # noqa: BLE001 - whatever went wrong there, PyTorch can still do the batch
                log.warning("the %s fast path failed (%s): wav2lip goes on with eager PyTorch", self._fast.name, exc)
                self._fast.close()
                self._fast, self.runtime = None, "torch"
        with torch.inference_mode():
            # uint8 travels to the device (4x less than float), the scaling happens there in float32. On CUDA
            # through pinned buffers kept between calls, so the copy is a direct DMA.
            face_host, mel_host = torch.from_numpy(faces), torch.from_numpy(mels)
            if self.device.type == "cuda":
                face_host, mel_host = self._pinned("faces", face_host), self._pinned("mels", mel_host)
            face_t = face_host.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
            mel_t = mel_host.to(self.device, non_blocking=True).unsqueeze(1)
            pred = self.model(mel_t.to(self.dtype), face_t.to(self.dtype))
            pixels = pred.float().mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
            return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def _pinned(self, name: str, host: torch.Tensor) -> torch.Tensor:
        """``host`` copied into a page-locked buffer reused across calls (grown when a batch is larger).
        Safe to reuse: each call waits for its results (``.cpu()``), so no copy from it is still in flight."""
        buffer = self._pins.get(name)
        if buffer is None or buffer.shape[1:] != host.shape[1:] or buffer.shape[0] < host.shape[0]:
            buffer = torch.empty((max(host.shape[0], self.batch_size), *host.shape[1:]), dtype=host.dtype, pin_memory=True)
            self._pins[name] = buffer
        view = buffer[: host.shape[0]]
        view.copy_(host)
        return view

    def _shrink_batch(self) -> None:
        if self.batch_size <= 1:
            raise EngineError(
                f"wav2lip ran out of GPU memory on {self.device} even one face at a time; "
                "free GPU memory or use device 'cpu'"
            )
        torch.cuda.empty_cache()
        smaller = max(1, self.batch_size // 2)
        log.warning(
            "out of GPU memory at batch %d on %s; retrying with batch %d", self.batch_size, self.device, smaller
        )
        self.batch_size = smaller
