"""An independent reference for the input form, written with OpenCV: the graph in form_graph.py is held to it.

Deskewing as the textbook does it (second moments in float64, cv2.warpAffine's bilinear sampling, black
outside) and OpenCV's separable Gaussian: two libraries' answers, not a copy of the graph's arithmetic.
It is also the Python path digitnet served before the form moved into the graph (bench/input_form_bench.py
times the two side by side).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from digitnet.training.form_ops import MAX_SKEW

_POSITIONS = np.arange(28, dtype=np.float64)
_CENTRE = 13.5


def skews(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's slant (column shift per row, clipped), centre-of-mass row and column; [N] each."""
    images = pixels.reshape(-1, 28, 28).astype(np.float64)
    mass = images.sum(axis=(1, 2))
    blank = mass <= 0
    mass = np.where(blank, 1.0, mass)
    by_row = images.sum(axis=2) / mass[:, None]
    by_col = images.sum(axis=1) / mass[:, None]
    row, col = by_row @ _POSITIONS, by_col @ _POSITIONS
    dr = _POSITIONS[None, :] - row[:, None]
    dc = _POSITIONS[None, :] - col[:, None]
    var_row = (by_row * dr**2).sum(axis=1)
    cov = np.einsum("nrc,nr,nc->n", images, dr, dc) / mass
    skew = np.where(blank | (var_row <= 0), 0.0, cov / np.where(var_row > 0, var_row, 1.0))
    return np.clip(skew, -MAX_SKEW, MAX_SKEW), np.where(blank, _CENTRE, row), np.where(blank, _CENTRE, col)


def deskew(pixels: np.ndarray) -> np.ndarray:
    """Shear each image upright about its centre of mass and centre it, with cv2.warpAffine."""
    images = np.ascontiguousarray(pixels, dtype=np.float32).reshape(-1, 28, 28)
    skew, row, col = skews(images)
    out = np.empty_like(images)
    for index, image in enumerate(images):
        s = skew[index]  # output (r, c) reads input (r + row - centre, c + col - centre + s * (r - centre))
        source = np.array([[1.0, s, col[index] - _CENTRE - s * _CENTRE], [0.0, 1.0, row[index] - _CENTRE]])
        out[index] = cv2.warpAffine(image, source, (28, 28), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=0.0)
    return out.reshape(-1, 784)


def gaussian_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """OpenCV's separable Gaussian (cut at 3 sigma), black beyond each image's border."""
    if len(pixels) == 0:
        return np.empty((0, 784), np.float32)
    radius = max(1, math.ceil(3 * sigma))
    side = 28 + 2 * radius
    # Each image framed by `radius` black pixels and stacked: one OpenCV call blurs them all, and no kernel
    # reaches past its own image's frame into the next image.
    framed = np.zeros((len(pixels), side, side), np.float32)
    framed[:, radius:-radius, radius:-radius] = np.asarray(pixels, dtype=np.float32).reshape(-1, 28, 28)
    kernel = cv2.getGaussianKernel(2 * radius + 1, sigma, cv2.CV_32F)
    blurred = cv2.sepFilter2D(framed.reshape(-1, side), -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
    return np.ascontiguousarray(blurred.reshape(-1, side, side)[:, radius:-radius, radius:-radius]).reshape(-1, 784)
