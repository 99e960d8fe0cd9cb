"""digitnet: the 784-16-16-10 handwritten-digit network, trained offline and served over gRPC."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("digitnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
