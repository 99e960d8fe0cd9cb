"""Who may call, and what every call is counted in: the one guard policy that both transports apply.

gRPC's guard (grpc/interceptors.py) and HTTP's (http/guard.py) read each call's metadata into it before its
message is read: the bearer token (exactly one, compared in constant time), no new work while the server
drains, a bound on calls in flight (streams counted apart, so that open streams never lock out single
calls). Health checks, liveness, readiness and reflection are never guarded: each transport says which of
its calls those are. Every call is then counted the same way: requests by status and by the model that answered
(the repository marks it: inference.statistics.ANSWERING), latency, and, for the calls that run a model, that
model's Open Inference Protocol statistics, and, when the payload log is on (telemetry/payloads.py), what the
inference calls were given and answered: a guard opens each call with `start` and closes it with `finish`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Any

from digitnet.service.contract.errors import ConfigurationError, DigitnetError, Unauthenticated, Unavailable
from digitnet.service.inference.statistics import ANSWERING
from digitnet.service.protocol.dataplane import Readiness
from digitnet.service.settings.server import ServerSettings
from digitnet.service.telemetry.observability import IN_FLIGHT, LATENCY, REQUESTS, count_error
from digitnet.service.telemetry.payloads import PayloadLog

#: The calls that run the model, whatever the transport (HTTP's /v1/classify is Classify): counted in the OIP's
#: ModelStatistics.
INFERENCE_CALLS = frozenset({"Classify", "ClassifyBatch", "ClassifyStream", "Explain", "ModelInfer", "ModelStreamInfer"})
#: The calls the payload log records, one record a call (streams are not recorded: a record is one request and its answer).
LOGGED_CALLS = frozenset({"Classify", "ClassifyBatch", "Explain", "ModelInfer"})


#: The request counter and latency histogram of each (call label, status, model) seen: few, as the labels are.
_SERIES: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def open_payload_log(settings: ServerSettings) -> PayloadLog | None:
    """The payload log the settings describe (DIGITNET_PAYLOAD_LOG and friends), or None when it is off."""
    if settings.payload_log is None:
        return None
    try:
        return PayloadLog(
            settings.payload_log,
            sample=settings.payload_log_sample,
            input_form=settings.payload_log_input,
            max_image_bytes=settings.payload_log_max_image_bytes,
            max_bytes=settings.payload_log_max_bytes,
            backups=settings.payload_log_backups,
            sink_url=settings.payload_log_url,
            limits=settings.limits,
        )
    except OSError as err:  # a folder that cannot be made, a file that cannot be written: one line at start-up
        raise ConfigurationError(f"cannot write the payload log {settings.payload_log}: {err.strerror or err}") from err


class Admission:
    """Admit or refuse a call from its metadata; count what every call did."""

    def __init__(self, readiness: Readiness, token: str | None = None, max_in_flight: int = 0, payloads: PayloadLog | None = None) -> None:
        self._readiness = readiness
        self.payloads = payloads
        self._expected = f"Bearer {token}".encode() if token else None
        self._max_in_flight = max_in_flight
        # Single calls and streams are bounded apart, so that open streams (idle ones too) never lock out single calls.
        self._in_flight = {False: 0, True: 0}  # one event loop: no lock needed

    @classmethod
    def from_settings(cls, settings: ServerSettings, readiness: Readiness, payloads: PayloadLog | None = None) -> Admission:
        """The policy the settings describe: DIGITNET_TOKEN and DIGITNET_MAX_CONCURRENT_RPCS; calls recorded in
        `payloads` (the server's one payload log, shared by both transports), if given."""
        token = settings.token.get_secret_value() if settings.token is not None else None
        return cls(readiness, token, settings.max_concurrent_rpcs, payloads)

    def refusal(self, authorization: Callable[[], Sequence[bytes]], stream: bool = False) -> DigitnetError | None:
        """Why this call may not start, or None: `authorization` gives every authorization value the call carries
        (asked only when a token is set: reading a call's metadata costs on every call)."""
        if self._expected is not None:
            given = authorization()
            # Exactly one: which of several a proxy or a client library meant is not for us to guess.
            if len(given) != 1 or not hmac.compare_digest(given[0], self._expected):
                return Unauthenticated("missing or wrong bearer token (send authorization: Bearer <token>)")
        if self._readiness.draining_now:
            return Unavailable("the server is draining; retry on another replica")
        if self._max_in_flight and self._in_flight[stream] >= self._max_in_flight:
            what = "streams open" if stream else "calls in flight"
            return Unavailable(f"the server is busy: {self._in_flight[stream]} {what} (DIGITNET_MAX_CONCURRENT_RPCS); retry with backoff")
        return None

    def admit(self, authorization: Callable[[], Sequence[bytes]], stream: bool = False) -> None:
        """Take a slot for this call, or raise its refusal (counted as an error of its kind)."""
        refused = self.refusal(authorization, stream)
        if refused is not None:
            count_error(refused)
            raise refused
        self._in_flight[stream] += 1
        IN_FLIGHT.inc()

    def release(self, stream: bool = False) -> None:
        """Give back the slot an admitted call took."""
        self._in_flight[stream] -= 1
        IN_FLIGHT.dec()

    def start(self, request_id: Callable[[], str | None]) -> None:
        """Start a call (see `begin`), and its payload capture when the payload log is on: `request_id` gives the
        x-request-id the client sent, if any (asked only then)."""
        Admission.begin()
        if self.payloads is not None:
            self.payloads.begin(request_id)

    def finish(self, call: str, label: str, status: str, ok: bool, elapsed: float, cancelled: bool = False) -> None:
        """Count a finished call (see `record`), and queue its payload record if it is one the log keeps."""
        Admission.record(call, label, status, ok, elapsed, cancelled)
        if self.payloads is not None and call in LOGGED_CALLS:
            self.payloads.finish(call, "http" if label.startswith("http ") else "grpc", status, ok, elapsed)

    @staticmethod
    def begin() -> None:
        """Start a call: no model answers it yet (each call runs in its own task, but a transport may reuse one)."""
        ANSWERING.set(None)

    @staticmethod
    def record(call: str, label: str, status: str, ok: bool, elapsed: float, cancelled: bool = False) -> None:
        """Count a finished call: `label` names it in the metrics (a transport may prefix it), `status` is its code,
        against the model that answered it. A call its client cancelled is no inference of the statistics' (the
        client did not wait for an answer)."""
        answering = ANSWERING.get()
        model = answering.model if answering is not None else ""
        counted = _SERIES.get((label, status, model))
        if counted is None:  # prometheus-client's labels() locks and hashes on every call: look each series up once
            counted = _SERIES[label, status, model] = (REQUESTS.labels(label, status, model), LATENCY.labels(label, model))
        counted[0].inc()
        counted[1].observe(elapsed)
        if answering is not None and call in INFERENCE_CALLS and not cancelled:
            answering.record_call(ok, elapsed)
