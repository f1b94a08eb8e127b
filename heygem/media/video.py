"""Frames of a video (or the one frame of a photo), streamed from ffmpeg at a constant rate."""
from __future__ import annotations

import itertools
import logging
import subprocess
from collections.abc import Iterator
from fractions import Fraction
from typing import IO

import cv2
import numpy as np

from heygem.errors import FFmpegError, InputError
from heygem.media.ffmpeg import decoding_threads, ffmpeg_exe, reading_output, video_decode_argv
from heygem.media.picture_header import picture_size
from heygem.media.probe import MediaInfo, read_image, reduced_read
from heygem.media.yuv import Conversion, YuvFrame, conversion

log = logging.getLogger(__name__)


def _read_exact(stream: IO[bytes], buffer: np.ndarray) -> int:
    """Fill ``buffer`` from ``stream``; fewer bytes only at end of stream. A pipe may return short reads."""
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled


_CV2_TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def turn_image(image: np.ndarray, turn: int) -> np.ndarray:
    """``image`` turned ``turn`` degrees clockwise (0, 90, 180, 270): a new array, or ``image`` itself for 0.
    The same turn as ffmpeg's filters in ``video_decode_argv``."""
    turn %= 360
    return image if turn == 0 else cv2.rotate(image, _CV2_TURNS[turn])


def iter_frames(info: MediaInfo, fps: Fraction) -> Iterator[np.ndarray]:
    """BGR uint8 frames (info.height, info.width, 3) at the constant rate ``fps``, turned by ``info.turn``.

    Video frames are streamed from an ffmpeg pipe, one at a time, never the whole video. ffmpeg is killed and
    reaped when the generator is closed early or fails. A photo yields its single frame once, at the size
    ``info`` gives (scaled down when it is above the picture-side limit).
    """
    if info.kind == "image":
        yield _photo(info)
        return
    if info.kind != "video":
        raise InputError(info.path, "is audio only; frames come from a video or a photo", "no_picture")
    yield from _stream_video(info, Fraction(fps))


def sample_frames(info: MediaInfo, count: int, seconds: float) -> list[np.ndarray]:
    """Up to ``count`` frames spread evenly over the first ``seconds`` of a video, decoding no further than
    the last of them; a photo's one frame."""
    if info.kind == "image":
        return [_photo(info)]
    span = Fraction(max(min(seconds, info.duration), 0.001)).limit_denominator(1000)
    frames = iter_frames(info, Fraction(count) / span)
    try:
        return list(itertools.islice(frames, count))
    finally:
        frames.close()


def _photo(info: MediaInfo) -> np.ndarray:
    # Scaled before it is turned, so the size to reach is the unturned one. A photo far larger than that is read
    # reduced (a JPEG's decoder scales it: a 192 MP photo never whole in memory); INTER_AREA then averages the
    # pixels it merges: no aliasing when a large photo shrinks.
    width, height = (info.height, info.width) if info.turn in (90, 270) else (info.width, info.height)
    image = read_image(info.path, reduced_read(picture_size(info.path), (width, height)))
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return turn_image(image, info.turn)


def yuv_conversion(info: MediaInfo) -> Conversion | None:
    """How ``info``'s frames, kept as decoded (``iter_yuv_frames``), turn into the BGR ``iter_frames`` gives;
    None where they cannot be kept so: not a yuv420p video of even size, or this ffmpeg's conversion is not
    known to the bit (heygem.media.yuv)."""
    if (info.kind != "video" or info.pixel_format != "yuv420p" or info.width % 2 or info.height % 2
            or info.hdr is not None):
        return None
    return conversion(ffmpeg_exe(), info.colour_space, info.colour_range)


def iter_yuv_frames(info: MediaInfo, fps: Fraction, convert: Conversion) -> Iterator[YuvFrame]:
    """``iter_frames``' frames as the decoder gives them (yuv420p, ``yuv_conversion(info)`` says how they turn
    into BGR): the BGR of any part is the very BGR ``iter_frames`` gives there."""
    for data in _stream_video(info, Fraction(fps), "yuv420p"):
        yield YuvFrame(data, info.width, info.height, convert)


def _stream_video(info: MediaInfo, fps: Fraction, pixel_format: str = "bgr24") -> Iterator[np.ndarray]:
    argv = video_decode_argv(ffmpeg_exe(), info.path, fps, info.turn, pixel_format, decoding_threads(),
                             standard_range=info.standard_range, stream=info.video_stream)
    shape = (info.height, info.width, 3) if pixel_format == "bgr24" else (info.height * info.width * 3 // 2,)
    frame_bytes = int(np.prod(shape))
    log.debug("decoding %s at %s fps, %dx%d: %s", info.path, fps, info.width, info.height,
              subprocess.list2cmdline(argv))
    count = got = 0
    with reading_output(argv, subject=info.path, bufsize=frame_bytes) as pipe:
        while True:
            buffer = np.empty(frame_bytes, np.uint8)  # not zeroed first (a bytearray is): ffmpeg fills it
            got = _read_exact(pipe, buffer)
            if got < frame_bytes:
                break
            count += 1
            yield buffer.reshape(shape)
    if got:
        raise FFmpegError(f"{info.path}: ffmpeg ended inside frame {count + 1} ({got} of {frame_bytes} "
                          f"bytes); the decoded size is not the probed {info.width}x{info.height}")
    if count == 0:
        raise InputError(info.path, "is a video in which no frame could be decoded", "no_frames")
    log.debug("decoded %d frames from %s", count, info.path)
