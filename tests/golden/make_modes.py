"""Regenerate tests/golden/modes/: one scanned 7 saved in every image mode and layout a user's file may have.

`./dev run python tests/golden/make_modes.py`. The source is the committed `7_scan.png` (black ink on
shaded paper), so every file shows the same digit: 1-bit, grey, palette (with and without a
transparent colour), grey+alpha, RGB, RGBA, CMYK, YCbCr, LAB, 16-bit, 32-bit integer and float
greyscale (32-bit over its whole range too), EXIF-rotated JPEGs, multi-frame GIF and TIFF whose first frame is the digit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
OUT = HERE / "modes"
#: EXIF orientation tag, and for each value the rotation that makes the stored image show it upright.
ORIENTATION = 0x0112
STORED_AS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def main() -> None:
    """Write every variant into tests/golden/modes/."""
    OUT.mkdir(exist_ok=True)
    grey = Image.open(HERE / "7_scan.png").convert("L")
    values = np.asarray(grey)
    rgb = Image.merge("RGB", (grey, grey.point(lambda v: v * 0.9), grey))  # tinted paper: colour that is still a scan
    alpha = Image.fromarray(255 - values)  # ink drawn on a transparent sheet
    variants: dict[str, tuple[Image.Image, dict[str, object]]] = {
        "1.png": (grey.point(lambda v: 255 if v > 128 else 0, "1"), {}),
        "L.png": (grey, {}),
        "L.bmp": (grey, {}),
        "L.webp": (grey, {"lossless": True}),
        "P.png": (rgb.quantize(64), {}),
        "P_transparent.gif": (_with_transparent_paper(grey), {}),
        "LA.png": (Image.merge("LA", (Image.new("L", grey.size, 0), alpha)), {}),
        "RGB.png": (rgb, {}),
        "RGBA.png": (Image.merge("RGBA", (*Image.new("RGB", grey.size, (20, 20, 90)).split(), alpha)), {}),
        "CMYK.jpg": (rgb.convert("CMYK"), {"quality": 95}),
        "CMYK.tif": (rgb.convert("CMYK"), {}),
        "YCbCr.tif": (rgb.convert("YCbCr"), {}),
        "LAB.tif": (rgb.convert("LAB"), {}),
        "I16.png": (_from_array(values.astype(np.uint16) * 257, "I;16"), {}),
        "I16.tif": (_from_array(values.astype(np.uint16) * 257, "I;16"), {}),
        "I16B.tif": (_from_array((values.astype(np.uint16) * 257).astype(">u2"), "I;16B"), {}),
        "I32.tif": (Image.fromarray(values.astype(np.int32) * 257), {}),
        "I32_8bit_values.tif": (Image.fromarray(values.astype(np.int32)), {}),
        "I32_full_range.tif": (Image.fromarray((values.astype(np.int64) * (2**31 - 1) // 255).astype(np.int32)), {}),
        "I32_full_range_light_on_dark.tif": (Image.fromarray(((255 - values.astype(np.int64)) * (2**31 - 1) // 255).astype(np.int32)), {}),
        "F_0_1.tif": (Image.fromarray(values.astype(np.float32) / 255), {}),
        "F_0_255.tif": (Image.fromarray(values.astype(np.float32)), {}),
    }
    for name, (image, options) in variants.items():
        image.save(OUT / f"7_{name}", **options)
    for orientation, stored in STORED_AS.items():
        exif = Image.Exif()
        exif[ORIENTATION] = orientation
        grey.transpose(stored).save(OUT / f"7_exif_orientation_{orientation}.jpg", exif=exif, quality=90)
    blank, other = Image.new("L", grey.size, 255), grey.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    grey.save(OUT / "7_multiframe.gif", save_all=True, append_images=[blank, other])
    grey.save(OUT / "7_multiframe.tif", save_all=True, append_images=[blank.resize((40, 30)), other.convert("RGB")])


def _from_array(array: np.ndarray, mode: str) -> Image.Image:
    return Image.frombuffer(mode, (array.shape[1], array.shape[0]), array.tobytes(), "raw", mode, 0, 1)


def _with_transparent_paper(grey: Image.Image) -> Image.Image:
    # A palette image whose lightest colour (the paper) is marked transparent, as GIF scans often are.
    palette = grey.point(lambda v: 255 if v > 200 else v).quantize(32)
    lightest = max(range(32), key=lambda i: sum(palette.getpalette()[3 * i : 3 * i + 3]))  # type: ignore[index]
    palette.info["transparency"] = lightest
    return palette


if __name__ == "__main__":
    main()
