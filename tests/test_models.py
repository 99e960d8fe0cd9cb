"""The committed artifacts in models/: each loads, matches its card, and is fast on every CPU."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from digitnet.service.contract.card import read_card, sha256_hex
from digitnet.service.contract.model import flush_subnormals

MODELS = sorted((Path(__file__).resolve().parents[1] / "models").glob("*.onnx"))


@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_committed_model_has_no_subnormal_weights(path: Path) -> None:
    # 791 subnormal weights (dead ReLUs' decayed weights) made onnxruntime ~50x slower on Intel CPUs.
    assert flush_subnormals(onnx.load(str(path))) == 0


@pytest.mark.parametrize("path", MODELS, ids=[p.name for p in MODELS])
def test_committed_model_matches_its_card(path: Path) -> None:
    assert read_card(path).model_sha256 == sha256_hex(path.read_bytes())


def test_there_is_a_committed_default_model() -> None:
    assert [p.name for p in MODELS if p.name == "default.onnx"]


def test_the_committed_models_are_named_by_their_activation() -> None:
    # The server serves models by their card's name (/v2/models/NAME); the files keep their names.
    assert {p.name: read_card(p).name for p in MODELS} == {"default.onnx": "relu", "logistic.onnx": "sigmoid"}
