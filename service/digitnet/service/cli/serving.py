"""What `digitnet serve` runs beside gRPC: the HTTP front door, configured from the same settings.

The CLI is the one layer that sees both transports; gRPC's serve() calls this with the shared classifier.
"""

from __future__ import annotations

from digitnet.service.api.sockets import claim_port
from digitnet.service.grpc.settings import ServerSettings
from digitnet.service.grpc.state import ServingState
from digitnet.service.http.app import HttpOptions
from digitnet.service.http.connections import ConnectionLimits
from digitnet.service.http.front import HttpFront, start_http
from digitnet.service.inference.classifier import Classifier


def check_listening_ports(settings: ServerSettings) -> None:
    """Refuse a taken HTTP or metrics port in one line before the model is even loaded (as gRPC's own port is checked)."""
    if settings.http_port and settings.workers == 1:
        claim_port(settings.host, settings.http_port, share=False).close()
    for worker in range(settings.workers if settings.metrics_port else 0):  # worker i serves metrics on PORT + i
        claim_port(settings.metrics_address, settings.metrics_port + worker, share=False).close()


async def start_http_beside_grpc(settings: ServerSettings, classifier: Classifier, state: ServingState, port: int | None = None) -> HttpFront | None:
    """Serve HTTP on settings.http_port (None when it is 0: HTTP off), with gRPC's token, limits and TLS.
    `port` overrides it (0: any free port; tests use that)."""
    if port is None and not settings.http_port:
        return None
    options = HttpOptions(
        token=settings.token.get_secret_value() if settings.token is not None else None,
        max_body_bytes=settings.message_bytes,
        request_seconds=settings.max_request_seconds,
        max_in_flight=settings.max_concurrent_rpcs,
        max_json_bytes=settings.http_max_json_bytes,
    )
    limits = ConnectionLimits(
        max_connections=settings.http_max_connections,
        header_seconds=settings.http_header_seconds,
        max_header_bytes=settings.http_max_header_bytes,
        max_headers=settings.http_max_headers,
    )
    tls = (settings.tls_cert, settings.tls_key, settings.tls_client_ca) if settings.tls_cert and settings.tls_key else None
    return await start_http(
        state.plane,
        state.executor,
        host=settings.host,
        port=settings.http_port if port is None else port,
        share=settings.workers > 1,
        options=options,
        tls=tls,
        grace=settings.grace_seconds,
        limits=limits,
    )
