"""Export a fitted MLPClassifier to ONNX behind its input form, with hidden-layer outputs; verify it, write it.

Usage:
    onnx_model = to_onnx_model(classifier, InputForm(deskew=True))   # pixels -> form -> network, one graph
    verify_export(onnx_model, classifier, pixels, apply_form(InputForm(deskew=True), pixels))   # raises ExportVerificationError
    write_artifact(onnx_model, card, Path("models/default.onnx"))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.neural_network import MLPClassifier

from digitnet.service.contract.card import ModelCard, card_path_for
from digitnet.service.contract.constants import (
    ACTIVATION_OPS,
    CARD_METADATA_KEY,
    HIDDEN_LAYERS,
    INPUT_NAME,
    N_PIXELS,
    OUTPUT_FORMED,
    OUTPUT_HIDDEN,
    OUTPUT_LABEL,
    OUTPUT_PROBABILITIES,
)
from digitnet.service.contract.errors import ExportVerificationError
from digitnet.service.contract.files import atomic_write
from digitnet.service.contract.input_form import InputForm
from digitnet.service.contract.model import Model, flush_subnormals
from digitnet.training.form_graph import attach_form
from digitnet.training.form_ops import OPSET

#: Largest allowed |p_onnx - p_sklearn| on any probability.
PROBABILITY_TOLERANCE = 1e-5
#: The ONNX activation op for each scikit-learn activation.


def to_onnx_model(classifier: MLPClassifier, form: InputForm) -> onnx.ModelProto:
    """Convert to ONNX (float32 input, no ZipMap), expose both hidden layers as named outputs, and put the
    input form's nodes in front: the file takes MNIST-form `pixels` and is the whole model."""
    model = to_onnx(
        classifier,
        initial_types=[(OUTPUT_FORMED, FloatTensorType([None, N_PIXELS]))],
        # zipmap=False: a plain [N, 10] probability tensor instead of a list of dicts.
        options={id(classifier): {"zipmap": False}},
        target_opset={"": OPSET, "ai.onnx.ml": 1},
    )
    graph = model.graph
    op = ACTIVATION_OPS[classifier.activation]
    hidden = [node.output[0] for node in graph.node if node.op_type == op]
    if len(hidden) != len(HIDDEN_LAYERS):
        raise ExportVerificationError(f"expected {len(HIDDEN_LAYERS)} {op} nodes in the converted graph, found {len(hidden)}")
    for source, name, width in zip(hidden, OUTPUT_HIDDEN, HIDDEN_LAYERS):
        graph.node.append(helper.make_node("Identity", [source], [name], name=f"expose_{name}"))
        graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, width]))
    names = [o.name for o in graph.output]
    if names[:2] != [OUTPUT_LABEL, OUTPUT_PROBABILITIES]:
        raise ExportVerificationError(f"unexpected converter outputs {names}: expected {OUTPUT_LABEL}, {OUTPUT_PROBABILITIES}")
    flush_subnormals(model)  # dead ReLUs' decayed weights: subnormal arithmetic made inference ~50x slower on Intel
    model = attach_form(model, form)
    onnx.checker.check_model(model, full_check=True)
    if [i.name for i in model.graph.input] != [INPUT_NAME]:
        raise ExportVerificationError(f"the exported graph's input is not {INPUT_NAME!r}")
    return model


def verify_export(model: onnx.ModelProto, classifier: MLPClassifier, pixels: np.ndarray, inputs: np.ndarray) -> float:
    """Check the file on MNIST-form pixels against scikit-learn on `inputs`, the same pixels as training put
    them in the input form (apply_form); return the largest probability difference."""
    output = Model.from_bytes(model.SerializeToString()).run(pixels)
    if not np.array_equal(output.inputs, inputs):
        difference = float(np.max(np.abs(output.inputs - inputs))) if len(inputs) else 0.0
        raise ExportVerificationError(f"the file's input form differs from training's by up to {difference:.2e}; nothing written")
    expected = classifier.predict_proba(inputs)
    difference = float(np.max(np.abs(output.probabilities - expected)))
    if difference > PROBABILITY_TOLERANCE:
        raise ExportVerificationError(
            f"ONNX probabilities differ from scikit-learn's by up to {difference:.2e} (allowed {PROBABILITY_TOLERANCE:.0e}); nothing written"
        )
    mismatched = int(np.sum(output.labels != classifier.predict(inputs)))
    if mismatched:
        raise ExportVerificationError(f"ONNX and scikit-learn disagree on {mismatched} of {len(inputs)} labels; nothing written")
    subnormal = flush_subnormals(onnx.load_from_string(model.SerializeToString()))  # counts them, on a copy
    if subnormal:
        raise ExportVerificationError(f"the ONNX model holds {subnormal} subnormal weights (slow on Intel CPUs); nothing written")
    return difference


def embed_card(model: onnx.ModelProto, card: ModelCard) -> None:
    """Store the card (without the file's own sha256, which cannot be known yet) in the ONNX metadata."""
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {CARD_METADATA_KEY: card.to_json(include_file_hash=False)})
    model.producer_name = "digitnet"


def write_artifact(model: onnx.ModelProto, card: ModelCard, path: Path) -> ModelCard:
    """Atomically write the model and its JSON card beside it; return the card with the file's sha256."""
    data = model.SerializeToString()
    final_card = card.with_file_hash(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Model first, then card: a crash between the two leaves a card whose sha256 no longer matches,
    # which Model.load refuses loudly, rather than a silently mismatched pair.
    atomic_write(path, data)
    atomic_write(card_path_for(path), final_card.to_json().encode())
    return final_card
