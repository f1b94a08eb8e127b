"""The engine interface: whatever makes a new mouth from a face crop and the speech around one frame."""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np


class Engine(ABC):
    """A lip-sync engine. Loaded once, reused for every job.

    The pipeline hands it batches of face crops (already resized to ``crop_size``) with the mel chunk of
    each crop's output frame, and pastes back whatever it returns.
    """

    name: ClassVar[str]
    crop_size: ClassVar[int]

    @abstractmethod
    def synthesize(self, crops: np.ndarray, mel_chunks: np.ndarray) -> np.ndarray:
        """crops: (B, S, S, 3) uint8 BGR; mel_chunks: (B, 80, 16) float32 -> (B, S, S, 3) uint8 BGR."""

    def describe(self) -> str:
        """One line for logs and results: which engine, on what."""
        return self.name
