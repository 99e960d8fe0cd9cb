"""What a benchmark ran on, for the header of its table (the one home of this for every bench script)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU's model name and the cores this process may use, e.g. 'Intel(R) Xeon(R) Processor, 2 cores'."""
    try:
        with open("/proc/cpuinfo") as info:
            name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        name = ""
    return f"{name or platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores"
