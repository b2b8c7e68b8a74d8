"""ObjectStream's logic — window, hand-over to readers, failure, end — over a real chunk cache,
with an in-memory stream standing in for the store's body (what S3Backend.open_stream returns
is tested against the real server in tests/backends)."""

from __future__ import annotations

import io
import os

import trio

from alicefs.fs.chunk_cache import CHUNK_SIZE, ChunkCache
from alicefs.fs.streams import INITIAL_WINDOW, ObjectStream, sequential, window_for

DATA = os.urandom(40 * CHUNK_SIZE + 123)


class Body(io.BytesIO):
    """The object from an offset on; counts what was read, can fail after some bytes."""

    def __init__(self, offset: int, fail_after: int | None = None):
        super().__init__(DATA[offset:])
        self.fail_after = fail_after

    def read(self, size: int | None = -1) -> bytes:
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise OSError("connection reset")
        return super().read(size)


def _opener(bodies: list[Body], fail_after: int | None = None):
    def open_stream(key: str, offset: int, size: int, change_token: str | None) -> Body:
        assert (key, size, change_token) == ("p/v.mp4", len(DATA), "etag")
        body = Body(offset, fail_after)
        bodies.append(body)
        return body
    return open_stream


def _stream(position: int = 0, max_window: int = 16) -> ObjectStream:
    return ObjectStream("s3", "p/v.mp4", "v1", "etag", len(DATA), position, max_window)


def _chunk(cache: ChunkCache, index: int) -> bytes | None:
    return cache.read(ChunkCache.name("s3", "p/v.mp4", "v1", index), 0, CHUNK_SIZE)


async def _stops_at(stream: ObjectStream, position: int) -> None:
    """The stream reaches `position`, and goes no further."""
    with trio.fail_after(10):
        while stream.position < position:
            await trio.sleep(0.005)
    await trio.sleep(0.1)
    assert stream.position == position


async def test_a_stream_runs_a_growing_window_ahead_of_its_reader(tmp_path):
    cache = ChunkCache(tmp_path, 100 * CHUNK_SIZE)
    stream, bodies = _stream(position=2), []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run, _opener(bodies), cache, trio.CapacityLimiter(2))
        stream.want(2)
        await stream.arrival(2)
        # One GET from the first chunk asked for, stopping a window past it.
        await _stops_at(stream, 2 + 1 + INITIAL_WINDOW)
        assert bodies[0].tell() == (stream.position - 2) * CHUNK_SIZE
        for index in range(3, 8):
            stream.want(index)
            await stream.arrival(index)
        assert stream.window == 16  # doubled with each new chunk, up to max_window
        await _stops_at(stream, 8 + 16)
        stream.want(39)
        await stream.arrival(40)
    assert stream.ended and len(bodies) == 1
    for index in range(2, 41):
        assert _chunk(cache, index) == DATA[index * CHUNK_SIZE:(index + 1) * CHUNK_SIZE]
    assert _chunk(cache, 1) is None


async def test_a_failing_stream_ends_and_wakes_its_readers(tmp_path):
    cache = ChunkCache(tmp_path, 100 * CHUNK_SIZE)
    stream, bodies = _stream(), []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run, _opener(bodies, fail_after=3 * CHUNK_SIZE), cache,
                           trio.CapacityLimiter(2))
        stream.want(10)
        await stream.arrival(10)  # returns: the stream ended without it
    assert stream.ended and stream.position == 3 and not stream.serves(10)
    assert _chunk(cache, 2) is not None and _chunk(cache, 3) is None


async def test_closing_a_stream_stops_it_and_closes_its_body(tmp_path):
    cache = ChunkCache(tmp_path, 100 * CHUNK_SIZE)
    stream, bodies = _stream(), []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.run, _opener(bodies), cache, trio.CapacityLimiter(2))
        stream.want(0)
        await stream.arrival(0)
        stream.close()
    assert stream.ended and bodies[0].closed and stream.position < 10


def test_sequential_reads_and_window_size():
    assert sequential(0, 0) and sequential(5 * CHUNK_SIZE, 4 * CHUNK_SIZE)
    assert not sequential(0, 3 * CHUNK_SIZE)
    assert window_for(10 << 30) == 64
    assert window_for(16 * CHUNK_SIZE) == 4  # a quarter of a small cache
    assert window_for(0) == 1
