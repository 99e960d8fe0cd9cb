"""Byte-level writers for the fuzz seed corpus: PNG, TIFF, BMP, GIF, JPEG and WebP pieces built by hand,
so that headers can say what Pillow's writers never would (huge sizes, bogus offsets) with valid checksums."""

import io
import struct
import zlib
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageOps

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Adam7 passes: (x0, y0, dx, dy).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
# struct codes for TIFF field types BYTE, ASCII, SHORT, LONG, FLOAT (RATIONAL is packed separately).
TIFF_CODES = {1: "B", 2: "B", 3: "H", 4: "I", 11: "f"}


class Corpus:
    """Named byte blobs; names must be unique so one seed never silently overwrites another."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def add(self, name: str, data: bytes) -> None:
        if name in self.files:
            raise ValueError(f"duplicate corpus name {name}")
        self.files[name] = data


# ---------------------------------------------------------------- pictures


def seven(width: int = 28, height: int = 28, ink: int = 255, paper: int = 0) -> Image.Image:
    """A "7" in mode L, drawn at 4x and box-reduced so its edges carry anti-aliased grey levels."""
    big = Image.new("L", (width * 4, height * 4), paper)
    draw = ImageDraw.Draw(big)
    w, h = big.size
    stroke = max(4, round(min(w, h) / 9))
    top, right, foot = (0.25 * w, 0.22 * h), (0.75 * w, 0.22 * h), (0.42 * w, 0.80 * h)
    draw.line([top, right], fill=ink, width=stroke)
    draw.line([right, foot], fill=ink, width=stroke)
    return big.reduce(4)


def dark_seven(width: int = 28, height: int = 28) -> Image.Image:
    return ImageOps.invert(seven(width, height))


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(seed: int, shape: tuple[int, ...], low: int, high: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high + 1, size=shape, dtype=np.uint8)


# ---------------------------------------------------------------- PNG by hand


def chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def ihdr(width: int, height: int, depth: int, colour: int, interlace: int = 0) -> bytes:
    return chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace))


def png_rows(samples: np.ndarray, depth: int) -> bytes:
    """Serialise [H, W(, C)] samples as filter-0 scanlines at the given bit depth."""
    h = samples.shape[0]
    flat = samples.reshape(h, -1)
    if depth == 16:
        body = flat.astype(">u2").view(np.uint8).reshape(h, -1)
    elif depth == 8:
        body = flat.astype(np.uint8)
    else:  # sub-byte: spread each sample into `depth` bits, then pack (rows pad to whole bytes)
        bits = (flat[..., None].astype(np.uint8) >> np.arange(depth - 1, -1, -1, dtype=np.uint8)) & 1
        body = np.packbits(bits.reshape(h, -1), axis=1)
    return np.hstack([np.zeros((h, 1), np.uint8), body]).tobytes()


def png(samples: np.ndarray, depth: int, colour: int, extra: Iterable[bytes] = (), interlace: bool = False) -> bytes:
    """A complete PNG from samples; `extra` chunks go before IDAT."""
    h, w = samples.shape[:2]
    if interlace:
        raw = b"".join(png_rows(samples[y0::dy, x0::dx], depth) for x0, y0, dx, dy in ADAM7 if samples[y0::dy, x0::dx].size)
    else:
        raw = png_rows(samples, depth)
    idat = chunk(b"IDAT", zlib.compress(raw, 9))
    return PNG_SIGNATURE + ihdr(w, h, depth, colour, int(interlace)) + b"".join(extra) + idat + chunk(b"IEND", b"")


def zeros_deflate(n_bytes: int) -> bytes:
    """Deflate n zero bytes in 1 MiB pieces: the stream is ~1/1000 the size without building it whole."""
    compressor = zlib.compressobj(9)
    piece = bytes(1 << 20)
    out = [compressor.compress(piece) for _ in range(n_bytes >> 20)]
    out.append(compressor.compress(bytes(n_bytes & ((1 << 20) - 1))))
    return b"".join(out) + compressor.flush()


def png_zeros(width: int, height: int, depth: int, colour: int, raw_bytes: int) -> bytes:
    """IHDR claiming width x height with an IDAT of `raw_bytes` zeros (all filter 0, all black)."""
    idat = chunk(b"IDAT", zeros_deflate(raw_bytes))
    return PNG_SIGNATURE + ihdr(width, height, depth, colour) + idat + chunk(b"IEND", b"")


def png_row_bytes(width: int, depth: int, channels: int) -> int:
    return 1 + (width * depth * channels + 7) // 8


# ---------------------------------------------------------------- TIFF by hand

TiffEntry = tuple[int, int, list[float]] | tuple[int, int, int, int]


def tiff(entries: list[TiffEntry], data: bytes, order: str = "<", next_ifd: int | None = 0) -> bytes:
    """A one-IFD TIFF: header, `data` at offset 8, then the IFD and out-of-line values.

    An entry is (tag, type, values), or (tag, type, count, raw) to write a bogus count/offset field verbatim.
    next_ifd=None points the IFD's next-IFD link back at itself (a loop).
    """
    ifd_at = 8 + len(data) + (len(data) & 1)
    values_at = ifd_at + 2 + 12 * len(entries) + 4
    fields, blobs = [], b""
    for entry in sorted(entries, key=lambda e: e[0]):
        if len(entry) == 4:
            tag, kind, count, raw = entry
            fields.append(struct.pack(order + "HHII", tag, kind, count, raw))
            continue
        tag, kind, values = entry
        if kind == 5:
            blob = b"".join(struct.pack(order + "II", int(v), 1) for v in values)
        elif kind == 2:
            blob = bytes(int(v) for v in values)
        else:
            blob = struct.pack(order + TIFF_CODES[kind] * len(values), *values)
        if len(blob) <= 4:
            field = blob.ljust(4, b"\0")
        else:
            field = struct.pack(order + "I", values_at + len(blobs))
            blobs += blob + b"\0" * (len(blob) & 1)
        fields.append(struct.pack(order + "HHI", tag, kind, len(values)) + field)
    link = ifd_at if next_ifd is None else next_ifd
    magic = b"II*\0" if order == "<" else b"MM\0*"
    ifd = struct.pack(order + "H", len(fields)) + b"".join(fields) + struct.pack(order + "I", link)
    return magic + struct.pack(order + "I", ifd_at) + data + b"\0" * (len(data) & 1) + ifd + blobs


def tiff_grey(width: int, height: int, data: bytes, **override: TiffEntry) -> list[TiffEntry]:
    """Entries for an uncompressed 8-bit greyscale strip at offset 8; keyword overrides replace by name."""
    entries: dict[str, TiffEntry] = {
        "width": (256, 4, [width]),
        "height": (257, 4, [height]),
        "bps": (258, 3, [8]),
        "compression": (259, 3, [1]),
        "photometric": (262, 3, [1]),
        "offsets": (273, 4, [8]),
        "spp": (277, 3, [1]),
        "rows": (278, 4, [height]),
        "counts": (279, 4, [len(data)]),
    }
    entries.update(override)
    return list(entries.values())


# ---------------------------------------------------------------- other formats by hand


def bmp(
    width: int,
    height: int,
    bpp: int,
    pixels: bytes,
    compression: int = 0,
    palette: bytes = b"",
    colours_used: int = 0,
    data_offset: int | None = None,
    header: bytes | None = None,
) -> bytes:
    """A BMP with a BITMAPINFOHEADER (or a given DIB header); sizes are written as given, however absurd."""
    dib = header or struct.pack("<IiiHHIIiiII", 40, width, height, 1, bpp, compression, len(pixels), 2835, 2835, colours_used, 0)
    offset = 14 + len(dib) + len(palette) if data_offset is None else data_offset
    file_header = b"BM" + struct.pack("<IHHI", 14 + len(dib) + len(palette) + len(pixels), 0, 0, offset)
    return file_header + dib + palette + pixels


def bmp_rows(grey: np.ndarray) -> bytes:
    """8-bit bottom-up rows padded to 4 bytes."""
    h, w = grey.shape
    pad = (-w) % 4
    return b"".join(grey[y].tobytes() + b"\0" * pad for y in range(h - 1, -1, -1))


def grey_palette(n: int = 256) -> bytes:
    return b"".join(bytes((v, v, v, 0)) for v in np.linspace(0, 255, n).astype(np.uint8))


def gif_blocks(data: bytes) -> list[tuple[str, int]]:
    """(kind, offset) of the logical screen and each image descriptor in a GIF, to patch Pillow's output."""
    found = [("screen", 6)]
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while pos < len(data) and data[pos] != 0x3B:
        if data[pos] == 0x21:  # extension: label, then sub-blocks
            pos += 2
        else:  # image descriptor, optional local table, LZW minimum code size, then sub-blocks
            found.append(("image", pos))
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        while data[pos]:
            pos += data[pos] + 1
        pos += 1
    return found


def gif_patch(data: bytes, screen: tuple[int, int] | None = None, frame: tuple[int, int, int, int] | None = None) -> bytes:
    """Rewrite the logical screen size and/or the first frame's (left, top, width, height)."""
    out = bytearray(data)
    blocks = dict(gif_blocks(data)[:2])
    if screen:
        out[6:10] = struct.pack("<HH", *screen)
    if frame:
        at = blocks["image"] + 1
        out[at : at + 8] = struct.pack("<HHHH", *frame)
    return bytes(out)


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def jpeg_insert(jpeg: bytes, segment: bytes) -> bytes:
    """Insert a segment right after SOI."""
    return jpeg[:2] + segment + jpeg[2:]


def jpeg_patch_sof(jpeg: bytes, width: int, height: int, marker: int | None = None) -> bytes:
    at = jpeg.index(b"\xff\xc0") if b"\xff\xc0" in jpeg else jpeg.index(b"\xff\xc2")
    out = bytearray(jpeg)
    out[at + 5 : at + 9] = struct.pack(">HH", height, width)
    if marker is not None:
        out[at + 1] = marker
    return bytes(out)


def exif_tiff(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0, ifd_at: int = 8) -> bytes:
    """A little-endian EXIF TIFF body: entries are (tag, type, count, 4-byte field) written verbatim."""
    body = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", t, k, c) + f for t, k, c, f in entries)
    return b"II*\0" + struct.pack("<I", ifd_at) + body + struct.pack("<I", next_ifd)


def riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"WEBP" + b"".join(tag + struct.pack("<I", len(d)) + d + b"\0" * (len(d) & 1) for tag, d in chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 12
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        out.append((tag, data[pos + 8 : pos + 8 + size]))
        pos += 8 + size + (size & 1)
    return out
