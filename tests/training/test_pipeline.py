"""The train -> export -> evaluate jobs end to end, through the `digitnet` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digitnet.service.cli.main import main
from digitnet.service.contract.card import read_card
from digitnet.service.contract.errors import ConfigurationError, ExportVerificationError, InvalidInput
from digitnet.training import evaluate as evaluate_module
from digitnet.training import export, pipeline
from digitnet.training.data import Dataset, write_idx
from digitnet.training.train import TrainConfig


def test_failed_verification_writes_nothing(tmp_path: Path, small_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "load_dataset", lambda spec, part="train": small_dataset)
    monkeypatch.setattr(export, "PROBABILITY_TOLERANCE", -1.0)  # no export can pass
    with pytest.raises(ExportVerificationError, match="nothing written"):
        pipeline.train_and_export("mnist5k", TrainConfig(epochs=1, copies=0), tmp_path / "m.onnx", repeats=0)
    assert list(tmp_path.iterdir()) == []


def test_the_card_is_named_by_name_else_by_the_file_stem(tmp_path: Path, small_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "load_dataset", lambda spec, part="train": small_dataset)
    config = TrainConfig(epochs=1, copies=0)
    assert pipeline.train_and_export("mnist5k", config, tmp_path / "default.onnx", repeats=0, name="relu").name == "relu"
    assert read_card(tmp_path / "default.onnx").name == "relu"
    assert pipeline.train_and_export("mnist5k", config, tmp_path / "stem.onnx", repeats=0).name == "stem"


def test_a_bad_model_name_is_refused_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_load(*args: object, **kwargs: object) -> object:
        raise AssertionError("the digits were loaded before the name was checked")

    monkeypatch.setattr(pipeline, "load_dataset", must_not_load)
    with pytest.raises(InvalidInput, match="model name 'a b' is not allowed"):
        pipeline.train_and_export("mnist5k", TrainConfig(epochs=1, copies=0), tmp_path / "m.onnx", name="a b")
    with pytest.raises(InvalidInput, match="model name 'my model' is not allowed"):
        pipeline.train_and_export("mnist5k", TrainConfig(epochs=1, copies=0), tmp_path / "my model.onnx")
    assert list(tmp_path.iterdir()) == []


def test_a_blurring_recipe_is_served_blurred(tmp_path: Path, small_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    from digitnet.service.contract.input_form import InputForm
    from digitnet.service.contract.model import Model
    from digitnet.service.contract.pixels import scale_uint8
    from digitnet.training.form_graph import apply_form

    monkeypatch.setattr(pipeline, "load_dataset", lambda spec, part="train": small_dataset)
    out = tmp_path / "blurred.onnx"
    pipeline.train_and_export("mnist5k", TrainConfig(activation="logistic", epochs=2, copies=0, blur=1.0), out, repeats=0)
    assert read_card(out).input.form == InputForm(deskew=True, blur=1.0)
    pixels = scale_uint8(small_dataset.images[:30])
    served = Model.load(out).run(pixels)
    np.testing.assert_array_equal(served.inputs, apply_form(InputForm(deskew=True, blur=1.0), pixels))


def test_the_card_reports_the_cross_validation(small_model: Path) -> None:
    card = read_card(small_model)
    cv, calibration = card.cross_validation, card.calibration
    assert cv is not None and calibration is not None
    assert cv.accuracy == pytest.approx(np.mean(cv.accuracies)) and len(cv.accuracies) == 2
    assert cv.accuracy == pytest.approx(np.trace(np.array(cv.confusion_matrix)) / (2 * 800))
    answered = [row.answered for row in cv.selective]
    assert answered[0] == 1.0 and answered == sorted(answered, reverse=True)
    assert all(m.label != m.predicted for m in cv.mistakes) and len(cv.mistakes) == pipeline.MISTAKES_KEPT
    assert calibration.temperature > 0 and 0 <= calibration.ece_after and calibration.bins == 15
    assert f"{cv.accuracy:.2%}" in card.estimate_line() and "temperature" in card.estimate_line()


def test_the_temperature_is_folded_into_the_output_layer(small_dataset: Dataset) -> None:
    from digitnet.service.contract.pixels import scale_uint8
    from digitnet.training.calibration import apply_temperature
    from digitnet.training.form_graph import apply_form
    from digitnet.training.train import fit

    config = TrainConfig(epochs=2, copies=0)
    classifier = fit(scale_uint8(small_dataset.images), small_dataset.labels, config).classifier
    pixels = apply_form(config.form, scale_uint8(small_dataset.images[:50]))
    before = classifier.predict_proba(pixels)
    pipeline.fold_temperature(classifier, 2.5)
    np.testing.assert_allclose(classifier.predict_proba(pixels), apply_temperature(before, 2.5), atol=1e-5)
    assert sum(w.size for w in classifier.coefs_) + sum(b.size for b in classifier.intercepts_) == 13_002


def test_evaluate_refuses_the_digits_a_model_was_trained_on(small_model: Path, small_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate_module, "load_dataset", lambda spec, part="train": small_dataset)
    with pytest.raises(ConfigurationError, match="was trained on these digits.*cross-validated estimate.*--data idx:DIR"):
        evaluate_module.evaluate(small_model, "mnist5k")


def test_evaluate_without_data_prints_the_estimate(small_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model", str(small_model)]) == 0
    assert "cross-validated accuracy" in capsys.readouterr().out


def test_cli_trains_on_idx_files_and_evaluates_on_t10k(tmp_path: Path, small_dataset: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    for prefix, rows in (("train", slice(0, 700)), ("t10k", slice(700, 800))):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", small_dataset.images[rows].reshape(-1, 28, 28))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", small_dataset.labels[rows])
    out = tmp_path / "idx.onnx"
    train = ["train", "--data", f"idx:{tmp_path}", "--epochs", "3", "--cv-folds", "2", "--cv-repeats", "1", "--heavy-pen", "0.3"]
    assert main([*train, "--out", str(out), "--quiet"]) == 0
    card = read_card(out)
    assert card.data.images == 700 and card.data.source.startswith("idx:")
    assert card.training.config["augment"]["heavy_pen"] == 0.3  # type: ignore[index]
    capsys.readouterr()
    assert main(["evaluate", "--model", str(out), "--data", f"idx:{tmp_path}"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "on 100 digits" in printed
    matrix = np.array([[int(v) for v in line.split()[1:]] for line in printed.splitlines()[-10:]])
    assert matrix.shape == (10, 10) and matrix.sum() == 100


def test_cli_reports_bad_data_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--data", f"idx:{tmp_path}", "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert "digitnet train: error:" in err and "missing train-images-idx3-ubyte" in err
    assert "Traceback" not in err and not (tmp_path / "x.onnx").exists()


@pytest.mark.slow
def test_default_training_command_end_to_end(tmp_path: Path) -> None:
    """The documented command, as a subprocess, on all 5,000 digits (a shortened run: fewer epochs and repeats)."""
    out = tmp_path / "e2e.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "digitnet.service.cli", "train", "--epochs", "4", "--cv-repeats", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "final model: epoch   4" in done.stderr and "repeat 1 fold 5" in done.stderr
    card = read_card(out)
    assert card.cross_validation is not None and card.data.images == 5000
    assert f"cross-validated accuracy {card.cross_validation.accuracy:.2%}" in done.stdout
    assert card.cross_validation.accuracy > 0.85
