"""The input form shared by training and serving: deskewing, then a Gaussian blur that never mixes images."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from digitnet.service.contract.deskew import deskew
from digitnet.service.contract.input_form import InputForm, gaussian_blur
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.data import Dataset


def test_blur_matches_a_reference_gaussian_with_black_beyond_the_border(mnist5k: Dataset) -> None:
    pixels = scale_uint8(mnist5k.images[:50])
    reference = ndimage.gaussian_filter(pixels.reshape(-1, 28, 28), sigma=(0, 1.0, 1.0), mode="constant", truncate=3.0)
    np.testing.assert_allclose(gaussian_blur(pixels, 1.0), reference.reshape(-1, 784), atol=1e-6)


def test_blurring_a_stack_never_mixes_neighbouring_images() -> None:
    # Ink on the bottom row of one image and the top row of the next: stacked for the filter, they touch.
    images = np.zeros((3, 28, 28), np.float32)
    images[0, -1, :] = 1.0
    images[1, 0, :] = 1.0
    blurred = gaussian_blur(images.reshape(3, 784), 1.5)
    for index in range(3):
        np.testing.assert_array_equal(blurred[index], gaussian_blur(images[index].reshape(1, 784), 1.5)[0])
    assert not blurred[2].any()


def test_blur_keeps_a_centred_digits_ink_and_spreads_it(mnist5k: Dataset) -> None:
    pixels = scale_uint8(mnist5k.images[:20])
    blurred = gaussian_blur(pixels, 1.0)
    np.testing.assert_allclose(blurred.sum(axis=1), pixels.sum(axis=1), rtol=1e-3)  # the 4-pixel margin holds it
    assert (blurred > 0).sum() > (pixels > 0).sum() and blurred.max() < pixels.max()
    assert blurred.dtype == np.float32 and blurred.min() >= 0.0 and blurred.max() <= 1.0


def test_the_form_applies_its_steps_in_order(mnist5k: Dataset) -> None:
    pixels = scale_uint8(mnist5k.images[:10])
    np.testing.assert_array_equal(InputForm().apply(pixels), pixels)
    np.testing.assert_array_equal(InputForm(deskew=True).apply(pixels), deskew(pixels))
    np.testing.assert_array_equal(InputForm(deskew=True, blur=0.8).apply(pixels), gaussian_blur(deskew(pixels), 0.8))
    assert InputForm(deskew=True, blur=1.0).describe() == "deskewed, blurred (sigma 1 px)"
    assert InputForm().describe() == "as given"
    assert InputForm(deskew=True, blur=1.0).apply(np.empty((0, 784), np.float32)).shape == (0, 784)
