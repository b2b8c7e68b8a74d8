"""Migration run by the mount (on its schedule, or sent by `alicefs-ctl migrate`): the
mount serves the files while they move.

- A batch's files are locked (the per-file locks renames, unlinks and uploads take) while
  the batch runs; a file open for writing, waiting for its upload, or changed since it was
  planned is left for the next run (`busy`).
- Writing to a file while it is copied (an open for writing bumps its version) makes its
  copy go and keeps its sources.
- The moment a copy is verified the mount shows the file at its new location, before any
  source is deleted: an open that comes later uses the copy. A source an open handle reads
  from an object store stays until the next run (a local one goes: the open descriptor
  keeps reading it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import trio

from alicefs.catalog import Replica as CatalogReplica
from alicefs.fs.namespace import FileNode, Replica, view_path
from alicefs.media import classify_name
from alicefs.migrate.plan import PlannedTransfer
from alicefs.migrate.run import Coordinator

if TYPE_CHECKING:
    from alicefs.fs.operations import AliceOperations


class MountCoordinator(Coordinator):
    def __init__(self, ops: AliceOperations):
        self.ops = ops
        self.versions: dict[str, int] = {}  # logical path -> its node's version when held

    def may_use(self, location_id: str) -> bool:
        return self.ops.state.usable(location_id)

    @contextlib.asynccontextmanager
    async def hold(self, entries: Sequence[PlannedTransfer]) -> AsyncIterator[dict[str, str]]:
        ns = self.ops.ns
        nodes = {e.logical_path: ns.files[view_path(e.logical_path)] for e in entries
                 if view_path(e.logical_path) in ns.files}
        # Ordered by id, as every holder of several file locks takes them: no deadlock.
        ordered = sorted({id(n): n for n in nodes.values()}.values(), key=id)
        try:
            async with contextlib.AsyncExitStack() as locks:
                for node in ordered:
                    await locks.enter_async_context(self.ops.lock_for(node))
                busy = {}
                for entry in entries:
                    why = self._why_not_now(entry, nodes.get(entry.logical_path))
                    if why is None:
                        self.versions[entry.logical_path] = nodes[entry.logical_path].version
                    else:
                        busy[entry.logical_path] = why
                yield busy
        finally:
            for entry in entries:
                self.versions.pop(entry.logical_path, None)
            for node in ordered:
                self.ops.forget_lock(node)

    def _why_not_now(self, entry: PlannedTransfer, node: FileNode | None) -> str | None:
        if node is None or self.ops.ns.files.get(view_path(entry.logical_path)) is not node:
            return "renamed or removed since it was planned"
        if self.ops.open_for_writing(node):
            return "open for writing: moved at the next run"
        if self.ops.ns.link_count(view_path(entry.logical_path)) > 1:
            return "hard-linked: stays where it is with its other names"
        if view_path(entry.logical_path) in self.ops.uploads.paths():
            return "waiting for its upload: moved at the next run"
        planned = [(entry.source_location_id, entry.size, entry.mtime_ns)]
        planned += [(r.location_id, r.size, r.mtime_ns) for r in entry.remove_from]
        for location_id, size, mtime_ns in planned:
            replica = node.replicas.get(location_id)
            if (replica is None or replica.state != "present" or replica.staged is not None
                    or (replica.size, replica.mtime_ns) != (size, mtime_ns)):
                return "changed since it was planned: looked at again at the next run"
        return None

    def settle(self, entry: PlannedTransfer, row: CatalogReplica) -> list[str] | None:
        vpath = view_path(entry.logical_path)
        node = self.ops.ns.files.get(vpath)
        if (node is None or node.version != self.versions.get(entry.logical_path)
                or self.ops.open_for_writing(node)):
            return None
        target = row.location_id
        before = self.ops.ns.views_of(vpath)
        node.replicas[target] = Replica(row.size, row.mtime_ns, row.content_hash, "present",
                                        change_token=row.change_token)
        self.ops.record(node, target, inode=row.inode)
        removable = []
        for planned in entry.remove_from:
            location_id = planned.location_id
            if self.ops.state.local(location_id) is None and self.ops.read_from(node,
                                                                                 location_id):
                continue
            del node.replicas[location_id]
            self.ops.state.queue.drop_replica(location_id, entry.logical_path)
            removable.append(location_id)
            if node.created_here == location_id:
                node.created_here = target
        # A scan running now may have listed a source before it went: its view of this
        # file is out of date.
        self.ops.forgotten.add(vpath)
        self.ops.ns.reindex(vpath, before)
        return removable

    async def flush(self) -> None:
        await trio.to_thread.run_sync(self.ops.state.queue.flush)

    def replaced(self, entry: PlannedTransfer, row: CatalogReplica) -> bool:
        vpath = view_path(entry.logical_path)
        node = self.ops.ns.files[vpath]  # held: neither renamed nor removed meanwhile
        unchanged = node.version == self.versions.get(entry.logical_path)
        before = self.ops.ns.views_of(vpath)
        node.replicas[row.location_id] = Replica(
            row.size, row.mtime_ns, row.content_hash, "present" if unchanged else "stale",
            change_token=row.change_token)
        self.ops.record(node, row.location_id, inode=row.inode)
        self.ops.forgotten.add(vpath)  # a scan running now listed the old content
        self.ops.ns.reindex(vpath, before)
        return unchanged

    def appeared(self, entry: PlannedTransfer, row: CatalogReplica) -> None:
        """The conflict copy shows as a file of its own, with the attributes of the file
        whose losing version it keeps."""
        vpath = view_path(row.logical_path)
        original = self.ops.ns.files.get(view_path(entry.logical_path))
        if vpath in self.ops.ns.files or original is None:
            return
        media = classify_name(row.logical_path)
        self.ops.ns.add_file(FileNode(
            row.logical_path, {row.location_id: Replica(row.size, row.mtime_ns,
                                                        row.content_hash, "present",
                                                        change_token=row.change_token)},
            media.category, media.mime_type, original.tags, original.quality, original.mode,
            original.uid, original.gid, time.time_ns()))

    def dropped(self, location_id: str, logical_path: str) -> None:
        vpath = view_path(logical_path)
        node = self.ops.ns.files.get(vpath)
        replica = node.replicas.get(location_id) if node is not None else None
        if node is None or replica is None or replica.state != "missing" \
                or len(node.replicas) < 2:
            return
        before = self.ops.ns.views_of(vpath)
        del node.replicas[location_id]
        self.ops.ns.reindex(vpath, before)

    def kept(self, entry: PlannedTransfer, location_id: str) -> None:
        """Shown again as an older version of the file there (sync sorts it out), never left
        on disk unknown to the mount, where it would block names and come back at the next
        scan."""
        node = self.ops.ns.files.get(view_path(entry.logical_path))
        planned = next(r for r in entry.remove_from if r.location_id == location_id)
        if node is None or node.logical_path != entry.logical_path \
                or location_id in node.replicas:
            return
        before = self.ops.ns.views_of(view_path(entry.logical_path))
        node.replicas[location_id] = Replica(planned.size, planned.mtime_ns, None, "stale")
        self.ops.ns.reindex(view_path(entry.logical_path), before)
        self.ops.record(node, location_id)
