"""Tell whether a PNG or JPEG is plain and sound, and read its size, to pick the fast decoder safely.

Only common, well-formed files are recognised; anything else gets None and goes to Pillow, which reads
every format and variant and names what is wrong:
- PNG: 8 bits, greyscale, RGB or palette, not interlaced, every chunk known, of a sane size and with a
  right CRC, and image data that inflates to exactly the pixels the header promises. libpng would
  otherwise print its complaints on stderr, read damaged files Pillow refuses, and inflate surplus data
  without bound (a 10 MB file inflating 9.5 GiB held a thread for 15 s). The inflate check costs about
  as much as decoding; a PNG over 16 MiB of pixels goes to Pillow instead.
- JPEG: 8-bit baseline or progressive Huffman, 1 or 3 components, no EXIF block (its orientation is
  Pillow's to apply), ending in EOI. The decoder (simplejpeg) refuses any file libjpeg warns about.
A header parse costs a few microseconds; asking Pillow for the same header costs tens.

Usage:
    header = sniff(data)   # Header(kind="jpeg", width=140, height=140, colour=False) or None
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: a PNG cut short lacks it
#: PNG chunks the fast decoder takes, with their lawful lengths (None: any up to _PNG_TEXT_LIMIT). Any
#: other chunk (a transparent colour, an orientation tag, an animation, compressed text or colour profiles,
#: private chunks) sends the file to Pillow, which checks each of them.
_PNG_PLAIN_CHUNKS: dict[bytes, tuple[int, ...] | None] = {
    b"pHYs": (9,),
    b"sRGB": (1,),
    b"gAMA": (4,),
    b"cHRM": (32,),
    b"bKGD": (1, 2, 6),
    b"tEXt": None,
}
_PNG_TEXT_LIMIT = 64 * 1024
#: PNG colour types read fast, by the samples per pixel: greyscale, RGB, palette (the ones with alpha go to
#: Pillow's compositing).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1}
#: Above this many bytes of pixels, checking the image data first would cost more than the fast path saves.
_PNG_FAST_LIMIT = 16 * 1024 * 1024
#: JPEG frame markers read fast: baseline, extended and progressive Huffman (SOF0-SOF2).
_JPEG_PLAIN_FRAMES = (0xC0, 0xC1, 0xC2)
#: Every other frame marker (lossless, hierarchical, arithmetic): Pillow's path.
_JPEG_OTHER_FRAMES = frozenset((0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))
_JPEG_START_OF_SCAN = 0xDA


@dataclass(frozen=True)
class Header:
    """What the fast decoder needs to know before decoding: the format and the stored size."""

    kind: Literal["png", "jpeg"]
    width: int
    height: int
    colour: bool  # stored as colour (RGB, palette, YCbCr) rather than greyscale
    plain: bool = True  # plain and sound: the fast decoder may take it (else only the size is known)


def sniff(data: bytes) -> Header | None:
    """Return a PNG's or JPEG's size and whether it is plain and sound; None when even the size is unknown."""
    if data.startswith(_PNG_SIGNATURE):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    return None


def _png(data: bytes) -> Header | None:
    if len(data) < 33 or data[12:16] != b"IHDR" or not _crc_ok(data, 8, 13):
        return None
    width, height, depth, colour, compression, filtering, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    layout_plain = depth == 8 and (compression, filtering, interlace) == (0, 0, 0) and colour in _PNG_CHANNELS
    return Header("png", width, height, colour != 0, layout_plain and _png_sound(data, width, height, colour))


def _png_sound(data: bytes, width: int, height: int, colour: int) -> bool:
    """Is this PNG of a plain layout (read from its IHDR) sound: see the module docstring."""
    if not data.endswith(_PNG_END) or not width or not height:
        return False
    channels = _PNG_CHANNELS[colour]
    stride = 1 + width * channels  # a filter-type byte, then the row's samples
    if height * stride > _PNG_FAST_LIMIT:
        return False
    pixels: list[bytes] = []
    palette, previous, seen = False, b"IHDR", set()
    position, end = 33, len(data) - len(_PNG_END)  # after signature (8) + IHDR (4 + 4 + 13 + 4)
    while position < end:  # every chunk up to IEND: a handful in a small file
        if position + 12 > end:
            return False
        length, kind = struct.unpack_from(">I4s", data, position)
        if position + 12 + length > end or not _crc_ok(data, position, length):
            return False
        body = data[position + 8 : position + 8 + length]
        if kind == b"IDAT":
            if pixels and previous != b"IDAT":
                return False  # image data must be one run of chunks
            pixels.append(body)
        elif kind == b"PLTE":
            if colour == 0 or palette or pixels or length % 3 or not 0 < length <= 768:
                return False
            palette = True
        elif kind in _PNG_PLAIN_CHUNKS:
            lengths = _PNG_PLAIN_CHUNKS[kind]
            if (lengths is None and length > _PNG_TEXT_LIMIT) or (lengths is not None and length not in lengths):
                return False
            if (kind in seen and kind != b"tEXt") or (kind == b"sRGB" and body[0] > 3):
                return False  # libpng warns about a repeated chunk or an unknown rendering intent
            seen.add(kind)
        else:
            return False
        previous = kind
        position += 12 + length
    if colour == 3 and not palette:
        return False
    return _inflates_exactly(b"".join(pixels), stride, height)


def _crc_ok(data: bytes, position: int, length: int) -> bool:
    """Is the CRC of the chunk at `position` (its type and data) right?"""
    (expected,) = struct.unpack_from(">I", data, position + 8 + length)
    return zlib.crc32(data[position + 4 : position + 8 + length]) == expected


def _inflates_exactly(compressed: bytes, stride: int, rows: int) -> bool:
    """Does the image data inflate to exactly `rows` rows of `stride` bytes, each with a valid filter type,
    and end there?"""
    if not compressed:
        return False
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, stride * rows + 1)  # never more than one byte past the image
    except zlib.error:
        return False
    if len(raw) != stride * rows or not inflater.eof or inflater.unconsumed_tail or inflater.unused_data:
        return False
    return max(raw[::stride]) <= 4  # filter types: none, sub, up, average, Paeth


def _jpeg(data: bytes) -> Header | None:
    # Cut short (no EOI): Pillow says so, where libjpeg would fill the rest with grey.
    plain, position = data.endswith(b"\xff\xd9"), 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker in _JPEG_PLAIN_FRAMES or marker in _JPEG_OTHER_FRAMES:
            if length < 8 or position + 10 > len(data):
                return None
            precision, height, width, components = struct.unpack_from(">BHHB", data, position + 4)
            plain = plain and marker in _JPEG_PLAIN_FRAMES and precision == 8 and components in (1, 3) and height > 0
            return Header("jpeg", width, height, components == 3, plain)
        if marker == _JPEG_START_OF_SCAN or length < 2:
            return None
        if marker == 0xE1 and data[position + 4 : position + 10] == b"Exif\0\0":
            plain = False  # an orientation may need applying: Pillow's path does it
        position += 2 + length
    return None
