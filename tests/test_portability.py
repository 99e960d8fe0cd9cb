"""The committed files are the whole model: a bare onnxruntime session, as Triton or KServe run them, fed
MNIST-form pixels, gives digitnet's answers, on real digit images and on a generated folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from digitnet.service.cli.main import main
from digitnet.service.contract.limits import Limits
from digitnet.service.contract.model import Model
from digitnet.service.inference.classifier import Classifier, prepare
from digitnet.training.data import Dataset

from .conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL

MODELS = [DEFAULT_MODEL, LOGISTIC_MODEL]
#: How far a bare session's probabilities may be from digitnet's: the same graph, another session.
TOLERANCE = 1e-4


def _bare(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities of the file alone: a default onnxruntime session, nothing of digitnet's."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels, probabilities = session.run(["label", "probabilities"], {"pixels": pixels.astype(np.float32)})
    return labels, probabilities


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_a_bare_session_gives_digitnets_answers_on_every_golden_image(path: Path) -> None:
    files = sorted(f for f in GOLDEN.iterdir() if f.is_file() and f.name[0].isdigit() and f.suffix in (".png", ".jpg"))
    assert len(files) == 40
    classifier = Classifier(Model.load(path, threads=1), min_confidence=0.0)
    answers = classifier.classify([f.read_bytes() for f in files])
    # The user's side: digitnet's preprocessing only turns each file into MNIST-form pixels; the file does the rest.
    pixels = np.stack([prepare(f.read_bytes(), Limits()) for f in files])  # type: ignore[misc]
    labels, probabilities = _bare(path, pixels)
    assert labels.tolist() == [a.label for a in answers]
    np.testing.assert_allclose(probabilities, np.stack([a.probabilities for a in answers]), atol=TOLERANCE)
    right = [label == int(f.name[0]) for label, f in zip(labels, files)]
    assert sum(right) >= 38, f"golden digits read wrong by the file alone: {[f.name for f, ok in zip(files, right) if not ok]}"


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.name)
def test_a_bare_session_gives_what_digitnet_score_writes_for_a_folder(
    path: Path, mnist5k: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # MNIST-form files, as a Triton user's client would send them: 28x28, white ink on black.
    folder = tmp_path / "digits"
    folder.mkdir()
    chosen = np.random.default_rng(1).choice(len(mnist5k), 300, replace=False)
    for index in chosen:
        Image.fromarray(mnist5k.images[index].reshape(28, 28)).save(folder / f"{index:04d}.png")
    out = tmp_path / "scores.jsonl"
    assert main(["score", str(folder), "--model", str(path), "--out", str(out), "--min-confidence", "0", "--workers", "1"]) == 0
    capsys.readouterr()
    rows = sorted((json.loads(line) for line in out.read_text().splitlines()), key=lambda row: row["path"])
    pixels = np.stack([np.asarray(Image.open(row["path"]), dtype=np.float32).reshape(784) / 255 for row in rows])
    labels, probabilities = _bare(path, pixels)
    assert labels.tolist() == [row["label"] for row in rows]
    np.testing.assert_allclose(probabilities, [row["probabilities"] for row in rows], atol=TOLERANCE)


def test_the_readmes_triton_config_matches_the_files_graph() -> None:
    import re

    import onnx
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    page = (Path(__file__).resolve().parents[1] / "docs" / "model.md").read_text()
    [block] = re.findall(r"```protobuf\n(.*?)```", page, re.DOTALL)
    config = text_format.Parse(block, model_config_pb2.ModelConfig())
    assert config.backend == "onnxruntime" and config.max_batch_size > 0
    kinds = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.INT64: "TYPE_INT64"}
    for path in MODELS:
        graph = onnx.load(str(path)).graph

        def described(tensors: list[onnx.ValueInfoProto]) -> dict[str, tuple[str, list[int]]]:
            # Triton's dims leave out the batch dimension; a tensor of the batch dimension alone is [1] reshaped to [].
            shapes = {t.name: [d.dim_value for d in t.type.tensor_type.shape.dim[1:]] for t in tensors}
            return {t.name: (kinds[t.type.tensor_type.elem_type], shapes[t.name] or [1]) for t in tensors}

        declared_inputs = {i.name: (model_config_pb2.DataType.Name(i.data_type), list(i.dims)) for i in config.input}
        declared_outputs = {o.name: (model_config_pb2.DataType.Name(o.data_type), list(o.dims)) for o in config.output}
        assert declared_inputs == described(list(graph.input))
        assert declared_outputs == described(list(graph.output))
        assert [list(o.reshape.shape) for o in config.output if o.HasField("reshape")] == [[]]
