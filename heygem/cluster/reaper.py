"""Ends the Ray processes a studio started when the studio itself ends without stopping them (killed).

Ray 2.60 ties its head processes to the process that started them, but not all of them: a studio killed with
SIGKILL leaves its dashboard and runtime-env agents running, with nobody to stop them. heygem.cluster.connect
starts this watcher, in a session of its own, with a pipe from the studio on its standard input:

    python -m heygem.cluster.reaper STUDIO_PID

It notes the studio's descendants at once (and then says ``ready`` on its standard output, which ``connect``
waits for) and every second after. ``stop`` on the pipe (Ray was stopped as it should be) ends it
quietly; the pipe's end without it (the studio is gone) makes it end every noted process still running.
"""
from __future__ import annotations

import importlib.util
import os
import select
import signal
import sys
import time
from pathlib import Path

LOOK_SECONDS = 1.0  # how often the studio's processes are noted
GRACE_SECONDS = 2.0  # for Ray's own fate-sharing to act first
TERM_SECONDS = 3.0  # between SIGTERM and SIGKILL


def _psutil():
    """The psutil that Ray ships (in ray/thirdparty_files), without importing Ray itself."""
    spec = importlib.util.find_spec("ray")
    if spec is not None and spec.submodule_search_locations:
        sys.path.insert(0, str(Path(list(spec.submodule_search_locations)[0]) / "thirdparty_files"))
    import psutil

    return psutil


def _note(psutil, studio, noted: dict[int, float]) -> bool:
    """Note the studio's descendants now; False once the studio is gone. A child that ends while being looked at
    is simply not noted (it was taken for the studio's end once, and nothing was noted after)."""
    try:
        children = studio.children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        if child.pid != os.getpid() and child.pid not in noted:
            try:
                noted[child.pid] = child.create_time()
            except psutil.Error:
                pass
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    psutil = _psutil()
    studio = psutil.Process(int(args[0]))
    noted: dict[int, float] = {}  # pid -> start time, so that a reused pid is never taken for one of them
    # A first look before anything else, and a word to the studio once it is taken: a studio killed within a
    # second of starting Ray (before the first look of the loop) left every Ray process running.
    alive = _note(psutil, studio, noted)
    print("ready", flush=True)
    while alive:
        if select.select([sys.stdin], [], [], LOOK_SECONDS)[0]:
            line = sys.stdin.readline()
            if line.strip() == "stop":
                return 0
            if not line:
                break  # the studio is gone (or closed the pipe without a word: the same)
        alive = _note(psutil, studio, noted)
    time.sleep(GRACE_SECONDS)
    left = []
    for pid, started in noted.items():
        try:
            process = psutil.Process(pid)
            if process.create_time() == started:
                process.send_signal(signal.SIGTERM)
                left.append(process)
        except psutil.Error:  # already gone
            pass
    _, running = psutil.wait_procs(left, timeout=TERM_SECONDS)
    for process in running:
        try:
            process.kill()
        except psutil.Error:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
