"""How a program of ours ends: at once, even while a thread of it is still inside a computation.

Python ends a process by calling the C libraries' exit handlers after its own. OpenBLAS's joins its worker
threads, and waits for ever when a thread of ours is still inside a BLAS call at that moment (a process ending
beside a thread multiplying matrices froze in 25 of 30 ends, and only ``kill -9`` ended it). The studio ends
so when Ctrl+C stops it while its worker computes a job's speech features: the worker is given 2 s, then left.
So the studio and the command line end as Python would, logs and output flushed, but without the C libraries'
exit handlers. Nothing is lost by skipping them: the job queue's database
is closed and a job left running is run again at the next start; the guard of child processes
(``heygem.children``) sees this process go and ends its ffmpeg children.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

__all__ = ["run_to_the_end"]


def run_to_the_end(main: Callable[[], int | None]) -> NoReturn:
    """Run ``main`` and end this process with the code it returns, as ``sys.exit(main())`` would (an uncaught
    exception is printed and ends it with 1, Ctrl+C with 130), but without waiting for threads still working."""
    try:
        code = _exit_code(main())
    except SystemExit as stop:
        code = _exit_code(stop.code)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # printed as Python prints what nothing caught
        traceback.print_exc()
        code = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, or replaced by None
            pass
    os._exit(code)


def _exit_code(code: object) -> int:
    """What ``sys.exit(code)`` would end the process with."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    sys.stderr.write(f"{code}\n")  # a message given to sys.exit, as Python shows it
    return 1
