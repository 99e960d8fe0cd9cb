"""The `digitnet` command: train, evaluate, serve, predict.

Usage:
    digitnet train --data mnist5k --activation relu --seed 0 --out models/default.onnx
    digitnet evaluate --model models/default.onnx --data idx:/data/mnist
    digitnet serve --port 50051 --workers 2
    digitnet predict --server localhost:50051 seven.png three.jpg
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import logging
import signal
import sys

import pydantic
from collections.abc import Sequence
from pathlib import Path

from digitnet.service import __version__
from digitnet.service.constants import ACTIVATIONS, LABELS, PATH_ERRORS
from digitnet.service.errors import ConfigurationError, DigitnetError

log = logging.getLogger("digitnet")

DEFAULT_MODEL = Path("models/default.onnx")
#: Exit status when the user asked for something that cannot be done (bad data, bad model, bad option).
EXIT_USER_ERROR = 2
#: Exit status after Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130


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


def _serve(args: argparse.Namespace) -> int:
    from digitnet.service.server import serve
    from digitnet.service.settings import ServerSettings

    from digitnet.service.observability import configure_logging

    names = (
        "model", "host", "port", "provider", "workers", "max_batch_size", "max_batch_delay_ms", "metrics_port", "metrics_host",
        "log_format", "log_level", "tls_cert", "tls_key", "tls_client_ca", "watch",
    )
    flags = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    try:
        settings = ServerSettings(**flags)  # flags win over DIGITNET_* variables, which win over defaults
    except pydantic.ValidationError as err:
        raise ConfigurationError(_settings_problem(err)) from err
    configure_logging(logging.DEBUG if args.verbose else getattr(logging, settings.log_level.upper()), settings.log_format)
    return serve(settings)


def _settings_problem(err: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'setting'}: {e['msg']} (got {e['input']!r})" for e in err.errors())


def _health(args: argparse.Namespace) -> int:
    from digitnet.service.client import health_status

    status = health_status(args.address, args.service, args.timeout)
    print(status)
    return 0 if status == "SERVING" else 1


def _predict(args: argparse.Namespace) -> int:
    from digitnet.service.predict import predict_files

    failed = predict_files(args.images, server=args.server, model=args.model, min_confidence=args.min_confidence, out=sys.stdout)
    return 1 if failed else 0


def _score(args: argparse.Namespace) -> int:
    from digitnet.service.batch import EXIT_RUN_FAILED, Backend, LocalBackend, ServerBackend
    from digitnet.service.model import available_cpus
    from digitnet.service.score import ScoreJob, run_job

    job = ScoreJob(
        roots=args.dirs, out=args.out, fmt=args.format, batch_size=args.batch_size, min_confidence=args.min_confidence,
        labels_from_dirs=args.labels_from_dirs, resume=args.resume, force=args.force, quiet=args.quiet,
    )
    workers = args.workers or available_cpus()
    backend: Backend
    if args.cluster:
        from digitnet.service.cluster import ClusterBackend

        backend = ClusterBackend(args.cluster, args.model)
    elif args.server:
        backend = ServerBackend(args.server, workers)
    else:
        backend = LocalBackend(args.model, workers)
    try:
        summary = run_job(job, backend)
    except KeyboardInterrupt:
        print("digitnet score: interrupted; the rows written so far are whole: rerun with --resume to finish", file=sys.stderr)
        return EXIT_INTERRUPTED
    except DigitnetError as err:  # e.g. the server went away mid-run
        print(f"digitnet score: error: {err}; rerun with --resume to finish", file=sys.stderr)
        return EXIT_RUN_FAILED
    finally:
        backend.close()
    if not args.quiet or summary.error:
        print(summary.text(args.labels_from_dirs), file=sys.stderr)
    return summary.exit_code


def _explain(args: argparse.Namespace) -> int:
    from digitnet.service.explain import explain_to_file, headline

    explanation = explain_to_file(args.image, args.out, model=None if args.server else args.model, server=args.server,
                                  min_confidence=args.min_confidence)
    print(f"{args.image}: {headline(explanation)}; wrote {args.out}")
    return 0


def _weights(args: argparse.Namespace) -> int:
    from digitnet.service.explain import weights_to_file

    weights_to_file(args.model, args.out)
    print(f"wrote {args.out}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from digitnet.training.report import write_report

    write_report(args.model, args.out)
    print(f"wrote {args.out}")
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

    serve = commands.add_parser("serve", help="serve the model over gRPC (each flag also from DIGITNET_<FLAG>)")
    serve.add_argument("--model", type=Path, help=f"ONNX model with its card beside it (default: {DEFAULT_MODEL})")
    serve.add_argument("--host", help="address to bind (default: 127.0.0.1; 0.0.0.0 for all interfaces)")
    serve.add_argument("--port", type=int, help="TCP port (default: 50051; 0 picks a free one)")
    serve.add_argument("--provider", choices=("auto", "cpu", "cuda"), help="onnxruntime execution provider (default: auto)")
    serve.add_argument("--workers", type=int, help="server processes sharing the port (default: 1)")
    serve.add_argument("--max-batch-size", type=int, help="adaptive batching: most images per merged onnxruntime call (default: 64)")
    serve.add_argument("--max-batch-delay-ms", type=float, help="adaptive batching: longest wait for a batch to fill; 0 = off (default)")
    serve.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port (default: off)")
    serve.add_argument("--metrics-host", help="address the metrics listener binds (default: the same as --host)")
    serve.add_argument("--log-format", choices=("text", "json"), help="log lines as text (default) or JSON")
    serve.add_argument("--log-level", choices=("debug", "info", "warning", "error"), help="debug logs every request (default: info)")
    serve.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS")
    serve.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates it signed (mutual TLS)")
    serve.add_argument("--watch", action="store_true", default=None, help="reload the model when its file changes (SIGHUP does too)")
    serve.set_defaults(handler=_serve)

    health = commands.add_parser("health", help="ask a server's gRPC health service; exit 0 if SERVING (for HEALTHCHECK)")
    health.add_argument("--address", default="localhost:50051", help="server address (default: localhost:50051)")
    health.add_argument("--service", default="", help="service to ask about (default: the whole server)")
    health.add_argument("--timeout", type=float, default=2.0, help="seconds to wait (default: 2)")
    health.set_defaults(handler=_health)

    predict = commands.add_parser("predict", help="classify image files; one JSON object per image on stdout")
    where = predict.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="HOST:PORT", help="ask a running server")
    where.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"run this model in-process (default: {DEFAULT_MODEL})")
    predict.add_argument("--min-confidence", type=float, default=0.0, help="answer 'unknown' below this top probability")
    predict.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    predict.set_defaults(handler=_predict)

    score = commands.add_parser(
        "score",
        help="score folders of images into CSV or JSON Lines",
        description="Score every non-hidden file under DIRs (images recognised by content). "
        "Exit status: 0 every file scored, 1 some files could not be (error rows), 2 the run itself failed.",
    )
    score.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    score.add_argument("--out", type=Path, help="output file (default: standard output)")
    score.add_argument("--format", choices=("csv", "jsonl"), default="csv", help="output format (default: csv)")
    where = score.add_mutually_exclusive_group()
    where.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"score in-process with this model (default: {DEFAULT_MODEL})")
    where.add_argument("--server", metavar="HOST:PORT", help="score through a running digitnet server")
    where.add_argument("--cluster", metavar="tcp://SCHEDULER:8786", help="score on a Dask distributed cluster")
    score.add_argument("--workers", type=int, help="processes (local) or requests in flight (--server); default: the CPUs available")
    score.add_argument("--batch-size", type=int, default=64, help="images per model call or request (default: 64)")
    score.add_argument("--labels-from-dirs", action="store_true", help="each file's parent folder is its true digit: report accuracy")
    score.add_argument("--resume", action="store_true", help="finish an interrupted job: skip files already in --out")
    score.add_argument("--force", action="store_true", help="overwrite an existing --out")
    score.add_argument("--min-confidence", type=float, default=0.0, help="answer 'unknown' below this top probability")
    score.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary (errors still reported)")
    score.set_defaults(handler=_score)

    explain = commands.add_parser("explain", help="draw the network at work on one image")
    explain.add_argument("image", type=Path, metavar="IMAGE")
    where = explain.add_mutually_exclusive_group()
    where.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"run this model in-process (default: {DEFAULT_MODEL})")
    where.add_argument("--server", metavar="HOST:PORT", help="ask a running server (its Explain RPC and its weights)")
    explain.add_argument("-o", "--out", type=Path, default=Path("explain.png"), help="picture to write (default: explain.png)")
    explain.add_argument("--min-confidence", type=float, default=0.0, help="answer 'unknown' below this top probability")
    explain.set_defaults(handler=_explain)

    weights = commands.add_parser("weights", help="draw what each hidden neuron looks for")
    weights.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"model (default: {DEFAULT_MODEL})")
    weights.add_argument("-o", "--out", type=Path, default=Path("weights.png"), help="picture to write (default: weights.png)")
    weights.set_defaults(handler=_weights)

    report = commands.add_parser("report", help="write the model card as a self-contained HTML page")
    report.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=f"model (default: {DEFAULT_MODEL})")
    report.add_argument("-o", "--out", type=Path, default=Path("report.html"), help="page to write (default: report.html)")
    report.set_defaults(handler=_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `digitnet` command; return its exit status."""
    args = build_parser().parse_args(argv)
    # SIGTERM (docker stop, kill) ends a command as Ctrl-C does: its cleanup runs, its workers stop, its
    # output holds whole rows. `serve` installs its own handlers (drain) on top of this one.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors=PATH_ERRORS)  # print a file name that is not UTF-8 as its bytes, not a crash
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except DigitnetError as err:
        print(f"digitnet {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"digitnet {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
