"""The model's input form: what happens to MNIST-form pixels between the preprocessing and the network.

Training and serving call the one function here, with the settings the model card records, so the two
cannot drift: a model trained on deskewed, blurred digits is served deskewed, blurred digits, whatever
path they came by (image files, raw digitnet.v1 pixels, OIP tensors, batch scoring, evaluation).

Usage:
    form = InputForm(deskew=True, blur=1.0)
    network_input = form.apply(pixels)       # float32 [N, 784] in [0, 1] -> the same shape
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from digitnet.service.contract.constants import IMAGE_SIDE, N_PIXELS
from digitnet.service.contract.deskew import deskew

#: The most blur a model's input form may ask for (sigma in pixels): more would smear a 28x28 digit away.
MAX_BLUR = 4.0


@dataclass(frozen=True)
class InputForm:
    """The steps of a model's input form, as its card records them."""

    deskew: bool = False  # shear each digit upright and re-centre it (contract/deskew.py)
    blur: float = 0.0  # then blur it: the sigma, in pixels, of a Gaussian (0: none)

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Put MNIST-form pixels [N, 784] into this form; float32 [N, 784] in [0, 1]."""
        out = deskew(pixels) if self.deskew else np.asarray(pixels, dtype=np.float32)
        return gaussian_blur(out, self.blur) if self.blur > 0 else out

    def describe(self) -> str:
        """The steps in words, for reports: e.g. "deskewed, blurred (sigma 1 px)"."""
        steps = (["deskewed"] if self.deskew else []) + ([f"blurred (sigma {self.blur:g} px)"] if self.blur > 0 else [])
        return ", ".join(steps) or "as given"


def gaussian_blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each 28x28 image of [N, 784] with a Gaussian of `sigma` pixels, black beyond its border."""
    if len(pixels) == 0:
        return np.empty((0, N_PIXELS), np.float32)  # OpenCV refuses an empty image
    radius = max(1, math.ceil(3 * sigma))
    side = IMAGE_SIDE + 2 * radius
    # Each image framed by `radius` black pixels and stacked: one OpenCV call blurs them all, and no kernel
    # reaches past its own image's frame into the next image.
    framed = np.zeros((len(pixels), side, side), np.float32)
    framed[:, radius:-radius, radius:-radius] = np.asarray(pixels, dtype=np.float32).reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    kernel = cv2.getGaussianKernel(2 * radius + 1, sigma, cv2.CV_32F)
    blurred = cv2.sepFilter2D(framed.reshape(-1, side), -1, kernel, kernel, borderType=cv2.BORDER_CONSTANT)
    return np.ascontiguousarray(blurred.reshape(-1, side, side)[:, radius:-radius, radius:-radius]).reshape(-1, N_PIXELS)
