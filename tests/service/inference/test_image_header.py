"""The header sniffer that picks the fast decoder: plain PNG and JPEG only, never a crash on any bytes."""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from digitnet.service.inference.image_header import Header, sniff

from ...conftest import GOLDEN


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
    header = sniff(data)
    assert header is None or not header.plain


def test_compressed_text_chunks_go_to_pillow() -> None:
    # libpng would inflate a zTXt or iTXt bomb (and only warn); Pillow refuses it. Any chunk not on the plain list is Pillow's.
    png = _save(GREY, "PNG")
    text = b"zTXt" + b"comment\0\0" + zlib.compress(b"x" * 100_000)
    chunk = struct.pack(">I", len(text) - 4) + text + struct.pack(">I", zlib.crc32(text))
    header = sniff(png[:33] + chunk + png[33:])
    assert header is not None and not header.plain and (header.width, header.height) == (60, 30)


def test_a_chunk_length_past_the_end_is_not_plain() -> None:
    png = bytearray(_save(GREY, "PNG"))
    png[33:37] = struct.pack(">I", 10_000_000)  # the first chunk after IHDR claims to be 10 MB long
    header = sniff(bytes(png))
    assert header is not None and not header.plain


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


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_with(idat: bytes, width: int = 64, height: int = 64, extra: bytes = b"") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + extra + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def test_a_png_is_plain_only_when_its_data_inflates_to_exactly_its_pixels() -> None:
    rows = b"".join(b"\x00" + bytes(range(64)) for _ in range(64))  # filter 0, then 64 samples, per row
    assert sniff(_png_with(zlib.compress(rows))) == Header("png", 64, 64, colour=False)
    # Surplus data after the pixels: libpng inflated all of it (a 10 MB file held a thread for 15 s).
    assert not _plain(_png_with(zlib.compress(rows + bytes(5_000_000))))
    assert not _plain(_png_with(zlib.compress(rows[:-64])))  # too little data
    assert not _plain(_png_with(zlib.compress(rows)[:-4] + b"\x00\x00\x00\x00"))  # a wrong checksum: zlib's error
    assert not _plain(_png_with(zlib.compress(b"\x07" + rows[1:])))  # filter type 7 does not exist


def test_a_png_with_a_damaged_or_odd_chunk_is_not_plain() -> None:
    rows = zlib.compress(b"".join(b"\x00" + bytes(64) for _ in range(64)))
    assert _plain(_png_with(rows, extra=_chunk(b"gAMA", bytes(4))))
    assert not _plain(_png_with(rows, extra=_chunk(b"gAMA", bytes(3))))  # libpng: "gAMA: too short"
    bad_crc = bytearray(_chunk(b"tEXt", b"Comment\0hello"))
    bad_crc[-1] ^= 0xFF
    assert not _plain(_png_with(rows, extra=bytes(bad_crc)))  # Pillow refuses it; libpng only warns
    assert not _plain(_png_with(rows, extra=_chunk(b"PLTE", bytes(6))))  # a palette in a greyscale file


def test_a_jpeg_with_an_exif_block_is_left_to_pillow() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: Pillow's path applies it
    header = sniff(_save(GREY, "JPEG", exif=exif.tobytes()))
    assert header is not None and not header.plain and (header.width, header.height) == (60, 30)


def _plain(data: bytes) -> bool:
    header = sniff(data)
    return header is not None and header.plain
