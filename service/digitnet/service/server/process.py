"""One serving process, and the workers that share its ports: load the models, build the data plane, run gRPC
and HTTP over it, reload on SIGHUP or --watch, drain on SIGTERM.

Usage:
    exit_code = serve(ServerSettings(port=50051))   # until SIGTERM or SIGINT
    # or, driven by hand (tests):
    server = await Server.create(ServerSettings(port=0), http_port=0)
    await server.start(); ...; await server.stop()
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import signal
from concurrent import futures
from contextlib import closing

import grpc

from digitnet.service import __version__
from digitnet.service.api.sockets import claim_port
from digitnet.service.contract.constants import MODEL_NAME
from digitnet.service.grpc.server import create_grpc_server, tls_credentials
from digitnet.service.http.front import HttpFront, start_http
from digitnet.service.inference.processes import terminate_with_parent
from digitnet.service.protocol.admission import open_payload_log
from digitnet.service.protocol.dataplane import DataPlane
from digitnet.service.protocol.repository import ModelRepository
from digitnet.service.server.reload import ModelReloader
from digitnet.service.server.state import ServingState
from digitnet.service.settings.server import ServerSettings
from digitnet.service.telemetry import tracing
from digitnet.service.telemetry.observability import configure_logging, start_metrics

log = logging.getLogger(__name__)


def check_listening_ports(settings: ServerSettings) -> None:
    """Refuse a taken HTTP or metrics port in one line before the model is even loaded (as gRPC's own port is checked)."""
    if settings.http_port and settings.workers == 1:
        claim_port(settings.host, settings.http_port, share=False).close()
    for worker in range(settings.workers if settings.metrics_port else 0):  # worker i serves metrics on PORT + i
        claim_port(settings.metrics_address, settings.metrics_port + worker, share=False).close()


class Server:
    """The models, their data plane and both transports over it, with readiness, drain and reload."""

    def __init__(self, settings: ServerSettings, state: ServingState, plane: DataPlane, grpc_server: grpc.aio.Server, port: int) -> None:
        self.settings, self.state, self.plane = settings, state, plane
        #: The gRPC server, bound; started by start(). Tests may register a probe service on it before.
        self.grpc = grpc_server
        self.port = port
        self.reloader = ModelReloader(plane.repository)
        self.http: HttpFront | None = None

    @classmethod
    async def create(cls, settings: ServerSettings, http_port: int | None = None) -> Server:
        """Load, verify and warm the models, build the data plane and bind gRPC; `http_port` overrides the settings'
        (0: any free port). Readiness and health report SERVING once this returns."""
        tls_credentials(settings)  # bad TLS files fail before a model is even read
        payloads = open_payload_log(settings)  # as does a payload log that cannot be written
        repository = ModelRepository.open(settings)
        # One pool for both transports, so that DIGITNET_THREADS bounds every decoding thread (and the memory they hold).
        executor = futures.ThreadPoolExecutor(settings.thread_count, thread_name_prefix="digitnet-work")
        state = ServingState()
        plane = DataPlane(repository, executor, state, request_seconds=settings.max_request_seconds, payloads=payloads)
        grpc_server, port = create_grpc_server(settings, plane, state.health, executor)
        server = cls(settings, state, plane, grpc_server, port)
        if http_port is not None or settings.http_port:
            server.http = await start_http(settings, plane, executor, http_port)
        await state.serving()
        server._log_start()
        return server

    def _log_start(self) -> None:
        settings, repository = self.settings, self.plane.repository
        for served in repository.served():
            default = f" (the default, also `{MODEL_NAME}`)" if served.name == repository.default_name else ""
            log.info("model %s%s from %s, sha256 %s on %s", served.name, default, served.path, served.model.sha256[:12], served.model.provider)
        log.info(
            "%d worker threads, at most %s calls in flight, messages up to %d bytes, adaptive batching %s, %s%s, bound to %s:%d",
            settings.thread_count,
            settings.max_concurrent_rpcs or "unbounded",
            settings.message_bytes,
            f"up to {settings.max_batch_size} images / {settings.max_batch_delay_ms} ms" if settings.max_batch_delay_ms else "off",
            ("mutual TLS" if settings.tls_client_ca else "TLS") if settings.tls_cert else "plaintext",
            ", bearer token required" if settings.token else "",
            settings.host,
            self.port,
        )

    async def start(self) -> None:
        """Start answering gRPC (HTTP answers from create() on)."""
        await self.grpc.start()

    async def drain(self) -> None:
        """NOT_SERVING everywhere, new calls refused (UNAVAILABLE, retried elsewhere) while clients notice."""
        await self.state.draining()
        await asyncio.sleep(min(self.settings.drain_seconds, self.settings.grace_seconds))

    async def stop(self, grace: float | None = None) -> None:
        """Stop both transports; in-flight calls get up to `grace` seconds (default: the settings') to finish."""
        grace = self.settings.grace_seconds if grace is None else grace
        await asyncio.gather(self.grpc.stop(grace), *([self.http.stop()] if self.http else []))
        if self.plane.payloads is not None:  # after the calls: their records are written before the file closes
            await asyncio.to_thread(self.plane.payloads.close)


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGTERM or SIGINT, then drain: NOT_SERVING, finish in-flight requests, exit 0.
    SIGHUP reloads each model whose file changed (as --watch does) without dropping a request."""
    return _serve_workers(settings) if settings.workers > 1 else asyncio.run(_serve_one(settings))


async def _serve_one(settings: ServerSettings, worker: int = 0) -> int:
    # First of all: a SIGTERM while the model loads must still end in a drain and exit 0, not kill the process.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    tracing.configure(settings.otel)  # in each worker process: the exporter's thread does not survive a fork
    server = await Server.create(settings)
    if settings.metrics_port:
        start_metrics(settings.metrics_port + worker, settings.metrics_address)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_address, settings.metrics_port + worker)
    # What start-up made (modules, the models, the SDK) lives as long as the process: out of the collector's sight, a
    # full collection walks only what serving made since, not the hundred thousand objects before it.
    gc.freeze()
    reloads: set[asyncio.Task[bool]] = set()  # keep references: the loop holds tasks only weakly

    def reload() -> None:
        task = loop.create_task(server.reloader.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)  # reload() logs and counts its own failures

    loop.add_signal_handler(signal.SIGHUP, reload)
    watcher = loop.create_task(server.reloader.watch(settings.watch_seconds)) if settings.watch else None
    await server.start()
    log.info("digitnet %s serving on port %d", __version__, server.port)
    await stop.wait()
    log.info("draining: NOT_SERVING, finishing in-flight requests (up to %.0f s)", settings.grace_seconds)
    if watcher:
        watcher.cancel()
    await server.drain()
    await server.stop()
    log.info("stopped")
    return 0


def _serve_workers(settings: ServerSettings) -> int:
    # Reserve the port first (SO_REUSEPORT) so that port 0 resolves to one port shared by every worker.
    with closing(claim_port(settings.host, settings.port, share=True)) as reserve:
        shared = settings.model_copy(update={"port": reserve.getsockname()[1]})
        # spawn, not fork: gRPC's core must not be forked once it runs (grpc/grpc#16001).
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_worker_main, args=(shared, i), name=f"digitnet-worker-{i}") for i in range(settings.workers)]
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


def _worker_main(settings: ServerSettings, worker: int) -> None:
    terminate_with_parent()  # a killed parent leaves no worker serving on its own: each drains and exits
    if settings.payload_log is not None:  # one file per worker: two writers would rotate each other's file away
        path = settings.payload_log
        settings = settings.model_copy(update={"payload_log": path.with_name(f"{path.stem}.{worker}{path.suffix}")})
    configure_logging(getattr(logging, settings.log_level.upper()), settings.log_format)
    raise SystemExit(asyncio.run(_serve_one(settings, worker)))
