"""Hostile REST requests: mutated OIP infer bodies (wrong types, shapes, sizes, cut short, bad binary headers)
must each be answered 200 or with the protocol's JSON error, never a 5xx, and the server must keep serving."""

from __future__ import annotations

import copy
import json
import random
import urllib.error
import urllib.request
from typing import Any

import pytest

from ..conftest import running_server

BASE: dict[str, Any] = {
    "id": "x",
    "parameters": {"min_confidence": 0.3},
    "inputs": [{"name": "pixels", "shape": [1, 784], "datatype": "FP32", "data": [0.1] * 784}],
    "outputs": [{"name": "label"}],
}
VALUES: list[Any] = [None, True, -1, 0, 1, 2**63, -(2**70), 1e308, "", "x" * 100, [], {}, [1], [[1]], {"a": 1}, [None] * 784]
VALUES += ["FP32", "UINT8", "BYTES", [1, 784], [2**31, 784], [1, 28, 28], [-1, 784], [0.5] * 784, [300] * 784, {"binary_data_size": 3136}]


def _mutate(rng: random.Random, value: Any) -> None:
    if isinstance(value, dict) and value:
        key = rng.choice(list(value))
        roll = rng.random()
        if roll < 0.2:
            del value[key]
        elif roll < 0.6 or not isinstance(value[key], dict | list):
            value[key] = rng.choice(VALUES)
        else:
            _mutate(rng, value[key])
    elif isinstance(value, list) and value:
        index = rng.randrange(len(value))
        if isinstance(value[index], dict | list) and rng.random() < 0.6:
            _mutate(rng, value[index])
        else:
            value[index] = rng.choice(VALUES)


@pytest.mark.slow
def test_mutated_infer_requests_never_get_a_5xx() -> None:
    rng = random.Random(0)
    failures: list[str] = []
    with running_server(http=True) as server:
        url = f"{server.http_url}/v2/models/digitnet/infer"
        for _ in range(600):
            body = copy.deepcopy(BASE)
            for _ in range(rng.randint(1, 3)):
                _mutate(rng, body)
            raw = json.dumps(body).encode()
            headers = {}
            if rng.random() < 0.15:
                raw = raw[: rng.randrange(len(raw) + 1)]  # cut short
            if rng.random() < 0.15:
                headers["Inference-Header-Content-Length"] = str(rng.choice([-1, 0, len(raw), len(raw) + 5, "abc"]))
                raw += bytes(rng.choice([0, 784, 3136]))
            try:
                with urllib.request.urlopen(urllib.request.Request(url, raw, headers), timeout=30) as answer:
                    status, text = answer.status, answer.read()
            except urllib.error.HTTPError as error:
                status, text = error.code, error.read()
            if status >= 500 or (status != 200 and set(json.loads(text)) != {"error"}):
                failures.append(f"{status} {text[:200]!r} for {raw[:200]!r}")
        with urllib.request.urlopen(f"{server.http_url}/v2/health/ready", timeout=10) as ready:
            assert ready.status == 200
    assert failures == []
