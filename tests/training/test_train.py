"""Splitting, augmentation and fitting: determinism, no validation leak, exactly 13,002 parameters."""

from __future__ import annotations

import numpy as np
import pytest

from digitnet.service.contract.constants import N_PARAMETERS, N_PIXELS
from digitnet.service.contract.errors import ConfigurationError
from digitnet.training.augment import AugmentConfig, distort
from digitnet.training.data import Dataset
from digitnet.training.train import TrainConfig, count_parameters, split_dataset, train

FAST = TrainConfig(max_epochs=2, distorted_copies=1, seed=5)


def test_split_is_deterministic_stratified_and_disjoint(mnist5k: Dataset) -> None:
    a, b = split_dataset(mnist5k, seed=1), split_dataset(mnist5k, seed=1)
    np.testing.assert_array_equal(a.val_x, b.val_x)
    assert len(a.train_y) == 4000 and len(a.val_y) == 1000
    assert np.bincount(a.val_y).tolist() == [100] * 10
    train_rows = {row.tobytes() for row in a.train_x}
    assert not any(row.tobytes() in train_rows for row in a.val_x), "a validation digit leaked into training"
    assert not np.array_equal(split_dataset(mnist5k, seed=2).val_x, a.val_x), "another seed gives another split"


def test_split_scales_pixels_to_unit_float32(small_dataset: Dataset) -> None:
    split = split_dataset(small_dataset, seed=0)
    assert split.train_x.dtype == np.float32 and split.train_x.shape[1] == N_PIXELS
    assert split.train_x.min() == 0.0 and split.train_x.max() == 1.0


def test_split_rejects_bad_fraction(small_dataset: Dataset) -> None:
    with pytest.raises(ConfigurationError, match="between 0 and 1"):
        split_dataset(small_dataset, validation_fraction=1.5)


def test_distort_keeps_shape_range_and_ink(small_dataset: Dataset) -> None:
    images = small_dataset.images[:64].astype(np.float32) / 255
    out = distort(images, np.random.default_rng(0))
    assert out.shape == images.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert not np.allclose(out, images)
    # Small distortions move ink but keep most of it inside the image.
    assert np.all(out.sum(axis=1) > 0.6 * images.sum(axis=1))


def test_distort_with_no_distortion_is_identity(small_dataset: Dataset) -> None:
    images = small_dataset.images[:8].astype(np.float32) / 255
    none = AugmentConfig(max_shift=0, max_rotation=0, max_scale=0, max_shear=0, elastic_alpha=0)
    np.testing.assert_allclose(distort(images, np.random.default_rng(0), none), images, atol=1e-6)


def test_train_has_13002_parameters_and_records_history(small_dataset: Dataset) -> None:
    result = train(split_dataset(small_dataset, seed=0), FAST)
    assert count_parameters(result.classifier) == N_PARAMETERS == 13_002
    assert [h.epoch for h in result.history] == [1, 2]
    assert result.validation_accuracy == max(h.validation_accuracy for h in result.history)


def test_same_seed_same_model(small_dataset: Dataset) -> None:
    split = split_dataset(small_dataset, seed=0)
    first, second = train(split, FAST), train(split, FAST)
    for w1, w2 in zip(first.classifier.coefs_, second.classifier.coefs_):
        np.testing.assert_allclose(w1, w2, rtol=0, atol=1e-12)
    assert first.validation_accuracy == second.validation_accuracy


@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_both_activations_train(small_dataset: Dataset, activation: str) -> None:
    result = train(split_dataset(small_dataset, seed=0), TrainConfig(activation=activation, max_epochs=1, distorted_copies=0))
    assert result.classifier.activation == activation


def test_unknown_activation_is_a_clear_error(small_dataset: Dataset) -> None:
    with pytest.raises(ConfigurationError, match="activation must be one of relu, logistic"):
        train(split_dataset(small_dataset, seed=0), TrainConfig(activation="tanh"))
