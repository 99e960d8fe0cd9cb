"""digitnet: the 784-16-16-10 handwritten-digit network, trained offline and served over gRPC."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """`digitnet.service.__version__`, read from the installed package's metadata when first asked for
    (importlib.metadata costs ~30 ms that importing the light client should not pay)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("digitnet")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
