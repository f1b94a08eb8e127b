"""The Wav2Lip generator, layer for layer as the original (Rudrabha/Wav2Lip), so its checkpoints load strictly.

Also builds the deterministic test weights of the reference recipe, used by tests and benchmarks in place of
the real checkpoint, which the project may not ship.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["Conv2d", "Conv2dTranspose", "Wav2Lip", "deterministic_state_dict", "save_test_checkpoint"]


class Conv2d(nn.Module):
    """Conv2d(bias) -> BatchNorm2d -> (+ input if residual) -> ReLU."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int | tuple[int, int],
        padding: int,
        residual: bool = False,
    ) -> None:
        super().__init__()
        # The attribute names are the checkpoint's key names: conv_block.0 = conv, conv_block.1 = bn.
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class Conv2dTranspose(nn.Module):
    """ConvTranspose2d(bias) -> BatchNorm2d -> ReLU."""

    def __init__(
        self, cin: int, cout: int, kernel_size: int, stride: int, padding: int, output_padding: int = 0
    ) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv_block(x))


class Wav2Lip(nn.Module):
    """The generator: a mel chunk and a (masked face, reference face) pair -> the new face, BGR in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(Conv2d(6, 16, 7, 1, 3)),  # 96
                nn.Sequential(
                    Conv2d(16, 32, 3, 2, 1),  # 48
                    Conv2d(32, 32, 3, 1, 1, residual=True),
                    Conv2d(32, 32, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2d(32, 64, 3, 2, 1),  # 24
                    Conv2d(64, 64, 3, 1, 1, residual=True),
                    Conv2d(64, 64, 3, 1, 1, residual=True),
                    Conv2d(64, 64, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2d(64, 128, 3, 2, 1),  # 12
                    Conv2d(128, 128, 3, 1, 1, residual=True),
                    Conv2d(128, 128, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2d(128, 256, 3, 2, 1),  # 6
                    Conv2d(256, 256, 3, 1, 1, residual=True),
                    Conv2d(256, 256, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2d(256, 512, 3, 2, 1),  # 3
                    Conv2d(512, 512, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2d(512, 512, 3, 1, 0),  # 1
                    Conv2d(512, 512, 1, 1, 0),
                ),
            ]
        )

        self.audio_encoder = nn.Sequential(
            Conv2d(1, 32, 3, 1, 1),
            Conv2d(32, 32, 3, 1, 1, residual=True),
            Conv2d(32, 32, 3, 1, 1, residual=True),
            Conv2d(32, 64, 3, (3, 1), 1),
            Conv2d(64, 64, 3, 1, 1, residual=True),
            Conv2d(64, 64, 3, 1, 1, residual=True),
            Conv2d(64, 128, 3, 3, 1),
            Conv2d(128, 128, 3, 1, 1, residual=True),
            Conv2d(128, 128, 3, 1, 1, residual=True),
            Conv2d(128, 256, 3, (3, 2), 1),
            Conv2d(256, 256, 3, 1, 1, residual=True),
            Conv2d(256, 512, 3, 1, 0),
            Conv2d(512, 512, 1, 1, 0),
        )

        self.face_decoder_blocks = nn.ModuleList(
            [
                nn.Sequential(Conv2d(512, 512, 1, 1, 0)),
                nn.Sequential(
                    Conv2dTranspose(1024, 512, 3, 1, 0),  # 3
                    Conv2d(512, 512, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2dTranspose(1024, 512, 3, 2, 1, output_padding=1),  # 6
                    Conv2d(512, 512, 3, 1, 1, residual=True),
                    Conv2d(512, 512, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2dTranspose(768, 384, 3, 2, 1, output_padding=1),  # 12
                    Conv2d(384, 384, 3, 1, 1, residual=True),
                    Conv2d(384, 384, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2dTranspose(512, 256, 3, 2, 1, output_padding=1),  # 24
                    Conv2d(256, 256, 3, 1, 1, residual=True),
                    Conv2d(256, 256, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2dTranspose(320, 128, 3, 2, 1, output_padding=1),  # 48
                    Conv2d(128, 128, 3, 1, 1, residual=True),
                    Conv2d(128, 128, 3, 1, 1, residual=True),
                ),
                nn.Sequential(
                    Conv2dTranspose(160, 64, 3, 2, 1, output_padding=1),  # 96
                    Conv2d(64, 64, 3, 1, 1, residual=True),
                    Conv2d(64, 64, 3, 1, 1, residual=True),
                ),
            ]
        )

        self.output_block = nn.Sequential(
            Conv2d(80, 32, 3, 1, 1),
            nn.Conv2d(32, 3, kernel_size=1, stride=1, padding=0),
            nn.Sigmoid(),
        )

    def forward(self, audio_sequences: torch.Tensor, face_sequences: torch.Tensor) -> torch.Tensor:
        """audio (B, 1, 80, 16), faces (B, 6, 96, 96) -> (B, 3, 96, 96) in [0, 1]."""
        feats = []
        x = face_sequences
        for block in self.face_encoder_blocks:
            x = block(x)
            feats.append(x)

        x = self.audio_encoder(audio_sequences)  # (B, 512, 1, 1)
        for block in self.face_decoder_blocks:
            # Skip connections: each decoder output meets the face feature of the same size, deepest first.
            x = torch.cat((block(x), feats.pop()), dim=1)

        return self.output_block(x)


def deterministic_state_dict(manifest_path: Path, seed: int = 582) -> dict[str, torch.Tensor]:
    """The reference recipe's test weights for every key of ``manifest_path``, in its order (no ``module.``)."""
    manifest: dict[str, list[int]] = json.loads(Path(manifest_path).read_text())
    # One generator walked in manifest order: the draws of each key depend on every key before it.
    rng = np.random.default_rng(seed)
    state: dict[str, torch.Tensor] = {}
    for key, shape_list in manifest.items():
        shape = tuple(shape_list)
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0, dtype=torch.int64)
            continue
        if key.endswith("running_var"):
            value = 0.5 + rng.random(shape, dtype=np.float32)
        elif key.endswith("running_mean"):
            value = 0.1 * rng.standard_normal(shape, dtype=np.float32)
        elif len(shape) == 4:
            scale = np.float32(math.sqrt(1.0 / math.prod(shape[1:])))
            value = rng.standard_normal(shape, dtype=np.float32) * scale
        else:
            value = 0.1 * rng.standard_normal(shape, dtype=np.float32)
            if "conv_block" in key and key.endswith(".1.weight"):
                value = value + 1.0  # BatchNorm scale around 1 keeps activations alive
        state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    return state


def save_test_checkpoint(manifest_path: Path, out_path: Path) -> Path:
    """Write the deterministic weights as the original checkpoints are laid out; returns ``out_path``."""
    state = deterministic_state_dict(manifest_path)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"module." + key: value for key, value in state.items()}}, out_path)
    return out_path
