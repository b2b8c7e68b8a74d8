"""Showing in a mount what others wrote to the catalog: its scans, and `alicefs-ctl` commands
run through it (tags, ratings, discover, a location removed, ...).

Only the paths they wrote are read back (`Catalog.watch`), a slice at a time in a worker
thread, and each slice is applied on the trio thread between checkpoints: the work is that
of the change, never a walk over every file, and handlers run between slices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace

import trio

from alicefs.catalog import Catalog, FileMeta
from alicefs.fs.namespace import DEFAULT_FILE_MODE, FileNode, Namespace, Replica, view_path
from alicefs.fs.state import MountState
from alicefs.media import classify_name
from alicefs.rules import LocationStatus

# Paths read back and applied at once: a few milliseconds on the trio thread.
APPLY_SLICE = 2000


@dataclass(frozen=True)
class CatalogView:
    """Replicas and metadata of some paths, as the catalog holds them."""

    replicas: dict[str, dict[str, Replica]]  # logical path -> location id -> replica
    metadata: dict[str, FileMeta]


def read_catalog_view(catalog: Catalog, logical_paths: Sequence[str],
                      location_ids: Collection[str]) -> CatalogView:
    """The replicas `logical_paths` have in `location_ids`, and their metadata (blocking:
    run in a worker thread)."""
    by_path: dict[str, dict[str, Replica]] = {}
    for r in catalog.replicas_for(logical_paths):
        if r.location_id in location_ids:
            by_path.setdefault(r.logical_path, {})[r.location_id] = Replica(
                r.size, r.mtime_ns, r.content_hash, r.state, change_token=r.change_token)
    return CatalogView(by_path, catalog.metadata_for(logical_paths))


async def show_catalog_changes(state: MountState, logical_paths: Collection[str],
                               location_ids: Collection[str],
                               busy: Callable[[], set[str]]) -> int:
    """Bring the namespace level with what the catalog holds for `logical_paths` (those a
    scan or a command wrote) in `location_ids`: files added or changed directly in a
    location appear, vanished ones show as missing, tags and ratings as set. Files `busy`
    names (open for writing, uploading) are left alone. Returns the number of changes."""
    paths = list(logical_paths)  # in any order: sorting a million would stall the loop
    changes = 0
    linked: list[str] = []
    for start in range(0, len(paths), APPLY_SLICE):
        view = await trio.to_thread.run_sync(
            read_catalog_view, state.catalog, paths[start:start + APPLY_SLICE], location_ids)
        changes += apply_catalog_view(state, view, busy(), linked)
    # Once every slice is in: a link's other names may have come in a later one.
    split_changed_links(state.namespace, linked, busy())
    return changes


def apply_catalog_view(state: MountState, view: CatalogView, busy: set[str],
                       linked: list[str]) -> int:
    """Apply one slice (on the trio thread, so no handler interleaves). Hard-linked files
    whose replicas changed are added to `linked`. Returns the number of changes."""
    namespace = state.namespace
    changes = 0
    for logical, replicas in view.replicas.items():
        vpath = view_path(logical)
        if vpath in busy:
            continue
        node = namespace.files.get(vpath)
        if node is None:
            meta = view.metadata.get(logical)
            media = classify_name(logical)
            node = FileNode(logical, dict(replicas), meta.category if meta else media.category,
                            meta.mime_type if meta else media.mime_type,
                            meta.tags if meta else (), meta.quality if meta else None,
                            DEFAULT_FILE_MODE, namespace.uid, namespace.gid, time.time_ns())
            namespace.add_file(node)
            changes += 1
            continue
        if any(r.staged is not None for r in node.replicas.values()):
            continue  # newer content waits in a staging file: the catalog is behind
        before = namespace.views_of(vpath)
        changed = False
        for location_id, replica in replicas.items():
            known = node.replicas.get(location_id)
            if known is None or (known.state != "stale" and (
                    known.size, known.mtime_ns, known.state, known.change_token) != (
                    replica.size, replica.mtime_ns, replica.state, replica.change_token)):
                node.replicas[location_id] = replica
                node.version += 1
                node.ctime_ns = max(node.ctime_ns, time.time_ns())  # changed on disk
                changes += 1
                changed = True
        if changed:
            namespace.reindex(vpath, before)
            if namespace.link_count(vpath) > 1:
                linked.append(vpath)
    for logical, meta in view.metadata.items():
        node = namespace.files.get(view_path(logical))
        if node is None or state.queue.metadata_queued(logical):
            continue  # a value set through the mount meanwhile is newer than the catalog's
        if (node.tags, node.quality) != (meta.tags, meta.quality):
            node.tags, node.quality = meta.tags, meta.quality
            changes += 1
    return changes


def split_changed_links(namespace: Namespace, linked: list[str], busy: set[str]) -> None:
    """Hard-linked names whose replicas changed on disk unlike their other names' were
    replaced there: each gets an inode of its own."""
    for vpath in linked:
        if vpath not in namespace.files:
            continue
        others = namespace.other_names(vpath)
        if not busy.intersection(others) and any(
                _versions(namespace.files[other].replicas)
                != _versions(namespace.files[vpath].replicas) for other in others):
            namespace.split_link(vpath)


async def forget_location(state: MountState, location_id: str) -> None:
    """A location removed from the registry while mounted: its replicas leave the namespace
    (files only it held disappear from the views; nothing on disk is touched), a slice of
    files at a time between checkpoints. It stays in `state` as offline, for descriptors
    still open on it, and is unusable from the start, so nothing is served from it while
    the slices go."""
    state.unavailable[location_id] = "removed from the registry"
    state.set_locations([replace(loc, status=LocationStatus.OFFLINE)
                         if loc.location_id == location_id else loc
                         for loc in state.locations])
    namespace = state.namespace
    files = namespace.files
    # A file renamed between slices is stored under its new name: visited there too.
    with files.recording_stores() as stored:
        paths = list(files)
        for start in range(0, len(paths), APPLY_SLICE):
            for vpath in paths[start:start + APPLY_SLICE]:
                _drop_replica(namespace, vpath, location_id)
            await trio.sleep(0)
        while stored:
            _drop_replica(namespace, stored.pop(), location_id)
    namespace.remove_location(location_id)


def _drop_replica(namespace: Namespace, vpath: str, location_id: str) -> None:
    """The file at `vpath` without its replica in `location_id` (gone if it was its last)."""
    if not namespace.files.has_replica(vpath, location_id):
        return
    before = namespace.views_of(vpath)
    node = namespace.files[vpath]
    del node.replicas[location_id]
    node.version += 1
    if node.replicas:
        namespace.reindex(vpath, before)
    else:
        namespace.remove_file(vpath)


def _versions(replicas: Mapping[str, Replica]) -> dict[str, tuple[int, int]]:
    return {lid: (r.size, r.mtime_ns) for lid, r in replicas.items() if r.state != "missing"}
