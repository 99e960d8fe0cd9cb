"""What the input form (deskewing, blur) costs a served request: Model.run with the card's form against the same graph without it.

Run: ./dev run python bench/input_form_bench.py [--model models/default.onnx] [--repeats 200]
One thread, side by side in one run (the ratio is what to read on a shared machine); prints a markdown table.
Each step is also timed alone (the blur at the card's sigma, or sigma 1 for a model that does not blur).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from machine import cpu_name

from digitnet.service.contract.deskew import deskew
from digitnet.service.contract.input_form import gaussian_blur
from digitnet.service.contract.model import Model
from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.data import load_dataset

REPO = Path(__file__).resolve().parents[1]


def median_microseconds(run: object, pixels: np.ndarray, repeats: int) -> float:
    """Median wall time of run(pixels), in microseconds."""
    assert callable(run)
    for _ in range(5):
        run(pixels)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run(pixels)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1e6


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "default.onnx")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    with_card = Model.load(args.model, threads=1)
    form = with_card.input_form
    assert form.deskew or form.blur, f"{args.model}'s card asks for no input form"
    graph_only = Model.from_bytes(with_card.data, threads=1)
    digits = scale_uint8(load_dataset("mnist5k").images)
    print(f"# {args.model.name} (input form: {form.describe()}), one thread, median of {args.repeats}; {cpu_name()}")
    print("| images per call | network only µs | deskew µs | blur µs | input form only µs | input form + network µs | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch in (1, 64, 1000):
        pixels = digits[:batch]
        network = median_microseconds(graph_only.run, pixels, args.repeats)
        deskewing = median_microseconds(deskew, pixels, args.repeats)
        blurring = median_microseconds(lambda p: gaussian_blur(p, form.blur or 1.0), pixels, args.repeats)
        alone = median_microseconds(form.apply, pixels, args.repeats)
        both = median_microseconds(with_card.run, pixels, args.repeats)
        print(f"| {batch:,} | {network:,.0f} | {deskewing:,.0f} | {blurring:,.0f} | {alone:,.0f} | {both:,.0f} | {both / network:.2f}x |")


if __name__ == "__main__":
    main()
