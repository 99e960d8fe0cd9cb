"""Moment-based deskewing: the step of the model's input form that training and serving share.

A slanted digit is sheared upright so that its ink's principal axis is vertical, and moved so that its
centre of mass sits at the image centre. A model whose card says `deskew` sees every input this way:
served images, raw OIP pixels and its training digits alike (one function, so the two cannot drift).

Usage:
    upright = deskew(pixels)     # float32 [N, 784] in [0, 1] -> the same shape, deskewed
"""

from __future__ import annotations

import cv2
import numpy as np

from digitnet.service.contract.constants import IMAGE_SIDE, N_PIXELS

# Beyond this slant (horizontal pixels per vertical pixel) the "skew" is more likely the digit's shape
# (a 7's bar, a flat 2) than its writer's slant: clip it so that deskewing never mangles a digit.
MAX_SKEW = 1.0

_POSITIONS = np.arange(IMAGE_SIDE, dtype=np.float64)
_CENTRE = (IMAGE_SIDE - 1) / 2.0


def skews(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each image's slant (column shift per row), centre-of-mass row and column; [N] each."""
    images = pixels.reshape(-1, IMAGE_SIDE, IMAGE_SIDE).astype(np.float64)
    mass = images.sum(axis=(1, 2))
    blank = mass <= 0
    mass = np.where(blank, 1.0, mass)
    by_row = images.sum(axis=2) / mass[:, None]  # share of the ink in each row
    by_col = images.sum(axis=1) / mass[:, None]
    row = by_row @ _POSITIONS
    col = by_col @ _POSITIONS
    dr = _POSITIONS[None, :] - row[:, None]
    dc = _POSITIONS[None, :] - col[:, None]
    var_row = (by_row * dr**2).sum(axis=1)
    cov = np.einsum("nrc,nr,nc->n", images, dr, dc) / mass
    skew = np.where(blank | (var_row <= 0), 0.0, cov / np.where(var_row > 0, var_row, 1.0))
    row = np.where(blank, _CENTRE, row)
    col = np.where(blank, _CENTRE, col)
    return np.clip(skew, -MAX_SKEW, MAX_SKEW), row, col


def deskew(pixels: np.ndarray) -> np.ndarray:
    """Shear each image [N, 784] upright about its centre of mass and centre it; float32 [N, 784] in [0, 1]."""
    images = np.ascontiguousarray(pixels, dtype=np.float32).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    skew, row, col = skews(images)
    out = np.empty_like(images)
    for index, image in enumerate(images):
        # Output pixel (r, c) reads input (r + row - centre, c + col - centre + skew * (r - centre)):
        # the centre of mass moves to the centre, and each row slides back by the slant.
        s = skew[index]
        source = np.array([[1.0, s, col[index] - _CENTRE - s * _CENTRE], [0.0, 1.0, row[index] - _CENTRE]])
        out[index] = cv2.warpAffine(image, source, (IMAGE_SIDE, IMAGE_SIDE), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0)
    return np.clip(out, 0.0, 1.0, out=out).reshape(-1, N_PIXELS)
