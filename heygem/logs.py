"""Logging set-up for the entry points (CLI, app). Library modules only create loggers."""
from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

from heygem.errors import REORDERING_MARKS
from heygem.settings import LOGS_DIR, OUTPUTS_DIR, Limits

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a record may carry from outside (an uploaded file's name, ffmpeg's words, an exception's message) must not
# start a record of its own: a newline in a file's name wrote a forged "ERROR" line that the Logs tab showed as one.
_UNWRITTEN = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{REORDERING_MARKS}]")  # (a tab and a newline are kept)
CONTINUATION = "    "


class OneRecordPerLine(logging.Formatter):
    """Every record starts exactly one line: its further lines (a traceback's, a multi-line message's) continue
    indented, and other control characters and the marks that reorder text are written as escapes (``\\x1b``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = _UNWRITTEN.sub(lambda char: char.group(0).encode("unicode_escape").decode("ascii"), super().format(record))
        return text.replace("\n", "\n" + CONTINUATION)


def log_dir_for(outputs: Path) -> Path:
    """Where a studio over the outputs folder ``outputs`` logs: the project's ``logs/`` for the project's own
    ``outputs/`` (as always), ``<outputs>/logs`` for any other. A log describes one outputs folder (its jobs,
    its paths), and one folder has one studio: the Logs tab of one studio never shows another's records."""
    if Path(outputs).resolve() == OUTPUTS_DIR.resolve():
        return LOGS_DIR
    return Path(outputs) / "logs"


def limits_words(limits: Limits) -> str:
    """The limits as a person reads them in the log: ``uploads up to 1024 MB, speech up to 30 min, ...``."""

    def up_to(value: float, unit: str) -> str:
        return f"up to {value:g} {unit}" if value else "unlimited"

    return (f"uploads {up_to(limits.upload_mb, 'MB')}, speech {up_to(limits.speech_minutes, 'min')}, presenter videos "
            f"{up_to(limits.video_minutes, 'min')}, pictures {up_to(limits.picture_side, 'px on the longer side')}, "
            f"jobs waiting or running {up_to(limits.queued_jobs, 'at once')}, live sessions "
            f"{up_to(limits.live_sessions, 'at once')}")


def setup_logging(log_dir: Path | None = Path("logs"), verbose: bool = False, console: bool = True) -> Path | None:
    """Log to ``log_dir/heygem.log`` (rotated by size, full detail) and, if ``console``, to stderr.

    Returns the log file's path (None when ``log_dir`` is None).
    """
    root = logging.getLogger("heygem")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    log_file = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / "heygem.log"
        file_handler = logging.handlers.RotatingFileHandler(log_file, maxBytes=5_000_000, backupCount=5, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(OneRecordPerLine(LOG_FORMAT))
        root.addHandler(file_handler)
    if console:
        stream = logging.StreamHandler()
        stream.setLevel(logging.DEBUG if verbose else logging.WARNING)
        stream.setFormatter(OneRecordPerLine("%(levelname)s: %(message)s"))
        root.addHandler(stream)
    return log_file
