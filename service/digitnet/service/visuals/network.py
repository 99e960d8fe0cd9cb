"""The network's weights read back from an ONNX artifact, and a plain numpy forward pass over them.

This is the "see inside" view: 784 pixels -> 16 -> 16 -> 10, each neuron a weighted sum of the layer
before plus a bias, squished by ReLU or sigmoid; softmax turns the last layer into probabilities.

Usage:
    net = Network.from_onnx(Path("models/default.onnx"))
    trace = net.forward(pixels)          # pixels: float32 [784] in [0, 1]
    trace.hidden[0], trace.probabilities, net.contributions(trace, layer=1)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from digitnet.service.contract.constants import LAYER_SIZES
from digitnet.service.contract.errors import ModelError

_SQUASH = {"Relu": "relu", "Sigmoid": "logistic"}


@dataclass(frozen=True)
class Trace:
    """Every layer's values for one input."""

    input: np.ndarray  # [784]
    hidden: tuple[np.ndarray, np.ndarray]  # [16], [16] after the activation
    logits: np.ndarray  # [10] before softmax
    probabilities: np.ndarray  # [10]

    @property
    def layers(self) -> list[np.ndarray]:
        """Input, both hidden layers and the output probabilities, in order."""
        return [self.input, *self.hidden, self.probabilities]


@dataclass(frozen=True)
class Network:
    """Weights [in, out] and biases [out] of the three layers, and the hidden activation."""

    weights: tuple[np.ndarray, np.ndarray, np.ndarray]
    biases: tuple[np.ndarray, np.ndarray, np.ndarray]
    activation: str  # relu or logistic

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
        """Read the layers by following the graph: each MatMul's weights and the Add after it."""
        path = origin
        try:
            graph = onnx.load_from_string(data).graph
        except Exception as err:  # protobuf's DecodeError and friends
            raise ModelError(f"{path}: not an ONNX model: {err}") from err
        constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        weights = [constants[n.input[1]] for n in graph.node if n.op_type == "MatMul" and n.input[1] in constants]
        biases = [constants[n.input[1]].ravel() for n in graph.node if n.op_type == "Add" and n.input[1] in constants]
        squashes = {_SQUASH[n.op_type] for n in graph.node if n.op_type in _SQUASH}
        shapes = [w.shape for w in weights]
        expected = list(zip(LAYER_SIZES, LAYER_SIZES[1:]))
        if shapes != expected or len(biases) != 3 or len(squashes) != 1:
            raise ModelError(f"{path}: not a 784-16-16-10 network (layers {shapes}, activations {sorted(squashes)})")
        return cls(tuple(weights), tuple(biases), squashes.pop())  # type: ignore[arg-type]

    def squash(self, z: np.ndarray) -> np.ndarray:
        """Apply the hidden-layer activation."""
        return np.maximum(z, 0.0) if self.activation == "relu" else 1.0 / (1.0 + np.exp(-z))

    def forward(self, pixels: np.ndarray) -> Trace:
        """Run one image [784] through the layers in float64 numpy."""
        x = pixels.astype(np.float64)
        h1 = self.squash(x @ self.weights[0] + self.biases[0])
        h2 = self.squash(h1 @ self.weights[1] + self.biases[1])
        logits = h2 @ self.weights[2] + self.biases[2]
        exp = np.exp(logits - logits.max())
        return Trace(x, (h1, h2), logits, exp / exp.sum())

    def contributions(self, trace: Trace, layer: int) -> np.ndarray:
        """Weight x activation for each connection into `layer` (1, 2 or 3): [inputs, neurons]."""
        return trace.layers[layer - 1][:, None] * self.weights[layer - 1]

    def second_layer_patterns(self) -> np.ndarray:
        """What each second-layer neuron responds to, as a pixel pattern [16, 784]: W1 @ W2's columns.

        The linear part only (the first layer's activation is ignored): a pixel's weight here is how much
        lighting it up pushes the neuron's input, through every first-layer neuron.
        """
        return (self.weights[0] @ self.weights[1]).T
