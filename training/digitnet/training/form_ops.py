"""The input form's operators, written in onnxscript: deskewing and blurring as ONNX graphs.

These functions are ONNX graphs in Python syntax: their arguments are graph values, not arrays, so Python's
type checker cannot follow them (pyproject.toml lets mypy skip this module); onnxscript checks them when it
converts them, and form_graph.py runs onnx's full checker on the model they make.

Usage:
    steps = [deskew, blur(1.0)]       # OnnxFunctions: pixels FP32 [N, 784] -> the same
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnxscript import FLOAT, script
from onnxscript import opset21 as op
from onnxscript.values import OnnxFunction

from digitnet.service.contract.constants import IMAGE_SIDE, N_PIXELS

#: The ONNX opset of the form's nodes; the network is exported with the same one, so they share a graph.
OPSET = op.version
#: Beyond this slant (columns per row) the "skew" is more likely the digit's shape (a 7's bar, a flat 2)
#: than its writer's slant: clipped, so that deskewing never mangles a digit.
MAX_SKEW = 1.0
# A row variance below this (a digit one row tall, or a blank image) has no slant to measure.
_VARIANCE_FLOOR = 1e-2
# Columns of black added on each side of a row before the per-row shift reads it; shifts are clipped so
# that a read never leaves them (a sample 2 columns outside is black whatever the shift).
_EDGE = 2
_CENTRE = (IMAGE_SIDE - 1) / 2.0
_OFFSET = np.arange(IMAGE_SIDE, dtype=np.float64) - _CENTRE  # each row's (or column's) distance from the centre
_ROW_OFFSET, _COL_OFFSET = np.meshgrid(_OFFSET, _OFFSET, indexing="ij")
# pixels [N, 784] @ this = each image's ink, and its ink times u, v, u*u and u*v (u: row, v: column offset).
_MOMENTS = np.stack(
    [np.ones(N_PIXELS), _ROW_OFFSET.ravel(), _COL_OFFSET.ravel(), (_ROW_OFFSET**2).ravel(), (_ROW_OFFSET * _COL_OFFSET).ravel()], axis=1
).astype(np.float32)
_ROW_OFFSETS = _OFFSET.astype(np.float32).reshape(1, IMAGE_SIDE)
# [1, r, y]: source row minus output row, for the vertical resampling's tent weights.
_SOURCE_MINUS_ROW = (np.arange(IMAGE_SIDE)[None, :] - np.arange(IMAGE_SIDE)[:, None]).astype(np.float32).reshape(1, IMAGE_SIDE, IMAGE_SIDE)
_COLUMNS = (np.arange(IMAGE_SIDE, dtype=np.int32) + _EDGE).reshape(1, 1, IMAGE_SIDE)
_FIRST_COLUMN = np.array(0, dtype=np.int32)
_LAST_LEFT_COLUMN = np.array(IMAGE_SIDE + _EDGE, dtype=np.int32)
_NEXT_COLUMN = np.array(1, dtype=np.int32)
_EDGE_PADS = np.array([0, 0, _EDGE, 0, 0, _EDGE], dtype=np.int64)
_SHIFT_LIMIT = float(IMAGE_SIDE + _EDGE)
_IMAGES = np.array([-1, IMAGE_SIDE, IMAGE_SIDE], dtype=np.int64)
_PIXELS = np.array([-1, N_PIXELS], dtype=np.int64)
_PER_ROW = np.array([-1, IMAGE_SIDE, 1], dtype=np.int64)
_PER_IMAGE = np.array([-1, 1, 1], dtype=np.int64)
_MASS_AND_SUMS = np.array([1, 4], dtype=np.int64)
_TINY = float(np.finfo(np.float32).tiny)


@script(default_opset=op)
def deskew(pixels: FLOAT[...]) -> FLOAT[...]:
    """Shear each image upright about its centre of mass and move that centre to the image's centre.

    Output pixel (r, c) reads the input at (r + dy, c + dx[r]), bilinearly, black outside the image: dy is
    the centre of mass's row offset, and dx[r] its column offset plus the slant (the ink's covariance of row
    and column over its row variance, clipped to MAX_SKEW) times row r's offset from the centre. As dy is the
    same for every pixel, the reads split into a vertical step (a 28x28 tent-weight matrix per image) and a
    horizontal step along each row (two neighbouring columns, gathered).
    """
    raw = op.MatMul(pixels, _MOMENTS)
    mass, sums = op.Split(raw, _MASS_AND_SUMS, axis=1)
    means = op.Div(sums, op.Max(mass, _TINY))  # a blank image: all sums 0, so no shift and no slant
    dy, dx_centre, row_square, row_col = op.Split(means, axis=1, num_outputs=4)
    variance = op.Sub(row_square, op.Mul(dy, dy))
    covariance = op.Sub(row_col, op.Mul(dy, dx_centre))
    slant = op.Clip(op.Div(covariance, op.Max(variance, _VARIANCE_FLOOR)), -MAX_SKEW, MAX_SKEW)
    dx = op.Clip(op.Add(dx_centre, op.Mul(slant, _ROW_OFFSETS)), -_SHIFT_LIMIT, _SHIFT_LIMIT)
    images = op.Reshape(pixels, _IMAGES)
    tents = op.Relu(op.Sub(1.0, op.Abs(op.Sub(_SOURCE_MINUS_ROW, op.Reshape(dy, _PER_IMAGE)))))
    rows = op.Pad(op.MatMul(tents, images), _EDGE_PADS)
    whole = op.Floor(dx)
    fraction = op.Reshape(op.Sub(dx, whole), _PER_ROW)
    left_column = op.Clip(op.Add(_COLUMNS, op.Reshape(op.Cast(whole, to=onnx.TensorProto.INT32), _PER_ROW)), _FIRST_COLUMN, _LAST_LEFT_COLUMN)
    left = op.GatherElements(rows, left_column, axis=2)
    right = op.GatherElements(rows, op.Add(left_column, _NEXT_COLUMN), axis=2)
    return op.Reshape(op.Add(left, op.Mul(fraction, op.Sub(right, left))), _PIXELS)


def gaussian_band(sigma: float) -> np.ndarray:
    """The 28x28 matrix that blurs along one axis with a Gaussian of `sigma` pixels, black beyond the border
    (the kernel cut at 3 sigma and normalised, as OpenCV's and SciPy's are)."""
    radius = max(1, math.ceil(3 * sigma))
    taps = np.arange(-radius, radius + 1)
    kernel = np.exp(-(taps**2) / (2.0 * sigma * sigma))
    kernel /= kernel.sum()
    distance = np.arange(IMAGE_SIDE)[None, :] - np.arange(IMAGE_SIDE)[:, None]
    band = np.where(np.abs(distance) <= radius, kernel[np.clip(distance + radius, 0, 2 * radius)], 0.0)
    return band.astype(np.float32)


def blur(sigma: float) -> OnnxFunction:
    """The nodes that blur each image with a Gaussian of `sigma` pixels: the band matrix from both sides."""
    band = gaussian_band(sigma)  # symmetric: the same matrix blurs columns (on the left) and rows (on the right)

    @script(default_opset=op)
    def gaussian_blur(pixels: FLOAT[...]) -> FLOAT[...]:
        return op.Reshape(op.MatMul(op.MatMul(band, op.Reshape(pixels, _IMAGES)), band), _PIXELS)

    return gaussian_blur
