"""Write the fuzz seed corpus (tests/corpus/): one drawn digit in every mode and format Pillow reads,
plus crafted headers (bombs, huge and thin sizes, bogus offsets), EXIF oddities, multi-frame files,
truncations and garbage. Deterministic: rerunning it writes the same bytes.

    ./dev run python tests/corpus/make_corpus.py
"""

import argparse
import io
import struct
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from formats import (  # type: ignore[import-not-found]  # run as a script, beside this file
    PNG_SIGNATURE,
    Corpus,
    bmp,
    bmp_rows,
    chunk,
    dark_seven,
    encode,
    exif_tiff,
    gif_patch,
    grey_palette,
    ihdr,
    jpeg_insert,
    jpeg_patch_sof,
    jpeg_segment,
    noise,
    png,
    png_row_bytes,
    png_rows,
    png_zeros,
    riff,
    seven,
    tiff,
    tiff_grey,
    webp_chunks,
    zeros_deflate,
)
from PIL import Image, ImageOps


def modes(c: Corpus) -> None:
    """Every mode each format saves, as the pipeline may meet it."""
    grey = seven()
    arr = np.asarray(grey)
    rgb = Image.merge("RGB", (grey, grey.point(lambda v: v // 2), Image.new("L", grey.size, 40)))
    rgba = rgb.copy()
    rgba.putalpha(grey)  # ink opaque, paper transparent: the drawing lives in alpha
    la = Image.merge("LA", (grey, grey))
    pal = grey.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal_trns = pal.copy()
    pal_trns.info["transparency"] = pal.getpixel((0, 0))
    i16 = Image.fromarray(arr.astype(np.uint16) * 257)
    i32 = Image.fromarray(arr.astype(np.int32) * 1000 - 50_000)
    i32_small = Image.fromarray(arr.astype(np.int32))
    f01 = Image.fromarray(arr.astype(np.float32) / 255)
    wild = arr.astype(np.float32) * 4 - 300  # paper -300, ink 720: both out of range
    wild[0, :4] = [np.nan, np.inf, -np.inf, 3.4e38]
    wild[14, 14] = np.nan
    f_wild = Image.fromarray(wild)
    f_nan = Image.fromarray(np.full((28, 28), np.nan, np.float32))
    pa = pal.convert("PA")
    pa.putalpha(grey)

    for name, image in [
        ("1", grey.point(lambda v: 255 * (v > 127)).convert("1")),
        ("L", grey),
        ("LA", la),
        ("P", pal),
        ("P_trns", pal_trns),
        ("RGB", rgb),
        ("RGBA", rgba),
        ("L_16bit", i16),
    ]:
        c.add(f"png_{name}.png", encode(image, "PNG"))
    c.add("png_L_dark_on_light.png", encode(dark_seven(), "PNG"))
    c.add("png_RGB_trns_colour.png", encode(rgb, "PNG", transparency=(0, 0, 40)))
    c.add("png_L_trns_grey.png", encode(grey, "PNG", transparency=0))
    # Crafted by hand: 16-bit colour, 16-bit grey+alpha, 2-bit grey, 16-bit grey with tRNS.
    a16 = arr.astype(np.uint16) * 257
    rgb16 = np.stack([a16, a16 // 3, np.full_like(a16, 9000)], axis=-1)
    c.add("png_RGB_16bit.png", png(rgb16, 16, 2))
    c.add("png_RGBA_16bit.png", png(np.concatenate([rgb16, a16[..., None]], axis=-1), 16, 6))
    c.add("png_LA_16bit.png", png(np.stack([a16, a16], axis=-1), 16, 4))
    c.add("png_L_2bit.png", png(arr >> 6, 2, 0))
    c.add("png_L_16bit_trns.png", png(a16, 16, 0, extra=[chunk(b"tRNS", struct.pack(">H", 0))]))
    c.add("png_L_interlaced.png", png(np.asarray(seven(37, 29)), 8, 0, interlace=True))
    c.add("png_RGBA_16bit_interlaced.png", png(np.concatenate([rgb16, a16[..., None]], axis=-1), 16, 6, interlace=True))

    big = seven(64, 64)
    c.add("jpeg_L.jpg", encode(big, "JPEG", quality=90))
    c.add("jpeg_L_dark_on_light.jpg", encode(ImageOps.invert(big), "JPEG", quality=90))
    big_rgb = Image.merge("RGB", (big, big.point(lambda v: v // 2), Image.new("L", big.size, 40)))
    c.add("jpeg_RGB.jpg", encode(big_rgb, "JPEG", quality=85))
    c.add("jpeg_RGB_progressive.jpg", encode(big_rgb, "JPEG", quality=85, progressive=True))
    c.add(
        "jpeg_RGB_444_optimized_restart.jpg",
        encode(big_rgb, "JPEG", subsampling=0, optimize=True, restart_marker_blocks=1),
    )
    c.add("jpeg_CMYK.jpg", encode(big_rgb.convert("CMYK"), "JPEG", quality=90))
    c.add("jpeg_YCbCr.jpg", encode(big_rgb.convert("YCbCr"), "JPEG", quality=90))
    c.add("jpeg_from_1.jpg", encode(big.convert("1"), "JPEG"))

    c.add("bmp_1.bmp", encode(grey.convert("1"), "BMP"))
    c.add("bmp_L.bmp", encode(grey, "BMP"))
    c.add("bmp_P.bmp", encode(pal, "BMP"))
    c.add("bmp_RGB_dark_on_light.bmp", encode(ImageOps.invert(rgb), "BMP"))
    c.add("bmp_RGBA_32bit.bmp", encode(rgba, "BMP"))

    c.add("gif_L.gif", encode(grey, "GIF"))
    c.add("gif_P_trns.gif", encode(pal_trns, "GIF"))
    c.add("gif_RGB_dark_on_light_noninterlaced.gif", encode(ImageOps.invert(rgb), "GIF", interlace=False))

    tiff_modes = [
        ("1", grey.convert("1")),
        ("L", grey),
        ("LA", la),
        ("P", pal),
        ("PA", pa),
        ("RGB", rgb),
        ("RGBA", rgba),
        ("CMYK", rgb.convert("CMYK")),
        ("YCbCr", rgb.convert("YCbCr")),
        ("LAB", Image.merge("LAB", (grey, Image.new("L", grey.size, 128), Image.new("L", grey.size, 128)))),
        ("I16", i16),
        ("I16B", Image.fromarray((arr.astype(np.uint16) * 257).astype(">u2"))),
        ("I32", i32),
        ("I32_0to255", i32_small),
        ("F_0to1", f01),
        ("F_out_of_range_nan_inf", f_wild),
        ("F_all_nan", f_nan),
    ]
    for name, image in tiff_modes:
        c.add(f"tiff_{name}.tif", encode(image, "TIFF"))
    c.add("tiff_L_lzw_dark_on_light.tif", encode(dark_seven(), "TIFF", compression="tiff_lzw"))
    c.add("tiff_RGB_jpeg.tif", encode(big_rgb, "TIFF", compression="jpeg"))
    c.add("tiff_1_group4.tif", encode(big.convert("1"), "TIFF", compression="group4"))
    c.add("tiff_L_bigendian.tif", tiff(tiff_grey(28, 28, arr.tobytes()), arr.tobytes(), order=">"))

    c.add("webp_RGB_lossy.webp", encode(big_rgb, "WEBP", quality=80, method=4))
    c.add("webp_RGBA_lossless.webp", encode(rgba, "WEBP", lossless=True, method=4))
    c.add("webp_from_L_dark_on_light_lossless.webp", encode(dark_seven(), "WEBP", lossless=True, method=4))


def content(c: Corpus) -> None:
    """Blank, near-blank and odd-shaped pictures: the normaliser's edge cases."""
    c.add("png_blank_white.png", encode(Image.new("L", (28, 28), 255), "PNG"))
    c.add("png_blank_black.png", encode(Image.new("L", (28, 28), 0), "PNG"))
    c.add("jpeg_blank_grey.jpg", encode(Image.new("L", (64, 64), 128), "JPEG"))
    c.add("png_RGBA_fully_transparent.png", encode(Image.new("RGBA", (28, 28), (255, 255, 255, 0)), "PNG"))
    c.add("png_noise_near_blank.png", encode(Image.fromarray(noise(1, (28, 28), 120, 135)), "PNG"))
    c.add("png_noise_full.png", encode(Image.fromarray(noise(2, (64, 64), 0, 255)), "PNG"))
    c.add("jpeg_noise_near_blank.jpg", encode(Image.fromarray(noise(3, (64, 64), 200, 215)), "JPEG", quality=95))
    one_dot = np.zeros((28, 28), np.uint8)
    one_dot[5, 22] = 255  # a lone pixel off-centre: "ink" that is not a digit
    c.add("png_single_dot.png", encode(Image.fromarray(one_dot), "PNG"))
    c.add("png_L_1x1.png", encode(Image.new("L", (1, 1), 255), "PNG"))
    c.add("jpeg_1x1.jpg", encode(Image.new("RGB", (1, 1), (0, 0, 0)), "JPEG"))
    c.add("gif_1x1.gif", encode(Image.new("L", (1, 1), 0), "GIF"))
    c.add("bmp_1x1.bmp", encode(Image.new("RGB", (1, 1), (255, 255, 255)), "BMP"))
    c.add("tiff_1x1.tif", encode(Image.new("L", (1, 1), 7), "TIFF"))
    c.add("webp_1x1.webp", encode(Image.new("RGB", (1, 1)), "WEBP", lossless=True))
    stripes = (np.arange(20000) // 37 % 2 * 255).astype(np.uint8)  # ink and paper alternating along the strip
    c.add("png_L_20000x1.png", encode(Image.fromarray(stripes[None, :]), "PNG"))
    c.add("png_L_1x20000.png", encode(Image.fromarray(stripes[:, None]), "PNG"))
    c.add("jpeg_L_20000x1.jpg", encode(Image.fromarray(stripes[None, :]), "JPEG"))
    c.add("gif_L_1x20000.gif", encode(Image.fromarray(stripes[:, None]), "GIF"))
    c.add("png_L_wide_2000x20.png", encode(seven().resize((2000, 20)), "PNG"))
    c.add("png_L_tall_20x2000.png", encode(seven().resize((20, 2000)), "PNG"))
    c.add("webp_RGB_wide_4000x3.webp", encode(seven().resize((4000, 3)).convert("RGB"), "WEBP", lossless=True))


def exif_orientation(c: Corpus) -> None:
    """EXIF orientation 1..8 on a non-square 7, plus broken EXIF the transpose step must survive."""
    base = seven(24, 32).convert("RGB")
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        c.add(f"jpeg_exif_orientation{orientation}.jpg", encode(base, "JPEG", quality=90, exif=exif.tobytes()))
    exif6 = Image.Exif()
    exif6[0x0112] = 6
    c.add("png_exif_orientation6.png", encode(base, "PNG", exif=exif6.tobytes()))
    c.add("webp_exif_orientation6.webp", encode(base, "WEBP", lossless=True, exif=exif6.tobytes()))
    plain = encode(base, "JPEG", quality=90)
    short = struct.pack("<H", 3)
    app1 = [
        # IFD0 offset far past the end of the block.
        ("corrupt_ifd_offset", b"Exif\0\0" + b"II*\0" + struct.pack("<I", 0xFFFFFFF0)),
        # 65535 entries claimed, a few present; one claims a gigantic LONG array.
        (
            "huge_counts",
            b"Exif\0\0"
            + b"II*\0\x08\0\0\0\xff\xff"
            + struct.pack("<HHII", 0x0112, 3, 1, 6)
            + struct.pack("<HHII", 0x010F, 4, 0x3FFFFFFF, 0x7FFFFF00) * 8,
        ),
        # IFD0's next link and its ExifIFD pointer both point back at IFD0.
        (
            "ifd_loop",
            b"Exif\0\0" + exif_tiff([(0x0112, 3, 1, short + b"\0\0"), (0x8769, 4, 1, struct.pack("<I", 8))], next_ifd=8),
        ),
        # Orientation outside 1..8, and stored as ASCII instead of SHORT.
        ("orientation_65535", b"Exif\0\0" + exif_tiff([(0x0112, 3, 1, b"\xff\xff\0\0")])),
        ("orientation_ascii", b"Exif\0\0" + exif_tiff([(0x0112, 2, 4, b"six\0")])),
        # A full-size APP1 of filler after a valid orientation: the largest EXIF a segment can hold.
        (
            "max_size_block",
            b"Exif\0\0" + exif_tiff([(0x0112, 3, 1, struct.pack("<H", 8) + b"\0\0")]) + bytes(65533 - 6 - 26),
        ),
    ]
    for name, payload in app1:
        c.add(f"jpeg_exif_{name}.jpg", jpeg_insert(plain, jpeg_segment(0xE1, payload)))


def multiframe(c: Corpus) -> None:
    """Several frames: the pipeline only reads the first, but plugins parse the rest."""
    first = seven()
    others = [Image.new("RGB", (64, 10), (255, 0, 0)), Image.new("1", (5, 50), 1), seven(40, 40)]
    c.add("gif_multiframe.gif", encode(first, "GIF", save_all=True, append_images=others, duration=100, loop=0))
    tiff_frames = [*others, Image.new("F", (3, 3), -1.5), Image.new("CMYK", (200, 1))]
    c.add("tiff_multiframe.tif", encode(first, "TIFF", save_all=True, append_images=tiff_frames))
    c.add(
        "webp_animated.webp",
        encode(
            first.convert("RGB"),
            "WEBP",
            save_all=True,
            lossless=True,
            append_images=[o.convert("RGB").resize((28, 28)) for o in others],
            duration=80,
        ),
    )
    c.add("png_apng_3frames.png", encode(first, "PNG", save_all=True, append_images=[dark_seven(), first]))
    mpo = io.BytesIO()
    first.convert("RGB").save(mpo, "MPO", save_all=True, append_images=[dark_seven().convert("RGB")])
    c.add("jpeg_mpo_2frames.jpg", mpo.getvalue())
    # A TIFF whose next-IFD link points back at its own IFD.
    data = np.asarray(first).tobytes()
    c.add("tiff_ifd_loop.tif", tiff(tiff_grey(28, 28, data), data, next_ifd=None))
    # APNG claiming 2^31-1 frames while holding one.
    apng = encode(first, "PNG", save_all=True, append_images=[first.point(lambda v: v // 2)])
    at = apng.index(b"acTL") - 4
    c.add("png_apng_actl_2G_frames.png", apng[:at] + chunk(b"acTL", struct.pack(">II", 0x7FFFFFFF, 0)) + apng[at + 20 :])


def huge_headers(c: Corpus) -> None:
    """Headers claiming enormous sizes, with valid checksums and small files."""
    c.add("png_ihdr_100000x100000.png", png_zeros(100_000, 100_000, 8, 0, 16 << 20))
    c.add("png_ihdr_1x2000000.png", png_zeros(1, 2_000_000, 8, 0, 2 * 2_000_000))
    c.add("png_ihdr_2000000x1.png", png_zeros(2_000_000, 1, 8, 0, 2_000_001))
    # At or under the pipeline's 25 Mpx cap: complete, valid images that each decode to about 25 MB.
    c.add("png_L_5000x5000_zeros.png", png_zeros(5000, 5000, 8, 0, 5000 * 5001))
    c.add("png_RGBA_2500x2500_zeros.png", png_zeros(2500, 2500, 8, 6, 2500 * (1 + 4 * 2500)))
    c.add("png_1bit_4999x4999_zeros.png", png_zeros(4999, 4999, 1, 0, 4999 * png_row_bytes(4999, 1, 1)))
    # Valid 8x8 picture, then 48 MiB of surplus zeros in the same zlib stream.
    surplus = zlib.compressobj(9)
    stream = surplus.compress(png_rows(np.asarray(seven(8, 8)), 8))
    stream += b"".join(surplus.compress(bytes(1 << 20)) for _ in range(48)) + surplus.flush()
    c.add("png_idat_48MiB_surplus.png", PNG_SIGNATURE + ihdr(8, 8, 8, 0) + chunk(b"IDAT", stream) + chunk(b"IEND", b""))

    c.add("bmp_header_100000x100000.bmp", bmp(100_000, 100_000, 24, bytes(64)))
    c.add("bmp_header_1x-2147483648.bmp", bmp(1, -(2**31), 8, bytes(64), palette=grey_palette()))
    # RLE8 whose first code is end-of-bitmap: 25 Mpx from a few bytes.
    c.add("bmp_rle8_4999x4999_eob.bmp", bmp(4999, 4999, 8, b"\x00\x01", compression=1, palette=grey_palette()))
    c.add("bmp_colours_used_2G.bmp", bmp(4, 4, 8, bytes(16), colours_used=0x7FFFFFFF, palette=grey_palette(2)))
    c.add(
        "bmp_data_offset_past_eof.bmp",
        bmp(28, 28, 8, bmp_rows(np.asarray(seven())), palette=grey_palette(), data_offset=0x7FFFFFF0),
    )
    tiny_gif = encode(Image.new("L", (1, 1), 255), "GIF")
    c.add("gif_screen_65535x65535.gif", gif_patch(tiny_gif, screen=(65535, 65535)))
    c.add("gif_screen_4999x4999_1px_frame.gif", gif_patch(tiny_gif, screen=(4999, 4999)))
    c.add("gif_frame_65535x65535_in_1x1_screen.gif", gif_patch(tiny_gif, frame=(0, 0, 65535, 65535)))
    c.add("gif_frame_offset_outside_screen.gif", gif_patch(tiny_gif, frame=(60000, 60000, 1, 1)))

    strip = bytes(64)
    c.add("tiff_ifd_100000x100000.tif", tiff(tiff_grey(100_000, 100_000, strip), strip))
    c.add("tiff_ifd_4999x4999_short_strip.tif", tiff(tiff_grey(4999, 4999, strip), strip))
    c.add("tiff_strip_count_1G.tif", tiff(tiff_grey(28, 28, strip, offsets=(273, 4, 0x3FFFFFFF, 8)), strip))
    c.add("tiff_strip_offset_bogus.tif", tiff(tiff_grey(28, 28, strip, offsets=(273, 4, 1, 0xFFFFFF00)), strip))
    c.add("tiff_bytecount_4G.tif", tiff(tiff_grey(28, 28, strip, counts=(279, 4, 1, 0xFFFFFFFF)), strip))
    c.add("tiff_ifd_offset_past_eof.tif", b"II*\0" + struct.pack("<I", 0x7FFFFFF0) + strip)
    row = np.asarray(seven(4999, 1)).tobytes()  # 4999 strips of one row, all sharing one row of data
    c.add(
        "tiff_4999x4999_4999_strips_shared.tif",
        tiff(
            tiff_grey(4999, 4999, row, offsets=(273, 4, [8] * 4999), rows=(278, 4, [1]), counts=(279, 4, [4999] * 4999)),
            row,
        ),
    )
    c.add("tiff_rowsperstrip_0.tif", tiff(tiff_grey(28, 28, strip, rows=(278, 4, [0])), strip))
    c.add("tiff_bits_12.tif", tiff(tiff_grey(28, 28, strip, bps=(258, 3, [12])), strip))
    c.add("tiff_spp_65535.tif", tiff(tiff_grey(28, 28, strip, spp=(277, 3, [65535])), strip))
    c.add(
        "tiff_tiles_2G.tif",
        tiff(
            tiff_grey(
                28,
                28,
                strip,
                rows=(322, 4, [0x80000000]),
                counts=(323, 4, [16]),
                offsets=(324, 4, [8]),
                extra=(325, 4, [64]),
            ),
            strip,
        ),
    )
    orient = np.asarray(seven(24, 32)).tobytes()
    c.add("tiff_orientation8.tif", tiff(tiff_grey(24, 32, orient, extra=(274, 3, [8])), orient))

    small = encode(seven(16, 16).convert("RGB"), "JPEG", quality=75)
    c.add("jpeg_sof_65535x65535.jpg", jpeg_patch_sof(small, 65535, 65535))
    c.add("jpeg_sof_4999x4999_tiny_scan.jpg", jpeg_patch_sof(small, 4999, 4999))
    c.add("jpeg_sof_0x0.jpg", jpeg_patch_sof(small, 0, 0))
    c.add("jpeg_sof3_lossless_marker.jpg", jpeg_patch_sof(small, 16, 16, marker=0xC3))

    lossless = encode(seven(16, 16).convert("RGB"), "WEBP", lossless=True)
    vp8l = bytearray(webp_chunks(lossless)[-1][1])
    bits = int.from_bytes(vp8l[1:5], "little") & ~0x0FFFFFFF | 0x3FFF | 0x3FFF << 14  # 14-bit (w-1), (h-1) fields
    vp8l[1:5] = bits.to_bytes(4, "little")
    c.add("webp_vp8l_16384x16384.webp", riff([(b"VP8L", bytes(vp8l))]))
    vp8x = bytes([0, 0, 0, 0]) + (0xFFFFFF).to_bytes(3, "little") * 2  # canvas 2^24 x 2^24
    c.add("webp_vp8x_canvas_16M.webp", riff([(b"VP8X", vp8x), *webp_chunks(lossless)]))


def broken(c: Corpus) -> None:
    """Truncated, mislabelled and garbage inputs."""
    rng = np.random.default_rng(7)
    png_full = encode(seven(64, 64), "PNG")
    idat = png_full.index(b"IDAT")
    c.add("png_truncated_mid_idat.png", png_full[: idat + 4 + 40])
    c.add("png_no_iend.png", png_full[:-12])
    bad_crc = bytearray(png_full)
    bad_crc[idat + 8] ^= 0xFF  # corrupt the deflate data, keep the CRC: it no longer matches
    c.add("png_bad_idat_crc.png", bytes(bad_crc))
    c.add(
        "png_chunk_length_2G.png",
        PNG_SIGNATURE + ihdr(28, 28, 8, 0) + struct.pack(">I", 0x7FFFFFFF) + b"IDAT" + bytes(64),
    )
    idat4 = chunk(b"IDAT", zlib.compress(bytes(4 * 13)))
    c.add("png_ihdr_bad_depth.png", PNG_SIGNATURE + ihdr(4, 4, 5, 2) + idat4 + chunk(b"IEND", b""))
    jpeg_full = encode(seven(64, 64).convert("RGB"), "JPEG", quality=90)
    scan = jpeg_full.index(b"\xff\xda")
    c.add("jpeg_truncated.jpg", jpeg_full[: scan + (len(jpeg_full) - scan) // 2])
    c.add("jpeg_no_eoi.jpg", jpeg_full[:-2])
    gif_full = encode(seven(64, 64), "GIF")
    c.add("gif_truncated.gif", gif_full[: len(gif_full) // 2])
    c.add("tiff_truncated.tif", encode(seven(64, 64), "TIFF")[:2000])
    c.add("bmp_truncated.bmp", encode(seven(64, 64), "BMP")[:1500])
    webp_full = encode(seven(64, 64).convert("RGB"), "WEBP", quality=80)
    c.add("webp_truncated.webp", webp_full[: len(webp_full) // 2])
    c.add("empty.bin", b"")
    c.add("random_bytes.bin", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    c.add("text.txt", b"This is not an image. 7\n" * 20)
    garbage = rng.integers(0, 256, 2048, dtype=np.uint8).tobytes()
    for name, head in [
        ("png", PNG_SIGNATURE),
        ("jpeg", b"\xff\xd8\xff"),
        ("gif", b"GIF89a"),
        ("tiff", b"II*\0"),
        ("bmp", b"BM"),
        ("webp", b"RIFF\0\x08\0\0WEBPVP8 "),
    ]:
        ext = {"jpeg": "jpg", "tiff": "tif"}.get(name, name)
        c.add(f"{name}_signature_then_garbage.{ext}", head + garbage)
    c.add("png_valid_then_trailing_garbage.png", png_full + garbage)

    image = np.asarray(seven())
    big_z = zeros_deflate(8 << 20)  # 8 MiB of text once inflated
    c.add("png_ztxt_8MiB.png", png(image, 8, 0, extra=[chunk(b"zTXt", b"Comment\0\0" + big_z)]))
    c.add("png_itxt_8MiB.png", png(image, 8, 0, extra=[chunk(b"iTXt", b"Comment\0\1\0en\0\0" + big_z)]))
    # Each zTXt just under the per-chunk limit; together over the 64 MiB total.
    one = zeros_deflate((1 << 20) - 16)
    many = [chunk(b"zTXt", f"k{i}".encode() + b"\0\0" + one) for i in range(66)]
    c.add("png_ztxt_66x1MiB.png", png(image, 8, 0, extra=many))
    c.add("png_iccp_garbage.png", png(image, 8, 0, extra=[chunk(b"iCCP", b"icc\0\0" + zlib.compress(garbage))]))
    # Palette of 2 entries but indices up to 255; and a 4-bit image with a 3-entry palette.
    two = chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff")
    c.add("png_P_short_plte_oob_indices.png", png(image, 8, 3, extra=[two]))
    c.add(
        "png_P_4bit_short_plte_trns.png",
        png(image >> 4, 4, 3, extra=[chunk(b"PLTE", bytes(range(9))), chunk(b"tRNS", b"\x00\xff\x80\x10\x20")]),
    )
    c.add("png_P_no_plte.png", png(image, 8, 3))


GROUPS: tuple[Callable[[Corpus], None], ...] = (modes, content, exif_orientation, multiframe, huge_headers, broken)


def build() -> dict[str, bytes]:
    corpus = Corpus()
    for group in GROUPS:
        group(corpus)
    return corpus.files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    files = build()
    for name, data in sorted(files.items()):
        (args.out / name).write_bytes(data)
    print(f"wrote {len(files)} files, {sum(map(len, files.values()))} bytes, to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
