"""What every backend must do, whatever stores the bytes."""

from __future__ import annotations

import io

import pytest

from alicefs.backends import Backend, IntegrityError, UnsafeKeyError
from alicefs.hashing import hash_bytes


def put(backend: Backend, key: str, data: bytes, **kwargs):
    return backend.write_atomic(key, io.BytesIO(data), **kwargs)


def test_write_then_stat_read_and_list(backend):
    data = bytes(range(256)) * 1000
    result = put(backend, "proj/sub/a.bin", data)
    assert result.content_hash == hash_bytes(data)
    assert result.info.size == len(data)
    info = backend.stat("proj/sub/a.bin")
    assert info.size == len(data)
    assert backend.read("proj/sub/a.bin", 0, 10) == data[:10]
    assert backend.read("proj/sub/a.bin", 1000, 5000) == data[1000:6000]
    assert backend.read("proj/sub/a.bin", len(data) - 3, 100) == data[-3:]
    assert backend.read("proj/sub/a.bin", len(data) + 10, 100) == b""
    with backend.open_read("proj/sub/a.bin") as stream:
        assert stream.read() == data
    assert [o.key for o in backend.list()] == ["proj/sub/a.bin"]


def test_write_accepts_an_iterable_of_chunks(backend):
    result = backend.write_atomic("p/chunks", [b"ab", b"", b"cd"])
    assert result.content_hash == hash_bytes(b"abcd")
    assert backend.read("p/chunks", 0, 10) == b"abcd"


def test_list_is_recursive_and_filters_by_prefix(backend):
    for key in ["a/1.png", "a/x/2.png", "b/3.png", "root.png"]:
        put(backend, key, key.encode())
    listed = {o.key: o.size for o in backend.list()}
    assert listed == {"a/1.png": 7, "a/x/2.png": 9, "b/3.png": 7, "root.png": 8}
    assert sorted(o.key for o in backend.list("a/")) == ["a/1.png", "a/x/2.png"]
    assert list(backend.list("nothing/")) == []


def test_existing_key_is_never_replaced_unless_asked(backend):
    put(backend, "p/a.txt", b"first")
    with pytest.raises(FileExistsError):
        put(backend, "p/a.txt", b"second")
    assert backend.read("p/a.txt", 0, 100) == b"first"
    put(backend, "p/a.txt", b"second", overwrite=True)
    assert backend.read("p/a.txt", 0, 100) == b"second"


def test_hash_mismatch_publishes_nothing(backend):
    with pytest.raises(IntegrityError):
        put(backend, "p/bad.bin", b"content", expected_hash=hash_bytes(b"other"))
    with pytest.raises(FileNotFoundError):
        backend.stat("p/bad.bin")
    assert list(backend.list()) == []
    put(backend, "p/good.bin", b"content", expected_hash=hash_bytes(b"content"))
    assert backend.read("p/good.bin", 0, 100) == b"content"


def test_mtime_is_kept_when_given(backend):
    result = put(backend, "p/old.png", b"x", mtime_ns=1_500_000_000_000_000_000)
    assert result.info.mtime_ns == 1_500_000_000_000_000_000
    assert backend.stat("p/old.png").mtime_ns == 1_500_000_000_000_000_000


def test_delete(backend):
    put(backend, "p/a", b"1")
    backend.delete("p/a")
    with pytest.raises(FileNotFoundError):
        backend.stat("p/a")
    with pytest.raises(FileNotFoundError):
        backend.delete("p/a")


def test_missing_key(backend):
    with pytest.raises(FileNotFoundError):
        backend.stat("p/none")
    with pytest.raises(FileNotFoundError):
        backend.read("p/none", 0, 1)


def test_unicode_and_spaces_in_names(backend):
    key = "Projekt Ü/Bilder mit Leerzeichen/日本語 ✓.png"
    put(backend, key, b"img")
    assert [o.key for o in backend.list()] == [key]
    assert backend.read(key, 0, 3) == b"img"


@pytest.mark.parametrize("key", ["", "/abs/path", "a/../b", "../escape", "a//b", "a/./b",
                                 "a/", "x\0y", "a/" + "n" * 256])
def test_malformed_keys_are_refused(backend, key):
    with pytest.raises(UnsafeKeyError):
        put(backend, key, b"x")
    with pytest.raises(UnsafeKeyError):
        backend.stat(key)


def test_free_space_is_sane(backend):
    space = backend.free_space()
    if space is not None:
        assert 0 <= space.free_bytes <= space.total_bytes


# -- large objects: multipart (S3) and resumable (GCS) uploads, ranged reads across parts ----

MiB = 1 << 20


def big_data(size: int) -> bytes:
    # Not a repeating pattern aligned with any part size, so a misplaced part is detected.
    block = bytes((i * 7 + i // 251) % 256 for i in range(1_000_003))
    return (block * (size // len(block) + 1))[:size]


def chunked(data: bytes, size: int = 1 << 20):
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("source", ["file", "stream-with-hash", "stream"])
def test_large_object_round_trip(backend, source):
    data = big_data(20 * MiB + 12345)
    digest = hash_bytes(data)
    if source == "file":
        result = put(backend, "p/big.mov", data, mtime_ns=1_600_000_000_123_456_789)
    elif source == "stream-with-hash":
        result = backend.write_atomic("p/big.mov", chunked(data), expected_hash=digest,
                                      mtime_ns=1_600_000_000_123_456_789)
    else:
        result = backend.write_atomic("p/big.mov", chunked(data),
                                      mtime_ns=1_600_000_000_123_456_789)
    assert result.content_hash == digest
    assert result.info.size == len(data)
    info = backend.stat("p/big.mov")
    assert (info.size, info.mtime_ns) == (len(data), 1_600_000_000_123_456_789)
    assert info.content_hash in (None, digest)
    # Across the 5 MiB part boundaries of the S3 test settings and GCS's 1 MiB chunks.
    for offset in (0, 5 * MiB - 3, 10 * MiB - 1, 15 * MiB, len(data) - 7):
        assert backend.read("p/big.mov", offset, 4096) == data[offset:offset + 4096]
    assert backend.read("p/big.mov", 3 * MiB, 8 * MiB) == data[3 * MiB:11 * MiB]
    with backend.open_read("p/big.mov") as stream:
        assert stream.read(100) == data[:100]
        assert stream.read() == data[100:]


def test_large_hash_mismatch_publishes_nothing(backend):
    data = big_data(13 * MiB)
    with pytest.raises(IntegrityError):
        backend.write_atomic("p/big.bin", chunked(data), expected_hash=hash_bytes(b"other"))
    with pytest.raises(IntegrityError):
        put(backend, "p/big.bin", data, expected_hash=hash_bytes(b"other"))
    with pytest.raises(FileNotFoundError):
        backend.stat("p/big.bin")
    assert list(backend.list()) == []


def test_large_existing_key_is_never_replaced_unless_asked(backend):
    first, second = big_data(7 * MiB), big_data(9 * MiB)[::-1]
    put(backend, "p/big.bin", first)
    with pytest.raises(FileExistsError):
        put(backend, "p/big.bin", second)
    assert backend.stat("p/big.bin").size == len(first)
    put(backend, "p/big.bin", second, overwrite=True, expected_hash=hash_bytes(second))
    assert backend.read("p/big.bin", 0, len(second)) == second


def test_empty_file(backend):
    result = put(backend, "p/empty", b"")
    assert result.content_hash == hash_bytes(b"")
    assert backend.stat("p/empty").size == 0
    assert backend.read("p/empty", 0, 10) == b""
    with backend.open_read("p/empty") as stream:
        assert stream.read() == b""
    assert [(o.key, o.size) for o in backend.list()] == [("p/empty", 0)]


def test_zero_length_read_of_a_missing_key_is_still_an_error(backend):
    with pytest.raises(FileNotFoundError):
        backend.read("p/none", 0, 0)


def test_stat_knows_the_hash_when_the_store_keeps_it(backend):
    put(backend, "p/a", b"abc")
    assert backend.stat("p/a").content_hash in (None, hash_bytes(b"abc"))


def test_negative_offset_is_refused(backend):
    put(backend, "p/a", b"abc")
    with pytest.raises(OSError):
        backend.read("p/a", -1, 2)


def test_list_accepts_the_rescan_shortcut(backend):
    put(backend, "p/a", b"abc")
    listed = list(backend.list(unchanged_if=lambda key, values: key == "p/a"))
    assert [item if isinstance(item, str) else item.key for item in listed] == ["p/a"]
