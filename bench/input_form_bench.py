"""The whole model in one onnxruntime call (input form + network, as the file now holds them) against the
path served before: the form in Python with OpenCV, then the network.

Run: ./dev run python bench/input_form_bench.py [--repeats 200]
One thread, every row of a model measured side by side in one run (the ratios are what to read on a shared
machine); prints a markdown table per committed model. "network alone" is the file's network cut out of it
(onnx.utils.Extractor, from `network_input`), "before" is tests/training/reference_form.py (the OpenCV
deskew and blur that Model.run applied before issue 22) followed by that network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from machine import cpu_name

from digitnet.service.contract.constants import OUTPUT_FORMED, OUTPUT_HIDDEN, OUTPUT_LABEL, OUTPUT_PROBABILITIES
from digitnet.service.contract.model import Model
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.data import load_dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the OpenCV reference lives with the tests that hold the graph to it
from tests.training import reference_form  # noqa: E402

#: The speed goals of issue 22 for the whole model on one thread.
GOALS_US = {1: 40.0, 1000: 8000.0}


def median_microseconds(run: Callable[[np.ndarray], object], pixels: np.ndarray, repeats: int) -> float:
    """Median wall time of run(pixels), in microseconds."""
    for _ in range(5):
        run(pixels)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(pixels)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e6


def network_alone(path: Path) -> ort.InferenceSession:
    """The file's network without its input form: the subgraph from `network_input` to the outputs."""
    outputs = [OUTPUT_LABEL, OUTPUT_PROBABILITIES, *OUTPUT_HIDDEN]
    with tempfile.TemporaryDirectory() as folder:
        cut = Path(folder) / "network.onnx"
        onnx.utils.extract_model(str(path), str(cut), [OUTPUT_FORMED], outputs)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        return ort.InferenceSession(str(cut), options, providers=["CPUExecutionProvider"])


def main() -> None:
    """Print a table per model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", default=[REPO / "models" / "default.onnx", REPO / "models" / "logistic.onnx"])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    digits = scale_uint8(load_dataset("mnist5k").images)
    print(f"CPU: {cpu_name()}; onnxruntime {ort.__version__}, one thread, median of {args.repeats} calls\n")
    for path in args.models:
        model = Model.load(path, threads=1)
        assert model.card is not None
        form = model.card.input.form
        network = network_alone(path)

        def before(pixels: np.ndarray) -> object:
            formed = reference_form.deskew(pixels) if form.deskew else pixels
            formed = reference_form.gaussian_blur(formed, form.blur) if form.blur else formed
            return network.run(None, {OUTPUT_FORMED: formed})

        def network_only(pixels: np.ndarray) -> object:
            return network.run(None, {OUTPUT_FORMED: pixels})

        # The two paths answer alike before either is timed.
        check = digits[:1000]
        assert np.array_equal(before(check)[0], model.run(check).labels), f"{path.name}: the two paths disagree"
        print(f"## {path.name} ({model.card.architecture.activation}; input form: {form.describe()})\n")
        print("| images per call | network alone µs | before: Python form + network µs | whole model, one call µs | before / now | goal |")
        print("|---:|---:|---:|---:|---:|---|")
        for batch in (1, 64, 1000):
            pixels = digits[:batch]
            alone = median_microseconds(network_only, pixels, args.repeats)
            old = median_microseconds(before, pixels, args.repeats)
            now = median_microseconds(model.run, pixels, args.repeats)
            goal = GOALS_US.get(batch)
            verdict = "" if goal is None else f"≤ {goal:,.0f} µs: {'met' if now <= goal else 'NOT met'}"
            print(f"| {batch:,} | {alone:,.1f} | {old:,.1f} | {now:,.1f} | {old / now:.1f}x | {verdict} |")
        print()


if __name__ == "__main__":
    main()
