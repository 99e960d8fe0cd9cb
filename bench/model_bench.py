"""Benchmark onnxruntime in-process on models side by side: one thread, a batch of 1,000 and a single row.

Run: ./dev run python bench/model_bench.py [MODEL.onnx ...]   (default: the committed model)
e.g. git show 9f97fa0:models/default.onnx > /tmp/old.onnx && ./dev run python bench/model_bench.py /tmp/old.onnx models/default.onnx
Prints a markdown table (docs/benchmarks.md); rows of one run compare, with the CPU named.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from machine import cpu_name

from digitnet.service.contract.model import flush_subnormals

REPO = Path(__file__).resolve().parents[1]


def _median_seconds(session: ort.InferenceSession, pixels: np.ndarray, repeats: int) -> float:
    for _ in range(5):
        session.run(None, {"pixels": pixels})
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, {"pixels": pixels})
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main() -> None:
    """Print one row per model."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", type=Path, default=[REPO / "models" / "default.onnx"])
    args = parser.parse_args()
    cpu = cpu_name()
    print(f"CPU: {cpu}; onnxruntime {ort.__version__}, 1 thread\n")
    print("| model | subnormal weights | batch of 1,000 (ms, median) | one row (us, median) |")
    print("|---|---:|---:|---:|")
    batch = np.random.default_rng(0).random((1000, 784), dtype=np.float32)
    for path in args.models:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])  # as the file is, not flushed
        subnormal = flush_subnormals(onnx.load(str(path)))
        print(f"| {path} | {subnormal} | {_median_seconds(session, batch, 30) * 1e3:.3f} | {_median_seconds(session, batch[:1], 300) * 1e6:.1f} |")


if __name__ == "__main__":
    main()
