"""Fit scikit-learn's MLPClassifier(16, 16) on MNIST digits with fresh augmentation every epoch.

Usage:
    split = split_dataset(load_dataset("mnist5k"), seed=0)
    result = train(split, TrainConfig(activation="relu", seed=0))
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from digitnet.service.contract.constants import ACTIVATIONS, HIDDEN_LAYERS, LABELS, N_PARAMETERS, Activation
from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.augment import AugmentConfig, distort
from digitnet.training.data import Dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Split:
    """A deterministic, stratified train/validation split; validation never reaches training."""

    train_x: np.ndarray  # float32 [N, 784] in [0, 1]
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    seed: int
    validation_fraction: float


def split_dataset(dataset: Dataset, seed: int = 0, validation_fraction: float = 0.2) -> Split:
    """Split a dataset into stratified train and validation parts, the same for the same seed."""
    if not 0.0 < validation_fraction < 1.0:
        raise ConfigurationError(f"validation fraction must be between 0 and 1, got {validation_fraction}")
    index = np.arange(len(dataset))
    train_idx, val_idx = train_test_split(index, test_size=validation_fraction, random_state=seed, stratify=dataset.labels)
    return Split(
        train_x=scale_uint8(dataset.images[train_idx]),
        train_y=dataset.labels[train_idx].astype(np.int64),
        val_x=scale_uint8(dataset.images[val_idx]),
        val_y=dataset.labels[val_idx].astype(np.int64),
        seed=seed,
        validation_fraction=validation_fraction,
    )


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the model card)."""

    activation: Activation = "relu"
    seed: int = 0
    max_epochs: int = 80
    patience: int = 20  # stop after this many epochs without a better validation accuracy
    learning_rate: float = 3e-3
    l2: float = 1e-4  # MLPClassifier's alpha
    batch_size: int = 128
    distorted_copies: int = 4  # freshly distorted copies of the training set added every epoch
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def as_dict(self) -> dict[str, object]:
        """Return the settings for the model card."""
        return asdict(self)


@dataclass
class EpochStats:
    """What one epoch did, for progress output and the model card's training curve."""

    epoch: int
    loss: float
    validation_accuracy: float
    seconds: float


@dataclass
class TrainResult:
    """The fitted classifier (best epoch's weights) and how training went."""

    classifier: MLPClassifier
    history: list[EpochStats]
    best_epoch: int
    validation_accuracy: float
    seconds: float


def count_parameters(classifier: MLPClassifier) -> int:
    """Count weights and biases of a fitted MLPClassifier."""
    return sum(w.size for w in classifier.coefs_) + sum(b.size for b in classifier.intercepts_)


def train(split: Split, config: TrainConfig, on_epoch: Callable[[EpochStats], None] | None = None) -> TrainResult:
    """Train 784-16-16-10 with early stopping on the validation split; return the best epoch's model."""
    if config.activation not in ACTIVATIONS:
        raise ConfigurationError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {config.activation!r}")
    classifier = MLPClassifier(
        hidden_layer_sizes=HIDDEN_LAYERS,
        activation=config.activation,
        solver="adam",
        alpha=config.l2,
        batch_size=config.batch_size,
        learning_rate_init=config.learning_rate,
        random_state=config.seed,
    )
    rng = np.random.default_rng(config.seed)
    classes = np.array(LABELS)
    history: list[EpochStats] = []
    best: tuple[float, int, list[np.ndarray], list[np.ndarray]] | None = None
    started = time.perf_counter()
    # One BLAS thread: OpenBLAS's default threading makes these small matrix products ~7x slower,
    # and a single thread also makes runs bit-for-bit repeatable.
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(1, config.max_epochs + 1):
            epoch_start = time.perf_counter()
            copies = [distort(split.train_x, rng, config.augment) for _ in range(config.distorted_copies)]
            epoch_x = np.concatenate([split.train_x, *copies])
            epoch_y = np.tile(split.train_y, config.distorted_copies + 1)
            classifier.partial_fit(epoch_x, epoch_y, classes=classes)
            accuracy = float(np.mean(classifier.predict(split.val_x) == split.val_y))
            stats = EpochStats(epoch, float(classifier.loss_), accuracy, time.perf_counter() - epoch_start)
            history.append(stats)
            if on_epoch:
                on_epoch(stats)
            if best is None or accuracy > best[0]:
                best = (accuracy, epoch, [w.copy() for w in classifier.coefs_], [b.copy() for b in classifier.intercepts_])
            elif epoch - best[1] >= config.patience:
                log.info("early stop at epoch %d: no better validation accuracy since epoch %d", epoch, best[1])
                break
    assert best is not None
    accuracy, best_epoch, classifier.coefs_, classifier.intercepts_ = best
    n_parameters = count_parameters(classifier)
    if n_parameters != N_PARAMETERS:
        raise AssertionError(f"the network has {n_parameters} parameters, expected {N_PARAMETERS}")
    return TrainResult(classifier, history, best_epoch, accuracy, time.perf_counter() - started)
