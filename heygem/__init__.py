"""HeyGem: re-sync a presenter's mouth in a video or photo to a new speech recording.

The public names load on first use, so importing one stage (``heygem.faces``, ``heygem.media``) does not
pull in torch and every other stage.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate": "heygem.pipeline",
    "prepare_audio": "heygem.pipeline",
    "GenerateResult": "heygem.pipeline",
    "PreparedAudio": "heygem.pipeline",
    "Settings": "heygem.settings",
    "DetectionOptions": "heygem.settings",
    "EngineOptions": "heygem.settings",
    "BlendOptions": "heygem.settings",
    "EncodeOptions": "heygem.settings",
    "HeyGemError": "heygem.errors",
    "InputError": "heygem.errors",
    "NoFaceError": "heygem.errors",
    "CheckpointError": "heygem.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'heygem' has no attribute {name!r}")
