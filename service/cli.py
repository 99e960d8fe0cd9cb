"""The `digitnet` command: train, evaluate (and, as the service grows, serve and predict).

Usage:
    digitnet train --data mnist5k --activation relu --seed 0 --out models/default.onnx
    digitnet evaluate --model models/default.onnx --data idx:/data/mnist
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from digitnet.service import __version__
from digitnet.service.constants import ACTIVATIONS, LABELS
from digitnet.service.errors import DigitnetError

log = logging.getLogger("digitnet")

DEFAULT_MODEL = Path("models/default.onnx")
#: Exit status when the user asked for something that cannot be done (bad data, bad model, bad option).
EXIT_USER_ERROR = 2


def _train(args: argparse.Namespace) -> int:
    # Imported here: the training extra (scikit-learn, skl2onnx, mlxtend) is not needed to serve.
    from digitnet.training.pipeline import train_and_export
    from digitnet.training.train import EpochStats, TrainConfig

    def progress(stats: EpochStats) -> None:
        print(
            f"epoch {stats.epoch:3d}  loss {stats.loss:.4f}  validation accuracy {stats.validation_accuracy:.4f}  ({stats.seconds:.1f} s)",
            file=sys.stderr,
            flush=True,
        )

    config = TrainConfig(activation=args.activation, seed=args.seed)
    if args.epochs is not None:
        config = dataclasses.replace(config, max_epochs=args.epochs)
    out = args.out or Path(f"models/{args.activation}.onnx")
    card = train_and_export(args.data, config, out, validation_fraction=args.validation_fraction, on_epoch=None if args.quiet else progress)
    print(
        f"wrote {out} and {out.with_suffix('.json')}: validation accuracy {card.validation.accuracy:.4f} "
        f"on {card.validation.images} digits (best epoch {card.training.best_epoch} of {card.training.epochs_run}, "
        f"{card.training.seconds:.0f} s), sha256 {card.model_sha256}"
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from digitnet.training.pipeline import evaluate

    result = evaluate(args.model, args.data)
    print(f"{result.data}: accuracy {result.accuracy:.4f} on {result.images} digits")
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("      " + "".join(f"{label:>6}" for label in LABELS))
    for label, row in zip(LABELS, result.confusion_matrix):
        print(f"{label:>6}" + "".join(f"{count:>6}" for count in row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the `digitnet` command."""
    parser = argparse.ArgumentParser(prog="digitnet", description="Handwritten digits with the 784-16-16-10 network.")
    parser.add_argument("--version", action="version", version=f"digitnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train the network offline and export it to ONNX with its model card")
    train.add_argument("--data", default="mnist5k", help="'mnist5k' (bundled, offline; default) or 'idx:DIR' (MNIST IDX files)")
    train.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="hidden-layer activation (default: relu)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, initial weights and augmentation (default: 0)")
    train.add_argument("--epochs", type=int, help="most epochs to run; early stopping may end sooner (default: 80)")
    train.add_argument("--validation-fraction", type=float, default=0.2, help="share of digits held out for validation (default: 0.2)")
    train.add_argument("--out", type=Path, help="model path; the card goes beside it as .json (default: models/ACTIVATION.onnx)")
    train.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="print a model's accuracy and confusion matrix")
    evaluate.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"model path (default: {DEFAULT_MODEL})")
    evaluate.add_argument(
        "--data", default="mnist5k", help="'mnist5k': the model's validation split (default); 'idx:DIR': the 10,000 t10k test digits"
    )
    evaluate.set_defaults(handler=_evaluate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `digitnet` command; return its exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except DigitnetError as err:
        print(f"digitnet {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"digitnet {args.command}: interrupted; nothing was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
