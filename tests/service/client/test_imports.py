"""What importing a layer loads: the client stays light (no model runtime, image decoders or metrics)."""

from __future__ import annotations

import subprocess
import sys

#: Modules a client-only user must not pay for.
SERVER_ONLY = ("onnxruntime", "onnx", "cv2", "PIL", "prometheus_client", "matplotlib", "scipy", "sklearn")


def test_importing_the_client_loads_nothing_of_the_server() -> None:
    probe = f"import sys, digitnet.service.client.digit_client; print(','.join(m for m in {SERVER_ONLY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "", f"importing digitnet.service.client.digit_client loaded {loaded}"
