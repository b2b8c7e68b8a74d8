"""Numbers as people read them."""

from __future__ import annotations


def human_bytes(n: int | float) -> str:
    """1536 -> '1.5 KiB'; bytes below 1 KiB are shown exactly."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"
