"""An on-disk cache of object-store data in `cache_dir/chunks`, bounded by `cache_size`.

Reads of S3/GCS replicas go through it in 1 MiB chunks: a chunk is fetched with one ranged GET,
kept as a file, and reused by every later read until it is evicted (least recently used
first). Chunks are keyed by the object's version (content hash or change token), so a changed
object never serves stale bytes. cachetools' LRUCache keeps the order and the byte count; its
eviction deletes the chunk file. The index is rebuilt from the directory at start-up, so the
cache survives remounts.
"""

from __future__ import annotations

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

    def get(self, name: str) -> bytes | None:
        """The chunk, or None when it is not cached (blocking: reads a file)."""
        with self._lock:
            if name not in self._index:
                return None
            self._index[name] = self._index[name]  # mark as recently used
        try:
            return (self.directory / name).read_bytes()
        except FileNotFoundError:
            with self._lock:
                self._index.pop(name, None)
            return None

    def put(self, name: str, data: bytes) -> None:
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
