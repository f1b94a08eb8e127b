"""The engine interface: whatever makes a new mouth from a face crop and the speech around one frame."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from heygem.media.probe import MediaInfo
from heygem.settings import DetectionOptions

if TYPE_CHECKING:
    from heygem.phones import MouthShapes
    from heygem.study import PresenterStudy


@dataclass(frozen=True)
class EngineJob:
    """What an engine may look at once per video, before its frames arrive."""

    video: MediaInfo  # the source video or photo
    samples: np.ndarray  # the speech, float32 mono at 16 kHz
    mel: np.ndarray  # its mel spectrogram (80, T)
    fps: Fraction  # output frame rate
    frames: int  # output frame count
    detection: DetectionOptions  # how the pipeline finds and picks the face
    study: PresenterStudy | None = None  # the presenter's key mouths, for engines with ``wants_study``
    shapes: MouthShapes | None = None  # mouth shapes of the speech per output frame (None: loudness only)


class Engine(ABC):
    """A lip-sync engine. Loaded once, reused for every job.

    The pipeline hands it batches of face crops (the face box plus ``crop_margin`` of its size on every
    side, resized to ``crop_size``) with the mel chunk and output frame number of each, and pastes back
    whatever it returns over the lower face (from ``blend_top`` of the crop's height down).
    """

    name: ClassVar[str]
    crop_size: ClassVar[int]
    crop_margin: ClassVar[float] = 0.0
    blend_top: ClassVar[float] = 0.55  # where the pipeline's lower-face mask starts, as a fraction of the crop
    wants_study: ClassVar[bool] = False  # the pipeline studies the presenter (heygem.study) and hands it over

    def start(self, job: EngineJob) -> None:
        """Get ready for one video (e.g. study the source's own mouths). Default: nothing to do."""

    @abstractmethod
    def synthesize(self, crops: np.ndarray, mel_chunks: np.ndarray, frame_indices: np.ndarray | None = None) -> np.ndarray:
        """crops: (B, S, S, 3) uint8 BGR; mel_chunks: (B, 80, 16) float32; frame_indices: (B,) output frame
        numbers -> (B, S, S, 3) uint8 BGR."""

    def describe(self) -> str:
        """One line for logs and results: which engine, on what."""
        return self.name
