"""Prometheus metrics and structured logs: what an operator watches.

Metrics live in prometheus-client's default registry and are served by `start_metrics(port)`.
Average batch size = digitnet_batch_images_sum / digitnet_batch_images_count (Triton's
inference_count / exec_count).
"""

from __future__ import annotations

import logging
import socket
import sys
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, Literal
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import numpy as np
from prometheus_client import Counter, Gauge, Histogram, Info, make_wsgi_app
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from digitnet.service.contract.errors import ConfigurationError, DigitnetError
from digitnet.service.contract.results import NO_LABEL, Outcome, PackedPredictions, Prediction
from digitnet.service.inference.spans import annotate
from digitnet.service.inference.statistics import observe_executions
from digitnet.service.telemetry.tracing import TraceIds

LogFormat = Literal["text", "json"]

# `model` is the served model that answered (its repository name), "" for calls that name none (health,
# server metadata) or a model the server does not serve: only the repository's names become labels.
REQUESTS = Counter("digitnet_requests_total", "RPCs handled, by method, status code and model.", ["rpc", "code", "model"])
LATENCY = Histogram(
    "digitnet_request_seconds",
    "RPC latency, by method and model.",
    ["rpc", "model"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
BATCH_IMAGES = Histogram("digitnet_batch_images", "Images per onnxruntime call.", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384))
IN_FLIGHT = Gauge("digitnet_requests_in_flight", "Calls being answered now (health checks and reflection not counted).")
IMAGES = Counter("digitnet_images_total", "Images answered, by model and outcome (digit, unknown, error).", ["model", "outcome"])
ERRORS = Counter("digitnet_errors_total", "Errors answered, by kind (the error class).", ["kind"])
MODEL = Info("digitnet_model", "Each model being served (by its repository name) and where it runs.", ["model"])
RELOADS = Counter("digitnet_model_reloads_total", "Model reload attempts, by model and result (ok, failed).", ["model", "result"])

#: The images counter's children by (model, outcome), looked up once rather than per image.
_IMAGE_COUNTERS: dict[tuple[str, Outcome], Any] = {}

# The inference core counts its model runs without knowing Prometheus; a served process feeds the histogram
# from those counts, like the metrics above registered at import.
observe_executions(lambda _model, images, _seconds: BATCH_IMAGES.observe(images))


def _images_counter(model: str, outcome: Outcome) -> Any:
    counter = _IMAGE_COUNTERS.get((model, outcome))
    if counter is None:
        counter = _IMAGE_COUNTERS[model, outcome] = IMAGES.labels(model, outcome.value)
    return counter


class _MetricsServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        """No access log on stderr: scrapes every few seconds would drown the server's own lines."""


def metrics_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """prometheus-client's WSGI app at /metrics only; 404 elsewhere (so that a wrong health path does not look fine)."""
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"not found: the metrics are at /metrics\n"]
    return _PROMETHEUS_APP(environ, start_response)


_PROMETHEUS_APP = make_wsgi_app()


def count_error(error: DigitnetError) -> None:
    """Count an error answered to a client, by its kind (a refusal, a bad request, a failed image, a bug)."""
    ERRORS.labels(type(error).__name__).inc()


def count_prediction(prediction: Prediction, model: str) -> None:
    """Count one image's answer by the model that gave it and its outcome, and its error if it has one."""
    _images_counter(model, prediction.outcome).inc()
    annotate({"digitnet.outcome": prediction.outcome.name.lower()})
    if prediction.error is not None:
        count_error(prediction.error)


def count_answers(answers: PackedPredictions, model: str) -> None:
    """Count a fast path's answers by model and outcome, as each Prediction of the per-image path is counted."""
    unknown = int(np.count_nonzero(answers.labels == NO_LABEL))
    _images_counter(model, Outcome.DIGIT).inc(len(answers.labels) - unknown)
    _images_counter(model, Outcome.UNKNOWN).inc(unknown)
    annotate({"digitnet.outcomes.digit": len(answers.labels) - unknown, "digitnet.outcomes.unknown": unknown})


def start_metrics(port: int, host: str) -> None:
    """Serve /metrics over HTTP on host:port (a thread of this process)."""
    server_class = type("MetricsServer", (_MetricsServer,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
    try:
        server: WSGIServer = make_server(host.strip("[]"), port, metrics_app, server_class, handler_class=_QuietHandler)
    except OSError as err:  # taken since the start-up check, or a host not this machine's
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {err.strerror or err} (is another server using the port?)") from err
    threading.Thread(target=server.serve_forever, name="digitnet-metrics", daemon=True).start()


def describe_model(model: str, sha256: str, provider: str, activation: str, version: str) -> None:
    """Publish a served model's identity as the digitnet_model info metric."""
    MODEL.labels(model).info({"sha256": sha256, "provider": provider, "activation": activation, "version": version})


def forget_model(model: str) -> None:
    """Take an unloaded model out of the digitnet_model info metric."""
    try:
        MODEL.remove(model)
    except KeyError:  # never described
        pass


def configure_logging(level: int = logging.INFO, fmt: LogFormat = "text") -> None:
    """Send logs to stderr as text lines or JSON objects (one per line); never log image payloads."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        # uvicorn adds `color_message`, its message with ANSI colour codes: noise in a JSON log.
        reserved = [*RESERVED_ATTRS, "color_message"]
        fields = "%(asctime)s %(levelname)s %(name)s %(processName)s %(message)s"
        handler.setFormatter(JsonFormatter(fields, rename_fields={"levelname": "level"}, reserved_attrs=reserved))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"))
    handler.addFilter(TraceIds())  # the trace and span ids in each line written while a span is current
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # debug is for digitnet's own lines: grpc, asyncio and the rest stay at info and above.
    root.setLevel(max(level, logging.INFO))
    logging.getLogger("digitnet").setLevel(level)
    # Pillow logs what it finds odd in each corrupt file it is handed; decoding already turns those files
    # into clear per-image errors, and hostile input must not be able to flood the log.
    logging.getLogger("PIL").setLevel(logging.CRITICAL)
