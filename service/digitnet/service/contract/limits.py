"""The caps on untrusted image input, in one light module: the server's settings and preprocessing share them."""

from __future__ import annotations

from dataclasses import dataclass

#: Most images one request may hold (a ClassifyBatch, an OIP tensor), unless the server is told otherwise.
MAX_REQUEST_IMAGES = 4096


@dataclass(frozen=True)
class Limits:
    """Caps on untrusted image input; each bounds the work and memory one image can cost."""

    max_encoded_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 25_000_000  # width x height before decoding: stops decompression bombs
    max_side: int = 16_384  # longest side, before decoding
    max_aspect: float = 20.0  # longer side / shorter side: a strip too thin to shrink stays costly to read
