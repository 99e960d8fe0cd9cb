"""A real digitnet server (grpc.aio) on an ephemeral loopback port, run on its own event-loop thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import grpc
import numpy as np
import pytest

from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc
from digitnet.service.client.digit_client import DigitClient
from digitnet.service.server.process import Server
from digitnet.service.settings.server import ServerSettings

from ..conftest import CORPUS, DEFAULT_MODEL
from .telemetry.otlp import Receiver, receiving

T = TypeVar("T")


class ServerThread:
    """Runs an asyncio server in a background thread so that tests can use plain blocking clients."""

    def __init__(self, settings: ServerSettings, before_start: Callable[[grpc.aio.Server], None] | None = None, http: bool = False) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        #: The whole server as `digitnet serve` runs it; HTTP on a free port only when asked for (http=True).
        self.running = self.call(Server.create(settings, http_port=0 if http else None))
        self.server, self.port, self.state = self.running.grpc, self.running.port, self.running.state
        if before_start:
            before_start(self.server)  # e.g. register a probe service of the test's own
        self.call(self.running.start())
        self.address = f"127.0.0.1:{self.port}"
        self.http = self.running.http
        self.http_url = f"http://127.0.0.1:{self.http.port}" if self.http else ""

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
        self.call(self.running.stop(grace))
        self.call(self._cancel_tasks())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)


@contextmanager
def running_server(before_start: Callable[[grpc.aio.Server], None] | None = None, http: bool = False, **overrides: object) -> Iterator[ServerThread]:
    """Start a server on port 0 with the committed model and the given settings (and HTTP on a free port, if asked)."""
    server = ServerThread(ServerSettings(**{"model": DEFAULT_MODEL, "port": 0, **overrides}), before_start, http)
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


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    """An OTLP/gRPC trace receiver on a free loopback port (telemetry/otlp.py): it, and the port."""
    with receiving() as (received, port):
        yield received, port


def write_model_that_fails_to_run(path: Path) -> Path:
    """Write a copy of the committed model, with its card, that loads and verifies but fails on any batch
    whose size is not a multiple of 5 (a Reshape it cannot do): what a broken export could look like."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(DEFAULT_MODEL))
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([-1, 5], dtype=np.int64), "bad_shape"),
            numpy_helper.from_array(np.array([-1, 784], dtype=np.int64), "back_shape"),
        ]
    )
    cast = next(node for node in graph.node if node.output[0] == "cast_input")
    cast.output[0] = "cast_raw"
    graph.node.insert(1, helper.make_node("Reshape", ["cast_raw", "bad_shape"], ["in_fives"]))
    graph.node.insert(2, helper.make_node("Reshape", ["in_fives", "back_shape"], ["cast_input"]))
    return _write_with_card(model, path)


def write_model_that_answers_nan(path: Path) -> Path:
    """Write a copy of the committed model, with its card, whose first-layer weights are +-1e38: it answers
    an all-black image, and NaN for any image with ink."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(DEFAULT_MODEL))
    [weights] = [init for init in model.graph.initializer if init.name == "coefficient"]
    weights.CopyFrom(numpy_helper.from_array(np.sign(numpy_helper.to_array(weights)).astype(np.float32) * np.float32(1e38), "coefficient"))
    return _write_with_card(model, path)


def write_named_copy(source: Path, path: Path, name: str) -> Path:
    """Write a copy of a model whose card (the JSON one and the one embedded in the file) names it `name`: a
    model the repository serves as `name`, with the source's weights."""
    import onnx

    from digitnet.service.contract.card import read_card
    from digitnet.service.contract.constants import CARD_METADATA_KEY

    model = onnx.load(str(source))
    card = read_card(source).model_copy(update={"name": name})
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {CARD_METADATA_KEY: card.to_json(include_file_hash=False)})
    data = model.SerializeToString()
    path.write_bytes(data)
    path.with_suffix(".json").write_text(card.with_file_hash(data).to_json())
    return path


def _write_with_card(model: object, path: Path) -> Path:
    from digitnet.service.contract.card import card_path_for, read_card

    data = model.SerializeToString()  # type: ignore[attr-defined]
    path.write_bytes(data)
    card_path_for(path).write_text(read_card(DEFAULT_MODEL).with_file_hash(data).to_json())
    return path


class DecodeSpy:
    """Stands in for the core's image decoding: counts calls, and can slow each one down or hold them all."""

    def __init__(self) -> None:
        self.calls = 0
        self.delay = 0.0
        self.released = threading.Event()
        self.released.set()
        self.entered = threading.Semaphore(0)
        self.after_call: Callable[[int], None] = lambda calls: None

    def hold(self) -> None:
        """Make every decode wait until release()."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()


@pytest.fixture
def decode_spy(monkeypatch: pytest.MonkeyPatch) -> DecodeSpy:
    """Watch the core's image decoding (in the test process: in-process servers included)."""
    from digitnet.service.inference import classifier as core

    spy, original = DecodeSpy(), core.decode

    def decode(data: bytes, limits: object) -> np.ndarray:
        spy.calls += 1
        spy.entered.release()
        spy.released.wait(30)
        time.sleep(spy.delay)
        spy.after_call(spy.calls)
        return original(data, limits)  # type: ignore[arg-type]

    monkeypatch.setattr(core, "decode", decode)
    return spy


ONE_PIXEL_PNG = (CORPUS / "png_L_1x1.png").read_bytes()


@pytest.fixture
def bug_on_one_pixel_images(monkeypatch: pytest.MonkeyPatch) -> bytes:
    """Plant a bug that only 1x1 images meet (in preprocessing); return such an image."""
    from digitnet.service.inference import classifier as core

    original = core.normalise

    def normalise(grey: np.ndarray) -> np.ndarray | None:
        if grey.shape == (1, 1):
            raise IndexError("a bug only this input meets")
        return original(grey)

    monkeypatch.setattr(core, "normalise", normalise)
    return ONE_PIXEL_PNG
