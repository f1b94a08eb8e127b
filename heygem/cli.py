"""Command line: ``python -m heygem generate --audio SPEECH --video A [--video B ...] [options]``."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from heygem.errors import HeyGemError
from heygem.limits import check_inputs
from heygem.pipeline import GenerateResult, generate, one_opencv_thread, prepare_audio
from heygem.settings import (
    LOGS_DIR,
    OUTPUTS_DIR,
    BlendOptions,
    DetectionOptions,
    EncodeOptions,
    EngineOptions,
    H264_ENCODERS,
    MOUTH_DRIVES,
    Limits,
    Settings,
    X264_PRESETS,
)

log = logging.getLogger("heygem.cli")


def _face(value: str) -> str | int:
    if value == "largest":
        return value
    try:
        index = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("use 'largest' or a face number (0 = leftmost)") from None
    if index < 0:
        raise argparse.ArgumentTypeError("face numbers start at 0 (the leftmost face)")
    return index


_LIMIT_HELP = {
    "upload_mb": "largest upload, MB",
    "speech_minutes": "longest speech, minutes",
    "video_minutes": "longest presenter video, minutes",
    "picture_side": "longest picture side, pixels (larger photos are scaled down, larger videos refused)",
    "queued_jobs": "unfinished jobs the queue holds at once",
    "live_sessions": "live presenters streaming at once",
    "free_gb": "space kept free on the outputs' disk, GB (a submission that would leave less is refused)",
}


def add_limit_options(parser: argparse.ArgumentParser, names: tuple[str, ...] = tuple(Limits.OPTION)) -> None:
    """``--max-...`` options for the limits in ``names`` (README, "Limits"); environment variables fill
    those not given."""
    group = parser.add_argument_group("limits (0 = none; README, \"Limits\")")
    defaults = Limits()
    for name in names:
        kind = type(getattr(defaults, name))
        group.add_argument(Limits.OPTION[name], dest=f"limit_{name}", type=kind, metavar="N",
                           help=f"{_LIMIT_HELP[name]} (default {getattr(defaults, name):g}, or {Limits.ENV[name]})")


def limits_from_args(args: argparse.Namespace) -> Limits:
    """The limits from the options given, then the environment, then the defaults; ValueError names a bad one."""
    return Limits.from_env(**{name: getattr(args, f"limit_{name}", None) for name in Limits.OPTION})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m heygem", description="Lip-sync videos and photos to a speech recording.")
    commands = parser.add_subparsers(dest="command", required=True)
    gen = commands.add_parser("generate", help="make lip-synced videos", description="Re-sync the mouth in each video or photo to the speech.")
    gen.add_argument("--audio", required=True, type=Path, help="speech: any audio file, or a video whose soundtrack to use")
    gen.add_argument("--video", required=True, type=Path, action="append", help="a video or photo of a face; repeat for several")
    gen.add_argument("--out", type=Path, default=OUTPUTS_DIR, help="output folder, or an .mp4 path for a single video (default: outputs/)")
    engine = gen.add_argument_group("engine")
    engine.add_argument("--engine", default="auto", choices=["auto", "wav2lip", "builtin"], help="auto (default: wav2lip when a checkpoint is found, else builtin), wav2lip, builtin")
    engine.add_argument("--checkpoint", type=Path, help="Wav2Lip checkpoint (default: checkpoints/wav2lip_gan.pth, then checkpoints/wav2lip.pth)")
    engine.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:1, mps")
    engine.add_argument("--batch-size", type=int, help="faces per generator call (default: 128 on CUDA, 16 on CPU)")
    engine.add_argument("--no-fp16", action="store_true", help="full precision on CUDA")
    engine.add_argument("--no-int8", action="store_true",
                        help="CPU (ncnn): fp32 throughout instead of 8-bit integers (a job about a third slower)")
    engine.add_argument("--runtime", default="auto", choices=["auto", "torch", "ncnn"], help="CPU only: auto (default: ncnn when installed, about 2x faster), torch, ncnn")
    engine.add_argument("--mouth-drive", default="auto", choices=MOUTH_DRIVES, help="built-in engine: what moves the mouth: auto (default: footage where the presenter is a video of 5 s or more with speech of its own, else phones), phones (the sounds of the speech, with loudness, on five key mouths), footage (those sounds choose the presenter's own real mouths from their whole footage) or loudness (the engine before phones)")
    engine.add_argument("--still", action="store_true", help="built-in engine, a photo: no blinks and no head motion, only the mouth moves (default: the photo blinks every few seconds and its head moves a little)")
    faces = gen.add_argument_group("faces")
    faces.add_argument("--detector", default="yunet", choices=["yunet", "s3fd"], help="face detector (default yunet: nothing to download)")
    faces.add_argument("--detector-weights", type=Path, help="S3FD weights file (s3fd-619a316812.pth) for --detector s3fd")
    faces.add_argument("--face", type=_face, default="largest", help="which face: 'largest' (default) or its number, 0 = leftmost")
    faces.add_argument("--box", type=int, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), help="fixed face box in source pixels (skips detection)")
    faces.add_argument("--pads", type=int, nargs=4, default=[0, 10, 0, 0], metavar=("TOP", "BOTTOM", "LEFT", "RIGHT"), help="crop padding in pixels (default 0 10 0 0)")
    faces.add_argument("--smooth", type=int, default=5, help="average face boxes over this many frames (1 = off; default 5)")
    faces.add_argument("--detect-every", type=int, default=5, metavar="N", help="run the face detector on every Nth frame, interpolating between (1 = every frame; default 5)")
    faces.add_argument("--face-cache", type=Path, default=DetectionOptions.cache_dir, metavar="DIR", help="where faces found in each video are kept for the next run with the same video (default outputs/.cache/faces)")
    faces.add_argument("--no-face-cache", action="store_true", help="neither read nor write the face cache")
    out = gen.add_argument_group("output")
    out.add_argument("--blend", choices=["feather", "hard"], default="feather", help="wav2lip: feathered lower-face blend (default) or the original hard box paste; the built-in engine blends its own mouth")
    out.add_argument("--length", choices=["pingpong", "loop"], default="pingpong", help="when the speech is longer than the video (default pingpong)")
    out.add_argument("--crf", type=int, default=18, help="H.264 quality, lower is better (default 18)")
    out.add_argument("--preset", choices=X264_PRESETS, default=EncodeOptions().preset,
                     help="x264 speed preset (default veryfast; medium: 1.7-2.6x slower, files no smaller)")
    out.add_argument("--encoder", choices=H264_ENCODERS, default=EncodeOptions().encoder,
                     help="H.264 encoder: auto (default: NVIDIA's h264_nvenc when ffmpeg has it and it works here, "
                          "else libx264), libx264, h264_nvenc (falls back to libx264 with a warning)")
    add_limit_options(gen, ("speech_minutes", "video_minutes", "picture_side"))
    gen.add_argument("--log-dir", type=Path, default=LOGS_DIR, help="where heygem.log goes (default logs/)")
    gen.add_argument("-v", "--verbose", action="store_true", help="show the full log on the terminal")
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The one Settings object, filled from the command line (ValueError for a bad limit)."""
    out_dir = args.out if args.out.suffix.lower() != ".mp4" else args.out.parent
    return Settings(
        detection=DetectionOptions(
            detector=args.detector, detector_weights=args.detector_weights, face=args.face,
            box=tuple(args.box) if args.box else None, smooth_window=args.smooth, pads=tuple(args.pads),
            every=max(1, args.detect_every), cache_dir=None if args.no_face_cache else args.face_cache,
        ),
        engine=EngineOptions(engine=args.engine, checkpoint=args.checkpoint, device=args.device, batch_size=args.batch_size, fp16=not args.no_fp16, int8=not args.no_int8, runtime=args.runtime, mouth_drive=args.mouth_drive, still=args.still),
        blend=BlendOptions(mode=args.blend),
        encode=EncodeOptions(crf=args.crf, preset=args.preset, encoder=args.encoder),
        length_policy=args.length,
        out_dir=out_dir,
        limits=limits_from_args(args),
    )


def _progress_bar():
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed}", file=sys.stderr, disable=None)

    def update(stage: str, fraction: float, file: str) -> None:
        bar.set_description_str(f"{Path(file).name}: {stage}")
        bar.n = round(fraction * 100)
        bar.refresh()

    return bar, update


def _failed(video: Path, error: BaseException, log_file: Path | None) -> None:
    """One line on the terminal per failed video; the traceback goes to the log file (and the terminal with -v)."""
    if isinstance(error, HeyGemError):
        line = str(error) if str(video) in str(error) else f"{video}: {error}"
    else:
        line = f"{video}: unexpected error ({error}); details in {log_file or 'the log'}"
    log.info("failed: %s", line)
    log.debug("%s: traceback", video, exc_info=error)
    print(f"failed: {line}", file=sys.stderr)


def result_notes(result: GenerateResult) -> list[str]:
    """What the terminal says after a result's line: its notes (cut short, turned ...) and what its engine made
    do with (``EngineDescription.fallbacks``: why not the presenter's own footage, a key mouth made from others),
    in the studio's English words."""
    from heygem.ui.texts import fallback_words  # the word table alone: no Gradio, no server

    return [*result.notes, *fallback_words("en", result.engine_info.fallbacks if result.engine_info else ())]


def main(argv: list[str] | None = None) -> int:
    from heygem.logs import setup_logging

    args = build_parser().parse_args(argv)
    log_file = setup_logging(args.log_dir, args.verbose)
    one_opencv_thread()
    try:
        settings = settings_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    single_output = args.out if args.out.suffix.lower() == ".mp4" else None
    if single_output and len(args.video) > 1:
        print("error: --out names one .mp4 file but several videos were given; give a folder instead", file=sys.stderr)
        return 2
    try:
        audio = prepare_audio(args.audio, settings.limits)  # probes and holds it to the speech limit
    except HeyGemError as e:
        log.debug("audio failed", exc_info=True)
        print(f"error: {e}", file=sys.stderr)
        return 1
    failures = 0
    hinted = False
    for video in args.video:
        bar, update = _progress_bar()
        try:
            check_inputs(None, [video], settings.limits, video_names=[str(video)])
            result = generate(audio, video, single_output, settings, update)
        except Exception as e:  # one failing video is reported and the others still run
            failures += 1
            bar.close()
            _failed(video, e, log_file)
            continue
        bar.close()
        if result.engine.startswith("builtin") and not hinted:
            hinted = True
            print("note: made with the built-in engine; for the neural Wav2Lip engine put wav2lip_gan.pth into checkpoints/", file=sys.stderr)
        notes = result_notes(result)
        extra = f" ({'; '.join(notes)})" if notes else ""
        print(f"{result.output}  [{result.frames} frames, {result.duration:.2f} s, engine {result.engine}, {result.timings['total']:.1f} s]{extra}")
    return 1 if failures else 0
