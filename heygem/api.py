"""The HTTP API under ``/api``: submit jobs and batches (multipart uploads), follow them, download results.

Every answer is JSON except the downloads; every error is ``{"error": "<reason>"}`` with a fitting status.
The routes call the same ``JobQueue`` as the web UI, so jobs from both share one FIFO. Examples: README.md.
"""
from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from starlette.datastructures import Headers
from starlette.responses import MalformedRangeHeader, RangeNotSatisfiable
from starlette.routing import Match

from heygem.engines import check_engine_available, engine_status
from heygem.errors import HeyGemError
from heygem.jobs import STATES, SUCCEEDED, Batch, JobQueue, safe_name, servable, shown_name
from heygem.limits import stored_on_disk
from heygem.presenters import PresenterNotReadyError
from heygem.settings import with_choices

log = logging.getLogger(__name__)

__all__ = ["api_router", "error_response", "save_upload", "upload_name"]


_STILL_FIELD = ("true: a photo keeps still but for its mouth (no blinks, no head motion); default false: it blinks "
               "and its head moves a little")
_MOUTH_FIELD = ("what moves the built-in engine's mouth: auto (default: the presenter's own filmed mouths where the "
                "video is 5 s or more and speaks, else key mouths), footage (their own mouths; falls back to key "
                "mouths where it cannot, and the job's notes say why), phones (key mouths shaped by the speech's "
                "sounds) or loudness (key mouths opened by loudness alone)")


def error_response(status: int, reason: str, code: str | None = None, params: dict[str, Any] | None = None) -> JSONResponse:
    """``{"error": reason}``; with ``code`` also ``"code"`` and ``"params"`` (heygem.errors), for a page that
    words the reason in its own language."""
    body: dict[str, Any] = {"error": reason}
    if code:
        body.update(code=code, params=params or {})
    return JSONResponse(body, status_code=status)


def api_router(queue: JobQueue) -> APIRouter:
    """The routes, bound to one queue."""
    router = APIRouter(prefix="/api")

    def stored_upload(upload: UploadFile, folder: Path, number: int) -> Path:
        """``save_upload``; a disk that fills meanwhile is LimitError ``disk_full``, naming the upload."""
        with stored_on_disk(upload_name(upload, "upload"), queue.root, queue.defaults.limits):
            return save_upload(upload, folder, number)

    def refused(exc: HeyGemError) -> JSONResponse:
        """A submission refused: 507 (with the reason's code) where the disk is too full to store it, else 400."""
        if exc.code == "disk_full":
            return error_response(507, str(exc), exc.code, exc.params)
        return error_response(400, str(exc))

    def submit(audio: UploadFile, videos: list[UploadFile], presenters: list[str], engine: str | None,
               face: str | None, length: str | None, crf: str | None, still: str | None,
               mouth: str | None) -> Batch | JSONResponse:
        try:
            settings = with_choices(queue.defaults, engine=engine, face=face, length_policy=length, crf=crf,
                                    still=still, mouth_drive=mouth)
            check_engine_available(settings.engine)
        except (ValueError, HeyGemError) as exc:
            return error_response(400, str(exc))
        if not videos and not presenters:
            return error_response(400, "give a video field (a video or photo file) or a presenter field (a presenter's "
                                       "id from GET /api/presenters)")
        for upload, what in [(audio, "audio"), *((v, "video") for v in videos)]:
            if not upload.filename:
                return error_response(400, f"the {what} field holds no file")
        # Uploads land next to the queue's own folders (same disk), are copied in by submit, then removed.
        with tempfile.TemporaryDirectory(dir=queue.root, prefix=".upload-") as folder:
            try:
                saved = [stored_upload(upload, Path(folder), number) for number, upload in enumerate([audio, *videos])]
                return queue.submit(saved[0], saved[1:], settings, audio_name=upload_name(audio, "audio"),
                                    video_names=[upload_name(v, "video") for v in videos], presenters=presenters)
            except PresenterNotReadyError as exc:
                return error_response(409, str(exc))
            except HeyGemError as exc:
                return refused(exc)

    @router.get("/status")
    def status() -> dict:
        """Which engine and device jobs run on now, how many jobs wait, and the workers of a cluster (empty
        when jobs run in the studio's own process)."""
        return {**engine_status(queue.defaults.engine), "pending": queue.pending(), "workers": queue.workers()}

    @router.post("/jobs", status_code=201)
    async def submit_job(
        request: Request,
        audio: UploadFile = File(..., description="the speech: any audio file, or a video whose sound to use"),
        video: UploadFile | None = File(None, description="a video or photo of a face (or give a presenter)"),
        presenter: str | None = Form(None, description="a presenter's id, instead of a video"),
        engine: str | None = Form(None), face: str | None = Form(None),
        length: str | None = Form(None), crf: str | None = Form(None),
        still: str | None = Form(None, description=_STILL_FIELD),
        mouth: str | None = Form(None, description=_MOUTH_FIELD),
    ):
        # FastAPI keeps only the last of repeated fields; a second video would be dropped without a word.
        form = await request.form()  # already parsed for the parameters above: no second read
        if len(form.getlist("video")) + len(form.getlist("presenter")) > 1:
            return error_response(400, "POST /api/jobs takes one video or one presenter; for several use POST /api/batches")
        if len(form.getlist("audio")) > 1:
            return error_response(400, "give one audio field (the speech)")
        batch = await run_in_threadpool(submit, audio, [video] if video else [], [presenter] if presenter else [],
                                        engine, face, length, crf, still, mouth)
        return batch if isinstance(batch, JSONResponse) else batch.jobs[0].to_json()

    @router.post("/batches", status_code=201)
    async def submit_batch(
        request: Request,
        audio: UploadFile = File(..., description="the speech, used for every video"),
        video: list[UploadFile] | None = File(None, description="videos or photos; repeat the field for each"),
        presenter: list[str] | None = Form(None, description="presenter ids; repeat the field for each"),
        engine: str | None = Form(None), face: str | None = Form(None),
        length: str | None = Form(None), crf: str | None = Form(None),
        still: str | None = Form(None, description=_STILL_FIELD),
        mouth: str | None = Form(None, description=_MOUTH_FIELD),
    ):
        if len((await request.form()).getlist("audio")) > 1:
            return error_response(400, "give one audio field (the speech), used for every video")
        batch = await run_in_threadpool(submit, audio, video or [], presenter or [], engine, face, length, crf,
                                        still, mouth)
        return batch if isinstance(batch, JSONResponse) else batch.to_json()

    @router.get("/jobs")
    def list_jobs(state: str | None = None, limit: int = 100):
        if state is not None and state not in STATES:
            return error_response(400, f"state must be one of {', '.join(STATES)}, not {state!r}")
        jobs = queue.jobs([state] if state else None, limit=max(1, min(limit, 1000)))
        return {"jobs": [job.to_json() for job in jobs]}

    @router.get("/jobs/{job_id}")
    def get_job(job_id: str):
        return _answer(lambda: queue.job(job_id).to_json(), f"no job {job_id}")

    # Files answer HEAD too: `curl -I`, a download manager's first ask (405 before).
    @router.get("/jobs/{job_id}/result")
    @router.head("/jobs/{job_id}/result", include_in_schema=False)
    def get_result(job_id: str):
        def result():
            job = queue.job(job_id)
            if job.state != SUCCEEDED:
                raise HeyGemError(job.error if job.state == "failed" else f"the job is {job.state}; its result is not ready")
            return _serve(queue, job.output, "video/mp4")  # 404 when its file is gone, or is no longer a plain file

        return _answer(result, f"no job {job_id}")

    @router.post("/jobs/{job_id}/cancel")
    def cancel_job(job_id: str):
        return _answer(lambda: queue.cancel(job_id).to_json(), f"no job {job_id}")

    @router.delete("/jobs/{job_id}")
    def delete_job(job_id: str):
        return _answer(lambda: queue.delete(job_id) or {"deleted": job_id}, f"no job {job_id}")

    @router.get("/batches/{batch_id}")
    def get_batch(batch_id: str):
        return _answer(lambda: queue.batch(batch_id).to_json(), f"no batch {batch_id}")

    @router.get("/batches/{batch_id}/zip")
    @router.head("/batches/{batch_id}/zip", include_in_schema=False)
    def get_zip(batch_id: str):
        return _answer(lambda: _serve(queue, queue.zip_batch(batch_id), "application/zip"), f"no batch {batch_id}")

    @router.post("/batches/{batch_id}/cancel")
    def cancel_batch(batch_id: str):
        return _answer(lambda: queue.cancel_batch(batch_id).to_json(), f"no batch {batch_id}")

    presenters = queue.presenters

    @router.post("/presenters", status_code=201)
    async def add_presenter(request: Request,
                            video: UploadFile = File(..., description="a video or photo of the presenter's face"),
                            name: str = Form("", description="the name jobs and lists show (default: the file's name)")):
        if not video.filename:
            return error_response(400, "the video field holds no file")
        # FastAPI keeps only the last of repeated fields: a presenter's second video had been taken, the first dropped.
        if len((await request.form()).getlist("video")) > 1:
            return error_response(400, "POST /api/presenters takes one video or photo; add each presenter on its own")
        return await run_in_threadpool(add_presenter_file, video, name)

    def add_presenter_file(video: UploadFile, name: str):
        with tempfile.TemporaryDirectory(dir=queue.root, prefix=".upload-") as folder:
            try:
                saved = stored_upload(video, Path(folder), 0)
                return presenters.add(saved, name, file_name=upload_name(video, "video")).to_json()
            except HeyGemError as exc:
                return refused(exc)

    @router.get("/presenters")
    def list_presenters():
        return {"presenters": [presenter.to_json() for presenter in presenters.list()]}

    @router.get("/presenters/{presenter_id}")
    def get_presenter(presenter_id: str):
        return _answer(lambda: presenters.get(presenter_id).to_json(), f"no presenter {presenter_id}")

    @router.patch("/presenters/{presenter_id}")
    def rename_presenter(presenter_id: str, name: str = Form(..., description="the new name")):
        try:
            return presenters.rename(presenter_id, name).to_json()
        except KeyError:
            return error_response(404, f"no presenter {presenter_id}")
        except HeyGemError as exc:  # a blank name
            return error_response(400, str(exc))

    @router.delete("/presenters/{presenter_id}")
    def delete_presenter(presenter_id: str):
        return _answer(lambda: presenters.delete(presenter_id) or {"deleted": presenter_id},
                       f"no presenter {presenter_id}")

    @router.get("/presenters/{presenter_id}/thumbnail")
    @router.head("/presenters/{presenter_id}/thumbnail", include_in_schema=False)
    def get_thumbnail(presenter_id: str):
        def thumbnail():
            presenter = presenters.get(presenter_id)
            if presenter.thumbnail is None:
                raise HeyGemError(f"presenter {presenter.name} is {presenter.state}; it has no thumbnail yet")
            return _serve(queue, presenter.thumbnail, "image/jpeg")

        return _answer(thumbnail, f"no presenter {presenter_id}")

    # Last, so it answers only what no route above does. Without it an unknown /api/... path would fall
    # through to the page mounted at "/" (or to FastAPI's default), which answer {"detail": ...}.
    @router.api_route("", methods=_METHODS, include_in_schema=False)
    @router.api_route("/{rest:path}", methods=_METHODS, include_in_schema=False)
    def no_such_route(request: Request):
        # A route whose path fits but not its method ("partial" to Starlette) makes this a 405.
        fitting = [route for route in router.routes if route.matches(request.scope)[0] is Match.PARTIAL]
        allowed = sorted({method for route in fitting for method in getattr(route, "methods", ())})
        if allowed:
            response = error_response(405, f"{request.method} is not allowed on {request.url.path}; "
                                            f"use {' or '.join(allowed)}")
            response.headers["Allow"] = ", ".join(allowed)
            return response
        return error_response(404, f"no route {request.method} {request.url.path}; the routes are listed "
                                   "at /api/openapi.json and in README.md")

    return router


_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _answer(call: Callable[[], Any], missing: str):
    """``call()``'s answer; an unknown id (KeyError from the queue) is 404 with ``missing``, a job or batch
    not in the state asked for (HeyGemError) is 409 with its reason."""
    try:
        return call()
    except KeyError:
        return error_response(404, missing)
    except HeyGemError as exc:
        return error_response(409, str(exc))


def upload_name(upload: UploadFile, fallback: str) -> str:
    """The upload's file name as a person is shown it (``heygem.jobs.shown_name``: a form sends a quote as %22)."""
    return shown_name(upload.filename or fallback, fallback)


def save_upload(upload: UploadFile, folder: Path, number: int) -> Path:
    """Write an upload into ``folder`` under a safe numbered name."""
    path = folder / f"{number:03d}_{safe_name(upload.filename or '', 'upload')}"
    with path.open("wb") as out:
        shutil.copyfileobj(upload.file, out, 1024 * 1024)
    return path


class _HeldFileResponse(FileResponse):
    """A file sent from a descriptor opened before the answer starts: deleting the job (or the batch, or the
    presenter) while it is downloaded no longer cut the download off mid-body, or made a 500 of it when the
    file went between the check and the send. Read through /proc/self/fd, which opens the file held even once
    its name is gone; the descriptor is closed when the answer is over."""

    def __init__(self, descriptor: int, stat_result: os.stat_result, name: str, media_type: str) -> None:
        super().__init__(f"/proc/self/fd/{descriptor}", stat_result=stat_result, media_type=media_type,
                         filename=name)
        self._descriptor = descriptor

    async def __call__(self, scope, receive, send) -> None:
        try:
            refusal = self._range_refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            await super().__call__(scope, receive, send)
        finally:
            os.close(self._descriptor)

    def _range_refusal(self, scope) -> JSONResponse | None:
        """A ``Range`` this file cannot answer, refused as the rest of the API refuses (``{"error": ...}``, 400 or
        416), where Starlette answers in plain text; None where the range is served (or ignored)."""
        headers = Headers(scope=scope)
        asked = headers.get("range")
        if_range = headers.get("if-range")
        if asked is None or scope["method"].upper() not in ("GET", "HEAD") or \
                (if_range is not None and not self._should_use_range(if_range)):
            return None
        try:
            self._parse_range_header(asked, self.stat_result.st_size)
        except MalformedRangeHeader as exc:
            return error_response(400, f"{self.filename}: the Range header {asked!r} cannot be read: {exc.content}")
        except RangeNotSatisfiable:
            response = error_response(416, f"{self.filename}: the Range {asked!r} starts past the file's "
                                           f"{self.stat_result.st_size} bytes")
            response.headers["Content-Range"] = f"bytes */{self.stat_result.st_size}"
            return response
        return None


def _serve(queue: JobQueue, path: Path | None, media_type: str):
    """Only regular files inside the outputs folder are ever sent (never a symlink, wherever it points)."""
    if not servable(path, queue.root):
        log.error("refused to serve %s: not a regular file under %s", path, queue.root)
        return error_response(404, "file not found")
    assert path is not None
    if not Path("/proc/self/fd").is_dir():  # not Linux: sent by its name
        return FileResponse(path, media_type=media_type, filename=path.name)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:  # gone since the check
        return error_response(404, "file not found")
    held = os.fstat(descriptor)
    if not stat.S_ISREG(held.st_mode):  # replaced since the check (by a folder: O_NOFOLLOW stops a link)
        os.close(descriptor)
        return error_response(404, "file not found")
    return _HeldFileResponse(descriptor, held, path.name, media_type)

