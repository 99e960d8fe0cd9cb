"""Calibration: the ECE of known cases, temperatures that undo over-confidence, selective accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from digitnet.training.calibration import (
    apply_temperature,
    cross_fitted,
    expected_calibration_error,
    fit_temperature,
    pooled_ece,
    selective_accuracy,
)


def _calibrated_at(temperature: float, n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Predictions whose labels are drawn from their own softmax(logits): perfectly calibrated; then
    sharpened by 1/temperature (temperature < 1 makes them over-confident)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (n, 10))
    truth = softmax(logits, axis=1)
    labels = np.array([rng.choice(10, p=p) for p in truth])
    return softmax(logits / temperature, axis=1).astype(np.float32), labels


def test_ece_of_calibrated_predictions_is_small_and_of_overconfident_ones_large() -> None:
    calibrated, labels = _calibrated_at(1.0)
    overconfident, _ = _calibrated_at(0.5)
    assert expected_calibration_error(calibrated, labels) < 0.015
    assert expected_calibration_error(overconfident, labels) > 0.05


def test_ece_by_hand() -> None:
    # Two images at confidence 0.9 (one right), two at 0.6 (both right): |0.9 - 0.5| * 2/4 + |0.6 - 1| * 2/4.
    p = np.full((4, 10), 0.0, np.float32)
    p[0, 1] = p[1, 1] = 0.9
    p[2, 2] = p[3, 2] = 0.6
    assert expected_calibration_error(p, np.array([1, 0, 2, 2])) == pytest.approx(0.4)


def test_fitted_temperature_undoes_sharpening() -> None:
    overconfident, labels = _calibrated_at(0.5)
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(2.0, rel=0.08)
    assert expected_calibration_error(apply_temperature(overconfident, temperature), labels) < 0.015


def test_temperature_one_changes_nothing_and_keeps_the_ranking() -> None:
    p, _ = _calibrated_at(1.0, n=100)
    np.testing.assert_allclose(apply_temperature(p, 1.0), p, atol=1e-6)
    np.testing.assert_array_equal(apply_temperature(p, 3.0).argmax(axis=1), p.argmax(axis=1))


def test_cross_fitted_calibration_is_scored_on_the_other_half() -> None:
    overconfident, labels = _calibrated_at(0.5, n=6000)
    repeats = np.stack([overconfident, overconfident])
    scaled = cross_fitted(repeats, labels)
    assert scaled.shape == repeats.shape
    assert pooled_ece(scaled, labels) < 0.015 < pooled_ece(repeats, labels)
    # Each half was scaled with a temperature fitted without it: the two halves' temperatures differ.
    ratio = np.log(scaled[0].max(axis=1)) / np.log(overconfident.max(axis=1))
    assert len(np.unique(np.round(ratio[overconfident.max(axis=1) < 0.99], 3))) > 1


def test_selective_accuracy_answers_confident_images_only() -> None:
    p = np.zeros((4, 10), np.float32)
    p[:, 0] = [0.95, 0.8, 0.6, 0.4]
    rows = selective_accuracy(p, np.array([0, 0, 1, 0]), thresholds=(0.0, 0.5, 0.9, 0.99))
    assert [(r.answered, r.accuracy) for r in rows[:3]] == [(1.0, 0.75), (0.75, pytest.approx(2 / 3)), (0.25, 1.0)]
    assert rows[3].answered == 0.0 and rows[3].accuracy is None
