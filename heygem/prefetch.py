"""An iterator run in a thread of its own, a few items ahead of its consumer: decoding, detection and the
face mesh (C code and ffmpeg, which leave Python's lock) overlap the consumer's work on another core."""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

__all__ = ["Prefetch"]

_ITEM, _END, _ERROR = range(3)


class Prefetch(Iterator):
    """Runs an iterator in a thread of its own, up to ``depth`` items ahead of its consumer, so that decoding
    and detection (in C code and ffmpeg, which release the GIL) overlap the engine's work. An exception in the
    thread is raised to the consumer; ``close`` stops the thread and closes the iterator there."""

    def __init__(self, source: Iterator, depth: int, name: str) -> None:
        self._items: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _put(self, entry: tuple) -> bool:
        while not self._stop.is_set():
            try:
                self._items.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterator) -> None:
        try:
            for item in source:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, which decides
            self._put((_ERROR, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # in this thread, where the generator runs: stops its ffmpeg decoder

    def __next__(self):
        kind, value = self._items.get()
        if kind == _END:
            self._items.put((_END, None))  # stay exhausted
            raise StopIteration
        if kind == _ERROR:
            raise value
        return value

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._items.get(timeout=0.05)
            except queue.Empty:
                pass
