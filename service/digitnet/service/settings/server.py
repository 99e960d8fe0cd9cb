"""Server settings: typed, with defaults, each readable from a DIGITNET_* environment variable.

The one home of `digitnet serve`'s options: its flags are generated from these fields (cli/args.py), so
a setting, its type, bounds, default and help are declared here once. Flags override the environment,
which overrides the defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, CliSuppress, NoDecode, SettingsConfigDict

from digitnet.service.contract.constants import DEFAULT_MIN_CONFIDENCE, MESSAGE_OVERHEAD_BYTES, N_PIXELS, Provider, available_cpus, model_repository
from digitnet.service.contract.errors import InvalidInput
from digitnet.service.contract.limits import MAX_REQUEST_IMAGES, Limits
from digitnet.service.contract.results import check_min_confidence


class ServerSettings(BaseSettings):
    """Everything `digitnet serve` can be told."""

    # Each field's docstring is its description, and the help of its flag.
    model_config = SettingsConfigDict(env_prefix="DIGITNET_", extra="ignore", protected_namespaces=(), use_attribute_docstrings=True)

    model: Annotated[list[Path], NoDecode] = []
    """ONNX models to serve, each with its card (same name, .json) beside it: repeat the flag, or separate them by
    commas; the first is the default, which requests that name no model (or `digitnet`) get. None given: every
    model in model_repository."""
    model_repository: Path = Field(default_factory=model_repository)
    """Folder of ONNX models and their cards: served when no model is given (its default.onnx is the default),
    and where the repository API finds a model to load by name."""
    host: str = "127.0.0.1"
    """Address to bind; 0.0.0.0 or [::] to accept connections from other machines."""
    port: int = Field(50051, ge=0, le=65535)
    """TCP port; 0 picks a free one (reported in the start-up log)."""
    http_port: int = Field(8080, ge=0, le=65535)
    """HTTP port, on the same host: the Open Inference Protocol's REST API (/v2), /v1/classify, /v1/explain,
    /metrics and /openapi.json; 0 turns HTTP off. With N workers, they share it as they share the gRPC port."""
    provider: Provider = "auto"
    """onnxruntime execution provider: auto (CUDA when present, else CPU), cpu, or cuda (fail if absent)."""
    workers: int = Field(1, ge=1, le=64)
    """Server processes sharing the port (SO_REUSEPORT), to use every core."""
    threads: int = Field(0, ge=0)
    """Threads per worker for image decoding and batches (raw pixels run on the event loop); 0 = 2 per CPU."""
    max_message_bytes: int = Field(0, ge=0)
    """Largest gRPC message accepted or sent; 0 = sized from the other limits (the largest image, or a full
    FP32 batch of max_request_images, plus 64 KiB): 12.9 MB with the defaults."""
    max_image_bytes: int = Field(Limits.max_encoded_bytes, ge=1)
    """Largest encoded image accepted."""
    max_image_pixels: int = Field(Limits.max_pixels, ge=1)
    """Largest decoded image (width x height) accepted: stops decompression bombs."""
    max_image_side: int = Field(Limits.max_side, ge=1)
    """Longest image side accepted, in pixels."""
    max_image_aspect: float = Field(Limits.max_aspect, ge=1)
    """Largest ratio of an image's longer side to its shorter side."""
    max_request_seconds: float = Field(30.0, gt=0)
    """Longest a request (or one stream item) may take, waiting included; its work is then stopped and it is
    answered RESOURCE_EXHAUSTED. Bounds what one request can cost however many cheap-to-send images it holds."""
    max_concurrent_rpcs: int = Field(64, ge=0)
    """Single calls in flight at once, and open streams at once (counted apart, so that streams never lock out
    single calls); more get UNAVAILABLE (retry with backoff). Health checks and reflection are not counted. 0 = no bound."""
    http_max_connections: int = Field(1024, ge=1)
    """HTTP connections open at once; past it the connection idle the longest is closed to make room (503 with
    Retry-After only when every one has a request in progress). Requests in flight are bounded by
    max_concurrent_rpcs; health checks never are."""
    http_header_seconds: float = Field(10.0, gt=0)
    """How long an HTTP connection may take to send a request's headers, from connecting (or from the request's
    first byte on a kept-alive connection); then 408 and closed: idle and slow clients cannot hold the port."""
    http_max_header_bytes: int = Field(64 * 1024, ge=1024)
    """Largest HTTP request line and headers, in bytes; more is answered 431 and the connection closed."""
    http_max_json_bytes: int = Field(1024 * 1024, ge=64 * 1024)
    """Largest JSON part of an OIP REST inference request (binary tensors are bounded by the message limit);
    more is answered 429. Parsing JSON holds Python's interpreter lock whatever thread does it, and every
    other call (gRPC's too) waits for it (docs/benchmarks.md, issue 23)."""
    http_max_headers: int = Field(100, ge=8)
    """Most headers in an HTTP request; more is answered 431 and the connection closed."""
    max_request_images: int = Field(MAX_REQUEST_IMAGES, ge=1)
    """Most images in one request (ClassifyBatch, or an OIP ModelInfer tensor)."""
    max_batch_size: int = Field(64, ge=1)
    """Adaptive batching: most images merged from concurrent OIP requests into one onnxruntime call."""
    max_batch_delay_ms: float = Field(0.0, ge=0)
    """Adaptive batching: how long a request may wait for others to join its batch; 0 turns it off."""
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    """Answer UNKNOWN below this top probability when a request sets no min_confidence of its own."""
    grace_seconds: float = Field(10.0, ge=0)
    """On SIGTERM/SIGINT, how long in-flight requests get to finish."""
    drain_seconds: float = Field(1.0, ge=0)
    """On SIGTERM/SIGINT, how long new calls are refused (UNAVAILABLE, retried elsewhere) before stopping."""
    metrics_port: int = Field(0, ge=0, le=65535)
    """Serve Prometheus metrics on http://METRICS_HOST:PORT/metrics; 0 = off. With N workers, worker i uses PORT + i."""
    metrics_host: str = ""
    """Address the metrics listener binds; empty = the same as host (no token guards /metrics)."""
    log_format: Literal["text", "json"] = "text"
    """Log lines as text or as one JSON object each."""
    otel: bool = False
    """Trace calls with OpenTelemetry (the otel extra), sent where OTEL_* says (OTLP, localhost:4317 by default); OTEL_TRACES_EXPORTER=otlp too."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """debug adds one line per request (method, status, time, request id; never the image)."""
    tls_cert: Path | None = None
    """PEM certificate chain: serve TLS (needs tls_key)."""
    tls_key: Path | None = None
    """PEM private key of tls_cert."""
    tls_client_ca: Path | None = None
    """PEM CA bundle: require client certificates signed by it (mutual TLS; needs tls_cert)."""
    # Environment only: a flag would show the secret to every user of the machine (ps, /proc/PID/cmdline).
    token: CliSuppress[SecretStr | None] = None
    """Bearer token every call must carry (metadata authorization: Bearer TOKEN); health checks stay open."""
    payload_log: Path | None = None
    """Payload log: write a JSON Lines record of sampled inference calls here (request id, time, model, input, answers,
    status, latency; never a header or the token); empty = off (docs/operations.md, "Payload log")."""
    payload_log_sample: float = Field(0.01, ge=0, le=1)
    """Share of successful inference calls the payload log records (1 = all); failed calls are always recorded."""
    payload_log_input: Literal["pixels", "original"] = "pixels"
    """What the payload log keeps of each image: pixels (the 784 the model saw) or original (the bytes sent, up to
    payload_log_max_image_bytes; pixels sent as pixels stay pixels)."""
    payload_log_max_image_bytes: int = Field(64 * 1024, ge=0)
    """Largest original image the payload log keeps; a larger one is recorded by its size only."""
    payload_log_max_bytes: int = Field(100 * 1024 * 1024, ge=0)
    """Size at which the payload log is rotated (renamed to .1, .1 to .2, ...); 0 = never."""
    payload_log_backups: int = Field(5, ge=0)
    """Rotated payload log files kept (0: a full file is removed)."""
    payload_log_url: str = ""
    """Also POST each payload record, as KServe's logger does, as CloudEvents (request and response) to this HTTP
    URL; a slow or down sink drops records (counted), never slows a request."""
    watch: bool = False
    """Reload the model when its file or card changes (as SIGHUP does)."""
    watch_seconds: float = Field(2.0, gt=0)
    """How often --watch looks at the model file."""

    @field_validator("min_confidence")
    @classmethod
    def _threshold(cls, value: float) -> float:
        try:
            return check_min_confidence(value)
        except InvalidInput as err:  # pydantic reports a ValueError as the setting's problem
            raise ValueError(str(err)) from None

    @field_validator("model", mode="before")
    @classmethod
    def _paths(cls, value: object) -> object:
        # DIGITNET_MODEL=a.onnx,b.onnx (and one path, as before there were several); a flag given twice is a list.
        if isinstance(value, str | Path):
            return [part.strip() for part in str(value).split(",") if part.strip()]
        return value

    @field_validator("payload_log_url")
    @classmethod
    def _sink_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("payload_log_url must be an http:// or https:// URL")
        return value

    @field_validator("token", "tls_cert", "tls_key", "tls_client_ca", "payload_log", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # DIGITNET_TOKEN= (as compose writes ${DIGITNET_TOKEN:-}) means "no token", not "the empty token".
        return None if value == "" else value

    @property
    def limits(self) -> Limits:
        """The image limits as the preprocessing module takes them."""
        return Limits(
            max_encoded_bytes=self.max_image_bytes,
            max_pixels=self.max_image_pixels,
            max_side=self.max_image_side,
            max_aspect=self.max_image_aspect,
        )

    @property
    def message_bytes(self) -> int:
        """The gRPC message limit in force: max_message_bytes, or sized from the image and batch limits."""
        largest_input = max(self.max_image_bytes, self.max_request_images * N_PIXELS * 4)  # 4: a float32 pixel
        return self.max_message_bytes or largest_input + MESSAGE_OVERHEAD_BYTES

    @property
    def metrics_address(self) -> str:
        """Where /metrics listens: metrics_host, else the server's own host."""
        return self.metrics_host or self.host

    @property
    def thread_count(self) -> int:
        """Worker threads per server process."""
        return self.threads or 2 * available_cpus()
