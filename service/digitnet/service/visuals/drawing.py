"""Pictures of the network at work (matplotlib, headless): one input's journey, and the weights.

The numbers come from the model (the activations it returned) and contract/network.py (its weights); this
module only draws them.

Usage:
    figure = draw_network(net, Trace.of(classifier.explain(image)))
    save(figure, Path("picture.png"))
"""

from __future__ import annotations

import io
from pathlib import Path

from digitnet.service.contract.errors import ConfigurationError

try:
    import matplotlib
except ModuleNotFoundError as err:  # the pictures are an extra: say so in one line wherever they are asked for
    raise ConfigurationError("drawing needs matplotlib, which this install lacks: pip install 'digitnet[viz]', or the digitnet-viz image") from err

matplotlib.use("Agg")  # headless: no display is ever needed

import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle, Rectangle  # noqa: E402

from digitnet.service.contract.constants import IMAGE_SIDE, LABELS  # noqa: E402
from digitnet.service.contract.network import Network, Trace  # noqa: E402
from digitnet.service.contract.picture_style import HOLDS_DOWN, PUSHES_UP, STRONGEST, WINNER  # noqa: E402

#: The weights' colour scale: red (holds the neuron down) through white to blue (pushes it up).
_WEIGHT_COLOURS = LinearSegmentedColormap.from_list("digitnet-weights", [HOLDS_DOWN, "#ffffff", PUSHES_UP])
_IMAGE_SIZE = 4.2  # the input image's side in drawing units
_LAYER_X = (6.5, 9.5, 12.5)  # hidden 1, hidden 2, output


def save(figure: Figure, path: Path) -> None:
    """Write a figure as PNG (or any format matplotlib knows from the suffix) and free it."""
    figure.savefig(path, dpi=110, bbox_inches="tight", facecolor=figure.get_facecolor())
    plt.close(figure)


def to_png(figure: Figure) -> bytes:
    """Render a figure to PNG bytes and free it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight", facecolor=figure.get_facecolor())
    plt.close(figure)
    return buffer.getvalue()


def _neuron_positions(count: int, height: float) -> np.ndarray:
    return np.linspace(height, 0.0, count) if count > 1 else np.array([height / 2])


def _pixel_position(index: int, bottom: float) -> tuple[float, float]:
    cell = _IMAGE_SIZE / IMAGE_SIDE
    row, col = divmod(index, IMAGE_SIDE)
    return (col + 0.5) * cell, bottom + _IMAGE_SIZE - (row + 0.5) * cell


def draw_network(network: Network, trace: Trace, title: str = "") -> Figure:
    """Draw the input as the model saw it, both hidden layers shaded by activation, the outputs, and the
    strongest connections into each neuron coloured by their contribution (weight x activation)."""
    height = 9.0
    # Dark, as in 3Blue1Brown's video: a neuron lights up (white) as its activation grows.
    figure, axes = plt.subplots(figsize=(13, 8.5), facecolor="black")
    axes.set_xlim(-0.3, 15.2)
    axes.set_ylim(-0.9, height + 0.9)
    axes.set_aspect("equal")
    axes.axis("off")
    bottom = (height - _IMAGE_SIZE) / 2
    axes.imshow(
        trace.input.reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray", vmin=0, vmax=1, extent=(0, _IMAGE_SIZE, bottom, bottom + _IMAGE_SIZE), zorder=1
    )
    axes.add_patch(Rectangle((0, bottom), _IMAGE_SIZE, _IMAGE_SIZE, fill=False, edgecolor="0.5", lw=0.8))
    axes.text(
        _IMAGE_SIZE / 2, bottom - 0.35, "input: 28 x 28 = 784 pixels\n(as the network saw it)", ha="center", va="top", fontsize=9, color="white"
    )

    ys = [_neuron_positions(16, height), _neuron_positions(16, height), _neuron_positions(10, height * 0.9) + height * 0.05]
    winner = int(np.argmax(trace.probabilities))
    # Connections first, so that neurons are drawn over them.
    for layer in (1, 2, 3):
        contributions = network.contributions(trace, layer)
        scale = np.abs(contributions).max() or 1.0
        for neuron in range(contributions.shape[1]):
            incoming = contributions[:, neuron]
            for source in np.argsort(-np.abs(incoming))[: STRONGEST[layer]]:
                value = incoming[source]
                if value == 0:
                    continue
                start = _pixel_position(int(source), bottom) if layer == 1 else (_LAYER_X[layer - 2], ys[layer - 2][source])
                axes.plot(
                    [start[0], _LAYER_X[layer - 1]],
                    [start[1], ys[layer - 1][neuron]],
                    color=PUSHES_UP if value > 0 else HOLDS_DOWN,
                    lw=0.4 + 2.6 * abs(value) / scale,
                    alpha=0.25 + 0.6 * abs(value) / scale,
                    zorder=2,
                )

    names = ("hidden layer 1\n16 neurons", "hidden layer 2\n16 neurons", "output\n10 digits")
    values = (*trace.hidden, trace.probabilities)
    for x, y, shade, name, layer in zip(_LAYER_X, ys, values, names, range(3)):
        top = shade.max() if layer < 2 and shade.max() > 0 else 1.0  # ReLU is unbounded: shade by the layer's max
        for i, (yy, value) in enumerate(zip(y, shade)):
            is_winner = layer == 2 and i == winner
            axes.add_patch(
                Circle(
                    (x, yy),
                    0.22,
                    facecolor=str(0.03 + 0.97 * min(float(value) / top, 1.0)),  # float32 probabilities can exceed 1 by an ulp
                    zorder=3,
                    edgecolor=WINNER if is_winner else "0.6",
                    lw=3 if is_winner else 0.8,
                )
            )
            if layer == 2:
                axes.text(
                    x + 0.4,
                    yy,
                    f"{LABELS[i]}  {value:6.1%}",
                    va="center",
                    fontsize=10,
                    fontweight="bold" if is_winner else "normal",
                    color=WINNER if is_winner else "white",
                )
            else:
                axes.text(x + 0.3, yy + 0.12, f"{value:.2f}", ha="left", va="bottom", fontsize=6, color="0.6", zorder=4)
        axes.text(x, height + 0.45, name, ha="center", va="bottom", fontsize=9, color="white")
    axes.plot([], [], color=PUSHES_UP, lw=2, label="pushes the neuron up (weight x activation > 0)")
    axes.plot([], [], color=HOLDS_DOWN, lw=2, label="pushes it down (< 0)")
    axes.legend(loc="lower left", fontsize=8, frameon=False, bbox_to_anchor=(0.0, -0.04), labelcolor="white")
    headline = title or f"the network says {winner} ({trace.probabilities[winner]:.1%})"
    axes.set_title(
        f"{headline}\nbrightness: how active each neuron is; lines: the strongest connections into each neuron", fontsize=11, color="white"
    )
    return figure


def _tile_grid(figure: Figure, spec: object, patterns: np.ndarray, labels: list[str]) -> None:
    # One shared, symmetric scale so colours compare across tiles; clipped at half the largest weight
    # (as scikit-learn's MNIST-filters example does) so that one strong weight does not wash out the rest.
    limit = 0.5 * float(np.abs(patterns).max()) or 1.0
    grid = spec.subgridspec(4, 4, hspace=0.45, wspace=0.1)  # type: ignore[attr-defined]
    image = None
    for index, (pattern, label) in enumerate(zip(patterns, labels)):
        axes = figure.add_subplot(grid[index // 4, index % 4])
        image = axes.imshow(pattern.reshape(IMAGE_SIDE, IMAGE_SIDE), cmap=_WEIGHT_COLOURS, vmin=-limit, vmax=limit)
        axes.set_title(label, fontsize=7)
        axes.set_xticks([])
        axes.set_yticks([])
    assert image is not None, "a grid needs at least one tile"
    figure.colorbar(image, ax=figure.axes[-16:], shrink=0.6, extend="both", label="weight (blue: ink here raises the neuron; red: lowers it)")


def _faint_neurons(network: Network) -> list[np.ndarray]:
    # A neuron whose largest incoming weight is under 3 % of its layer's largest barely looks at anything
    # (weight decay shrinks what stopped learning). Not called dead: that word means a ReLU no training
    # digit switches on (the card counts those), which the weights alone cannot tell.
    strength = [np.abs(w).max(axis=0) for w in network.weights[:2]]
    return [s < 0.03 * s.max() for s in strength]


def draw_weights(network: Network) -> Figure:
    """Draw what each neuron of both hidden layers looks for, as 4x4 grids of 28x28 pixel patterns."""
    figure = plt.figure(figsize=(15, 7.5))
    outer = figure.add_gridspec(1, 2, wspace=0.15)
    first, second = (
        [f"layer {layer + 1}, neuron {i}\nbias {b:+.2f}" + (" (faint)" if f else "") for i, (b, f) in enumerate(zip(network.biases[layer], faint))]
        for layer, faint in enumerate(_faint_neurons(network))
    )
    _tile_grid(figure, outer[0], network.weights[0].T, first)
    _tile_grid(figure, outer[1], network.second_layer_patterns(), second)
    figure.text(0.27, 0.97, "Layer 1: each neuron's 784 weights as a picture", ha="center", fontsize=12)
    figure.text(0.73, 0.97, "Layer 2: the pixel pattern each neuron responds to (W1 x W2)", ha="center", fontsize=12)
    figure.text(
        0.5,
        0.015,
        "Blue pixels raise the neuron when ink is there, red ones lower it; each grid shares one colour scale.",
        ha="center",
        fontsize=9,
        color="0.3",
    )
    return figure


def draw_training_curve(epochs: list[int], losses: list[float]) -> Figure:
    """Draw the final model's training loss per epoch."""
    figure, axes = plt.subplots(figsize=(6, 3))
    axes.plot(epochs, losses, color=PUSHES_UP)
    axes.set_xlabel("epoch")
    axes.set_ylabel("training loss")
    figure.tight_layout()
    return figure


def draw_digit(pixels: np.ndarray) -> Figure:
    """Draw one 28x28 digit, small."""
    figure, axes = plt.subplots(figsize=(1.2, 1.2))
    axes.imshow(pixels.reshape(IMAGE_SIDE, IMAGE_SIDE), cmap="gray", vmin=0, vmax=1)
    axes.axis("off")
    return figure
