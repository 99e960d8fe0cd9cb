"""ONNX export: the input form in the graph, parity with scikit-learn, hidden-layer outputs, verification,
atomic writes, the card."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from sklearn.neural_network import MLPClassifier

from digitnet.service.contract import files
from digitnet.service.contract.card import read_card
from digitnet.service.contract.constants import CARD_METADATA_KEY, INPUT_NAME, N_PARAMETERS, OUTPUT_FORMED, OUTPUT_HIDDEN
from digitnet.service.contract.errors import ExportVerificationError
from digitnet.service.contract.input_form import InputForm
from digitnet.service.contract.model import Model, flush_subnormals
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training import export
from digitnet.training.data import Dataset
from digitnet.training.form_graph import apply_form
from digitnet.training.train import TrainConfig, fit


@dataclass(frozen=True)
class Fitted:
    """A briefly trained classifier, its input form, and 200 digits it was not trained on: as given and formed."""

    classifier: MLPClassifier
    form: InputForm
    pixels: np.ndarray
    formed: np.ndarray

    def export(self, classifier: MLPClassifier | None = None) -> onnx.ModelProto:
        return export.to_onnx_model(classifier or self.classifier, self.form)


@pytest.fixture(scope="module", params=["relu", "logistic"])
def fitted(request: pytest.FixtureRequest, small_dataset: Dataset) -> Fitted:
    config = TrainConfig(activation=request.param, epochs=3, copies=0, blur=1.0 if request.param == "logistic" else 0.0)
    pixels = scale_uint8(small_dataset.images)
    held_out = np.arange(len(pixels)) % 4 == 0
    classifier = fit(pixels[~held_out], small_dataset.labels[~held_out], config).classifier
    return Fitted(classifier, config.form, pixels[held_out], apply_form(config.form, pixels[held_out]))


def _numpy_forward(classifier: MLPClassifier, x: np.ndarray) -> list[np.ndarray]:
    squash = (lambda z: np.maximum(z, 0)) if classifier.activation == "relu" else (lambda z: 1 / (1 + np.exp(-z)))
    layers = []
    for w, b in zip(classifier.coefs_[:-1], classifier.intercepts_[:-1]):
        x = squash(x @ w + b)
        layers.append(x)
    return layers


def test_the_file_on_pixels_matches_sklearn_and_numpy_on_formed_pixels(fitted: Fitted) -> None:
    classifier, formed = fitted.classifier, fitted.formed
    onnx_model = fitted.export()
    assert export.verify_export(onnx_model, classifier, fitted.pixels, formed) <= export.PROBABILITY_TOLERANCE
    out = Model.from_bytes(onnx_model.SerializeToString()).run(fitted.pixels)  # MNIST-form pixels: the form is in the graph
    np.testing.assert_array_equal(out.inputs, formed)
    np.testing.assert_allclose(out.probabilities, classifier.predict_proba(formed), atol=1e-5)
    np.testing.assert_array_equal(out.labels, classifier.predict(formed))
    for got, want in zip(out.hidden, _numpy_forward(classifier, formed.astype(np.float64))):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_graph_interface(fitted: Fitted) -> None:
    graph = fitted.export().graph
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == ["label", "probabilities", *OUTPUT_HIDDEN, OUTPUT_FORMED]
    assert not any(node.op_type == "ZipMap" for node in graph.node)
    assert any(node.op_type == "GatherElements" for node in graph.node), "the deskewing nodes are in front"


def test_verification_catches_a_form_that_is_not_trainings(fitted: Fitted) -> None:
    with pytest.raises(ExportVerificationError, match="input form differs from training's"):
        export.verify_export(fitted.export(), fitted.classifier, fitted.pixels, fitted.pixels)


def test_verification_catches_a_mismatch(fitted: Fitted) -> None:
    classifier = fitted.classifier
    onnx_model = fitted.export()
    # A classifier whose output layer is perturbed no longer matches the exported graph.
    tampered = MLPClassifier(hidden_layer_sizes=(16, 16))
    tampered.__dict__.update(classifier.__dict__)
    tampered.coefs_ = [w.copy() for w in classifier.coefs_]
    tampered.coefs_[-1][:, 3] += 0.5  # favour digit 3 (a shift of every column would cancel in softmax)
    with pytest.raises(ExportVerificationError, match="differ from scikit-learn's"):
        export.verify_export(onnx_model, tampered, fitted.pixels, fitted.formed)


def test_subnormal_weights_are_flushed_at_export_and_refused_by_verification(fitted: Fitted) -> None:
    # Dead ReLUs' weights decay to subnormal floats, which Intel CPUs compute ~50x slower: exports zero them.
    classifier = fitted.classifier
    decayed = MLPClassifier(hidden_layer_sizes=(16, 16))
    decayed.__dict__.update(classifier.__dict__)
    decayed.coefs_ = [w.copy() for w in classifier.coefs_]
    decayed.coefs_[0][:, 0] = 1e-41  # as a dead neuron's weights end up
    onnx_model = fitted.export(decayed)
    assert flush_subnormals(onnx_model) == 0  # none left to flush
    assert export.verify_export(onnx_model, decayed, fitted.pixels, fitted.formed) <= export.PROBABILITY_TOLERANCE
    [weights] = [init for init in onnx_model.graph.initializer if init.name == "coefficient"]
    values = numpy_helper.to_array(weights).copy()
    values[:3, 0] = np.float32(1e-40)
    weights.CopyFrom(numpy_helper.from_array(values, "coefficient"))
    with pytest.raises(ExportVerificationError, match="holds 3 subnormal weights"):
        export.verify_export(onnx_model, decayed, fitted.pixels, fitted.formed)


def test_atomic_write_keeps_old_file_on_interrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old model")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.atomic_write(target, b"new model, half written")  # the contract's, as export writes models
    assert target.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"], "the temporary file was left behind"


def test_trained_artifact_and_card(small_model: Path) -> None:
    card = read_card(small_model)
    model = Model.load(small_model)
    assert card.model_sha256 == model.sha256
    assert card.architecture.parameters == N_PARAMETERS and card.architecture.layers == [784, 16, 16, 10]
    assert card.data.images == 800 and card.export.images == 800
    assert card.cross_validation is not None and card.calibration is not None
    assert card.cross_validation.folds == 2 and card.cross_validation.repeats == 2
    assert np.sum(card.cross_validation.confusion_matrix) == 2 * 800
    assert card.export.max_probability_difference <= export.PROBABILITY_TOLERANCE
    assert card.input.deskew
    assert {"scikit-learn", "skl2onnx", "onnxruntime"} <= card.libraries.keys()
    assert card.input.dtype == "float32" and card.input.shape == [-1, 784]
    embedded = {p.key: p.value for p in onnx.load(small_model).metadata_props}[CARD_METADATA_KEY]
    assert json.loads(embedded) == {k: v for k, v in json.loads(card.to_json()).items() if k != "model_sha256"}
