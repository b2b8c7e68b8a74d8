"""Helpers shared by the benchmarks: timing, cache dropping, result tables."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def drop_caches() -> bool:
    """Empty the page cache so the next read comes from disk; False when not permitted."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        return False
    return True


def timed(func: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = func()
    return time.perf_counter() - start, result


def best_of(runs: int, func: Callable[[], T]) -> tuple[float, T]:
    """The fastest of several runs (warm-cache figures)."""
    results = [timed(func) for _ in range(runs)]
    return min(results, key=lambda r: r[0])


def shell_seconds(command: str, cwd: str | None = None) -> float:
    seconds, _ = timed(lambda: subprocess.run(command, shell=True, check=True, cwd=cwd,
                                              stdout=subprocess.DEVNULL))
    return seconds


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print(f"\n{title}")
    for row in [headers, ["-" * w for w in widths], *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def machine() -> str:
    return f"{os.cpu_count()} cores, {os.uname().release}"
