"""`digitnet report`: the model card as one self-contained HTML page (pictures inlined as PNG).

It draws; it does not load datasets: the caller hands it the model's validation digits (to show the
mistakes), or a sentence saying why there are none.

Usage:
    write_report(Path("models/default.onnx"), Path("report.html"), validation=(pixels, labels))
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from digitnet.service.contract.card import read_card
from digitnet.service.contract.constants import LABELS
from digitnet.service.contract.model import Model
from digitnet.service.contract.network import Network
from digitnet.service.visuals.drawing import draw_digit, draw_training_curve, draw_weights, to_png

#: How many misclassified validation digits the page shows.
MISTAKES_SHOWN = 12

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: right; border: 1px solid #ddd; }
th { background: #f4f4f4; } td.hit { background: #dff0d8; font-weight: bold; } .mistakes { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; text-align: center; font-size: 12px; } code { background: #f4f4f4; padding: 1px 4px; }
"""


def _image(png: bytes, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _confusion_table(matrix: list[list[int]]) -> str:
    header = "<tr><th>true \\ said</th>" + "".join(f"<th>{label}</th>" for label in LABELS) + "</tr>"
    rows = [
        f"<tr><th>{label}</th>" + "".join(f'<td class="{"hit" if i == j else ""}">{n}</td>' for j, n in enumerate(row)) + "</tr>"
        for i, (label, row) in enumerate(zip(LABELS, matrix))
    ]
    return "<table>" + header + "".join(rows) + "</table>"


def _mistakes(model_path: Path, validation: tuple[np.ndarray, np.ndarray] | str) -> str:
    if isinstance(validation, str):
        return f"<p>Not shown: {html.escape(validation)}.</p>"
    pixels, labels = validation
    out = Model.load(model_path, threads=1).run(pixels)
    wrong = np.flatnonzero(out.labels != labels)[:MISTAKES_SHOWN]
    figures = [
        f"<figure>{_image(to_png(draw_digit(pixels[i])), 'digit', 90)}<figcaption>true {labels[i]}, "
        f"said {out.labels[i]} ({out.probabilities[i].max():.0%})</figcaption></figure>"
        for i in wrong
    ]
    return f'<p>The first {len(wrong)} validation digits the model gets wrong:</p><div class="mistakes">{"".join(figures)}</div>'


def write_report(model_path: Path, out: Path, validation: tuple[np.ndarray, np.ndarray] | str) -> None:
    """Write the report page for a model and its card; `validation` is (pixels, labels), or why there are none."""
    card = read_card(model_path)
    network = Network.from_onnx(model_path)
    history = card.training.history
    curve = draw_training_curve(
        [h.epoch for h in history], [h.loss for h in history], [h.validation_accuracy for h in history], card.training.best_epoch
    )
    facts = {
        "layers": " - ".join(map(str, card.architecture.layers)),
        "hidden activation": card.architecture.activation,
        "weights and biases": f"{card.architecture.parameters:,}",
        "validation accuracy": f"{card.validation.accuracy:.2%} on {card.validation.images:,} digits (the epoch was chosen on them too)",
        "trained on": f"{card.data.train_images:,} digits of {html.escape(card.data.source)}, seed {card.training.seed}",
        "training": f"{card.training.epochs_run} epochs ({card.training.seconds:.0f} s), kept epoch {card.training.best_epoch}",
        "created": card.created,
        "model sha256": f"<code>{card.model_sha256}</code>",
    }
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>digitnet model {html.escape(card.name)}</title><style>{_STYLE}</style></head>
<body>
<h1>digitnet model <code>{html.escape(card.name)}</code></h1>
<p>784 pixels feed 16 neurons, which feed 16, which feed 10: each neuron takes a weighted sum of the layer before,
adds its bias and squishes it ({card.architecture.activation}); the last layer's softmax gives a probability per digit.</p>
<table>{"".join(f"<tr><th>{k}</th><td style='text-align:left'>{v}</td></tr>" for k, v in facts.items())}</table>
<h2>Confusion matrix (validation digits)</h2>
{_confusion_table(card.validation.confusion_matrix)}
<h2>Training curve</h2>
{_image(to_png(curve), "training curve")}
<h2>What the neurons look for</h2>
{_image(to_png(draw_weights(network)), "weights", 1050)}
<h2>Mistakes</h2>
{_mistakes(model_path, validation)}
<p><small>Inputs must be float32 [N, 784] in [0, 1]: {html.escape(card.input.layout)}.</small></p>
</body></html>
"""
    out.write_text(page, encoding="utf-8")
