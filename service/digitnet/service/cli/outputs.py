"""Where commands write: refuse to overwrite without --force, and find an unwritable place before the work.

A job that trains for a minute, or scores a folder, and only then finds it cannot write its result has
wasted the minute; a picture or a report silently written over an existing file is lost data.

Usage:
    check_writable(Path("picture.png"), force=args.force)        # raises ConfigurationError
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from digitnet.service.contract.errors import ConfigurationError

#: What to do when a container cannot write a mounted host folder (see docker-compose.yml).
CONTAINER_HINT = (
    "in docker compose, make the host folder yourself (Docker makes a missing one as root) and run with"
    " DIGITNET_UID=$(id -u) DIGITNET_GID=$(id -g) so the container writes as you"
)


def check_writable(path: Path, force: bool = True) -> None:
    """Raise ConfigurationError unless `path` can be written (created, or replaced when `force`)."""
    if path.exists() and not force:
        raise ConfigurationError(f"{path} exists: pass --force to overwrite it")
    if path.is_dir():
        raise ConfigurationError(f"{path} is a folder: give a file name")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigurationError(f"cannot write {path}: no such folder {folder}")
    try:  # a real write: access() is wrong for root on read-only mounts and for ACLs
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{path.name}.", suffix=".probe"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        raise ConfigurationError(f"cannot write {path}: {err.strerror}; make {folder} writable ({CONTAINER_HINT})") from err
