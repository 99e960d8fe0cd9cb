"""Split one scoring run into N shards (`score --shard K/N`): each file's shard from its own path alone.

A file belongs to shard K of N when a stable hash of its key (its path relative to the input root it was
found under) is K modulo N. Nothing else decides it: not the other files, their number or their order, so
a file added to the folder moves no other file between shards, and each pod of a Kubernetes Indexed Job
finds its own files from the listing alone (K: its JOB_COMPLETION_INDEX).

Usage:
    shard = Shard.parse("1/3")
    shard.holds(key_of("scans/7/a.png", "scans"))     # is scans/7/a.png in shard 1 of 3?
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass

from digitnet.service.contract.constants import PATH_ERRORS


def key_of(path: str, top: str) -> str:
    """A listed path's shard key: the path relative to the root `top` it was found under; the root itself (a file
    given alone, an unlistable or missing root) is its own key, as given."""
    # Relative, so that `scans`, `./scans` and a volume mounted elsewhere split alike.
    start = len(top) if top.endswith(os.sep) else len(top) + 1
    return path[start:] or top


def shard_of(key: str, count: int) -> int:
    """The shard, of `count`, that a key belongs to."""
    # A hash of the file name's bytes, not hash(): Python salts that per process, and every pod must agree.
    digest = hashlib.blake2b(key.encode("utf-8", PATH_ERRORS), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0 <= index < count)."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """Read `K/N`; a ValueError says what is wrong with it."""
        match = re.fullmatch(r"([0-9]+)/([0-9]+)", text.strip())
        if match is None:
            raise ValueError(f"expected K/N, shard K of N with 0 <= K < N, got {text!r}")
        shard = cls(int(match[1]), int(match[2]))
        if shard.count < 1:
            raise ValueError(f"N must be at least 1, got {text!r}")
        if shard.index >= shard.count:
            raise ValueError(f"K counts from 0 and must be less than N, got {text!r}")
        return shard

    def holds(self, key: str) -> bool:
        """Whether the file of this key is in this shard."""
        return shard_of(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"
