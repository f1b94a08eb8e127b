"""The web UI (Gradio). Gradio is imported here and nowhere else in the library."""
from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from heygem.jobs import JobQueue
from heygem.settings import LOGS_DIR

__all__ = ["mount_studio"]


def mount_studio(app: FastAPI, queue: JobQueue, path: str = "/", log_file: Path | None = None) -> None:
    """Serve the studio page from ``app`` at ``path``, over ``queue``; its Logs tab shows ``log_file``."""
    # Gradio keeps uploads and copies of the results it shows in its cache; inside the outputs folder, every
    # file the page can fetch lies under outputs/. Set before gradio is imported and its components are made.
    cache = queue.root / ".gradio"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home: the machine may be offline

    import gradio as gr

    from heygem.media.ffmpeg import ffmpeg_exe
    from heygem.ui.studio import CSS, I18N, THEME, build_studio

    # Gradio converts previews of videos browsers cannot play with the ffmpeg it finds on PATH; lend it ours
    # (after any system one, which keeps precedence).
    os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + str(Path(ffmpeg_exe()).parent)
    studio = build_studio(queue, log_file or LOGS_DIR / "heygem.log")
    gr.mount_gradio_app(app, studio, path=path, i18n=I18N, theme=THEME, css=CSS, allowed_paths=[], show_error=True)
