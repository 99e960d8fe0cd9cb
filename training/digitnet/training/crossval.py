"""Repeated stratified k-fold cross-validation: every digit scored by a model that never saw it.

Each repeat splits the digits into k stratified folds with its own seed and trains k models with its own
training seed (nothing is chosen on held-out digits: the epochs are fixed), so the spread over repeats
covers both the split and the seed. Folds run in parallel worker processes, one BLAS thread each.

Usage:
    cv = cross_validate(pixels, labels, TrainConfig(), folds=5, repeats=3)
    cv.accuracies        # [repeats]: each repeat's accuracy over all the digits
    cv.probabilities     # [repeats, N, 10]: the out-of-fold predictions
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import StratifiedKFold
from sklearn.neural_network import MLPClassifier

from digitnet.service.contract.errors import ConfigurationError
from digitnet.training.form_graph import apply_form
from digitnet.training.train import TrainConfig, fit


@dataclass(frozen=True)
class FoldDone:
    """One fold's model has scored its held-out digits."""

    repeat: int
    fold: int
    accuracy: float
    seconds: float


@dataclass(frozen=True)
class FoldModel:
    """A fold's fitted model and the digits it never saw (kept on request, for benchmarks)."""

    repeat: int
    fold: int
    held_out: np.ndarray  # indices of the digits it was scored on
    classifier: MLPClassifier


@dataclass(frozen=True)
class CrossValidation:
    """Out-of-fold predictions of every repeat, and what they add up to."""

    probabilities: np.ndarray  # float32 [repeats, N, 10]
    labels: np.ndarray  # int64 [N]
    folds: int
    seconds: float  # wall time of the whole cross-validation
    fit_seconds: float  # mean wall time of one fold's training
    models: list[FoldModel] = field(default_factory=list)  # only with keep_models

    @property
    def accuracies(self) -> np.ndarray:
        """Each repeat's accuracy over all the digits, [repeats]."""
        return np.mean(self.probabilities.argmax(axis=2) == self.labels[None, :], axis=1)

    @property
    def mean(self) -> float:
        """The cross-validated accuracy: mean over repeats."""
        return float(self.accuracies.mean())

    @property
    def sd(self) -> float:
        """Standard deviation over repeats (ddof 1; 0 for one repeat)."""
        accuracies = self.accuracies
        return float(accuracies.std(ddof=1)) if len(accuracies) > 1 else 0.0


def fold_config(config: TrainConfig, repeat: int, fold: int, folds: int) -> TrainConfig:
    """The training seed of one fold: distinct for every fold of every repeat, all derived from config.seed."""
    return dataclasses.replace(config, seed=config.seed + 1 + repeat * folds + fold)


def cross_validate(
    pixels: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    folds: int = 5,
    repeats: int = 3,
    workers: int = 2,
    on_fold: Callable[[FoldDone], None] | None = None,
    keep_models: bool = False,
) -> CrossValidation:
    """Score a training recipe by repeated stratified k-fold cross-validation over digits [N, 784]."""
    if folds < 2 or repeats < 1:
        raise ConfigurationError(f"cross-validation needs at least 2 folds and 1 repeat, got {folds} and {repeats}")
    labels = labels.astype(np.int64)
    if np.bincount(labels).min() < folds:
        raise ConfigurationError(f"{folds}-fold cross-validation needs at least {folds} digits of every class")
    started = time.perf_counter()
    probabilities = np.full((repeats, len(labels), 10), np.nan, dtype=np.float32)
    # spawn, not fork: a forked copy of a process whose BLAS or onnxruntime threads are running can hang.
    context = multiprocessing.get_context("spawn")
    fit_seconds = []
    models = []
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context) as pool:
        jobs = {}
        for repeat in range(repeats):
            splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed + repeat)
            for fold, (train_idx, test_idx) in enumerate(splitter.split(pixels, labels)):
                job = pool.submit(_score_fold, pixels[train_idx], labels[train_idx], pixels[test_idx], fold_config(config, repeat, fold, folds))
                jobs[job] = (repeat, fold, test_idx)
        for job in as_completed(jobs):
            repeat, fold, test_idx = jobs[job]
            fold_probabilities, seconds, classifier = job.result()
            probabilities[repeat, test_idx] = fold_probabilities
            fit_seconds.append(seconds)
            if keep_models:
                models.append(FoldModel(repeat, fold, test_idx, classifier))
            if on_fold:
                accuracy = float(np.mean(fold_probabilities.argmax(axis=1) == labels[test_idx]))
                on_fold(FoldDone(repeat, fold, accuracy, seconds))
    models.sort(key=lambda m: (m.repeat, m.fold))
    return CrossValidation(probabilities, labels, folds, time.perf_counter() - started, float(np.mean(fit_seconds)), models)


def _score_fold(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, config: TrainConfig) -> tuple[np.ndarray, float, MLPClassifier]:
    fitted = fit(train_x, train_y, config)
    return fitted.classifier.predict_proba(apply_form(config.form, test_x)).astype(np.float32), fitted.seconds, fitted.classifier
