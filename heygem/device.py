"""Which torch device a model runs on: the best one present, or the one the user asked for."""
from __future__ import annotations

import logging

import torch

from heygem.errors import EngineError

log = logging.getLogger(__name__)

__all__ = ["best_device", "pick_device"]


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def best_device() -> torch.device:
    """What ``auto`` picks: CUDA, then Apple MPS, then CPU (quietly; ``pick_device`` logs the choice)."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. Anything else is a torch device string that must exist."""
    pref = (preference or "auto").strip().lower()
    if pref == "auto":
        device = best_device()
        if device.type == "cuda":
            log.info("using %s: CUDA GPU found (%s)", device, torch.cuda.get_device_name(device))
        elif device.type == "mps":
            log.info("using mps: no CUDA GPU, Apple Metal (MPS) is available")
        else:
            log.info("using cpu: no CUDA GPU and no Apple MPS found (this is much slower)")
        return device

    try:
        device = torch.device(pref)
    except (RuntimeError, ValueError) as exc:
        raise EngineError(
            f"unknown device {preference!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc

    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(
                f"device {preference!r} was asked for but no CUDA GPU is usable here "
                "(no NVIDIA GPU, no driver, or a CPU-only PyTorch build); use 'auto' or 'cpu'"
            )
        count = torch.cuda.device_count()
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= count:
            raise EngineError(
                f"device {preference!r} was asked for but only {count} CUDA GPU(s) exist (cuda:0 to cuda:{count - 1})"
            )
        device = torch.device("cuda", index)
        log.info("using %s as asked (%s)", device, torch.cuda.get_device_name(device))
    elif device.type == "mps":
        if not _mps_available():
            raise EngineError(
                f"device {preference!r} was asked for but Apple MPS is not available here; use 'auto' or 'cpu'"
            )
        log.info("using mps as asked")
    elif device.type == "cpu":
        log.info("using cpu as asked")
    else:
        raise EngineError(f"device {preference!r} is not supported: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    return device
