"""One error hierarchy for everything a user can get wrong, each class with its status: the one table.

Each class names its status `code` as google.rpc.Code does (gRPC's status codes, which HTTP APIs map to
their own); a transport turns the name into its status and never keeps a table of its own.
"""

from __future__ import annotations

import logging
import uuid
from enum import IntEnum
from typing import ClassVar, Literal

#: The google.rpc.Code names digitnet answers with.
StatusName = Literal[
    "INVALID_ARGUMENT",
    "RESOURCE_EXHAUSTED",
    "NOT_FOUND",
    "UNAVAILABLE",
    "UNAUTHENTICATED",
    "DEADLINE_EXCEEDED",
    "CANCELLED",
    "FAILED_PRECONDITION",
    "INTERNAL",
]

log = logging.getLogger("digitnet.errors")

#: Longest message an error carries: messages travel in gRPC trailers (8 KiB by default) and log lines.
MAX_MESSAGE_CHARS = 1000
#: Longest piece of user input an error message repeats.
MAX_ECHO_CHARS = 64


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """Shorten text to at most `limit` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def echo(value: object) -> str:
    """Quote a value from a request for an error message, in at most about MAX_ECHO_CHARS characters."""
    return repr(clip(value, MAX_ECHO_CHARS)) if isinstance(value, str) else clip(repr(value), MAX_ECHO_CHARS)


class DigitnetError(Exception):
    """Base of every error digitnet raises on purpose; its message is meant for the user (and bounded in size)."""

    #: The status a transport answers with (subclasses override it); a bare DigitnetError is a bug.
    code: ClassVar[StatusName] = "INTERNAL"

    def __init__(self, message: str = "") -> None:
        super().__init__(clip(message))


class DatasetError(DigitnetError):
    """A dataset file is missing, truncated, or not in the format it claims."""

    code: ClassVar[StatusName] = "FAILED_PRECONDITION"


class ModelError(DigitnetError):
    """A model artifact or its card is missing, unreadable or inconsistent, or the model fails to run."""

    code: ClassVar[StatusName] = "FAILED_PRECONDITION"


class ExportVerificationError(ModelError):
    """The exported ONNX model does not reproduce the scikit-learn model; nothing was written."""


class ConfigurationError(DigitnetError):
    """A setting or command-line option cannot be honoured (e.g. CUDA asked for but absent)."""

    code: ClassVar[StatusName] = "FAILED_PRECONDITION"


class RepositoryError(DigitnetError):
    """The model repository cannot make a change now (unload its last model, load in a multi-worker server)."""

    code: ClassVar[StatusName] = "FAILED_PRECONDITION"


class InvalidInput(DigitnetError):
    """A request's input cannot be turned into a 28x28 MNIST image (bad bytes, shape, dtype or values)."""

    code: ClassVar[StatusName] = "INVALID_ARGUMENT"


class NotFound(DigitnetError):
    """A request names a model or version this server does not serve."""

    code: ClassVar[StatusName] = "NOT_FOUND"


class LimitExceeded(DigitnetError):
    """A request is over a configured limit (message size, encoded bytes, pixels, side, aspect, batch size)."""

    code: ClassVar[StatusName] = "RESOURCE_EXHAUSTED"


class TimeLimitExceeded(LimitExceeded):
    """A request took longer than the server allows one request (DIGITNET_MAX_REQUEST_SECONDS); its work was stopped."""


class Unavailable(DigitnetError):
    """The server cannot take the request now (draining, or too many calls in flight); retrying later may succeed."""

    code: ClassVar[StatusName] = "UNAVAILABLE"


class Unauthenticated(DigitnetError):
    """The call lacks the bearer token the server requires."""

    code: ClassVar[StatusName] = "UNAUTHENTICATED"


class DeadlineExceeded(DigitnetError):
    """The caller's deadline passed before the work finished; the rest of the work was dropped."""

    code: ClassVar[StatusName] = "DEADLINE_EXCEEDED"


class Cancelled(DigitnetError):
    """The caller went away (cancelled or disconnected); the rest of the work was dropped."""

    code: ClassVar[StatusName] = "CANCELLED"


class InternalError(DigitnetError):
    """A bug, not the user's fault: logged with its traceback under an incident id that the message quotes."""

    code: ClassVar[StatusName] = "INTERNAL"

    @classmethod
    def logged(cls, error: BaseException, where: str) -> InternalError:
        """Log `error` with its traceback under a new incident id; return the error to answer with."""
        incident = uuid.uuid4().hex[:12]
        log.error("internal error %s in %s", incident, where, exc_info=error)
        return cls(f"internal error (incident {incident}); the server logged it")


class ExitCode(IntEnum):
    """How every `digitnet` command ends, for scripts: the exit statuses in one place."""

    OK = 0
    #: Some inputs (images, files) could not be read or classified; the others were (error rows).
    SOME_FAILED = 1
    #: `digitnet health`: the server is not SERVING (or cannot be reached).
    NOT_SERVING = 1
    #: The run itself could not be done: a bad option, model, data, output or server (a usage error).
    RUN_FAILED = 2
    #: Ctrl-C or SIGTERM (128 + SIGINT, the shell's convention).
    INTERRUPTED = 130
