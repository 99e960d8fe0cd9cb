"""The model's input encoding: float32 pixels in [0, 1], 784 per image; what every path hands the network.

Usage:
    pixels = scale_uint8(images)                      # uint8 [N, 784] -> float32 [N, 784] in [0, 1]
    check_float_pixels(values, "mnist_float")         # raises InvalidInput for NaN, inf or out-of-range
    blank = too_little_ink(pixels)                    # [N] bool: answered UNKNOWN, never a guess
"""

from __future__ import annotations

import numpy as np

from digitnet.service.contract.errors import InvalidInput

#: Less ink than this (the sum of the pixels, so 5 fully white pixels) is no digit: a blank or a speck.
#: The faintest of the 5,000 bundled MNIST digits has 23; the median one 100.
MIN_INK = 5.0


def too_little_ink(pixels: np.ndarray) -> np.ndarray:
    """For MNIST-form images [N, 784] in [0, 1]: which are blank or nearly (a stray mark is not a digit)."""
    return np.asarray(pixels.sum(axis=1, dtype=np.float64) < MIN_INK)


def scale_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale uint8 MNIST pixels (0-255) to the model's float32 [0, 1], the one way every path does it."""
    return np.divide(pixels, np.float32(255.0), dtype=np.float32)  # the cast inside the division: one pass, not two


def check_float_pixels(pixels: np.ndarray, what: str) -> None:
    """Refuse float pixels (any shape) that are not MNIST form: NaN, infinite, or outside [0, 1]."""
    if not np.all(np.isfinite(pixels)):
        raise InvalidInput(f"{what} holds NaN or infinite values; expected floats in [0, 1]")
    if pixels.min() < 0.0 or pixels.max() > 1.0:
        raise InvalidInput(f"{what} values must be in [0, 1], got [{pixels.min():g}, {pixels.max():g}] (scale 0-255 pixels by 1/255)")
