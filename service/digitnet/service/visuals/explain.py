"""`digitnet explain` and `digitnet weights`: draw one image's trip through the network, or the weights.

Locally or through a server's Explain RPC the picture is the same: both draw the input and activations
the model returned, through the same weights, fetched from the server when remote.

Usage:
    explain_to_file(Path("seven.png"), Path("picture.png"), model=Path("models/default.onnx"))
    explain_to_file(Path("seven.png"), Path("picture.png"), server="localhost:50051", model_name="sigmoid")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from digitnet.service.contract.errors import DigitnetError
from digitnet.service.contract.model import Model
from digitnet.service.contract.network import Network, Trace
from digitnet.service.contract.results import Explanation, Outcome
from digitnet.service.inference.classifier import Classifier
from digitnet.service.visuals.drawing import draw_network, draw_weights, save


@dataclass(frozen=True)
class Explained:
    """One image explained: the weights of the network that answered, what it saw, and which model it is."""

    network: Network
    explanation: Explanation
    #: The model that answered: its name on the server (ModelInfo.name; "" from a server too old to say), or the file.
    model: str


def explain_image(
    image: bytes, model: Path | None = None, server: str | None = None, min_confidence: float | None = None, model_name: str = ""
) -> Explained:
    """Classify one image locally (`model`) or on a server (its model `model_name`, "": its default); return
    the network's weights and the explanation."""
    if server:
        from digitnet.service.client.digit_client import DigitClient

        with DigitClient(server, model=model_name) as client:
            info = client.model_info(include_model=True)
            served = f"model {info.name or model_name or 'digitnet'!r} served at {server}"
            return Explained(Network.from_bytes(info.model_onnx, served), client.explain(image, min_confidence), info.name)
    if model is None:
        raise DigitnetError("explain needs --model or --server")
    loaded = Model.load(model, threads=1)
    return Explained(Network.from_bytes(loaded.data, str(model)), Classifier(loaded).explain(image, min_confidence), str(model))


def headline(explanation: Explanation) -> str:
    """The picture's title: the answer, or why there is none."""
    prediction = explanation.prediction
    if prediction.outcome is Outcome.DIGIT:
        return f"the network says {prediction.label} ({prediction.confidence:.1%})"
    return f"no answer: {prediction.reason}"


def explain_to_file(
    image_path: Path, out: Path, model: Path | None = None, server: str | None = None, min_confidence: float | None = None, model_name: str = ""
) -> Explained:
    """Draw one image's trip through the network into `out` (PNG, SVG or PDF by suffix)."""
    try:
        image = image_path.read_bytes()
    except OSError as err:
        raise DigitnetError(f"cannot read {image_path}: {err.strerror}") from err
    explained = explain_image(image, model, server, min_confidence, model_name)
    save(draw_network(explained.network, Trace.of(explained.explanation), headline(explained.explanation)), out)
    return explained


def weights_to_file(model: Path, out: Path) -> None:
    """Draw what every hidden neuron looks for into `out`."""
    save(draw_weights(Network.from_onnx(model)), out)
