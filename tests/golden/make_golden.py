"""Regenerate the golden digit images: `./dev run python tests/golden/make_golden.py`.

Ten real MNIST digits (one per class, from the seed-0 20% stratified sample of mnist5k that the models
before issue 15 held out; today's models train on all 5,000, so these check the service, not accuracy),
each in four forms a user might send: the 28x28 original (white on black, PNG); black ink on
white paper at 4x size, off-centre, with paper shading (PNG); the same scan as JPEG; and black ink on
a transparent background (RGBA PNG). File names carry the true label: `<label>_<form>.<ext>`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from digitnet.service.contract.constants import LABELS
from digitnet.training.data import load_mnist5k

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Write the golden images next to this script."""
    from sklearn.model_selection import train_test_split

    mnist5k = load_mnist5k()
    _, sample = train_test_split(np.arange(len(mnist5k)), test_size=0.2, random_state=0, stratify=mnist5k.labels)
    for label in LABELS:  # the first digit of each class in the sample
        digit = mnist5k.images[sample[mnist5k.labels[sample] == label][0]].reshape(28, 28)
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
