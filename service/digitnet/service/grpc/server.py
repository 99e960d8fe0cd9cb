"""The gRPC transport (grpc.aio): digitnet.v1, the Open Inference Protocol, health and reflection on one port,
every call through the guard. The server layer (server/process.py) builds it over the data plane and runs it.

Usage:
    server, port = create_grpc_server(settings, plane, health, executor)
    await server.start()
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE
from grpc_reflection.v1alpha import reflection, reflection_pb2

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.api.names import OIP_SERVICE, SERVICE_NAME
from digitnet.service.api.sockets import claim_port
from digitnet.service.api.tls import read_pem
from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.grpc.health import HealthServicer
from digitnet.service.grpc.interceptors import Guard
from digitnet.service.grpc.oip import OipServicer, add_oip_to_server
from digitnet.service.grpc.reflection import reflection_pool
from digitnet.service.grpc.servicer import DigitClassifierServicer
from digitnet.service.protocol.admission import Admission
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.settings.server import ServerSettings

log = logging.getLogger(__name__)


def create_grpc_server(settings: ServerSettings, plane: DataPlane, health: HealthServicer, executor: Executor) -> tuple[grpc.aio.Server, int]:
    """Build a bound (not yet started) gRPC server over the data plane; return it and its port."""
    credentials = tls_credentials(settings)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.message_bytes),
            ("grpc.max_send_message_length", settings.message_bytes),
            # A lone server must own its port: refuse to share it silently with another running server.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ],
    )
    Guard(Admission.from_settings(settings, plane.readiness, plane.payloads)).install(server)  # first: every service goes through it
    pb_grpc.add_DigitClassifierServicer_to_server(DigitClassifierServicer(plane, executor, server_limits(settings)), server)
    add_oip_to_server(OipServicer(plane), server)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    # Reflection shows the OIP under its real package, so that grpcurl and other generic tools describe and call it.
    pool = reflection_pool(pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
    reflection.enable_server_reflection((SERVICE_NAME, OIP_SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME), server, pool=pool)
    address = f"{settings.host}:{settings.port}"
    if settings.workers == 1 and settings.port:
        claim_port(settings.host, settings.port, share=False).close()  # a taken port: one clear line, not grpc's C++ log
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:  # grpc says only "Failed to bind to address"
        raise ConfigurationError(f"cannot listen on {address}: is another server using the port, or is the host not this machine's? ({err})") from err
    return server, port


def server_limits(settings: ServerSettings) -> pb.ServerLimits:
    """The limits GetModelInfo tells clients, so that they size their requests to fit."""
    return pb.ServerLimits(
        max_message_bytes=settings.message_bytes,
        max_image_bytes=settings.max_image_bytes,
        max_request_images=settings.max_request_images,
        max_image_pixels=settings.max_image_pixels,
        max_image_side=settings.max_image_side,
        max_image_aspect=settings.max_image_aspect,
        max_request_seconds=settings.max_request_seconds,
    )


def tls_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    """The server's TLS credentials from the PEM files the settings name (None: plaintext); a bad setup is one line."""
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise ConfigurationError("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
    key, cert, client_ca = read_pem(settings.tls_key), read_pem(settings.tls_cert), read_pem(settings.tls_client_ca)
    assert key is not None and cert is not None  # both checked set above
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None)
