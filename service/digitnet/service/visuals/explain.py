"""`digitnet explain` and `digitnet weights`: draw one image's trip through the network, or the weights.

Locally or through a server's Explain RPC the picture is the same: both draw the input and activations
the model returned, through the same weights, fetched from the server when remote.

Usage:
    explain_to_file(Path("seven.png"), Path("picture.png"), model=Path("models/default.onnx"))
"""

from __future__ import annotations

from pathlib import Path

from digitnet.service.contract.errors import DigitnetError
from digitnet.service.contract.model import Model
from digitnet.service.contract.network import Network, Trace
from digitnet.service.contract.results import Explanation, Outcome
from digitnet.service.inference.classifier import Classifier
from digitnet.service.visuals.drawing import draw_network, draw_weights, save


def explain_image(
    image: bytes, model: Path | None = None, server: str | None = None, min_confidence: float | None = None
) -> tuple[Network, Explanation]:
    """Classify one image locally or on a server; return the network's weights and the explanation."""
    if server:
        from digitnet.service.client.digit_client import DigitClient

        with DigitClient(server) as client:
            network = Network.from_bytes(client.model_info(include_model=True).model_onnx, f"the model served at {server}")
            return network, client.explain(image, min_confidence)
    if model is None:
        raise DigitnetError("explain needs --model or --server")
    loaded = Model.load(model, threads=1)
    return Network.from_bytes(loaded.data, str(model)), Classifier(loaded).explain(image, min_confidence)


def headline(explanation: Explanation) -> str:
    """The picture's title: the answer, or why there is none."""
    prediction = explanation.prediction
    if prediction.outcome is Outcome.DIGIT:
        return f"the network says {prediction.label} ({prediction.confidence:.1%})"
    return f"no answer: {prediction.reason}"


def explain_to_file(
    image_path: Path, out: Path, model: Path | None = None, server: str | None = None, min_confidence: float | None = None
) -> Explanation:
    """Draw one image's trip through the network into `out` (PNG, SVG or PDF by suffix)."""
    try:
        image = image_path.read_bytes()
    except OSError as err:
        raise DigitnetError(f"cannot read {image_path}: {err.strerror}") from err
    network, explanation = explain_image(image, model, server, min_confidence)
    save(draw_network(network, Trace.of(explanation), headline(explanation)), out)
    return explanation


def weights_to_file(model: Path, out: Path) -> None:
    """Draw what every hidden neuron looks for into `out`."""
    save(draw_weights(Network.from_onnx(model)), out)
