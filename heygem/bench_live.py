"""``python -m heygem.bench live``: one live session measured the way a viewer meets it, with a real WebRTC
client (aiortc) over loopback (README, "Live presenter"; bench/RESULTS.md).

The studio runs as its own process (``app.py``, the built-in engine), so that its CPU and memory are its own; a
presenter is added and prepared, a session brought live, and this process connects as its peer and receives
picture and sound for ``--minutes``, while speeches from ../shared/media (several languages) are said with
pauses between them. Measured:

* delivered rate: frames received per second (overall and the worst 10 s), and the session's own count of
  frames late (drawn after their time) and dropped (skipped to keep time);
* latency, the session's record: from a speech entering the server to the first frame whose mouth opens for it
  (its first sound's time in the speech counted out), per speech;
* the audio/video offset of what the client receives: for each speech, when its sound begins to arrive and when
  the first received frame shows the mouth opening (face mesh on the received frames around it); their
  difference at minute 1 and at the last minute (drift shows as a change);
* the studio's CPU (share of one core) and resident memory, every 10 s.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

SPEECHES = ("speechrecognition/english.wav", "sadtalker/bus_chinese.wav", "speechrecognition/french.aiff",
            "sadtalker/RD_Radio31_000.wav", "speechrecognition/chinese.flac", "sadtalker/deyu.wav")
PAUSES = (1.5, 3.0, 2.0, 4.0)  # seconds of rest after each speech, in turn
ONSET_DB = -40.0  # a 20 ms packet this loud (dBFS) after QUIET_SECONDS below it starts a speech
QUIET_SECONDS = 0.6
FRAME_KEEP_SECONDS = 3.0
REPO = Path(__file__).resolve().parents[1]


@dataclass
class _Client:
    """What the peer saw: frame arrivals, onsets of sound, and the frames kept around each onset."""

    frames: deque = field(default_factory=lambda: deque())  # (arrival, JPEG) of the last few seconds
    frame_times: list[float] = field(default_factory=list)
    onsets: list[float] = field(default_factory=list)  # arrival of each speech's first loud packet
    quiet_since: float | None = None
    windows: list[tuple[float, list[tuple[float, np.ndarray]]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_port() -> int:
    """A port of 127.0.0.1 free now (for a server this process starts next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _proc_figures(pid: int) -> tuple[float, float]:
    """(CPU seconds used, resident MB) of process ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        parts = stat.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(parts[11]) + int(parts[12])) / ticks
    with open(f"/proc/{pid}/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
    return cpu, rss


def _first_sound(samples: np.ndarray) -> float:
    """Seconds into a speech of its first 20 ms as loud as an onset."""
    n = len(samples) // 320
    level = 20 * np.log10(np.sqrt((samples[:n * 320].reshape(n, 320) ** 2).mean(axis=1)) + 1e-9)
    loud = np.nonzero(level > ONSET_DB)[0]
    return float(loud[0] * 0.02) if len(loud) else 0.0


def mouth_onset(frames: list[tuple[float, np.ndarray]], sound_at: float) -> float | None:
    """Arrival time of the first frame whose mouth opens for the speech whose sound arrived at ``sound_at``:
    openings (face mesh) of the frames around it; the rest level is the median before the speech; the onset is
    the first frame from 0.4 s before the sound whose opening passes a third of the way to the peak after it."""
    from heygem.eval import frame_openings

    if not frames:
        return None
    times = np.array([at for at, _ in frames])
    openings = frame_openings([image for _, image in frames])
    rest_part = openings[(times < sound_at - 0.4) & ~np.isnan(openings)]
    after = openings[(times >= sound_at - 0.4) & (times <= sound_at + 1.0)]
    if len(rest_part) < 3 or not np.isfinite(after).any():
        return None
    rest, peak = float(np.median(rest_part)), float(np.nanmax(after))
    if peak - rest < 0.02:
        return None
    threshold = rest + (peak - rest) / 3
    for at, opening in zip(times, openings):
        if at >= sound_at - 0.4 and np.isfinite(opening) and opening > threshold:
            return float(at)
    return None


async def _run_client(url: str, session_id: str, speeches: list[tuple[str, bytes, np.ndarray]], minutes: float,
                      pid: int) -> dict[str, Any]:
    import httpx
    from aiortc import RTCPeerConnection, RTCSessionDescription

    client = _Client()
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")

    @pc.on("track")
    def _track(track) -> None:
        async def read() -> None:
            while True:
                try:
                    frame = await track.recv()
                except Exception:
                    return
                now = time.monotonic()
                if track.kind == "video":
                    client.frame_times.append(now)
                    # Kept as JPEG and measured after the run: the face mesh run here, beside the studio on the same
                    # cores, made the studio miss frames it would not miss with its peer on another machine.
                    ok, jpeg = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 90])
                    with client.lock:
                        client.frames.append((now, jpeg))
                        while client.frames and client.frames[0][0] < now - FRAME_KEEP_SECONDS:
                            client.frames.popleft()
                    continue
                data = frame.to_ndarray().astype(np.float32) / 32768
                level = 20 * np.log10(np.sqrt(float((data ** 2).mean())) + 1e-9)
                if level > ONSET_DB:
                    if client.quiet_since is not None and now - client.quiet_since >= QUIET_SECONDS:
                        client.onsets.append(now)
                    client.quiet_since = None
                elif client.quiet_since is None:
                    client.quiet_since = now

        asyncio.ensure_future(read())

    await pc.setLocalDescription(await pc.createOffer())
    figures: list[dict[str, Any]] = []
    said: list[dict[str, Any]] = []
    process: list[dict[str, float]] = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as http:
        answer = (await http.post(f"/api/live/{session_id}/offer",
                                  json={"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})).json()
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        started = time.monotonic()
        end = started + minutes * 60
        await asyncio.sleep(3.0)
        turn = 0
        next_poll = time.monotonic()
        next_proc = time.monotonic() + 10.0
        cpu0, _ = _proc_figures(pid)
        proc_t0 = time.monotonic()
        say_due = time.monotonic()
        pending_windows: list[float] = []
        handled = 0
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= say_due:
                name, data, samples = speeches[turn % len(speeches)]
                sent = time.monotonic()
                reply = await http.post(f"/api/live/{session_id}/say", files={"audio": (Path(name).name, data)})
                seconds = reply.json().get("seconds", len(samples) / 16000)
                said.append({"speech": name, "sent": sent - started, "seconds": seconds,
                             "first_sound": _first_sound(samples)})
                say_due = sent + seconds + PAUSES[turn % len(PAUSES)]
                turn += 1
            if now >= next_poll:
                got = (await http.get(f"/api/live/{session_id}")).json()
                got["t"] = now - started
                figures.append(got)
                next_poll = now + 1.0
            if now >= next_proc:
                cpu, rss = _proc_figures(pid)
                process.append({"t": now - started, "cpu_percent": 100 * (cpu - cpu0) / max(now - proc_t0, 1e-6),
                                "rss_mb": rss})
                cpu0, proc_t0 = cpu, now
                next_proc = now + 10.0
            # Frames around each new onset are kept once 1.2 s after it has passed.
            while handled < len(client.onsets):
                pending_windows.append(client.onsets[handled])
                handled += 1
            for onset in list(pending_windows):
                if time.monotonic() > onset + 1.2:
                    with client.lock:
                        window = [(at, image) for at, image in client.frames if onset - 1.5 <= at <= onset + 1.2]
                    client.windows.append((onset, window[::1]))
                    pending_windows.remove(onset)
            await asyncio.sleep(0.02)
        final = (await http.get(f"/api/live/{session_id}")).json()
        await http.delete(f"/api/live/{session_id}")
    await pc.close()
    return {"started": started, "client": client, "figures": figures, "final": final, "said": said,
            "process": process}


def run_live_bench(minutes: float, presenter: Path, shared: Path, out: Path) -> dict[str, Any]:
    import httpx

    from heygem.media.audio import load_audio

    speeches = []
    for name in SPEECHES:
        path = shared / "media" / name
        speeches.append((name, path.read_bytes(), load_audio(path, 16000)))
    work = Path(tempfile.mkdtemp(prefix="heygem-live-bench-"))
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    studio = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--host", "127.0.0.1", "--port", str(port),
                               "--outputs", str(work / "outputs"), "--engine", "builtin"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            deadline = time.monotonic() + 120
            while True:
                try:
                    http.get("/api/status")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline or studio.poll() is not None:
                        raise RuntimeError("the studio did not start") from None
                    time.sleep(0.5)
            added = http.post("/api/presenters", files={"video": (presenter.name, presenter.read_bytes())}).json()
            while (state := http.get(f"/api/presenters/{added['id']}").json())["state"] == "preparing":
                time.sleep(1.0)
            if state["state"] != "ready":
                raise RuntimeError(f"the presenter was not prepared: {state.get('error')}")
            created = http.post("/api/live", json={"presenter": added["id"]})
            if created.status_code != 201:
                raise RuntimeError(created.json()["error"])
            session = created.json()
        run = asyncio.run(_run_client(url, session["id"], speeches, minutes, studio.pid))
    finally:
        os.killpg(studio.pid, signal.SIGTERM)
        studio.wait(30)
    return summarise(run, minutes, presenter, session)


def summarise(run: dict[str, Any], minutes: float, presenter: Path, session: dict[str, Any]) -> dict[str, Any]:
    started = run["started"]
    client: _Client = run["client"]
    times = np.array(client.frame_times) - started
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    per_window = [int(((times >= s) & (times < s + 10)).sum()) / 10 for s in np.arange(times[0], times[-1] - 10, 10)] \
        if span > 20 else []
    offsets = []
    for onset, window in client.windows:
        mouth = mouth_onset([(at, cv2.imdecode(jpeg, cv2.IMREAD_COLOR)) for at, jpeg in window], onset)
        if mouth is not None:
            offsets.append({"t": onset - started, "offset_ms": round((mouth - onset) * 1000, 1)})
    latencies = []
    seen = None
    for row in run["figures"]:
        if row.get("latency_ms") is not None and row.get("utterances") != seen:
            seen = row.get("utterances")
            latencies.append(row["latency_ms"])
    final = run["final"]

    def near(minute: float) -> list[float]:
        return [o["offset_ms"] for o in offsets if minute * 60 - 60 <= o["t"] < minute * 60]

    first_minute, last_minute = near(1), near(minutes)
    memory = [p["rss_mb"] for p in run["process"]]
    cpu = [p["cpu_percent"] for p in run["process"][1:]]
    result = {
        "minutes": minutes, "presenter": presenter.name, "size": f"{session['width']}x{session['height']}",
        "frames_received": len(times), "rate": round(len(times) / span, 2) if span else None,
        "worst_10s_rate": min(per_window) if per_window else None,
        "frames_sent": final["frames_sent"], "frames_late": final["frames_late"],
        "frames_dropped": final["frames_dropped"], "frames_unanswered": final["frames_unanswered"],
        "late_or_dropped_percent": round(100 * (final["frames_late"] + final["frames_dropped"]) /
                                         max(final["frames_sent"], 1), 3),
        "degraded": final["degraded"], "speeches": len(run["said"]),
        "latency_ms": {"median": statistics.median(latencies) if latencies else None,
                       "max": max(latencies) if latencies else None, "count": len(latencies)},
        "av_offset_ms": {"minute_1": round(statistics.mean(first_minute), 1) if first_minute else None,
                         "last_minute": round(statistics.mean(last_minute), 1) if last_minute else None,
                         "all_median": statistics.median([o["offset_ms"] for o in offsets]) if offsets else None,
                         "measured": len(offsets), "of": len(client.windows)},
        "cpu_percent": {"mean": round(statistics.mean(cpu), 1) if cpu else None, "max": round(max(cpu), 1) if cpu else None},
        "memory_mb": {"first": memory[0] if memory else None, "minute_1": memory[min(6, len(memory) - 1)] if memory else None,
                      "last": memory[-1] if memory else None},
        "offsets": offsets, "said": run["said"], "process": run["process"],
        "series": [[round(row["t"], 1), row["frames_sent"], row["frames_late"], row["frames_dropped"], row["state"]]
                   for row in run["figures"]],
    }
    return result


def markdown(result: dict[str, Any]) -> str:
    lat, off, mem, cpu = result["latency_ms"], result["av_offset_ms"], result["memory_mb"], result["cpu_percent"]
    return "\n".join([
        "| minutes | size | rate (worst 10 s) | late + dropped | latency median / max | A/V offset minute 1 / last | "
        "studio CPU mean / max | studio memory minute 1 -> last |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {result['minutes']:g} | {result['size']} | {result['rate']} ({result['worst_10s_rate']}) | "
        f"{result['frames_late']} + {result['frames_dropped']} of {result['frames_sent']} "
        f"({result['late_or_dropped_percent']}%) | {lat['median']} / {lat['max']} ms ({lat['count']} speeches) | "
        f"{off['minute_1']} / {off['last_minute']} ms ({off['measured']} of {off['of']} onsets) | "
        f"{cpu['mean']}% / {cpu['max']}% | {mem['minute_1']} -> {mem['last']} MB |",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m heygem.bench live", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the session runs (default 10)")
    parser.add_argument("--presenter", default="sadtalker/WDA_KatieHill_000.mp4",
                        help="the presenter's video, under ../shared/media or a path (default a 512x512 talking head)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "live.json")
    args = parser.parse_args(argv)
    shared = Path(os.environ.get("HEYGEM_SHARED", REPO.parent / "shared"))  # as heygem.bench finds it
    presenter = Path(args.presenter)
    if not presenter.is_file():
        presenter = shared / "media" / args.presenter
    result = run_live_bench(args.minutes, presenter, shared, args.out)
    result["table"] = markdown(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(result["table"])
    print(f"\nAll figures: {args.out}")
    return 0
