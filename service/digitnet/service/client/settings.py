"""How digitnet's clients reach a server: typed settings, each readable from a DIGITNET_* environment variable.

Apart from the server's settings (settings.py), so that importing the client builds none of the server's.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClientSettings(BaseSettings):
    """How digitnet's clients (predict, score, explain with --server) reach a server, secured or not."""

    model_config = SettingsConfigDict(env_prefix="DIGITNET_", extra="ignore", use_attribute_docstrings=True)

    retry_seconds: float = Field(15.0, ge=0)
    """How long a call keeps retrying a server that is unavailable (draining, restarting, unreachable), with backoff."""

    token: SecretStr | None = None
    """Bearer token to send (the server's DIGITNET_TOKEN)."""
    tls_ca: Path | None = None
    """PEM CA that signed the server's certificate: connect with TLS."""
    tls_client_cert: Path | None = None
    """PEM client certificate, for a server that requires mutual TLS."""
    tls_client_key: Path | None = None
    """PEM private key of tls_client_cert."""

    @field_validator("token", "tls_ca", "tls_client_cert", "tls_client_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
