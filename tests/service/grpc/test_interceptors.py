"""What every call goes through: the bound on calls in flight, and health Watch streaming through the guard."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import REGISTRY

from digitnet.service.api._generated import digitnet_pb2 as pb
from digitnet.service.api._generated import digitnet_pb2_grpc as pb_grpc

from ...conftest import GOLDEN
from ..conftest import DecodeSpy, running_server

IMAGE = pb.Image(encoded=(GOLDEN / "5_scan.png").read_bytes())
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def test_calls_over_the_bound_are_unavailable_and_health_stays_open(decode_spy: DecodeSpy) -> None:
    decode_spy.hold()
    with running_server(max_concurrent_rpcs=2) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DigitClassifierStub(channel)
        with futures.ThreadPoolExecutor(2) as pool:
            held_calls = [pool.submit(stub.Classify, pb.ClassifyRequest(image=IMAGE), timeout=20) for _ in range(2)]
            assert decode_spy.entered.acquire(timeout=10) and decode_spy.entered.acquire(timeout=10)  # both calls are at work
            assert REGISTRY.get_sample_value("digitnet_requests_in_flight") == 2
            with pytest.raises(grpc.RpcError) as caught:
                stub.Classify(pb.ClassifyRequest(image=IMAGE), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "busy: 2 calls in flight" in caught.value.details()
            check = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert check.status == SERVING  # probes are not counted, nor refused
            decode_spy.release()
            assert [call.result().prediction.label for call in held_calls] == [5, 5]
        assert stub.Classify(pb.ClassifyRequest(image=IMAGE), timeout=5).prediction.label == 5  # slots given back


def test_health_watch_streams_every_change_to_every_watcher() -> None:
    # Watch used to fail through the interceptor (UNKNOWN: 'async for' ... got coroutine), and grpc's own
    # servicer forgot the other watchers of a service once one of them left.
    with running_server() as server, grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watchers = [health.Watch(health_pb2.HealthCheckRequest(service=name)) for name in ("", "", "digitnet.v1.DigitClassifier")]
        leaving = watchers.pop(0)
        assert next(leaving).status == SERVING
        leaving.cancel()
        firsts = [next(watcher).status for watcher in watchers]
        assert firsts == [SERVING, SERVING]
        time.sleep(0.2)  # the cancelled watcher is gone from the server
        server.call(server.state.draining())
        assert [next(watcher).status for watcher in watchers] == [NOT_SERVING, NOT_SERVING]
        assert [list(watcher) for watcher in watchers] == [[], []]  # then the watches end: they do not hold the stop up


def test_open_streams_never_lock_out_single_calls() -> None:
    # 64 idle ClassifyStream calls once took every slot: every other client got UNAVAILABLE, indefinitely.
    with running_server(max_concurrent_rpcs=2) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DigitClassifierStub(channel)
        silence = threading.Event()

        def nothing() -> Iterator[pb.ClassifyRequest]:
            silence.wait(30)
            return
            yield

        idle = [stub.ClassifyStream(nothing()) for _ in range(2)]
        deadline = time.monotonic() + 10
        while REGISTRY.get_sample_value("digitnet_requests_in_flight") != 2 and time.monotonic() < deadline:
            time.sleep(0.01)  # until both streams are admitted
        with pytest.raises(grpc.RpcError) as caught:  # a third is over the bound
            next(stub.ClassifyStream(nothing()))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "2 streams open" in caught.value.details()
        assert stub.Classify(pb.ClassifyRequest(image=IMAGE), timeout=5).prediction.label == 5
        silence.set()
        for stream in idle:
            assert list(stream) == []
