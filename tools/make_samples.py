"""Write samples/, the README's first folder to score: two real MNIST digits per label, as a user's files look.

Each digit is dark ink on white paper at 4x MNIST's size, one as PNG and one as JPEG, in a folder named for
its label (`digitnet score samples/ --labels-from-dirs` reports accuracy). The digits are the last of each
label in the bundled set, which the committed models were trained on: every one should be read right.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from digitnet.training.data import load_dataset

REPO = Path(__file__).resolve().parents[1]  # tools/make_samples.py
SAMPLES = REPO / "samples"
SIDE = 112  # 4x MNIST: a drawing or a photo has many pixels per stroke


def main() -> int:
    """Replace samples/ with the two digits of each label."""
    data = load_dataset("mnist5k")
    shutil.rmtree(SAMPLES, ignore_errors=True)
    for label in range(10):
        last_two = np.flatnonzero(data.labels == label)[-2:]
        folder = SAMPLES / str(label)
        folder.mkdir(parents=True)
        for index, suffix in zip(last_two, ("png", "jpg"), strict=True):
            ink = Image.fromarray(data.images[index].reshape(28, 28)).resize((SIDE, SIDE), Image.Resampling.BICUBIC)
            paper = Image.fromarray(255 - np.asarray(ink))
            name = "a.png" if suffix == "png" else "b.jpg"
            paper.save(folder / name, **({"quality": 90} if suffix == "jpg" else {}))
    print(f"wrote {SAMPLES.relative_to(REPO)}/: 2 digits per label")
    return 0


if __name__ == "__main__":
    sys.exit(main())
