"""One data plane under both transports: gRPC and REST give the same metadata, configuration, statistics and
repository index, and REST requests are batched as gRPC's are (spoken to by the real tritonclient)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from PIL import Image

from digitnet.service.api._generated import oip_pb2
from digitnet.service.contract.constants import MODEL_NAME
from digitnet.service.protocol.catalog import as_record

from ...conftest import GOLDEN
from ..conftest import ServerThread, running_server

DIGITS = np.stack([np.asarray(Image.open(GOLDEN / f"{d}_mnist.png"), dtype=np.uint8).reshape(784) for d in range(10)])


@pytest.fixture(scope="module")
def batching_server() -> Iterator[ServerThread]:
    with running_server(http=True, max_batch_size=32, max_batch_delay_ms=20) as server:
        yield server


def _clients(server: ServerThread) -> tuple[triton_grpc.InferenceServerClient, triton_http.InferenceServerClient]:
    return triton_grpc.InferenceServerClient(server.address), triton_http.InferenceServerClient(server.http_url.removeprefix("http://"))


def test_both_transports_answer_the_same_metadata_configuration_and_index(batching_server: ServerThread) -> None:
    over_grpc, over_rest = _clients(batching_server)
    asked = {
        "server metadata": (over_grpc.get_server_metadata(), over_rest.get_server_metadata()),
        "model metadata": (over_grpc.get_model_metadata(MODEL_NAME), over_rest.get_model_metadata(MODEL_NAME)),
        "model config": (over_grpc.get_model_config(MODEL_NAME).config, over_rest.get_model_config(MODEL_NAME)),
        "repository index": (over_grpc.get_model_repository_index(), {"models": over_rest.get_model_repository_index()}),
        "statistics": (over_grpc.get_inference_statistics(MODEL_NAME), over_rest.get_inference_statistics(MODEL_NAME)),
    }
    for what, (grpc_answer, rest_answer) in asked.items():
        # Read as our own messages: tritonclient's have fields this server never sets.
        ours = getattr(oip_pb2, type(grpc_answer).__name__).FromString(grpc_answer.SerializeToString())
        assert as_record(ours) == rest_answer, what
    config: dict[str, Any] = asked["model config"][1]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 20_000  # numbers, as Triton's REST API writes them
    extensions = asked["server metadata"][1]["extensions"]
    assert {"binary_tensor_data", "model_configuration", "statistics", "model_repository"} <= set(extensions)


def test_rest_requests_are_batched_as_grpc_requests_are(batching_server: ServerThread) -> None:
    _, over_rest = _clients(batching_server)
    before = over_rest.get_inference_statistics(MODEL_NAME)["model_stats"][0]

    def ask(n: int) -> tuple[int, int]:
        client = triton_http.InferenceServerClient(batching_server.http_url.removeprefix("http://"))
        tensor = triton_http.InferInput("pixels", [1, 784], "UINT8")
        tensor.set_data_from_numpy(DIGITS[n % 10 : n % 10 + 1])
        label = int(client.infer(MODEL_NAME, [tensor]).as_numpy("label")[0])
        client.close()
        return n % 10, label

    with futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, range(96)))
    assert all(wanted == got for wanted, got in answers), "a response held another request's answer"
    after = over_rest.get_inference_statistics(MODEL_NAME)["model_stats"][0]
    images = after["inference_count"] - before["inference_count"]
    runs = after["execution_count"] - before["execution_count"]
    assert images == 96 and runs < images, f"{images} images in {runs} model runs: REST requests were not merged"
