"""The Wav2Lip generator matches the original: same weights layout, same output for the same weights."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from heygem.engines.wav2lip import load_wav2lip
from models.wav2lip import Wav2Lip, deterministic_state_dict


@pytest.fixture(scope="module")
def checkpoint(test_checkpoint: Path) -> Path:
    """The deterministic test weights saved as the original checkpoints are laid out (conftest)."""
    return test_checkpoint


def test_state_dict_matches_the_original_manifest(reference: Path) -> None:
    manifest = json.loads((reference / "generator_manifest.json").read_text())
    state = Wav2Lip().state_dict()
    assert len(state) == 352
    assert list(state) == list(manifest)  # same keys, same order
    for key, shape in manifest.items():
        assert tuple(state[key].shape) == tuple(shape), key
    assert sum(p.numel() for p in Wav2Lip().parameters()) == 36_298_035


def test_deterministic_weights_follow_the_manifest(reference: Path) -> None:
    manifest = json.loads((reference / "generator_manifest.json").read_text())
    weights = deterministic_state_dict(reference / "generator_manifest.json")
    assert list(weights) == list(manifest)
    assert weights["face_encoder_blocks.0.0.conv_block.1.num_batches_tracked"].dtype == torch.int64
    assert all(w.dtype == torch.float32 for k, w in weights.items() if not k.endswith("num_batches_tracked"))
    assert (weights["audio_encoder.0.conv_block.1.running_var"] >= 0.5).all()


def test_saved_checkpoint_has_the_original_layout(checkpoint: Path) -> None:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert set(saved) == {"state_dict"}
    assert all(k.startswith("module.") for k in saved["state_dict"])
    assert len(saved["state_dict"]) == 352


def test_generator_reproduces_the_original_output(reference: Path, checkpoint: Path) -> None:
    golden = np.load(reference / "golden_generator_io.npz")
    model = load_wav2lip(checkpoint, torch.device("cpu"))
    assert not model.training
    with torch.inference_mode():
        out = model(torch.from_numpy(golden["mel"]), torch.from_numpy(golden["face"])).numpy()
    assert out.shape == (4, 3, 96, 96)
    assert np.abs(out - golden["out"]).max() <= 1e-4
