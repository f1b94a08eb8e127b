"""The web UI (Gradio). Gradio is imported here and nowhere else in the library."""
from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the command line reads the word table (texts) without the server's imports
    import gradio as gr
    from fastapi import FastAPI

    from heygem.jobs import JobQueue

log = logging.getLogger(__name__)

__all__ = ["mount_studio"]


# Gradio writes each page upload into a file named tmp* at the top of its cache and moves it into a folder of its
# own once the upload is complete; an upload whose browser went away (a closed tab, a dropped connection) stays
# there, and Gradio's own cleaning only knows the files it moved: 4 uploads broken off left 111 MB, for good.
# At the start none is under way, so all go; while the studio runs, those untouched for PARTIAL_UPLOAD_SECONDS.
PARTIAL_UPLOAD_SECONDS = 3600
PARTIAL_SWEEP_SECONDS = 600

# Gradio's event queue looks for work every millisecond when it has none (and every 10 ms for progress to
# send): 9% of a core on this 2-core machine for a studio with no page open and no job, all day. Looked for every
# 20 ms it costs 2%; an event then starts up to 20 ms later, beside a page refreshed each second.
QUEUE_IDLE_SLEEP_SECONDS = 0.02


def remove_partial_uploads(cache: Path, untouched_seconds: float = 0.0) -> int:
    """Remove the page uploads left unfinished in Gradio's ``cache`` (untouched for ``untouched_seconds``); how
    many were removed."""
    removed = 0
    now = time.time()
    for leftover in cache.glob("tmp*"):
        try:
            if leftover.is_file() and not leftover.is_symlink() and now - leftover.stat().st_mtime >= untouched_seconds:
                leftover.unlink()
                removed += 1
        except OSError:  # gone meanwhile (completed and moved)
            continue
    if removed:
        log.info("removed %d page upload(s) left unfinished in %s", removed, cache)
    return removed


def _sweep_partial_uploads(cache: Path) -> None:
    while True:
        time.sleep(PARTIAL_SWEEP_SECONDS)
        remove_partial_uploads(cache, PARTIAL_UPLOAD_SECONDS)


def mount_studio(app: FastAPI, queue: JobQueue, path: str = "/", log_file: Path | None = None) -> None:
    """Serve the studio page from ``app`` at ``path``, over ``queue``; its Logs tab shows ``log_file``."""
    # Gradio keeps uploads and copies of the results it shows in its cache; inside the outputs folder, every
    # file the page can fetch lies under outputs/. Set before gradio is imported and its components are made.
    cache = queue.root / ".gradio"
    cache.mkdir(parents=True, exist_ok=True)
    remove_partial_uploads(cache)
    threading.Thread(target=_sweep_partial_uploads, args=(cache,), name="heygem-partial-uploads",
                     daemon=True).start()
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the machine may be offline

    import gradio as gr

    from heygem.media.ffmpeg import ffmpeg_exe
    from heygem.ui.studio import CSS, FRAMES_SCRIPT, I18N, LIVE_HEAD, THEME, build_studio

    # Gradio converts previews of videos browsers cannot play with the ffmpeg it finds on PATH; lend it ours
    # (after any system one, which keeps precedence).
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + str(Path(ffmpeg_exe()).parent)
    studio = build_studio(queue, log_file)
    upload_mb = queue.defaults.limits.upload_mb
    # The footer keeps only Gradio's settings (language, theme): its API page describes the page's internal
    # events, not HeyGem's API (/api, README.md), and "Built with Gradio" is not ours to say in the page. The
    # head carries the Live tab's script (heygem/ui/live.js); frames.js goes before everything (FirstScript). No
    # monitoring: mounted, Gradio served a summary of the page's events (its handlers, their counts and times) at
    # /monitoring/summary to anyone who asked.
    gr.mount_gradio_app(app, studio, path=path, i18n=I18N, theme=THEME, css=CSS, allowed_paths=[], show_error=True,
                        max_file_size=upload_mb * 1024 * 1024 if upload_mb else None, footer_links=["settings"],
                        head=LIVE_HEAD, enable_monitoring=False)
    app.add_middleware(FirstScript, path=path, script=FRAMES_SCRIPT)
    _check_request_files(studio, queue.root)
    _calm_event_queue(studio)


class FirstScript:
    """ASGI middleware: the page's HTML at ``path`` (a GET answered with text/html) gets ``script`` right after
    its ``<head>``, before Gradio's own scripts and modules; every other response passes as it is."""

    def __init__(self, app: Any, path: str, script: str) -> None:
        self.app, self.script = app, script.encode("utf-8")
        self.paths = {path, path.rstrip("/") + "/"}  # "/studio" and "/studio/"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        body: list[bytes] = []

        async def held_send(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if not headers.get(b"content-type", b"").startswith(b"text/html"):
                    await send(message)  # not the page: nothing held
                    return
                start = message
                return
            if start is None:
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return
            page = b"".join(body).replace(b"<head>", b"<head>" + self.script, 1)
            headers = [(name, value) for name, value in start.get("headers", []) if name != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(page)).encode())]})
            await send({"type": "http.response.body", "body": page})

        await self.app(scope, receive, held_send)


def _calm_event_queue(studio: gr.Blocks) -> None:
    """Let Gradio's event queue wait QUEUE_IDLE_SLEEP_SECONDS between its looks for work (its loops read the
    two attributes on every pass; Gradio sets them to 1 ms and 10 ms on Linux, 50 and 100 ms on Windows), and
    stop it summing up its past events for the monitoring summary the studio does not serve."""
    events = studio._queue
    events.sleep_when_free = max(events.sleep_when_free, QUEUE_IDLE_SLEEP_SECONDS)
    events.progress_update_sleep_when_free = max(events.progress_update_sleep_when_free, QUEUE_IDLE_SLEEP_SECONDS)
    # After every event (a page's refresh each second among them) Gradio tabulated the last 10,000 events in a
    # pandas frame for that summary, "cached" every 1 event: 4 ms of CPU per event at first, 19 ms once a page
    # had been open about three hours. Its next summary is now due after sys.maxsize events.
    if not studio.enable_monitoring:
        events.ANAYLTICS_CACHE_FREQUENCY = sys.maxsize  # (sic: Gradio's name)


def _check_request_files(studio: gr.Blocks, outputs: Path) -> None:
    """Make Gradio refuse any file path a request names that is not one of its own uploads.

    Before an event runs, Gradio copies every file its inputs name into its cache, where the page can fetch
    it. It first checks that the file is one it received itself (in its cache, ``outputs/.gradio``), but
    only once the Blocks count as launched: ``launch()`` sets ``has_launched``, ``mount_gradio_app`` does
    not, and without it any caller could have any file on the machine copied out. Setting the flag turns on
    Gradio's own check for every event of the page, present and future, on every route (call, run, queue).
    """
    studio.has_launched = True
    # The same check also applies to the files the page's handlers return (our results): Gradio accepts
    # them from the working directory, the temp directory or its cache. app.py works in the outputs folder.
    if not any(outputs.resolve().is_relative_to(Path(folder).resolve())
               for folder in (os.getcwd(), tempfile.gettempdir())):
        log.warning("the outputs folder %s is outside the working directory %s: the page will not show results "
                    "(app.py works in the outputs folder; run the studio through it)", outputs, os.getcwd())
