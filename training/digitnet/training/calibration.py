"""How far to trust a model's confidence: expected calibration error, temperature scaling, selective accuracy.

Usage:
    ece = expected_calibration_error(probabilities, labels)
    temperature = fit_temperature(probabilities, labels)          # then soften: divide the logits by it
    calibrated = apply_temperature(probabilities, temperature)
    rows = selective_accuracy(calibrated, labels, thresholds=(0.5, 0.9))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import softmax

#: Equal-width confidence bins of the expected calibration error (the usual choice, and the issue's).
ECE_BINS = 15


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """The share-weighted mean gap between confidence and accuracy over equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # Bin i holds confidences in (i/bins, (i+1)/bins]; confidences are >= 1/10, so the lowest bins stay empty.
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    gap = np.bincount(which, weights=confidence - correct, minlength=bins)
    return float(np.abs(gap).sum() / len(labels))


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Soften (T > 1) or sharpen (T < 1) probabilities as if the logits were divided by T."""
    # log p = logits - logsumexp(logits): dividing it by T and re-normalising equals softmax(logits / T).
    return softmax(np.log(np.maximum(probabilities, 1e-30)) / temperature, axis=1).astype(np.float32)


#: The temperatures fit_temperature tries: log-spaced over a range far wider than a sane model needs.
TEMPERATURES = np.geomspace(0.25, 20.0, 241)


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the expected calibration error of the predictions (grid search).

    Not the usual negative log-likelihood fit (Guo et al., 2017): on these models that one lands about 10%
    higher and leaves twice the calibration error, since the confidence the network is wrong with is spread
    unevenly (measured in docs/training.md). Scored on other digits than it was fitted on (cross_fitted),
    so the gain is not the fit's own."""
    log_p = np.log(np.maximum(probabilities.astype(np.float64), 1e-30))
    errors = [expected_calibration_error(softmax(log_p / t, axis=1), labels) for t in TEMPERATURES]
    return float(TEMPERATURES[int(np.argmin(errors))])


@dataclass(frozen=True)
class Selective:
    """What a confidence threshold does: the share of images answered and how many of those are right."""

    threshold: float
    answered: float
    accuracy: float | None  # None when no image reaches the threshold


def selective_accuracy(probabilities: np.ndarray, labels: np.ndarray, thresholds: Sequence[float]) -> list[Selective]:
    """For each threshold, answer only images whose top probability reaches it (the server's min_confidence)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    rows = []
    for threshold in thresholds:
        answered = confidence >= threshold
        accuracy = float(correct[answered].mean()) if answered.any() else None
        rows.append(Selective(float(threshold), float(answered.mean()), accuracy))
    return rows


def cross_fitted(probabilities: np.ndarray, labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Temperature-scale predictions with each half of the digits scaled by the temperature fitted on the
    other half, so that the calibration measured on them is not measured on the digits it was fitted to.

    probabilities: [repeats, N, 10] out-of-fold predictions (each repeat scores every digit once).
    """
    halves = np.random.default_rng(seed).permutation(len(labels)) % 2
    scaled = np.empty_like(probabilities)
    for half in (0, 1):
        fitted_on, applied_to = halves != half, halves == half
        temperature = pooled_temperature(probabilities[:, fitted_on], labels[fitted_on])
        for repeat, predictions in enumerate(probabilities):
            scaled[repeat, applied_to] = apply_temperature(predictions[applied_to], temperature)
    return scaled


def _pooled(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[repeats, N, 10] predictions of [N] labels -> [repeats * N, 10] and [repeats * N], repeat by repeat."""
    return probabilities.reshape(-1, probabilities.shape[-1]), np.tile(labels, len(probabilities))


def pooled_ece(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Expected calibration error of [repeats, N, 10] predictions, all repeats pooled."""
    return expected_calibration_error(*_pooled(probabilities, labels))


def pooled_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The temperature fitted on [repeats, N, 10] predictions, all repeats pooled."""
    return fit_temperature(*_pooled(probabilities, labels))


def pooled_selective(probabilities: np.ndarray, labels: np.ndarray, thresholds: Sequence[float]) -> list[Selective]:
    """selective_accuracy of [repeats, N, 10] predictions, all repeats pooled."""
    return selective_accuracy(*_pooled(probabilities, labels), thresholds)
