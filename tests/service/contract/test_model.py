"""The artifact contract: the committed default model, its card, verification and provider choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from digitnet.service.contract.card import ModelCard, card_path_for, check_model_name, read_card, sha256_hex
from digitnet.service.contract.constants import N_PARAMETERS
from digitnet.service.contract.errors import ConfigurationError, InvalidInput, ModelError
from digitnet.service.contract.input_form import MAX_BLUR
from digitnet.service.contract.model import Model, choose_providers
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.data import Dataset
from digitnet.training.evaluate import evaluate
from digitnet.training.form_graph import apply_form

from ...conftest import DEFAULT_MODEL, LOGISTIC_MODEL


# Issue 15's goals: 96% (relu) and 95.5% (logistic).
@pytest.mark.parametrize(("path", "activation", "goal"), [(DEFAULT_MODEL, "relu", 0.96), (LOGISTIC_MODEL, "logistic", 0.955)])
def test_committed_models_reach_their_cross_validated_accuracy_and_calibration(path: Path, activation: str, goal: float) -> None:
    card = read_card(path)
    assert card.model_sha256 == sha256_hex(path.read_bytes())
    assert card.architecture.parameters == N_PARAMETERS and card.architecture.activation == activation
    assert card.data.source.startswith("mnist5k") and card.data.images == 5000
    assert card.cross_validation is not None and card.calibration is not None
    assert card.cross_validation.repeats >= 3 and card.cross_validation.folds == 5
    assert card.cross_validation.accuracy >= goal, "by the card's cross-validated estimate"
    assert card.calibration.ece_after <= 0.01
    assert card.training.seconds <= 180, "trained within 3 minutes on the 2-core machine"


def test_committed_model_is_refused_the_digits_it_was_trained_on(mnist5k: Dataset) -> None:
    with pytest.raises(ConfigurationError, match="was trained on these digits"):
        evaluate(DEFAULT_MODEL, "mnist5k")


@pytest.mark.parametrize("path", [DEFAULT_MODEL, LOGISTIC_MODEL])
def test_the_graph_applies_the_input_form_its_card_names_as_training_did(path: Path, mnist5k: Dataset) -> None:
    model = Model.load(path)
    assert model.card is not None and model.card.input.deskew
    pixels = scale_uint8(mnist5k.images[:40])
    out = model.run(pixels)
    np.testing.assert_array_equal(out.inputs, apply_form(model.card.input.form, pixels))
    assert not np.array_equal(out.inputs, pixels)


def test_a_card_from_before_the_form_was_in_the_graph_is_refused_with_what_to_do() -> None:
    card = json.loads(card_path_for(LOGISTIC_MODEL).read_text()) | {"card_version": 3}
    with pytest.raises(
        ModelError,
        match=r"^v3.json: a version 3 model card; this digitnet reads version 4: its input form runs outside the ONNX file.*train",
    ):
        ModelCard.from_json(json.dumps(card), "v3.json")


def test_a_card_asking_for_more_blur_than_a_digit_survives_is_refused() -> None:
    card = json.loads(card_path_for(LOGISTIC_MODEL).read_text())
    card["input"]["blur"] = MAX_BLUR + 1
    with pytest.raises(ModelError, match=r"^smudge.json: not a valid digitnet model card: input.blur: Input should be less than or equal to 4$"):
        ModelCard.from_json(json.dumps(card), "smudge.json")


def test_a_card_of_an_older_version_is_refused_with_what_to_do(tmp_path: Path) -> None:
    copy = tmp_path / "old.onnx"
    shutil.copy(DEFAULT_MODEL, copy)
    old = json.loads(card_path_for(DEFAULT_MODEL).read_text()) | {"card_version": 1}
    card_path_for(copy).write_text(json.dumps(old))
    with pytest.raises(ModelError, match="a version 1 model card; this digitnet reads version 4: .*re-train it with `digitnet train`"):
        Model.load(copy)


def test_a_file_whose_graph_does_not_output_the_formed_pixels_is_refused(tmp_path: Path) -> None:
    import onnx

    from ..conftest import _write_with_card

    model = onnx.load(str(DEFAULT_MODEL))
    [formed] = [o for o in model.graph.output if o.name == "network_input"]
    model.graph.output.remove(formed)
    with pytest.raises(ModelError, match=r"^model lacks outputs \['network_input'\]: re-train it with `digitnet train`"):
        Model.load(_write_with_card(model, tmp_path / "no-form.onnx"))


def test_a_card_from_a_newer_digitnet_asks_for_an_upgrade_not_a_retrain() -> None:
    card = json.loads(card_path_for(DEFAULT_MODEL).read_text()) | {"card_version": 99}
    with pytest.raises(ModelError, match=r"^new.json: a version 99 model card; this digitnet reads version 4: upgrade digitnet to serve it$"):
        ModelCard.from_json(json.dumps(card), "new.json")


def test_model_refuses_a_file_that_does_not_match_its_card(tmp_path: Path) -> None:
    copy = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, copy)
    shutil.copy(card_path_for(DEFAULT_MODEL), card_path_for(copy))
    copy.write_bytes(copy.read_bytes() + b"\0")
    with pytest.raises(ModelError, match="does not match its card"):
        Model.load(copy)


def test_model_without_card_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, copy)
    with pytest.raises(ModelError, match="cannot read the model card"):
        Model.load(copy)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "m", "0", "relu-v2.1_b", "A" * 64])
def test_a_model_name_of_letters_digits_and_separators_is_allowed(name: str) -> None:
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "x y", "-relu", ".hidden", "_x", "a/b", "a:b", "relu\n", "A" * 65, "r\u00e9lu", "a%2Fb"])
def test_a_model_name_that_cannot_sit_in_a_url_or_a_metric_label_is_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_model_name(name)
    message = str(refused.value)
    assert message == f"model name {name!r} is not allowed: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    assert "\n" not in message


def test_malformed_card_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, copy)
    card_path_for(copy).write_text('{"name": "x"}')
    with pytest.raises(ModelError, match="not a valid digitnet model card"):
        Model.load(copy)


def test_run_returns_probabilities_labels_and_hidden_layers(mnist5k: Dataset) -> None:
    model = Model.load(DEFAULT_MODEL)
    out = model.run(mnist5k.images[:32].astype(np.float32) / 255)
    assert out.probabilities.shape == (32, 10) and out.labels.shape == (32,)
    np.testing.assert_allclose(out.probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out.labels, out.probabilities.argmax(axis=1))
    assert [h.shape for h in out.hidden] == [(32, 16), (32, 16)]
    assert np.mean(out.labels == mnist5k.labels[:32]) > 0.9


def test_cpu_provider_is_reported() -> None:
    assert Model.load(DEFAULT_MODEL, provider="cpu").provider == "CPUExecutionProvider"


def test_cuda_missing_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ConfigurationError, match="no CUDA execution provider.*onnxruntime-gpu"):
        choose_providers("cuda")
    assert choose_providers("auto") == ["CPUExecutionProvider"]


def test_a_model_that_answers_nan_is_refused_at_warm_up(tmp_path: Path) -> None:
    # It answers an all-black image fine, so a warm-up on zeros alone let it serve NaN confidences.
    from ..conftest import write_model_that_answers_nan

    model = Model.load(write_model_that_answers_nan(tmp_path / "nan.onnx"), threads=1)
    with pytest.raises(ModelError, match="not finite or do not add up to 1"):
        model.warm_up()


def test_non_finite_probabilities_are_never_a_guess() -> None:
    from digitnet.service.contract.results import Outcome
    from digitnet.service.inference.classifier import decide

    prediction = decide(np.array([np.nan] * 10, dtype=np.float32), 0.0)
    assert prediction.outcome is Outcome.ERROR and "NaN or infinite" in prediction.reason


def test_a_model_with_subnormal_weights_is_flushed_at_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An artifact exported before exports flushed them still serves at full speed, with a warning.
    import onnx
    from onnx import numpy_helper

    from ..conftest import _write_with_card

    model = onnx.load(str(DEFAULT_MODEL))
    [weights] = [init for init in model.graph.initializer if init.name == "coefficient"]
    values = numpy_helper.to_array(weights).copy()
    values[:5, 0] = np.float32(1e-40)  # subnormal
    weights.CopyFrom(numpy_helper.from_array(values, "coefficient"))
    path = _write_with_card(model, tmp_path / "subnormal.onnx")
    with caplog.at_level("WARNING"):
        loaded = Model.load(path, threads=1)
    assert "holds 5 subnormal weights" in caplog.text
    pixels = np.random.default_rng(0).random((8, 784), dtype=np.float32)
    np.testing.assert_allclose(loaded.run(pixels).probabilities, Model.load(DEFAULT_MODEL, threads=1).run(pixels).probabilities, atol=1e-6)
