"""Cross-validate one training recipe and print its row of docs/training.md's tables.

Usage:
    ./dev run python bench/recipe_bench.py relu                                  # the committed relu recipe
    ./dev run python bench/recipe_bench.py relu learning_rate=0.1 --repeats 3    # a variant: NAME=JSON overrides
    ./dev run python bench/recipe_bench.py logistic epochs=60 augment.stroke_change=0

Repeat r uses the same folds and seeds in every run (they derive from the recipe's seed), so two rows can be
compared repeat by repeat. The temperature and the calibration error are those `digitnet train` records.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
from machine import cpu_name

from digitnet.service.contract.pixels import scale_uint8
from digitnet.training.calibration import cross_fitted, pooled_ece, pooled_temperature
from digitnet.training.crossval import cross_validate
from digitnet.training.data import load_dataset
from digitnet.training.train import TrainConfig, recipe


def override(config: TrainConfig, assignments: list[str]) -> TrainConfig:
    """Apply NAME=JSON assignments (augment.NAME for the distortions) to a recipe."""
    augment: dict[str, object] = {}
    top: dict[str, object] = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        target = augment if name.startswith("augment.") else top
        target[name.removeprefix("augment.")] = json.loads(value)
    return dataclasses.replace(config, **top, augment=dataclasses.replace(config.augment, **augment))  # type: ignore[arg-type]


def main() -> None:
    """Print one markdown row: accuracy mean ± sd, per repeat, calibration, one fold's training time."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("activation", choices=("relu", "logistic"))
    parser.add_argument("overrides", nargs="*", help="NAME=JSON, e.g. epochs=30 or augment.stroke_change=0")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = override(recipe(args.activation), args.overrides)
    dataset = load_dataset("mnist5k")
    labels = dataset.labels.astype(np.int64)
    cv = cross_validate(scale_uint8(dataset.images), labels, config, folds=args.folds, repeats=args.repeats)
    calibrated = cross_fitted(cv.probabilities, labels)
    print(f"# {args.folds} folds x {args.repeats} repeats; {cpu_name()}")
    print("| recipe | accuracy | repeats | ECE before | T | ECE after | fit s |")
    print("|---|---:|---|---:|---:|---:|---:|")
    print(
        f"| {args.activation} {' '.join(args.overrides)} | {cv.mean:.2%} ± {cv.sd:.2%} | {', '.join(f'{a:.2%}' for a in cv.accuracies)} | "
        f"{pooled_ece(cv.probabilities, labels):.2%} | {pooled_temperature(cv.probabilities, labels):.3f} | "
        f"{pooled_ece(calibrated, labels):.2%} | {cv.fit_seconds:.0f} |"
    )


if __name__ == "__main__":
    main()
