from __future__ import annotations

from alicefs.fs.chunk_cache import CHUNK_SIZE, ChunkCache


def test_chunks_round_trip_and_are_keyed_by_version(tmp_path):
    cache = ChunkCache(tmp_path / "chunks", 10 * CHUNK_SIZE)
    v1 = ChunkCache.name("s3", "p/a.mp4", "hash1", 0)
    v2 = ChunkCache.name("s3", "p/a.mp4", "hash2", 0)
    assert v1 != v2
    cache.put(v1, b"old")
    assert cache.read(v1, 0, CHUNK_SIZE) == b"old"
    assert cache.read(v2, 0, CHUNK_SIZE) is None


def test_a_read_takes_only_its_range_and_without_waiting_only_from_the_page_cache(tmp_path):
    cache = ChunkCache(tmp_path / "chunks", 10 * CHUNK_SIZE)
    name = ChunkCache.name("s3", "p/a.mp4", "v", 3)
    data = bytes(range(256)) * (CHUNK_SIZE // 256)
    cache.put(name, data)
    assert cache.read(name, 1000, 5000) == data[1000:6000]
    assert cache.read(name, CHUNK_SIZE - 10, 100) == data[-10:]
    # Just written, so in the page cache: the trio thread can have it without a hop.
    assert cache.read(name, 4096, 131072, wait=False) == data[4096:4096 + 131072]
    assert cache.contains(name) and not cache.contains(ChunkCache.name("s3", "p/a.mp4", "v", 4))


def test_least_recently_used_chunks_are_evicted_beyond_the_limit(tmp_path):
    cache = ChunkCache(tmp_path / "chunks", 3 * CHUNK_SIZE)
    names = [ChunkCache.name("s3", "k", "v", i) for i in range(4)]
    for name in names[:3]:
        cache.put(name, b"x" * CHUNK_SIZE)
    assert cache.read(names[0], 0, 1) is not None  # now the most recently used
    cache.put(names[3], b"x" * CHUNK_SIZE)
    assert cache.read(names[1], 0, 1) is None  # the least recently used went
    assert cache.read(names[0], 0, 1) is not None and cache.read(names[3], 0, 1) is not None
    assert cache.bytes_cached <= 3 * CHUNK_SIZE
    assert len(list((tmp_path / "chunks").iterdir())) == 3


def test_the_cache_survives_a_restart(tmp_path):
    name = ChunkCache.name("gcs", "k", "v", 7)
    ChunkCache(tmp_path / "chunks", 10 * CHUNK_SIZE).put(name, b"kept")
    (tmp_path / "chunks" / "junk.1.tmp").write_bytes(b"half")
    again = ChunkCache(tmp_path / "chunks", 10 * CHUNK_SIZE)
    assert again.read(name, 0, CHUNK_SIZE) == b"kept"
    assert not (tmp_path / "chunks" / "junk.1.tmp").exists()
