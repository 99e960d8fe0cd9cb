"""The header sniffer that picks the fast decoder: plain PNG and JPEG only, never a crash on any bytes."""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from digitnet.service.image_header import Header, sniff

from ..conftest import REPO

GOLDEN = REPO / "tests" / "golden"


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


GREY = Image.fromarray(np.tile(np.arange(0, 240, 4, dtype=np.uint8), (30, 1)))  # 60 wide, 30 high


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_save(GREY, "PNG"), Header("png", 60, 30, colour=False)),
        (_save(GREY.convert("RGB"), "PNG"), Header("png", 60, 30, colour=True)),
        (_save(GREY.convert("P"), "PNG"), Header("png", 60, 30, colour=True)),
        (_save(GREY, "JPEG"), Header("jpeg", 60, 30, colour=False)),
        (_save(GREY.convert("RGB"), "JPEG"), Header("jpeg", 60, 30, colour=True)),
        (_save(GREY.convert("RGB"), "JPEG", progressive=True), Header("jpeg", 60, 30, colour=True)),
    ],
    ids=["png-grey", "png-rgb", "png-palette", "jpeg-grey", "jpeg-colour", "jpeg-progressive"],
)
def test_plain_png_and_jpeg_are_recognised(data: bytes, expected: Header) -> None:
    assert sniff(data) == expected


@pytest.mark.parametrize(
    "data",
    [
        _save(GREY.convert("RGBA"), "PNG"),  # alpha: Pillow composites it against the ink
        _save(GREY.convert("I;16"), "PNG"),  # 16 bits: mapped by its value range
        _save(GREY, "PNG", transparency=0),  # a transparent colour
        _save(GREY, "PNG", exif=Image.Exif().tobytes()),  # an orientation tag
        _save(GREY, "PNG")[:-12],  # cut short: no IEND
        _save(GREY, "JPEG")[:-2],  # cut short: no EOI (libjpeg would fill it with grey; Pillow says so)
        _save(GREY.convert("CMYK"), "JPEG"),  # four components
        _save(GREY, "BMP"),
        _save(GREY, "GIF"),
        b"",
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xd9",
    ],
    ids=["rgba", "16-bit", "trns", "exif", "png-cut", "jpeg-cut", "cmyk", "bmp", "gif", "empty", "png-signature", "jpeg-empty"],
)
def test_anything_else_goes_to_pillow(data: bytes) -> None:
    assert sniff(data) is None


def test_compressed_text_chunks_go_to_pillow() -> None:
    # libpng would inflate a zTXt or iTXt bomb (and only warn); Pillow refuses it. Any chunk not on the plain list is Pillow's.
    png = _save(GREY, "PNG")
    text = b"zTXt" + b"comment\0\0" + zlib.compress(b"x" * 100_000)
    chunk = struct.pack(">I", len(text) - 4) + text + struct.pack(">I", zlib.crc32(text))
    assert sniff(png[:33] + chunk + png[33:]) is None


def test_a_chunk_length_past_the_end_is_not_plain() -> None:
    png = bytearray(_save(GREY, "PNG"))
    png[33:37] = struct.pack(">I", 10_000_000)  # the first chunk after IHDR claims to be 10 MB long
    assert sniff(bytes(png)) is None


def test_mutated_files_never_raise() -> None:
    # The sniffer reads untrusted bytes: any mutation gives a Header or None, never an exception.
    seeds = [(GOLDEN / name).read_bytes() for name in ("3_mnist.png", "3_scan.png", "3_scan.jpg")]
    rng = random.Random(12)
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            data[position : position + rng.randint(1, 4)] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 4)))
        header = sniff(bytes(data))
        assert header is None or (header.width >= 0 and header.height >= 0)
