"""One error hierarchy for everything a user can get wrong; transports map it to their status codes."""


class DigitnetError(Exception):
    """Base of every error digitnet raises on purpose; its message is meant for the user."""


class DatasetError(DigitnetError):
    """A dataset file is missing, truncated, or not in the format it claims."""


class ModelError(DigitnetError):
    """A model artifact or its card is missing, unreadable or inconsistent."""


class ExportVerificationError(ModelError):
    """The exported ONNX model does not reproduce the scikit-learn model; nothing was written."""


class ConfigurationError(DigitnetError):
    """A setting or command-line option cannot be honoured (e.g. CUDA asked for but absent)."""


class InvalidInput(DigitnetError):
    """A request's input cannot be turned into a 28x28 MNIST image (bad bytes, shape, dtype or values)."""


class NotFound(DigitnetError):
    """A request names a model or version this server does not serve."""


class LimitExceeded(DigitnetError):
    """A request is over a configured limit (message size, encoded bytes, pixels, batch size)."""


class Unavailable(DigitnetError):
    """The server cannot take the request now (draining or not ready); retrying later may succeed."""
