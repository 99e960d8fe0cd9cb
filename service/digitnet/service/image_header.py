"""Read the size and layout of a PNG or JPEG from its first bytes, to pick the fast decoder safely.

Only the common, plain layouts are recognised (8-bit PNG without transparency, baseline or progressive
8-bit JPEG, each ending where the format says it ends); anything else gets None and goes to Pillow,
which reads every format and variant and names what is wrong. A parse costs a few microseconds; asking
Pillow for the same header costs tens.

Usage:
    header = sniff(data)   # Header(kind="jpeg", width=140, height=140, colour=False) or None
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the IEND chunk: a PNG cut short lacks it
#: PNG chunks the fast decoder takes: pixels, palette and small uncompressed facts. Any other (a
#: transparent colour, an orientation tag, an animation, compressed text or colour profiles that
#: libpng would inflate, private chunks) sends the file to Pillow, which checks each of them.
_PNG_PLAIN_CHUNKS = frozenset((b"IDAT", b"PLTE", b"pHYs", b"sRGB", b"gAMA", b"cHRM", b"sBIT", b"bKGD", b"tIME", b"tEXt"))
#: PNG colour types read fast: greyscale, RGB, palette (the ones with alpha go to Pillow's compositing).
_PNG_PLAIN_COLOURS = (0, 2, 3)
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


def sniff(data: bytes) -> Header | None:
    """Return the header of a plain PNG or JPEG, or None for anything the fast decoder should not take."""
    if data.startswith(_PNG_SIGNATURE):
        return _png(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    return None


def _png(data: bytes) -> Header | None:
    if not data.endswith(_PNG_END) or len(data) < 33:
        return None
    length, kind = struct.unpack_from(">I4s", data, 8)
    if kind != b"IHDR" or length != 13:
        return None
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    if depth != 8 or colour not in _PNG_PLAIN_COLOURS:
        return None
    position, end, pixels = 33, len(data) - len(_PNG_END), False  # after signature (8) + IHDR (4 + 4 + 13 + 4)
    while position + 8 <= end:  # every chunk up to IEND: a handful in a small file, each a few bytes to check
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind not in _PNG_PLAIN_CHUNKS:
            return None
        pixels = pixels or kind == b"IDAT"
        position += 12 + length
    return Header("png", width, height, colour != 0) if pixels and position == end else None


def _jpeg(data: bytes) -> Header | None:
    if not data.endswith(b"\xff\xd9"):
        return None  # cut short: Pillow says so, where libjpeg would fill the rest with grey
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        if marker in _JPEG_PLAIN_FRAMES:
            if length < 8 or position + 10 > len(data):
                return None
            precision, height, width, components = struct.unpack_from(">BHHB", data, position + 4)
            plain = precision == 8 and components in (1, 3) and height > 0 and width > 0
            return Header("jpeg", width, height, components == 3) if plain else None
        if marker in _JPEG_OTHER_FRAMES or marker == _JPEG_START_OF_SCAN or length < 2:
            return None
        position += 2 + length
    return None
