"""The model file alone (a bare onnxruntime session, as Triton or KServe run it) against digitnet on the
same MNIST-form digits: accuracy both ways, how many labels agree, how far the probabilities are.

Run: ./dev run python bench/portability_bench.py [--images 5000] [--seed 7]
Three sets of 28x28 PNG files in MNIST form: the bundled digits as they are (the committed models were
trained on them: in-sample), new renditions of them (training's distortions drawn with a seed that no
training run uses), and the same digits slanted by a shear of ±0.3 (where the deskew in the graph matters
most). digitnet reads each folder with `digitnet score` (in process, every answer kept: --min-confidence 0);
the file alone gets the same PNGs' pixels / 255. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from machine import cpu_name
from PIL import Image

from digitnet.service.cli.main import main as digitnet
from digitnet.service.contract.pixels import scale_uint8
from digitnet.service.inference.preprocess import normalise
from digitnet.training.augment import distort
from digitnet.training.data import load_dataset
from digitnet.training.train import recipe

REPO = Path(__file__).resolve().parents[1]
MODELS = [REPO / "models" / "default.onnx", REPO / "models" / "logistic.onnx"]


def slanted(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each digit sheared by ±0.3 columns per row about its centre (the writer's slant)."""
    out = np.empty_like(pixels)
    for index, image in enumerate(pixels.reshape(-1, 28, 28)):
        shear = rng.choice([-0.3, 0.3])
        matrix = np.array([[1.0, shear, -shear * 13.5], [0.0, 1.0, 0.0]])
        out[index] = cv2.warpAffine(image, matrix, (28, 28), flags=cv2.INTER_LINEAR, borderValue=0.0).reshape(784)
    return out


def write_folder(folder: Path, pixels: np.ndarray) -> None:
    """Write each digit as an MNIST-form 28x28 PNG (digitnet's own normalisation), in index order."""
    folder.mkdir()
    for index, image in enumerate(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)):
        formed = normalise(image.reshape(28, 28))
        grey = image.reshape(28, 28) if formed is None else np.round(formed.reshape(28, 28) * 255).astype(np.uint8)
        Image.fromarray(grey).save(folder / f"{index:05d}.png")


def through_digitnet(model: Path, folder: Path, out: Path) -> dict[str, dict[str, object]]:
    """`digitnet score` on the folder; its rows by file name."""
    with contextlib.redirect_stderr(io.StringIO()):
        code = digitnet(["score", str(folder), "--model", str(model), "--out", str(out), "--min-confidence", "0"])
    assert code == 0, f"digitnet score exited {code}"
    return {Path(str(row["path"])).name: row for row in map(json.loads, out.read_text().splitlines())}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7, help="seed of the new renditions and slants (training uses 0 and its folds' seeds)")
    args = parser.parse_args()
    dataset = load_dataset("mnist5k")
    digits, labels = scale_uint8(dataset.images[: args.images]), dataset.labels[: args.images]
    rng = np.random.default_rng([args.seed, 22])
    sets = {
        "bundled digits (in-sample)": digits,
        "new renditions (training's distortions, unseen seed)": distort(digits, rng, recipe("relu").augment),
        "slanted ±0.3": slanted(digits, rng),
    }
    print(f"CPU: {cpu_name()}; onnxruntime {ort.__version__}; {len(labels):,} digits per set\n")
    print("| model | digits | through digitnet (`score`) | the file alone (bare onnxruntime) | same labels | max |Δp| |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for number, (name, pixels) in enumerate(sets.items()):
            folder = Path(scratch) / f"set{number}"
            write_folder(folder, pixels)
            files = sorted(folder.iterdir())
            formed = np.stack([np.asarray(Image.open(f), dtype=np.float32).reshape(784) / 255 for f in files])
            for model in MODELS:
                rows = through_digitnet(model, folder, Path(scratch) / f"{model.stem}-{number}.jsonl")
                served = np.array([rows[f.name]["label"] for f in files])
                served_p = np.array([rows[f.name]["probabilities"] for f in files])
                session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
                alone, alone_p = session.run(["label", "probabilities"], {"pixels": formed})
                print(
                    f"| {model.name} | {name} | {np.mean(served == labels):.2%} | {np.mean(alone == labels):.2%} "
                    f"| {int(np.sum(served == alone)):,} / {len(labels):,} | {np.max(np.abs(served_p - alone_p)):.1e} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
