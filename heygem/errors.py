"""Every error HeyGem raises on purpose. Each message says what was wrong and what is accepted.

Besides its English message, an error a person may read carries a stable ``code`` and its ``params`` (the file's
name and any numbers), so a front end can word the reason in its own language (the studio's locale table
keys them ``reason_<code>``); the English message stays the one the API, CLI and log give.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any


class HeyGemError(Exception):
    """Base class: the message is meant for the user, as is. ``code`` (None when no front end words it in
    another language) and ``params`` say the same for a translation."""

    def __init__(self, message: str, *, code: str | None = None, params: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.params = dict(params or {})


class InputError(HeyGemError):
    """An input file is missing, unreadable, or not what it must be. The message names the file; ``params``
    holds it as ``file``."""

    def __init__(self, path: str | Path, problem: str, code: str | None = None, **params: Any) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}", code=code, params={"file": self.path, **params})

    def naming(self, name: str) -> InputError:
        """The same error, naming the file ``name`` (the name a person uploaded it under)."""
        params = {key: value for key, value in self.params.items() if key != "file"}
        return type(self)(name, self.problem, self.code, **params)


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


class CodedText(str):
    """A note for the user (a result's "cut short", "turned" ...): the English words, with a ``code`` and
    ``params`` for a front end that words it in another language. Behaves as the plain string everywhere else."""

    code: str
    params: dict[str, Any]

    def __new__(cls, code: str, words: str, **params: Any) -> CodedText:
        made = super().__new__(cls, words)
        made.code = code
        made.params = params
        return made

    def __getnewargs_ex__(self) -> tuple[tuple[str, str], dict[str, Any]]:
        # Pickled whole (a cluster worker's result goes to the studio so): str's own way would drop the code.
        return (self.code, str(self)), dict(self.params)


# Control characters (C0, DEL, C1: a newline, an escape sequence, a bell) and the marks that reorder text (right-to-
# left overrides and isolates: "evil\u202egpj.mp4" shows as "evilmp4.jpg"). A name a person gave a file or a
# presenter is shown, stored and logged without them.
REORDERING_MARKS = "\u200e\u200f\u202a-\u202e\u2066-\u2069"  # as a regular expression's character class holds them
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_REORDERING = re.compile(f"[{REORDERING_MARKS}]")


def printable(text: str) -> str:
    """``text`` as a person may be shown it: each control character a space, the marks that reorder text removed."""
    return _REORDERING.sub("", _CONTROLS.sub(" ", text))
