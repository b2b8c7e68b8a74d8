"""Everything a mounted alicefs holds in memory, built from the settings and the catalog."""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field

from alicefs.backends import Backend, LocalBackend, open_backend
from alicefs.backends.threaded import ThreadedBackend
from alicefs.catalog import Catalog, JournalEntry
from alicefs.config import Settings
from alicefs.fs.catalog_queue import CatalogQueue
from alicefs.fs.chunk_cache import ChunkCache
from alicefs.fs.namespace import FileNode, Namespace, Replica, view_path
from alicefs.fs.options import MountOptions
from alicefs.model import LocationType, StorageLocation
from alicefs.rules import LocationStatus, SpaceInfo, by_preference
from alicefs.transfer.journal import JournaledPartialUploads
from alicefs.transfer.recovery import recover, unfinished


@dataclass
class MountState:
    settings: Settings
    catalog: Catalog
    locations: list[StorageLocation]  # highest priority first
    backends: dict[str, ThreadedBackend]
    namespace: Namespace
    queue: CatalogQueue
    options: MountOptions
    unavailable: dict[str, str] = field(default_factory=dict)  # location id -> why
    free_space: dict[str, SpaceInfo | None] = field(default_factory=dict)
    chunks: ChunkCache | None = None  # object-store read cache
    devices: dict[str, int] = field(default_factory=dict)  # local location id -> st_dev
    # location id -> deferred deletes for it being journaled right now (see _bring_back)
    deferring: dict[str, int] = field(default_factory=dict)
    # (logical path, source location id) of re-placements a crash interrupted and recovery
    # rolled back: tried again once the mount runs
    unfinished_moves: list[tuple[str, str]] = field(default_factory=list)
    # when this mount began: journal entries begun before are a dead process's to recover
    started_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.set_locations(self.locations)

    def set_locations(self, locations: list[StorageLocation]) -> None:
        """The locations, highest priority first (their order and index are asked for on
        every getattr: kept up to date here, not looked up each time)."""
        self.locations[:] = locations
        self._by_id = {loc.location_id: loc for loc in self.locations}
        self._rank = {loc.location_id: rank for rank, loc in enumerate(self.locations)}

    def location(self, location_id: str) -> StorageLocation:
        return self._by_id[location_id]

    def backend(self, location_id: str) -> Backend:
        return self.backends[location_id].backend

    def local(self, location_id: str) -> LocalBackend | None:
        backend = self.backends[location_id].backend
        return backend if isinstance(backend, LocalBackend) else None

    def usable(self, location_id: str) -> bool:
        return (location_id in self.backends and location_id not in self.unavailable
                and self.location(location_id).status is not LocationStatus.OFFLINE)

    def serves(self, location_id: str, replica: Replica | None) -> bool:
        """Whether reads and writes may go to `replica` now: its location is usable, or it
        is an unreachable store's replica whose newest content waits in a staging file here
        (served from there until its upload succeeds)."""
        if replica is None:
            return False
        if self.usable(location_id):
            return True
        return (replica.staged is not None and location_id in self.backends
                and self.location(location_id).status is not LocationStatus.OFFLINE)

    def priority(self, location_id: str) -> int:
        return self.location(location_id).priority

    def primary(self, node: FileNode) -> str | None:
        """The replica reads and writes go to: the highest-priority usable location holding
        the current version."""
        best, best_rank = None, len(self._rank)
        for location_id, replica in node.replicas.items():
            if replica.state == "present" and self.serves(location_id, replica):
                rank = self._rank.get(location_id, len(self._rank))
                if best is None or rank < best_rank:
                    best, best_rank = location_id, rank
        return best


def build_state(settings: Settings, catalog: Catalog, options: MountOptions) -> MountState:
    """Open every location's backend and load the namespace from the catalog in bulk.
    A location that cannot be opened or reached is kept, marked unavailable."""
    locations = by_preference(catalog.locations())
    backends: dict[str, ThreadedBackend] = {}
    unavailable: dict[str, str] = {}
    for loc in locations:
        if loc.status is LocationStatus.OFFLINE:
            continue
        backend, why = open_location(loc, settings.skip_hidden, catalog)
        if backend is not None:
            backends[loc.location_id] = backend
        if why is not None:
            unavailable[loc.location_id] = why
    reachable = {lid: tb.backend for lid, tb in backends.items() if lid not in unavailable}
    rolled_back: list[JournalEntry] = []
    # Before the namespace is loaded, so it shows the outcome.
    recover(catalog, reachable, rolled_back=rolled_back)
    owed = unfinished(catalog)
    for location_id in reachable:
        if owed[location_id]:
            unavailable[location_id] = unfinished_reason(owed[location_id])
    uid, gid = os.getuid(), os.getgid()
    namespace = Namespace({loc.location_id: loc.name for loc in locations}, uid, gid,
                          time.time_ns())
    load_namespace(namespace, catalog)
    local = {lid: b for lid, b in reachable.items() if isinstance(b, LocalBackend)}
    link_names(namespace, catalog.hard_link_groups(), local)
    catalog.release_memory()
    state = MountState(settings, catalog, locations, backends, namespace,
                       CatalogQueue(catalog), options, unavailable,
                       chunks=ChunkCache(settings.cache_dir / "chunks", settings.cache_size),
                       unfinished_moves=[(e.logical_path, e.source_location_id or "")
                                         for e in rolled_back])
    refresh_free_space(state)
    return state


def open_location(location: StorageLocation, skip_hidden: bool, catalog: Catalog
                  ) -> tuple[ThreadedBackend | None, str | None]:
    """(its backend, why it cannot be used now) for a location (blocking: probes it). The
    backend notes its unfinished uploads in the catalog's journal."""
    try:
        backend = open_backend(location, skip_hidden=skip_hidden)
    except LookupError as exc:
        return None, str(exc)
    backend.partial_uploads = JournaledPartialUploads(catalog)
    try:
        backend.probe()
    except OSError as exc:
        return ThreadedBackend(backend), exc.strerror or str(exc)
    return ThreadedBackend(backend), None


def unfinished_reason(owed: int) -> str:
    return (f"{owed} unlinks or renames made while it was away could not be finished there "
            "(see the log); retried until they are")


def load_namespace(namespace: Namespace, catalog: Catalog) -> None:
    """Every cataloged file, from plain rows in bulk (`Namespace.load`), then the POSIX
    attributes of the few that have their own. Modes and owners are shared int objects (an
    int above 256 is an object of its own, 32 bytes)."""
    numbers: dict[int, int] = {}
    namespace.load(catalog.namespace_rows())
    for path, attrs in catalog.all_posix_attrs().items():
        vpath = view_path(path)
        node = namespace.files.get(vpath)
        if node is None:
            continue
        kind = stat.S_IFMT(attrs.mode) or (
            stat.S_IFREG if attrs.symlink_target is None else stat.S_IFLNK)
        mode = kind | stat.S_IMODE(attrs.mode)
        node.mode = numbers.setdefault(mode, mode)
        node.uid = numbers.setdefault(attrs.uid, attrs.uid)
        node.gid = numbers.setdefault(attrs.gid, attrs.gid)
        node.symlink_target = attrs.symlink_target
        node.rdev = attrs.rdev or 0
        node.atime_ns = attrs.atime_ns
        if attrs.rdev is not None or attrs.symlink_target is not None:
            before = namespace.views_of(vpath)
            node.category = "other"
            node.mime_type = "inode/special" if attrs.rdev is not None else "inode/symlink"
            namespace.reindex(vpath, before)


def link_names(namespace: Namespace, groups: list[tuple[str, int, list[str]]],
               local: dict[str, LocalBackend]) -> None:
    """Give the names of each hard-linked file one inode again (catalog rows that share a
    local location's inode, `Catalog.hard_link_groups`). Only what the disk confirms: every
    name has its copies in the same locations, and in each of them all the names are one
    file. Anything else shows as separate files (blocking: one lstat per name)."""
    confirmed: dict[str, dict[str, int]] = {}  # logical path -> location id -> inode
    for location_id, inode, paths in groups:
        backend = local.get(location_id)
        if backend is None:
            continue
        for path in paths:
            if backend.linked_inode(path) == inode:
                confirmed.setdefault(path, {})[location_id] = inode
    by_file: dict[tuple[tuple[str, int], ...], list[str]] = {}
    for path, inodes in confirmed.items():
        by_file.setdefault(tuple(sorted(inodes.items())), []).append(path)
    for file, paths in by_file.items():
        backing = dict(file)
        nodes = [namespace.files.get(view_path(path)) for path in paths]
        if len(paths) < 2 or any(
                node is None or {lid for lid, r in node.replicas.items()
                                 if r.state != "missing"} != set(backing) for node in nodes):
            continue
        first, *others = sorted(paths)
        for other in others:
            namespace.add_link(view_path(first), view_path(other), backing)


def refresh_free_space(state: MountState) -> None:
    """Free space of every usable location (blocking: statvfs; run in a worker thread)."""
    for loc in state.locations:
        if not state.usable(loc.location_id):
            continue
        try:
            state.free_space[loc.location_id] = state.backend(loc.location_id).free_space()
            if loc.type is LocationType.LOCAL:
                state.devices[loc.location_id] = os.stat(loc.path).st_dev
        except OSError as exc:
            state.unavailable[loc.location_id] = exc.strerror or str(exc)
