"""How a training recipe reads digits that arrive in other forms: scans, other pens, low resolution.

Every digit is scored by a cross-validation model that never saw it (5 folds), in each form below. Each
form is made from the real held-out digit, encoded as an image file and read back through the server's
own preprocessing (decode, ink on black, fit and centre; then the model's deskew), as a user's file is:

- clean: the MNIST pixels as they are;
- scan: black ink on shaded paper at 4x size, off-centre, slightly rotated, sensor noise, JPEG quality 75;
- pen 1 / pen 4 / pen 7: the digit's skeleton (at 4x size) redrawn with a round pen of that width in MNIST
  pixels (MNIST's own strokes are about 2-3 pixels wide);
- thick / thin: the digit's strokes one MNIST pixel wider or narrower (grey dilation or erosion at 4x size);
- low-res: the digit shrunk to 10x10 and blown back up to 112x112 (blocky, blurred);
- low-res thick: pen 5 at 10x10, blown back up: the other collections' thick, low-resolution handwriting.

Usage:
    ./dev run python bench/robustness_bench.py                          # the relu and logistic recipes
    ./dev run python bench/robustness_bench.py --recipe relu --override "augment.stroke_change=0"
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import cv2
import numpy as np
from machine import cpu_name
from PIL import Image, ImageFilter
from recipe_bench import override
from skimage.morphology import skeletonize

from digitnet.service.contract.pixels import scale_uint8
from digitnet.service.inference.preprocess import to_mnist
from digitnet.training.crossval import cross_validate
from digitnet.training.data import load_dataset
from digitnet.training.form_graph import apply_form
from digitnet.training.train import recipe

SCALE = 4  # forms are drawn at 4x MNIST's size, as a phone photo or a drawing pad has many pixels per stroke
BIG = 28 * SCALE


def encode(image: np.ndarray, fmt: str = "PNG", **options: int) -> bytes:
    """An 8-bit grey image as the bytes of an image file."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def big_ink(digit: np.ndarray) -> np.ndarray:
    """The 28x28 digit at 4x size (white ink on black)."""
    return np.asarray(Image.fromarray(digit).resize((BIG, BIG), Image.Resampling.BICUBIC))


def scan(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Black ink on shaded, noisy paper, off-centre and a little rotated, saved as JPEG."""
    ink = Image.fromarray(big_ink(digit)).rotate(float(rng.uniform(-4, 4)), resample=Image.Resampling.BICUBIC)
    width, height = 200, 160
    paper = np.tile(np.linspace(rng.uniform(235, 252), rng.uniform(195, 225), width, dtype=np.float32), (height, 1))
    top, left = int(rng.integers(5, height - BIG - 5)), int(rng.integers(5, width - BIG - 5))
    sheet = paper.copy()
    region = sheet[top : top + BIG, left : left + BIG]
    darkness = rng.uniform(0.75, 0.95)  # a pen is not perfectly black on a photo
    sheet[top : top + BIG, left : left + BIG] = region * (1 - darkness * np.asarray(ink, np.float32) / 255)
    sheet += rng.normal(0, 4, sheet.shape)
    image = Image.fromarray(np.clip(sheet, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    return encode(np.asarray(image), "JPEG", quality=75)


def skeleton(digit: np.ndarray) -> np.ndarray:
    """The digit's centre lines at 4x size: a boolean [112, 112]."""
    return skeletonize(big_ink(digit) > 100)


def pen(digit: np.ndarray, width: float, side: int = BIG) -> np.ndarray:
    """The digit redrawn along its skeleton with a round pen `width` MNIST pixels wide, at `side` pixels."""
    lines = skeleton(digit).astype(np.uint8) * 255
    radius = max(1, round(width * SCALE / 2))
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    drawn = cv2.GaussianBlur(cv2.dilate(lines, disk), (5, 5), 1.0)  # an anti-aliased edge
    return drawn if side == BIG else cv2.resize(drawn, (side, side), interpolation=cv2.INTER_AREA)


def low_res(image: np.ndarray, side: int = 10) -> np.ndarray:
    """An image shrunk to side x side and blown back up to 112x112, as a small scan enlarged."""
    small = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (BIG, BIG), interpolation=cv2.INTER_LINEAR)


def grown(digit: np.ndarray, grow: bool) -> np.ndarray:
    """The digit at 4x size with strokes one MNIST pixel wider or narrower (grey dilation or erosion by half a
    pixel on every side; MNIST's strokes are about 2-3 pixels wide, so one pixel is a third of a stroke)."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (SCALE + 1, SCALE + 1))
    ink = big_ink(digit)
    return cv2.dilate(ink, disk) if grow else cv2.erode(ink, disk)


FORMS: dict[str, Callable[[np.ndarray, np.random.Generator], bytes]] = {
    "scan": scan,
    "pen 1": lambda d, rng: encode(pen(d, 1.0)),
    "pen 4": lambda d, rng: encode(pen(d, 4.0)),
    "pen 7": lambda d, rng: encode(pen(d, 7.0)),
    "thick": lambda d, rng: encode(grown(d, True)),
    "thin": lambda d, rng: encode(grown(d, False)),
    "low-res": lambda d, rng: encode(low_res(d)),
    "low-res thick": lambda d, rng: encode(low_res(pen(d, 5.0, side=BIG))),
}


def forms_of(images: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """Every digit [N, 784] uint8 in every form, read back through the server's preprocessing: float32 [N, 784]."""
    rng = np.random.default_rng(seed)
    out = {"clean": scale_uint8(images)}
    for name, make in FORMS.items():
        pixels = np.zeros((len(images), 784), np.float32)  # a form the preprocessing finds blank stays blank (wrong)
        for i, image in enumerate(images):
            read = to_mnist(make(image.reshape(28, 28), rng))
            if read is not None:
                pixels[i] = read
        out[name] = pixels
    return out


def main() -> None:
    """Print accuracy per form for each recipe asked."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", action="append", choices=("relu", "logistic"), help="repeatable (default: both)")
    parser.add_argument("--override", action="append", default=[], help="NAME=JSON applied to every recipe, e.g. epochs=10")
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    dataset = load_dataset("mnist5k")
    started = time.perf_counter()
    forms = forms_of(dataset.images)
    print(f"# {len(dataset)} mnist5k digits in {len(forms)} forms ({time.perf_counter() - started:.0f} s); {cpu_name()}")
    labels = dataset.labels.astype(np.int64)
    print("| recipe | " + " | ".join(forms) + " |")
    print("|---|" + "---:|" * len(forms))
    for name in args.recipe or ["relu", "logistic"]:
        config = override(recipe(name), args.override)  # type: ignore[arg-type]
        cv = cross_validate(scale_uint8(dataset.images), labels, config, folds=args.folds, repeats=1, keep_models=True)
        row = []
        for pixels in forms.values():
            predicted = np.empty(len(labels), np.int64)
            for model in cv.models:
                predicted[model.held_out] = model.classifier.predict(apply_form(config.form, pixels[model.held_out]))
            row.append(f"{np.mean(predicted == labels):.2%}")
        print(f"| {name} {' '.join(args.override)} | " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
