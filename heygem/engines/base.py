"""The engine interface: whatever makes a new mouth from a face crop and the speech around one frame."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from heygem.media.probe import MediaInfo
from heygem.settings import DetectionOptions

if TYPE_CHECKING:
    from heygem.faces.mesh_memo import MeshMemo
    from heygem.footage import FootageStudy
    from heygem.speech.phones import MouthShapes, Phone
    from heygem.study import PresenterStudy


@dataclass(frozen=True)
class EngineJob:
    """What an engine may look at once per video, before its frames arrive."""

    video: MediaInfo  # the source video or photo
    samples: np.ndarray  # the speech, float32 mono at 16 kHz
    mel: np.ndarray | None  # its mel spectrogram (80, T); None for an engine without ``wants_mel``
    fps: Fraction  # output frame rate
    frames: int  # output frame count
    detection: DetectionOptions  # how the pipeline finds and picks the face
    study: PresenterStudy | None = None  # the presenter's key mouths, for engines with ``wants_study``
    shapes: MouthShapes | None = None  # mouth shapes of the speech per output frame (None: loudness only)
    drive: str = "phones"  # EngineOptions.mouth_drive: what the person asked to move the mouth
    footage: FootageStudy | None = None  # every frame of the presenter's footage, when the drive is ``footage``
    phones: list[Phone] | None = None  # the speech's recognised phones, when they were asked for
    still: bool = False  # EngineOptions.still: no blinks or head motion on a photo
    mesh: MeshMemo | None = None  # face mesh points found on this video's crops before, for engines that find them
    shown: np.ndarray | None = None  # the source frame each output frame shows, by the probed length (footage drive)


@dataclass(frozen=True)
class EngineDescription:
    """What made a job's mouths, as data: stored with the job (like an error's code and values), carried back
    from a cluster's worker, and worded by each front end in its own language. ``Engine.describe`` words it in
    English for logs, results and the command line.

    engine: the engine's name (``wav2lip``, ``builtin``).
    mode: builtin: ``morph`` (the presenter's own key mouths, morphed), ``footage`` (the presenter's own real
        mouths, a footage frame chosen for each output frame), ``photo`` (an opening synthesised on a still: no
        open mouth of the person's own), or None (no face with landmarks: frames pass unchanged).
    keys: builtin: the key mouths it morphs between (``closed``, ``half``, ``open``, ``spread``, ``rounded``).
    drive: builtin: what moves the mouth, ``phones`` (the speech's sounds) or ``loudness``.
    device, checkpoint, precision, batch, runtime: wav2lip: where it ran (``cpu``, ``cuda:0``), the checkpoint
        file's name, ``fp16``, ``fp32`` or ``int8``, faces per generator call, and ``ncnn`` or ``torch``.
    fallbacks: what it made do with, as codes: ``made_spread`` and ``made_rounded`` (a key mouth the footage
        lacks, made from the person's other keys), ``torch_runtime`` (on the CPU without its faster ncnn path),
        and why the footage drive was not used: ``footage_photo`` (a photo), ``footage_short`` (too little
        footage with a face), ``footage_still`` (a mouth that hardly opens in it), ``footage_no_speech`` (no
        speech of the person's own in it to choose by), ``footage_unmatched`` (its sound does not foretell its
        mouth: a voice-over, a dub, music), ``footage_none`` (no study); with the footage drive,
        ``footage_resynced`` (its sound was recorded out of step with its picture, and its mouths were chosen by
        the sounds they were making: ``heygem.footage.sound_lag``).
    motion: builtin ``photo`` of a still picture: ``alive`` (blinks and a slow head motion added,
        heygem.engines.alive) or ``still`` (none: EngineOptions.still); None for a video.
    """

    engine: str
    mode: str | None = None
    keys: tuple[str, ...] = ()
    units: int | None = None  # builtin ``footage``: the footage frames the mouths were chosen from
    drive: str | None = None
    device: str | None = None
    checkpoint: str | None = None
    precision: str | None = None
    batch: int | None = None
    runtime: str | None = None
    fallbacks: tuple[str, ...] = ()
    motion: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (lists for the tuples)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineDescription:
        """Back from ``to_dict`` (a stored job's); keys it does not know (from a newer version) are left out."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: tuple(value) if isinstance(value, list) else value
                      for key, value in data.items() if key in known})


class Engine(ABC):
    """A lip-sync engine. Loaded once, reused for every job.

    The pipeline hands it batches of face crops (the face box plus ``crop_margin`` of its size on every
    side, resized to ``crop_size``) with the mel chunk and output frame number of each, and pastes back
    whatever it returns over the lower face (from ``blend_top`` of the crop's height down). An engine that
    ``paints_frames`` draws into the full frames itself instead (``paint``), at their own resolution: the
    crop's down- and up-scaling then never touches the picture.
    """

    name: ClassVar[str]
    crop_size: ClassVar[int]
    crop_margin: ClassVar[float] = 0.0
    blend_top: ClassVar[float] = 0.55  # where the pipeline's lower-face mask starts, as a fraction of the crop
    wants_study: ClassVar[bool] = False  # the pipeline studies the presenter (heygem.study) and hands it over
    wants_mel: ClassVar[bool] = True  # the speech's mel features (the job's, and each frame's chunk) are its input
    paints_frames: ClassVar[bool] = False  # the pipeline calls ``paint`` with the full frames, not ``synthesize``

    def start(self, job: EngineJob) -> None:
        """Get ready for one video (e.g. study the source's own mouths). Default: nothing to do."""

    @abstractmethod
    def synthesize(self, crops: np.ndarray, mel_chunks: np.ndarray, frame_indices: np.ndarray | None = None) -> np.ndarray:
        """crops: (B, S, S, 3) uint8 BGR; mel_chunks: (B, 80, 16) float32 ((B, 0, 0) for an engine without
        ``wants_mel``); frame_indices: (B,) output frame numbers -> (B, S, S, 3) uint8 BGR."""

    def paint(self, images: list[np.ndarray], boxes: list[tuple[int, int, int, int]], crops: np.ndarray,
              mel_chunks: np.ndarray, frame_indices: np.ndarray) -> list[tuple[int, int, int, int] | None]:
        """Draw the mouths into the BGR frames ``images`` in place (only for ``paints_frames`` engines); each
        may be the part of a frame around its face, for which ``boxes`` are given. ``boxes``: each image's crop
        box (x1, y1, x2, y2); ``crops``: those boxes resized to ``crop_size``. Returns, per image, the rectangle
        drawn into ((0, 0, 0, 0): nothing; None: anywhere), so that only that is converted for the encoder."""
        raise NotImplementedError(f"{self.name} does not paint frames; the pipeline blends what synthesize returns")

    def description(self) -> EngineDescription:
        """Which engine, on what, how (for the job that ran last): data for the front ends to word."""
        return EngineDescription(self.name)

    def describe(self) -> str:
        """One line in English for logs, results and the command line, worded from ``description``."""
        return self.description().engine
