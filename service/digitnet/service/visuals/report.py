"""`digitnet report`: model cards as one self-contained HTML page (pictures inlined as PNG), side by side.

It draws; it does not load datasets: the caller hands it the bundled digits (to show those the
cross-validated models got wrong), or a sentence saying why there are none.

Usage:
    write_report([Path("models/default.onnx"), Path("models/logistic.onnx")], Path("report.html"), Digits(pixels, sha256))
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitnet.service.contract.card import ModelCard, read_card
from digitnet.service.contract.constants import LABELS
from digitnet.service.contract.network import Network
from digitnet.service.visuals.drawing import draw_digit, draw_training_curve, draw_weights, to_png


@dataclass(frozen=True)
class Digits:
    """Training digits [N, 784] in [0, 1] and their fingerprint (a card's data.sha256 says if they are its)."""

    pixels: np.ndarray
    sha256: str


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; } td, th { padding: 2px 8px; text-align: right; border: 1px solid #ddd; }
th { background: #f4f4f4; } td.hit { background: #dff0d8; font-weight: bold; } .mistakes { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; text-align: center; font-size: 12px; } code { background: #f4f4f4; padding: 1px 4px; }
"""


def _image(png: bytes, alt: str, width: int | None = None) -> str:
    size = f' width="{width}"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "<tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"
    return "<table>" + head + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows) + "</table>"


def _confusion_table(matrix: list[list[int]]) -> str:
    header = "<tr><th>true \\ said</th>" + "".join(f"<th>{label}</th>" for label in LABELS) + "</tr>"
    rows = [
        f"<tr><th>{label}</th>" + "".join(f'<td class="{"hit" if i == j else ""}">{n}</td>' for j, n in enumerate(row)) + "</tr>"
        for i, (label, row) in enumerate(zip(LABELS, matrix))
    ]
    return "<table>" + header + "".join(rows) + "</table>"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _comparison(cards: Sequence[ModelCard]) -> str:
    rows = []
    for card in cards:
        cv, calibration = card.cross_validation, card.calibration
        rows.append(
            [
                f"<code>{html.escape(card.name)}</code>",
                card.architecture.activation,
                "-" if cv is None else f"{cv.accuracy:.2%} ± {cv.accuracy_sd:.2%}",
                "-" if calibration is None else f"{calibration.ece_before:.2%} → {calibration.ece_after:.2%}",
                "-" if calibration is None else f"{calibration.temperature:.3f}",
                f"{card.training.seconds:.0f} s",
            ]
        )
    header = ["model", "activation", "cross-validated accuracy", "calibration error (ECE)", "temperature", "training"]
    return _table(header, rows)


def _selective(card: ModelCard) -> str:
    if card.cross_validation is None:
        return "<p>No cross-validated predictions: trained with <code>--cv-repeats 0</code>.</p>"
    rows = [[f"{r.threshold:.2f}", f"{r.answered:.1%}", _percent(r.accuracy)] for r in card.cross_validation.selective]
    return (
        "<p>What <code>min_confidence</code> does: the share of digits answered and the accuracy on them "
        "(cross-validated predictions, calibrated).</p>" + _table(["min_confidence", "answered", "accuracy"], rows)
    )


def _mistakes(card: ModelCard, digits: Digits | str) -> str:
    if card.cross_validation is None:
        return ""
    if isinstance(digits, Digits) and digits.sha256 != card.data.sha256:
        digits = f"the model was trained on {card.data.source}, not on the bundled digits"
    if isinstance(digits, str):
        return f"<p>Mistakes not shown: {html.escape(digits)}.</p>"
    figures = [
        f"<figure>{_image(to_png(draw_digit(digits.pixels[m.index])), 'digit', 90)}<figcaption>#{m.index}: true {m.label}, "
        f"said {m.predicted} ({m.confidence:.0%})</figcaption></figure>"
        for m in card.cross_validation.mistakes
    ]
    return f'<p>The cross-validated models\' most confident mistakes:</p><div class="mistakes">{"".join(figures)}</div>'


def _section(path: Path, card: ModelCard, digits: Digits | str) -> str:
    history = card.training.history
    cv = card.cross_validation
    facts = {
        "layers": " - ".join(map(str, card.architecture.layers)),
        "hidden activation": card.architecture.activation,
        "weights and biases": f"{card.architecture.parameters:,}",
        "accuracy to expect": html.escape(card.estimate_line()),
        "trained on": f"all {card.data.images:,} digits of {html.escape(card.data.source)}, seed {card.training.seed}",
        "training": f"{card.training.epochs} epochs ({card.training.seconds:.0f} s)",
        "dead neurons": " and ".join(
            f"{n} of {size} in layer {i}" for i, (n, size) in enumerate(zip(card.training.dead_units, card.architecture.layers[1:-1]), 1)
        ),
        "input form": card.input.form.describe(),
        "created": card.created,
        "model sha256": f"<code>{card.model_sha256}</code>",
    }
    confusions = (
        "" if cv is None else f"<h3>Confusion matrix (cross-validated, {cv.repeats} repeats summed)</h3>{_confusion_table(cv.confusion_matrix)}"
    )
    return f"""<h2>Model <code>{html.escape(card.name)}</code> ({html.escape(path.name)})</h2>
<table>{"".join(f"<tr><th>{k}</th><td style='text-align:left'>{v}</td></tr>" for k, v in facts.items())}</table>
{confusions}
<h3>Confidence</h3>
{_selective(card)}
<h3>Training curve</h3>
{_image(to_png(draw_training_curve([h.epoch for h in history], [h.loss for h in history])), "training curve")}
<h3>What the neurons look for</h3>
{_image(to_png(draw_weights(Network.from_onnx(path))), "weights", 1050)}
<h3>Mistakes</h3>
{_mistakes(card, digits)}
"""


def write_report(models: Sequence[Path], out: Path, digits: Digits | str) -> None:
    """Write one page comparing models and describing each; `digits` are the bundled digits the cards'
    mistakes index, or why there are none."""
    cards = [read_card(path) for path in models]
    sections = "".join(_section(path, card, digits) for path, card in zip(models, cards))
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>digitnet models</title><style>{_STYLE}</style></head>
<body>
<h1>digitnet models</h1>
<p>784 pixels feed 16 neurons, which feed 16, which feed 10: each neuron takes a weighted sum of the layer before,
adds its bias and squishes it (ReLU or the logistic sigmoid); the last layer's softmax gives a probability per digit.
Accuracy is cross-validated: every digit is scored by models that never saw it.</p>
{_comparison(cards)}
{sections}
<p><small>Inputs must be float32 [N, 784] in [0, 1]: {html.escape(cards[0].input.layout) if cards else ""}.</small></p>
</body></html>
"""
    out.write_text(page, encoding="utf-8")
