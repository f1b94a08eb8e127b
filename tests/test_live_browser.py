"""The Live tab in a real headless Chromium (Debian's, driven by Playwright, with its fake camera and microphone):
a presenter brought live plays in the page's <video>, says a speech file and what the microphone hears, shows
its figures as a person reads them, and Stop ends it; the Chinese page words it all in Chinese, the studio's
limit included; a studio without aiortc says how to install it. Photographs go to tests/artifacts/live_*.png.

Each test ends the live sessions it started, whatever happens: the studio runs one at a time by default."""
from __future__ import annotations

import re
import time

import httpx
import pytest

from conftest import MEDIA
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _english_words, _open_tab, _pick, _upload, _user_names

pytestmark = pytest.mark.alone  # the live presenter speaks in real time: the CPU to itself (tests/run.sh)

# Chromium's fake microphone (a beep) and camera, allowed without asking.
LIVE_ARGS = [*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]
SPEECH = MEDIA / "speechrecognition/english.wav"  # 2.7 s
PRESENTER = "Dee Live"
STREAM_TIMEOUT_MS = 60_000

# The page's stage, read in the page: the session's state and figures as the script last showed them.
_STAGE = """() => { const s = document.getElementById('live-stage'); const v = document.getElementById('live-video');
    return {state: s.dataset.state, sent: Number(s.dataset.framesSent || 0),
            utterances: Number(s.dataset.utterances || 0),
            width: v.videoWidth, time: v.currentTime, figures: document.getElementById('live-figures').innerText,
            line: document.getElementById('live-state').innerText,
            message: document.getElementById('live-message').innerText}; }"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium not found at {CHROMIUM}: run the test command (bash tests/run.sh), which installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LIVE_ARGS)
        yield browser
        browser.close()


def _end_sessions(studio) -> list[str]:
    """Ends every live session of the studio; returns their ids."""
    with httpx.Client(base_url=studio.url, timeout=30) as client:
        ids = [session["id"] for session in client.get("/api/live").json()["sessions"]]
        for session_id in ids:
            client.delete(f"/api/live/{session_id}")
    return ids


def _sessions(studio) -> list[dict]:
    return httpx.get(f"{studio.url}/api/live", timeout=30).json()["sessions"]


@pytest.fixture(scope="module")
def presenter(studio, short_clips):
    """A ready presenter added through the API (2 s of d0), deleted after this module's tests."""
    clip = short_clips["d0"]
    with httpx.Client(base_url=studio.url, timeout=120) as client:
        added = client.post("/api/presenters", files={"video": (clip.name, clip.read_bytes(), "video/mp4")},
                            data={"name": PRESENTER}).json()
        deadline = time.monotonic() + 240
        while (state := client.get(f"/api/presenters/{added['id']}").json()["state"]) == "preparing":
            assert time.monotonic() < deadline, "the presenter was not prepared"
            time.sleep(0.5)
        assert state == "ready"
        yield added["id"]
        client.delete(f"/api/presenters/{added['id']}")


@pytest.fixture
def streaming():
    pytest.importorskip("aiortc", reason="live sessions need requirements-live.txt (the test command installs it)")


@pytest.fixture
def no_sessions(studio):
    """No live session before the test, and none left after it, whatever happened."""
    _end_sessions(studio)
    yield
    _end_sessions(studio)


def _live_tab(browser, studio, locale: str = "en-US"):
    context = browser.new_context(viewport={"width": 1360, "height": 1000}, locale=locale)
    page = context.new_page()
    page.goto(studio.url + "/")
    page.wait_for_selector("#single-generate", timeout=60_000)
    _open_tab(page, "直播" if locale.startswith("zh") else "Live")
    page.wait_for_selector("#live-stage", timeout=30_000)  # the stage, worded in the page's language
    return page


def _start(page, name: str = PRESENTER) -> None:
    """Pick the presenter, Start, and wait until the stream plays: a picture, and time moving in it."""
    _pick(page, "live-presenter", name)
    page.click("#live-start")
    page.wait_for_function("() => { const v = document.getElementById('live-video');"
                           " return v.videoWidth > 0 && v.currentTime > 0.5; }", timeout=STREAM_TIMEOUT_MS)
    played = page.evaluate(_STAGE)["time"]
    page.wait_for_timeout(1000)
    assert page.evaluate(_STAGE)["time"] > played + 0.5, "the stream's picture does not move on"
    page.wait_for_selector("#live-stage[data-state=idle]", timeout=30_000)


def _speak(page) -> None:
    _upload(page, "live-speech", SPEECH)
    page.click("#live-speak")


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _stop(page, studio) -> None:
    page.click("#live-stop")
    page.wait_for_selector("#live-stage[data-state=ended]", timeout=30_000)
    deadline = time.monotonic() + 10
    while _sessions(studio):
        assert time.monotonic() < deadline, "Stop left the session running"
        time.sleep(0.2)


def test_the_live_tab_streams_the_presenter_who_says_a_file_and_the_microphone(browser, studio, presenter, streaming,
                                                                               no_sessions) -> None:
    page = _live_tab(browser, studio)
    _start(page)
    idle = page.evaluate(_STAGE)
    assert idle["line"].startswith(f"{PRESENTER}: live, resting"), idle
    # The figures, and no latency before any speech. (How many frames are late is the machine's: a frame or two
    # at the stream's start on a busy one; the bench measures it, heygem.bench live.)
    assert re.search(r" fps · \d+ late · ", idle["figures"]) and " CPU " in idle["figures"], idle
    assert "latency" not in idle["figures"], idle
    (session,) = _sessions(studio)

    _speak(page)
    page.wait_for_selector("#live-stage[data-state=speaking]", timeout=10_000)
    page.wait_for_timeout(1000)  # into the speech (it starts a lead of about 0.3 s after it arrives)
    _shot(page, "live_en_speaking")
    speaking = page.evaluate(_STAGE)
    assert "live, speaking" in speaking["line"] and "Saying english.wav (2.7 s)" in speaking["message"], speaking
    page.wait_for_selector("#live-stage[data-state=idle]", timeout=15_000)
    page.wait_for_timeout(1200)
    spoken = page.evaluate(_STAGE)
    assert spoken["sent"] > speaking["sent"] > idle["sent"], (idle, speaking, spoken)
    assert spoken["message"] == "", spoken  # the note about the file is gone once it is said
    assert "latency " in spoken["figures"] and " ms · A/V offset " in spoken["figures"], spoken
    figures = httpx.get(f"{studio.url}/api/live/{session['id']}").json()
    assert figures["utterances"] == 1 and figures["latency_ms"] is not None, figures
    _shot(page, "live_en")

    # The microphone (Chromium's fake one) is put on the stream already running, and taken off again.
    page.check("#live-mic input")
    page.wait_for_function("() => document.getElementById('live-message').innerText.includes('Microphone on')",
                           timeout=10_000)
    page.wait_for_function("(before) => Number(document.getElementById('live-stage').dataset.utterances) > before",
                           arg=spoken["utterances"], timeout=15_000)
    page.wait_for_selector("#live-stage[data-state=speaking]", timeout=10_000)
    page.uncheck("#live-mic input")
    page.wait_for_selector("#live-stage[data-state=idle]", timeout=15_000)
    assert [s["id"] for s in _sessions(studio)] == [session["id"]]  # the same session throughout

    _stop(page, studio)
    assert "The live session has ended." in page.evaluate(_STAGE)["line"]
    page.context.close()


def test_the_chinese_live_tab_and_its_limit(browser, studio, presenter, streaming, no_sessions) -> None:
    page = _live_tab(browser, studio, locale="zh-CN")
    names = _user_names(studio) | {SPEECH.name, SPEECH.stem}
    assert not _english_words(page, names), "English on the Chinese Live tab before a session"
    _start(page)
    _speak(page)
    page.wait_for_selector("#live-stage[data-state=speaking]", timeout=10_000)
    assert page.inner_text("#live-message") == "正在说 english.wav（2.7 秒）。"
    page.wait_for_timeout(500)
    page.check("#live-interrupt input")  # the same file again, at once instead of after the first
    page.click("#live-speak")
    page.wait_for_function("() => document.getElementById('live-message').innerText.includes('取代')", timeout=10_000)
    page.wait_for_timeout(1000)
    _shot(page, "live_zh_speaking")
    speaking = page.evaluate(_STAGE)
    assert "直播中 · 正在说话" in speaking["line"] and "帧/秒" in speaking["figures"], speaking
    assert speaking["message"] == "正在说 english.wav（2.7 秒），取代了刚才的内容。", speaking
    assert not _english_words(page, names), "English on the Chinese Live tab while speaking"
    page.wait_for_selector("#live-stage[data-state=idle]", timeout=15_000)
    page.wait_for_timeout(1200)
    _shot(page, "live_zh")
    assert "延迟" in page.evaluate(_STAGE)["figures"]
    (session,) = _sessions(studio)
    assert session["utterances"] == 2 and session["interrupts"] == 1, session
    assert not _english_words(page, names), "English on the Chinese Live tab after speaking"

    # A second page while the one session the studio allows runs: the limit, in Chinese.
    other = _live_tab(browser, studio, locale="zh-CN")
    _pick(other, "live-presenter", PRESENTER)
    other.click("#live-start")
    other.wait_for_selector("#live-message.hg-error", timeout=30_000)
    refused = other.inner_text("#live-message")
    assert refused.startswith("已有 1 个直播在运行，这是本工作室同时运行的上限（可用 --max-live-sessions"), refused
    assert len(_sessions(studio)) == 1
    other.context.close()

    _stop(page, studio)
    assert "直播已结束。" in page.evaluate(_STAGE)["line"]
    page.context.close()


@pytest.mark.parametrize("locale, words", [
    ("en-US", "Live sessions need aiortc, which is not installed: install it with ./start_app.sh --live"),
    ("zh-CN", "直播需要 aiortc，但尚未安装：请用 ./start_app.sh --live"),
])
def test_start_without_aiortc_says_how_to_install_it(browser, studio, presenter, no_sessions, monkeypatch,
                                                     locale, words) -> None:
    import heygem.live.sessions

    missing = "live sessions need aiortc (aiortc is not installed): pip install -r requirements-live.txt"
    monkeypatch.setattr(heygem.live.sessions, "live_available", lambda: missing)
    page = _live_tab(browser, studio, locale)
    _pick(page, "live-presenter", PRESENTER)
    page.click("#live-start")
    page.wait_for_selector("#live-message.hg-error", timeout=30_000)
    message = page.inner_text("#live-message")
    assert message.startswith(words) and "requirements-live.txt" in message, message
    assert not _sessions(studio)
    page.context.close()
