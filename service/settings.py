"""Server settings: typed, with defaults, each readable from a DIGITNET_* environment variable.

Command-line flags override the environment, which overrides the defaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from digitnet.service.model import Provider, available_cpus
from digitnet.service.preprocess import Limits


class ServerSettings(BaseSettings):
    """Everything `digitnet serve` can be told."""

    model_config = SettingsConfigDict(env_prefix="DIGITNET_", extra="ignore", protected_namespaces=())

    model: Path = Path("models/default.onnx")
    """ONNX model to serve; its card (same name, .json) must sit beside it."""
    host: str = "127.0.0.1"
    """Address to bind; 0.0.0.0 or [::] to accept connections from other machines."""
    port: int = Field(50051, ge=0, le=65535)
    """TCP port; 0 picks a free one (reported in the start-up log)."""
    provider: Provider = "auto"
    """onnxruntime execution provider: auto (CUDA when present, else CPU), cpu, or cuda (fail if absent)."""
    workers: int = Field(1, ge=1, le=64)
    """Server processes sharing the port (SO_REUSEPORT), to use every core."""
    threads: int = Field(0, ge=0)
    """Threads per worker for image decoding and batches (raw pixels run on the event loop); 0 = 2 per CPU."""
    max_message_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest gRPC message accepted or sent."""
    max_image_bytes: int = Field(Limits.max_encoded_bytes, ge=1)
    """Largest encoded image accepted."""
    max_image_pixels: int = Field(Limits.max_pixels, ge=1)
    """Largest decoded image (width x height) accepted: stops decompression bombs."""
    max_request_images: int = Field(4096, ge=1)
    """Most images in one request (ClassifyBatch, or an OIP ModelInfer tensor)."""
    max_batch_size: int = Field(64, ge=1)
    """Adaptive batching: most images merged from concurrent OIP requests into one onnxruntime call."""
    max_batch_delay_ms: float = Field(0.0, ge=0)
    """Adaptive batching: how long a request may wait for others to join its batch; 0 turns it off."""
    grace_seconds: float = Field(10.0, ge=0)
    """On SIGTERM/SIGINT, how long in-flight requests get to finish."""

    @property
    def limits(self) -> Limits:
        """The image limits as the preprocessing module takes them."""
        return Limits(max_encoded_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    @property
    def thread_count(self) -> int:
        """Worker threads per server process."""
        return self.threads or 2 * available_cpus()
