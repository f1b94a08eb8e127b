"""What an input file is, decided by its content (never its extension), through ffprobe."""
from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from heygem.errors import InputError
from heygem.media.ffmpeg import HDR_TRANSFERS, ffprobe_exe, probe_argv, run_ffmpeg, standard_range_filters
from heygem.media.picture_header import picture_size

log = logging.getLogger(__name__)

ACCEPTED_FACES = "a video (mp4, mov, mkv, webm, avi) or a photo (jpg, png, webp)"
ACCEPTED_SPEECH = "an audio file (wav, mp3, m4a, aac, flac, ogg, aiff) or a video with a soundtrack"
ACCEPTED_ANY = f"{ACCEPTED_FACES}, or {ACCEPTED_SPEECH}"

# The brands of HEIF photos (an iPhone's HEIC, AVIF): ffprobe reads them as a video of no length.
HEIF_BRANDS = {"heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1", "avif", "avis"}
# Codecs of still images: a stream of one of these with no duration (or one frame) is a photo.
_IMAGE_CODECS = {"png", "mjpeg", "jpegls", "webp", "bmp", "tiff", "jpeg2000", "jpegxl", "qoi", "ppm", "pgm",
                 "pam", "sgi", "targa", "gif"}
# Above this an avg_frame_rate is a container artefact (e.g. 90000/1 time bases), not a frame rate.
_MAX_FPS = Fraction(1000)
# The most frames a second a video is read and lip-synced at. A phone's slow motion (120-240 fps) or a forged
# 1000 fps file of a few hundred kB cost that many times the work of a 25 fps one (a 3.4 s speech over a 500 fps
# video: 1688 frames in 12.4 s against 84 in 1.7 s; 30 minutes of speech would hold the queue for hours), for
# motion no one watching a talking head sees; faster videos are read at this rate, and the result says so.
MAX_VIDEO_FPS = Fraction(60)
# And a slower one (a time-lapse, a slide show, an old webcam's 5 fps) is read and made at RAISED_FPS, its frames
# repeated: made at its own rate, a 0.5 fps video gave 1 frame for 2.5 s of speech, a still picture with sound,
# and 2 fps changed the mouth twice a second.
MIN_VIDEO_FPS = Fraction(12)
RAISED_FPS = Fraction(25)
# The most pixels a photo may hold (16384 x 16384, 268 megapixels: more than any camera makes; 0.8 GB decoded).
# Its size is read from the header first: a few MB of PNG holding 30000 x 30000 pixels took 5.3 GB and 13 s to
# probe, and three of them uploaded at once 15.7 GB of the studio's memory.
MAX_PHOTO_PIXELS = 16384 * 16384
# One photo decoded at a time in this process: uploads probed side by side queue here rather than each holding
# a large picture in memory at once.
_DECODING = threading.Lock()


@dataclass(frozen=True)
class MediaInfo:
    """One probed input file.

    width/height: display size, i.e. after rotation (swapped when rotated by 90 or 270 degrees) and, for
        photos, after EXIF orientation; 0 for audio.
    fps: video frame rate (avg_frame_rate when sane, else r_frame_rate); None for photos and audio.
    duration: seconds of the video stream (of the audio for audio files); 0 for photos.
    frame_count: estimated round(duration * fps) for video, 1 for photos, 0 for audio.
    rotation: counterclockwise degrees the player turns the picture (0, 90, 180, 270), as ffprobe's
        display matrix reports it; 0 for photos (their orientation is applied to width/height already).
    turn: clockwise degrees (0, 90, 180, 270) iter_frames turns every frame by, on top of the display
        rotation, so that the face is upright: 0 from probe; set by the pipeline (``turned``) for a picture
        whose face was only found turned, and width/height are then those of the turned picture.

    A photo larger than the picture-side limit is described (``fit_picture``) at the size it is scaled
    down to; iter_frames yields it at that size.

    video_stream, audio_stream: which of the file's pictures (video streams but cover art) and sound tracks
    the rest describes, and every reader of the file takes (ffmpeg's ``0:V:n`` and ``0:a:n``): the one marked
    default, as a player chooses it, else the first.
    """

    path: Path
    kind: Literal["video", "image", "audio"]
    width: int
    height: int
    fps: Fraction | None
    duration: float
    frame_count: int
    has_audio: bool
    audio_duration: float | None
    rotation: int
    video_codec: str | None
    audio_codec: str | None
    turn: int = 0
    # The video stream's pixel format, colour space and range as ffprobe names them (None for photos and
    # audio, or where ffprobe does not say): whether its frames can be kept as decoded (heygem.media.yuv).
    pixel_format: str | None = None
    colour_space: str | None = None
    colour_range: str | None = None
    colour_transfer: str | None = None
    colour_primaries: str | None = None
    # Anamorphic video (PAL DV, some cameras' wide modes): its pixels' width over their height, as displayed
    # (after the display rotation); None for square pixels, photos and audio.
    pixel_aspect: Fraction | None = None
    video_stream: int = 0
    audio_stream: int = 0

    @property
    def tracks(self) -> tuple:
        """For the caches' keys: the tracks read where they are not each kind's first (empty otherwise, so the
        caches of a file with one track of each kind keep their names)."""
        return () if (self.video_stream, self.audio_stream) == (0, 0) else (("tracks", self.video_stream,
                                                                             self.audio_stream),)

    @property
    def hdr(self) -> str | None:
        """The kind of a high dynamic range video, HLG or PQ (decoded into standard range: ``standard_range``);
        None for any other."""
        return HDR_TRANSFERS.get(self.colour_transfer or "")

    @property
    def standard_range(self) -> str | None:
        """The decoder's filters that turn this HDR video's frames into standard range, or None."""
        if self.hdr is None:
            return None
        return standard_range_filters(str(self.colour_transfer), self.colour_primaries, self.colour_space)


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _rate(value: Any) -> Fraction | None:
    """ffprobe's ``N/D`` rate, or None when it is 0/0, missing or absurd."""
    try:
        rate = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None
    return rate if 0 < rate <= _MAX_FPS else None


def _pixel_aspect(value: Any) -> Fraction | None:
    """ffprobe's ``sample_aspect_ratio`` ("16:15"), or None for square pixels, an unset one ("0:1") or nonsense."""
    try:
        width, height = (int(part) for part in str(value).split(":"))
    except ValueError:
        return None
    if width <= 0 or height <= 0 or width == height:
        return None
    aspect = Fraction(width, height)
    return aspect if Fraction(1, 8) <= aspect <= 8 else None


def _rotation(stream: dict[str, Any]) -> int:
    """Counterclockwise display rotation in [0, 360), snapped to a multiple of 90."""
    for side in stream.get("side_data_list") or []:
        if "rotation" in side:
            degrees = float(side["rotation"])
            break
    else:
        tag = (stream.get("tags") or {}).get("rotate")
        if tag is None:
            return 0
        # The legacy tag (ffprobe < 5) is clockwise; the display matrix is counterclockwise.
        degrees = -float(tag)
    return int(round(degrees / 90.0)) * 90 % 360


def _heif_brands(fmt: dict[str, Any]) -> set[str]:
    """The HEIF container's brands (major and compatible, 4 characters each) of a photo in one; else empty."""
    tags = fmt.get("tags") or {}
    major = str(tags.get("major_brand", "")).strip().lower()
    compatible = str(tags.get("compatible_brands", "")).lower()
    brands = {major} | {compatible[i:i + 4].strip() for i in range(0, len(compatible), 4)}
    return brands if major in HEIF_BRANDS or "avif" in brands else set()


def _is_image(fmt: dict[str, Any], stream: dict[str, Any], brands: set[str]) -> bool:
    """Whether ``stream`` of a file of format ``fmt`` (its HEIF ``brands``: ``_heif_brands``) is a photo."""
    format_names = set(str(fmt.get("format_name", "")).split(","))
    if any(name in ("image2", "image2pipe") or name.endswith("_pipe") for name in format_names):
        return True
    frames = stream.get("nb_frames")
    single = _float(stream.get("duration")) is None or (frames is not None and str(frames) in ("0", "1"))
    if "avif" in brands:  # an AVIF photo: one AV1 picture in a HEIF box (OpenCV reads it)
        return single
    return stream.get("codec_name") in _IMAGE_CODECS and single


def _image_size(path: Path, stored: tuple[int, int] | None) -> tuple[int, int]:
    """Display size of a photo as iter_frames will yield it (EXIF orientation applied). A large one: its stored
    size from its header (``stored``: ``picture_size``), turned where a 1/8 read of it comes out turned (its EXIF
    orientation)."""
    if stored is not None and stored[0] * stored[1] > REDUCED_PROBE_PIXELS:
        width, height = stored
        small = read_image(path, 8)
        as_stored = abs(small.shape[1] - width / 8) + abs(small.shape[0] - height / 8)
        turned = abs(small.shape[1] - height / 8) + abs(small.shape[0] - width / 8)
        if max(as_stored, turned) > 4:  # the two ways up far enough apart to tell (a square one is either)
            return (width, height) if as_stored < turned else (height, width)
    image = read_image(path)
    return image.shape[1], image.shape[0]


# cv2.imdecode's reduced reads: a JPEG decoded at 1/2, 1/4 or 1/8 of its size in the decoder itself (the DCT
# scaled, no full picture in memory); other formats decoded whole and scaled after.
_REDUCED_READS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}
# A photo larger than this is measured from its header and a 1/8 read (its EXIF turn), not decoded whole: a
# 16000x12000 JPEG took 1.6 s and 1.2 GB to probe, decoded whole; its 1/8 read 0.24 s and 74 MB.
REDUCED_PROBE_PIXELS = 4096 * 4096


def read_image(path: Path, reduce: int = 1) -> np.ndarray:
    """A photo as BGR uint8 (H, W, 3), EXIF orientation applied, at 1/``reduce`` of its size (1, 2, 4 or 8; each
    side rounded up for a JPEG); InputError if it cannot be decoded."""
    # np.fromfile + imdecode: cv2.imread cannot open non-ASCII paths on Windows.
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})", "unreadable") from exc
    with _DECODING:
        image = cv2.imdecode(data, _REDUCED_READS[reduce]) if data.size else None
    if image is None:
        raise InputError(path, "could not be decoded as a photo (corrupt, truncated or not an image); "
                               "accepted photos: jpg, png, webp, bmp, tiff", "unreadable")
    return image


def reduced_read(stored: tuple[int, int] | None, wanted: tuple[int, int]) -> int:
    """The largest reduction (1, 2, 4 or 8) at which a photo stored ``stored`` (width, height, from its header;
    None: not known) still has every side at least as large as ``wanted`` (its size to be shown, either way up),
    so that scaling it down to ``wanted`` after a reduced read loses nothing a whole read would have kept."""
    if stored is None:
        return 1
    room = min(max(stored) / max(max(wanted), 1), min(stored) / max(min(wanted), 1))
    return next(factor for factor in (8, 4, 2, 1) if room >= factor)


def _check_photo_pixels(path: Path, size: tuple[int, int] | None) -> None:
    """InputError when the photo's header says it holds more than MAX_PHOTO_PIXELS (``size``: ``picture_size``),
    before it is decoded."""
    if size is None or size[0] * size[1] <= MAX_PHOTO_PIXELS:
        return
    width, height = size
    megapixels, limit = round(width * height / 1e6), round(MAX_PHOTO_PIXELS / 1e6)
    raise InputError(path, f"is a photo of {width}x{height} pixels ({megapixels} megapixels, "
                           f"{width * height * 3 / 1e9:.1f} GB once decoded); HeyGem takes photos of up to {limit} "
                           "megapixels: scale it down first (a presenter photo is drawn at no more than the picture "
                           "limit's size in any case)", "photo_too_large", width=width, height=height,
                     megapixels=megapixels, limit_megapixels=limit)


def _played(streams: list[dict[str, Any]]) -> int:
    """Which of ``streams`` (one kind's, in the file's order) a player takes: the first marked default, else
    the first."""
    return next((number for number, stream in enumerate(streams) if (stream.get("disposition") or {}).get("default")),
                0)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, f"does not exist; give {ACCEPTED_ANY}", "missing")
    if path.is_dir():
        raise InputError(path, f"is a folder, not a file; give {ACCEPTED_ANY}", "missing")
    if path.stat().st_size == 0:
        raise InputError(path, f"is empty (0 bytes); give {ACCEPTED_ANY}", "empty")


# ffmpeg's formats that are lists of other files or addresses (a playlist, a concat list, a stream description):
# ffmpeg opens what they name. An upload of one (an HLS playlist named speech.wav naming /home/.../other.mp4)
# made a job whose result carried any media file on the studio's machine, other people's uploads included.
# HeyGem reads only the file it is given.
POINTER_FORMATS = {"hls", "applehttp", "dash", "concat", "imf", "sdp", "rtp", "rtsp"}


def probe(path: str | Path) -> MediaInfo:
    """Probe ``path`` and classify it as video, image or audio by content; InputError if it is none, or if it
    is a list of other files (POINTER_FORMATS)."""
    path = Path(path)
    _check_file(path)
    raw = run_ffmpeg(probe_argv(ffprobe_exe(), path), subject=path)
    try:
        data = json.loads(raw or b"{}")
    except json.JSONDecodeError as exc:
        raise InputError(path, f"could not be probed (ffprobe printed no JSON); give {ACCEPTED_ANY}",
                         "unreadable") from exc
    fmt: dict[str, Any] = data.get("format") or {}
    pointing = POINTER_FORMATS & set(str(fmt.get("format_name", "")).split(","))
    if pointing:
        kind = sorted(pointing)[0]
        raise InputError(path, f"is a playlist or list of other files ({kind}), not a recording; HeyGem reads "
                         f"only the file it is given, never the files a list names: give {ACCEPTED_ANY}",
                         "playlist", kind=kind)
    streams: list[dict[str, Any]] = data.get("streams") or []
    videos = [s for s in streams if s.get("codec_type") == "video"
              and not (s.get("disposition") or {}).get("attached_pic")]
    audios = [s for s in streams if s.get("codec_type") == "audio"]
    if not videos and not audios:
        raise InputError(path, f"contains no video, image or audio stream; give {ACCEPTED_ANY}", "unreadable")

    # A file with several tracks (a film's languages, a recorder's microphones): the one a player plays.
    video_stream, audio_stream = _played(videos), _played(audios)
    audio = audios[audio_stream] if audios else None
    audio_duration = None
    if audio is not None:
        audio_duration = _float(audio.get("duration")) or _float(fmt.get("duration"))
    audio_codec = audio.get("codec_name") if audio else None

    if not videos:
        if audio_duration is None:
            raise InputError(path, f"has an audio stream of zero length; give {ACCEPTED_SPEECH}", "no_sound")
        info = MediaInfo(path, "audio", 0, 0, None, audio_duration, 0, True, audio_duration, 0, None,
                         audio_codec, audio_stream=audio_stream)
        log.debug("probed %s", info)
        return info

    video = videos[video_stream]
    codec = video.get("codec_name")
    brands = _heif_brands(fmt)
    if brands and "avif" not in brands and not audios:
        # OpenCV and this ffmpeg read no HEIC (ffmpeg sees one 512 px tile of an iPhone's photo, not the photo).
        raise InputError(path, "is a HEIC photo (as iPhones take them), which HeyGem cannot read yet: save it as "
                         "JPEG first (on an iPhone: Settings, Camera, Formats, Most Compatible; or share it as "
                         "JPEG)", "photo_heic")
    if _is_image(fmt, video, brands) and not audios:
        stored = picture_size(path)
        if stored is None and brands:  # AVIF: the size ffprobe read from its header
            stored = (int(video.get("width") or 0), int(video.get("height") or 0))
        _check_photo_pixels(path, stored)
        width, height = _image_size(path, stored)
        info = MediaInfo(path, "image", width, height, None, 0.0, 1, False, None, 0, codec, None)
        log.debug("probed %s", info)
        return info

    duration = _float(video.get("duration")) or _float(fmt.get("duration"))
    if duration is None:
        raise InputError(path, f"is a video of zero length (no duration); give {ACCEPTED_FACES}", "bad_video")
    # Where ffprobe gives no average rate, the frames over the duration before r_frame_rate: a GIF's r_frame_rate
    # is its clock's (100 fps), whatever its frames' delays (a two-frame GIF at 5 fps was made at 60 fps).
    frames = _float(video.get("nb_frames"))
    fps = _rate(video.get("avg_frame_rate")) or (_rate(Fraction(frames / duration).limit_denominator(1001))
                                                 if frames else None) or _rate(video.get("r_frame_rate"))
    if fps is None or fps > _MAX_FPS:
        raise InputError(path, f"is a video without a usable frame rate; give {ACCEPTED_FACES}", "bad_video")
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    if width <= 0 or height <= 0:
        raise InputError(path, f"is a video without a picture size; give {ACCEPTED_FACES}", "bad_video")
    rotation = _rotation(video)
    pixel_aspect = _pixel_aspect(video.get("sample_aspect_ratio"))
    if rotation in (90, 270):
        width, height = height, width
        pixel_aspect = None if pixel_aspect is None else 1 / pixel_aspect
    info = MediaInfo(path, "video", width, height, fps, duration, max(1, round(duration * fps)),
                     audio is not None, audio_duration, rotation, codec, audio_codec,
                     pixel_format=video.get("pix_fmt"), colour_space=video.get("color_space"),
                     colour_range=video.get("color_range"), colour_transfer=video.get("color_transfer"),
                     colour_primaries=video.get("color_primaries"), pixel_aspect=pixel_aspect,
                     video_stream=video_stream, audio_stream=audio_stream)
    log.debug("probed %s", info)
    return info


def fit_rate(info: MediaInfo, max_fps: Fraction = MAX_VIDEO_FPS) -> MediaInfo:
    """``info`` for a video faster than ``max_fps`` or slower than MIN_VIDEO_FPS, at the rate it is read and made
    at (``max_fps``, or RAISED_FPS: the decoder's fps filter drops or repeats frames evenly); anything else
    unchanged."""
    if info.kind != "video" or info.fps is None or MIN_VIDEO_FPS <= info.fps <= max_fps:
        return info
    fps = Fraction(max_fps) if info.fps > max_fps else RAISED_FPS
    return replace(info, fps=fps, frame_count=max(1, round(info.duration * fps)))


def fit_picture(info: MediaInfo, max_side: int) -> MediaInfo:
    """``info`` for a photo whose longer side exceeds ``max_side``, at the size it is scaled down to (the
    aspect kept, each side at least 1 px); anything else, or ``max_side`` 0, unchanged."""
    longer = max(info.width, info.height)
    if info.kind != "image" or max_side <= 0 or longer <= max_side:
        return info
    scale = max_side / longer
    width, height = max(1, round(info.width * scale)), max(1, round(info.height * scale))
    return replace(info, width=width, height=height)


def turned(info: MediaInfo, turn: int) -> MediaInfo:
    """``info`` with its frames turned ``turn`` degrees clockwise more than now (sides swapped for 90 and
    270): what iter_frames then yields."""
    turn %= 360
    if turn not in (0, 90, 180, 270):
        raise ValueError(f"a picture turns by 0, 90, 180 or 270 degrees, not {turn}")
    width, height = (info.height, info.width) if turn in (90, 270) else (info.width, info.height)
    return replace(info, turn=(info.turn + turn) % 360, width=width, height=height)


def require_video_source(info: MediaInfo) -> MediaInfo:
    """The file that gives the faces must be a video or a photo."""
    if info.kind not in ("video", "image"):
        raise InputError(info.path, f"is audio only; the face comes from {ACCEPTED_FACES}", "no_picture")
    return info


def require_audio_source(info: MediaInfo) -> MediaInfo:
    """The file that gives the speech needs an audio stream (a video's soundtrack counts)."""
    if not info.has_audio:
        what = "photo" if info.kind == "image" else "video"
        raise InputError(info.path, f"is a {what} that has no audio stream; the speech comes from {ACCEPTED_SPEECH}",
                         "no_sound")
    return info

