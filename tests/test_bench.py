"""The benchmark command on a tiny input: it runs, and its JSON holds every figure with sane values.

No assertion is on speed: timings belong to the benchmark's recorded results, not to tests.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from heygem.bench import STAGE_ORDER, alternation_notes, build_inputs, floor_argv, main, parse_size, stage_figures


def test_bench_main_writes_every_figure(tmp_path: Path, media: Path, test_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    code = main(["--seconds", "1", "--size", "320x180", "--engines", "wav2lip", "--checkpoint", str(test_checkpoint),
                 "--device", "cpu", "--batch", "2", "--no-warmup", "--out", str(out), "--shared", str(media.parent),
                 "--inputs", str(tmp_path / "inputs"), "--timeline"])
    assert code == 0
    data = json.loads(out.read_text())

    for key in ("cpu", "cpu_count", "ram_gb", "torch", "date", "device"):
        assert data["machine"][key], key
    assert data["machine"]["gpu"] is None or isinstance(data["machine"]["gpu"], str)
    assert data["checkpoint"] == {"path": str(test_checkpoint), "kind": "given"}
    assert [load["engine"] for load in data["engine_loads"]] == ["wav2lip"]
    assert data["engine_loads"][0]["load_s"] > 0

    runs = data["runs"]
    assert [run["run"] for run in runs] == ["single", "batch 1/2", "batch 2/2"]
    for run in runs:
        assert run["engine_name"] == "wav2lip" and run["size"] == "320x180"
        assert (run["width"], run["height"]) == (320, 180)
        assert run["frames"] == 1 * 25 and run["video_seconds"] == pytest.approx(1.0)
        assert run["wall_s"] > 0 and run["rtf"] > 0 and run["fps"] > 0
        assert run["peak_rss_mb"] > 0 and run["peak_total_rss_mb"] > 0
        stages = list(run["stages"])
        assert stages == [s for s in STAGE_ORDER if s in stages] + [s for s in stages if s not in STAGE_ORDER]
        for stage, figures in run["stages"].items():
            assert figures["seconds"] >= 0, stage
            assert figures["fps"] is None or figures["fps"] > 0, stage
            assert (figures["fps"] is None) == (figures["seconds"] == 0), stage
        for stage in ("decode", "synthesis", "blend", "encode"):
            assert run["stages"][stage]["fps"] > 0, stage
        # The timeline holds each stage's seconds, spread over the run's steps.
        assert set(run["timeline"]) == set(run["timings"]) - {"total"}
        for stage, steps in run["timeline"].items():
            assert sum(steps) == pytest.approx(run["timings"][stage], abs=0.001 + 0.0005 * len(steps)), stage
            assert all(busy >= 0 for busy in steps)
        # No GPU here: its figures are absent, not made up.
        assert run["gpu_peak_memory_mb"] is None and run["gpu_busy_pct"] is None
    single = runs[0]
    assert single["stages"]["features"]["fps"] > 0 and single["stages"]["detect"]["fps"] > 0
    assert all(run["features_s"] is None for run in runs[1:])  # the batch prepares its speech once

    batch = data["batches"][0]
    assert batch["videos"] == 2 and len(batch["seconds_per_video"]) == 2 and batch["features_s"] > 0
    assert batch["first_s"] > 0 and batch["repeat_mean_s"] > 0 and batch["mean_s_per_video"] > 0

    # The floor (ffmpeg alone re-encoding the same input with the speech) is timed in the same run.
    assert [floor["size"] for floor in data["floors"]] == ["320x180"] and data["floors"][0]["floor_s"] > 0

    printed = capsys.readouterr().out
    assert printed.startswith("| engine | size | run |") and data["table"] in printed
    assert "wav2lip weights: the checkpoint given" in printed
    assert "floor at 320x180: ffmpeg alone re-encoding the input with the speech (x264 veryfast, CRF 18)" in printed
    # --timeline: one picture of the single run, a row per stage that ran.
    picture = cv2.imread(str(tmp_path / "bench-timeline-wav2lip-320x180.png"))
    assert picture is not None and picture.shape[0] >= 22 * len(single["timeline"])
    assert f"Timeline: {tmp_path / 'bench-timeline-wav2lip-320x180.png'}" in printed


def test_alternated_jobs_take_the_engines_in_turn_on_prepared_presenters(tmp_path: Path, media: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """``--alternate N``: after each engine's own runs, N rounds of one job per engine, the order swapped every
    round, each on its engine's presenter as its runs left it (faces and studies kept), and a line per engine
    on them under the table."""
    out = tmp_path / "bench.json"
    code = main(["--seconds", "1", "--size", "320x180", "--engines", "builtin", "builtin-footage", "--device", "cpu",
                 "--no-warmup", "--alternate", "2", "--out", str(out), "--shared", str(media.parent),
                 "--inputs", str(tmp_path / "inputs")])
    assert code == 0
    rows = json.loads(out.read_text())["alternations"]
    assert [(row["round"], row["engine_name"]) for row in rows] == [
        (1, "builtin"), (1, "builtin-footage"), (2, "builtin-footage"), (2, "builtin")]
    assert all(row["face_cache"] == "hit" and row["study"] == "cached" and row["generate_s"] > 0 for row in rows)
    printed = capsys.readouterr().out
    assert "builtin at 320x180, prepared presenter, 2 rounds taken in turn: " in printed
    assert "of builtin's time, the faster in " in printed


def test_alternation_notes_compare_each_engine_with_the_first_round_by_round() -> None:
    rows = [{"size": "1280x720", "engine_name": engine, "round": number, "generate_s": seconds}
            for number, engine, seconds in ((1, "builtin", 20.0), (1, "builtin-footage", 19.0),
                                            (2, "builtin-footage", 24.0), (2, "builtin", 22.0),
                                            (3, "builtin", 30.0), (3, "builtin-footage", 28.0))]
    first, second = alternation_notes(rows)
    assert first == ("builtin at 1280x720, prepared presenter, 3 rounds taken in turn: 24.00 s on average "
                     "(fastest 20.00 s).")
    assert second == ("builtin-footage at 1280x720, prepared presenter, 3 rounds taken in turn: 23.67 s on average "
                      "(fastest 19.00 s); 0.986 of builtin's time, the faster in 2 of 3 rounds.")


def test_bench_inputs_are_cached_and_sized(tmp_path: Path, media: Path) -> None:
    from heygem.media.probe import probe

    video, audio = build_inputs(1, parse_size("160x90"), media, tmp_path)
    info = probe(video)
    assert (info.width, info.height, info.fps, info.frame_count) == (160, 90, 25, 25)
    # The presenter keeps its own speech (the footage drive and the study choose mouths by it), as long as it.
    assert info.has_audio and info.audio_duration == pytest.approx(1.0, abs=0.05)
    assert probe(audio).audio_duration == pytest.approx(1.0, abs=0.01)
    stamp = video.stat().st_mtime_ns
    assert build_inputs(1, (160, 90), media, tmp_path) == (video, audio)  # cached, not rebuilt
    assert video.stat().st_mtime_ns == stamp


def test_stage_figures_order_and_zero_time() -> None:
    figures = stage_figures({"encode": 1.0, "total": 9.0, "surprise": 0.5, "engine start": 0.0, "decode": 2.0}, 50, 0.25)
    assert list(figures) == ["features", "engine start", "decode", "encode", "surprise"]
    assert figures["features"]["fps"] == 200.0 and figures["decode"]["fps"] == 25.0
    assert figures["engine start"]["fps"] is None  # under the timer's resolution: no made-up rate


def test_sizes_must_be_even() -> None:
    assert parse_size("1920x1080") == (1920, 1080)
    for bad in ("1279x720", "720p", "8x8"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_gpu_busy_share_from_nvidia_smi_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU in CI: a stand-in nvidia-smi checks the polling, and without one the figure is None ("n/a")."""
    import sys
    import time

    from heygem.bench import GpuBusySampler

    monkeypatch.setitem(sys.modules, "pynvml", None)  # as if not installed, wherever the tests run
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 40\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(smi.parent))
    sampler = GpuBusySampler("0").start()
    time.sleep(0.5)
    assert sampler.stop() == 40.0 and sampler.exe == str(smi.resolve())

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    sampler = GpuBusySampler("0").start()
    assert sampler.stop() is None


def test_the_floor_is_ffmpeg_alone_at_veryfast_crf18_with_the_speech() -> None:
    argv = floor_argv("ffmpeg", Path("v.mp4"), Path("a.wav"), Path("o.mp4"))
    assert argv[argv.index("-preset") + 1] == "veryfast" and argv[argv.index("-crf") + 1] == "18"
    assert argv[argv.index("-i") + 1] == "v.mp4" and "a.wav" in argv and "-shortest" in argv
    assert argv[argv.index("-map") + 1: argv.index("-map") + 4] == ["0:v:0", "-map", "1:a:0"]
    assert "-vf" not in argv and argv[-1] == "o.mp4"  # nothing in between: decode, encode

