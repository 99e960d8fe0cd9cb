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
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from digitnet.service.contract.constants import DIGIT_BOX, IMAGE_SIDE, N_PIXELS
from digitnet.service.contract.errors import DigitnetError, InvalidInput, LimitExceeded
from digitnet.service.contract.limits import Limits
from digitnet.service.contract.pixels import check_float_pixels, scale_uint8, too_little_ink
from digitnet.service.inference.image_header import Header, sniff

# Each image is small; parallelism comes from handling many at once (server threads, score processes).
# OpenCV's own thread pool would only add hand-offs and oversubscribe the cores.
cv2.setNumThreads(1)
# OpenCV decodes only PNGs checked sound (image_header), but its log would still reach stderr for anything
# unexpected: failures are reported by this module, per image.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

#: Formats accepted for encoded images (Pillow's names).
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
#: Below this grey-level spread (out of 255) an image is treated as blank: no ink to read.
MIN_CONTRAST = 32
#: Ink whose extent is shorter than this (pixels, at the working size) is a speck, not a digit: blank. A
#: digit written 10 pixels tall with a 1-pixel pen is still read.
MIN_DIGIT_SIDE = 6
#: Ink less than this many of its own stroke widths across, and small in its image (SPECK_SHARE), is a dot or
#: a dab of the pen, whatever the image's size: MIN_DIGIT_SIDE alone counts pixels, and a touch of a pen a
#: fourteenth of the image wide (the page's) is 6 pixels across at the working size. A dab measures
#: 1.2-1.35; the blobbiest of the 5,000 bundled MNIST digits (a 6 with its loop filled in) 1.64.
MIN_DIGIT_STROKES = 1.5
#: The share of the image's shorter side under which ink as blobby as a dab is one. A digit drawn with a
#: very thick pen can be as blobby (bench/robustness_bench.py's pen 7: down to 1.18), but it fills its image.
SPECK_SHARE = 0.25
#: Images are shrunk (by whole factors) until their shorter side is below twice this before the work
#: starts: the digit ends up 20x20, and every step below costs in proportion to the pixel count.
WORKING_SIDE = 64
#: Share of the image's side used as the border that decides the background colour.
_BORDER = 0.08


def to_mnist(data: bytes, limits: Limits = Limits()) -> np.ndarray | None:
    """Decode an encoded image and return MNIST-form float32 [784], or None if it holds no digit."""
    return normalise(decode(data, limits))


def decode(data: bytes, limits: Limits = Limits()) -> np.ndarray:
    """Decode image bytes to greyscale uint8 [H, W]: first frame, upright, alpha composited against the ink."""
    if len(data) == 0:
        raise InvalidInput("empty image: 0 bytes")
    if len(data) > limits.max_encoded_bytes:
        raise LimitExceeded(f"encoded image is {len(data)} bytes, over the limit of {limits.max_encoded_bytes}")
    header = sniff(data)
    if header is not None:
        check_dimensions(header.width, header.height, limits)  # from the header, before any pixel is decoded
        grey = _decode_fast(data, header) if header.plain else None
        if grey is not None:
            return grey
    return _decode_pillow(data, limits)


#: JPEG scales libjpeg decodes at directly, as Pillow's draft mode picks them (1/2, 1/4, 1/8).
_JPEG_SCALES = (2, 4, 8)


def _decode_fast(data: bytes, header: Header) -> np.ndarray | None:
    """Decode a plain PNG (OpenCV: libpng) or JPEG (simplejpeg: libjpeg-turbo) to greyscale; None if it cannot."""
    if header.kind == "jpeg":
        grey = _decode_jpeg(data, header)
    elif header.colour:
        # Decoders' own colour-to-grey conversions round differently from Pillow's (by up to one level on
        # half the pixels); OpenCV's cvtColor uses Pillow's weights, so both paths give the same pixels.
        colour = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        grey = None if colour is None or colour.ndim != 3 else cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    else:
        grey = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if grey is None or grey.ndim != 2:
        return None  # unusual after all: Pillow reads it or says exactly what is wrong
    if _shrink_factor((grey.shape[1], grey.shape[0])) < 2:
        return grey
    return np.asarray(_shrink(Image.fromarray(grey)))  # the same box filter as Pillow's path, edge blocks too


def _decode_jpeg(data: bytes, header: Header) -> np.ndarray | None:
    """Decode a JPEG as Pillow's path does (large ones straight at 1/2-1/8 size, as their luma); None for any
    file libjpeg has a warning about (strict: damaged data is Pillow's to refuse or to read)."""
    shrink = min(header.width, header.height) // WORKING_SIDE
    scale = max((s for s in _JPEG_SCALES if s <= shrink), default=1)
    try:
        if scale > 1 or not header.colour:
            # The smallest libjpeg scale at least 1/scale of the size is 1/scale itself (a power of two).
            decoded = simplejpeg.decode_jpeg(data, colorspace="GRAY", min_height=header.height // scale, min_width=header.width // scale, strict=True)
            return np.ascontiguousarray(decoded[..., 0])
        # Full-size colour: Pillow converts its RGB with its weights, as cvtColor does.
        return cv2.cvtColor(simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True), cv2.COLOR_RGB2GRAY)
    except ValueError:  # simplejpeg's one error: a corrupt or unsupported file, or a libjpeg warning
        return None


def _decode_pillow(data: bytes, limits: Limits) -> np.ndarray:
    """Decode any accepted format with Pillow: every mode, alpha, EXIF, multi-frame; errors named."""
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
    # Each step is one OpenCV or numpy call on the whole image: on small images the cost is the number of
    # calls (microseconds each), not the pixels.
    ink = _ink_on_black(grey[None])[0]
    if ink.shape == (IMAGE_SIDE, IMAGE_SIDE) and _fitted_and_centred(ink[None])[0]:
        # Re-normalising a digit that is already in MNIST form only blurs it (measured with the first model,
        # a3da915: 94.3% against 95.7% on held-out digits sent as PNG files), and it costs most of the time.
        pixels = scale_uint8(ink).reshape(1, N_PIXELS)
        return None if too_little_ink(pixels)[0] else pixels[0]
    # One cumulative histogram answers every grey-level question below, without sorting pixels.
    cumulative = np.cumsum(cv2.calcHist([ink], [0], None, [256], [0, 256]).ravel().astype(np.int64))
    faint, bright = np.searchsorted(cumulative, cumulative[-1] * _CONTRAST_FRACTIONS).tolist()
    if bright - faint < MIN_CONTRAST:
        return None
    # Otsu's threshold separates ink from paper (shading, texture, sensor noise).
    threshold, strokes = cv2.threshold(ink, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    threshold = int(threshold)
    left, top, width, height = cv2.boundingRect(strokes)
    box = (slice(top, top + height), slice(left, left + width))
    side = max(width, height)
    if side < MIN_DIGIT_SIDE or (side < SPECK_SHARE * min(ink.shape) and side < MIN_DIGIT_STROKES * _stroke_width(strokes[box])):
        return None  # nothing, or a speck: blowing it up to 20x20 would make a blob to guess at
    # Keep the strokes' anti-aliased edges, as MNIST has them: subtract the paper's level (the median
    # below the threshold) rather than the threshold, stretch the ink (99th percentile above it) to full
    # white, and blank out everything not next to a stroke.
    below = int(cumulative[threshold])
    paper, peak = np.searchsorted(cumulative, (0.5 * below, below + 0.99 * (int(cumulative[-1]) - below))).tolist()
    peak = max(peak, threshold + 1)
    stretch = np.round(np.clip((_LEVELS - paper) / max(peak - paper, 1), 0.0, 1.0) * 255).astype(np.uint8)
    margin = max(1, round(max(ink.shape) / IMAGE_SIDE))  # about one MNIST pixel at this resolution
    near_strokes = cv2.dilate(strokes, _square(2 * margin + 1), borderValue=0)
    digit = cv2.bitwise_and(cv2.LUT(ink[box], stretch), near_strokes[box])
    return _centre_by_mass(_fit_box(digit)).reshape(N_PIXELS)


def _stroke_width(strokes: np.ndarray) -> float:
    """The width of the thickest stroke of binary ink [H, W] (0 or 255) cropped to its box: twice the largest
    distance from an ink pixel to the paper around it."""
    framed = cv2.copyMakeBorder(strokes, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)  # ink at the crop's edge ends there
    return 2.0 * float(cv2.distanceTransform(framed, cv2.DIST_L2, cv2.DIST_MASK_PRECISE).max())


#: The histogram's fractions whose grey levels must differ by MIN_CONTRAST for the image to hold ink.
_CONTRAST_FRACTIONS = np.array([0.01, 0.999])
_LEVELS = np.arange(256, dtype=np.float32)


@lru_cache(maxsize=64)
def _square(side: int) -> np.ndarray:
    return np.ones((side, side), dtype=np.uint8)


def mnist_form_many(greys: Sequence[np.ndarray]) -> list[np.ndarray | None]:
    """For each decoded image, its MNIST-form pixels if it already is in MNIST form, else None (normalise()
    it): checked for all the 28x28 images at once, a few numpy operations for the whole batch instead of a
    dozen calls per image (a folder of MNIST-style files is the batch job's common case)."""
    forms: list[np.ndarray | None] = [None] * len(greys)
    small = [i for i, grey in enumerate(greys) if grey.shape == (IMAGE_SIDE, IMAGE_SIDE)]
    if small:
        ink = _ink_on_black(np.stack([greys[i] for i in small]))
        fitted = _fitted_and_centred(ink)
        for i, pixels in zip(np.asarray(small)[fitted].tolist(), scale_uint8(ink[fitted]).reshape(-1, N_PIXELS)):
            forms[i] = pixels
    return forms


def _fitted_and_centred(ink: np.ndarray) -> np.ndarray:
    """For each 28x28 white-on-black image of a stack [N, 28, 28]: does its digit fit the 20x20 box (give or
    take a pixel) with its centre of mass within 1.5 pixels of the centre?"""
    rows: np.ndarray = np.any(ink, axis=2)
    cols: np.ndarray = np.any(ink, axis=1)
    height = IMAGE_SIDE - rows[:, ::-1].argmax(axis=1) - rows.argmax(axis=1)
    width = IMAGE_SIDE - cols[:, ::-1].argmax(axis=1) - cols.argmax(axis=1)
    mass = ink.sum(axis=(1, 2), dtype=np.int64)
    positions = np.arange(IMAGE_SIDE)
    with np.errstate(invalid="ignore", divide="ignore"):  # blank images: no mass, caught by rows.any below
        cy = ink.sum(axis=2, dtype=np.int64) @ positions / mass
        cx = ink.sum(axis=1, dtype=np.int64) @ positions / mass
    centre = (IMAGE_SIDE - 1) / 2
    fits = np.any(rows, axis=1) & (np.maximum(height, width) <= DIGIT_BOX + 2)
    return fits & (np.abs(cy - centre) <= 1.5) & (np.abs(cx - centre) <= 1.5)


def _ink_on_black(greys: np.ndarray) -> np.ndarray:
    """Make a stack of greyscale images [N, H, W] white ink on black, as MNIST is: each one whose border is
    mostly light (the border is mostly background) is inverted."""
    _, h, w = greys.shape
    band = max(1, int(round(min(h, w) * _BORDER)))
    light = greys > 127
    strips = (light[:, :band], light[:, -band:], light[:, :, :band], light[:, :, -band:])
    light_pixels = sum(strip.sum(axis=(1, 2)) for strip in strips)
    inverted = 2 * light_pixels > 2 * band * (h + w)  # over half of the border's pixels (corners counted twice)
    return np.where(inverted[:, None, None], 255 - greys, greys)


def _fit_box(digit: np.ndarray) -> np.ndarray:
    """Scale uint8 ink so its longer side is DIGIT_BOX, keeping the aspect ratio; float32 [0, 1]."""
    h, w = digit.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Pillow's LANCZOS widens its kernel when it shrinks (a true anti-aliasing filter), as MNIST's own
    # scaling did; OpenCV's Lanczos does not, and its area filter gives other pixels, so other answers.
    resized = Image.fromarray(digit).resize(size, Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.float32) / np.float32(255.0)


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    """Return the (row, column) centre of mass of a non-negative image; its middle if it is all zero."""
    moments = cv2.moments(image)
    if moments["m00"] <= 0:
        h, w = image.shape
        return (h - 1) / 2, (w - 1) / 2
    return moments["m01"] / moments["m00"], moments["m10"] / moments["m00"]


def _centre_by_mass(digit: np.ndarray) -> np.ndarray:
    # Place the digit in 28x28 so its centre of mass sits at the centre, at whole-pixel offsets (no blur).
    h, w = digit.shape
    cy, cx = _centre_of_mass(digit)
    centre = (IMAGE_SIDE - 1) / 2
    top = min(max(round(centre - cy), 0), IMAGE_SIDE - h)
    left = min(max(round(centre - cx), 0), IMAGE_SIDE - w)
    canvas = np.zeros((IMAGE_SIDE, IMAGE_SIDE), dtype=np.float32)
    canvas[top : top + h, left : left + w] = digit
    return canvas


def from_uint8(data: bytes) -> np.ndarray | None:
    """Check and scale 784 MNIST-form bytes to float32 [784]; None if blank or nearly."""
    if len(data) != N_PIXELS:
        raise InvalidInput(f"mnist_uint8 must be exactly {N_PIXELS} bytes (28x28), got {len(data)}")
    pixels = scale_uint8(np.frombuffer(data, dtype=np.uint8))
    return None if too_little_ink(pixels[None])[0] else pixels


def from_float(values: np.ndarray) -> np.ndarray | None:
    """Check MNIST-form floats [784] in [0, 1]; None if blank or nearly."""
    pixels = np.asarray(values, dtype=np.float32).reshape(-1)
    if pixels.size != N_PIXELS:
        raise InvalidInput(f"mnist_float must hold exactly {N_PIXELS} values (28x28), got {pixels.size}")
    check_float_pixels(pixels, "mnist_float")
    return None if too_little_ink(pixels[None])[0] else pixels
