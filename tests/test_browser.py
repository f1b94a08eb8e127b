"""The studio in a real headless Chromium (Debian's package, driven by Playwright): Single gives a playable
video, Batch gives a ZIP of three, and every tab is photographed into tests/artifacts/ for a person to look at."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from conftest import REPO, make_clip
from heygem.media.ffmpeg import ffprobe_exe
from heygem.settings import with_choices

ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
# As root and offline: no sandbox, and none of Chromium's calls home (each would wait on a closed network).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
JOB_TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run the test command (bash tests/run.sh), which installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _page(browser, studio, locale: str = "en-US", address: str = "", init_script: str = ""):
    """A new browser context's page on the studio; ``init_script`` runs in it before any of the page's own."""
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, locale=locale, accept_downloads=True)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.goto(studio.url + "/" + address)
    # A batch's address opens the Batch tab by itself, which may hide Single's button before it is ever seen.
    page.wait_for_selector("#batch-start" if "batch=" in address else "#single-generate", timeout=60_000)
    return page


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.wait_for_timeout(1200)  # let the timer's next refresh land
    page.screenshot(path=str(ARTIFACTS / f"ui_{name}.png"), full_page=True)


def _upload(page, elem_id: str, *paths: Path) -> None:
    page.set_input_files(f"#{elem_id} input[type=file]", [str(p) for p in paths])
    # Listed once uploaded (Gradio shows the stem and the extension in separate cells).
    page.wait_for_function(
        "([id, names]) => { const t = document.getElementById(id).innerText.replace(/\\s+/g, '');"
        " return names.every(n => t.includes(n)); }", arg=[elem_id, [p.name for p in paths]], timeout=60_000)


def _open_tab(page, name: str) -> None:
    """Click the tab called ``name`` until it is the one shown, as a person clicks again a tab that did not open:
    in one run a click on a page that had only just loaded was lost (the tab never opened, and the test waited 30
    s for its upload field)."""
    tab = page.get_by_role("tab", name=name)
    for _ in range(5):
        tab.click()
        try:
            page.wait_for_function("(tab) => tab.getAttribute('aria-selected') === 'true'", arg=tab.element_handle(),
                                   timeout=3_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"the {name} tab did not open after 5 clicks")


def _wait_for_words(page, elem_id: str, words: str, timeout: int = 30_000) -> None:
    """Wait until the element shows ``words`` (it may not exist yet: Gradio adds a hidden field when shown)."""
    page.wait_for_function("([id, words]) => (document.getElementById(id)?.innerText || '').includes(words)",
                           arg=[elem_id, words], timeout=timeout)


def _duration(path: Path) -> float:
    out = subprocess.run([ffprobe_exe(), "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(path)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout)


def _start_batch(browser, studio, short_clips, *videos: str):
    """A new page whose Batch tab has started the 2 s speech with the ``videos`` clips."""
    page = _page(browser, studio)
    _open_tab(page, "Batch")
    _upload(page, "batch-audio", short_clips["speech"])
    _upload(page, "batch-videos", *(short_clips[name] for name in videos))
    page.click("#batch-start")
    return page


def _cancel_single(page, held_jobs, cancelling: str, cancelled: str, shot: str | None = None,
                   keep_open: bool = False) -> None:
    """Cancel the Single tab's held job: the status says ``cancelling`` at once (and still after the timer's
    refreshes), then ``cancelled`` once the job is let go; closes the page (unless ``keep_open``)."""
    page.click("#single-cancel")
    _wait_for_words(page, "single-status", cancelling, timeout=10_000)
    if shot:
        _shot(page, shot)
    assert cancelling in page.inner_text("#single-status")
    held_jobs.release()
    _wait_for_words(page, "single-status", cancelled, timeout=60_000)
    if not keep_open:
        page.context.close()


def test_single_tab_gives_a_playable_result(browser, studio, short_clips, tmp_path: Path) -> None:
    page = _page(browser, studio)
    page.wait_for_function("() => document.getElementById('engine-line').innerText.includes('Engine')", timeout=30_000)
    assert "Engine: Wav2Lip (wav2lip_test.pth) on CPU" in page.inner_text("#engine-line")
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", short_clips["d0"])
    page.wait_for_selector("#single-video-preview video", timeout=30_000)  # the presenter's preview
    page.wait_for_selector("#single-audio-preview audio, #single-audio-preview [data-testid]", timeout=30_000)
    page.get_by_text("Options").first.click()
    page.get_by_label("builtin").check()  # the built-in engine, chosen in the page
    page.get_by_label("their own filmed mouths").check()  # asked for, though 2 s of footage cannot give them
    _shot(page, "single_ready")

    page.click("#single-generate")
    page.wait_for_selector("#single-status [data-state]", timeout=30_000)
    page.wait_for_selector("#single-status [data-state=succeeded]", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function(
        "() => { const v = document.querySelector('#single-result video');"
        " return v && v.readyState >= 2 && v.duration > 1.5; }", timeout=60_000)
    # Playable: it plays, and time moves.
    page.evaluate("() => { const v = document.querySelector('#single-result video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.querySelector('#single-result video').currentTime > 0.3", timeout=30_000)
    status = page.inner_text("#single-status")
    assert "built-in: own-footage mouth morph" in status
    assert "key mouths rather than the presenter's own footage: under 5 s of it shows the face" in status
    _shot(page, "single_done")

    with page.expect_download() as download:
        page.click("#single-download a")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "d0__speech.mp4"
    assert _duration(saved) == pytest.approx(2.0, abs=0.1)
    page.context.close()


def test_batch_tab_zips_three_results(browser, studio, short_clips, tmp_path: Path) -> None:
    page = _start_batch(browser, studio, short_clips, "d0", "d13", "d19")
    page.wait_for_selector("#batch-status tr[data-state]", timeout=30_000)
    _shot(page, "batch_running")
    page.wait_for_function(
        "() => document.querySelectorAll('#batch-status tr[data-state=succeeded]').length === 3", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function("() => document.querySelector('#batch-summary').innerText.includes('3 of 3')", timeout=30_000)
    page.wait_for_selector("#batch-zip a", timeout=30_000)
    # Each result is listed for download on its own too.
    page.wait_for_function(
        "() => { const t = document.getElementById('batch-results').innerText.replace(/\\s+/g, '');"
        " return ['d0__speech.mp4', 'd13__speech.mp4', 'd19__speech.mp4'].every(n => t.includes(n)); }",
        timeout=30_000)
    _shot(page, "batch_done")

    names: list[str] = []
    for _ in range(5):  # the ZIP is rebuilt as each result lands; the last one holds all three
        with page.expect_download() as download:
            page.click("#batch-zip a")
        saved = tmp_path / "batch.zip"
        download.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            names = sorted(archive.namelist())
        if len(names) == 3:
            break
        page.wait_for_timeout(1500)
    assert names == ["d0__speech.mp4", "d13__speech.mp4", "d19__speech.mp4"]
    page.context.close()


def test_history_and_logs_tabs(browser, studio, short_clips) -> None:
    job = studio.queue.submit(short_clips["speech"], [short_clips["d19"]]).jobs[0]
    assert studio.queue.wait([job.id], timeout=240)[0].state == "succeeded"
    page = _page(browser, studio)
    _open_tab(page, "History")
    page.wait_for_selector("#history-table", timeout=30_000)
    assert "d19.mp4" in page.inner_text("#history-table")
    page.wait_for_selector("#history-player video", timeout=30_000)  # the newest result is ready to play
    _shot(page, "history")

    _open_tab(page, "Logs")
    page.wait_for_function("() => document.querySelector('#log-tail textarea').value.includes('succeeded')",
                           timeout=30_000)
    assert str(studio.root.parent) not in page.input_value("#log-tail textarea")  # paths read outputs/...
    _shot(page, "logs")
    page.context.close()


def test_an_open_page_is_sent_each_second_only_what_follows_a_job(browser, studio, short_clips, monkeypatch) -> None:
    """An open page refreshes each second. The parts that change rarely (a result, the batch's links, History,
    Presenters and the pickers, Live's picker) are sent when they change, not each second: sent unchanged (as a
    gr.skip()), an idle open page cost the studio 6.3% of a core instead of 3.6% (bench/RESULTS.md, "What an open
    page costs, again"). Then a job done shows in History and the log as before."""
    import collections
    import time

    from gradio.blocks import Blocks

    from heygem.jobs import QUEUED, RUNNING
    from heygem.presenters import PREPARING

    sent: collections.Counter = collections.Counter()
    postprocess = Blocks.postprocess_data

    async def counted(self, block_fn, predictions, state):
        if isinstance(predictions, (list, tuple)):
            sent.update(block.elem_id for block in block_fn.outputs if not block.stateful and block.elem_id)
        return await postprocess(self, block_fn, predictions, state)

    monkeypatch.setattr(Blocks, "postprocess_data", counted)
    deadline = time.monotonic() + 240
    # Another test's jobs or presenters still being prepared would change History and Presenters meanwhile.
    while studio.queue.jobs([QUEUED, RUNNING]) or any(p.state == PREPARING for p in studio.queue.presenters.list()):
        assert time.monotonic() < deadline, "the studio's queue did not empty"
        time.sleep(0.5)
    page = _page(browser, studio)
    page.wait_for_timeout(3_000)  # its first refreshes fill every part
    sent.clear()
    page.wait_for_timeout(4_000)
    assert sent["engine-line"] >= 2  # the refresh goes on each second
    rare = ("single-result", "single-download", "batch-zip", "batch-results", "history-list", "history-pick",
            "presenters-list", "single-presenter", "batch-presenters", "presenter-pick", "live-presenter")
    assert {part: sent[part] for part in rare if sent[part]} == {}

    _open_tab(page, "History")  # open before the job: what follows is the refresh's, not the tab's
    batch = studio.queue.submit(short_clips["speech"], [short_clips["d13"]])
    job = batch.jobs[0]
    assert studio.queue.wait([job.id], timeout=240)[0].state == "succeeded"
    page.wait_for_selector(f"#history-table tr[data-batch='{batch.id}'][data-state=succeeded]", timeout=30_000)
    _open_tab(page, "Logs")
    page.wait_for_function("id => document.querySelector('#log-tail textarea').value.includes(id)", arg=job.id,
                           timeout=30_000)
    page.context.close()


def test_an_idle_open_page_does_not_draw_itself_each_frame(browser, studio) -> None:
    """Gradio's status tracker shown while the page loads left its two frame loops running once it was built: an
    idle page asked the browser for a new frame 60 times a second for as long as it stayed open (1,400 frames in
    20 s, 17-21% of a core in headless Chromium against 9% without them: bench/RESULTS.md, "An idle page's
    frames"). Counted here as the browser sees them, under everything the page's own scripts do; the refresh's
    two short trackers each second ask for some."""
    page = _page(browser, studio, init_script="window.framesAsked = 0; const askFrame ="
                 " window.requestAnimationFrame.bind(window); window.requestAnimationFrame = (f) =>"
                 " { window.framesAsked++; return askFrame(f); };")
    page.wait_for_timeout(3_000)  # loaded, its first refreshes done
    page.evaluate("() => { window.framesAsked = 0; }")
    page.wait_for_timeout(4_000)
    asked = page.evaluate("() => window.framesAsked")
    assert asked < 100, f"{asked} frames asked in 4 s: the page draws itself all the time"
    # the page was built as before: its header says which engine runs
    assert page.locator("#engine-line").inner_text().strip()
    page.context.close()


def test_the_page_follows_a_chinese_browser(browser, studio) -> None:
    page = _page(browser, studio, locale="zh-CN")
    assert page.inner_text("#single-generate").strip() == "生成"
    _open_tab(page, "批量")
    assert "开始批量" in page.inner_text("#batch-start")
    _shot(page, "batch_zh")
    _open_tab(page, "单个")
    page.wait_for_function("() => document.getElementById('engine-line').innerText.includes('引擎')", timeout=30_000)
    _shot(page, "single_zh")
    page.context.close()


def test_cancel_says_cancelling_at_once_in_single_and_batch(browser, studio, short_clips, held_jobs) -> None:
    page = _page(browser, studio, locale="zh-CN")
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", short_clips["d0"])
    page.click("#single-generate")
    _wait_for_words(page, "single-status", "口型同步中", timeout=60_000)
    # The click's own answer says it; the job itself is held in its stage until released.
    _cancel_single(page, held_jobs, "正在取消…", "已取消", shot="single_cancelling_zh")

    page = _start_batch(browser, studio, short_clips, "d13", "d19")
    page.wait_for_selector("#batch-status tr[data-state=running]", timeout=60_000)
    page.click("#batch-cancel")
    page.wait_for_function(
        "() => document.querySelector('#batch-status tr[data-state=running]').innerText.includes('cancelling…')",
        timeout=10_000)
    _shot(page, "batch_cancelling")
    held_jobs.release()
    page.wait_for_function(
        "() => document.querySelectorAll('#batch-status tr[data-state=cancelled]').length === 2", timeout=60_000)
    assert "cancelling…" not in page.inner_text("#batch-status")
    page.context.close()


def test_a_bad_upload_is_named_as_it_arrives(browser, studio, short_clips, tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("Things to say in the video: hello, thanks for watching.\n")
    jobs_before = len(studio.queue.jobs())
    page = _page(browser, studio)
    _upload(page, "single-picture", notes)
    _wait_for_words(page, "single-picture-check", "notes.mp4 is not a video or photo HeyGem can read")
    assert not page.is_visible("#single-video-preview video")  # no preview of what cannot be read
    _upload(page, "single-audio", short_clips["d0"])  # a video without sound, given as the speech
    _wait_for_words(page, "single-audio-check", "d0.mp4: the speech file has no sound.")
    assert "ffprobe" not in page.inner_text("#tab-single")  # its words are for the log
    _shot(page, "single_bad_uploads")
    page.context.close()

    page = _page(browser, studio, locale="zh-CN")
    _open_tab(page, "批量")
    _upload(page, "batch-videos", short_clips["d13"], notes)
    _wait_for_words(page, "batch-videos-check", "notes.mp4 不是 HeyGem 能读取的视频或照片")
    assert "d13.mp4" not in page.inner_text("#batch-videos-check")  # the good one is not blamed
    _shot(page, "batch_bad_upload_zh")
    page.context.close()
    assert len(studio.queue.jobs()) == jobs_before  # nothing was submitted


# A studio of its own, in a process of its own (Gradio's cache folder is chosen once per process), over a
# queue whose settings name no checkpoint and with none found in checkpoints/.
_NO_CHECKPOINT_STUDIO = """
import sys
from pathlib import Path

import uvicorn

from heygem import engines
from heygem.jobs import JobQueue
from heygem.server import create_app
from heygem.settings import EngineOptions, Settings

engines.DEFAULT_CHECKPOINTS = ()
queue = JobQueue(Path(sys.argv[1]), Settings(engine=EngineOptions(device="cpu")), start=False)
uvicorn.run(create_app(queue), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


@pytest.fixture(scope="module")
def studio_without_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    import socket
    import sys
    import time
    from types import SimpleNamespace

    import httpx

    folder = tmp_path_factory.mktemp("no-checkpoint")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", _NO_CHECKPOINT_STUDIO, str(folder / "outputs"), str(port)],
                              cwd=folder, env={**os.environ, "PYTHONPATH": str(REPO)})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "the studio without a checkpoint did not start"
            assert time.monotonic() < deadline, "the studio without a checkpoint did not answer"
            try:
                if httpx.get(f"{url}/api/status", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        yield SimpleNamespace(url=url)
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize("locale, where", [("en-US", "wav2lip is not offered"), ("zh-CN", "未提供 Wav2Lip")])
def test_options_leave_out_wav2lip_without_a_checkpoint_and_say_where_it_goes(
        browser, studio_without_checkpoint, locale: str, where: str) -> None:
    page = _page(browser, studio_without_checkpoint, locale=locale)
    page.get_by_text("Options" if locale == "en-US" else "选项").first.click()
    page.wait_for_selector("#engine-choice input[type=radio]", timeout=30_000)
    choices = page.eval_on_selector_all("#engine-choice input[type=radio]", "inputs => inputs.map(i => i.value)")
    assert choices == ["auto", "builtin"]
    words = page.inner_text("#engine-choice")
    assert where in words and "checkpoints/wav2lip_gan.pth" in words
    _shot(page, f"options_no_checkpoint_{locale[:2]}")
    page.context.close()


def _pick(page, elem_id: str, label: str) -> None:
    """Choose ``label`` in a Gradio dropdown from the keyboard, as a person may: type it, then Enter takes the
    first option the typing left. Not a click on the option: the open list is placed from the window's scroll
    at the moment it opened, and a page still laying itself out (a preview loading) moved it out of the
    window in one CI run, where Playwright retried the click for 30 s."""
    field = page.locator(f"#{elem_id} input")
    field.click()
    field.press_sequentially(label)
    page.get_by_role("option", name=label, exact=True).wait_for()
    field.press("Enter")


def test_presenters_added_once_are_picked_in_batch_and_start_prepared(browser, studio, short_clips) -> None:
    page = _page(browser, studio)
    page.get_by_text("Options").first.click()
    page.get_by_label("builtin").check()  # the built-in engine studies presenters; its jobs reuse the study
    _open_tab(page, "Presenters")
    for clip, name in ((short_clips["d0"], "Dora"), (short_clips["d13"], "Theo")):
        _upload(page, "presenter-file", clip)
        page.fill("#presenter-name textarea, #presenter-name input", name)
        page.click("#presenter-add")
        _wait_for_words(page, "presenter-note", f"Added {name}")
        page.wait_for_function("(name) => document.querySelector('#presenter-pick input').value.startsWith(name)", arg=name,
                               timeout=30_000)  # the one just added is picked, to rename or delete
    page.wait_for_selector("#presenters-table tr[data-state=preparing]", timeout=30_000)
    _shot(page, "presenters_preparing")
    page.wait_for_function(
        "() => document.querySelectorAll('#presenters-table tr[data-state=ready]').length === 2", timeout=JOB_TIMEOUT_MS)
    dora = page.inner_text("#presenters-table tr:has-text('Dora')")
    theo = page.inner_text("#presenters-table tr:has-text('Theo')")
    assert "ready" in dora and "360×360" in dora and "2.0 s" in dora and "of 50 frames" in dora  # 2 s at 25 fps
    assert "ready" in theo and "202×360" in theo and "of 60 frames" in theo  # 2 s at 30 fps
    page.wait_for_function(  # both thumbnails loaded
        "() => [...document.querySelectorAll('#presenters-table img.hg-thumb')].filter(i => i.naturalWidth > 0).length === 2",
        timeout=30_000)
    _shot(page, "presenters")

    _open_tab(page, "Batch")
    _upload(page, "batch-audio", short_clips["speech"])
    _pick(page, "batch-presenters", "Dora")
    _pick(page, "batch-presenters", "Theo")
    page.click("#batch-start")
    page.wait_for_selector("#batch-status tr[data-state]", timeout=30_000)
    page.wait_for_function(
        "() => document.querySelectorAll('#batch-status tr[data-state=succeeded]').length === 2", timeout=JOB_TIMEOUT_MS)
    rows = page.inner_text("#batch-status")
    assert "1. Dora" in rows and "2. Theo" in rows
    _shot(page, "batch_presenters_done")
    jobs = {job.video_name: job for job in studio.queue.jobs() if job.video_name in ("Dora", "Theo")}
    assert sorted(jobs) == ["Dora", "Theo"]
    for job in jobs.values():
        assert job.engine.startswith("builtin"), job.engine
        assert (job.state, job.face_cache, job.study) == ("succeeded", "hit", "cached"), job
        assert not {"detect", "orientation", "study"} & set(job.timings), job.timings  # its stage table
    page.context.close()

    page = _page(browser, studio, locale="zh-CN")
    _open_tab(page, "主播库")
    page.wait_for_function(
        "() => document.querySelectorAll('#presenters-table tr[data-state=ready]').length >= 2", timeout=30_000)
    words = page.inner_text("#tab-presenters")
    assert "添加" in words and "就绪" in words and "50 帧中的" in words
    for english in ("Add", "Name", "ready", "Rename", "Delete", "frames", "Resolution"):
        assert english not in words, english
    _shot(page, "presenters_zh")
    page.context.close()


def test_single_takes_a_presenter_from_the_library_and_the_library_renames_and_deletes(
        browser, studio, short_clips) -> None:
    import time

    presenter = studio.queue.presenters.add(short_clips["d19"], "Nina")
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while studio.queue.presenters.get(presenter.id).state == "preparing":
        assert time.monotonic() < deadline, "the presenter was not prepared"
        time.sleep(0.5)
    page = _page(browser, studio)
    page.get_by_text("Options").first.click()
    page.get_by_label("builtin").check()  # the test checkpoint's mouth is noise; the built-in engine's is a mouth
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", short_clips["d0"])
    _pick(page, "single-presenter", "Nina")
    page.click("#single-generate")  # an upload and a pick: the page asks which
    _wait_for_words(page, "single-status", "Both a video upload and a presenter from the library are given")
    page.click("#single-picture button[aria-label='Clear']")
    page.click("#single-generate")
    page.wait_for_selector("#single-status [data-state=succeeded]", timeout=JOB_TIMEOUT_MS)
    assert "Nina" in page.inner_text("#single-status")
    _shot(page, "single_presenter_done")

    _open_tab(page, "Presenters")
    _pick(page, "presenter-pick", "Nina")
    page.wait_for_function("() => document.querySelector('#presenter-new-name input, #presenter-new-name textarea')"
                           ".value === 'Nina'", timeout=30_000)
    page.fill("#presenter-new-name input, #presenter-new-name textarea", "Nina Park")
    page.click("#presenter-rename")
    _wait_for_words(page, "presenter-note", "Renamed to Nina Park.")
    _wait_for_words(page, "presenters-list", "Nina Park")
    page.click("#presenter-delete")  # asks first: the button turns into the question, nothing is deleted
    _wait_for_words(page, "presenter-delete", "Really delete Nina Park?")
    _wait_for_words(page, "presenter-note", "Click “Really delete Nina Park?” to delete Nina Park")
    assert any(p.id == presenter.id for p in studio.queue.presenters.list())
    _shot(page, "presenter_delete_asks")
    page.click("#presenter-delete")
    _wait_for_words(page, "presenter-note", "Deleted Nina Park.")
    _wait_for_words(page, "presenter-delete", "Delete presenter")
    page.wait_for_function("() => !document.getElementById('presenters-list').innerText.includes('Nina')", timeout=30_000)
    assert all(p.id != presenter.id for p in studio.queue.presenters.list())
    assert page.input_value("#presenter-pick input") == "" and page.input_value("#single-presenter input") == ""
    page.context.close()


def test_a_presenter_picked_while_a_busy_studio_opens_its_tab_stays_picked(
        browser, studio, short_clips, monkeypatch) -> None:
    """A CI run picked Nina on the Presenters tab while the tab's own refresh was still out: the refresh came
    back with the picker as it was at the click (empty) and undid the pick, and the rename that followed renamed
    nothing. Here the studio's presenter list is slowed (1.5 s, a busy server) while the tabs open."""
    import time

    presenter = studio.queue.presenters.add(short_clips["d19"], "Pia")
    try:
        deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
        while studio.queue.presenters.get(presenter.id).state == "preparing":
            assert time.monotonic() < deadline, "the presenter was not prepared"
            time.sleep(0.5)
        page = _page(browser, studio)
        page.wait_for_timeout(2500)  # the timer's first refresh has filled the pickers
        listing = type(studio.queue.presenters).list

        def slow_listing(self, *args, **kwargs):
            time.sleep(1.5)
            return listing(self, *args, **kwargs)

        monkeypatch.setattr(type(studio.queue.presenters), "list", slow_listing)
        _open_tab(page, "Presenters")
        _pick(page, "presenter-pick", "Pia")
        name_field = "#presenter-new-name input, #presenter-new-name textarea"
        page.wait_for_function(f"() => document.querySelector('{name_field}').value === 'Pia'", timeout=30_000)
        _open_tab(page, "Live")
        _pick(page, "live-presenter", "Pia")
        page.wait_for_timeout(4000)  # both tabs' refreshes have come back
        assert page.input_value("#presenter-pick input") == "Pia"
        assert page.input_value("#live-presenter input") == "Pia"
        monkeypatch.undo()
        _open_tab(page, "Presenters")
        assert page.input_value(name_field) == "Pia"
        page.fill(name_field, "Pia Lund")
        page.click("#presenter-rename")
        _wait_for_words(page, "presenter-note", "Renamed to Pia Lund.")
        assert studio.queue.presenters.get(presenter.id).name == "Pia Lund"
        page.context.close()
    finally:
        studio.queue.presenters.delete(presenter.id)


def test_a_reload_finds_the_running_job_and_batch_again(browser, studio, short_clips, held_jobs) -> None:
    page = _page(browser, studio)
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", short_clips["d0"])
    page.click("#single-generate")
    _wait_for_words(page, "single-status", "lip-syncing", timeout=60_000)
    page.wait_for_function("() => location.search.includes('job=')", timeout=10_000)
    page.reload()
    # The job is found again from the address: its stage, percentage and times, and Cancel works on it.
    _wait_for_words(page, "single-status", "lip-syncing", timeout=60_000)
    status = page.inner_text("#single-status")
    assert "d0.mp4" in status and "%" in status and "elapsed" in status, status
    _shot(page, "single_reloaded")
    _cancel_single(page, held_jobs, "cancelling…", "cancelled")

    page = _start_batch(browser, studio, short_clips, "d0", "d13", "d19")
    page.wait_for_selector("#batch-status tr[data-state=running]", timeout=60_000)
    page.wait_for_function("() => location.search.includes('batch=')", timeout=10_000)
    page.reload()
    # Back on the Batch tab by itself, with the live table, the whole batch's progress and each video's.
    page.wait_for_selector("#batch-status tr[data-state=running]", timeout=60_000)
    assert page.locator("#batch-status tr[data-state]").count() == 3
    _wait_for_words(page, "batch-status", "elapsed")
    _wait_for_words(page, "batch-summary", "Whole batch: ")
    summary = page.inner_text("#batch-summary")
    assert "0 of 3 finished" in summary and "%" in summary and "elapsed" in summary, summary
    _shot(page, "batch_reloaded")

    _open_tab(page, "History")  # unfinished jobs are listed too, under their batch
    page.wait_for_selector("#history-table tr[data-state=queued]", timeout=30_000)
    page.wait_for_selector("#history-table tr[data-state=running]", timeout=30_000)
    assert "3 video(s)" in page.inner_text("#history-table")
    _shot(page, "history_running")

    _cancel_batch(page, "Batch", "cancelling…", held_jobs, 3)


def _cancel_batch(page, tab: str, cancelling: str, held_jobs, jobs: int) -> None:
    """Cancel the running batch from its tab: its running row says ``cancelling`` at once, while the job is still
    held; once let go, all ``jobs`` rows end cancelled. Closes the page."""
    _open_tab(page, tab)
    page.click("#batch-cancel")
    page.wait_for_function(
        "word => document.querySelector('#batch-status tr[data-state=running]').innerText.includes(word)",
        arg=cancelling, timeout=10_000)
    held_jobs.release()
    page.wait_for_function(
        "n => document.querySelectorAll('#batch-status tr[data-state=cancelled]').length === n", arg=jobs,
        timeout=60_000)
    page.context.close()


def test_a_finished_batch_opened_by_its_address_offers_its_zip_again(browser, studio, short_clips, tmp_path) -> None:
    batch = studio.queue.submit(short_clips["speech"], [short_clips["d13"], short_clips["d19"]])
    assert {job.state for job in studio.queue.wait([job.id for job in batch.jobs], timeout=480)} == {"succeeded"}
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, locale="zh-CN", accept_downloads=True)
    page = context.new_page()
    page.goto(f"{studio.url}/?batch={batch.id}")
    page.wait_for_function(
        "() => document.querySelectorAll('#batch-status tr[data-state=succeeded]').length === 2", timeout=60_000)
    page.wait_for_selector("#batch-zip a", timeout=30_000)
    _shot(page, "batch_reopened_zh")
    for link in ("#batch-zip a", f"#history-table tr[data-batch='{batch.id}'] a.hg-zip"):
        if link.startswith("#history"):
            _open_tab(page, "历史")
            page.wait_for_selector(link, timeout=30_000)
        with page.expect_download() as download:
            page.click(link)
        saved = tmp_path / "batch.zip"
        download.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            assert sorted(archive.namelist()) == ["d13__speech.mp4", "d19__speech.mp4"], link
    _shot(page, "history_zh")
    context.close()


# ---- the Chinese page, every tab and state: no English word a person reads --------------------------------

# Words the Chinese page may show as they are, each a name, not English: the product's; the engine's and its
# project's (Wav2Lip, as its papers and checkpoints are called in Chinese too); the chips it runs on; the file
# formats a person sees at the end of their files' names; and the size units of Gradio's file list (KB, MB
# are read as they are in Chinese software).
NAMES_KEPT = {
    "heygem": "the product", "wav2lip": "the engine and its project", "cpu": "a chip", "gpu": "a chip", "cuda": "a chip",
    "zip": "file format", "mp4": "file format", "mov": "file format", "mkv": "file format", "avi": "file format",
    "webm": "file format", "wav": "file format", "mp3": "file format", "m4a": "file format", "flac": "file format",
    "ogg": "file format", "aiff": "file format", "jpg": "file format", "png": "file format", "webp": "file format",
    "kb": "size unit", "mb": "size unit",
}
# Paths a person must find or type as they are (where a checkpoint goes, the log file): removed before the check.
PATHS_SHOWN = ("checkpoints/wav2lip_gan.pth", "wav2lip_gan.pth", "wav2lip.pth", "checkpoints/", "logs/heygem.log",
               "wav2lip_test.pth")
# Everything the page shows, visible tab only (hidden ones have no innerText), and the placeholders of visible fields.
_VISIBLE_TEXT = """() => document.body.innerText + '\\n' + [...document.querySelectorAll('input[placeholder], textarea[placeholder]')]
    .filter(e => e.offsetParent !== null).map(e => e.placeholder).join('\\n')"""


def _user_names(studio) -> set[str]:
    """Every name the studio's users gave or got back: their files' names as uploaded (and their stems, since
    Gradio lists stem and extension apart), results and ZIPs, presenters' names and files."""
    from heygem.jobs import safe_name

    names: set[str] = set()
    for job in studio.queue.jobs(limit=10_000):
        names |= {job.video_name, job.audio_name, f"heygem_{safe_name(Path(job.audio_name).stem, 'speech')}_{job.batch_id[:6]}.zip"}
        if job.output is not None:
            names.add(job.output.name)
    for presenter in studio.queue.presenters.list():
        names |= {presenter.name, presenter.file_name}
    return names | {Path(name).stem for name in names}


def _english_words(page, names: set[str]) -> list[str]:
    """The ASCII words of two or more letters the page shows, less names (NAMES_KEPT), paths (PATHS_SHOWN) and
    the names of the user's own files and presenters (``names``)."""
    shown = page.evaluate(_VISIBLE_TEXT)
    for kept in sorted({*PATHS_SHOWN, *names}, key=len, reverse=True):
        shown = shown.replace(kept, " ")
    words = re.findall(r"[A-Za-z][A-Za-z0-9]*", shown)
    return sorted({word for word in words if sum(c.isalpha() for c in word) >= 2 and word.lower() not in NAMES_KEPT})


def _all_chinese(page, shot: str, studio, uploaded: tuple[Path, ...] = ()) -> None:
    """Photograph the page as ``ui_zh_<shot>.png`` and assert it shows no English word but names: the studio's
    users' own (_user_names) and those of the files ``uploaded`` on this page, not yet submitted."""
    _shot(page, f"zh_{shot}")
    names = _user_names(studio) | {p.name for p in uploaded} | {p.stem for p in uploaded}
    english = _english_words(page, names)
    if english:  # where on the page, for the failure message
        shown = page.evaluate(_VISIBLE_TEXT)
        english = [(word, shown[max(0, shown.find(word) - 40):shown.find(word) + 40]) for word in english]
    assert not english, f"{shot}: English on the Chinese page: {english}"


def _chinese_page(browser, studio, builtin: bool = False, address: str = ""):
    page = _page(browser, studio, locale="zh-CN", address=address)
    page.wait_for_function("() => document.getElementById('engine-line').innerText.includes('引擎')", timeout=30_000)
    page.get_by_text("选项").first.click()
    page.wait_for_selector("#engine-choice input[type=radio]", timeout=30_000)
    if builtin:
        page.get_by_label("内置").check()
    return page


def test_the_chinese_page_shows_no_english_while_jobs_run(browser, studio, short_clips, held_jobs) -> None:
    page = _chinese_page(browser, studio)
    clips = (short_clips["speech"], short_clips["d0"], short_clips["d13"], short_clips["d19"])
    _all_chinese(page, "single_idle", studio)  # the Options open: engine, face, length, quality
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", short_clips["d0"])
    page.wait_for_selector("#single-video-preview video", timeout=30_000)
    page.click("#single-generate")
    _wait_for_words(page, "single-status", "口型同步中", timeout=60_000)
    _all_chinese(page, "single_running", studio, clips)
    page.click("#single-cancel")
    _wait_for_words(page, "single-status", "正在取消…", timeout=10_000)
    _all_chinese(page, "single_cancelling", studio, clips)
    held_jobs.release()
    _wait_for_words(page, "single-status", "已取消", timeout=60_000)
    page.context.close()

    page = _chinese_page(browser, studio)
    _open_tab(page, "批量")
    _upload(page, "batch-audio", short_clips["speech"])
    _upload(page, "batch-videos", short_clips["d13"], short_clips["d19"])
    page.click("#batch-start")
    page.wait_for_selector("#batch-status tr[data-state=running]", timeout=60_000)
    _wait_for_words(page, "batch-summary", "整批")
    _all_chinese(page, "batch_running", studio, clips)
    _open_tab(page, "历史")
    page.wait_for_selector("#history-table tr[data-state=queued]", timeout=30_000)
    _all_chinese(page, "history_running", studio, clips)
    _cancel_batch(page, "批量", "正在取消…", held_jobs, 2)


def test_the_chinese_page_shows_no_english_in_results_failures_presenters_history_and_logs(
        browser, studio, short_clips, media: Path, tmp_path: Path) -> None:
    import time

    # A video with no face in it: its job fails, and the reason must read in Chinese.
    pattern = make_clip(tmp_path / "pattern.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=2",
                        "-c:v", "libx264", "-preset", "ultrafast")
    photo = media / "insightface" / "Tom_Hanks_54745.png"
    presenter = studio.queue.presenters.add(short_clips["d19"], "小美")
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while studio.queue.presenters.get(presenter.id).state == "preparing":
        assert time.monotonic() < deadline, "the presenter was not prepared"
        time.sleep(0.5)
    uploads = (short_clips["speech"], short_clips["d0"], short_clips["d13"], pattern, photo)

    # The page finds the missing face at upload and does not submit it (test_the_page_blocks_...): such a job
    # comes from elsewhere, the API say, and its page (opened by its address) words its failure in Chinese.
    page = _chinese_page(browser, studio, builtin=True)
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", pattern)
    _wait_for_words(page, "single-picture-check", "pattern.mp4：查看的 6 帧中都没有找到人脸")
    _all_chinese(page, "single_blocked", studio, uploads)
    page.context.close()
    builtin = with_choices(studio.queue.defaults, engine="builtin")
    faceless = studio.queue.submit(short_clips["speech"], [pattern], builtin).jobs[0]
    page = _chinese_page(browser, studio, address=f"?job={faceless.id}")
    page.wait_for_selector("#single-status [data-state=failed]", timeout=JOB_TIMEOUT_MS)
    assert "pattern.mp4：全部" in page.inner_text("#single-status") and "没有找到人脸" in page.inner_text("#single-status")
    _all_chinese(page, "single_failed", studio, uploads)
    page.context.close()

    page = _chinese_page(browser, studio, builtin=True)
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", short_clips["d0"])
    page.click("#single-generate")
    page.wait_for_selector("#single-status [data-state=succeeded]", timeout=JOB_TIMEOUT_MS)
    page.wait_for_selector("#single-result video", timeout=60_000)
    assert "内置引擎" in page.inner_text("#single-status")
    _all_chinese(page, "single_done", studio, uploads)

    page.context.close()
    batch = studio.queue.submit(short_clips["speech"], [photo, short_clips["d13"], pattern], builtin,
                                presenters=[presenter.id])
    page = _chinese_page(browser, studio, address=f"?batch={batch.id}")  # opens on the Batch tab by itself
    page.wait_for_function(
        "() => document.querySelectorAll('#batch-status tr[data-state=succeeded]').length === 3"
        " && document.querySelectorAll('#batch-status tr[data-state=failed]').length === 1", timeout=JOB_TIMEOUT_MS)
    page.wait_for_selector("#batch-zip a", timeout=30_000)
    table = page.inner_text("#batch-status")
    assert "照片方式" in table and "用时" in table, table  # the photo's row says it took the photo path
    assert "pattern.mp4：全部 50 帧中都没有找到人脸" in table, table  # the failed row says why, in Chinese
    _all_chinese(page, "batch_done", studio, uploads)

    _open_tab(page, "主播库")
    page.wait_for_selector("#presenters-table tr[data-state=ready]", timeout=30_000)
    _all_chinese(page, "presenters", studio, uploads)
    _open_tab(page, "历史")
    page.wait_for_selector("#history-table tr[data-state=failed]", timeout=30_000)
    page.wait_for_selector("#history-player video", timeout=30_000)
    _all_chinese(page, "history", studio, uploads)
    _open_tab(page, "日志")
    page.wait_for_function("() => document.querySelector('#log-tail textarea').value.includes('succeeded')",
                           timeout=30_000)
    # The log's own lines are the log, written in English for whoever reads logs/heygem.log: a textarea's
    # content is not in the page's innerText, so only the tab's own words are checked.
    _all_chinese(page, "logs", studio, uploads)
    page.context.close()


# ---- what the page says early: blocked submits, the study, the estimate, the wait, stopped jobs' bars -------

_WORDS = {
    "en-US": {"blocked": "Cannot start yet:", "no_face": "pattern.mp4: no face found in the 6 frames looked at",
              "silent": "d0.mp4: the speech file has no sound.", "unreadable": "notes.mp4 is not a video or photo",
              "study": "studying the presenter", "left": " left", "starts": "starts in about", "lip": "lip-syncing",
              "cancelling": "cancelling…", "cancelled": "cancelled", "single": "Single", "batch": "Batch",
              "history": "History", "options": "Options", "builtin": "builtin"},
    "zh-CN": {"blocked": "暂时无法开始：", "no_face": "pattern.mp4：查看的 6 帧中都没有找到人脸",
              "silent": "d0.mp4：语音文件没有声音。", "unreadable": "notes.mp4 不是 HeyGem 能读取的视频或照片",
              "study": "分析主播", "left": "约剩", "starts": "后开始", "lip": "口型同步中", "cancelling": "正在取消…",
              "cancelled": "已取消", "single": "单个", "batch": "批量", "history": "历史", "options": "选项",
              "builtin": "内置"},
}


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
def test_a_file_marked_bad_at_upload_blocks_the_submit_and_says_why(browser, studio, short_clips, tmp_path: Path,
                                                                    locale: str) -> None:
    words, lang = _WORDS[locale], locale[:2]
    notes = tmp_path / "notes.mp4"
    notes.write_text("Things to say in the video: hello, thanks for watching.\n")
    pattern = make_clip(tmp_path / "pattern.mp4", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25:duration=2",
                        "-c:v", "libx264", "-preset", "ultrafast")
    jobs_before = len(studio.queue.jobs(limit=10_000))
    page = _page(browser, studio, locale=locale)
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", pattern)  # no face: found out at once, not when its job's turn comes
    _wait_for_words(page, "single-blocked", words["blocked"])
    assert words["no_face"] in page.inner_text("#single-picture-check")
    assert words["no_face"] in page.inner_text("#single-blocked")
    assert page.is_disabled("#single-generate")
    _shot(page, f"single_blocked_{lang}")
    # A page that sends the click anyway (its button forced back on) is refused by the studio itself.
    page.evaluate("() => { const b = document.querySelector('#single-generate'); b.disabled = false; b.click(); }")
    _wait_for_words(page, "single-status", words["no_face"])
    assert len(studio.queue.jobs(limit=10_000)) == jobs_before
    page.context.close()

    page = _page(browser, studio, locale=locale)
    _open_tab(page, words["batch"])
    _upload(page, "batch-audio", short_clips["d0"])  # a video without sound, as the speech
    _upload(page, "batch-videos", short_clips["d13"], notes)
    _wait_for_words(page, "batch-blocked", words["unreadable"])
    _wait_for_words(page, "batch-blocked", words["silent"])
    assert "d13.mp4" not in page.inner_text("#batch-blocked")  # the good one is not blamed
    assert page.is_disabled("#batch-start")
    _shot(page, f"batch_blocked_{lang}")
    page.evaluate("() => { const b = document.querySelector('#batch-start'); b.disabled = false; b.click(); }")
    _wait_for_words(page, "batch-status", words["unreadable"])
    assert len(studio.queue.jobs(limit=10_000)) == jobs_before  # nothing was submitted
    page.context.close()


@pytest.mark.parametrize("locale, offset", [("en-US", "1"), ("zh-CN", "4")])
def test_a_fresh_video_shows_its_study_and_estimate_the_queue_its_wait_and_stopped_jobs_their_bars(
        browser, studio, short_clips, media: Path, tmp_path: Path, request, locale: str, offset: str) -> None:
    import time

    words, lang = _WORDS[locale], locale[:2]
    builtin = with_choices(studio.queue.defaults, engine="builtin")
    # This machine's rates for the built-in engine: one job whose presenter study was made.
    measure = make_clip(tmp_path / "measure.mp4", "-ss", offset, "-i", str(media / "liveportrait" / "d19.mp4"), "-t", "2",
                        "-vf", "scale=-2:360", "-an", "-c:v", "libx264", "-preset", "ultrafast")
    measured = studio.queue.submit(short_clips["speech"], [measure], builtin).jobs[0]
    measured = studio.queue.wait([measured.id], timeout=JOB_TIMEOUT_MS / 1000)[0]
    assert (measured.state, measured.study) == ("succeeded", "made"), measured

    # A video never seen: its study is named as such, with the time left from the rates measured here. Fourteen
    # seconds at 540x960 (the clip played twice), so that the study (two seconds or so) outlasts the page's
    # refresh: a 4 s 480-line clip was studied in well under a second once faces were found at the face's scale,
    # and 7 s once the study detected only the job's anchors; the page saw no study.
    fresh = make_clip(tmp_path / "fresh.mp4", "-stream_loop", "1", "-ss", offset, "-i",
                      str(media / "liveportrait" / "d13.mp4"), "-t", "14", "-vf", "scale=-2:960", "-an", "-c:v", "libx264",
                      "-preset", "ultrafast")
    page = _page(browser, studio, locale=locale)
    page.get_by_text(words["options"]).first.click()
    page.get_by_label(words["builtin"]).check()
    _upload(page, "single-audio", short_clips["speech"])
    _upload(page, "single-picture", fresh)
    page.click("#single-generate")
    _wait_for_words(page, "single-status", words["study"], timeout=120_000)
    seen_at, status = time.time(), page.inner_text("#single-status")
    page.screenshot(path=str(ARTIFACTS / f"ui_single_study_{lang}.png"), full_page=True)  # at once: it is short
    assert words["left"] in status, status
    page.wait_for_selector("#single-status [data-state=succeeded]", timeout=JOB_TIMEOUT_MS)
    # For a person to compare (not a test: timings vary with the machine's load): the estimate and the truth.
    done = next(job for job in studio.queue.jobs() if job.video_name == "fresh.mp4" and job.state == "succeeded")
    with (ARTIFACTS / "estimates.txt").open("a", encoding="utf-8") as notes:
        notes.write(f"{lang}: shown {status.splitlines()[0]!r}; it took {done.finished - seen_at:.1f} s more\n")

    # Jobs held in lip-syncing from here: one running, a batch queued behind it with its wait.
    held_jobs = request.getfixturevalue("held_jobs")
    page.click("#single-generate")
    _wait_for_words(page, "single-status", words["lip"], timeout=60_000)
    other = _page(browser, studio, locale=locale)
    other.get_by_text(words["options"]).first.click()
    other.get_by_label(words["builtin"]).check()  # measured above: each row's wait is known
    _open_tab(other, words["batch"])
    _upload(other, "batch-audio", short_clips["speech"])
    _upload(other, "batch-videos", short_clips["d0"], short_clips["d13"], short_clips["d19"])
    other.click("#batch-start")
    other.wait_for_selector("#batch-status tr[data-state=queued]", timeout=30_000)
    other.wait_for_function("word => [...document.querySelectorAll('#batch-status tr[data-state=queued]')]"
                            ".every(row => row.innerText.includes(word))", arg=words["starts"], timeout=30_000)
    _shot(other, f"batch_queue_wait_{lang}")

    # Cancelled: the bar stops where the job stopped, grey.
    _cancel_single(page, held_jobs, words["cancelling"], words["cancelled"], keep_open=True)
    bar = page.locator("#single-status .hg-bar")
    assert "hg-bar-cancelled" in bar.get_attribute("class")
    _shot(page, f"single_cancelled_{lang}")
    page.context.close()
    # In the batch: the first fails (let go without a cancel), the second is cancelled while it runs, the
    # third while it waits.
    other.wait_for_selector("#batch-status tr[data-state=running]", timeout=60_000)
    held_jobs.release()
    other.wait_for_selector("#batch-status tr[data-state=failed]", timeout=60_000)
    other.wait_for_selector("#batch-status tr[data-state=running]", timeout=60_000)
    other.click("#batch-cancel")
    _wait_for_words(other, "batch-status", words["cancelling"])  # asked, before the held job is let go
    held_jobs.release()
    other.wait_for_function(
        "() => document.querySelectorAll('#batch-status tr[data-state=cancelled]').length === 2", timeout=60_000)
    classes = other.eval_on_selector_all("#batch-status .hg-bar", "bars => bars.map(b => b.className)")
    assert classes == ["hg-bar hg-bar-failed", "hg-bar hg-bar-cancelled", "hg-bar hg-bar-cancelled"], classes
    _shot(other, f"batch_stopped_{lang}")
    _open_tab(other, words["history"])
    other.wait_for_selector("#history-table tr[data-state=cancelled]", timeout=30_000)
    assert other.locator("#history-table .hg-bar").count() == 0  # History shows states, not bars
    _shot(other, f"history_stopped_{lang}")
    other.context.close()


def test_a_fresh_page_shows_only_its_own_work_and_keeps_the_tab_clicked(browser, studio, short_clips, held_jobs,
                                                                       monkeypatch) -> None:
    import time

    import heygem.ui.studio

    someone_elses = studio.queue.submit(short_clips["speech"], [short_clips["d13"], short_clips["d19"]])  # the API
    deadline = time.monotonic() + 60
    while studio.queue.batch(someone_elses.id).jobs[0].state != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    page = _page(browser, studio)  # a browser that submitted nothing
    page.wait_for_timeout(3000)  # past the page's restore and a few refreshes
    assert page.get_by_role("tab", name="Single").get_attribute("aria-selected") == "true"
    assert "d13.mp4" not in page.inner_text("#tab-single")
    _open_tab(page, "Batch")
    assert "d13.mp4" not in page.inner_text("#batch-status") and "d19.mp4" not in page.inner_text("#batch-summary")

    # This browser's own batch, submitted here; the studio opened afresh (no address) finds it again.
    _upload(page, "batch-audio", short_clips["speech"])
    _upload(page, "batch-videos", short_clips["d0"])
    page.click("#batch-start")
    page.wait_for_selector("#batch-status tr[data-state=queued]", timeout=30_000)
    own = page.wait_for_function("() => localStorage.getItem('heygem-batch')", timeout=30_000).json_value()
    assert own and studio.queue.batch(own).jobs[0].video_name == "d0.mp4"
    again = page.context.new_page()
    again.goto(studio.url)
    again.wait_for_selector("#batch-status tr[data-state=queued]", timeout=30_000)  # its tab opened by itself
    assert again.get_by_role("tab", name="Batch").get_attribute("aria-selected") == "true"
    assert "d0.mp4" in again.inner_text("#batch-status") and "d13.mp4" not in again.inner_text("#batch-status")
    _shot(again, "batch_remembered")

    # The restore answers late here (2 s): a tab the person clicked meanwhile stays in front.
    restored_work = heygem.ui.studio.restored_work
    monkeypatch.setattr(heygem.ui.studio, "restored_work", lambda *args: (time.sleep(2), restored_work(*args))[1])
    late = page.context.new_page()
    late.goto(studio.url)
    late.wait_for_selector("#single-generate", timeout=60_000)
    _open_tab(late, "History")
    late.wait_for_timeout(4000)
    assert late.get_by_role("tab", name="History").get_attribute("aria-selected") == "true"
    _open_tab(late, "Batch")  # the work was restored all the same
    _wait_for_words(late, "batch-status", "d0.mp4")
    page.context.close()
    studio.queue.cancel_batch(someone_elses.id)
    studio.queue.cancel_batch(own)
