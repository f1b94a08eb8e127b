"""Engines make the new mouths. They sit behind ``Engine`` and are created by name, once, and reused."""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

from heygem.engines.base import Engine, EngineDescription
from heygem.errors import CheckpointError, EngineError
from heygem.settings import DEFAULT_CHECKPOINTS, EngineOptions

__all__ = ["ENGINES", "Engine", "EngineDescription", "check_engine_available", "create_engine", "engine_status",
           "find_checkpoint", "resolve_engine_name", "wav2lip_available"]

log = logging.getLogger(__name__)

ENGINES = ("wav2lip", "builtin")

NO_CHECKPOINT = (
    "No Wav2Lip checkpoint found: put wav2lip_gan.pth (or wav2lip.pth) from the Wav2Lip project into "
    "checkpoints/, or pass --checkpoint PATH. The weights are licensed for non-commercial use only."
)

# For front ends that queue jobs (web UI, HTTP API): said before a job is queued, not when it runs.
NO_CHECKPOINT_TO_QUEUE = (
    "the wav2lip engine needs a checkpoint and none is installed: put wav2lip_gan.pth from the Wav2Lip project "
    "at checkpoints/wav2lip_gan.pth (or wav2lip.pth) and restart the studio, or choose engine auto or builtin"
)


def find_checkpoint(explicit: Path | None) -> Path | None:
    """The checkpoint to use: the one given, else the first default that exists."""
    if explicit is not None:
        return Path(explicit)
    return next((path for path in DEFAULT_CHECKPOINTS if path.is_file()), None)


def wav2lip_available(options: EngineOptions) -> bool:
    """Whether a Wav2Lip checkpoint is found for these options (the one they name, else a default one)."""
    return find_checkpoint(options.checkpoint) is not None


def check_engine_available(options: EngineOptions) -> None:
    """CheckpointError when these options ask for wav2lip and no checkpoint is found (``auto`` never fails)."""
    if options.engine == "wav2lip" and not wav2lip_available(options):
        raise CheckpointError(NO_CHECKPOINT_TO_QUEUE)


def resolve_engine_name(options: EngineOptions) -> str:
    """``auto`` becomes ``wav2lip`` when a checkpoint is present, else ``builtin`` (needs no weights)."""
    name = _engine_for(options, find_checkpoint(options.checkpoint))
    if options.engine == "auto" and name == "builtin":
        log.info("no Wav2Lip checkpoint in checkpoints/: using the built-in engine (put wav2lip_gan.pth there for the neural one)")
    return name


def _engine_for(options: EngineOptions, checkpoint: Path | None) -> str:
    if options.engine != "auto":
        return options.engine
    return "wav2lip" if checkpoint is not None else "builtin"


def create_engine(options: EngineOptions) -> Engine:
    """The engine these options describe, loaded once and reused for later jobs with the same options."""
    name = resolve_engine_name(options)
    if name == "wav2lip":
        checkpoint = find_checkpoint(options.checkpoint)
        if checkpoint is None:
            raise CheckpointError(NO_CHECKPOINT)
        return _load_wav2lip(checkpoint.resolve(), options.device, options.batch_size, options.fp16, options.runtime,
                             options.int8)
    if name == "builtin":
        return _load_builtin()
    raise EngineError(f"unknown engine {name!r}: choose one of auto, {', '.join(ENGINES)}")


@lru_cache(maxsize=2)
def _load_wav2lip(checkpoint: Path, device: str, batch_size: int | None, fp16: bool, runtime: str = "auto",
                  int8: bool = True) -> Engine:
    from heygem.engines.wav2lip import Wav2LipEngine

    return Wav2LipEngine(checkpoint, device=device, batch_size=batch_size, fp16=fp16, runtime=runtime, int8=int8)


@lru_cache(maxsize=1)
def _load_builtin() -> Engine:
    from heygem.engines.builtin import BuiltinEngine

    return BuiltinEngine()


def unload_engines() -> None:
    """Forget every loaded engine (frees its memory once nothing else holds it)."""
    _load_wav2lip.cache_clear()
    _load_builtin.cache_clear()


def engine_status(options: EngineOptions) -> dict[str, str | None]:
    """What ``auto`` will use right now, for the web UI and the HTTP API: engine, checkpoint file, device."""
    import torch

    from heygem.device import best_device

    checkpoint = find_checkpoint(options.checkpoint)
    if options.device != "auto":
        device = options.device
    else:
        chosen = best_device()
        device = f"cuda ({torch.cuda.get_device_name(chosen)})" if chosen.type == "cuda" else chosen.type
    return {"engine": _engine_for(options, checkpoint), "checkpoint": checkpoint.name if checkpoint is not None else None,
            "device": device}
