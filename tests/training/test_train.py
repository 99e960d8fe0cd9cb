"""Augmentation and fitting: determinism, the input form, dead units revived, exactly 13,002 parameters."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from digitnet.service.contract.constants import N_PARAMETERS
from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.contract.input_form import InputForm
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.augment import AugmentConfig, distort
from digitnet.training.data import Dataset
from digitnet.training.form_graph import apply_form
from digitnet.training.train import (
    TrainConfig,
    count_parameters,
    dead_units,
    fit,
    learning_rate_at,
    recipe,
    revive_dead_units,
    set_learning_rate,
    training_set,
)

FAST = TrainConfig(epochs=2, copies=1, seed=5)


def _pixels(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    return scale_uint8(dataset.images), dataset.labels.astype(np.int64)


def test_distort_keeps_shape_range_and_ink(small_dataset: Dataset) -> None:
    images = scale_uint8(small_dataset.images[:64])
    out = distort(images, np.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.allclose(out, images)
    # Small geometric distortions move ink but keep most of it inside the image.
    moved = distort(images, np.random.default_rng(0), AugmentConfig(stroke_change=0))
    assert np.all(moved.sum(axis=1) > 0.8 * images.sum(axis=1))


def test_distort_with_no_distortion_is_identity(small_dataset: Dataset) -> None:
    images = scale_uint8(small_dataset.images[:8])
    none = AugmentConfig(max_shift=0, max_rotation=0, max_scale=0, max_shear=0, elastic_alpha=0, stroke_change=0)
    np.testing.assert_allclose(distort(images, np.random.default_rng(0), none), images, atol=1e-6)


def test_stroke_change_makes_strokes_thicker_and_thinner(small_dataset: Dataset) -> None:
    images = scale_uint8(small_dataset.images[:200])
    only_strokes = AugmentConfig(max_shift=0, max_rotation=0, max_scale=0, max_shear=0, elastic_alpha=0, stroke_change=1.0)
    ink_ratio = distort(images, np.random.default_rng(0), only_strokes).sum(axis=1) / images.sum(axis=1)
    assert (ink_ratio > 1.2).sum() > 50 and (ink_ratio < 0.8).sum() > 50, "about half thicker, half thinner"
    assert np.all((ink_ratio > 1.0) | (ink_ratio < 1.0))


def test_heavy_pen_widens_strokes_and_shrinks_the_digit_to_fit_its_box(small_dataset: Dataset) -> None:
    images = scale_uint8(small_dataset.images[:200])
    still = AugmentConfig(max_shift=0, max_rotation=0, max_scale=0, max_shear=0, elastic_alpha=0, stroke_change=0)
    heavy = distort(images, np.random.default_rng(0), dataclasses.replace(still, heavy_pen=1.0))
    assert np.all(heavy.sum(axis=1) > 1.15 * images.sum(axis=1)), "every stroke wider, though the digit shrinks"

    def height(pixels: np.ndarray) -> np.ndarray:
        rows = pixels.reshape(-1, 28, 28).max(axis=2) > 0.3
        return 28 - rows[:, ::-1].argmax(axis=1) - rows.argmax(axis=1)

    # The pen widens the strokes, not the digit: the box it fills stays about the same height.
    assert abs(float(np.median(height(heavy) - height(images)))) <= 1
    # Off (the default), the random stream is untouched, so recipes without it keep their models.
    np.testing.assert_array_equal(distort(images, np.random.default_rng(3)), distort(images, np.random.default_rng(3), AugmentConfig(heavy_pen=0.0)))


def test_training_set_is_the_digits_and_their_copies_in_input_form(small_dataset: Dataset) -> None:
    pixels, labels = _pixels(small_dataset)
    x, y = training_set(pixels, labels, dataclasses.replace(FAST, copies=2))
    assert x.shape == (3 * len(pixels), 784) and np.array_equal(y, np.tile(labels, 3))
    np.testing.assert_array_equal(x[: len(pixels)], apply_form(InputForm(deskew=True), pixels))
    raw, _ = training_set(pixels, labels, dataclasses.replace(FAST, copies=0, deskew=False))
    np.testing.assert_array_equal(raw, pixels)
    blurred, _ = training_set(pixels, labels, dataclasses.replace(FAST, copies=0, blur=1.0))
    np.testing.assert_array_equal(blurred, apply_form(InputForm(deskew=True, blur=1.0), pixels))


def test_fit_has_13002_parameters_and_records_history(small_dataset: Dataset) -> None:
    fitted = fit(*_pixels(small_dataset), FAST)
    assert count_parameters(fitted.classifier) == N_PARAMETERS == 13_002
    assert [h.epoch for h in fitted.history] == [1, 2]
    assert fitted.history[1].loss < fitted.history[0].loss


def test_same_seed_same_model_and_another_seed_another(small_dataset: Dataset) -> None:
    first, second = fit(*_pixels(small_dataset), FAST), fit(*_pixels(small_dataset), FAST)
    for w1, w2 in zip(first.classifier.coefs_, second.classifier.coefs_):
        np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-12)
    other = fit(*_pixels(small_dataset), dataclasses.replace(FAST, seed=6))
    assert not np.allclose(other.classifier.coefs_[0], first.classifier.coefs_[0])


@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_both_activations_and_both_solvers_train(small_dataset: Dataset, activation: str) -> None:
    pixels, labels = _pixels(small_dataset)
    for solver in ("sgd", "adam"):
        rate = {"adam": 3e-3, "sgd": 0.05 if activation == "relu" else 0.5}[solver]  # sigmoids learn slower: larger steps
        config = TrainConfig(activation=activation, solver=solver, epochs=10, copies=0, learning_rate=rate)  # type: ignore[arg-type]
        fitted = fit(pixels, labels, config)
        assert fitted.classifier.activation == activation
        accuracy = np.mean(fitted.classifier.predict(apply_form(config.form, pixels)) == labels)
        assert accuracy > 0.6, f"{activation}/{solver} learned little: {accuracy:.2f} on its own training digits"


def test_unknown_activation_is_a_clear_error(small_dataset: Dataset) -> None:
    with pytest.raises(ConfigurationError, match="activation must be one of relu, logistic"):
        fit(*_pixels(small_dataset), TrainConfig(activation="tanh"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="activation must be one of relu, logistic"):
        recipe("tanh")  # type: ignore[arg-type]


def test_cosine_schedule_anneals_to_zero_and_constant_stays() -> None:
    cosine = TrainConfig(schedule="cosine", learning_rate=0.1, epochs=10)
    rates = [learning_rate_at(epoch, cosine) for epoch in range(1, 11)]
    assert rates[0] == pytest.approx(0.1) and all(a > b for a, b in zip(rates, rates[1:])) and 0 < rates[-1] < 0.01
    assert learning_rate_at(7, TrainConfig(learning_rate=0.1)) == 0.1


@pytest.mark.parametrize(("solver", "attribute"), [("sgd", "learning_rate"), ("adam", "learning_rate_init")])
def test_the_schedule_reaches_the_optimiser(small_dataset: Dataset, solver: str, attribute: str) -> None:
    fitted = fit(*_pixels(small_dataset), dataclasses.replace(FAST, solver=solver))  # type: ignore[arg-type]
    set_learning_rate(fitted.classifier, 0.0123)
    # The attribute scikit-learn's optimiser steps with (adam bias-corrects it per step).
    assert getattr(fitted.classifier._optimizer, attribute) == 0.0123


def test_dead_units_are_revived_with_fresh_optimiser_state(small_dataset: Dataset) -> None:
    pixels, labels = _pixels(small_dataset)
    fitted = fit(pixels, labels, FAST)
    classifier = fitted.classifier
    classifier.intercepts_[0][[2, 5]] = -1e3  # two first-layer units that nothing can switch on
    classifier._optimizer.velocities[0][:, 2] = 1.0
    assert dead_units(classifier, pixels)[0].tolist().count(True) >= 2
    revived = revive_dead_units(classifier, pixels, np.random.default_rng(0))
    assert revived >= 2 and not any(d.any() for d in dead_units(classifier, pixels))
    active = (pixels @ classifier.coefs_[0] + classifier.intercepts_[0])[:, [2, 5]] > 0
    assert 0.3 < active.mean() < 0.7, "a revived unit starts active on about half of the digits"
    assert not classifier._optimizer.velocities[0][:, 2].any()


def test_recipe_sets_seed_and_epochs() -> None:
    assert recipe("relu", seed=4).seed == 4 and recipe("relu").activation == "relu"
    assert recipe("logistic", epochs=7).epochs == 7 and recipe("logistic").activation == "logistic"
    assert recipe("relu").augment.heavy_pen == 0 and recipe("relu", heavy_pen=0.2).augment.heavy_pen == 0.2
    assert recipe("logistic", heavy_pen=0.2).blur == recipe("logistic").blur  # the rest of the recipe stays
