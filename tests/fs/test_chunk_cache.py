from __future__ import annotations

from alicefs.fs.chunk_cache import CHUNK_SIZE, ChunkCache


def test_chunks_round_trip_and_are_keyed_by_version(tmp_path):
    cache = ChunkCache(tmp_path / "chunks", 10 * CHUNK_SIZE)
    v1 = ChunkCache.name("s3", "p/a.mp4", "hash1", 0)
    v2 = ChunkCache.name("s3", "p/a.mp4", "hash2", 0)
    assert v1 != v2
    cache.put(v1, b"old")
    assert cache.get(v1) == b"old"
    assert cache.get(v2) is None


def test_least_recently_used_chunks_are_evicted_beyond_the_limit(tmp_path):
    cache = ChunkCache(tmp_path / "chunks", 3 * CHUNK_SIZE)
    names = [ChunkCache.name("s3", "k", "v", i) for i in range(4)]
    for name in names[:3]:
        cache.put(name, b"x" * CHUNK_SIZE)
    assert cache.get(names[0]) is not None  # now the most recently used
    cache.put(names[3], b"x" * CHUNK_SIZE)
    assert cache.get(names[1]) is None  # the least recently used went
    assert cache.get(names[0]) is not None and cache.get(names[3]) is not None
    assert cache.bytes_cached <= 3 * CHUNK_SIZE
    assert len(list((tmp_path / "chunks").iterdir())) == 3


def test_the_cache_survives_a_restart(tmp_path):
    name = ChunkCache.name("gcs", "k", "v", 7)
    ChunkCache(tmp_path / "chunks", 10 * CHUNK_SIZE).put(name, b"kept")
    (tmp_path / "chunks" / "junk.1.tmp").write_bytes(b"half")
    again = ChunkCache(tmp_path / "chunks", 10 * CHUNK_SIZE)
    assert again.get(name) == b"kept"
    assert not (tmp_path / "chunks" / "junk.1.tmp").exists()
