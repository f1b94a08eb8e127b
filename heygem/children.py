"""Child processes (ffmpeg, ffprobe, the phone recogniser) that end with this process, however it ends.

A child is started with nothing run between fork and exec: no ``preexec_fn``. With one, Python forks plainly
and every library's fork handler runs in the forking thread; OpenBLAS's waits for its worker threads, and a job
computing speech features in another thread froze the whole studio for good (issue 17). Without one, the
``subprocess`` module uses vfork, and no fork handler runs.

So a child cannot ask the kernel to die with its parent. Instead each child leads a process group of its own,
and one guard process (started at the first child) is told each group while it lives. The guard reads a pipe
from this process; when this process ends (exit, crash, ``kill -9``) the pipe closes and the guard kills every
group it still knows. A child is forgotten once it has been waited for, so a reused process number is never
killed. Its own group also keeps the terminal's Ctrl+C from reaching ffmpeg: the studio decides how jobs stop.
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["Child", "guarded_groups"]

# The guard's whole program. It runs with ``python -I`` (no site, no environment): nothing of ours is imported.
_GUARD_PROGRAM = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
groups = set()
for line in sys.stdin.buffer:
    group = int(line[1:])
    if line[:1] == b"+":
        groups.add(group)
    else:
        groups.discard(group)
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
"""


class _Guard:
    """The guard process of this process, and the groups it has been told of."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._owner = 0  # the process the guard serves: a forked copy of this one needs its own
        self._groups: set[int] = set()

    def watch(self, group: int) -> None:
        with self._lock:
            self._reset_if_forked()
            self._groups.add(group)
            self._tell(f"+{group}\n")

    def forget(self, group: int) -> None:
        with self._lock:
            self._reset_if_forked()
            if group in self._groups:
                self._groups.discard(group)
                self._tell(f"-{group}\n")

    def groups(self) -> set[int]:
        with self._lock:
            return set(self._groups)

    def _reset_if_forked(self) -> None:
        if self._owner != os.getpid():
            self._process, self._owner, self._groups = None, os.getpid(), set()

    def _tell(self, line: str) -> None:
        for _ in range(2):
            if self._process is None or self._process.poll() is not None:
                self._start()
            try:
                assert self._process is not None and self._process.stdin is not None
                self._process.stdin.write(line.encode())
                self._process.stdin.flush()
                return
            except OSError:  # the guard was killed: a new one is told every group still alive
                log.warning("the guard of child processes ended; starting another")
                self._process = None
        log.error("no guard for child processes could be started: they may outlive this process")

    def _start(self) -> None:
        try:
            self._process = subprocess.Popen([sys.executable, "-I", "-c", _GUARD_PROGRAM], stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                             process_group=0)
        except OSError as exc:
            log.error("the guard of child processes could not be started: %s", exc)
            self._process = None
            return
        assert self._process.stdin is not None
        if self._groups:
            self._process.stdin.write("".join(f"+{group}\n" for group in self._groups).encode())
            self._process.stdin.flush()


_GUARD = _Guard() if os.name == "posix" else None


class Child(subprocess.Popen):
    """``subprocess.Popen`` for a child that ends with this process: it leads its own process group, which the
    guard kills if this process ends first. Wait for it (``wait``, ``communicate`` or a ``poll`` that sees it
    ended), as for any child. Takes Popen's arguments, but not ``preexec_fn`` (see the module's docstring)."""

    def __init__(self, argv: list[str], **options: Any) -> None:
        if "preexec_fn" in options:
            raise ValueError("a child runs nothing between fork and exec: no preexec_fn")
        if _GUARD is None:  # Windows: no process groups to guard
            super().__init__(argv, **options)
            return
        super().__init__(argv, process_group=0, **options)
        _GUARD.watch(self.pid)

    def poll(self) -> int | None:
        code = super().poll()
        self._forget_if_ended()
        return code

    def wait(self, timeout: float | None = None) -> int:
        try:
            return super().wait(timeout)
        finally:
            self._forget_if_ended()

    def _forget_if_ended(self) -> None:
        if self.returncode is not None and _GUARD is not None:
            _GUARD.forget(self.pid)


def guarded_groups() -> set[int]:
    """The process groups of this process's children the guard would kill now (for tests and diagnostics)."""
    return _GUARD.groups() if _GUARD is not None else set()
