"""Loading Wav2Lip checkpoints (and refusing the wrong ones clearly) and running the engine on face crops."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from heygem.device import pick_device
from heygem.engines.wav2lip import Wav2LipEngine, load_wav2lip
from heygem.errors import CheckpointError, EngineError
from models.wav2lip import deterministic_state_dict


@pytest.fixture(scope="module")
def checkpoint(test_checkpoint: Path) -> Path:
    """The deterministic test weights saved as the original checkpoints are laid out (conftest)."""
    return test_checkpoint


@pytest.fixture(scope="module")
def weights(reference: Path) -> dict[str, torch.Tensor]:
    return deterministic_state_dict(reference / "generator_manifest.json")


@pytest.fixture(scope="module")
def engine(checkpoint: Path) -> Wav2LipEngine:
    """fp32 throughout: the original's pixels (int8 is tested in test_wav2lip_fastpath.py)."""
    return Wav2LipEngine(checkpoint, device="cpu", int8=False)


@pytest.fixture(scope="module")
def golden(reference: Path) -> dict[str, np.ndarray]:
    """Golden inputs turned back into what the pipeline hands the engine: uint8 BGR crops and mel chunks."""
    data = np.load(reference / "golden_generator_io.npz")
    crops = np.round(data["face"][:, 3:] * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    return {
        "face": data["face"],
        "crops": np.ascontiguousarray(crops),
        "mels": np.ascontiguousarray(data["mel"][:, 0]),
        "out": data["out"],
    }


def _fake_checkpoint(manifest: Path, out: Path, **extra: object) -> Path:
    shapes = json.loads(manifest.read_text())
    state = {"module." + k: torch.randn(s) if s else torch.tensor(0) for k, s in shapes.items()}
    torch.save({"state_dict": state, **extra}, out)
    return out


# --- loading -------------------------------------------------------------------------------------------------


def test_missing_checkpoint_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoints/wav2lip_gan.pth") as err:
        load_wav2lip(tmp_path / "nope.pth", torch.device("cpu"))
    assert "nope.pth" in str(err.value)


def test_truncated_checkpoint_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    data = checkpoint.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupt") as err:
        load_wav2lip(cut, torch.device("cpu"))
    assert str(cut) in str(err.value)


def test_text_file_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "wav2lip.pth"
    bogus.write_text("<html>404 Not Found</html>")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_wav2lip(bogus, torch.device("cpu"))


def test_changed_shape_is_named(weights: dict[str, torch.Tensor], tmp_path: Path) -> None:
    key = "face_decoder_blocks.3.1.conv_block.0.weight"
    state = {"module." + k: v for k, v in weights.items()}
    state["module." + key] = torch.zeros(384, 384, 1, 1)
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(CheckpointError) as err:
        load_wav2lip(bad, torch.device("cpu"))
    message = str(err.value)
    assert key in message and "(384, 384, 1, 1)" in message and "(384, 384, 3, 3)" in message
    assert "bad.pth" in message


def test_missing_key_is_named(weights: dict[str, torch.Tensor], tmp_path: Path) -> None:
    state = {k: v for k, v in weights.items() if k != "output_block.1.bias"}
    bad = tmp_path / "short.pth"
    torch.save({"state_dict": state}, bad)
    with pytest.raises(CheckpointError, match="output_block.1.bias"):
        load_wav2lip(bad, torch.device("cpu"))


def test_discriminator_is_recognised(reference: Path, tmp_path: Path) -> None:
    disc = _fake_checkpoint(reference / "disc_manifest.json", tmp_path / "visual_quality_disc.pth")
    with pytest.raises(CheckpointError, match="discriminator"):
        load_wav2lip(disc, torch.device("cpu"))


def test_syncnet_is_recognised(reference: Path, tmp_path: Path) -> None:
    sync = _fake_checkpoint(reference / "syncnet_color_manifest.json", tmp_path / "lipsync_expert.pth")
    with pytest.raises(CheckpointError, match="SyncNet"):
        load_wav2lip(sync, torch.device("cpu"))


def test_extra_top_level_keys_and_bare_state_dicts_load(weights: dict[str, torch.Tensor], tmp_path: Path) -> None:
    full = tmp_path / "full.pth"
    torch.save(
        {
            "state_dict": {"module." + k: v for k, v in weights.items()},
            "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.5, 0.999)}]},
            "global_step": 250_000,
            "global_epoch": 77,
        },
        full,
    )
    bare = tmp_path / "bare.pth"
    torch.save(weights, bare)
    for path in (full, bare):
        model = load_wav2lip(path, torch.device("cpu"))
        assert torch.equal(model.output_block[1].bias, weights["output_block.1.bias"])


def test_pickled_objects_are_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole pickled model, as some forks save
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_wav2lip(path, torch.device("cpu"))


# --- device --------------------------------------------------------------------------------------------------


def test_pick_device() -> None:
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type in {"cuda", "mps", "cpu"}
    with pytest.raises(EngineError, match="unknown device"):
        pick_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA GPU"):
            pick_device("cuda")


# --- engine --------------------------------------------------------------------------------------------------


def test_engine_defaults(engine: Wav2LipEngine, checkpoint: Path) -> None:
    assert engine.batch_size == 16 and not engine.fp16
    assert engine.describe() == f"wav2lip ({checkpoint.name} on cpu, fp32, batch 16)"
    default = Wav2LipEngine(checkpoint, device="cpu")  # on ncnn the coming job runs in int8 where it can
    precision = "int8" if default.runtime == "ncnn" else "fp32"
    assert default.describe() == f"wav2lip ({checkpoint.name} on cpu, {precision}, batch 16)"
    assert (Wav2LipEngine.name, Wav2LipEngine.crop_size) == ("wav2lip", 96)


def test_golden_crops_are_what_the_original_was_fed(golden: dict[str, np.ndarray]) -> None:
    # The masked half of the golden input is the reference crop with its lower rows 48..95 blacked out.
    masked = golden["crops"].copy()
    masked[:, 48:] = 0
    assert np.array_equal(np.round(golden["face"][:, :3] * 255).astype(np.uint8), masked.transpose(0, 3, 1, 2))


def test_synthesize_matches_the_original(engine: Wav2LipEngine, golden: dict[str, np.ndarray]) -> None:
    out = engine.synthesize(golden["crops"], golden["mels"])
    assert out.shape == (4, 96, 96, 3) and out.dtype == np.uint8
    expected = golden["out"].transpose(0, 2, 3, 1) * 255
    assert np.abs(out.astype(np.float32) - expected).max() <= 0.5 + 1.0


def test_sub_batches_give_the_same_result(
    checkpoint: Path, engine: Wav2LipEngine, golden: dict[str, np.ndarray]
) -> None:
    small = Wav2LipEngine(checkpoint, device="cpu", batch_size=3, int8=False)
    split = small.synthesize(golden["crops"], golden["mels"]).astype(np.int16)
    whole = engine.synthesize(golden["crops"], golden["mels"]).astype(np.int16)
    # Conv kernels sum in a batch-size-dependent order, so a value sitting on a .5 boundary may round the
    # other way: allow a handful of pixels one level apart, nothing more.
    assert np.abs(split - whole).max() <= 1
    assert np.count_nonzero(split != whole) <= split.size // 10_000


def test_out_of_memory_halves_the_batch(
    engine: Wav2LipEngine, golden: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = engine._run
    sizes: list[int] = []

    def run(crops: np.ndarray, mels: np.ndarray) -> np.ndarray:
        sizes.append(len(crops))
        if len(crops) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_run(crops, mels)

    monkeypatch.setattr(engine, "_run", run)
    monkeypatch.setattr(engine, "batch_size", 4)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    out = engine.synthesize(golden["crops"], golden["mels"])
    assert sizes == [4, 2, 1, 1, 1, 1]
    assert engine.batch_size == 1
    monkeypatch.undo()
    assert np.abs(out.astype(np.int16) - engine.synthesize(golden["crops"], golden["mels"])).max() <= 1

    monkeypatch.setattr(engine, "_run", lambda c, m: (_ for _ in ()).throw(torch.cuda.OutOfMemoryError("oom")))
    monkeypatch.setattr(engine, "batch_size", 2)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.raises(EngineError, match="out of GPU memory"):
        engine.synthesize(golden["crops"], golden["mels"])


@pytest.mark.parametrize(
    ("crops", "mels", "complaint"),
    [
        (np.zeros((2, 64, 64, 3), np.uint8), np.zeros((2, 80, 16), np.float32), "crops shaped"),
        (np.zeros((2, 96, 96), np.uint8), np.zeros((2, 80, 16), np.float32), "crops shaped"),
        (np.zeros((2, 96, 96, 3), np.float32), np.zeros((2, 80, 16), np.float32), "uint8"),
        (np.zeros((2, 96, 96, 3), np.uint8), np.zeros((2, 80, 17), np.float32), "mel chunks shaped"),
        (np.zeros((2, 96, 96, 3), np.uint8), np.zeros((3, 80, 16), np.float32), "one mel chunk per face"),
    ],
)
def test_wrong_inputs_are_refused(engine: Wav2LipEngine, crops: np.ndarray, mels: np.ndarray, complaint: str) -> None:
    with pytest.raises(EngineError, match=complaint):
        engine.synthesize(crops, mels)


def test_the_cuda_batch_follows_free_gpu_memory() -> None:
    from heygem.engines.wav2lip import cuda_batch_size

    gib = 1024 ** 3
    assert cuda_batch_size(78 * gib, fp16=True) == 512  # an idle H100: capped
    assert cuda_batch_size(8 * gib, fp16=True) == 128  # 4 GiB to spend at 26 MiB a face: 157, down to 128
    assert cuda_batch_size(8 * gib, fp16=False) == 64  # fp32 takes twice as much
    assert cuda_batch_size(100 * 1024 ** 2, fp16=True) == 16  # nearly full: the floor, OOM halving does the rest
