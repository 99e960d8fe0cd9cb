"""A real digitnet server (grpc.aio) on an ephemeral loopback port, run on its own event-loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import grpc
import pytest

from digitnet.service._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.client import DigitClient
from digitnet.service.server import create_server
from digitnet.service.settings import ServerSettings
from digitnet.service.state import ServingState

from ..conftest import DEFAULT_MODEL

T = TypeVar("T")


class ServerThread:
    """Runs an asyncio server in a background thread so that tests can use plain blocking clients."""

    def __init__(self, settings: ServerSettings) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.state = self.call(self._make_state())
        self.server, self.port = self.call(create_server(settings, self.state))
        self.call(self.server.start())
        self.address = f"127.0.0.1:{self.port}"

    @staticmethod
    async def _make_state() -> ServingState:
        return ServingState()  # its health servicer must be made on the server's loop

    def call(self, coroutine: Awaitable[T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=60)  # type: ignore[arg-type]

    @staticmethod
    async def _cancel_tasks() -> None:
        # What asyncio.run does on exit: background tasks (the adaptive batcher) end with their loop.
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    def stop(self, grace: float | None = None) -> None:
        """Stop the server (waiting up to `grace` seconds for in-flight RPCs) and its loop."""
        self.call(self.server.stop(grace))
        self.call(self._cancel_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


@contextmanager
def running_server(**overrides: object) -> Iterator[ServerThread]:
    """Start a server on port 0 with the committed model and the given settings."""
    server = ServerThread(ServerSettings(**{"model": DEFAULT_MODEL, "port": 0, **overrides}))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with running_server(max_request_images=64, max_image_bytes=200_000, max_message_bytes=1_000_000) as server:
        yield server


@pytest.fixture(scope="module")
def channel(server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(server.address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.DigitClassifierStub:
    return pb_grpc.DigitClassifierStub(channel)


@pytest.fixture(scope="module")
def client(server: ServerThread) -> Iterator[DigitClient]:
    with DigitClient(server.address, timeout=10) as client:
        yield client
