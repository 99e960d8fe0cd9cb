"""The Python client of digitnet.v1: one reused channel, deadlines, gRPC's own retries on UNAVAILABLE,
round-robin over several servers, TLS and bearer tokens.

Usage:
    with DigitClient("localhost:50051") as client:          # or ["10.0.0.1:50051", "10.0.0.2:50051"],
                                                             # or "dns:///digitnet:50051" (every address)
        prediction = client.classify(Path("seven.png").read_bytes())
        print(prediction.label, prediction.confidence)
"""

from __future__ import annotations

import ipaddress
import json
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar, cast, get_args

import grpc
import numpy as np
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.api.names import OIP_SERVICE, SERVICE_NAME
from digitnet.service.api.outcomes import FROM_WIRE
from digitnet.service.api.tls import read_pem
from digitnet.service.contract.constants import MESSAGE_OVERHEAD_BYTES, N_CLASSES, N_PIXELS
from digitnet.service.contract.errors import (
    ConfigurationError,
    DigitnetError,
    LimitExceeded,
    StatusName,
    echo,
)
from digitnet.service.contract.results import (
    Explanation,
    ImageInput,
    Outcome,
    PackedPredictions,
    Prediction,
)

if TYPE_CHECKING:
    from digitnet.service.client.settings import ClientSettings

Reply = TypeVar("Reply")
#: The client's own message limit, both ways (the server's is usually lower: see ServerLimits).
CLIENT_MESSAGE_BYTES = 64 * 1024 * 1024
#: Backoff between retries of an unavailable server: first wait, longest wait (seconds).
RETRY_BACKOFF = (0.1, 2.0)
#: Bytes an Image costs in a ClassifyBatchRequest beyond its payload (tags, lengths), rounded up.
_IMAGE_OVERHEAD_BYTES = 16
#: The tracer of the client's spans: the OpenTelemetry API's, recording only where the caller set up an SDK.
_TRACER = trace.get_tracer("digitnet.client")


class RemoteError(DigitnetError):
    """The server answered an RPC with an error status."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status  # the server's status name (UNAVAILABLE, INVALID_ARGUMENT, ...)
        if status in get_args(StatusName):
            self.code = cast(StatusName, status)  # type: ignore[misc]  # this error's own: what the server answered


def connection_hint(details: str, tls: bool) -> str:
    """Say what is probably wrong when a server cannot be reached, from grpc's terse details ("" if nothing)."""
    text = details.lower()
    if not tls and ("socket closed" in text or "connection reset" in text or "eof" in text):
        return " (if the server uses TLS, set DIGITNET_TLS_CA to the CA that signed its certificate)"
    if tls and ("ssl" in text or "handshake" in text or "certificate" in text):
        return (
            " (TLS failed: the server may be plaintext, its certificate not signed by DIGITNET_TLS_CA, or it may"
            " require a client certificate: DIGITNET_TLS_CLIENT_CERT and DIGITNET_TLS_CLIENT_KEY)"
        )
    if "connection refused" in text or "failed to connect" in text or "dns resolution failed" in text:
        return " (is a digitnet server running at that address?)"
    return ""


def retry_service_config(attempts: int) -> str:
    """gRPC service config: round-robin over every resolved address; retry UNAVAILABLE (a server draining,
    restarting or unreachable) with backoff, which lands on another server when there are several, and
    CANCELLED from the server: grpc's core cancels the calls that reach a server in the instant its stop
    begins, after the drain has refused others with UNAVAILABLE (grpc/grpc#41785). Every digitnet.v1 call is
    idempotent, and a call the client itself cancels is never retried."""
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [
                {
                    "name": [{"service": SERVICE_NAME}],
                    "retryPolicy": {
                        "maxAttempts": attempts,
                        "initialBackoff": "0.1s",
                        "maxBackoff": "2s",
                        "backoffMultiplier": 2,
                        "retryableStatusCodes": ["UNAVAILABLE", "CANCELLED"],
                    },
                }
            ],
        }
    )


def encode_image(image: ImageInput) -> pb.Image:
    """Wrap bytes (an encoded file) or MNIST-form pixels (uint8 or float32, 784) in an Image proto."""
    if isinstance(image, bytes | bytearray | memoryview):
        return pb.Image(encoded=bytes(image))
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return pb.Image(mnist_uint8=array.tobytes())
    return pb.Image(mnist_float=pb.MnistFloat(values=array.astype(np.float32).ravel().tolist()))


def decode_prediction(message: pb.Prediction) -> Prediction:
    """Turn a Prediction proto back into the core's Prediction."""
    outcome = FROM_WIRE[message.outcome]
    error = RemoteError(message.error.code, message.error.message) if outcome is Outcome.ERROR else None
    return Prediction(
        outcome=outcome,
        label=message.label if outcome is Outcome.DIGIT else None,
        confidence=message.confidence,
        probabilities=np.array(message.probabilities, dtype=np.float32),
        reason=message.reason,
        error=error,
    )


def channel_target(addresses: str | Sequence[str]) -> tuple[str, str | None]:
    """Turn one target, or several host:port addresses (a list or "a:1,b:2"), into one gRPC target; and the
    host name TLS must check when several addresses were resolved here (None otherwise)."""
    if isinstance(addresses, str):
        if "," not in addresses or ":///" in addresses or addresses.startswith(("ipv4:", "ipv6:")):
            return addresses, None
        addresses = [part.strip() for part in addresses.split(",")]
    if len(addresses) == 1:
        return addresses[0], None
    # gRPC takes several addresses only as IP literals ("ipv4:a:1,b:2"): resolve each name here, every address
    # of it, and let round-robin spread calls over them all.
    resolved: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigurationError(f"expected HOST:PORT, got {echo(address)}")
        try:
            found = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
        except OSError as err:
            raise ConfigurationError(f"cannot resolve {echo(host)}: {err.strerror or err}") from err
        for family, _, _, _, sockaddr in found:
            if family in resolved:
                ip, port_number = str(sockaddr[0]), int(sockaddr[1])
                literal = f"[{ip}]:{port_number}" if family == socket.AF_INET6 else f"{ip}:{port_number}"
                resolved[family] += [literal] if literal not in resolved[family] else []
    family = socket.AF_INET if resolved[socket.AF_INET] else socket.AF_INET6
    scheme = "ipv4:" if family == socket.AF_INET else "ipv6:"
    names = {host for host in (address.rpartition(":")[0].strip("[]") for address in addresses) if not _is_ip(host)}
    return scheme + ",".join(resolved[family]), names.pop() if len(names) == 1 else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class DigitClient:
    """A client for one server, a list of servers (round-robin), or a DNS name that resolves to several; every call
    asks `model` (a name in the server's repository, e.g. "sigmoid"), or the server's default model when it is ""."""

    def __init__(
        self, target: str | Sequence[str], timeout: float = 10.0, attempts: int = 4, settings: ClientSettings | None = None, model: str = ""
    ) -> None:
        self.timeout = timeout
        self.model = model
        settings = settings or _settings_from_environment()
        #: How long one call keeps retrying an unavailable server (DIGITNET_RETRY_SECONDS).
        self.retry_seconds = settings.retry_seconds
        self._limits: pb.ServerLimits | None = None
        options = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", retry_service_config(attempts)),
            ("grpc.max_receive_message_length", CLIENT_MESSAGE_BYTES),
            ("grpc.max_send_message_length", CLIENT_MESSAGE_BYTES),
            # Reconnect to a restarted server within a second or two, not gRPC's default of up to 2 minutes.
            ("grpc.initial_reconnect_backoff_ms", int(RETRY_BACKOFF[0] * 1000)),
            ("grpc.max_reconnect_backoff_ms", int(RETRY_BACKOFF[1] * 1000)),
            # A connection of its own, not one shared with the process's other clients of the same server:
            # several clients then reach several worker processes of a server (--workers, SO_REUSEPORT).
            ("grpc.use_local_subchannel_pool", 1),
        ]
        credentials = _channel_credentials(settings)
        self._tls = credentials is not None
        address, host_name = channel_target(target)
        if credentials is not None and host_name:
            options.append(("grpc.ssl_target_name_override", host_name))  # check the certificate against the name, not the IPs
        if credentials is None:
            self._channel = grpc.insecure_channel(address, options=options)
        else:
            self._channel = grpc.secure_channel(address, credentials, options=options)
        token = settings.token.get_secret_value() if settings.token else None
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._stub = pb_grpc.DigitClassifierStub(self._channel)

    def classify(self, image: ImageInput, min_confidence: float | None = None) -> Prediction:
        """Classify one image (min_confidence None: the server's default threshold, as in every method)."""
        request = pb.ClassifyRequest(image=encode_image(image), min_confidence=min_confidence, model=self.model)
        return decode_prediction(self._call("Classify", self._stub.Classify, request).prediction)

    def classify_batch(self, images: Sequence[ImageInput], min_confidence: float | None = None) -> list[Prediction]:
        """Classify many images, in as many requests as the server's limits need. Bad images and images too
        big to send come back in place as ERROR predictions."""
        answers: list[Prediction | None] = [None] * len(images)
        for positions, request in self._batch_requests(images, answers, min_confidence):
            for position, message in zip(positions, self._call("ClassifyBatch", self._stub.ClassifyBatch, request).predictions):
                answers[position] = decode_prediction(message)
        return answers  # type: ignore[return-value]  # every None was answered

    def _batch_requests(
        self, images: Sequence[ImageInput], answers: list[Prediction | None], min_confidence: float | None
    ) -> Iterator[tuple[list[int], pb.ClassifyBatchRequest]]:
        """Group the images still unanswered into requests under the server's message and count limits."""
        limits = self.server_limits()
        budget = limits.max_message_bytes - MESSAGE_OVERHEAD_BYTES
        positions: list[int] = []
        request = pb.ClassifyBatchRequest(min_confidence=min_confidence, model=self.model)
        size = 0
        for position, image in enumerate(images):
            if answers[position] is not None:
                continue
            message = encode_image(image)
            cost = message.ByteSize() + _IMAGE_OVERHEAD_BYTES
            if cost > budget:
                size = len(image) if isinstance(image, bytes) else message.ByteSize()
                answers[position] = Prediction.failed(
                    LimitExceeded(f"the image's {size} bytes do not fit the server's message limit of {limits.max_message_bytes} bytes")
                )
                continue
            if positions and (size + cost > budget or len(positions) == limits.max_request_images):
                yield positions, request
                positions, request, size = [], pb.ClassifyBatchRequest(min_confidence=min_confidence, model=self.model), 0
            positions.append(position)
            request.images.append(message)
            size += cost
        if positions:
            yield positions, request

    def server_limits(self) -> pb.ServerLimits:
        """What the server accepts (asked once, then remembered); a server too old to say gets the defaults."""
        if self._limits is None:
            limits = self.model_info().limits
            if not limits.max_message_bytes:
                limits = pb.ServerLimits(max_message_bytes=4 * 1024 * 1024, max_request_images=64)  # gRPC's default limit
            self._limits = limits
        return self._limits

    def classify_packed(self, pixels: np.ndarray, min_confidence: float | None = None) -> PackedPredictions:
        """Classify MNIST-form uint8 images [N, 784] (or [N, 28, 28]) through the packed fast path."""
        images = np.ascontiguousarray(pixels, dtype=np.uint8).reshape(-1, N_PIXELS)
        request = pb.ClassifyBatchRequest(mnist_uint8=images.tobytes(), min_confidence=min_confidence, model=self.model)
        packed = self._call("ClassifyBatch", self._stub.ClassifyBatch, request).packed
        return PackedPredictions(
            labels=np.array(packed.labels, dtype=np.int32),
            confidences=np.array(packed.confidences, dtype=np.float32),
            probabilities=np.array(packed.probabilities, dtype=np.float32).reshape(-1, N_CLASSES),
        )

    def classify_stream(self, images: Iterable[ImageInput], min_confidence: float | None = None) -> Iterator[Prediction]:
        """Classify a stream of images over one bidirectional RPC, yielding predictions in order."""
        requests = (
            pb.ClassifyRequest(image=encode_image(i), min_confidence=min_confidence, id=str(n), model=self.model) for n, i in enumerate(images)
        )
        with client_span("ClassifyStream", current=False) as (span, metadata):
            try:
                for response in self._stub.ClassifyStream(requests, metadata=(*self._metadata, *metadata)):
                    yield decode_prediction(response.prediction)
            except grpc.RpcError as err:
                failed(span, err.code())
                raise RemoteError(err.code().name, (err.details() or "") + connection_hint(err.details() or "", self._tls)) from err

    def explain(self, image: ImageInput, min_confidence: float | None = None) -> Explanation:
        """Classify one image and return what the network saw."""
        request = pb.ClassifyRequest(image=encode_image(image), min_confidence=min_confidence, model=self.model)
        reply = self._call("Explain", self._stub.Explain, request)
        layers = (np.array(values, dtype=np.float32) for values in (reply.input, reply.hidden1, reply.hidden2))
        return Explanation(decode_prediction(reply.prediction), *layers)

    def model_info(self, include_model: bool = False) -> pb.ModelInfo:
        """Describe the model this client asks (its name, card, sha256, the server's limits); with include_model,
        also fetch the ONNX file itself."""
        return self._call("GetModelInfo", self._stub.GetModelInfo, pb.GetModelInfoRequest(include_model=include_model, model=self.model))

    def _call(self, name: str, method: Callable[..., Reply], request: object) -> Reply:
        """Call `method` (the RPC `name`) in a client span, retrying an unavailable server for retry_seconds."""
        with client_span(name) as (span, metadata):
            # gRPC's retry policy moves a call off a draining replica at once; this loop outlasts a restart.
            give_up = time.monotonic() + self.retry_seconds
            wait = RETRY_BACKOFF[0]
            while True:
                try:
                    return method(request, timeout=self.timeout, metadata=(*self._metadata, *metadata))
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() + wait > give_up:
                        details = err.details() or ""
                        if err.code() == grpc.StatusCode.UNAVAILABLE:
                            details += f" (retried for {self.retry_seconds:g} s){connection_hint(details, self._tls)}"
                        failed(span, err.code())
                        raise RemoteError(err.code().name, details) from err
                    span.add_event("retry", {"rpc.grpc.status_code": err.code().value[0], "digitnet.wait_seconds": wait})
                time.sleep(wait * random.uniform(0.5, 1.0))  # jitter: restarted servers are not hit by every client at once
                wait = min(2 * wait, RETRY_BACKOFF[1])

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> DigitClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settings_from_environment() -> ClientSettings:
    # pydantic-settings is most of the client's import time: it loads when settings are first read, not at import.
    from digitnet.service.client.settings import ClientSettings

    return ClientSettings()


def _channel_credentials(settings: ClientSettings) -> grpc.ChannelCredentials | None:
    if settings.tls_ca is None:
        if settings.tls_client_cert or settings.tls_client_key:
            raise ConfigurationError("a client certificate needs DIGITNET_TLS_CA too (the server's CA)")
        return None
    ca, key, cert = read_pem(settings.tls_ca), read_pem(settings.tls_client_key), read_pem(settings.tls_client_cert)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def health_status(address: str, service: str = "", timeout: float = 2.0, settings: ClientSettings | None = None, model: str = "") -> tuple[str, str]:
    """Ask a server's grpc.health.v1 service, and then, if `model` names one, whether that model is ready (the
    Open Inference Protocol's ModelReady); return SERVING, NOT_SERVING, ... or UNREACHABLE, and what grpc said."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from digitnet.service.api._generated import oip_pb2

    settings = settings or _settings_from_environment()
    credentials = _channel_credentials(settings)
    channel = grpc.secure_channel(address, credentials) if credentials else grpc.insecure_channel(address)
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            if not model or status != "SERVING":
                return status, ""
            token = settings.token.get_secret_value() if settings.token else None
            metadata = (("authorization", f"Bearer {token}"),) if token else ()
            # The server's OIP path (/inference.GRPCInferenceService/), not the generated stub's renamed package.
            model_ready = channel.unary_unary(
                f"/{OIP_SERVICE}/ModelReady",
                request_serializer=oip_pb2.ModelReadyRequest.SerializeToString,
                response_deserializer=oip_pb2.ModelReadyResponse.FromString,
            )
            ready = model_ready(oip_pb2.ModelReadyRequest(name=model), timeout=timeout, metadata=metadata)
        except grpc.RpcError as err:
            details = (err.details() or "") + connection_hint(err.details() or "", credentials is not None)
            unreachable = err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            return ("UNREACHABLE" if unreachable else err.code().name), details
    return ("SERVING", "") if ready.ready else ("NOT_SERVING", f"model {model!r} is not loaded")


@contextmanager
def client_span(method: str, current: bool = True) -> Iterator[tuple[trace.Span, tuple[tuple[str, str], ...]]]:
    """A client span for one call of digitnet.v1's `method` while the block runs, and the W3C trace context
    (traceparent, tracestate) to send with it, so that the server's spans join the caller's trace. Without an
    OpenTelemetry SDK set up the span records nothing, and the context is the caller's current span's, if any.
    A generator passes current=False: the span is never made current (a context attached in one step of a
    generator cannot be detached in another)."""
    span = _TRACER.start_span(f"{SERVICE_NAME}/{method}", kind=SpanKind.CLIENT, attributes=_span_attributes(method))
    context = trace.set_span_in_context(span)
    carrier: dict[str, str] = {}
    if span.get_span_context().is_valid:
        propagate.inject(carrier, context=context)
    token = otel_context.attach(context) if current else None
    try:
        yield span, tuple(carrier.items())
    finally:
        if token is not None:
            otel_context.detach(token)
        span.end()


def _span_attributes(method: str) -> dict[str, str]:
    return {"rpc.system": "grpc", "rpc.service": SERVICE_NAME, "rpc.method": method}


def failed(span: trace.Span, code: grpc.StatusCode) -> None:
    """Mark a client span with the status its call failed with."""
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", code.value[0])
        span.set_status(Status(StatusCode.ERROR, code.name))
