"""Child processes that end with their parent: score workers and server workers must never outlive it.

A parent killed with SIGKILL runs no cleanup, so the children watch it themselves: multiprocessing
gives every child it starts a sentinel of its parent that becomes readable when the parent exits.

Usage (first thing in a child started by multiprocessing, e.g. a pool initializer):
    terminate_with_parent()
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import wait


def terminate_with_parent() -> None:
    """Send this process SIGTERM as soon as its multiprocessing parent exits, however it exits."""
    parent = multiprocessing.parent_process()
    if parent is None:  # not started by multiprocessing: nothing to watch
        return
    sentinel = parent.sentinel

    def watch() -> None:
        wait([sentinel])
        # SIGTERM, not os._exit: a server worker drains on it; a pool worker dies at once (the default action).
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="digitnet-parent-watch", daemon=True).start()


def ignore_interrupts() -> None:
    """Leave Ctrl-C to the parent: a terminal sends SIGINT to every process of the job, and the parent stops the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
