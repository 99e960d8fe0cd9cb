"""Cross-validation: every digit scored once per repeat, by a model that never saw it; seeds that differ."""

from __future__ import annotations

import numpy as np
import pytest

from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.crossval import FoldDone, cross_validate, fold_config
from digitnet.training.data import Dataset
from digitnet.training.form_graph import apply_form
from digitnet.training.train import TrainConfig

TINY = TrainConfig(epochs=8, copies=0, seed=2, learning_rate=0.05)


def test_every_digit_is_scored_by_a_model_that_never_saw_it(small_dataset: Dataset) -> None:
    pixels, labels = scale_uint8(small_dataset.images), small_dataset.labels.astype(np.int64)
    done: list[FoldDone] = []
    cv = cross_validate(pixels, labels, TINY, folds=3, repeats=2, workers=2, on_fold=done.append, keep_models=True)
    assert cv.probabilities.shape == (2, len(labels), 10) and np.isfinite(cv.probabilities).all()
    assert sorted((d.repeat, d.fold) for d in done) == [(r, f) for r in range(2) for f in range(3)]
    for repeat in range(2):
        held_out = np.concatenate([m.held_out for m in cv.models if m.repeat == repeat])
        assert sorted(held_out.tolist()) == list(range(len(labels))), "each digit held out exactly once per repeat"
    for model in cv.models:
        # The recorded out-of-fold probabilities are this model's, on digits outside its training folds.
        expected = model.classifier.predict_proba(apply_form(TINY.form, pixels[model.held_out]))
        np.testing.assert_allclose(cv.probabilities[model.repeat, model.held_out], expected, atol=1e-6)
        assert model.classifier.n_features_in_ == 784
    assert not np.array_equal(cv.models[0].held_out, cv.models[3].held_out), "each repeat has its own folds"
    assert 0.5 < cv.mean < 1.0 and cv.sd >= 0.0
    assert cv.accuracies.tolist() == pytest.approx([np.mean(p.argmax(axis=1) == labels) for p in cv.probabilities])


def test_every_fold_trains_with_its_own_seed() -> None:
    seeds = {fold_config(TINY, repeat, fold, 5).seed for repeat in range(3) for fold in range(5)}
    assert len(seeds) == 15 and TINY.seed not in seeds, "the final model's seed is not reused by a fold"


def test_bad_settings_are_clear_errors(small_dataset: Dataset) -> None:
    pixels, labels = scale_uint8(small_dataset.images), small_dataset.labels
    with pytest.raises(ConfigurationError, match="at least 2 folds and 1 repeat"):
        cross_validate(pixels, labels, TINY, folds=1)
    with pytest.raises(ConfigurationError, match="at least 100 digits of every class"):
        cross_validate(pixels, labels, TINY, folds=100)
