"""The model's input form as ONNX operators: the one implementation of deskewing and blurring.

The exported file runs these nodes in front of the network, so Triton, KServe or a bare onnxruntime
session fed MNIST-form pixels give digitnet's answers; training runs the very same nodes in onnxruntime
over its digits (`apply_form`), so what the network learnt on and what it is served cannot drift.

Usage:
    formed = apply_form(InputForm(deskew=True, blur=1.0), pixels)     # float32 [N, 784] in [0, 1]
    model = attach_form(network, InputForm(deskew=True))              # pixels -> form -> network, one graph
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import onnx
import onnx.inliner
import onnxruntime as ort
import onnxscript.optimizer
from onnx import helper

from digitnet.service.contract.constants import INPUT_NAME, N_PIXELS, OUTPUT_FORMED
from digitnet.service.contract.input_form import InputForm
from digitnet.training.form_ops import OPSET, blur, deskew

#: The ONNX IR version of the file: what scikit-learn's converter writes, read by onnxruntime 1.16 and later
#: (and so by the Triton and KServe releases that ship those).
IR_VERSION = 10
# Training runs the form over this many digits per onnxruntime call: the graph's intermediates stay small.
_CHUNK = 8192


def form_model(form: InputForm) -> onnx.ModelProto:
    """The input form alone as an ONNX model: `pixels` float32 [N, 784] -> `network_input` [N, 784]."""
    steps = ([deskew] if form.deskew else []) + ([blur(form.blur)] if form.blur > 0 else [])
    names = [INPUT_NAME] + [f"form_step{index}" for index in range(1, len(steps))] + [OUTPUT_FORMED]
    nodes = [helper.make_node(step.name, [source], [target], domain=step.function_ir.domain) for step, source, target in zip(steps, names, names[1:])]
    if not steps:
        nodes = [helper.make_node("Identity", [INPUT_NAME], [OUTPUT_FORMED])]
    graph = helper.make_graph(
        nodes,
        "input_form",
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.FLOAT, [None, N_PIXELS])],
        [helper.make_tensor_value_info(OUTPUT_FORMED, onnx.TensorProto.FLOAT, [None, N_PIXELS])],
    )
    domains = {step.function_ir.domain for step in steps}
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), *(helper.make_opsetid(domain, 1) for domain in domains)],
        functions=[step.to_function_proto() for step in steps],
    )
    # One flat graph of standard operators, its constants folded: what any ONNX runtime can run. The
    # optimiser logs each constant it merges at INFO, which is not news to a user training a model.
    for noisy in ("onnx_ir", "onnxscript"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    model = onnxscript.optimizer.optimize(onnx.inliner.inline_local_functions(model))
    del model.functions[:]
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", OPSET))
    model.ir_version = IR_VERSION
    for index, node in enumerate(model.graph.node):
        node.name = f"form/{index}_{node.op_type}"
    onnx.checker.check_model(model, full_check=True)
    return model


def attach_form(network: onnx.ModelProto, form: InputForm) -> onnx.ModelProto:
    """Put the form's nodes in front of a network whose input is `network_input`: one graph from `pixels` to
    the network's outputs, with the formed pixels as one more output (what the network saw, for explain)."""
    inputs = [i.name for i in network.graph.input]
    if inputs != [OUTPUT_FORMED]:
        raise ValueError(f"the network's input must be {OUTPUT_FORMED!r} to take the form's output, got {inputs}")
    front = form_model(form)
    merged = onnx.compose.merge_models(front, network, io_map=[(OUTPUT_FORMED, OUTPUT_FORMED)])
    # The network's outputs first, as a reader of the file expects them (label, probabilities, ...).
    outputs = {o.name: o for o in [*network.graph.output, *front.graph.output]}
    del merged.graph.output[:]
    merged.graph.output.extend(outputs.values())
    opsets = {o.domain: o for o in merged.opset_import}  # both halves import the default domain
    del merged.opset_import[:]
    merged.opset_import.extend(opsets.values())
    merged.graph.name = network.graph.name
    return merged


def apply_form(form: InputForm, pixels: np.ndarray) -> np.ndarray:
    """Put MNIST-form pixels [N, 784] into the form by running its graph in onnxruntime; float32 [N, 784]."""
    pixels = np.ascontiguousarray(pixels, dtype=np.float32).reshape(-1, N_PIXELS)
    session = _session(form)
    parts = [session.run(None, {INPUT_NAME: pixels[start : start + _CHUNK]})[0] for start in range(0, len(pixels), _CHUNK)]
    return np.concatenate(parts) if parts else np.empty((0, N_PIXELS), np.float32)


@functools.cache
def _session(form: InputForm) -> ort.InferenceSession:
    options = ort.SessionOptions()
    # One thread: training already runs a process per core, and one thread gives the same bits every run.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(form_model(form).SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"])
