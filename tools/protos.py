"""Regenerate service/digitnet/service/api/_generated from protos/ (`./dev protos`); a test checks the committed code is current.

protoc names imports after the .proto's folder (`from digitnet.v1 import digitnet_pb2`), which would
clash with our own `digitnet` package, so the generated files are flattened into one folder and
their imports made relative. The Open Inference Protocol's file (protos/inference/) declares Triton's
package, `inference`, which is what clients call; its Python code is generated under OIP_PACKAGE instead,
so that it and tritonclient's can be loaded in one process (protobuf refuses two definitions of one name).
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parents[1]  # tools/protos.py
#: The package the OIP's Python code is generated under (the .proto says `inference`).
OIP_PACKAGE = "digitnet.oip.v2"
PROTO_ROOT = REPO / "protos"
GENERATED = REPO / "service" / "digitnet" / "service" / "api" / "_generated"
_IMPORT = re.compile(r"^from [\w.]+ import (\w+_pb2)", re.MULTILINE)


def generate() -> dict[str, str]:
    """Run protoc over every .proto under protos/ and return {file name: source}."""
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as source, tempfile.TemporaryDirectory() as out:
        for name in protos:
            text = (PROTO_ROOT / name).read_text()
            if name.startswith("inference/"):
                text = text.replace("\npackage inference;\n", f"\npackage {OIP_PACKAGE};\n")
            (Path(source) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(source) / name).write_text(text)
        status = protoc.main(["grpc_tools.protoc", f"-I{source}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}", *protos])
        if status != 0:
            raise RuntimeError(f"protoc failed with status {status}")
        files = {}
        for path in sorted(Path(out).rglob("*.py*")):
            files[path.name] = _IMPORT.sub(r"from . import \1", path.read_text())
    return files


def main() -> int:
    """Write the generated code into GENERATED, replacing what was there."""
    files = generate()
    for stale in GENERATED.glob("*_pb2*"):
        stale.unlink()
    for name, text in files.items():
        (GENERATED / name).write_text(text)
    print(f"wrote {', '.join(sorted(files))} to {GENERATED}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
