"""Deskewing: slanted strokes stand upright about the centre of mass; blank stays blank; ink is kept."""

from __future__ import annotations

import numpy as np

from digitnet.service.contract.deskew import MAX_SKEW, deskew, skews
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.data import Dataset


def _slanted_bar(slant: float, offset: float = 0.0) -> np.ndarray:
    """A 2-pixel-wide stroke from top to bottom leaning `slant` columns per row, as a [1, 784] image."""
    image = np.zeros((28, 28), np.float32)
    for row in range(4, 24):
        col = 13.5 + offset + slant * (13.5 - row)  # leaning right as it goes up
        image[row, int(round(col)) : int(round(col)) + 2] = 1.0
    return image.reshape(1, 784)


def test_a_slanted_stroke_becomes_upright_and_centred() -> None:
    bar = _slanted_bar(0.4, offset=3.0)
    before, _, col_before = skews(bar)
    after, row, col = skews(deskew(bar))
    assert before[0] < -0.3 and abs(after[0]) < 0.05
    assert abs(row[0] - 13.5) < 0.6 and abs(col[0] - 13.5) < 0.6 and abs(col_before[0] - 13.5) > 2
    upright = deskew(bar).reshape(28, 28)
    columns = [np.average(np.arange(28), weights=upright[r]) for r in range(6, 22) if upright[r].sum() > 0]
    assert np.ptp(columns) < 1.5, "every row's ink sits in the same columns"


def test_an_upright_centred_digit_is_left_alone() -> None:
    bar = _slanted_bar(0.0, offset=-1.0)  # upright at columns 12-13, centre of mass 12.5: one column left of centre
    shifted = deskew(bar)  # only moved one column right
    assert abs(skews(shifted)[2][0] - 13.5) < 0.1
    np.testing.assert_allclose(np.roll(shifted.reshape(28, 28), -1, axis=1)[:, :27], bar.reshape(28, 28)[:, :27], atol=1e-5)


def test_blank_images_stay_blank_and_ink_is_kept(mnist5k: Dataset) -> None:
    pixels = np.concatenate([np.zeros((2, 784), np.float32), scale_uint8(mnist5k.images[:300])])
    out = deskew(pixels)
    assert out.shape == pixels.shape and out.dtype == np.float32 and np.isfinite(out).all()
    assert not out[:2].any()
    assert 0.0 <= out.min() and out.max() <= 1.0
    np.testing.assert_allclose(out[2:].sum(axis=1), pixels[2:].sum(axis=1), rtol=0.05)


def test_the_shear_is_bounded_for_shapes_that_are_not_slant() -> None:
    flat = np.zeros((28, 28), np.float32)
    flat[13, 4:24] = 1.0
    flat[14, 3:23] = 1.0  # a horizontal bar one row tall shifted by one: its "slant" is enormous
    assert abs(skews(flat.reshape(1, 784))[0][0]) <= MAX_SKEW
