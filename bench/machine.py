"""What machine a benchmark ran on, with a speed reference, so figures from different days compare.

The machines here are shared virtual CPUs whose speed varies from day to day (we have seen the same
benchmark run 4x slower on the same CPU model). Each bench prints ``describe()``'s line first: CPU,
Python, load average, and the time of a fixed pure-Python loop (best of 3). Divide a figure by the
loop time to compare runs made on different days.
"""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

LOOP_N = 5_000_000


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loop_seconds(n: int = LOOP_N, repeat: int = 3) -> float:
    """Best-of-``repeat`` time of ``n`` additions in a pure-Python loop: the speed reference."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        total = 0
        for i in range(n):
            total += i
        best = min(best, time.perf_counter() - start)
    return round(best, 3)


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "loadavg_at_start": os.getloadavg()[0],
        "loop_5m_s": loop_seconds(),
    }


def describe(info: dict[str, Any]) -> str:
    return (
        f"machine: {info['nproc']} CPUs, {info['cpu']}, Python {info['python']}, "
        f"load average at start {info['loadavg_at_start']:.2f}, "
        f"speed reference {info['loop_5m_s']:.3f} s for 5M pure-Python additions (lower is faster)"
    )
