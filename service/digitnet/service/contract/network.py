"""The network's weights read back from an ONNX artifact, and one image's activations as the model returned them.

This is the "see inside" view: 784 pixels -> 16 -> 16 -> 10, each neuron a weighted sum of the layer
before plus a bias, squished by ReLU or sigmoid; softmax turns the last layer into probabilities. The
activations are the model's own (onnxruntime's, shipped by the Explain RPC), never recomputed here: the
weights only say how much each connection contributed.

Usage:
    net = Network.from_onnx(Path("models/default.onnx"))
    trace = Trace.of(classifier.explain(image))
    trace.hidden[0], trace.probabilities, net.contributions(trace, layer=1)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from digitnet.service.contract.constants import ACTIVATION_OPS, LAYER_SIZES, N_CLASSES, OUTPUT_FORMED, Activation
from digitnet.service.contract.errors import ModelError
from digitnet.service.contract.results import Explanation

_SQUASH = {op: activation for activation, op in ACTIVATION_OPS.items()}


def squash(activation: Activation, z: np.ndarray) -> np.ndarray:
    """A hidden layer's activation function: the ReLU or the sigmoid (scikit-learn's "logistic")."""
    return np.maximum(z, 0.0) if activation == "relu" else 1.0 / (1.0 + np.exp(-z))


@dataclass(frozen=True)
class Trace:
    """Every layer's values for one input."""

    input: np.ndarray  # [784]
    hidden: tuple[np.ndarray, np.ndarray]  # [16], [16] after the activation
    probabilities: np.ndarray  # [10]: all 0 when the model gave no answer (a blank image)

    @classmethod
    def of(cls, explanation: Explanation) -> Trace:
        """The layers of an explanation: the input the model saw and the activations it returned."""
        probabilities = explanation.prediction.probabilities
        return cls(explanation.input, (explanation.hidden1, explanation.hidden2), probabilities if probabilities.size else np.zeros(N_CLASSES))

    @property
    def layers(self) -> list[np.ndarray]:
        """Input, both hidden layers and the output probabilities, in order."""
        return [self.input, *self.hidden, self.probabilities]


@dataclass(frozen=True)
class Network:
    """Weights [in, out] and biases [out] of the three layers, and the hidden activation."""

    weights: tuple[np.ndarray, np.ndarray, np.ndarray]
    biases: tuple[np.ndarray, np.ndarray, np.ndarray]
    activation: Activation

    @classmethod
    def from_onnx(cls, path: Path) -> Network:
        """Read the layers of an ONNX file."""
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ModelError(f"{path}: cannot read the model: {err.strerror}") from err
        return cls.from_bytes(data, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, origin: str = "model") -> Network:
        """Read the layers by following the network's part of the graph (after the input form): each MatMul's
        weights and the Add after it."""
        path = origin
        try:
            graph = onnx.load_from_string(data).graph
        except Exception as err:  # protobuf's DecodeError and friends
            raise ModelError(f"{path}: not an ONNX model: {err}") from err
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        nodes = _network_nodes(graph)
        weights = [constants[n.input[1]] for n in nodes if n.op_type == "MatMul" and n.input[1] in constants]
        biases = [constants[n.input[1]].ravel() for n in nodes if n.op_type == "Add" and n.input[1] in constants]
        squashes = {_SQUASH[n.op_type] for n in nodes if n.op_type in _SQUASH}
        shapes = [w.shape for w in weights]
        expected = list(zip(LAYER_SIZES, LAYER_SIZES[1:]))
        if shapes != expected or len(biases) != 3 or len(squashes) != 1:
            raise ModelError(f"{path}: not a 784-16-16-10 network (layers {shapes}, activations {sorted(squashes)})")
        return cls(tuple(weights), tuple(biases), squashes.pop())  # type: ignore[arg-type]

    def squash(self, z: np.ndarray) -> np.ndarray:
        """Apply the hidden-layer activation."""
        return squash(self.activation, z)

    def contributions(self, trace: Trace, layer: int) -> np.ndarray:
        """Weight x activation for each connection into `layer` (1, 2 or 3): [inputs, neurons]."""
        return trace.layers[layer - 1][:, None] * self.weights[layer - 1]

    def second_layer_patterns(self) -> np.ndarray:
        """What each second-layer neuron responds to, as a pixel pattern [16, 784]: W1 @ W2's columns.

        The linear part only (the first layer's activation is ignored): a pixel's weight here is how much
        lighting it up pushes the neuron's input, through every first-layer neuron.
        """
        return (self.weights[0] @ self.weights[1]).T


def _network_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes that depend on the input form's output: the network, without the form's own matrices."""
    reached = {OUTPUT_FORMED}
    nodes = []
    for node in graph.node:  # ONNX keeps nodes in topological order
        if reached.intersection(node.input):
            nodes.append(node)
            reached.update(node.output)
    return nodes
