"""Write-behind of the mount's changes to the catalog.

A FUSE operation must never wait for DuckDB (hundreds of single-row commits per second at
best), so operations record their changes here, in memory, and a background task writes them
in batches. Until a batch is flushed the namespace is the truth; a crash before a flush loses
only catalog rows, which the next scan rebuilds from the locations (DESIGN.md §5).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from alicefs.catalog import Catalog, FileMeta, PosixAttrs, Replica


@dataclass
class CatalogQueue:
    catalog: Catalog
    _replicas: dict[tuple[str, str], Replica] = field(default_factory=dict)
    _drops: set[tuple[str, str]] = field(default_factory=set)
    _metadata: dict[str, FileMeta] = field(default_factory=dict)
    _stale: set[tuple[str, str]] = field(default_factory=set)
    _attrs: dict[str, PosixAttrs | None] = field(default_factory=dict)  # None: drop the row
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put_replica(self, replica: Replica) -> None:
        key = (replica.location_id, replica.logical_path)
        with self._lock:
            self._drops.discard(key)
            self._stale.discard(key)  # the newer row says what it is
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

    def put_attrs(self, attrs: PosixAttrs) -> None:
        with self._lock:
            self._attrs[attrs.logical_path] = attrs

    def drop_attrs(self, logical_path: str) -> None:
        with self._lock:
            self._attrs[logical_path] = None

    def metadata_queued(self, logical_path: str) -> bool:
        """Whether tags or a rating set through the mount wait here for the catalog (until
        then the namespace holds the newer value)."""
        with self._lock:
            return logical_path in self._metadata

    @property
    def pending(self) -> int:
        with self._lock:
            return (len(self._replicas) + len(self._drops) + len(self._metadata)
                    + len(self._stale) + len(self._attrs))

    def flush(self) -> int:
        """Write everything queued in one transaction (blocking: run in a worker thread).
        Returns the number of changes written. A flush that fails leaves what it took
        queued again (under anything queued since), for the next one."""
        with self._lock:
            replicas, self._replicas = list(self._replicas.values()), {}
            drops, self._drops = sorted(self._drops), set()
            metadata, self._metadata = list(self._metadata.values()), {}
            stale, self._stale = sorted(self._stale), set()
            attrs, self._attrs = self._attrs, {}
        if not (replicas or drops or metadata or stale or attrs):
            return 0
        by_location: dict[str, list[str]] = {}
        for location_id, path in drops:
            by_location.setdefault(location_id, []).append(path)
        try:
            with self.catalog.transaction():
                for location_id, paths in by_location.items():
                    self.catalog.drop_replicas(location_id, paths)
                self.catalog.put_replicas(replicas)
                self.catalog.mark_stale(stale)
                self.catalog.put_metadata(metadata)
                self.catalog.drop_posix_attrs([path for path, a in attrs.items() if a is None])
                self.catalog.put_posix_attrs([a for a in attrs.values() if a is not None])
        except BaseException:
            self._requeue(replicas, drops, metadata, stale, attrs)
            raise
        return len(replicas) + len(drops) + len(metadata) + len(stale) + len(attrs)

    def _requeue(self, replicas: list[Replica], drops: list[tuple[str, str]],
                 metadata: list[FileMeta], stale: list[tuple[str, str]],
                 attrs: dict[str, PosixAttrs | None]) -> None:
        with self._lock:
            newer = set(self._replicas) | self._drops
            for replica in replicas:
                key = (replica.location_id, replica.logical_path)
                if key not in newer:
                    self._replicas[key] = replica
            self._drops |= {key for key in drops if key not in newer}
            self._stale |= {key for key in stale if key not in newer}
            for meta in metadata:
                self._metadata.setdefault(meta.logical_path, meta)
            for path, value in attrs.items():
                self._attrs.setdefault(path, value)
