"""Turn any digit image into the model's MNIST form; shared by the server, the batch CLI and evaluation.

MNIST form: 28x28 float32 in [0, 1], white ink on black, the digit scaled to fit 20x20 keeping its
aspect ratio (anti-aliased) and placed so that its centre of mass is the image centre.

Usage:
    pixels = to_mnist(Path("seven.jpg").read_bytes())      # float32 [784], or None when blank
    pixels = from_uint8(raw_784_bytes)                      # already MNIST form
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from digitnet.service.constants import DIGIT_BOX, IMAGE_SIDE, N_PIXELS
from digitnet.service.errors import DigitnetError, InvalidInput, LimitExceeded

#: Formats accepted for encoded images (Pillow's names).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
#: Below this grey-level spread (out of 255) an image is treated as blank: no ink to read.
MIN_CONTRAST = 32
#: Images are shrunk (by whole factors) until their shorter side is below twice this before the work
#: starts: the digit ends up 20x20, and every step below costs in proportion to the pixel count.
WORKING_SIDE = 64
#: Share of the image's side used as the border that decides the background colour.
_BORDER = 0.08


@dataclass(frozen=True)
class Limits:
    """Caps on untrusted image input; each bounds the work and memory one image can cost."""

    max_encoded_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000  # width x height before decoding: stops decompression bombs
    max_side: int = 16_384  # longest side, before decoding
    max_aspect: float = 20.0  # longer side / shorter side: a strip too thin to shrink stays costly to read


def to_mnist(data: bytes, limits: Limits = Limits()) -> np.ndarray | None:
    """Decode an encoded image and return MNIST-form float32 [784], or None if it holds no digit."""
    return normalise(decode(data, limits))


def decode(data: bytes, limits: Limits = Limits()) -> np.ndarray:
    """Decode image bytes to greyscale uint8 [H, W]: first frame, upright, alpha composited against the ink."""
    if len(data) == 0:
        raise InvalidInput("empty image: 0 bytes")
    if len(data) > limits.max_encoded_bytes:
        raise LimitExceeded(f"encoded image is {len(data)} bytes, over the limit of {limits.max_encoded_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about each oddity of a corrupt file: not worth a log line
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(io.BytesIO(data), formats=FORMATS)
            check_dimensions(image.width, image.height, limits)  # from the header, before any pixel is decoded
            shrink = min(image.size) // WORKING_SIDE
            if shrink > 1 and image.format == "JPEG":
                image.draft("L", (image.width // shrink, image.height // shrink))  # libjpeg decodes it smaller
            image.load()  # the first frame of a multi-frame file
            if "exif" in image.info or image.format == "TIFF":  # phone photos, scanners: honour the orientation tag
                image = ImageOps.exif_transpose(image)
            return _to_grey(image)
    except DigitnetError:
        raise
    except UnidentifiedImageError as err:
        raise InvalidInput(f"not a readable image: expected one of {', '.join(FORMATS)}") from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise LimitExceeded(f"image is over the limit of {limits.max_pixels} pixels (a decompression bomb?): {err}") from err
    except MemoryError as err:
        raise LimitExceeded("not enough memory to decode the image") from err
    except Exception as err:
        # Pillow has no error hierarchy for corrupt input: its decoders raise OSError, SyntaxError, ValueError,
        # EOFError, struct.error, IndexError, TypeError, ... (its own fuzzing harness catches Exception too).
        # Every one of them means "this file cannot be read", never a server fault.
        raise InvalidInput(f"cannot decode the image: {type(err).__name__}: {err}") from err


def check_dimensions(width: int, height: int, limits: Limits) -> None:
    """Refuse an image whose size alone makes it too costly to read (pixels, longest side, aspect ratio)."""
    if width < 1 or height < 1:
        raise InvalidInput(f"image is {width}x{height}: it has no pixels")
    if width * height > limits.max_pixels:
        raise LimitExceeded(f"image is {width}x{height} = {width * height} pixels, over the limit of {limits.max_pixels}")
    if max(width, height) > limits.max_side:
        raise LimitExceeded(f"image is {width}x{height}: its longest side is over the limit of {limits.max_side} pixels")
    if max(width, height) > limits.max_aspect * min(width, height):
        raise LimitExceeded(f"image is {width}x{height}: its aspect ratio is over the limit of {limits.max_aspect:g}:1")


#: Modes holding more than 8 bits per sample; their real value range is mapped to 0-255.
_HIGH_DEPTH = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
#: Modes with an alpha channel (P images may have a transparent colour instead).
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


def _to_grey(image: Image.Image) -> np.ndarray:
    """Turn a decoded image of any mode into greyscale uint8 [H, W], shrunk towards the working size."""
    if image.mode in _HIGH_DEPTH:
        return _high_depth_to_uint8(image)
    if image.mode == "LAB":  # Pillow cannot convert LAB to L; its L channel is the lightness
        image = image.getchannel("L")
    has_alpha = image.mode in _ALPHA or (image.mode == "P" and "transparency" in image.info)
    target = "RGBA" if has_alpha else "L"
    if image.mode != target:
        image = image.convert(target)
    image = _shrink(image)
    return _flatten_alpha(image) if has_alpha else np.asarray(image, dtype=np.uint8)


def _shrink(image: Image.Image) -> Image.Image:
    """Shrink by a whole factor until the shorter side is below twice WORKING_SIDE (box filter: fast, keeps thin strokes)."""
    factor = _shrink_factor(image.size)
    return image.reduce(factor) if factor >= 2 else image


def _shrink_factor(size: tuple[int, int]) -> int:
    return min(size) // WORKING_SIDE


#: Full scales of integer greyscale that does not say its bit depth, smallest first (8, 16, 31 bits:
#: Pillow's "I" is signed 32-bit).
_INTEGER_SCALES = (255.0, 65535.0, 2147483647.0)


def _high_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """Map a 16-bit, 32-bit or float greyscale image to uint8 by its real value range, not by clipping at 255."""
    values = _block_mean(np.asarray(image), _shrink_factor(image.size))  # Pillow's reduce overflows 32-bit values
    if not np.all(np.isfinite(values)):
        raise InvalidInput("the image holds NaN or infinite pixel values")
    low, high = min(0.0, float(values.min())), float(values.max())
    if image.mode.startswith("I;16"):
        high = 65535.0  # the file says 16 bits per sample
    else:
        # 32-bit and float files do not say which range they use: take the smallest usual one that holds
        # every value (0-1 for floats, else 8, 16 or 31 bits).
        scales = (1.0, *_INTEGER_SCALES) if image.mode == "F" else _INTEGER_SCALES
        high = next((scale for scale in scales if high <= scale), high)
    return np.round((values - low) * (255.0 / max(high - low, 1e-12))).astype(np.uint8)


def _block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Shrink [H, W] by a whole factor, averaging each factor x factor block in float64 (no overflow, no wrap)."""
    if factor < 2:
        return values.astype(np.float64)
    h, w = values.shape[0] // factor, values.shape[1] // factor
    blocks = values[: h * factor, : w * factor].reshape(h, factor, w, factor)
    return blocks.mean(axis=(1, 3), dtype=np.float64)


def _flatten_alpha(image: Image.Image) -> np.ndarray:
    """Composite an RGBA image to greyscale uint8."""
    # Ink drawn on a transparent canvas: the alpha channel is the drawing. Put it on a background
    # that contrasts with the ink colour (white for dark ink, black for light ink), so neither vanishes.
    rgba = np.asarray(image, dtype=np.float32)
    alpha = rgba[..., 3] / 255.0
    grey = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    opaque = alpha > 0.5
    ink_is_light = opaque.any() and float(np.median(grey[opaque])) > 127
    background = 0.0 if ink_is_light else 255.0
    return np.round(grey * alpha + background * (1.0 - alpha)).astype(np.uint8)


def normalise(grey: np.ndarray) -> np.ndarray | None:
    """Make a greyscale uint8 image [H, W] look like MNIST; None if it is blank."""
    ink = _ink_on_black(grey)
    if _already_mnist_form(ink):
        # Re-normalising a digit that is already in MNIST form only blurs it (0.943 vs 0.957 accuracy on
        # the mnist5k validation digits sent as PNG files), and it costs most of the time: pass it through.
        return scale_uint8(ink).reshape(N_PIXELS)
    # One histogram answers every grey-level question below (percentiles, Otsu), without sorting pixels.
    histogram = np.bincount(ink.ravel(), minlength=256)
    if _level_at(histogram, 0.999) - _level_at(histogram, 0.01) < MIN_CONTRAST:
        return None
    threshold = _otsu(histogram)
    strokes = ink > threshold  # Otsu separates ink from paper (shading, texture, sensor noise)
    rows, cols = np.flatnonzero(strokes.any(axis=1)), np.flatnonzero(strokes.any(axis=0))
    if rows.size == 0:
        return None
    # Keep the strokes' anti-aliased edges, as MNIST has them: subtract the paper's level rather than
    # the threshold, stretch the ink to full white, and blank out everything not next to a stroke.
    paper = _level_at(histogram[: threshold + 1], 0.5)
    peak = threshold + 1 + _level_at(histogram[threshold + 1 :], 0.99)
    margin = max(1, round(max(ink.shape) / IMAGE_SIDE))  # about one MNIST pixel at this resolution
    top, left = max(0, rows[0] - margin), max(0, cols[0] - margin)
    window = (slice(top, rows[-1] + 1 + margin), slice(left, cols[-1] + 1 + margin))
    scaled = np.clip((ink[window].astype(np.float32) - paper) / max(peak - paper, 1), 0.0, 1.0)
    scaled *= _dilate(strokes[window], margin)
    digit = scaled[rows[0] - top : rows[-1] + 1 - top, cols[0] - left : cols[-1] + 1 - left]
    return _centre_by_mass(_fit_box(digit)).reshape(N_PIXELS)


def _already_mnist_form(ink: np.ndarray) -> bool:
    """Is this a 28x28 white-on-black digit that fits the 20x20 box (give or take a pixel) and is centred by mass?"""
    if ink.shape != (IMAGE_SIDE, IMAGE_SIDE):
        return False
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0 or max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 > DIGIT_BOX + 2:
        return False
    cy, cx = _centre_of_mass(ink.astype(np.float32))
    centre = (IMAGE_SIDE - 1) / 2
    return abs(cy - centre) <= 1.5 and abs(cx - centre) <= 1.5


def _ink_on_black(grey: np.ndarray) -> np.ndarray:
    # MNIST is white ink on black. The border is mostly background: if it is light, the ink is dark.
    h, w = grey.shape
    band = max(1, int(round(min(h, w) * _BORDER)))
    border = np.concatenate([grey[:band].ravel(), grey[-band:].ravel(), grey[:, :band].ravel(), grey[:, -band:].ravel()])
    return 255 - grey if _level_at(np.bincount(border, minlength=256), 0.5) > 127 else grey


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Grow a boolean mask by `radius` pixels in every direction (a square neighbourhood), in time linear in its area."""
    grown = mask
    for axis in (0, 1):
        # scipy's running maximum costs O(length + size) per line: cap the size at what the line can use.
        size = 2 * min(radius, mask.shape[axis] - 1) + 1
        if size > 1:
            grown = ndimage.maximum_filter1d(grown, size, axis=axis, mode="constant", cval=False)
    return grown


def _level_at(histogram: np.ndarray, fraction: float) -> int:
    """Return the grey level below which `fraction` of the histogram's pixels lie."""
    cumulative = np.cumsum(histogram)
    return int(np.searchsorted(cumulative, fraction * cumulative[-1])) if cumulative[-1] else 0


def _otsu(histogram: np.ndarray) -> int:
    """Return the grey level that best splits a 256-bin histogram into two classes (Otsu's method)."""
    counts = histogram.astype(np.float64)
    levels = np.arange(counts.size)
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    mass_low = np.cumsum(counts * levels)
    mean_low = mass_low / np.maximum(weight_low, 1)
    mean_high = (mass_low[-1] - mass_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return int(np.argmax(between))


def _fit_box(ink: np.ndarray) -> np.ndarray:
    # Scale the longer side to DIGIT_BOX, keeping the aspect ratio; Pillow's LANCZOS anti-aliases.
    h, w = ink.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    image = Image.fromarray(np.round(ink * 255).astype(np.uint8), mode="L")
    return np.asarray(image.resize(size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """Return the (row, column) centre of mass of a non-negative image; its middle if it is all zero."""
    h, w = image.shape
    total = float(image.sum())
    if total <= 0:
        return (h - 1) / 2, (w - 1) / 2
    return float(image.sum(axis=1) @ np.arange(h)) / total, float(image.sum(axis=0) @ np.arange(w)) / total


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    # Place the digit in 28x28 so its centre of mass sits at the centre, at whole-pixel offsets (no blur).
    h, w = digit.shape
    cy, cx = _centre_of_mass(digit)
    centre = (IMAGE_SIDE - 1) / 2
    top = int(np.clip(round(centre - cy), 0, IMAGE_SIDE - h))
    left = int(np.clip(round(centre - cx), 0, IMAGE_SIDE - w))
    canvas = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    canvas[top : top + h, left : left + w] = digit
    return canvas


def scale_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale uint8 MNIST pixels (0-255) to the model's float32 [0, 1], the one way every path does it."""
    return pixels.astype(np.float32) / np.float32(255.0)


def from_uint8(data: bytes) -> np.ndarray | None:
    """Check and scale 784 MNIST-form bytes to float32 [784]; None if all black (blank)."""
    if len(data) != N_PIXELS:
        raise InvalidInput(f"mnist_uint8 must be exactly {N_PIXELS} bytes (28x28), got {len(data)}")
    pixels = scale_uint8(np.frombuffer(data, dtype=np.uint8))
    return pixels if pixels.any() else None


def from_float(values: np.ndarray) -> np.ndarray | None:
    """Check MNIST-form floats [784] in [0, 1]; None if all zero (blank)."""
    pixels = np.asarray(values, dtype=np.float32).reshape(-1)
    if pixels.size != N_PIXELS:
        raise InvalidInput(f"mnist_float must hold exactly {N_PIXELS} values (28x28), got {pixels.size}")
    if not np.all(np.isfinite(pixels)):
        raise InvalidInput("mnist_float holds NaN or infinite values; expected floats in [0, 1]")
    if pixels.min() < 0.0 or pixels.max() > 1.0:
        raise InvalidInput(
            f"mnist_float values must be in [0, 1], got [{pixels.min():g}, {pixels.max():g}] (scale 0-255 pixels by 1/255)"
        )
    return pixels if pixels.any() else None
