"""The gRPC server (grpc.aio): create_server(settings) -> (server, port), serve() with graceful drain, workers.

Usage:
    async def main():
        server, port = await create_server(ServerSettings(port=0))
        await server.start()
        ...
        await server.stop(grace=5)
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from concurrent import futures
from contextlib import closing
from typing import Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from digitnet.service import __version__
from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.api.names import SERVICE_NAME
from digitnet.service.api.sockets import claim_port
from digitnet.service.api.tls import read_pem
from digitnet.service.contract.errors import ConfigurationError
from digitnet.service.grpc.interceptors import Guard
from digitnet.service.grpc.oip import OIP_SERVICE, OipServicer, add_oip_to_server
from digitnet.service.grpc.reflection import reflection_pool
from digitnet.service.grpc.reload import ModelReloader, load_model, publish
from digitnet.service.grpc.servicer import DigitClassifierServicer
from digitnet.service.grpc.settings import ServerSettings
from digitnet.service.grpc.state import ServingState
from digitnet.service.inference.classifier import Classifier
from digitnet.service.inference.processes import terminate_with_parent
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.telemetry.observability import configure_logging, start_metrics

log = logging.getLogger(__name__)


class Companion(Protocol):
    """Another front door served beside gRPC, in the same process and event loop (HTTP)."""

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish, close."""
        ...


#: Starts a companion over the shared classifier and serving state (which tells it when to drain);
#: returns None when that door is turned off. The CLI passes HTTP's; this layer knows none of them.
StartCompanion = Callable[[ServerSettings, Classifier, ServingState], Awaitable[Companion | None]]


async def create_server(settings: ServerSettings, state: ServingState | None = None) -> tuple[grpc.aio.Server, int]:
    """Load, verify and warm the model, then build a bound (not yet started) server; return it and its port.

    Health (grpc.health.v1) and OIP readiness report SERVING once this returns; pass your own `state`
    to turn them off again (serve() does, while draining) and to reach `state.reloader`.
    """
    credentials = _tls_credentials(settings)  # bad TLS files fail before the model is even read
    model = load_model(settings)
    publish(model)
    classifier = Classifier(model, settings.limits, settings.max_request_images, settings.min_confidence)
    executor = futures.ThreadPoolExecutor(settings.thread_count, thread_name_prefix="digitnet-work")
    state = state or ServingState()
    token = settings.token.get_secret_value() if settings.token is not None else None
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.message_bytes),
            ("grpc.max_send_message_length", settings.message_bytes),
            # A lone server must own its port: refuse to share it silently with another running server.
            ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
        ],
    )
    state.reloader = ModelReloader(classifier, settings)
    state.executor = executor
    Guard(state, token, settings.max_concurrent_rpcs).install(server)  # first: every service goes through it
    pb_grpc.add_DigitClassifierServicer_to_server(DigitClassifierServicer(classifier, executor, server_limits(settings)), server)
    plane = DataPlane.build(classifier, executor, state, settings.max_batch_size, settings.max_batch_delay_ms, settings.max_request_seconds)
    state.plane = plane
    add_oip_to_server(OipServicer(plane), server)
    health_pb2_grpc.add_HealthServicer_to_server(state.health, server)
    # Reflection shows the OIP under its real package, so that grpcurl and other generic tools describe and call it.
    pool = reflection_pool(pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
    reflection.enable_server_reflection((SERVICE_NAME, OIP_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME), server, pool=pool)
    address = f"{settings.host}:{settings.port}"
    if settings.workers == 1 and settings.port:
        claim_port(settings.host, settings.port, share=False).close()  # a taken port: one clear line, not grpc's C++ log
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError as err:  # grpc says only "Failed to bind to address"
        raise ConfigurationError(f"cannot listen on {address}: is another server using the port, or is the host not this machine's? ({err})") from err
    await state.serving()
    log.info(
        "model %s sha256 %s on %s, %d worker threads, at most %s calls in flight, messages up to %d bytes, "
        "adaptive batching %s, %s%s, bound to %s:%d",
        settings.model,
        model.sha256[:12],
        model.provider,
        settings.thread_count,
        settings.max_concurrent_rpcs or "unbounded",
        settings.message_bytes,
        f"up to {settings.max_batch_size} images / {settings.max_batch_delay_ms} ms" if plane.batcher else "off",
        ("mutual TLS" if settings.tls_client_ca else "TLS") if credentials else "plaintext",
        ", bearer token required" if settings.token else "",
        settings.host,
        port,
    )
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


def _tls_credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert is None and settings.tls_key is None:
        if settings.tls_client_ca is not None:
            raise ConfigurationError("--tls-client-ca needs --tls-cert and --tls-key: mutual TLS is TLS first")
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        raise ConfigurationError("TLS needs both --tls-cert and --tls-key")
    key, cert, client_ca = read_pem(settings.tls_key), read_pem(settings.tls_cert), read_pem(settings.tls_client_ca)
    assert key is not None and cert is not None  # both checked set above
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None)


def serve(settings: ServerSettings, companions: Sequence[StartCompanion] = ()) -> int:
    """Run the server (and its companions) until SIGTERM or SIGINT, then drain: NOT_SERVING, finish
    in-flight requests, exit 0. SIGHUP reloads the model (as --watch does on a change) without dropping a request.
    """
    return _serve_workers(settings, companions) if settings.workers > 1 else asyncio.run(_serve_one(settings, companions))


async def _serve_one(settings: ServerSettings, companions: Sequence[StartCompanion], worker: int = 0) -> int:
    # First of all: a SIGTERM while the model loads must still end in a drain and exit 0, not kill the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    state = ServingState()
    server, port = await create_server(settings, state)
    started = [await start(settings, state.reloader.classifier, state) for start in companions]
    running = [companion for companion in started if companion is not None]
    if settings.metrics_port:
        start_metrics(settings.metrics_port + worker, settings.metrics_address)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, settings.metrics_port + worker)
    reloads: set[asyncio.Task[bool]] = set()  # keep references: the loop holds tasks only weakly

    def reload() -> None:
        task = loop.create_task(state.reloader.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)  # reload() logs and counts its own failures

    loop.add_signal_handler(signal.SIGHUP, reload)
    watcher = loop.create_task(state.reloader.watch(settings.watch_seconds)) if settings.watch else None
    await server.start()
    log.info("digitnet %s serving on port %d", __version__, port)
    await stop.wait()
    log.info("draining: NOT_SERVING, finishing in-flight requests (up to %.0f s)", settings.grace_seconds)
    if watcher:
        watcher.cancel()
    await state.draining()
    # New calls now get UNAVAILABLE (retried elsewhere) while clients and load balancers notice;
    # then stop: in-flight calls get up to grace_seconds to finish.
    await asyncio.sleep(min(settings.drain_seconds, settings.grace_seconds))
    await asyncio.gather(server.stop(settings.grace_seconds), *(companion.stop() for companion in running))
    log.info("stopped")
    return 0


def _serve_workers(settings: ServerSettings, companions: Sequence[StartCompanion]) -> int:
    # Reserve the port first (SO_REUSEPORT) so that port 0 resolves to one port shared by every worker.
    with closing(claim_port(settings.host, settings.port, share=True)) as reserve:
        shared = settings.model_copy(update={"port": reserve.getsockname()[1]})
        # spawn, not fork: gRPC's core must not be forked once it runs (grpc/grpc#16001).
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_worker_main, args=(shared, companions, i), name=f"digitnet-worker-{i}") for i in range(settings.workers)]
        for worker in workers:
            worker.start()
        log.info("started %d worker processes on port %d", len(workers), shared.port)

        stopping: list[int] = []

        def forward(signum: int, _frame: object) -> None:
            if signum != signal.SIGHUP:
                stopping.append(signum)
            for worker in workers:
                if worker.is_alive() and worker.pid:
                    os.kill(worker.pid, signum)

        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, forward)
        for worker in workers:
            worker.join()
    # A worker still importing when asked to stop ends by the signal itself, before it could drain: it served
    # nothing, so that is a clean stop too.
    stopped = {-signum for signum in stopping}
    failed = [f"{w.name} (exit {w.exitcode})" for w in workers if w.exitcode != 0 and w.exitcode not in stopped]
    if failed:
        log.error("workers failed: %s", ", ".join(failed))
        return 1
    return 0


def _worker_main(settings: ServerSettings, companions: Sequence[StartCompanion], worker: int) -> None:
    terminate_with_parent()  # a killed parent leaves no worker serving on its own: each drains and exits
    configure_logging(getattr(logging, settings.log_level.upper()), settings.log_format)
    raise SystemExit(asyncio.run(_serve_one(settings, companions, worker)))
