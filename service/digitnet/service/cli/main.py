"""The `digitnet` command: train, evaluate, serve, health, predict, score, explain, weights, report, payloads.

Each command imports what it needs when it runs, so that a client command does not load the server.

Usage:
    digitnet train --data mnist5k --activation relu --seed 0 --name relu --out models/default.onnx
    digitnet serve --port 50051 --workers 2
    digitnet predict --server localhost:50051 seven.png three.jpg
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from digitnet.service.cli.args import build_parser
from digitnet.service.contract.constants import LABELS, PATH_ERRORS, default_model, installed_models
from digitnet.service.contract.errors import (
    ConfigurationError,
    DigitnetError,
    ExitCode,
    InvalidInput,
    LimitExceeded,
)

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails

    from digitnet.service.batch.score import ScoreJob, Summary
    from digitnet.service.settings.server import ServerSettings


def _train(args: argparse.Namespace) -> int:
    # Imported here: the training extra (scikit-learn, skl2onnx, mlxtend) is not needed to serve.
    from digitnet.service.cli.outputs import check_writable
    from digitnet.service.contract.card import card_path_for
    from digitnet.training.crossval import FoldDone
    from digitnet.training.pipeline import train_and_export
    from digitnet.training.train import EpochStats, recipe

    out = args.out or Path(f"models/{args.activation}.onnx")
    for path in (out, card_path_for(out)):
        check_writable(path)  # before minutes of training, not after them

    def fold_done(done: FoldDone) -> None:
        print(
            f"cross-validation: repeat {done.repeat + 1} fold {done.fold + 1}: accuracy {done.accuracy:.4f} ({done.seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )

    def epoch_done(stats: EpochStats) -> None:
        print(f"final model: epoch {stats.epoch:3d}  loss {stats.loss:.4f}  ({stats.seconds:.1f} s)", file=sys.stderr, flush=True)

    config = recipe(args.activation, seed=args.seed, epochs=args.epochs, heavy_pen=args.heavy_pen)
    card = train_and_export(
        args.data,
        config,
        out,
        folds=args.cv_folds,
        repeats=args.cv_repeats,
        workers=args.workers,
        name=args.name,
        on_fold=None if args.quiet else fold_done,
        on_epoch=None if args.quiet else epoch_done,
    )
    print(f"wrote {out} and {card_path_for(out)} (trained in {card.training.seconds:.0f} s), sha256 {card.model_sha256}")
    print(card.estimate_line())
    return ExitCode.OK


def _evaluate(args: argparse.Namespace) -> int:
    from digitnet.training.evaluate import evaluate

    model = args.model or default_model()
    if args.data is None:  # nothing to score on: say what the card knows
        from digitnet.service.contract.card import read_card

        print(f"{model}: {read_card(model).estimate_line()}")
        print("score it on digits it never saw with --data idx:DIR (MNIST's t10k files)")
        return ExitCode.OK
    result = evaluate(model, args.data)
    print(f"{result.data}: accuracy {result.accuracy:.4f} on {result.images} digits")
    print("confusion matrix (rows: true digit, columns: predicted)")
    print("      " + "".join(f"{label:>6}" for label in LABELS))
    for label, row in zip(LABELS, result.confusion_matrix):
        print(f"{label:>6}" + "".join(f"{count:>6}" for count in row))
    return ExitCode.OK


def _setting_problem(error: ErrorDetails) -> str:
    """One refused setting, named as the user may have given it: flag or environment variable."""
    name = ".".join(map(str, error["loc"])) or "setting"
    problem = f"--{name.replace('_', '-')} (or DIGITNET_{name.upper()}): {error['msg']}, got {error['input']!r}"
    if str(error["input"]).startswith("tcp://"):  # what Kubernetes' service links set for a Service named digitnet
        problem += "; Kubernetes sets that for a Service named digitnet: set enableServiceLinks: false in the pod, or the variable itself"
    return problem


def server_settings(args: argparse.Namespace) -> ServerSettings:
    """The serve settings from parsed flags, then DIGITNET_* variables, then defaults (in that order of precedence)."""
    import pydantic

    from digitnet.service.settings.server import ServerSettings

    if "token" in vars(args):  # the settings hide this generated flag; a secret on the command line is refused
        raise ConfigurationError("--token would show the secret to every user of this machine (ps): set DIGITNET_TOKEN instead")
    try:
        return ServerSettings(_cli_settings_source=args.settings_source(parsed_args=args))
    except pydantic.ValidationError as err:
        raise ConfigurationError("; ".join(map(_setting_problem, err.errors()))) from err


def _serve(args: argparse.Namespace) -> int:
    from digitnet.service.server.process import check_listening_ports, serve
    from digitnet.service.telemetry.observability import configure_logging

    settings = server_settings(args)
    configure_logging(logging.DEBUG if args.verbose else getattr(logging, settings.log_level.upper()), settings.log_format)
    check_listening_ports(settings)
    return serve(settings)


def _health(args: argparse.Namespace) -> int:
    from digitnet.service.client.digit_client import health_status

    status, details = health_status(args.address, args.service, args.timeout, model=args.model_name or "")
    print(f"{status}: {details}" if details else status)
    return ExitCode.OK if status == "SERVING" else ExitCode.NOT_SERVING


def _model_name(args: argparse.Namespace) -> str:
    """The server's model that --model-name names ("": the server's default); refused without --server."""
    if args.model_name is not None and not args.server:
        raise ConfigurationError("--model-name picks a model of a server (--server); without one, give the file with --model")
    return args.model_name or ""


def _predict(args: argparse.Namespace) -> int:
    from digitnet.service.batch.predict import predict_files

    model_name = _model_name(args)
    if args.server is None:
        args.model = args.model or default_model()
    failed = predict_files(
        args.images, server=args.server, model=args.model, min_confidence=args.min_confidence, out=sys.stdout, model_name=model_name
    )
    return ExitCode.SOME_FAILED if failed else ExitCode.OK


def _score(args: argparse.Namespace) -> int:
    from digitnet.service.batch.job import (
        Backend,
        LocalBackend,
        ServerBackend,
    )
    from digitnet.service.batch.rows import format_for
    from digitnet.service.batch.score import ScoreJob, run_job
    from digitnet.service.contract.constants import available_cpus

    if args.server and args.model:
        raise ConfigurationError("--model and --server do not go together: the server scores with its own model (--model-name picks one)")
    model_name = _model_name(args)
    missing = [str(root) for root in args.dirs if not os.path.lexists(root)]
    if missing:  # a mistyped input is a bad option: nothing written, not a CSV holding one error row
        raise ConfigurationError(f"no such file or folder: {', '.join(missing)}")
    job = ScoreJob(
        roots=args.dirs,
        out=args.out,
        fmt=format_for(args.out, args.format),
        batch_size=args.batch_size,
        min_confidence=args.min_confidence,
        labels_from_dirs=args.labels_from_dirs,
        shard=args.shard,
        resume=args.resume,
        force=args.force,
        quiet=args.quiet,
    )
    if args.merge:
        return _merge(args, job)
    model = args.model or default_model()
    workers = args.workers or available_cpus()
    backend: Backend
    if args.cluster:
        from digitnet.service.batch.cluster import ClusterBackend

        backend = ClusterBackend(args.cluster, model)
    elif args.server:
        from digitnet.service.telemetry import tracing

        tracing.configure()  # the OTEL_* variables: one trace for the run, a span per chunk, the server's spans beneath
        backend = ServerBackend(args.server, workers, model_name)
    else:
        backend = LocalBackend(model, workers)
    try:
        summary = run_job(job, backend)
    except KeyboardInterrupt:
        print(f"digitnet score: interrupted; the rows written so far are whole{_resume_hint(job.out)}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except ConfigurationError:
        raise  # a bad option or output: nothing to resume
    except DigitnetError as err:  # e.g. the server went away mid-run
        print(f"digitnet score: error: {err}{_resume_hint(job.out)}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    finally:
        backend.close()
    return _summarize(args, summary)


def _merge(args: argparse.Namespace, job: ScoreJob) -> int:
    """`score --merge`: one output from the shards' outputs, as one run scoring every file writes it."""
    from digitnet.service.batch.merge import merge_shards
    from digitnet.service.cli.outputs import check_writable

    if args.shard or args.resume:
        raise ConfigurationError("--merge writes the whole run from its shards' outputs: it takes no --shard or --resume")
    if job.out is None:
        raise ConfigurationError("--merge needs --out FILE (written whole, or not at all)")
    check_writable(job.out, args.force)
    return _summarize(args, merge_shards(job, args.merge))


def _summarize(args: argparse.Namespace, summary: Summary) -> int:
    """Print score's summary (unless --quiet, and some rows are errors); return its exit status."""
    if not args.quiet or summary.errors:
        print(summary.text(args.labels_from_dirs), file=sys.stderr)
    return summary.exit_code


def _resume_hint(out: Path | None) -> str:
    """Say `--resume` only where it would help: rows were written to a file."""
    has_rows = out is not None and out.is_file() and out.stat().st_size > 0
    return "; rerun with --resume to finish" if has_rows else ""


def _explain(args: argparse.Namespace) -> int:
    from digitnet.service.cli.outputs import check_writable
    from digitnet.service.visuals.explain import explain_to_file, headline

    model_name = _model_name(args)
    check_writable(args.out, args.force)
    model = None if args.server else args.model or default_model()
    try:
        explained = explain_to_file(args.image, args.out, model=model, server=args.server, min_confidence=args.min_confidence, model_name=model_name)
    except (InvalidInput, LimitExceeded) as err:  # a bad image: the same exit status as predict's
        print(f"digitnet explain: {args.image}: {err}", file=sys.stderr)
        return ExitCode.SOME_FAILED
    # Through a server, say which of its models answered: the default, or the one --model-name named.
    answered_by = f"; answered by the server's model {explained.model!r}" if args.server and explained.model else ""
    print(f"{args.image}: {headline(explained.explanation)}{answered_by}; wrote {args.out}")
    return ExitCode.OK


def _weights(args: argparse.Namespace) -> int:
    from digitnet.service.cli.outputs import check_writable
    from digitnet.service.visuals.explain import weights_to_file

    check_writable(args.out, args.force)
    weights_to_file(args.model or default_model(), args.out)
    print(f"wrote {args.out}")
    return ExitCode.OK


def _report(args: argparse.Namespace) -> int:
    from digitnet.service.cli.outputs import check_writable
    from digitnet.service.contract.pixels import scale_uint8
    from digitnet.service.visuals.report import Digits, write_report
    from digitnet.training.evaluate import load_mnist5k_or_explain

    check_writable(args.out, args.force)
    models = args.model or installed_models()
    digits: Digits | str
    try:
        bundled = load_mnist5k_or_explain()  # the cards' mistakes are indices into their training digits
        digits = Digits(scale_uint8(bundled.images), bundled.sha256)
    except ConfigurationError as err:  # no training extra: the page says so instead
        digits = str(err)
    write_report(models, args.out, digits)
    print(f"wrote {args.out} ({', '.join(str(m) for m in models)})")
    return ExitCode.OK


def _payloads(args: argparse.Namespace) -> int:
    from digitnet.service.batch.payloads import export_payloads, labelled_to_idx

    if args.dataset is not None:
        if args.logs or args.out:
            raise InvalidInput("--dataset takes a labelled folder only: no LOG files, no --out")
        count = labelled_to_idx(args.dataset)
        print(f"wrote {args.dataset / 'idx'}: {count} labelled images (digitnet train --data idx:{args.dataset / 'idx'})")
        return ExitCode.OK
    if not args.logs or args.out is None:
        raise InvalidInput("give payload LOG files and --out DIR (or --dataset DIR for a labelled folder)")
    count = export_payloads(args.logs, args.out)
    print(f"wrote {count} images into {args.out / 'unlabelled'} and {args.out / 'manifest.csv'}: move each into {args.out}/0 ... 9 to label it")
    return ExitCode.OK


HANDLERS = {
    "train": _train,
    "evaluate": _evaluate,
    "serve": _serve,
    "health": _health,
    "predict": _predict,
    "score": _score,
    "explain": _explain,
    "weights": _weights,
    "report": _report,
    "payloads": _payloads,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `digitnet` command; return its exit status."""
    import signal

    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(HANDLERS, serve_flags="serve" in arguments)
    args = parser.parse_args(arguments)
    # SIGTERM (docker stop, kill) ends a command as Ctrl-C does: its cleanup runs, its workers stop, its
    # output holds whole rows. `serve` installs its own handlers (drain) on top of this one.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors=PATH_ERRORS)  # print a file name that is not UTF-8 as its bytes, not a crash
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.handler(args))
    except DigitnetError as err:
        print(f"digitnet {args.command}: error: {err}", file=sys.stderr)
        return ExitCode.RUN_FAILED
    except KeyboardInterrupt:
        print(f"digitnet {args.command}: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
