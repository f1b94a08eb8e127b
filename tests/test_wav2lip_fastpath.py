"""The Wav2Lip engine's CPU fast path (the generator on ncnn): in fp32 the same pixels as eager PyTorch on real
faces, within 2/255; in int8 (each job's network made from its first faces) within its stated tolerance, the
same pixels whatever ran before, and fp32 where a job's first faces show int8 off; a clean fall back to PyTorch
when ncnn is missing, fails to build, disagrees with PyTorch at load, or fails in the middle of a run. Speed is
measured by bench/fastpath.py and bench/cli_speed.sh, never here."""
from __future__ import annotations

import logging
import sys
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from heygem.engines import wav2lip_runtime
from heygem.engines.wav2lip import Wav2LipEngine
from heygem.errors import EngineError
from heygem.faces import get_detector
from heygem.faces.track import crop_box
from heygem.features import MelChunks
from heygem.media.probe import probe
from heygem.media.video import iter_frames
from heygem.pipeline import prepare_audio

RUNTIME_LOG = "heygem.engines.wav2lip_runtime"
MAX_PIXEL_DIFFERENCE = 2  # out of 255: the fast path's promise in fp32
INT8_MEAN, INT8_P99 = (round(limit * 255) for limit in wav2lip_runtime.INT8_TOLERANCE)  # grey levels: 2 and 8


@pytest.fixture(scope="module")
def radio_mel(media: Path) -> np.ndarray:
    """The mel spectrogram (80, T) of 12 s of real English speech."""
    return prepare_audio(media / "sadtalker/RD_Radio31_000.wav").mel


@pytest.fixture(scope="module")
def real_batch(media: Path, radio_mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """24 crops of real faces cut as the pipeline cuts them (YuNet box, original padding, 96x96), eight from each
    of three videos, with mel chunks of real speech: (24, 96, 96, 3) uint8 BGR and (24, 80, 16) float32."""
    detector = get_detector("yunet")
    crops = []
    for name in ("videoretalking/2.mp4", "sadtalker/WDA_KatieHill_000.mp4", "latentsync/demo1_video.mp4"):
        info = probe(media / name)
        frames = iter_frames(info, info.fps)
        try:
            for index, frame in enumerate(frames):
                if index % 6:
                    continue  # spread over a few seconds: different mouths and head poses
                face = max(detector.detect(frame), key=lambda f: f.area)
                x1, y1, x2, y2 = crop_box(face, frame.shape[1], frame.shape[0], (0, 10, 0, 0))
                crops.append(cv2.resize(frame[y1:y2, x1:x2], (96, 96)))
                if len(crops) % 8 == 0:
                    break
        finally:
            frames.close()
    chunks = MelChunks(radio_mel, Fraction(25), 200)
    return np.stack(crops), chunks.batch(range(0, 192, 8))


@pytest.fixture(scope="module")
def eager(test_checkpoint: Path) -> Wav2LipEngine:
    return Wav2LipEngine(test_checkpoint, device="cpu", runtime="torch")


@pytest.fixture(scope="module")
def eager_out(eager: Wav2LipEngine, real_batch: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return eager.synthesize(*real_batch)


@pytest.fixture(scope="module")
def fast(test_checkpoint: Path) -> Wav2LipEngine:
    pytest.importorskip("ncnn")
    return Wav2LipEngine(test_checkpoint, device="cpu", int8=False)


def _records(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("heygem.engines.wav2lip") and r.levelno >= level
            and "ncnn" in r.getMessage()]


def test_fast_path_is_the_cpu_default_and_matches_eager_on_real_faces(
    fast: Wav2LipEngine, eager: Wav2LipEngine, real_batch: tuple[np.ndarray, np.ndarray], eager_out: np.ndarray
) -> None:
    assert fast.runtime == "ncnn" and eager.runtime == "torch"
    assert fast.describe() == eager.describe()  # the result's engine line does not change
    crops, mels = real_batch
    out = fast.synthesize(crops, mels)  # 24 faces: one full batch of 16 and one of 8
    assert out.shape == crops.shape and out.dtype == np.uint8
    difference = np.abs(out.astype(np.int16) - eager_out)
    assert difference.max() <= MAX_PIXEL_DIFFERENCE
    # fp32 Winograd differs from oneDNN by about 1e-6: only values on a rounding boundary may move at all.
    assert np.count_nonzero(difference) <= difference.size // 1000
    assert len({face.tobytes() for face in out}) == len(out)  # 24 different faces in, 24 different mouths out


def test_fast_path_does_not_depend_on_the_batch(fast: Wav2LipEngine, real_batch: tuple[np.ndarray, np.ndarray]) -> None:
    crops, mels = real_batch
    whole = fast.synthesize(crops, mels)
    one_by_one = np.concatenate([fast.synthesize(crops[i:i + 1], mels[i:i + 1]) for i in range(0, 24, 5)])
    assert np.array_equal(one_by_one, whole[0:24:5])  # one frame per extractor: batching cannot change a pixel


def test_network_folds_batchnorm_relu_and_skips_and_keeps_winograd_to_large_maps(eager: Wav2LipEngine) -> None:
    param, weights = wav2lip_runtime.ncnn_network(eager.model)
    layers = [line.split() for line in param.splitlines()[2:]]
    kinds = {layer[0] for layer in layers}
    assert kinds == {"Input", "Convolution", "Deconvolution", "Concat", "Split"}  # no BatchNorm, ReLU or add layers
    convolutions = [layer for layer in layers if layer[0] in ("Convolution", "Deconvolution")]
    assert len(convolutions) == 51  # every convolution of the generator, each once
    parameters = sum(p.numel() for name, p in eager.model.named_parameters() if ".conv_block.1." not in name)
    # one 4-byte tag per weight array, then float32 weights and biases (BatchNorm's own parameters folded away)
    assert len(weights) == 4 * len(convolutions) + 4 * parameters
    no_winograd = [layer[1] for layer in convolutions if "31=64" in layer]
    assert "face_decoder_1_1" in no_winograd and "face_decoder_6_1" not in no_winograd


def test_missing_ncnn_falls_back_to_eager_with_one_line(
    test_checkpoint: Path, real_batch: tuple[np.ndarray, np.ndarray], eager_out: np.ndarray,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setitem(sys.modules, "ncnn", None)  # what an environment without the package looks like
    with caplog.at_level(logging.INFO, logger="heygem"):
        engine = Wav2LipEngine(test_checkpoint, device="cpu")
    assert engine.runtime == "torch"
    lines = _records(caplog)
    assert len(lines) == 1 and "not installed" in lines[0] and "PyTorch" in lines[0]
    assert np.array_equal(engine.synthesize(*real_batch), eager_out)


def test_build_failure_falls_back_to_eager(
    test_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("ncnn")

    def broken(model: object, input_ranges: object = None) -> object:
        raise ValueError("no such layer")

    monkeypatch.setattr(wav2lip_runtime, "_write_network", broken)
    with caplog.at_level(logging.INFO, logger="heygem"):
        engine = Wav2LipEngine(test_checkpoint, device="cpu")
    assert engine.runtime == "torch"
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "could not be built" in warnings[0] and "no such layer" in warnings[0]


def test_disagreeing_with_pytorch_at_load_falls_back_to_eager(
    test_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("ncnn")
    monkeypatch.setattr(wav2lip_runtime, "CHECK_TOLERANCE", -1.0)  # no output can pass: as if ncnn computed garbage
    with caplog.at_level(logging.INFO, logger="heygem"):
        engine = Wav2LipEngine(test_checkpoint, device="cpu")
    assert engine.runtime == "torch"
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "failed its check against PyTorch" in warnings[0]


def test_failure_in_the_middle_of_a_run_falls_back_to_eager(
    test_checkpoint: Path, real_batch: tuple[np.ndarray, np.ndarray], eager_out: np.ndarray,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("ncnn")
    engine = Wav2LipEngine(test_checkpoint, device="cpu")
    assert engine.runtime == "ncnn"

    def failing(faces: np.ndarray, mels: np.ndarray) -> np.ndarray:
        raise wav2lip_runtime.FastPathError("ncnn returned status -100")

    monkeypatch.setattr(engine._fast, "predict", failing)
    with caplog.at_level(logging.INFO, logger="heygem"):
        out = engine.synthesize(*real_batch)
    assert engine.runtime == "torch" and engine._fast is None
    assert np.array_equal(out, eager_out)  # every batch, the failed one included, made by PyTorch
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "status -100" in warnings[0]


def test_asking_for_ncnn_without_it_is_an_error(test_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ncnn", None)
    with pytest.raises(EngineError, match="ncnn package is not installed"):
        Wav2LipEngine(test_checkpoint, device="cpu", runtime="ncnn")


def test_unknown_runtime_is_refused(test_checkpoint: Path) -> None:
    with pytest.raises(EngineError, match="unknown wav2lip runtime 'onnx'"):
        Wav2LipEngine(test_checkpoint, device="cpu", runtime="onnx")


# --- int8 --------------------------------------------------------------------------------------------------------


def _job(mel: np.ndarray | None, frames: int = wav2lip_runtime.INT8_MIN_FRAMES) -> SimpleNamespace:
    return SimpleNamespace(mel=mel, frames=frames)  # what Wav2LipEngine.start reads of an EngineJob


def _grey_levels(out: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    difference = np.abs(out.astype(np.int16) - reference.astype(np.int16))
    return float(difference.mean()), float(np.percentile(difference, 99))


@pytest.fixture(scope="module")
def int8_out(test_checkpoint: Path, real_batch: tuple[np.ndarray, np.ndarray], radio_mel: np.ndarray
             ) -> tuple[Wav2LipEngine, np.ndarray, list[str]]:
    pytest.importorskip("ncnn")
    engine = Wav2LipEngine(test_checkpoint, device="cpu")  # int8 is the default
    engine.start(_job(radio_mel))
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(RUNTIME_LOG)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        out = engine.synthesize(*real_batch)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return engine, out, records


def test_int8_job_stays_within_its_tolerance_also_on_faces_it_was_not_made_from(
    int8_out: tuple[Wav2LipEngine, np.ndarray, list[str]], eager_out: np.ndarray
) -> None:
    engine, out, records = int8_out
    assert engine.description().precision == "int8" and ", int8, " in engine.describe()
    assert any("runs this job in int8" in line and "first 16 faces" in line for line in records)
    # The first batch (16 faces of two videos) made the network; the last 8 faces, of a third person, did not.
    for part in (slice(0, 16), slice(16, 24)):
        mean, p99 = _grey_levels(out[part], eager_out[part])
        assert mean <= INT8_MEAN and p99 <= INT8_P99, (part, mean, p99)
    assert np.count_nonzero(out != eager_out) > out.size // 4  # really int8, not fp32 under another name


def test_int8_job_gives_the_same_pixels_whatever_ran_before(
    test_checkpoint: Path, int8_out: tuple[Wav2LipEngine, np.ndarray, list[str]],
    real_batch: tuple[np.ndarray, np.ndarray], radio_mel: np.ndarray,
) -> None:
    engine, first_run, _ = int8_out
    crops, mels = real_batch
    engine.start(_job(radio_mel[:, ::-1].copy()))  # another job: other first faces, other speech
    other = engine.synthesize(crops[16:], mels[16:])
    engine.start(_job(radio_mel))
    assert np.array_equal(engine.synthesize(crops, mels), first_run)
    assert not np.array_equal(other, first_run[16:])  # that other job had its own network


def test_int8_on_the_golden_inputs_stays_within_its_tolerance(
    test_checkpoint: Path, reference: Path
) -> None:
    pytest.importorskip("ncnn")
    golden = np.load(reference / "golden_generator_io.npz")
    engine = Wav2LipEngine(test_checkpoint, device="cpu")
    engine.start(_job(None))  # no speech known: the ranges come from the faces' own mel chunks
    crops = np.ascontiguousarray(np.round(golden["face"][:, 3:] * 255).astype(np.uint8).transpose(0, 2, 3, 1))
    out = engine.synthesize(crops, np.ascontiguousarray(golden["mel"][:, 0]))
    assert engine.description().precision == "int8"
    mean, p99 = _grey_levels(out, np.rint(golden["out"].transpose(0, 2, 3, 1) * 255))
    assert mean <= INT8_MEAN and p99 <= INT8_P99, (mean, p99)


def test_int8_past_its_tolerance_leaves_the_job_in_fp32_with_one_line(
    test_checkpoint: Path, real_batch: tuple[np.ndarray, np.ndarray], radio_mel: np.ndarray, eager_out: np.ndarray,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("ncnn")
    monkeypatch.setattr(wav2lip_runtime, "INT8_TOLERANCE", (-1.0, -1.0))  # no int8 network can pass
    engine = Wav2LipEngine(test_checkpoint, device="cpu")
    engine.start(_job(radio_mel))
    with caplog.at_level(logging.INFO, logger="heygem"):
        out = engine.synthesize(*real_batch)
    assert engine.description().precision == "fp32" and engine.runtime == "ncnn"
    assert np.abs(out.astype(np.int16) - eager_out).max() <= MAX_PIXEL_DIFFERENCE  # every batch in fp32
    warnings = _records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "stays fp32 for this job" in warnings[0] and "first 16 faces" in warnings[0]
    engine.start(_job(radio_mel))  # the next job tries int8 again
    assert engine.description().precision == "int8"


def test_a_job_too_short_for_int8_to_pay_runs_in_fp32_and_says_so(
    test_checkpoint: Path, real_batch: tuple[np.ndarray, np.ndarray], radio_mel: np.ndarray, eager_out: np.ndarray,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("ncnn")
    engine = Wav2LipEngine(test_checkpoint, device="cpu")
    with caplog.at_level(logging.INFO, logger="heygem"):
        engine.start(_job(radio_mel, frames=wav2lip_runtime.INT8_MIN_FRAMES - 1))
        out = engine.synthesize(*real_batch)
    assert engine.description().precision == "fp32" and ", fp32, " in engine.describe()
    assert np.abs(out.astype(np.int16) - eager_out).max() <= MAX_PIXEL_DIFFERENCE  # fp32's pixels, not int8's
    said = [line for line in _records(caplog) if "in fp32" in line]
    assert len(said) == 1 and f"job of {wav2lip_runtime.INT8_MIN_FRAMES - 1} frames" in said[0], said
    engine.start(_job(radio_mel))  # a job long enough: int8 again
    assert engine.description().precision == "int8"


def test_int8_network_keeps_the_skips_as_additions_and_splits_upsampling_into_phases(eager: Wav2LipEngine) -> None:
    model = eager.model
    ranges = {name: 1.0 for name in wav2lip_runtime._int8_blocks(model)}
    param, _ = wav2lip_runtime.ncnn_network(model, ranges)
    layers = [line.split() for line in param.splitlines()[2:]]
    count = {kind: sum(layer[0] == kind for layer in layers) for kind in {layer[0] for layer in layers}}
    # the first decoder block (1x1 -> 3x3) stays fp32; the five stride-2 ones become four phases and a shuffle
    assert count["Deconvolution"] == 1 and count["PixelShuffle"] == 5
    residual = sum(1 for _, block in wav2lip_runtime._blocks(model) if getattr(block, "residual", False))
    assert count["BinaryOp"] == residual == count["ReLU"]
    fp32 = [layer[1] for layer in layers if layer[0] == "Convolution" and "8=1" not in layer]
    assert fp32 == ["output_1"]  # the 1x1 layer before the sigmoid


def test_int8_ranges_widen_when_later_faces_are_brighter_than_the_first(
    test_checkpoint: Path, real_batch: tuple[np.ndarray, np.ndarray], radio_mel: np.ndarray, eager: Wav2LipEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A job that fades in: its first faces (which make the int8 network) are dark, the later ones are not, and
    # their larger values would be clipped. The spot check on every 4th batch sees it and widens the ranges.
    pytest.importorskip("ncnn")
    crops, mels = real_batch
    person, windows = crops[16:24], mels[16:24]  # one person's eight faces: batches of 8
    expected = eager.synthesize(person, windows)
    engine = Wav2LipEngine(test_checkpoint, device="cpu")
    engine.start(_job(radio_mel))
    engine.synthesize((person * 0.3).astype(np.uint8), windows)  # batch 1: the dark first faces
    with caplog.at_level(logging.INFO, logger="heygem"):
        before = [engine.synthesize(person, windows) for _ in range(3)]  # batches 2-4: not checked
        after = [engine.synthesize(person, windows) for _ in range(2)]  # batch 5 is checked, and widens
    mean, p99 = _grey_levels(before[-1], expected)
    assert mean > INT8_MEAN or p99 > INT8_P99  # the clipping the check is for
    for out in after:
        mean, p99 = _grey_levels(out, expected)
        assert mean <= INT8_MEAN and p99 <= INT8_P99, (mean, p99)
    assert engine.description().precision == "int8"
    assert len([line for line in _records(caplog) if "ranges widened at batch 5" in line]) == 1
