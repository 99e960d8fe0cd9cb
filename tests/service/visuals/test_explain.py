"""Explain and weights pictures: the numbers drawn come from the model, locally and through a server alike."""

from __future__ import annotations

import io
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitnet.service.cli.main import main
from digitnet.service.contract.card import read_card
from digitnet.service.contract.model import Model
from digitnet.service.contract.network import Network, Trace
from digitnet.service.inference.classifier import Classifier
from digitnet.service.visuals.drawing import draw_network, to_png
from digitnet.service.visuals.explain import explain_image, headline

from ...conftest import DEFAULT_MODEL, GOLDEN, LOGISTIC_MODEL
from ..conftest import ServerThread


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def test_the_weights_read_back_turn_each_returned_layer_into_the_next() -> None:
    network = Network.from_onnx(DEFAULT_MODEL)
    explanation = Classifier(Model.load(DEFAULT_MODEL)).explain((GOLDEN / "2_scan.jpg").read_bytes())
    trace = Trace.of(explanation)
    # Each layer's contributions plus its bias, squashed, give the next layer the model returned.
    np.testing.assert_allclose(network.squash(network.contributions(trace, 1).sum(axis=0) + network.biases[0]), trace.hidden[0], atol=1e-4)
    np.testing.assert_allclose(network.squash(network.contributions(trace, 2).sum(axis=0) + network.biases[1]), trace.hidden[1], atol=1e-4)
    np.testing.assert_allclose(_softmax(network.contributions(trace, 3).sum(axis=0) + network.biases[2]), trace.probabilities, atol=1e-5)
    assert explanation.prediction.label == int(np.argmax(trace.probabilities)) == 2
    assert network.contributions(trace, 3).shape == (16, 10)


def test_network_reads_a_logistic_model(small_dataset: object, tmp_path: Path) -> None:
    from digitnet.training import pipeline
    from digitnet.training.train import TrainConfig

    out = tmp_path / "logistic.onnx"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "load_dataset", lambda spec, part="train": small_dataset)
        pipeline.train_and_export("mnist5k", TrainConfig(activation="logistic", epochs=1, copies=0), out, repeats=0)
    network = Network.from_onnx(out)
    assert network.activation == "logistic"
    pixels = np.asarray(Image.open(GOLDEN / "5_mnist.png"), dtype=np.float32).reshape(-1) / 255
    run = Model.load(out).run(pixels[None])
    seen = run.inputs[0]  # deskewed, as the card says
    np.testing.assert_allclose(network.squash(seen @ network.weights[0] + network.biases[0]), run.hidden[0][0], atol=1e-5)


def test_a_blank_image_is_drawn_with_no_output_lit() -> None:
    explanation = Classifier(Model.load(DEFAULT_MODEL)).explain(np.zeros(784, dtype=np.uint8))
    trace = Trace.of(explanation)
    assert not trace.input.any() and trace.probabilities.shape == (10,) and not trace.probabilities.any()
    assert headline(explanation) == "no answer: blank image: too little ink to be a digit"


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_local_and_server_pictures_are_the_same(server: ServerThread) -> None:
    image = (GOLDEN / "6_rgba.png").read_bytes()
    pictures = []
    for where in ({"model": DEFAULT_MODEL}, {"server": server.address}):
        explained = explain_image(image, **where)  # type: ignore[arg-type]
        pictures.append(_pixels(to_png(draw_network(explained.network, Trace.of(explained.explanation), headline(explained.explanation)))))
    assert pictures[0].shape == pictures[1].shape and np.array_equal(pictures[0], pictures[1])


def test_cli_writes_readable_pictures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", str(GOLDEN / "3_scan.png"), "-o", str(tmp_path / "e.png")]) == 0
    assert "the network says 3" in capsys.readouterr().out
    assert main(["weights", "-o", str(tmp_path / "w.png")]) == 0
    for name in ("e.png", "w.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.format == "PNG" and picture.width > 800


def test_blank_image_is_explained_as_no_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    assert main(["explain", str(blank), "-o", str(tmp_path / "e.png")]) == 0
    assert "no answer: blank image" in capsys.readouterr().out


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_report_shows_the_installed_models_side_by_side_in_one_page(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", "-o", str(out)]) == 0
    page = _Collector()
    page.feed(out.read_text())
    text = " ".join(page.text)
    cards = [read_card(path) for path in (DEFAULT_MODEL, LOGISTIC_MODEL)]
    for card in cards:
        assert card.cross_validation is not None and card.calibration is not None
        assert f"{card.cross_validation.accuracy:.2%} ± {card.cross_validation.accuracy_sd:.2%}" in text
        assert f"{card.calibration.temperature:.3f}" in text
    assert "13,002" in text and "Confusion matrix" in text and "relu" in text and "logistic" in text
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert len(page.images) == len(cards) * (2 + 12)  # per model: training curve, weights, twelve mistakes
    assert "true " in text and "said " in text


def test_pictures_without_the_viz_extra_are_one_clear_line(tmp_path: Path) -> None:
    probe = "import sys\nsys.modules['matplotlib'] = None\nfrom digitnet.service.cli.main import main\nraise SystemExit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", probe, "weights", "-o", str(tmp_path / "w.png")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not (tmp_path / "w.png").exists()
    lacks = "drawing needs matplotlib, which this install lacks: pip install 'digitnet[viz]', or the digitnet-viz image"
    assert done.stderr.strip() == f"digitnet weights: error: {lacks}"
