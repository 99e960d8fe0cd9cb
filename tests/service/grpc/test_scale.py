"""Several replicas behind one client: round-robin traffic, and a replica stopping loses no request."""

from __future__ import annotations

import signal
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from digitnet.service.client.digit_client import DigitClient, channel_target
from digitnet.service.contract.errors import ConfigurationError

from ...conftest import DEFAULT_MODEL
from ..helpers import TRAFFIC_IMAGE, Traffic, free_port, serve


def _classify_count(metrics_port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "digitnet_requests_total" and s.labels.get("rpc") == "Classify"
    )


def test_targets() -> None:
    assert channel_target("localhost:1") == ("localhost:1", None)
    assert channel_target(["127.0.0.1:1", "127.0.0.1:2"]) == ("ipv4:127.0.0.1:1,127.0.0.1:2", None)
    assert channel_target("127.0.0.1:1,127.0.0.1:2") == ("ipv4:127.0.0.1:1,127.0.0.1:2", None)
    assert channel_target("dns:///digitnet:50051") == ("dns:///digitnet:50051", None)
    # Host names too (they failed: "the target uri is not valid: ipv4:localhost:1"), each resolved here.
    assert channel_target("localhost:1,localhost:2") == ("ipv4:127.0.0.1:1,127.0.0.1:2", "localhost")
    assert channel_target(["localhost:1", "127.0.0.1:2"]) == ("ipv4:127.0.0.1:1,127.0.0.1:2", "localhost")
    with pytest.raises(ConfigurationError, match="cannot resolve 'no-such-host.invalid'"):
        channel_target("no-such-host.invalid:1,localhost:2")
    with pytest.raises(ConfigurationError, match="expected HOST:PORT"):
        channel_target("localhost,localhost:2")


@pytest.mark.slow
def test_round_robin_and_a_replica_stopping() -> None:
    metrics = [free_port(), free_port()]
    replicas = [serve(DEFAULT_MODEL, "--metrics-port", str(port)) for port in metrics]
    try:
        addresses = [f"localhost:{port}" for _, port in replicas]  # host names resolve to every address
        with DigitClient(addresses) as client:
            for _ in range(40):
                assert client.classify(TRAFFIC_IMAGE).label == 4
        counts = [_classify_count(port) for port in metrics]
        assert all(count >= 10 for count in counts), f"round-robin skipped a replica: {counts}"

        with Traffic(",".join(addresses)) as traffic:
            first, _ = replicas[0]
            first.send_signal(signal.SIGTERM)  # drains, then exits: the clients retry on the other replica
            assert first.wait(timeout=30) == 0
            before = traffic.ok
            while traffic.ok < before + 100:
                pass
        assert traffic.failures == [], traffic.failures[:3]
    finally:
        for process, _ in replicas:
            process.kill()
