"""An on-disk cache of object-store data in `cache_dir/chunks`, bounded by `cache_size`.

Reads of S3/GCS replicas go through it in 1 MiB chunks: a chunk is fetched with one ranged GET
or arrives from a sequential reader's stream (alicefs.fs.streams), is kept as a file, and
serves every later read of it until it is evicted (least recently used first); a read takes
only the bytes it asked for from the chunk's file. Chunks are keyed by the object's version
(content hash or change token), so a changed object never serves stale bytes. cachetools'
LRUCache keeps the order and the byte count; its eviction deletes the chunk file. The index
is rebuilt from the directory at start-up, so the cache survives remounts.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

from cachetools import LRUCache

CHUNK_SIZE = 1 << 20


class _ChunkIndex(LRUCache):
    """chunk file name -> its size in bytes; evicting an entry deletes its file."""

    def __init__(self, directory: Path, max_bytes: int):
        super().__init__(maxsize=max_bytes, getsizeof=lambda size: max(size, 1))
        self.directory = directory

    def popitem(self) -> tuple[str, int]:
        name, size = super().popitem()
        (self.directory / name).unlink(missing_ok=True)
        return name, size


class ChunkCache:
    def __init__(self, directory: Path, max_bytes: int):
        self.directory = directory
        self._lock = threading.Lock()
        self._nowait = True  # False once the cache's filesystem refused RWF_NOWAIT
        self._index = _ChunkIndex(directory, max(max_bytes, CHUNK_SIZE))
        if directory.is_dir():
            entries = sorted(os.scandir(directory), key=lambda e: e.stat().st_atime_ns)
            for entry in entries:
                if entry.name.endswith(".tmp"):
                    os.unlink(entry.path)  # a write a crash interrupted
                else:
                    self._index[entry.name] = entry.stat().st_size

    @staticmethod
    def name(location_id: str, key: str, version: str, index: int) -> str:
        raw = f"{location_id}\0{key}\0{version}\0{index}".encode()
        return hashlib.blake2b(raw, digest_size=16).hexdigest()

    def contains(self, name: str) -> bool:
        with self._lock:
            return name in self._index

    def read(self, name: str, start: int, length: int, *, wait: bool = True) -> bytes | None:
        """`length` bytes from `start` of the chunk (fewer at its end), or None when it is not
        cached. With `wait=False` (for the trio thread) the bytes come only from the page
        cache, without blocking: None also when any of them would have to come from the
        disk, or when the filesystem cannot tell."""
        with self._lock:
            size = self._index.get(name)
            if size is None:
                return None
            self._index[name] = size  # mark as recently used
        if not wait and not self._nowait:
            return None
        try:
            fd = os.open(self.directory / name, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            with self._lock:
                self._index.pop(name, None)
            return None
        try:
            if wait:
                return os.pread(fd, length, start)
            buffer = bytearray(max(0, min(length, size - start)))
            try:
                count = os.preadv(fd, [buffer], start, os.RWF_NOWAIT)
            except BlockingIOError:
                return None
            except OSError as exc:
                if exc.errno != errno.EOPNOTSUPP:
                    raise
                self._nowait = False
                return None
            return bytes(buffer) if count == len(buffer) else None
        finally:
            os.close(fd)

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        """Keep a chunk, evicting old ones beyond the size limit (blocking: writes a file)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        temp = self.directory / f"{name}.{threading.get_ident()}.tmp"
        temp.write_bytes(data)
        os.replace(temp, self.directory / name)
        with self._lock:
            self._index[name] = len(data)

    @property
    def bytes_cached(self) -> int:
        with self._lock:
            return int(self._index.currsize)
