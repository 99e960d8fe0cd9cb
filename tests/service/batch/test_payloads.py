"""`digitnet payloads`: a payload log read back as images to label, and the labelled folder as IDX files that
training reads, pixel for pixel what the model saw."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitnet.service.cli.main import main
from digitnet.service.contract.results import Outcome, Prediction
from digitnet.service.telemetry.payloads import PayloadLog, note_answers, note_inputs
from digitnet.training.data import load_dataset

from ...conftest import GOLDEN

DIGITS = {digit: np.asarray(Image.open(GOLDEN / f"{digit}_mnist.png").convert("L"), dtype=np.uint8).ravel() for digit in (3, 7)}


def _log(path: Path) -> None:
    log = PayloadLog(path)
    for digit, pixels in DIGITS.items():
        log.begin(lambda d=digit: f"req/{d}")  # type: ignore[misc]
        note_inputs(pixels[None, :])
        note_answers([Prediction(Outcome.DIGIT, digit, 0.9, np.eye(10, dtype=np.float32)[digit])])
        log.finish("ModelInfer", "grpc", "OK", True, 0.001)
    log.begin(lambda: "big")
    note_inputs([b"x" * 10])  # not an image: recorded with no pixels, and not exported
    log.finish("Classify", "http", "400", False, 0.001)
    log.close()


def test_a_log_is_exported_labelled_and_read_back_as_idx(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _log(tmp_path / "payloads.jsonl")
    review = tmp_path / "review"
    assert main(["payloads", str(tmp_path / "payloads.jsonl"), "--out", str(review)]) == 0
    with (review / "manifest.csv").open() as manifest:
        rows = list(csv.DictReader(manifest))
    assert [(row["file"], row["answer"], row["request_id"], row["status"]) for row in rows] == [
        ("unlabelled/req_3-0.png", "3", "req/3", "OK"),
        ("unlabelled/req_7-0.png", "7", "req/7", "OK"),
    ]
    assert (np.asarray(Image.open(review / rows[1]["file"])).ravel() == DIGITS[7]).all()
    # A person labels them by moving each file into its digit's folder.
    for row in rows:
        (review / row["answer"]).mkdir()
        shutil.move(review / row["file"], review / row["answer"])
    assert main(["payloads", "--dataset", str(review)]) == 0
    assert "idx:" in capsys.readouterr().out
    dataset = load_dataset(f"idx:{review / 'idx'}")
    assert dataset.labels.tolist() == [3, 7]
    assert (dataset.images == np.stack([DIGITS[3], DIGITS[7]])).all()  # what the model saw, exactly


def test_the_command_says_what_it_needs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["payloads", "--out", str(tmp_path)]) == 2
    assert main(["payloads", "--dataset", str(tmp_path)]) == 2
    assert "no labelled images" in capsys.readouterr().err
