"""The train -> export -> evaluate jobs end to end, through the `digitnet` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digitnet.service.cli.main import main
from digitnet.service.contract.card import read_card
from digitnet.service.contract.errors import ExportVerificationError
from digitnet.training import evaluate as evaluate_module
from digitnet.training import export, pipeline
from digitnet.training.data import Dataset, write_idx
from digitnet.training.train import TrainConfig


def test_failed_verification_writes_nothing(tmp_path: Path, small_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "load_dataset", lambda spec, part="train": small_dataset)
    monkeypatch.setattr(export, "PROBABILITY_TOLERANCE", -1.0)  # no export can pass
    with pytest.raises(ExportVerificationError, match="nothing written"):
        pipeline.train_and_export("mnist5k", TrainConfig(max_epochs=1, distorted_copies=0), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_evaluate_reproduces_card_accuracy(small_model: Path, small_dataset: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evaluate_module, "load_dataset", lambda spec, part="train": small_dataset)
    result = evaluate_module.evaluate(small_model)
    card = read_card(small_model)
    assert result.accuracy == card.validation.accuracy
    assert result.confusion_matrix.tolist() == card.validation.confusion_matrix


def test_cli_trains_on_idx_files_and_evaluates_on_t10k(tmp_path: Path, small_dataset: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    for prefix, rows in (("train", slice(0, 700)), ("t10k", slice(700, 800))):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", small_dataset.images[rows].reshape(-1, 28, 28))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", small_dataset.labels[rows])
    out = tmp_path / "idx.onnx"
    assert main(["train", "--data", f"idx:{tmp_path}", "--epochs", "3", "--out", str(out), "--quiet"]) == 0
    card = read_card(out)
    assert card.data.images == 700 and card.data.source.startswith("idx:")
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
    """The documented command, as a subprocess, on all 5,000 digits (a shortened run)."""
    out = tmp_path / "e2e.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "digitnet.service.cli", "train", "--epochs", "8", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "epoch   8" in done.stderr and "validation accuracy" in done.stdout
    card = read_card(out)
    assert card.data.images == 5000 and card.data.validation_images == 1000
    assert card.validation.accuracy > 0.85
