"""Write-behind of the mount's changes to the catalog.

A FUSE operation must never wait for DuckDB (hundreds of single-row commits per second at
best), so operations record their changes here, in memory, and a background task writes them
in batches. Until a batch is flushed the namespace is the truth; a crash before a flush loses
only catalog rows, which the next scan rebuilds from the locations (DESIGN.md §5).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from alicefs.catalog import Catalog, FileMeta, Replica


@dataclass
class CatalogQueue:
    catalog: Catalog
    _replicas: dict[tuple[str, str], Replica] = field(default_factory=dict)
    _drops: set[tuple[str, str]] = field(default_factory=set)
    _metadata: dict[str, FileMeta] = field(default_factory=dict)
    _stale: set[tuple[str, str]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put_replica(self, replica: Replica) -> None:
        key = (replica.location_id, replica.logical_path)
        with self._lock:
            self._drops.discard(key)
            self._replicas[key] = replica

    def drop_replica(self, location_id: str, logical_path: str) -> None:
        key = (location_id, logical_path)
        with self._lock:
            self._replicas.pop(key, None)
            self._drops.add(key)

    def mark_stale(self, location_id: str, logical_path: str) -> None:
        with self._lock:
            self._stale.add((location_id, logical_path))

    def put_metadata(self, meta: FileMeta) -> None:
        with self._lock:
            self._metadata[meta.logical_path] = meta

    @property
    def pending(self) -> int:
        with self._lock:
            return (len(self._replicas) + len(self._drops) + len(self._metadata)
                    + len(self._stale))

    def flush(self) -> int:
        """Write everything queued in one transaction (blocking: run in a worker thread).
        Returns the number of changes written."""
        with self._lock:
            replicas, self._replicas = list(self._replicas.values()), {}
            drops, self._drops = sorted(self._drops), set()
            metadata, self._metadata = list(self._metadata.values()), {}
            stale, self._stale = sorted(self._stale), set()
        if not (replicas or drops or metadata or stale):
            return 0
        by_location: dict[str, list[str]] = {}
        for location_id, path in drops:
            by_location.setdefault(location_id, []).append(path)
        with self.catalog.transaction():
            for location_id, paths in by_location.items():
                self.catalog.drop_replicas(location_id, paths)
            self.catalog.put_replicas(replicas)
            self.catalog.mark_stale(stale)
            self.catalog.put_metadata(metadata)
        return len(replicas) + len(drops) + len(metadata) + len(stale)
