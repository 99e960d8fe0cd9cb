"""Fit scikit-learn's MLPClassifier(16, 16) on MNIST digits and distorted copies of them, in the model's input form.

Usage:
    config = recipe("relu", seed=0)                       # the measured recipe (docs/training.md)
    fitted = fit(scale_uint8(dataset.images), dataset.labels, config)
    fitted.classifier.predict_proba(apply_form(config.form, pixels))   # the input form the model is served with
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from digitnet.service.contract.constants import ACTIVATIONS, HIDDEN_LAYERS, LABELS, N_PARAMETERS, Activation
from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.contract.input_form import InputForm
from digitnet.service.contract.network import squash
from digitnet.training.augment import AugmentConfig, distort
from digitnet.training.form_graph import apply_form

log = logging.getLogger(__name__)

Solver = Literal["sgd", "adam"]
Schedule = Literal["constant", "cosine"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (all recorded in the model card)."""

    activation: Activation = "relu"
    seed: int = 0
    solver: Solver = "sgd"
    learning_rate: float = 0.02
    schedule: Schedule = "constant"
    momentum: float = 0.9  # Nesterov momentum (sgd only)
    l2: float = 1e-4  # MLPClassifier's alpha
    batch_size: int = 128
    epochs: int = 30
    copies: int = 20  # distorted copies of each training digit, drawn once and shuffled every epoch
    deskew: bool = True  # train (and so serve) on deskewed digits: see form_graph.py
    blur: float = 0.0  # then blur them: a Gaussian of this sigma in pixels (0: none); see form_graph.py
    revive_dead: bool = False  # re-initialise ReLUs that no training digit activates (first half of training)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def as_dict(self) -> dict[str, object]:
        """Return the settings for the model card."""
        return asdict(self)

    @property
    def form(self) -> InputForm:
        """The input form this recipe trains on, and so its model is served with (the card records it)."""
        return InputForm(deskew=self.deskew, blur=self.blur)


#: The recipe `digitnet train` uses for each activation: the best measured by cross-validation (docs/training.md).
RECIPES: dict[Activation, TrainConfig] = {
    "relu": TrainConfig(activation="relu", schedule="cosine", learning_rate=0.05, epochs=60, revive_dead=True),
    # Blurred inputs help the sigmoid network (+0.6 points) and not the ReLU one (docs/training.md).
    "logistic": TrainConfig(activation="logistic", schedule="cosine", learning_rate=0.3, epochs=30, blur=1.0),
}


def check_activation(activation: str) -> None:
    """Refuse an activation the network does not have, naming those it does."""
    if activation not in ACTIVATIONS:
        raise ConfigurationError(f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}")


def recipe(activation: Activation, seed: int = 0, epochs: int | None = None, heavy_pen: float | None = None) -> TrainConfig:
    """The measured recipe for an activation, with a seed and optionally another number of epochs or share of
    heavy-pen copies."""
    check_activation(activation)
    config = dataclasses.replace(RECIPES[activation], seed=seed)
    if heavy_pen is not None:
        config = dataclasses.replace(config, augment=dataclasses.replace(config.augment, heavy_pen=heavy_pen))
    return dataclasses.replace(config, epochs=epochs) if epochs else config


@dataclass
class EpochStats:
    """What one epoch did, for progress output and the model card's training curve."""

    epoch: int
    loss: float
    seconds: float


@dataclass
class Fitted:
    """A fitted classifier and how its training went."""

    classifier: MLPClassifier
    history: list[EpochStats]
    seconds: float


def count_parameters(classifier: MLPClassifier) -> int:
    """Count weights and biases of a fitted MLPClassifier."""
    return sum(w.size for w in classifier.coefs_) + sum(b.size for b in classifier.intercepts_)


def training_set(pixels: np.ndarray, labels: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """The digits plus `config.copies` randomly distorted copies of each, in the model's input form."""
    rng = np.random.default_rng(config.seed)
    parts = [pixels] + [distort(pixels, rng, config.augment) for _ in range(config.copies)]
    return apply_form(config.form, np.concatenate(parts)), np.tile(labels, config.copies + 1)


def learning_rate_at(epoch: int, config: TrainConfig) -> float:
    """The learning rate of a 1-based epoch: constant, or cosine-annealed from its start to zero at the end."""
    if config.schedule == "constant":
        return config.learning_rate
    return 0.5 * config.learning_rate * (1.0 + math.cos(math.pi * (epoch - 1) / config.epochs))


def fit(pixels: np.ndarray, labels: np.ndarray, config: TrainConfig, on_epoch: Callable[[EpochStats], None] | None = None) -> Fitted:
    """Train 784-16-16-10 for a fixed number of epochs on digits and their distorted copies.

    No early stopping: nothing is held out here, so cross-validation (crossval.py) can score the whole recipe.
    """
    check_activation(config.activation)
    started = time.perf_counter()
    train_x, train_y = training_set(pixels, labels.astype(np.int64), config)
    classifier = MLPClassifier(
        hidden_layer_sizes=HIDDEN_LAYERS,
        activation=config.activation,
        solver=config.solver,
        alpha=config.l2,
        batch_size=config.batch_size,
        learning_rate_init=config.learning_rate,
        momentum=config.momentum,
        nesterovs_momentum=True,
        random_state=config.seed,
    )
    classes = np.array(LABELS)
    rng = np.random.default_rng([config.seed, 1])
    pixels_sample = train_x[rng.choice(len(train_x), min(len(train_x), 4096), replace=False)]
    history: list[EpochStats] = []
    # One BLAS thread: OpenBLAS's default threading makes these small matrix products ~7x slower,
    # and a single thread also makes runs bit-for-bit repeatable.
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            set_learning_rate(classifier, learning_rate_at(epoch, config))
            classifier.partial_fit(train_x, train_y, classes=classes)
            if config.revive_dead and config.activation == "relu" and epoch <= config.epochs // 2:
                revived = revive_dead_units(classifier, pixels_sample, rng)
                if revived:
                    log.debug("epoch %d: revived %d dead units", epoch, revived)
            stats = EpochStats(epoch, float(classifier.loss_), time.perf_counter() - epoch_start)
            history.append(stats)
            if on_epoch:
                on_epoch(stats)
    n_parameters = count_parameters(classifier)
    if n_parameters != N_PARAMETERS:
        raise AssertionError(f"the network has {n_parameters} parameters, expected {N_PARAMETERS}")
    return Fitted(classifier, history, time.perf_counter() - started)


def hidden_layers(classifier: MLPClassifier, pixels: np.ndarray, count: int = 2) -> list[np.ndarray]:
    """The first `count` hidden layers' activations on the given inputs, as the network computes them."""
    layers, activation = [], pixels
    for weights, bias in zip(classifier.coefs_[:count], classifier.intercepts_[:count]):
        activation = squash(classifier.activation, activation @ weights + bias)
        layers.append(activation)
    return layers


def dead_units(classifier: MLPClassifier, pixels: np.ndarray) -> list[np.ndarray]:
    """For each hidden layer, which ReLUs are 0 on every one of the given inputs (they can no longer learn):
    what "dead" means everywhere in digitnet (the card counts them; the pictures do not guess them)."""
    return [layer.max(axis=0) <= 0.0 for layer in hidden_layers(classifier, pixels)]


def revive_dead_units(classifier: MLPClassifier, pixels: np.ndarray, rng: np.random.Generator) -> int:
    """Give every dead ReLU new random weights in and out, with a bias that makes it active on about half of
    the inputs; reset its optimiser state. Returns how many were revived."""
    revived = 0
    for layer, dead in enumerate(dead_units(classifier, pixels)):
        if not dead.any():
            continue
        weights_in, weights_out = classifier.coefs_[layer], classifier.coefs_[layer + 1]
        fan_in, fan_out = weights_in.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot, as MLPClassifier initialises ReLU layers
        new_in = rng.uniform(-bound, bound, (fan_in, int(dead.sum())))
        below = hidden_layers(classifier, pixels, layer)[-1] if layer else pixels
        weights_in[:, dead] = new_in
        classifier.intercepts_[layer][dead] = -np.median(below @ new_in, axis=0)
        weights_out[dead, :] = rng.uniform(-bound, bound, (int(dead.sum()), weights_out.shape[1]))
        # In place: the optimiser holds these very arrays. Its momentum for them belongs to the dead unit.
        _reset_optimizer_state(classifier, layer, dead)
        revived += int(dead.sum())
    return revived


def _reset_optimizer_state(classifier: MLPClassifier, layer: int, dead: np.ndarray) -> None:
    optimizer = getattr(classifier, "_optimizer", None)
    n_layers = len(classifier.coefs_)
    # The optimiser's state lists follow its params: all the weight matrices, then all the biases.
    for states in (getattr(optimizer, name, None) for name in ("velocities", "ms", "vs")):
        if states is None:
            continue
        states[layer][:, dead] = 0.0
        states[layer + 1][dead, :] = 0.0
        states[n_layers + layer][dead] = 0.0


def set_learning_rate(classifier: MLPClassifier, rate: float) -> None:
    """Set the learning rate the next partial_fit steps with."""
    # MLPClassifier has no schedule but its own; partial_fit builds the optimiser on the first call and then
    # reads its rate from it (sgd: `learning_rate`; adam: `learning_rate_init`, bias-corrected per step).
    classifier.learning_rate_init = rate
    optimizer = getattr(classifier, "_optimizer", None)
    if optimizer is not None:
        optimizer.learning_rate_init = rate
        if classifier.solver == "sgd":
            optimizer.learning_rate = rate
