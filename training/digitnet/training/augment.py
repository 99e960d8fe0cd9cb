"""Random distortions of MNIST digits (shift, rotation, scale, shear, elastic, stroke width, heavy pens) to stretch 5,000 images further.

Everything is vectorised over the batch: one Gaussian filter and one map_coordinates call per batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from digitnet.service.contract.constants import DIGIT_BOX, IMAGE_SIDE, N_PIXELS


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random distortions; each image draws its own values uniformly within them."""

    max_shift: float = 1.5  # pixels
    max_rotation: float = 10.0  # degrees
    max_scale: float = 0.1  # relative: scale in [1 - max_scale, 1 + max_scale]
    max_shear: float = 0.0
    elastic_alpha: float = 0.0  # root-mean-square elastic displacement, in pixels
    elastic_sigma: float = 4.0  # smoothness (Gaussian sigma) of the displacement field, in pixels
    stroke_change: float = 2 / 3  # share of images whose strokes get thicker or thinner (a 2x2 grey dilation or erosion)
    heavy_pen: float = 0.0  # share of images redrawn with a heavy pen: strokes 2 or 4 pixels wider, refitted to the box

    def as_dict(self) -> dict[str, float]:
        """Return the settings for the model card."""
        return asdict(self)


def distort(images: np.ndarray, rng: np.random.Generator, config: AugmentConfig = AugmentConfig()) -> np.ndarray:
    """Return a randomly distorted copy of float32 images [N, 784] in [0, 1]."""
    n = len(images)
    side = IMAGE_SIDE
    centre = (side - 1) / 2.0
    angle = np.deg2rad(rng.uniform(-config.max_rotation, config.max_rotation, n))
    scale = 1.0 + rng.uniform(-config.max_scale, config.max_scale, n)
    shear = rng.uniform(-config.max_shear, config.max_shear, n)
    shift = rng.uniform(-config.max_shift, config.max_shift, (n, 2))
    # Drawn only when asked, so that recipes without heavy pens keep their random stream (and their models).
    heavy = rng.random(n) < config.heavy_pen if config.heavy_pen > 0 else np.zeros(n, dtype=bool)
    if heavy.any():
        images, widening = heavy_pen(images, heavy, rng)
        # A user's thick digit is fitted into the 20x20 box with its thick strokes: shrink it by as much.
        scale = scale * DIGIT_BOX / (DIGIT_BOX + widening)

    # For each output pixel, the source pixel: inverse rotation/scale/shear about the centre, minus the shift.
    a, b = np.cos(angle) / scale, np.sin(angle) / scale
    rows, cols = np.mgrid[0:side, 0:side].astype(np.float32) - centre

    def col(v: np.ndarray) -> np.ndarray:  # a per-image value, broadcast over the pixels
        return v.astype(np.float32)[:, None, None]

    source = np.empty((2, n, side, side), dtype=np.float32)
    source[0] = col(a) * rows + col(shear - b) * cols + centre - col(shift[:, 0])
    source[1] = col(b) * rows + col(a) * cols + centre - col(shift[:, 1])

    if config.elastic_alpha > 0:
        noise = rng.uniform(-1.0, 1.0, (2, n, side, side)).astype(np.float32)
        field = ndimage.gaussian_filter(noise, sigma=(0, 0, config.elastic_sigma, config.elastic_sigma), mode="constant")
        # Smoothing shrinks the noise by a factor that depends on sigma: rescale to the asked RMS displacement.
        field *= config.elastic_alpha / max(float(field.std()), 1e-12)
        source += field

    # One 2-D interpolation over all images stacked vertically, each padded with a zero border so that
    # clipped coordinates read black instead of bleeding into the neighbouring image.
    pad = 2
    block = side + 2 * pad
    stacked = np.pad(images.reshape(n, side, side), ((0, 0), (pad, pad), (pad, pad))).reshape(n * block, block)
    source = np.clip(source + pad, 0, block - 1)
    source[0] += (np.arange(n, dtype=np.float32) * block)[:, None, None]
    warped = ndimage.map_coordinates(stacked, source, order=1, mode="constant", cval=0.0)
    warped = np.clip(warped, 0.0, 1.0).reshape(n, side, side).astype(np.float32)
    if config.stroke_change > 0:
        change_stroke_width(warped, rng, config.stroke_change, skip=heavy)
    return warped.reshape(n, N_PIXELS)


def heavy_pen(images: np.ndarray, chosen: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Dilate the chosen images [N, 784] by a disk of radius 1 or 2 pixels; return them and each one's widening."""
    out = images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE).copy()
    radius = np.where(chosen, rng.integers(1, 3, len(images)), 0)
    for r in (1, 2):
        picked = radius == r
        if picked.any():
            disk = np.hypot(*np.mgrid[-r : r + 1, -r : r + 1]) <= r + 0.5
            out[picked] = ndimage.grey_dilation(out[picked], footprint=disk[None])
    return out.reshape(-1, N_PIXELS), 2.0 * radius


def change_stroke_width(images: np.ndarray, rng: np.random.Generator, share: float, skip: np.ndarray | None = None) -> None:
    """Thicken half of a random share of the images [N, 28, 28] and thin the other half, in place: other pens."""
    chosen = rng.random(len(images)) < share
    if skip is not None:
        chosen &= ~skip
    thicker = chosen & (rng.random(len(images)) < 0.5)
    thinner = chosen & ~thicker
    # A 2x2 window moves the digit by half a pixel; deskewing (which re-centres by mass) takes that back out.
    if thicker.any():
        images[thicker] = ndimage.grey_dilation(images[thicker], size=(1, 2, 2))
    if thinner.any():
        images[thinner] = ndimage.grey_erosion(images[thinner], size=(1, 2, 2))
