"""Streamed reads of S3/GCS files: a sequential reader is served by one long GET.

A reader is sequential when each read starts about where the one before ended (the kernel's
read-ahead sends a few reads at once, so "about": within SEQUENTIAL_SLACK chunks). Once it has
read STREAM_AFTER bytes in a row — more than the kernel reads ahead for one random read — an
ObjectStream starts: one request from the first chunk the cache lacks to the end of the
object (S3: one GET; GCS: 8 MiB ranges), whose bytes land in the chunk cache a chunk at a time
as they arrive. The stream runs ahead of its reader by a window that starts at
INITIAL_WINDOW chunks and doubles with every new chunk the reader asks for, up to a quarter
of the cache (at most MAX_WINDOW): a reader that keeps up has tens of MiB in flight, one
that stops costs at most the window. A first read, and every random one, is a 1 MiB ranged
GET, so time to first byte and random reads cost what they did.

A stream belongs to the handles reading through it and ends with the last one (or at the
end of the object). A stream that fails ends too: its readers fall back to ranged GETs,
which retry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import trio

from alicefs.fs.chunk_cache import CHUNK_SIZE, ChunkCache

log = logging.getLogger(__name__)

INITIAL_WINDOW = 4  # chunks a new stream may run ahead of its reader
MAX_WINDOW = 64
SEQUENTIAL_SLACK = 2  # chunks a read may land before or after the previous read's end
STREAM_AFTER = 2 * CHUNK_SIZE  # the kernel reads 1 MiB ahead (daemon.READ_AHEAD_KIB)


@dataclass(eq=False)
class ObjectStream:
    """One long read of one object version into the chunk cache."""

    location_id: str
    key: str
    version: str  # as the cache names chunks
    change_token: str | None
    size: int
    position: int  # the next chunk it delivers
    max_window: int
    window: int = INITIAL_WINDOW
    allowed: int = 0  # it may fetch the chunks before this one
    users: int = 0  # handles reading through it
    ended: bool = False
    _asked: int = -1  # the furthest chunk a reader asked for
    _arrived: dict[int, trio.Event] = field(default_factory=dict)
    _more: trio.Event = field(default_factory=trio.Event)
    _scope: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def chunks(self) -> int:
        return -(-self.size // CHUNK_SIZE)

    def serves(self, index: int) -> bool:
        """Whether the stream will deliver chunk `index` soon."""
        return (not self.ended
                and self.position <= index < self.position + self.max_window + SEQUENTIAL_SLACK)

    def near(self, index: int) -> bool:
        """Whether a reader at chunk `index` reads along with the stream (what it just
        delivered, or what it will deliver soon)."""
        return self.serves(index) or (not self.ended
                                      and self.position - SEQUENTIAL_SLACK <= index)

    def want(self, index: int) -> None:
        """A reader asks for chunk `index`: let the stream run a window past it, a larger
        one each time the reader has moved on."""
        if index > self._asked:
            if self._asked >= 0:
                self.window = min(self.window * 2, self.max_window)
            self._asked = index
        allowed = min(index + 1 + self.window, self.chunks)
        if allowed > self.allowed:
            self.allowed = allowed
            self._more.set()

    async def arrival(self, index: int) -> None:
        """Until chunk `index` is delivered, or the stream ended without it."""
        if index < self.position or self.ended:
            return
        await self._arrived.setdefault(index, trio.Event()).wait()

    def close(self) -> None:
        """End the stream (its task stops at once)."""
        self._scope.cancel()

    async def run(self, open_stream: Callable[..., BinaryIO], cache: ChunkCache,
                  limiter: trio.CapacityLimiter) -> None:
        """Fetch chunk after chunk into `cache` while the window allows, until the end of
        the object, a failure, or close()."""
        body: BinaryIO | None = None
        try:
            with self._scope:
                body = await trio.to_thread.run_sync(
                    open_stream, self.key, self.position * CHUNK_SIZE, self.size,
                    self.change_token, limiter=limiter)
                while self.position < self.chunks:
                    while self.position >= self.allowed:
                        self._more = trio.Event()
                        await self._more.wait()
                    index = self.position
                    name = ChunkCache.name(self.location_id, self.key, self.version, index)
                    length = min(CHUNK_SIZE, self.size - index * CHUNK_SIZE)
                    await trio.to_thread.run_sync(_receive, body, length, cache, name,
                                                  limiter=limiter)
                    self.position += 1
                    if (event := self._arrived.pop(index, None)) is not None:
                        event.set()
        except Exception as exc:  # its readers fall back to ranged reads, which retry
            log.info("streaming %s stopped: %s", self.key, exc)
        finally:
            self.ended = True
            for event in self._arrived.values():
                event.set()
            if body is not None:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(body.close)


def _receive(body: BinaryIO, length: int, cache: ChunkCache, name: str) -> None:
    """Read exactly `length` bytes of the stream into the cache as chunk `name`."""
    buffer = bytearray(length)
    view = memoryview(buffer)
    filled = 0
    while filled < length:
        data = body.read(length - filled)
        if not data:
            raise OSError(f"the object ended {length - filled} bytes early")
        view[filled:filled + len(data)] = data
        filled += len(data)
    cache.put(name, buffer)


def sequential(previous_end: int, off: int) -> bool:
    """Whether a read at `off` continues one that ended at `previous_end`."""
    return abs(off - previous_end) <= SEQUENTIAL_SLACK * CHUNK_SIZE


def window_for(cache_size: int) -> int:
    """The largest window, in chunks, a cache of `cache_size` bytes allows: a quarter of it,
    so the chunks in flight are not evicted before they are read."""
    return max(1, min(MAX_WINDOW, cache_size // 4 // CHUNK_SIZE))
