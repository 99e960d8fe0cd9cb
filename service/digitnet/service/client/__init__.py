"""The light gRPC client: the contract, the generated code and grpc, nothing of the server (no onnxruntime, decoders or metrics).

Usage:
    from digitnet.service.client import DigitClient
    from digitnet.service.client.settings import ClientSettings    # TLS, token, retries (DIGITNET_* variables)
"""

from digitnet.service.client.digit_client import DigitClient

__all__ = ["DigitClient"]
