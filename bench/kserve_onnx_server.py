"""The KServe peer of bench/oip_bench.py: KServe 0.21's ModelServer serving a digitnet ONNX file with onnxruntime, on loopback only.

Run (in the KServe environment oip_bench.py builds): python bench/kserve_onnx_server.py --model_path models/default.onnx --grpc_port N --http_port M
"""

import argparse
import logging
import types

import kserve
import numpy as np
import onnxruntime as ort
from kserve import model_server
from kserve.protocol.grpc import server as grpc_server
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

LOOPBACK = "127.0.0.1"

# Quirk 1: KServe hard-codes its bind addresses and has no flag to change them:
#   gRPC: kserve/protocol/grpc/server.py:68  listen_addr = f"[::]:{self._port}"
#   REST: kserve/protocol/rest/server.py:127 uvicorn.Config(app, host="0.0.0.0", ...)
# and ModelServer.start() always starts the REST server (model_server.py), so HTTP cannot be disabled.
# Minimal patches: rewrite the gRPC listen address, and set the REST server's uvicorn host.
_real_aio_server = grpc_server.aio.server


def _loopback_aio_server(*args, **kwargs):
    """grpc.aio.server() whose add_insecure_port binds 127.0.0.1 instead of [::]."""
    server = _real_aio_server(*args, **kwargs)
    add_port = server.add_insecure_port
    server.add_insecure_port = lambda address: add_port(address.replace("[::]", LOOPBACK))
    return server


grpc_server.aio = types.SimpleNamespace(server=_loopback_aio_server)  # only grpc/server.py sees this shim


class LoopbackRESTServer(model_server.RESTServer):
    """KServe's REST server, bound to 127.0.0.1."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config.host = LOOPBACK


model_server.RESTServer = LoopbackRESTServer  # ModelServer.start() looks the class up in this module


class DigitNet(kserve.Model):
    """OIP input "pixels" FP32 [N, 784] -> output "probabilities" FP32 [N, 10] via onnxruntime on CPU."""

    def __init__(self, name: str, path: str, threads: int):
        super().__init__(name)
        self.path, self.threads = path, threads
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, sess_options=options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name  # "pixels" in default.onnx; mapped by position anyway
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        pixels = payload.inputs[0].as_numpy().astype(np.float32, copy=False).reshape(-1, 784)
        (probabilities,) = self.session.run(["probabilities"], {self.input_name: pixels})
        output = InferOutput(name="probabilities", shape=list(probabilities.shape), datatype="FP32")
        output.set_data_from_numpy(probabilities, binary_data=True)  # -> raw_output_contents over gRPC
        return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=[output])


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser])  # KServe's own flags (--grpc_port, --http_port, ...)
    parser.add_argument("--model_path", required=True)
    parser.add_argument("--intra_op_threads", type=int, default=1)
    parser.set_defaults(model_name="digitnet", enable_latency_logging=False)
    args = parser.parse_args()
    server = model_server.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_latency_logging=args.enable_latency_logging,  # the per-request "kserve.trace" latency line: off
    )
    # Quirk 2: the gRPC LoggingInterceptor logs "grpc method: ..." at INFO on every call with no flag to stop it
    # (kserve/protocol/grpc/interceptors.py:40); raising the KServe loggers to WARNING silences per-request logs.
    for name in ("kserve", "kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([DigitNet(args.model_name, args.model_path, args.intra_op_threads)])


if __name__ == "__main__":
    main()
