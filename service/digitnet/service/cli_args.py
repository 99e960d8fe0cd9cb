"""The `digitnet` command line: every subcommand, its arguments, their help and an example.

Only argparse and light modules are imported here, so that `digitnet --help` and a bad option answer at
once; cli.py runs the command and imports what it needs.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

from digitnet.service import __version__
from digitnet.service.constants import ACTIVATIONS

Handler = Callable[[argparse.Namespace], int]
#: What --model means when it is not given (DIGITNET_MODEL overrides the packaged default).
MODEL_HELP = "ONNX model, its card (.json) beside it (default: $DIGITNET_MODEL, else the model installed with digitnet)"
#: Settings of `digitnet serve` that have no flag: read from the environment only.
SERVE_ENV_ONLY = (
    "threads",
    "max_message_bytes",
    "max_image_bytes",
    "max_image_pixels",
    "max_image_side",
    "max_image_aspect",
    "max_request_images",
    "max_request_seconds",
    "max_concurrent_rpcs",
    "grace_seconds",
    "drain_seconds",
    "token",
    "watch_seconds",
)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def probability(text: str) -> float:
    """An argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value:g}")
    return value


def _command(commands: argparse._SubParsersAction, name: str, summary: str, description: str, example: str) -> argparse.ArgumentParser:
    return commands.add_parser(
        name, help=summary, description=f"{description}\n\nexample:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter
    )


def _env_only_settings() -> str:
    from digitnet.service.settings import ServerSettings  # the one home of these settings and their docs

    lines = ["settings read only from the environment:"]
    for name in SERVE_ENV_ONLY:
        field = ServerSettings.model_fields[name]
        default = "unset" if field.default is None else field.default
        lines.append(f"  DIGITNET_{name.upper()} (default: {default})")
        lines += textwrap.wrap(" ".join((field.description or "").split()), 100, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)


def build_parser(handlers: Mapping[str, Handler], serve_epilog: bool = False) -> argparse.ArgumentParser:
    """Build the parser; `handlers` maps each command to the function that runs it."""
    parser = argparse.ArgumentParser(
        prog="digitnet", description="Recognize handwritten digits with the 784-16-16-10 network: train, serve, score, explain."
    )
    parser.add_argument("--version", action="version", version=f"digitnet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = _command(
        commands,
        "train",
        "train the network offline and export it to ONNX with its model card",
        "Train scikit-learn's MLPClassifier(16, 16) on MNIST digits, export it to ONNX, check the export "
        "reproduces scikit-learn, and write the model and its card (.json) atomically.",
        "digitnet train --data mnist5k --activation relu --seed 0 --out models/default.onnx",
    )
    train.add_argument("--data", default="mnist5k", help="'mnist5k' (bundled, offline; default) or 'idx:DIR' (MNIST IDX files)")
    train.add_argument("--activation", choices=ACTIVATIONS, default="relu", help="hidden-layer activation (default: relu)")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, initial weights and augmentation (default: 0)")
    train.add_argument("--epochs", type=positive_int, help="most epochs to run; early stopping may end sooner (default: 80)")
    train.add_argument("--validation-fraction", type=float, default=0.2, help="share of digits held out for validation (default: 0.2)")
    train.add_argument("--out", type=Path, help="model path; the card goes beside it as .json (default: models/ACTIVATION.onnx)")
    train.add_argument("-q", "--quiet", action="store_true", help="no per-epoch progress")

    evaluate = _command(
        commands,
        "evaluate",
        "print a model's accuracy and confusion matrix",
        "Score a model on labelled digits: its own validation split of mnist5k, or MNIST's 10,000 test digits.",
        "digitnet evaluate --data idx:/data/mnist",
    )
    evaluate.add_argument("--model", type=Path, help=MODEL_HELP)
    evaluate.add_argument("--data", default="mnist5k", help="'mnist5k': the model's validation split (default); 'idx:DIR': the t10k digits")

    serve = _command(
        commands,
        "serve",
        "serve the model over gRPC",
        "Serve digitnet.v1 and the Open Inference Protocol on one port, with health checking and reflection. "
        "Each flag can also come from DIGITNET_<FLAG> (flags win). SIGTERM drains, SIGHUP reloads the model.",
        "DIGITNET_TOKEN=s3cret digitnet serve --host 0.0.0.0 --port 50051 --metrics-port 9100",
    )
    serve.add_argument("--model", type=Path, help=MODEL_HELP)
    serve.add_argument("--host", help="address to bind (default: 127.0.0.1; 0.0.0.0 for all interfaces)")
    serve.add_argument("--port", type=int, help="TCP port (default: 50051; 0 picks a free one)")
    serve.add_argument("--provider", choices=("auto", "cpu", "cuda"), help="onnxruntime execution provider (default: auto)")
    serve.add_argument("--workers", type=positive_int, help="server processes sharing the port (default: 1)")
    serve.add_argument("--max-batch-size", type=positive_int, help="adaptive batching: most images per merged onnxruntime call (default: 64)")
    serve.add_argument("--max-batch-delay-ms", type=float, help="adaptive batching: longest wait for a batch to fill; 0 = off (default)")
    serve.add_argument("--metrics-port", type=int, help="serve Prometheus metrics at /metrics on this port (default: off)")
    serve.add_argument("--metrics-host", help="address the metrics listener binds (default: the same as --host)")
    serve.add_argument("--log-format", choices=("text", "json"), help="log lines as text (default) or JSON")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="debug logs every request (default: info)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates it signed (mutual TLS)")
    serve.add_argument("--watch", action="store_true", default=None, help="reload the model when its file changes (SIGHUP does too)")
    if serve_epilog:  # only for `serve --help`: it reads the settings' docs
        serve.epilog = _env_only_settings()

    health = _command(
        commands,
        "health",
        "ask a server's gRPC health service; exit 0 if SERVING",
        "Ask grpc.health.v1 whether the server is SERVING (exit 0) or not (exit 1): the container's HEALTHCHECK.",
        "digitnet health --address localhost:50051",
    )
    health.add_argument("--address", default="localhost:50051", help="server address (default: localhost:50051)")
    health.add_argument("--service", default="", help="service to ask about (default: the whole server)")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds to wait (default: 2)")

    predict = _command(
        commands,
        "predict",
        "classify image files; one JSON object per image on stdout",
        "Classify images in-process or through a server; print one JSON object per image (score's JSON Lines rows). "
        "Exit 1 if any image could not be read or classified.",
        "digitnet predict --server localhost:50051 seven.png -  < three.jpg",
    )
    where = predict.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="HOST:PORT", help="ask a running server (several: a:50051,b:50051)")
    where.add_argument("--model", type=Path, help=MODEL_HELP)
    predict.add_argument("--min-confidence", type=probability, default=0.0, help="answer 'unknown' below this top probability")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files; - reads one image from standard input")

    score = _command(
        commands,
        "score",
        "score folders of images into CSV or JSON Lines",
        "Score every non-hidden file under DIRs (images recognised by content), in-process, through a server or on "
        "a Dask cluster. Exit status: 0 every file scored, 1 some files could not be (error rows), 2 the run "
        "itself failed, 130 interrupted (rerun with --resume).",
        "digitnet score scans/ --out scores.jsonl --server localhost:50051",
    )
    score.add_argument("dirs", nargs="+", type=Path, metavar="DIR", help="folders (or files) to score")
    score.add_argument("--out", type=Path, help="output file (default: standard output)")
    score.add_argument("--format", choices=("csv", "jsonl"), help="output format (default: from --out's extension, else csv)")
    score.add_argument("--model", type=Path, help=MODEL_HELP + "; in-process and with --cluster")
    where = score.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="HOST:PORT", help="score through a running digitnet server (several: a:50051,b:50051)")
    where.add_argument("--cluster", metavar="tcp://SCHEDULER:8786", help="score on a Dask distributed cluster")
    score.add_argument("--workers", type=positive_int, help="processes (local) or requests in flight (--server); default: the CPUs")
    score.add_argument("--batch-size", type=positive_int, default=64, help="images per model call or request (default: 64)")
    score.add_argument("--labels-from-dirs", action="store_true", help="each file's parent folder is its true digit: report accuracy")
    score.add_argument("--resume", action="store_true", help="finish an interrupted job: skip files already in --out")
    score.add_argument("--force", action="store_true", help="overwrite an existing --out")
    score.add_argument("--min-confidence", type=probability, default=0.0, help="answer 'unknown' below this top probability")
    score.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary (errors still reported)")

    explain = _command(
        commands,
        "explain",
        "draw the network at work on one image",
        "Draw one image's trip through the network: the input as the model saw it, both hidden layers lit up, the "
        "outputs, and the strongest connections. Exit 1 if the image cannot be read.",
        "digitnet explain seven.jpg -o seven-explained.png",
    )
    explain.add_argument("image", type=Path, metavar="IMAGE")
    where = explain.add_mutually_exclusive_group()
    where.add_argument("--model", type=Path, help=MODEL_HELP)
    where.add_argument("--server", metavar="HOST:PORT", help="ask a running server (its Explain RPC and its weights)")
    explain.add_argument("-o", "--out", type=Path, default=Path("explain.png"), help="picture to write: PNG, SVG or PDF (default: explain.png)")
    explain.add_argument("--force", action="store_true", help="overwrite an existing picture")
    explain.add_argument("--min-confidence", type=probability, default=0.0, help="answer 'unknown' below this top probability")

    weights = _command(
        commands,
        "weights",
        "draw what each hidden neuron looks for",
        "Draw each first-layer neuron's 784 weights as a 28x28 tile, and each second-layer neuron's pixel pattern.",
        "digitnet weights -o weights.png",
    )
    weights.add_argument("--model", type=Path, help=MODEL_HELP)
    weights.add_argument("-o", "--out", type=Path, default=Path("weights.png"), help="picture to write (default: weights.png)")
    weights.add_argument("--force", action="store_true", help="overwrite an existing picture")

    report = _command(
        commands,
        "report",
        "write the model card as a self-contained HTML page",
        "Write the model card as one HTML page: architecture, accuracy, confusion matrix, training curve, weights, mistakes.",
        "digitnet report -o report.html",
    )
    report.add_argument("--model", type=Path, help=MODEL_HELP)
    report.add_argument("-o", "--out", type=Path, default=Path("report.html"), help="page to write (default: report.html)")
    report.add_argument("--force", action="store_true", help="overwrite an existing page")

    for name, subparser in commands.choices.items():
        subparser.set_defaults(handler=handlers[name])
    return parser
