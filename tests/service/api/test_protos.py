"""The committed protoc output matches what `./dev protos` generates from protos/ now."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[3] / "tools" / "protos.py"


def _load_tool():  # type: ignore[no-untyped-def]
    """tools/ is not part of the installed package: load the regeneration script from its file."""
    spec = importlib.util.spec_from_file_location("digitnet_tools_protos", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


protos = _load_tool()


def test_generated_code_is_current() -> None:
    committed = {p.name: p.read_text() for p in protos.GENERATED.glob("*_pb2*")}
    assert committed == protos.generate(), "protos/ changed: run ./dev protos and commit service/digitnet/service/api/_generated"
