"""Read the PEM files of a TLS setup, the one way the server and the client do it: a file that cannot be
read is a one-line ConfigurationError naming it."""

from __future__ import annotations

from pathlib import Path

from digitnet.service.contract.errors import ConfigurationError


def read_pem(path: Path | None) -> bytes | None:
    """The bytes of a PEM file, or None when none is configured."""
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as err:
        raise ConfigurationError(f"cannot read TLS file {err.filename}: {err.strerror}") from err
