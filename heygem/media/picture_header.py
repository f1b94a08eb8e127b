"""A photo's size in pixels read from its file's header, before anything is decoded.

A photo decodes to width x height x 3 bytes whatever its file's size: a 2.7 MB PNG can hold 30000 x 30000 pixels
(2.7 GB decoded, 5.3 GB while the prober measured it), so the size must be known before the pixels are asked
for (heygem.media.probe). ffprobe answers 0 x 0 for such a picture, and OpenCV has no header-only call; this
reads the formats HeyGem takes photos in (PNG, JPEG, WebP, BMP, GIF, TIFF) from their first bytes.
"""
from __future__ import annotations

import struct
from pathlib import Path

__all__ = ["picture_size"]

HEADER_BYTES = 64  # every header read from the start lies within these (a JPEG's and a TIFF's are looked for)


def picture_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as stored (before any EXIF turn), from the header of the photo at ``path``; None when the
    format is not one of these or its header cannot be read (the decoder then says what is wrong)."""
    try:
        with open(path, "rb") as f:
            head = f.read(HEADER_BYTES)
            if head.startswith(b"\xff\xd8"):
                return _jpeg(f)
            if head[:4] in (b"II*\x00", b"MM\x00*"):
                return _tiff(f, head)
    except (OSError, struct.error):
        return None
    try:
        if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
            return struct.unpack(">II", head[16:24])
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", head[6:10])
        if head[:2] == b"BM":
            return _bmp(head)
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp(head)
    except (struct.error, IndexError):
        return None
    return None


def _jpeg(f) -> tuple[int, int] | None:
    """The frame header (SOF0..SOF15 but DHT, JPG and DAC), found by stepping from segment to segment (a read of
    a few bytes each: whatever comes before it, nothing is held)."""
    f.seek(2)
    while True:
        head = f.read(2)
        if len(head) < 2 or head[0] != 0xFF:
            return None
        marker = head[1]
        if marker == 0xFF:  # fill byte
            f.seek(-1, 1)
            continue
        if marker in (0xD9, 0xDA):  # end of image, or the scan: no frame header before it
            return None
        fields = f.read(7)  # the segment's length, then (in a frame header) precision, height and width
        if len(fields) < 2:
            return None
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if len(fields) < 7:
                return None
            height, width = struct.unpack(">HH", fields[3:7])
            return width, height
        f.seek(struct.unpack(">H", fields[:2])[0] - len(fields), 1)


def _bmp(head: bytes) -> tuple[int, int]:
    if struct.unpack("<I", head[14:18])[0] == 12:  # OS/2 core header: 16-bit sides
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)  # negative height: rows stored top-down


def _webp(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8X":  # extended: the canvas, 24-bit sides less one
        return (int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1)
    if chunk == b"VP8L":  # lossless: 14-bit sides less one, packed after the signature byte
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":  # lossy: 14-bit sides after the key frame's start code
        return (struct.unpack("<H", head[26:28])[0] & 0x3FFF, struct.unpack("<H", head[28:30])[0] & 0x3FFF)
    return None


def _tiff(f, head: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257) from the first directory (which a writer may put after the pixels)."""
    order = "<" if head[:2] == b"II" else ">"
    f.seek(struct.unpack(order + "I", head[4:8])[0])
    count = struct.unpack(order + "H", f.read(2))[0]
    entries = f.read(12 * count)
    sides: dict[int, int] = {}
    for k in range(len(entries) // 12):
        tag, kind = struct.unpack(order + "HH", entries[12 * k:12 * k + 4])
        if tag in (256, 257):
            value = entries[12 * k + 8:12 * k + 12]
            sides[tag] = struct.unpack(order + "H", value[:2])[0] if kind == 3 else struct.unpack(order + "I", value)[0]
    return (sides[256], sides[257]) if len(sides) == 2 else None
