"""The Gradio studio: Single, Batch, Presenters, Live, History and Logs tabs over the one job queue.

The page only submits jobs and reads their state: all work happens in the queue's worker, so closing the
browser loses nothing and a reload shows the same jobs. One timer per open page refreshes what it shows.
The Live tab is the exception: its stream is WebRTC between the browser and the studio's /api/live routes
(heygem.live), driven by the page's script (live.js, LIVE_HEAD); the Python side only lays it out, words it
and keeps its presenter picker current.
"""
from __future__ import annotations

import hashlib
import html
import json
import logging
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

import gradio as gr

from heygem.engines import engine_status, wav2lip_available
from heygem.errors import HeyGemError
from heygem.estimates import Estimate
from heygem.faces.check import FaceCheck, check_face
from heygem.jobs import FAILED, FINISHED, QUEUED, RUNNING, STOPPED, SUCCEEDED, Batch, Job, JobQueue, shown_name
from heygem.media.probe import probe, require_audio_source, require_video_source
from heygem.presenters import FAILED as PRESENTER_FAILED
from heygem.presenters import PREPARING, READY, Presenter
from heygem.logs import log_dir_for
from heygem.settings import ENGINE_CHOICES, LENGTH_CHOICES, PROJECT_ROOT, DetectionOptions, EngineOptions, with_choices
from heygem.ui.texts import EN, GRADIO_EN, GRADIO_ZH, ZH, fallback_words, language, text

log = logging.getLogger(__name__)

__all__ = ["CSS", "FRAMES_SCRIPT", "I18N", "LIVE_HEAD", "THEME", "build_studio"]

# .heic and .heif too: taken, to be told how to save them as JPEG (heygem.media.probe refuses them).
PHOTO_TYPES = [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".avif", ".heic", ".heif"]
VIDEO_TYPES = [".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".wmv", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts"]
AUDIO_TYPES = [".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".opus", ".aiff", ".aif", ".wma"]
LOG_TAIL_BYTES = 200_000
_RECORD_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
TICK_SECONDS = 1.0

_PAGE_ZH = {**ZH, **GRADIO_ZH}
I18N = gr.I18n(en={**EN, **GRADIO_EN}, zh=_PAGE_ZH, **{"zh-CN": _PAGE_ZH, "zh-Hans": _PAGE_ZH})
# System fonts: the default theme would ask Google Fonts, which an offline machine cannot reach.
THEME = gr.themes.Soft(font=["system-ui", "PingFang SC", "Microsoft YaHei", "sans-serif"],
                       font_mono=["ui-monospace", "monospace"])
CSS = """
.hg-job { padding: 10px 12px; border-radius: 8px; background: var(--block-background-fill); }
.hg-line { margin-bottom: 6px; }
.hg-bar { height: 12px; border-radius: 6px; background: var(--border-color-primary); overflow: hidden; }
.hg-bar > div { height: 100%; background: var(--color-accent); transition: width .4s; }
.hg-bar.hg-bar-failed > div { background: #c0392b; }
.hg-bar.hg-bar-cancelled > div { background: var(--body-text-color-subdued); }
.hg-blocked { margin-top: 6px; }
.hg-error { color: #c0392b; margin-top: 6px; white-space: pre-wrap; }
.hg-note { color: var(--body-text-color-subdued); margin-top: 6px; }
.hg-table { width: 100%; border-collapse: collapse; }
.hg-table th, .hg-table td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--border-color-primary); vertical-align: top; }
.hg-table td.hg-small { font-size: 90%; }
.hg-table th { white-space: nowrap; }
.hg-table td .hg-small { font-weight: normal; }
.hg-nowrap { white-space: nowrap; }
.hg-table td.hg-progress { min-width: 150px; }
.hg-state-failed { color: #c0392b; font-weight: 600; }
.hg-state-succeeded { color: #1e8449; font-weight: 600; }
.hg-state-running { color: var(--color-accent); font-weight: 600; }
.hg-table tr.hg-batch td { background: var(--block-background-fill); padding-top: 12px; }
.hg-thumb { width: 64px; height: 64px; object-fit: cover; border-radius: 6px; display: block; }
.hg-thumb-empty { width: 64px; height: 64px; border-radius: 6px; background: var(--border-color-primary); }
.hg-log textarea { font-family: ui-monospace, monospace; font-size: 12px; }
/* Gradio writes "processing | 0.3s" and "queue: 1/2" over a component while an event runs, in English whatever
   the page's language (fixed in its code, not in its translations); the page's own lines say what is going on. */
.progress-text { display: none !important; }
/* An upload field's label wraps before the field's icons (upload more, clear) instead of running under them. */
:is(#single-audio, #single-picture, #batch-audio, #batch-videos, #presenter-file, #live-speech) label[data-testid="block-label"] {
    max-width: calc(100% - 72px); white-space: normal; }
/* The footer keeps one link (Gradio's settings): no divider in front of it. */
footer .divider { display: none !important; }
/* The Live tab's stream: black until the picture comes, never wider than the column. */
#live-video { display: block; width: 100%; max-height: 560px; min-height: 240px; background: #000; border-radius: 8px;
    object-fit: contain; }
#live-state { margin-top: 8px; font-weight: 600; }
"""
# The header's element: the page's first line, there once the page is built (frames.js waits for it).
HEADER_ID = "engine-line"


def _page_script(name: str) -> str:
    """The script heygem/ui/``name`` as a <script> element of the page."""
    return f"<script>\n{(Path(__file__).with_name(name)).read_text(encoding='utf-8')}</script>"


# The Live tab's script (heygem/ui/live.js), put in the page's head: Gradio runs no script inside an HTML field.
LIVE_HEAD = _page_script("live.js")
# heygem/ui/frames.js: it must run before Gradio's modules load, so it goes at the very top of the page's HTML
# (heygem.ui.FirstScript), not in Gradio's head, which its modules add to the page once they run.
FRAMES_SCRIPT = _page_script("frames.js").replace("__READY_ID__", HEADER_ID)


def _lang(request: gr.Request | None) -> str:
    return language(request.headers.get("accept-language") if request is not None else None)


def _stage(lang: str, stage: str, job: Job | None = None) -> str:
    """A stage as a person reads it; a job's photo reads as a photo ("reading the photo")."""
    key = f"stage_{stage}"
    if job is not None and job.video_path.suffix.lower() in PHOTO_TYPES and f"{key}_photo" in EN:
        key += "_photo"
    return text(lang, key) if key in EN else stage


def _state(lang: str, state: str) -> str:
    return text(lang, f"state_{state}")


def _queued_words(lang: str, ahead: int, wait: float | None = None) -> str:
    """How many jobs are ahead and, once the rates of this machine are measured, about when it starts."""
    words = text(lang, "queued_next" if ahead == 0 else "queued_one_ahead" if ahead == 1 else "queued_behind", ahead=ahead)
    if wait is not None and ahead:
        words += text(lang, "sentence_gap") + text(lang, "starts_in", wait=clock(wait))
    return words


def _state_words(lang: str, job: Job) -> str:
    """The state as a person reads it; a running job asked to cancel says so until it stops."""
    return _stage(lang, "cancelling") if job.cancelling else _state(lang, job.state)


def duration_text(lang: str, seconds: float) -> str:
    """``1 h 05 min``, ``12 min 30 s``, ``45 s`` (``1 小时 05 分`` ...): a limit or a length as a person reads it."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return text(lang, "hours_minutes", hours=hours, minutes=minutes)
    if minutes:
        return text(lang, "minutes_seconds", minutes=minutes, seconds=secs) if secs else text(lang, "minutes_only", minutes=minutes)
    return text(lang, "seconds_only", seconds=secs)


def coded_words(lang: str, key: str, params: dict[str, Any], fallback: str) -> str:
    """The text ``key`` of the locale table filled with a reason's or note's values (heygem.errors), in the
    page's language; ``fallback`` (the stored English words) for a key the table does not know or values it
    cannot fill."""
    if key not in EN:
        return fallback
    values = dict(params)
    if "file" in values:  # only ever a name on the page, never a path of the server
        values["file"] = upload_name(str(values["file"]))
    for seconds_key, words_key in (("length_seconds", "length"), ("limit_seconds", "limit")):  # in the page's words
        if seconds_key in values:
            values[words_key] = duration_text(lang, values.pop(seconds_key))
    try:
        return text(lang, key, **values)
    except (KeyError, IndexError, ValueError):  # a value the template needs is missing
        log.warning("%s lacks a value for its words (%s); showing the stored text", key, values)
        return fallback


def reason_words(lang: str, code: str | None, params: dict[str, Any], fallback: str) -> str:
    """A failure's reason in the page's language, from its code and values; ``fallback`` (the stored English
    words) for a reason without a code, or with one the table does not know."""
    return coded_words(lang, f"reason_{code}", params, fallback) if code else fallback


def job_reason(lang: str, job: Job) -> str:
    """Why the job failed, in the page's language."""
    return reason_words(lang, job.error_code, job.error_params, job.error or "")


def job_notes(lang: str, noted: Job | Presenter) -> list[str]:
    """What a result says about its video, or a presenter's preparation about its footage, in the page's language
    (a note without a known code as stored)."""
    coded = list(noted.note_codes) + [None] * (len(noted.notes) - len(noted.note_codes))
    return [coded_words(lang, code[0], code[1], note) if code else note for note, code in zip(noted.notes, coded)]


def device_words(lang: str, device: str) -> str:
    """``cpu`` as CPU; ``cuda``, ``cuda:0`` or ``cuda (NVIDIA H200)`` as GPU with its name."""
    if device == "cpu":
        return text(lang, "device_cpu")
    match = re.match(r"cuda(?::\d+)?(?: \((.+)\))?$", device)
    if match:
        return text(lang, "device_gpu") + (f" {match.group(1)}" if match.group(1) else "")
    return device


# The drives as the engines describe them (EngineDescription.drive), and the page's words for them.
_DRIVE_WORDS = {"phones": "drive_speech sounds", "loudness": "drive_loudness"}


def engine_words(lang: str, engine: str | None, info: dict[str, Any] | None = None) -> str:
    """A job's engine line in the page's language, from what the engine said of itself as data (``info``,
    heygem.engines.base.EngineDescription as stored with the job); without it (a job stored before), or for an
    engine the page has no words for, the stored line ``engine`` as it is."""
    from heygem.engines import EngineDescription

    if not info:
        return engine or ""
    about = EngineDescription.from_dict(info)
    drive = text(lang, _DRIVE_WORDS.get(about.drive or "", "drive_loudness"))
    if about.engine == "wav2lip":
        line = text(lang, "engine_run_wav2lip", checkpoint=about.checkpoint, batch=about.batch,
                    device=device_words(lang, about.device or ""), precision=text(lang, f"precision_{about.precision}"))
    elif about.engine == "builtin" and about.mode == "morph":
        line = text(lang, "engine_run_builtin", keys=len(about.keys), drive=drive)
    elif about.engine == "builtin" and about.mode == "footage":
        line = text(lang, "engine_run_builtin_footage", frames=about.units, drive=drive)
    elif about.engine == "builtin" and about.mode == "photo":
        line = text(lang, "engine_run_builtin_photo", drive=drive)
        if about.motion:  # blinks and head motion, or kept still
            line = text(lang, f"engine_run_motion_{about.motion}", line=line)
    elif about.engine == "builtin":
        line = text(lang, "engine_run_builtin_plain")
    else:
        return engine or about.engine
    made_do = fallback_words(lang, about.fallbacks)
    if not made_do:
        return line
    return text(lang, "engine_run_with_fallbacks", line=line,
                fallbacks=text(lang, "engine_run_fallback_separator").join(made_do))


def _bar(fraction: float, state: str = "") -> str:
    """A progress bar; a failed or cancelled job's stops where the job stopped, in red or grey (a full bar in
    the accent colour means done)."""
    stopped = f" hg-bar-{state}" if state in STOPPED else ""
    return f'<div class="hg-bar{stopped}"><div style="width:{max(0.0, min(1.0, fraction)) * 100:.0f}%"></div></div>'


# Where each stage sits in a job's whole run (start, end), for one bar over all stages: the stored progress is
# the stage's own fraction. Rough shares of a typical job's time (the time left comes from measured rates).
STAGE_SPANS = {"starting": (0.0, 0.0), "audio": (0.0, 0.05), "probe": (0.05, 0.1), "study": (0.1, 0.17),
               "phones": (0.17, 0.2), "lip-sync": (0.2, 0.95), "encode": (0.95, 1.0), "done": (1.0, 1.0)}


def overall_progress(job: Job) -> float:
    """How far the job is through all its stages, 0..1: done ones 1, queued ones 0, failed and cancelled ones
    where they stopped (0 for one stored before the stage was kept)."""
    if job.state == SUCCEEDED:
        return 1.0
    if job.state not in (RUNNING, *STOPPED) or job.stage not in STAGE_SPANS:
        return 0.0
    start, end = STAGE_SPANS[job.stage]
    return start + (end - start) * max(0.0, min(1.0, job.progress))


def clock(seconds: float) -> str:
    """``0:42``, ``12:05``, ``1:02:03``: a duration as a person reads it."""
    whole = max(0, int(round(seconds)))
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def timing_words(lang: str, elapsed: float, left: float | None) -> str:
    """Elapsed time and the time left (heygem.estimates: from the stage rates measured on this machine);
    "estimating…" until they are known."""
    if left is None:
        return text(lang, "elapsed_estimating", elapsed=clock(elapsed))
    return text(lang, "elapsed_left", elapsed=clock(elapsed), left=clock(left))


def running_words(lang: str, job: Job, now: float | None = None, estimate: Estimate | None = None) -> str:
    """A running job's percentage (over all stages), elapsed time and time left."""
    elapsed = (now or time.time()) - (job.started or job.created)
    left = estimate.left if estimate is not None else None
    return f"{text(lang, 'percent', percent=overall_progress(job) * 100)} · {timing_words(lang, elapsed, left)}"


def batch_progress_words(jobs: list[Job], lang: str, now: float | None = None,
                         estimates: dict[str, Estimate] | None = None) -> str:
    """The whole batch's percentage, elapsed time and time left (until its last job is done) while any job is
    unfinished; "" once all are, or before any has started."""
    unfinished = [job for job in jobs if job.state not in FINISHED]
    started = [job.started for job in jobs if job.started]
    if not unfinished:
        return ""
    if not started:  # all waiting: when the first starts and the last is done, once this machine's rates tell
        first, last = ((estimates or {}).get(job.id, Estimate(None)) for job in (jobs[0], jobs[-1]))
        if first.wait is None or last.left is None:
            return ""
        return text(lang, "batch_waiting", wait=clock(first.wait), left=clock(last.left))
    fraction = sum(1.0 if job.state in FINISHED else overall_progress(job) for job in jobs) / len(jobs)
    lefts = [(estimates or {}).get(job.id, Estimate(None)).left for job in unfinished]
    left = None if any(value is None for value in lefts) else max(lefts)
    elapsed = (now or time.time()) - min(started)
    return text(lang, "batch_progress", percent=fraction * 100, timing=timing_words(lang, elapsed, left))


def _on_worker(lang: str, job: Job) -> str:
    """`` · worker 2 on host (CPU)`` for a job run by a cluster's worker (heygem.cluster), in the page's
    language; nothing otherwise. The job stores the cluster's label, ``worker-2 on host (cpu)``."""
    if not job.worker:
        return ""
    match = re.match(r"worker-(\d+) on (.+) \((.+)\)$", job.worker)
    if match is None:
        return f" · {html.escape(job.worker)}"
    number, host, device = match.groups()
    return " · " + html.escape(text(lang, "on_worker", number=number, host=host, device=device_words(lang, device)))


def _failed_file(lang: str, job: Job) -> str:
    """The file a job's card is headed by: its video, or its speech when the failure is the speech's."""
    failed = str(job.error_params.get("file") or "")
    if job.state == FAILED and failed and upload_name(failed) == job.audio_name and job.audio_name != job.video_name:
        return text(lang, "the_speech", name=job.audio_name)
    return job.video_name


def job_status_html(job: Job, lang: str, ahead: int = 0, estimate: Estimate | None = None) -> str:
    """One job's progress card: the file, state and stage, a bar, and the reason when it failed."""
    name = html.escape(_failed_file(lang, job))
    state = _state(lang, job.state)
    if job.cancelling:
        detail = f"{state} · {_stage(lang, 'cancelling')}"
    elif job.state == RUNNING:
        detail = (f"{state} · {html.escape(_stage(lang, job.stage, job))} · "
                  f"{running_words(lang, job, estimate=estimate)}{_on_worker(lang, job)}")
    elif job.state == QUEUED:
        detail = _queued_words(lang, ahead, estimate.wait if estimate is not None else None)
    elif job.state == SUCCEEDED and job.started and job.finished:
        detail = f"{state} · {text(lang, 'took', seconds=job.finished - job.started)} · {html.escape(engine_words(lang, job.engine, job.engine_info))}{_on_worker(lang, job)}"
    elif job.state in STOPPED and job.stage in STAGE_SPANS and job.stage != "starting":  # where its bar stops
        detail = text(lang, "stopped_while", state=state, stage=_stage(lang, job.stage, job))
    else:
        detail = state
    parts = [f'<div class="hg-job" data-state="{job.state}" data-cancelling="{str(job.cancelling).lower()}">'
             f'<div class="hg-line"><b>{name}</b> — {detail}</div>', _bar(overall_progress(job), job.state)]
    if job.error:
        parts.append(f'<div class="hg-error">{html.escape(job_reason(lang, job))}</div>')
    parts.extend(f'<div class="hg-note">{html.escape(note)}</div>' for note in job_notes(lang, job))
    parts.append("</div>")
    return "".join(parts)


def message_html(message: str) -> str:
    return f'<div class="hg-job" data-state="error"><div class="hg-error">{html.escape(message)}</div></div>'


def batch_downloads_html(batch_id: str, jobs: list[Job], lang: str) -> tuple[str, str]:
    """The batch's ZIP link and a link to each finished result, served by the API's routes (same origin, same
    login as the page). Links, not files handed to the page: Gradio hashes every file a page is given and copies
    it into its cache, so a page handed the growing ZIP and the list of results at each new result read, and
    copied into outputs/.gradio, about N squared over two results' bytes for a batch of N (kept there a day)."""
    done = [job for job in jobs if job.finished_ok and job.output is not None]
    if not done:
        return "", ""
    archive = (f'<p class="hg-files"><a class="hg-zip" href="/api/batches/{html.escape(batch_id)}/zip" download>'
               f'{html.escape(text(lang, "zip"))}</a> <span class="hg-small">'
               f'{html.escape(text(lang, "zip_count", count=len(done)))}</span></p>')
    links = "".join(f'<li><a href="/api/jobs/{html.escape(job.id)}/result" download>{html.escape(job.output.name)}'
                    '</a></li>' for job in done)
    heading = f'<p class="hg-files"><b>{html.escape(text(lang, "batch_results"))}</b></p>'
    return archive, f'{heading}<ul class="hg-files">{links}</ul>'


def batch_table_html(jobs: list[Job], lang: str, estimates: dict[str, Estimate] | None = None) -> str:
    """The live table of a batch: one row per video with its state, a progress bar, the time it took, the engine
    that made it (which says when a photo took the simpler photo path) and the reason of a failure or its notes."""
    keys = ("col_video", "col_state", "col_progress", "col_time", "col_engine", "col_detail")
    head = "".join(f"<th>{text(lang, key)}</th>" for key in keys)
    rows = []
    estimates = estimates or {}
    for number, job in enumerate(jobs, start=1):
        if job.error:
            detail = job_reason(lang, job)
        elif job.state == RUNNING:
            detail = _stage(lang, job.stage, job)
        else:
            detail = "; ".join(job_notes(lang, job))
        estimate = estimates.get(job.id)
        words = ""
        if job.state == RUNNING and not job.cancelling:
            words = running_words(lang, job, estimate=estimate)
        elif job.state == QUEUED and estimate is not None and estimate.wait is not None:
            words = text(lang, "starts_in_short", wait=clock(estimate.wait))
        took = (text(lang, "seconds", seconds=job.finished - job.started)
                if job.state == SUCCEEDED and job.started and job.finished else "")
        rows.append(
            f'<tr data-state="{job.state}"><td>{number}. {html.escape(job.video_name)}</td>'
            f'<td class="hg-state-{job.state} hg-nowrap">{_state_words(lang, job)}</td>'
            f'<td class="hg-progress">{_bar(overall_progress(job), job.state)}<span class="hg-small">{html.escape(words)}</span></td>'
            f'<td class="hg-small hg-nowrap">{took}</td>'
            f'<td class="hg-small">{html.escape(engine_words(lang, job.engine, job.engine_info))}</td>'
            f'<td class="hg-small">{html.escape(detail or "")}</td></tr>')
    return f'<table class="hg-table" id="batch-table"><tr>{head}</tr>{"".join(rows)}</table>'


def _short_time(stamp: float) -> str:
    """``12-01 16:40``: a date and time on one short line, as History and its picker show them."""
    return time.strftime("%m-%d %H:%M", time.localtime(stamp))


def _history_state(lang: str, job: Job, estimate: Estimate | None = None) -> str:
    """A job's state in History: running ones with their stage and progress, failed ones with the reason."""
    words = html.escape(_state_words(lang, job))
    if job.state == RUNNING and not job.cancelling:
        words += f" · {html.escape(_stage(lang, job.stage, job))} · {html.escape(running_words(lang, job, estimate=estimate))}"
    if job.error:
        words += f"<br><span class=hg-small>{html.escape(job_reason(lang, job))}</span>"
    return words


def history_table_html(jobs: list[Job], lang: str, estimates: dict[str, Estimate] | None = None) -> str:
    """Every job, queued and running ones too, grouped by batch (newest batch first): each batch's row names its
    speech and, once a result is done, links the ZIP of its finished results."""
    if not jobs:
        return f"<p>{text(lang, 'no_history')}</p>"
    batches: dict[str, list[Job]] = {}
    for job in jobs:
        batches.setdefault(job.batch_id, []).append(job)
    head = "".join(f"<th>{text(lang, key)}</th>" for key in ("col_when", "col_video", "col_state", "col_engine"))
    rows = []
    for batch_id, members in batches.items():
        members = sorted(members, key=lambda job: job.seq)
        when = _short_time(members[0].created)
        title = html.escape(text(lang, "history_batch", when=when, audio=members[0].audio_name, videos=len(members)))
        # The API's route builds and serves the ZIP (same origin, same login as the page).
        link = (f' · <a class="hg-zip" href="/api/batches/{batch_id}/zip" download>{text(lang, "history_zip")}</a>'
                if any(job.finished_ok for job in members) else "")
        rows.append(f'<tr class="hg-batch" data-batch="{batch_id}"><td colspan="4"><b>{title}</b>{link}</td></tr>')
        for job in members:
            finished = _short_time(job.finished) if job.finished else ""
            rows.append(
                f'<tr data-state="{job.state}" data-batch="{batch_id}"><td class="hg-small hg-nowrap">{finished}</td>'
                f"<td>{html.escape(job.video_name)}</td><td class=\"hg-state-{job.state}\">{_history_state(lang, job, (estimates or {}).get(job.id))}</td>"
                f'<td class="hg-small">{html.escape(engine_words(lang, job.engine, job.engine_info))}{_on_worker(lang, job)}</td></tr>')
    return f'<table class="hg-table" id="history-table"><tr>{head}</tr>{"".join(rows)}</table>'


def history_choices(jobs: list[Job]) -> list[tuple[str, str]]:
    """Dropdown entries for finished results: label ``video · speech · 12-01 16:40`` (the names as uploaded, so
    results of one presenter with different speeches, or one speech made twice, tell apart), value the job id."""
    return [
        (f"{job.video_name} · {job.audio_name} · {_short_time(job.finished or job.created)}", job.id)
        for job in jobs if job.finished_ok
    ]


# ---- the presenters library -------------------------------------------------------------------------------


def _presenter_stage(lang: str, stage: str) -> str:
    key = f"presenter_stage_{stage}"
    return text(lang, key) if key in EN else stage


def _presenter_state(lang: str, presenter: Presenter) -> str:
    """State cell: preparing with its stage and a bar, ready, or failed with the reason."""
    words = html.escape(text(lang, f"presenter_state_{presenter.state}"))
    if presenter.state == PREPARING:
        stage = html.escape(_presenter_stage(lang, presenter.stage))
        return f"{words} · {stage} · {presenter.progress * 100:.0f}%{_bar(presenter.progress)}"
    if presenter.state == PRESENTER_FAILED and presenter.error:
        reason = reason_words(lang, presenter.error_code, presenter.error_params, presenter.error)
        return f'{words}<br><span class="hg-small">{html.escape(reason)}</span>'
    return words


def _faces_found(lang: str, presenter: Presenter) -> str:
    if presenter.faces_found is None:
        return text(lang, "faces_pending")
    if presenter.kind == "image" and presenter.frames <= 1:
        return text(lang, "faces_in_photo") if presenter.faces_found else text(lang, "faces_of_frames", found=0, frames=1)
    return text(lang, "faces_of_frames", found=presenter.faces_found, frames=presenter.frames)


def presenters_table_html(presenters: list[Presenter], lang: str) -> str:
    """The library as a table: the face, name, length, resolution, frames with a face, and state (with what its
    preparation found: a video missing its last frames, a sound out of step with its picture)."""
    if not presenters:
        return f'<p id="presenters-empty">{text(lang, "no_presenters")}</p>'
    keys = ("col_face", "col_name", "col_length", "col_size", "col_faces", "col_state")
    head = "".join(f"<th>{text(lang, key)}</th>" for key in keys)
    rows = []
    for presenter in presenters:
        # The API's route serves the thumbnail (same origin, same login as the page).
        face = (f'<img class="hg-thumb" alt="" src="/api/presenters/{presenter.id}/thumbnail">' if presenter.thumbnail
                else '<div class="hg-thumb-empty"></div>')
        length = text(lang, "photo") if presenter.kind == "image" else text(lang, "seconds", seconds=presenter.duration)
        rows.append(
            f'<tr data-state="{presenter.state}" data-id="{presenter.id}"><td>{face}</td>'
            f"<td><b>{html.escape(presenter.name)}</b><br><span class=hg-small>{html.escape(presenter.file_name)}</span></td>"
            f"<td>{length}</td><td>{presenter.width}×{presenter.height}</td><td>{_faces_found(lang, presenter)}</td>"
            f'<td class="hg-state-{_PRESENTER_STATE_CLASS[presenter.state]}">{_presenter_state(lang, presenter)}'
            + "".join(f'<div class="hg-note">{html.escape(note)}</div>' for note in job_notes(lang, presenter))
            + "</td></tr>")
    return f'<table class="hg-table" id="presenters-table"><tr>{head}</tr>{"".join(rows)}</table>'


# The colours of the job states (ready reads as done, preparing as running).
_PRESENTER_STATE_CLASS = {PREPARING: RUNNING, READY: SUCCEEDED, PRESENTER_FAILED: FAILED}


def presenter_choices(presenters: list[Presenter], lang: str, usable_only: bool = True) -> list[tuple[str, str]]:
    """Dropdown entries (label, id). usable_only: only ready or preparing ones, as jobs may pick them."""
    return [(text(lang, "choice_preparing", name=p.name) if p.state == PREPARING else p.name, p.id)
            for p in presenters if not usable_only or p.state in (PREPARING, READY)]


def _library_look(presenters: list[Presenter]) -> tuple:
    """Everything the library table shows: it is sent again only when this changes."""
    return tuple((p.id, p.name, p.state, p.stage, round(p.progress, 2), p.faces_found, p.error) for p in presenters)


def _choices_look(presenters: list[Presenter]) -> tuple:
    """Everything the pickers show: their choices are sent again only when this changes (not at each tick, so an
    open dropdown is left alone)."""
    return tuple((p.id, p.name, p.state) for p in presenters)


# ---- the Live tab ------------------------------------------------------------------------------------------


def refreshed_picker(choices: list[tuple[str, str]], held: str | list[str] | None,
                     pick: str | None = None) -> dict[str, Any]:
    """A picker's update to new ``choices``. Its value is sent only where it must change: ``pick`` (given and
    there), or what it ``held`` when the refresh was asked is gone (emptied; a multiple picker keeps the rest).
    Otherwise the person may have picked meanwhile, and a value sent would undo that pick (a tab's refresh that
    came back after a pick undid it, and the rename that followed renamed nothing)."""
    there = {value for _, value in choices}
    if pick in there:
        return gr.update(choices=choices, value=pick)
    if isinstance(held, list):
        kept = [value for value in held if value in there]
        return gr.update(choices=choices) if kept == held else gr.update(choices=choices, value=kept)
    return gr.update(choices=choices) if not held or held in there else gr.update(choices=choices, value=None)


def live_choices(presenters: list[Presenter]) -> list[tuple[str, str]]:
    """The Live tab's picker (label, id): only ready presenters can go live (heygem.live.sessions)."""
    return [(p.name, p.id) for p in presenters if p.state == READY]


def live_stage_html(lang: str, queue: JobQueue) -> str:
    """The Live tab's stage: the stream's <video>, the session's state and figures and a line for notes, with
    the words its script (live.js) shows, in the page's language (``data-live``: the templates and the values
    the studio knows for them, such as its live-session limit)."""
    from heygem.live.sessions import REQUIREMENTS

    limits = queue.defaults.limits
    texts = {key: text(lang, key) for key in EN
             if key.startswith(("live_", "reason_live_", "presenter_state_")) or key == "reason_disk_full"}
    params = {"requirements": REQUIREMENTS, "limit": limits.live_sessions, **limits.raise_params("live_sessions")}
    data = html.escape(json.dumps({"texts": texts, "params": params}, ensure_ascii=False), quote=True)
    return (f'<div id="live-stage" data-state="" data-live="{data}">'
            '<video id="live-video" autoplay playsinline></video>'
            f'<div id="live-state">{html.escape(text(lang, "live_idle"))}</div>'
            '<div id="live-figures" class="hg-note"></div><div id="live-message"></div></div>')


def _digest(look: tuple) -> str:
    """A short stand-in for a part's look in a page's state: the page keeps it, and Gradio compares it each second."""
    return hashlib.blake2b(repr(look).encode(), digest_size=12).hexdigest()


def _links_look(batch: Batch, lang: str) -> str:
    """What a batch's download links show: "<batch>/<finished results>/<batch over>/<language>"."""
    return f"{batch.id}/{sum(job.finished_ok for job in batch.jobs)}/{int(batch.done)}/{lang}"


def _history_look(queue: JobQueue) -> tuple:
    """What History shows, in brief: it is sent again only when this changes (a job came, moved on or ended)."""
    return tuple((job.id, job.state, job.stage, round(job.progress, 1), job.cancel_requested)
                 for job in queue.jobs(limit=500))


# The page's script that writes a submitted job's or batch's id into the address (?job=... / ?batch=...), so a
# reload, or the address opened again, finds the work again, and into this browser's storage, so the studio
# opened afresh in this browser finds its unfinished work. Replaces the entry: Back still leaves the page.
_REMEMBER_JS = """(id) => {
    if (id) { const url = new URL(window.location.href); url.searchParams.set('%s', id);
              window.history.replaceState(window.history.state, '', url);
              try { localStorage.setItem('heygem-%s', id); } catch (e) {} }
    return [];
}"""
# At load: what this browser remembers having submitted, for the page's restore; and a watch for the person's
# own choice of a tab, which the restored work must not undo (it answers after the page is usable).
_RECALL_JS = """() => {
    document.addEventListener('click', (event) => {
        if (event.isTrusted && event.target.closest('[role=tab]')) window.heygemTabPicked = true;
    }, true);
    const get = (key) => { try { return localStorage.getItem(key) || ''; } catch (e) { return ''; } };
    return [get('heygem-job'), get('heygem-batch')];
}"""
# The restored work's tab, unless the person has picked one since the page loaded.
_OPEN_TAB_JS = """(tab) => {
    if (tab && !window.heygemTabPicked) {
        const button = document.getElementById('tab-' + tab + '-button')
            || [...document.querySelectorAll('[role=tab]')].find((b) => b.getAttribute('aria-controls') === 'tab-' + tab);
        if (button) button.click();
    }
    return [];
}"""


def restored_work(queue: JobQueue, query: dict[str, str], remembered_job: str | None = None,
                  remembered_batch: str | None = None) -> tuple[str | None, str | None]:
    """(job id for Single, batch id for Batch) a newly loaded page shows: those in its address (``?job=``,
    ``?batch=``) that still exist; without either, those this browser remembers having submitted while they are
    unfinished. Never work this browser did not submit (another's page, the API)."""

    def job(job_id: str | None, unfinished_only: bool) -> str | None:
        try:
            found = queue.job(job_id) if job_id else None
        except KeyError:
            return None
        return found.id if found is not None and (not unfinished_only or found.state not in FINISHED) else None

    def batch(batch_id: str | None, unfinished_only: bool) -> str | None:
        try:
            found = queue.batch(batch_id) if batch_id else None
        except KeyError:
            return None
        return found.id if found is not None and (not unfinished_only or not found.done) else None

    single, many = job(query.get("job"), False), batch(query.get("batch"), False)
    if single or many:
        return single, many
    return job(remembered_job, True), batch(remembered_batch, True)


def log_tail(log_file: Path, lines: int = 150) -> str:
    """The newest records of the log, newest first, without DEBUG detail (the file keeps it). Read from the
    file's end only: it may be large."""
    try:
        with log_file.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - LOG_TAIL_BYTES))
            data = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    records: list[list[str]] = []
    for line in data.splitlines():
        if _RECORD_START.match(line):
            records.append([line])
        elif records:  # a traceback's lines belong to the record above them
            records[-1].append(line)
    shown = [record for record in records if _RECORD_START.match(record[0]).group(1) != "DEBUG"]
    return "\n".join("\n".join(record) for record in reversed(shown[-lines:]))


def relative_paths(log_text: str, folders: list[Path]) -> str:
    """``log_text`` with every path under one of ``folders`` written relative to it (the log names files by
    their absolute paths, long and alike; the page shows them as the project's own ``outputs/...``)."""
    prefixes = {f"{folder}{os.sep}" for folder in folders} | {f"{folder.resolve()}{os.sep}" for folder in folders}
    for prefix in sorted(prefixes, key=len, reverse=True):  # the deepest folder first, so a shorter prefix cannot cut it
        log_text = log_text.replace(prefix, "")
    return log_text


def upload_name(path: str) -> str:
    """An uploaded file's name as its owner wrote it: Gradio keeps it as the path's last component, still in the
    form's encoding (``a%22b.mp4`` for ``a"b.mp4``): ``heygem.jobs.shown_name``."""
    return shown_name(Path(path).name, "upload")


def upload_problem(path: str | None, role: Literal["speech", "picture"], lang: str) -> str:
    """What is wrong with an upload, said in the page's words ("" when it is fine or absent).

    role: ``speech`` (needs sound) or ``picture`` (needs a video or photo). ffprobe's own words go to the log.
    """
    if not path:
        return ""
    name = upload_name(path)
    try:
        info = probe(path)
    except HeyGemError as exc:
        log.info("upload %s (%s) cannot be read: %s", name, role, exc)
        if exc.code == "photo_too_large":  # a photo all the same, with more pixels than HeyGem decodes
            return coded_words(lang, "reason_photo_too_large", exc.params, str(exc))
        return text(lang, "bad_speech" if role == "speech" else "bad_picture", name=name)
    try:
        require_audio_source(info) if role == "speech" else require_video_source(info)
    except HeyGemError as exc:
        log.info("upload %s (%s) does not fit: %s", name, role, exc)
        return text(lang, "speech_silent" if role == "speech" else "picture_is_sound", name=name)
    return ""


# The quick face checks made at upload, by file and part of the video looked at: the same check is asked again
# when the speech changes and when the page submits, and costs a second or so each time.
_FACE_CHECKS: OrderedDict[tuple, FaceCheck | None] = OrderedDict()
_FACE_CHECKS_LOCK = threading.Lock()


def _face_check(path: str, detection: DetectionOptions, seconds: float | None) -> FaceCheck | None:
    """heygem.faces.check on ``path`` (None when it could not tell: the job then says why), remembered."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (path, stat.st_size, stat.st_mtime_ns, None if seconds is None else round(seconds, 1), detection.detector,
           detection.detect_size, detection.box)
    with _FACE_CHECKS_LOCK:
        if key in _FACE_CHECKS:
            return _FACE_CHECKS[key]
    try:
        found = check_face(path, detection, seconds)
    except HeyGemError as exc:
        log.info("upload %s: the face check could not look (%s)", Path(path).name, exc)
        found = None
    with _FACE_CHECKS_LOCK:
        _FACE_CHECKS[key] = found
        while len(_FACE_CHECKS) > 256:
            _FACE_CHECKS.popitem(last=False)
    return found


def _speech_seconds(path: str | None) -> float | None:
    """How long a readable speech upload lasts (None without one): a job uses that much of the video."""
    if not path:
        return None
    try:
        info = require_audio_source(probe(path))
    except HeyGemError:
        return None
    return info.audio_duration or info.duration


def picture_problem(path: str | None, lang: str, detection: DetectionOptions, speech: str | None = None) -> str:
    """What is wrong with a presenter upload, in the page's words ("" when it is fine or absent): unreadable,
    only sound, or no face in the frames looked at over the part of it a job with ``speech`` would use (all of
    it while no speech is known)."""
    problem = upload_problem(path, "picture", lang)
    if problem or not path:
        return problem
    check = _face_check(path, detection, _speech_seconds(speech))
    if check is None or check.found:
        return ""
    name = upload_name(path)
    if check.frames <= 1:
        return text(lang, "no_face_photo", name=name)
    return text(lang, "no_face_looked", name=name, frames=check.frames)


def blocked_html(lang: str, problems: list[str]) -> str:
    """Why Generate or Start batch does nothing yet: the problems of the uploads, under the buttons."""
    shown = [problem for problem in problems if problem]
    if not shown:
        return ""
    reasons = "".join(f'<div class="hg-error">{html.escape(problem)}</div>' for problem in shown)
    return (f'<div class="hg-job hg-blocked" data-state="blocked"><div class="hg-line"><b>'
            f'{html.escape(text(lang, "blocked"))}</b></div>{reasons}</div>')


def _blocking(lang: str, problems: list[str]) -> list:
    """The submit button (usable only without problems) and the line under it that says why not."""
    shown = blocked_html(lang, problems)
    return [gr.update(interactive=not shown), gr.update(value=shown, visible=bool(shown))]


def problems_html(problems: list[str]) -> str:
    """The upload problems as the page shows them under the file field; nothing when there are none."""
    shown = [problem for problem in problems if problem]
    return "".join(message_html(problem) for problem in shown)


def _problems_field(problems: list[str]) -> dict:
    """The field under an upload: shown only when something is wrong (an empty one would leave a gap)."""
    shown = problems_html(problems)
    return gr.update(value=shown, visible=bool(shown))


def engine_choices(options: EngineOptions) -> tuple[list[str], str]:
    """The engines the Options offer and the key of the line that explains them: wav2lip is left out, with
    the reason and where its checkpoint goes, when none is found (a job would fail only once it ran)."""
    if wav2lip_available(options):
        return list(ENGINE_CHOICES), "engine_info"
    return [choice for choice in ENGINE_CHOICES if choice != "wav2lip"], "engine_info_no_wav2lip"


def mouth_choices(options: EngineOptions) -> list[str]:
    """The built-in engine's mouth drives the studio offers: auto, the presenter's own filmed mouths and the key
    mouths; the loudness drive (the engine before phones, kept to compare against) only where the studio was
    started with it."""
    offered = ["auto", "footage", "phones"]
    return offered if options.mouth_drive in offered else [*offered, options.mouth_drive]


def engine_line(queue: JobQueue, lang: str) -> str:
    status = engine_status(queue.defaults.engine)
    key = "engine_wav2lip" if status["engine"] == "wav2lip" else "engine_builtin"
    line = text(lang, key, checkpoint=status["checkpoint"], device=device_words(lang, status["device"])) + text(
        lang, "queue_line", pending=queue.pending())
    if workers := queue.workers():  # jobs run on a cluster (heygem.cluster): where, refreshed with the rest
        line += text(lang, "workers_line", count=len(workers), busy=sum(w["state"] == "busy" for w in workers),
                     done=sum(w["done"] for w in workers),
                     where=", ".join(f"{w['host'] or '…'} {w['device'] or ''}".strip() for w in workers))
    return line


def build_studio(queue: JobQueue, log_file: Path | None = None) -> gr.Blocks:
    """The page; every handler reads and writes only through ``queue``. Its Logs tab shows ``log_file`` (by
    default the log of the queue's outputs folder, heygem.logs.log_dir_for)."""
    i18n = I18N
    log_file = log_file or log_dir_for(queue.root) / "heygem.log"

    detection = queue.defaults.detection

    def unfinished() -> tuple[list[Job], dict[str, Estimate]]:
        """The queued and running jobs in queue order, and their estimates (heygem.estimates)."""
        jobs = queue.jobs([QUEUED, RUNNING], limit=10_000, newest_first=False)
        return jobs, queue.estimator.estimate(jobs)

    def ahead_of(job: Job, jobs: list[Job]) -> int:
        return sum(1 for other in jobs if other.seq < job.seq)

    def settings_from(engine, face, length, crf, still, mouth):
        return with_choices(queue.defaults, engine=engine, face=face, length_policy=length, crf=crf, still=still,
                            mouth_drive=mouth)

    def speech_and_pictures(audio: str | None, pictures: list[str | None], lang: str) -> list[str]:
        """The problems of a speech upload and of presenter uploads ("" for each that is fine): what blocks the
        submit, on the page and again when the page submits."""
        return [upload_problem(audio, "speech", lang), *(picture_problem(path, lang, detection, audio) for path in pictures)]

    # ---- Single --------------------------------------------------------------------------------------------

    def preview_speech(path, request: gr.Request):
        """The speech's preview, or what is wrong with it (at once; the blocking comes after)."""
        problem = upload_problem(path, "speech", _lang(request))
        shown = bool(path) and not problem
        return gr.update(value=path if shown else None, visible=shown), _problems_field([problem])

    def preview_picture(path, request: gr.Request):
        """The presenter's preview, or why it cannot be read (at once; the face check comes after)."""
        problem = upload_problem(path, "picture", _lang(request))
        is_photo = bool(path) and not problem and Path(path).suffix.lower() in PHOTO_TYPES
        is_video = bool(path) and not problem and not is_photo
        return (gr.update(value=path if is_video else None, visible=is_video),
                gr.update(value=path if is_photo else None, visible=is_photo), _problems_field([problem]))

    def single_ready(audio, picture, request: gr.Request):
        """After either upload changed: the picture's problems with the face check (over as much of it as the
        speech lasts), and whether Generate may submit, with the reasons when not."""
        lang = _lang(request)
        speech, presenter = speech_and_pictures(audio, [picture], lang)
        return [_problems_field([presenter]), *_blocking(lang, [speech, presenter])]

    def check_batch_speech(path, request: gr.Request):
        return _problems_field([upload_problem(path, "speech", _lang(request))])

    def check_batch_videos(paths, request: gr.Request):
        lang = _lang(request)
        return _problems_field([upload_problem(path, "picture", lang) for path in paths or []])

    def batch_ready(audio, paths, request: gr.Request):
        """After the speech or the videos changed: the videos' problems with the face checks, and whether Start
        batch may submit, with the reasons when not."""
        lang = _lang(request)
        speech, *pictures = speech_and_pictures(audio, paths or [], lang)
        return [_problems_field(pictures), *_blocking(lang, [speech, *pictures])]

    def submit_single(audio, picture, presenter_id, engine, face, length, crf, still, mouth, request: gr.Request):
        lang = _lang(request)
        if not audio:
            return None, message_html(text(lang, "need_speech")), None, None, None
        if not picture and not presenter_id:
            return None, message_html(text(lang, "need_picture")), None, None, None
        # A file the page marked bad is never submitted, whatever the button showed.
        if blocked := blocked_html(lang, speech_and_pictures(audio, [picture], lang)):
            return None, blocked, None, None, None
        if picture and presenter_id:  # either could be meant: ask rather than guess
            return None, message_html(text(lang, "picture_and_presenter")), None, None, None
        try:
            settings = settings_from(engine, face, length, crf, still, mouth)
            videos = [picture] if picture else []
            batch = queue.submit(audio, videos, settings, audio_name=upload_name(audio),
                                 video_names=[upload_name(v) for v in videos], presenters=[presenter_id] if presenter_id else [])
        except ValueError as exc:
            return None, message_html(text(lang, "bad_option", reason=exc)), None, None, None
        except HeyGemError as exc:
            return None, message_html(reason_words(lang, exc.code, exc.params, str(exc))), None, None, None
        job = batch.jobs[0]
        jobs, estimates = unfinished()
        return job.id, job_status_html(job, lang, ahead_of(job, jobs), estimates.get(job.id)), None, None, None

    def cancel_single(job_id, request: gr.Request):
        if job_id:
            job = queue.cancel(job_id)
            return job_status_html(job, _lang(request))
        return gr.skip()

    # ---- Batch ---------------------------------------------------------------------------------------------

    def submit_batch(audio, videos, presenter_ids, engine, face, length, crf, still, mouth, request: gr.Request):
        lang = _lang(request)
        videos, presenter_ids = videos or [], presenter_ids or []
        if not audio:
            return None, message_html(text(lang, "need_speech")), "", "", "", ""
        if not videos and not presenter_ids:
            return None, message_html(text(lang, "need_videos")), "", "", "", ""
        if blocked := blocked_html(lang, speech_and_pictures(audio, videos, lang)):
            return None, blocked, "", "", "", ""
        try:
            settings = settings_from(engine, face, length, crf, still, mouth)
            batch = queue.submit(audio, videos, settings, audio_name=upload_name(audio),
                                 video_names=[upload_name(v) for v in videos], presenters=presenter_ids)
        except ValueError as exc:
            return None, message_html(text(lang, "bad_option", reason=exc)), "", "", "", ""
        except HeyGemError as exc:
            return None, message_html(reason_words(lang, exc.code, exc.params, str(exc))), "", "", "", ""
        return batch.id, batch_table_html(batch.jobs, lang, unfinished()[1]), "", "", "", ""

    def cancel_batch(batch_id, request: gr.Request):
        if batch_id:
            return batch_table_html(queue.cancel_batch(batch_id).jobs, _lang(request))
        return gr.skip()

    # ---- Presenters ----------------------------------------------------------------------------------------

    def library(lang: str, picks: tuple[str | None, list[str] | None, str | None], managed_pick: str | None = None) -> list:
        """The table, the three pickers (``refreshed_picker``: what each held when this was asked, a pick made
        meanwhile stays) and what they now show. ``managed_pick``: the presenter the rename/delete picker is to
        show (one just added)."""
        presenters = queue.presenters.list()
        usable, every = presenter_choices(presenters, lang), presenter_choices(presenters, lang, usable_only=False)
        single, many, managed = picks
        return [presenters_table_html(presenters, lang), refreshed_picker(usable, single),
                refreshed_picker(usable, list(many or [])), refreshed_picker(every, managed, pick=managed_pick),
                _library_look(presenters), _choices_look(presenters)]

    def show_library(single, many, managed, request: gr.Request):
        return library(_lang(request), (single, many, managed))

    def add_presenter(path, name, single, many, request: gr.Request):
        lang = _lang(request)
        if not path:
            return [message_html(text(lang, "need_presenter_file")), gr.skip(), gr.skip(),
                    *library(lang, (single, many, None))]
        problem = upload_problem(path, "picture", lang)
        if problem:
            return [message_html(problem), gr.skip(), gr.skip(), *library(lang, (single, many, None))]
        try:
            presenter = queue.presenters.add(path, name or "", file_name=upload_name(path))
        except HeyGemError as exc:  # over a limit: the message names the file and the limit
            return [message_html(reason_words(lang, exc.code, exc.params, str(exc))), gr.skip(), gr.skip(), *library(lang, (single, many, None))]
        note = f"<p>{html.escape(text(lang, 'presenter_added', name=presenter.name))}</p>"
        return [note, None, "", *library(lang, (single, many, None), managed_pick=presenter.id)]

    def pick_presenter(presenter_id, request: gr.Request):
        """Fill the rename field with the picked presenter's name; a delete asked for another is called off."""
        try:
            name = queue.presenters.get(presenter_id).name if presenter_id else ""
        except KeyError:
            name = ""
        return name, None, gr.update(value=text(_lang(request), "delete_presenter"))

    def rename_presenter(presenter_id, name, single, many, request: gr.Request):
        lang = _lang(request)
        if not presenter_id:
            note = message_html(text(lang, "need_presenter_pick"))
        elif not (name or "").strip():
            note = message_html(text(lang, "need_presenter_name"))
        else:
            try:
                renamed = queue.presenters.rename(presenter_id, name)
                note = f"<p>{html.escape(text(lang, 'presenter_renamed', name=renamed.name))}</p>"
            except KeyError:
                note = message_html(text(lang, "presenter_gone"))
            except HeyGemError as exc:
                note = message_html(reason_words(lang, exc.code, exc.params, str(exc)))
        return [note, *library(lang, (single, many, presenter_id))]

    def delete_presenter(presenter_id, armed, single, many, request: gr.Request):
        """The first click asks (the button becomes "Really delete NAME?"), the second on the same presenter
        deletes it."""
        lang = _lang(request)
        button = gr.update(value=text(lang, "delete_presenter"))
        if not presenter_id:
            return [message_html(text(lang, "need_presenter_pick")), gr.skip(), None, button,
                    *library(lang, (single, many, None))]
        try:
            name = queue.presenters.get(presenter_id).name
        except KeyError:
            return [message_html(text(lang, "presenter_gone")), "", None, button,
                    *library(lang, (single, many, presenter_id))]
        if armed != presenter_id:
            note = f'<p id="presenter-confirm">{html.escape(text(lang, "confirm_delete", name=name))}</p>'
            return [note, gr.skip(), presenter_id, gr.update(value=text(lang, "really_delete", name=name)),
                    *[gr.skip()] * 6]
        try:
            queue.presenters.delete(presenter_id)
            note = f"<p>{html.escape(text(lang, 'presenter_deleted', name=name))}</p>"
        except KeyError:
            note = message_html(text(lang, "presenter_gone"))
        return [note, "", None, button, *library(lang, (single, many, presenter_id))]  # (gone: the picker empties)

    # ---- History -------------------------------------------------------------------------------------------

    def history(selected: str | None, request: gr.Request):
        jobs = queue.jobs(limit=500)
        choices = history_choices(jobs)
        values = {value for _, value in choices}
        if selected in values:  # no value sent: one picked meanwhile stays (as ``library``)
            picker = gr.update(choices=choices)
        else:  # gone, or none yet: the newest
            picker = gr.update(choices=choices, value=choices[0][1] if choices else None)
        return history_table_html(jobs, _lang(request), unfinished()[1]), picker, _history_look(queue)

    def play(job_id):
        if not job_id:
            return None, None
        try:
            job = queue.job(job_id)
        except KeyError:
            return None, None
        if not job.finished_ok:
            return None, None
        return str(job.output), str(job.output)

    def delete(job_id, request: gr.Request):
        lang = _lang(request)
        note = ""
        if job_id:
            try:
                name = queue.job(job_id).output.name
                queue.delete(job_id)
                note = text(lang, "deleted", name=name)
            except (KeyError, HeyGemError, AttributeError) as exc:
                note = str(exc)
        table, dropdown, look = history(None, request)
        return table, dropdown, look, gr.update(value=None), gr.update(value=None), note

    # ---- Live ----------------------------------------------------------------------------------------------

    def live_picker(picked: str | None, presenters: list[Presenter] | None = None) -> list:
        """The Live picker's ready presenters (``refreshed_picker``: a pick made meanwhile stays), and what it
        shows."""
        ready = live_choices(presenters if presenters is not None else queue.presenters.list())
        return [refreshed_picker(ready, picked), tuple(ready)]

    def show_live(picked):
        return live_picker(picked)

    def live_stage(request: gr.Request) -> str:
        return live_stage_html(_lang(request), queue)

    # ---- the timer: everything that changes while jobs run -----------------------------------------------
    # Each second the tick sends what follows a running job (the engine line, the job's and the batch's progress,
    # the log) and, for each rarer part (a result, the batch's links, History, Presenters, Live's picker), a small
    # "due" state that changes only when that part has something new: the part's own refresh follows the state's
    # change. Those parts skipped each second (gr.skip()) cost the studio more than sending a value; the log, which
    # changes as often as a job moves on, stays in the tick, since each event of its own costs the browser more
    # (bench/RESULTS.md, "What an open page costs, again").

    def tick(job_id, batch_id, request: gr.Request):
        lang = _lang(request)
        jobs, estimates = unfinished()
        single_status, single_due = gr.skip(), None
        if job_id:
            try:
                job = queue.job(job_id)
            except KeyError:  # deleted from History meanwhile
                job = None
            if job is not None:
                single_status = job_status_html(job, lang, ahead_of(job, jobs) if job.state == QUEUED else 0,
                                                estimates.get(job.id))
                single_due = job_id if job.finished_ok else None
        summary, table, batch_due = gr.skip(), gr.skip(), None
        if batch_id:
            try:
                batch = queue.batch(batch_id)
            except KeyError:
                batch = None
            if batch is not None:
                running = next((job for job in batch.jobs if job.state == RUNNING), None)
                counts = batch.counts
                summary = text(lang, "batch_summary", done=sum(counts[s] for s in FINISHED), total=len(batch.jobs),
                               failed=counts[FAILED], cancelled=counts["cancelled"])
                if running:
                    summary += text(lang, "sentence_gap") + text(lang, "running_now", name=running.video_name)
                # The whole batch's progress on a line of its own (a Markdown line break).
                whole = batch_progress_words(batch.jobs, lang, estimates=estimates)
                summary = "  \n".join(part for part in (summary, whole) if part)
                table = batch_table_html(batch.jobs, lang, estimates)
                batch_due = _links_look(batch, lang)
        presenters = queue.presenters.list()
        logs = relative_paths(log_tail(log_file), [PROJECT_ROOT, queue.root.parent]) or text(lang, "no_log")
        return [engine_line(queue, lang), single_status, summary, table, logs, single_due, batch_due,
                _digest(_history_look(queue)), _digest((_choices_look(presenters), _library_look(presenters))),
                _digest(tuple(live_choices(presenters)))]

    def show_result(job_id, shown):
        """The finished job's result in the player and the download, once."""
        try:
            job = queue.job(job_id) if job_id else None
        except KeyError:
            job = None
        if job is None or not job.finished_ok or shown == job_id:
            return gr.skip(), gr.skip(), gr.skip()
        return str(job.output), str(job.output), job_id

    def show_links(batch_id, links_shown, request: gr.Request):
        """A new result, or the batch over: the links again. Once it is over its ZIP is written, once, in a
        thread of its own, so the click that follows is answered at once (a click before writes it then)."""
        lang = _lang(request)
        try:
            batch = queue.batch(batch_id) if batch_id else None
        except KeyError:
            batch = None
        if batch is None or (look := _links_look(batch, lang)) == links_shown:
            return gr.skip(), gr.skip(), gr.skip()
        if batch.done:
            queue.zip_in_background(batch_id)
        zipped, links = batch_downloads_html(batch_id, batch.jobs, lang)
        return zipped, look, links

    def refresh_history(picked, seen_finished, request: gr.Request):
        """History again when a job has come, finished or moved on since it was last shown."""
        if _history_look(queue) == seen_finished:
            return gr.skip(), gr.skip(), gr.skip()
        return history(picked, request)

    def refresh_library(seen_library, seen_choices, single_pick, batch_picks, managed_pick, request: gr.Request):
        """The table while something it shows changes (preparation progress), the pickers only when a presenter
        came, went, was renamed or changed state."""
        presenters = queue.presenters.list()
        if _choices_look(presenters) != seen_choices:
            return library(_lang(request), (single_pick, batch_picks, managed_pick))
        refreshed: list = [gr.skip()] * 6
        look = _library_look(presenters)
        if look != seen_library:
            refreshed[0], refreshed[4] = presenters_table_html(presenters, _lang(request)), look
        return refreshed

    def refresh_live(live_pick, seen_live):
        """Live's picker only when a presenter became ready, went, or was renamed."""
        presenters = queue.presenters.list()
        if tuple(live_choices(presenters)) == seen_live:
            return gr.skip(), gr.skip()
        return live_picker(live_pick, presenters)

    with gr.Blocks(title="HeyGem", delete_cache=(3600, 24 * 3600), analytics_enabled=False) as studio:
        gr.Markdown(i18n("title"))
        header = gr.Markdown(elem_id=HEADER_ID)
        with gr.Accordion(i18n("options"), open=False):
            with gr.Row():
                offered, engine_info = engine_choices(queue.defaults.engine)
                engine = gr.Radio([(i18n(f"choice_engine_{choice}"), choice) for choice in offered], label=i18n("engine"), info=i18n(engine_info), elem_id="engine-choice",
                                  value=queue.defaults.engine.engine if queue.defaults.engine.engine in offered else "auto")
                face = gr.Dropdown([(i18n("choice_face_largest"), "largest"), "0", "1", "2", "3", "4"], value="largest",
                                   label=i18n("face"),
                                   info=i18n("face_info"))
                length = gr.Radio([(i18n(f"choice_length_{choice}"), choice) for choice in LENGTH_CHOICES],
                                  value=queue.defaults.length_policy, label=i18n("length"))
                crf = gr.Slider(10, 35, value=queue.defaults.encode.crf, step=1, label=i18n("quality"))
                still = gr.Checkbox(value=queue.defaults.engine.still, label=i18n("still"), info=i18n("still_info"),
                                    elem_id="still-choice")
                offered_mouths = mouth_choices(queue.defaults.engine)
                mouth = gr.Radio([(i18n(f"choice_mouth_{choice}"), choice) for choice in offered_mouths],
                                 value=queue.defaults.engine.mouth_drive, label=i18n("mouth"), info=i18n("mouth_info"),
                                 elem_id="mouth-choice")
        options = [engine, face, length, crf, still, mouth]

        with gr.Tabs():
            with gr.Tab(i18n("tab_single"), id="single", elem_id="tab-single"):
                job_id = gr.State(None)
                shown = gr.State(None)
                # The job's id for the page's script, which writes it into the address (a reload then finds it).
                s_job_address = gr.Textbox(visible="hidden", elem_id="single-job-id")
                with gr.Row():
                    with gr.Column():
                        s_audio = gr.File(label=i18n("speech"), file_types=AUDIO_TYPES + VIDEO_TYPES, type="filepath",
                                          elem_id="single-audio")
                        s_audio_check = gr.HTML(elem_id="single-audio-check", visible=False)
                        s_audio_preview = gr.Audio(label=i18n("preview_video"), interactive=False, visible=False,
                                                   elem_id="single-audio-preview")
                        s_picture = gr.File(label=i18n("picture"), file_types=VIDEO_TYPES + PHOTO_TYPES,
                                            type="filepath", elem_id="single-picture")
                        s_picture_check = gr.HTML(elem_id="single-picture-check", visible=False)
                        s_presenter = gr.Dropdown(label=i18n("single_presenter"), info=i18n("single_presenter_info"),
                                                  choices=[], value=None, elem_id="single-presenter")
                        s_video_preview = gr.Video(label=i18n("preview_video"), interactive=False, visible=False,
                                                   elem_id="single-video-preview")
                        s_photo_preview = gr.Image(label=i18n("preview_photo"), interactive=False, visible=False,
                                                   type="filepath", elem_id="single-photo-preview")
                    with gr.Column():
                        with gr.Row():
                            s_go = gr.Button(i18n("generate"), variant="primary", elem_id="single-generate")
                            s_cancel = gr.Button(i18n("cancel"), elem_id="single-cancel")
                        s_blocked = gr.HTML(elem_id="single-blocked", visible=False)
                        s_status = gr.HTML(elem_id="single-status")
                        s_result = gr.Video(label=i18n("result"), interactive=False, elem_id="single-result")
                        s_download = gr.File(label=i18n("download"), interactive=False, elem_id="single-download")
                gr.Markdown(i18n("advice"))

            with gr.Tab(i18n("tab_batch"), id="batch", elem_id="tab-batch"):
                batch_id = gr.State(None)
                links_shown = gr.State("")  # what the download links show: "<finished results>/<batch over>/<language>"
                b_batch_address = gr.Textbox(visible="hidden", elem_id="batch-id")
                with gr.Row():
                    with gr.Column(scale=1):
                        b_audio = gr.File(label=i18n("speech"), file_types=AUDIO_TYPES + VIDEO_TYPES, type="filepath",
                                          elem_id="batch-audio")
                        b_audio_check = gr.HTML(elem_id="batch-audio-check", visible=False)
                        b_videos = gr.File(label=i18n("videos"), file_types=VIDEO_TYPES + PHOTO_TYPES,
                                           file_count="multiple", type="filepath", elem_id="batch-videos")
                        b_videos_check = gr.HTML(elem_id="batch-videos-check", visible=False)
                        b_presenters = gr.Dropdown(label=i18n("batch_presenters"), info=i18n("batch_presenters_info"),
                                                   choices=[], value=[], multiselect=True, elem_id="batch-presenters")
                        with gr.Row():
                            b_go = gr.Button(i18n("start_batch"), variant="primary", elem_id="batch-start")
                            b_cancel = gr.Button(i18n("cancel_batch"), elem_id="batch-cancel")
                        b_blocked = gr.HTML(elem_id="batch-blocked", visible=False)
                    with gr.Column(scale=2):
                        b_summary = gr.Markdown(i18n("batch_idle"), elem_id="batch-summary")
                        b_table = gr.HTML(elem_id="batch-status")
                        b_zip = gr.HTML(elem_id="batch-zip")
                        b_results = gr.HTML(elem_id="batch-results")
                gr.Markdown(i18n("advice"))

            with gr.Tab(i18n("tab_presenters"), id="presenters", elem_id="tab-presenters") as presenters_tab:
                seen_library = gr.State(None)
                seen_choices = gr.State(None)
                delete_armed = gr.State(None)  # the presenter whose delete was asked once: the next click deletes
                gr.Markdown(i18n("presenters_help"))
                with gr.Row():
                    with gr.Column(scale=1):
                        p_file = gr.File(label=i18n("presenter_file"), file_types=VIDEO_TYPES + PHOTO_TYPES,
                                         type="filepath", elem_id="presenter-file")
                        p_name = gr.Textbox(label=i18n("presenter_name"), info=i18n("presenter_name_info"),
                                            max_lines=1, elem_id="presenter-name")
                        p_add = gr.Button(i18n("add_presenter"), variant="primary", elem_id="presenter-add")
                        p_pick = gr.Dropdown(label=i18n("presenter_pick"), choices=[], value=None,
                                             elem_id="presenter-pick")
                        p_new_name = gr.Textbox(label=i18n("presenter_new_name"), max_lines=1,
                                                elem_id="presenter-new-name")
                        with gr.Row():
                            p_rename = gr.Button(i18n("rename_presenter"), elem_id="presenter-rename")
                            p_delete = gr.Button(i18n("delete_presenter"), variant="stop", elem_id="presenter-delete")
                        p_note = gr.HTML(elem_id="presenter-note")
                    with gr.Column(scale=2):
                        p_table = gr.HTML(elem_id="presenters-list")

            with gr.Tab(i18n("tab_live"), id="live", elem_id="tab-live") as live_tab:
                seen_live = gr.State(None)
                gr.Markdown(i18n("live_help"))
                with gr.Row():
                    with gr.Column(scale=1):
                        l_presenter = gr.Dropdown(label=i18n("live_presenter"), info=i18n("live_presenter_info"),
                                                  choices=[], value=None, elem_id="live-presenter")
                        with gr.Row():
                            l_start = gr.Button(i18n("live_start"), variant="primary", elem_id="live-start")
                            l_stop = gr.Button(i18n("live_stop"), variant="stop", elem_id="live-stop")
                        l_mic = gr.Checkbox(label=i18n("live_mic"), value=False, elem_id="live-mic")
                        l_speech = gr.File(label=i18n("live_speech"), file_types=AUDIO_TYPES + VIDEO_TYPES,
                                           type="filepath", elem_id="live-speech")
                        l_interrupt = gr.Checkbox(label=i18n("live_interrupt"), value=False, elem_id="live-interrupt")
                        with gr.Row():
                            l_speak = gr.Button(i18n("live_speak"), elem_id="live-speak")
                            l_hush = gr.Button(i18n("live_hush"), elem_id="live-hush")
                    with gr.Column(scale=2):
                        l_stage = gr.HTML(elem_id="live-panel")

            with gr.Tab(i18n("tab_history"), id="history", elem_id="tab-history") as history_tab:
                seen_finished = gr.State(None)
                with gr.Row():
                    with gr.Column(scale=2):
                        h_table = gr.HTML(elem_id="history-list")
                    with gr.Column(scale=1):
                        h_pick = gr.Dropdown(label=i18n("pick_result"), choices=[], elem_id="history-pick")
                        h_player = gr.Video(label=i18n("result"), interactive=False, elem_id="history-player")
                        h_download = gr.File(label=i18n("download"), interactive=False, elem_id="history-download")
                        with gr.Row():
                            h_refresh = gr.Button(i18n("refresh"), elem_id="history-refresh")
                            h_delete = gr.Button(i18n("delete"), variant="stop", elem_id="history-delete")
                        h_note = gr.Markdown(elem_id="history-note")

            with gr.Tab(i18n("tab_logs"), id="logs", elem_id="tab-logs"):
                logs = gr.Textbox(label=i18n("log_tail"), lines=28, max_lines=28, autoscroll=False,
                                  interactive=False, elem_id="log-tail", elem_classes="hg-log")

        # Each upload is previewed (or named bad) at once; then the face check and the submit button follow.
        single_checks = dict(fn=single_ready, inputs=[s_audio, s_picture], outputs=[s_picture_check, s_go, s_blocked],
                             show_progress="hidden")
        s_audio.change(preview_speech, s_audio, [s_audio_preview, s_audio_check], show_progress="hidden").then(
            **single_checks)
        s_picture.change(preview_picture, s_picture, [s_video_preview, s_photo_preview, s_picture_check],
                         show_progress="hidden").then(**single_checks)
        batch_checks = dict(fn=batch_ready, inputs=[b_audio, b_videos], outputs=[b_videos_check, b_go, b_blocked],
                            show_progress="hidden")
        b_audio.change(check_batch_speech, b_audio, b_audio_check, show_progress="hidden").then(**batch_checks)
        b_videos.change(check_batch_videos, b_videos, b_videos_check, show_progress="hidden").then(**batch_checks)
        s_go.click(submit_single, [s_audio, s_picture, s_presenter, *options],
                   [job_id, s_status, s_result, s_download, shown]).then(
            lambda job: job, job_id, s_job_address, show_progress="hidden").then(
            None, s_job_address, None, js=_REMEMBER_JS % ("job", "job"))
        s_cancel.click(cancel_single, job_id, s_status, show_progress="hidden")
        b_go.click(submit_batch, [b_audio, b_videos, b_presenters, *options],
                   [batch_id, b_table, b_summary, b_zip, links_shown, b_results]).then(
            lambda batch: batch, batch_id, b_batch_address, show_progress="hidden").then(
            None, b_batch_address, None, js=_REMEMBER_JS % ("batch", "batch"))
        b_cancel.click(cancel_batch, batch_id, b_table, show_progress="hidden")
        library_outputs = [p_table, s_presenter, b_presenters, p_pick, seen_library, seen_choices]
        presenters_tab.select(show_library, [s_presenter, b_presenters, p_pick], library_outputs, show_progress="hidden")
        p_add.click(add_presenter, [p_file, p_name, s_presenter, b_presenters],
                    [p_note, p_file, p_name, *library_outputs])
        p_pick.change(pick_presenter, p_pick, [p_new_name, delete_armed, p_delete], show_progress="hidden")
        p_rename.click(rename_presenter, [p_pick, p_new_name, s_presenter, b_presenters], [p_note, *library_outputs])
        p_delete.click(delete_presenter, [p_pick, delete_armed, s_presenter, b_presenters],
                       [p_note, p_new_name, delete_armed, p_delete, *library_outputs])
        h_pick.change(play, h_pick, [h_player, h_download], show_progress="hidden")
        h_refresh.click(history, h_pick, [h_table, h_pick, seen_finished])
        history_tab.select(history, h_pick, [h_table, h_pick, seen_finished], show_progress="hidden")
        h_delete.click(delete, h_pick, [h_table, h_pick, seen_finished, h_player, h_download, h_note])

        # The Live tab's buttons run only the page's script (live.js), which speaks to /api/live itself.
        live_tab.select(show_live, l_presenter, [l_presenter, seen_live], show_progress="hidden")
        l_start.click(None, [l_presenter, l_mic], None,
                      js="(presenter, mic) => { window.heygemLive.start(presenter, mic); return []; }")
        l_stop.click(None, None, None, js="() => { window.heygemLive.stop(); return []; }")
        l_mic.input(None, l_mic, None, js="(on) => { window.heygemLive.useMicrophone(on); return []; }")
        l_speak.click(None, [l_speech, l_interrupt], None,
                      js="(file, interrupt) => { window.heygemLive.speak(file, interrupt); return []; }")
        l_hush.click(None, None, None, js="() => { window.heygemLive.hush(); return []; }")

        result_due, links_due, history_due, library_due, live_due = (gr.State(None) for _ in range(5))
        timer = gr.Timer(TICK_SECONDS)
        timer.tick(tick, [job_id, batch_id],
                   [header, s_status, b_summary, b_table, logs, result_due, links_due, history_due, library_due,
                    live_due], show_progress="hidden")
        result_due.change(show_result, [job_id, shown], [s_result, s_download, shown], show_progress="hidden")
        links_due.change(show_links, [batch_id, links_shown], [b_zip, links_shown, b_results], show_progress="hidden")
        history_due.change(refresh_history, [h_pick, seen_finished], [h_table, h_pick, seen_finished],
                           show_progress="hidden")
        library_due.change(refresh_library, [seen_library, seen_choices, s_presenter, b_presenters, p_pick],
                           library_outputs, show_progress="hidden")
        live_due.change(refresh_live, [l_presenter, seen_live], [l_presenter, seen_live], show_progress="hidden")

        def show_engine(request: gr.Request) -> str:
            return engine_line(queue, _lang(request))

        def restore(remembered_job, remembered_batch, request: gr.Request):
            """Find this browser's work again: the job and batch named in the address (set when they were
            submitted), else the unfinished ones this browser remembers having submitted; never another's. The
            timer then fills in their status and results."""
            single, many = restored_work(queue, dict(request.query_params), remembered_job, remembered_batch)
            # Only a batch alone opens its tab: with a single job too, Single (the first tab) stays in front.
            return single, None, many, "", "batch" if many and not single else ""

        studio.load(show_engine, None, header)
        studio.load(live_stage, None, l_stage, show_progress="hidden")
        open_tab = gr.Textbox(visible="hidden", elem_id="open-tab")
        studio.load(restore, [s_job_address, b_batch_address], [job_id, shown, batch_id, links_shown, open_tab],
                    js=_RECALL_JS, show_progress="hidden").then(None, open_tab, None, js=_OPEN_TAB_JS)
    return studio
