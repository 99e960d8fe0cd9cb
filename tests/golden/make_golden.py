"""Regenerate the golden digit images: `./dev run python tests/golden/make_golden.py`.

Ten real MNIST digits (one per class, from mnist5k's validation split, so the model never trained on
them), each in four forms a user might send: the 28x28 original (white on black, PNG); black ink on
white paper at 4x size, off-centre, with paper shading (PNG); the same scan as JPEG; and black ink on
a transparent background (RGBA PNG). File names carry the true label: `<label>_<form>.<ext>`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from digitnet.service.contract.constants import LABELS
from digitnet.training.data import load_mnist5k
from digitnet.training.train import split_dataset

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Write the golden images next to this script."""
    split = split_dataset(load_mnist5k(), seed=0)
    for label in LABELS:  # the first validation digit of each class
        digit = (split.val_x[np.flatnonzero(split.val_y == label)[0]].reshape(28, 28) * 255).round().astype(np.uint8)
        Image.fromarray(digit).save(HERE / f"{label}_mnist.png")
        big = Image.fromarray(255 - digit).resize((112, 112), Image.Resampling.BICUBIC)
        # Paper with a soft left-to-right shading gradient, digit pasted off-centre.
        paper = np.tile(np.linspace(250, 205, 200, dtype=np.float32), (160, 1))
        sheet = Image.fromarray(paper.astype(np.uint8))
        sheet.paste(Image.fromarray(np.minimum(np.asarray(big), paper[20:132, 70:182]).astype(np.uint8)), (70, 20))
        sheet.save(HERE / f"{label}_scan.png")
        sheet.convert("RGB").save(HERE / f"{label}_scan.jpg", quality=80)
        rgba = np.zeros((56, 56, 4), dtype=np.uint8)
        rgba[..., 3] = np.asarray(Image.fromarray(digit).resize((56, 56), Image.Resampling.BICUBIC))
        Image.fromarray(rgba, mode="RGBA").save(HERE / f"{label}_rgba.png")


if __name__ == "__main__":
    main()
