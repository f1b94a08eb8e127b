"""Every error HeyGem raises on purpose. Each message says what was wrong and what is accepted."""
from __future__ import annotations

from pathlib import Path


class HeyGemError(Exception):
    """Base class: the message is meant for the user, as is."""


class InputError(HeyGemError):
    """An input file is missing, unreadable, or not what it must be. The message names the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class NoFaceError(InputError):
    """No face was found in any frame of a video or photo."""


class CheckpointError(HeyGemError):
    """A model checkpoint is missing or is not the file the engine needs."""


class FFmpegError(HeyGemError):
    """ffmpeg or ffprobe failed or could not be found."""


class EngineError(HeyGemError):
    """An engine could not be created or run."""


class CancelledError(HeyGemError):
    """The job was cancelled by the user; nothing was written."""


class LimitError(InputError):
    """An input is larger or longer than a limit allows (heygem.limits); the message names the file, the
    limit and how to raise it."""
