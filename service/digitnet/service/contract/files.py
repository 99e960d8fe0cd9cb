"""Write a file whole or not at all: a temporary file beside it, renamed over it once complete.

Readers (a server reloading a model, a job reading a merged output) see the old content or the new, never
a partial one; a write that fails or is interrupted leaves the old file as it was and no temporary file.

Usage:
    with replacing(Path("scores.csv")) as handle:
        handle.write(b"path,status\n")
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def replacing(path: Path, buffering: int = -1) -> Iterator[BinaryIO]:
    """A binary file that takes `path`'s place only when the block ends without an error (temp file + rename)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; what we write is meant to be read by others (e.g. a container user)
        with os.fdopen(fd, "wb", buffering=buffering) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:  # including KeyboardInterrupt: never leave the temporary file behind
        Path(temp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all."""
    with replacing(path) as handle:
        handle.write(data)
