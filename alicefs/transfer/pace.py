"""A bandwidth cap shared by parallel copies (`migrate --bwlimit`, `migration_bandwidth`):
a token bucket that the worker threads copying take from, sleeping when it is empty.

Copies read their source through `PacedReader`; a copy the store does on its own
(server-side, within one bucket) moves no bytes through this machine and is not paced.
"""

from __future__ import annotations

import threading
import time
from typing import BinaryIO

BURST_SECONDS = 0.25


class Pacer:
    """At most `bytes_per_second` on average over all the threads that take from it, in
    bursts of at most a quarter of a second's worth (so a foreground read waits no longer
    than that for the disk or the network)."""

    def __init__(self, bytes_per_second: int, *, clock=time.monotonic, sleep=time.sleep):
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.rate = bytes_per_second
        self.burst = max(1, int(bytes_per_second * BURST_SECONDS))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._available = float(self.burst)
        self._updated = clock()

    def take(self, count: int) -> None:
        """Account for `count` bytes, sleeping until the cap allows them (blocking)."""
        with self._lock:
            now = self._clock()
            self._available = min(self.burst,
                                  self._available + (now - self._updated) * self.rate)
            self._updated = now
            self._available -= count
            debt = -self._available
        if debt > 0:
            self._sleep(debt / self.rate)


class PacedReader:
    """A binary stream whose reads are accounted to a `Pacer`."""

    def __init__(self, stream: BinaryIO, pacer: Pacer):
        self._stream = stream
        self._pacer = pacer

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._pacer.take(len(data))
        return data
