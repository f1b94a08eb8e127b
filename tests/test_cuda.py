"""The Wav2Lip engine on a CUDA GPU: the same mouths as the original, in fp32 and fp16, and a whole job.

Skipped on a machine without CUDA (this workplace's CPU machine and CI); run on a lent GPU machine, with the
results recorded in bench/RESULTS.md ("On a GPU").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def golden(reference: Path) -> dict[str, np.ndarray]:
    with np.load(reference / "golden_generator_io.npz") as data:
        face = data["face"]
        return {"crops": np.ascontiguousarray(np.round(face[:, 3:] * 255).astype(np.uint8).transpose(0, 2, 3, 1)),
                "mels": data["mel"][:, 0], "out": data["out"]}


def _expected(golden: dict[str, np.ndarray]) -> np.ndarray:
    return golden["out"].transpose(0, 2, 3, 1) * 255


def test_fp32_on_cuda_gives_the_original_mouths(test_checkpoint: Path, golden: dict[str, np.ndarray]) -> None:
    from heygem.engines.wav2lip import Wav2LipEngine

    engine = Wav2LipEngine(test_checkpoint, device="cuda", fp16=False)
    assert engine.describe().startswith(f"wav2lip ({test_checkpoint.name} on cuda") and "fp32" in engine.describe()
    out = engine.synthesize(golden["crops"], golden["mels"])
    assert out.shape == (4, 96, 96, 3) and out.dtype == np.uint8
    # As on the CPU: rounding to uint8, plus TF32 convolutions (cuDNN's default) being a little less exact.
    assert np.abs(out.astype(np.float32) - _expected(golden)).max() <= 2.0


def test_fp16_on_cuda_stays_within_a_few_grey_levels(test_checkpoint: Path, golden: dict[str, np.ndarray]) -> None:
    from heygem.engines.wav2lip import Wav2LipEngine

    engine = Wav2LipEngine(test_checkpoint, device="cuda", fp16=True)
    assert "fp16" in engine.describe()
    error = np.abs(engine.synthesize(golden["crops"], golden["mels"]).astype(np.float32) - _expected(golden))
    # fp16 keeps about 3 significant digits through ~60 layers: a few grey levels at worst, under one on average.
    assert error.max() <= 6.0 and error.mean() <= 1.0, (error.max(), error.mean())


def test_the_batch_follows_the_gpu_s_free_memory(test_checkpoint: Path) -> None:
    from heygem.engines.wav2lip import Wav2LipEngine, cuda_batch_size

    free, _ = torch.cuda.mem_get_info()
    engine = Wav2LipEngine(test_checkpoint, device="cuda")
    assert engine.fp16 and engine.batch_size == cuda_batch_size(free, fp16=True)


def test_a_whole_job_on_cuda(settings, media: Path, tmp_path: Path) -> None:
    """A user's job on the GPU: the speech's length, every frame with its face, the engine named as on CUDA."""
    import dataclasses

    from conftest import make_clip
    from heygem.media.probe import probe
    from heygem.pipeline import generate

    speech = media / "speechrecognition/english.wav"  # 2.7 s
    video = make_clip(tmp_path / "d0.mp4", "-i", str(media / "liveportrait/d0.mp4"), "-t", "2", "-an",
                      "-c:v", "libx264", "-preset", "ultrafast")
    on_gpu = dataclasses.replace(settings, engine=dataclasses.replace(settings.engine, device="cuda"))
    result = generate(speech, video, tmp_path / "out.mp4", on_gpu)
    assert "cuda" in result.engine and result.frames_without_face == 0
    out = probe(result.output)
    assert out.has_audio and abs(out.duration - probe(speech).duration) <= 1 / 25


def test_the_gpu_encoder_writes_the_result(media: Path, tmp_path: Path) -> None:
    """Where this ffmpeg has a working NVENC, a job's writer uses it: an H.264 file of every frame, close to
    what was given, with no x264 settings in it."""
    from fractions import Fraction

    from heygem.media.encode import VideoWriter, usable_encoder
    from heygem.media.ffmpeg import ffmpeg_exe
    from heygem.media.probe import probe
    from heygem.media.video import iter_frames
    from heygem.settings import EncodeOptions

    if usable_encoder(ffmpeg_exe(), "auto") != "h264_nvenc":
        pytest.skip(f"{ffmpeg_exe()} has no working h264_nvenc (set HEYGEM_FFMPEG to an ffmpeg built with NVENC)")
    frames = [np.full((360, 640, 3), 40 + 4 * i, np.uint8) for i in range(50)]
    for i, frame in enumerate(frames):
        frame[100:260, 200 + 4 * i:360 + 4 * i] = (30, 160, 220)  # a moving patch
    out = tmp_path / "nvenc.mp4"
    with VideoWriter(out, 640, 360, Fraction(25), media / "speechrecognition/english.wav", 2.0,
                     EncodeOptions(encoder="auto")) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.encoder == "h264_nvenc" and b"x264 - core" not in out.read_bytes()
    info = probe(out)
    decoded = list(iter_frames(info, Fraction(25)))
    assert (info.video_codec, info.has_audio, len(decoded)) == ("h264", True, 50)
    assert np.abs(decoded[25].astype(int) - frames[25].astype(int)).mean() < 4.0
