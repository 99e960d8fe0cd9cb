"""The committed protoc output matches what `./dev protos` generates from protos/ now."""

from __future__ import annotations

from ...conftest import load_tool

protos = load_tool("protos")


def test_generated_code_is_current() -> None:
    committed = {p.name: p.read_text() for p in protos.GENERATED.glob("*_pb2*")}
    assert committed == protos.generate(), "protos/ changed: run ./dev protos and commit service/digitnet/service/api/_generated"
