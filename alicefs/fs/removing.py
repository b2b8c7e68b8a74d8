"""unlink and rmdir, and what removals and renames share: journaled deletes deferred for
locations that are unreachable, and the checks that keep an offline copy from being lost."""

from __future__ import annotations

import contextlib
import errno
import logging
import stat
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pyfuse3
import trio

from alicefs.fs.base import OperationsBase, fuse_error, fuse_errors, replica_holders
from alicefs.fs.namespace import (
    PROJECTS_VIEW,
    STATUS_VIEW,
    FileNode,
    Replica,
    location_view,
    logical_path_of,
)
from alicefs.transfer.journal import DEFERRED_DELETE

log = logging.getLogger(__name__)


class Removing(OperationsBase):
    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        async with self.tree_lock.shared():
            await self._unlink(parent_inode, name)

    async def _unlink(self, parent_inode: int, name: bytes) -> None:
        view, vpath = self._child(parent_inode, name)
        if view.startswith("l:") or view in ("", STATUS_VIEW):
            raise fuse_error(errno.EROFS)
        self._removing(view, vpath)
        if self._exists(view, vpath) != "file":
            raise fuse_error(errno.EISDIR if self._exists(view, vpath) == "dir" else errno.ENOENT)
        node = self.ns.files[vpath]
        async with self.lock_for(node):
            await self._unlink_locked(view, vpath, node)
        self.forget_lock(node)

    async def _unlink_locked(self, view: str, vpath: str, node: FileNode) -> None:
        if self._current_vpath(node) != vpath:
            raise fuse_error(errno.ENOENT)  # renamed or removed while waiting for an upload
        self.forgotten.add(vpath)
        holders = replica_holders(node)
        reachable = [lid for lid in holders if self.state.usable(lid)]
        linked = self.ns.link_count(vpath) > 1
        if linked:
            self._names_synced(node)  # the names left get what this one showed
            inode = self.ns.inode_of(PROJECTS_VIEW, vpath)
        with self._owing(lid for lid in holders if lid not in reachable):
            await self._unlink_replicas(view, vpath, node, holders, reachable)
        if linked:
            # Another name of the file: its inode (and open handles) now stand for that one.
            entry = self.ns.entry(inode)
            if entry is not None and entry.vpath in self.ns.files:
                source = self.ns.files[entry.vpath]
                source.ctime_ns = time.time_ns()
                self._names_synced(source)
                for handle in self._handles.values():
                    if handle.node is node:
                        handle.node, handle.vpath = source, entry.vpath

    async def _unlink_replicas(self, view: str, vpath: str, node: FileNode,
                               holders: list[str], reachable: list[str]) -> None:
        op_id = None
        if len(reachable) > 1:
            # Several steps that must all happen: journaled, so start-up finishes the job.
            op_id = await self._db(self.state.catalog.journal_begin, "delete",
                                   node.logical_path, payload={"locations": reachable})
        await self._defer([(node, [lid for lid in holders if lid not in reachable])])
        for location_id in holders:
            staged = node.replicas[location_id].staged
            if staged is not None:
                self.uploads.done((vpath, location_id))
                await trio.to_thread.run_sync(self.staging.discard, staged)
            if not self.state.usable(location_id):
                continue
            await self._delete_replica(location_id, node)
        # The directory stays on disk when its last file goes: so it does in the views.
        parent = vpath.rpartition("/")[0]
        if parent:
            for shown_in in self.ns.views_of(vpath):
                if not shown_in.startswith("t:") and self.ns.is_dir(shown_in, parent):
                    self.ns.dirs[shown_in][parent].explicit = True
        self.ns.remove_file(vpath)
        for location_id in node.replicas:
            self.state.queue.drop_replica(location_id, node.logical_path)
        self.state.queue.drop_attrs(node.logical_path)
        self._cached_version.pop(self.ns.inode_of(view, vpath), None)
        if op_id is not None:
            await self._db(self.state.catalog.journal_end, op_id)

    async def _delete_replica(self, location_id: str, node: FileNode) -> None:
        backend = self.state.backend(location_id)
        local = self.state.local(location_id)
        func = local.remove_special if node.is_special and local else backend.delete
        with contextlib.suppress(FileNotFoundError):  # already gone: what unlink wants
            await self._thread(location_id, func, node.logical_path)

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        async with self.tree_lock.exclusive():
            await self._rmdir(parent_inode, name)

    async def _rmdir(self, parent_inode: int, name: bytes) -> None:
        view, vpath = self._child(parent_inode, name)
        self._writable_view(view)
        self._removing(view, vpath)
        if self._exists(view, vpath) != "dir":
            raise fuse_error(errno.ENOTDIR if self._exists(view, vpath) else errno.ENOENT)
        if vpath == "" or self.ns.children(view, vpath):
            raise fuse_error(errno.ENOTEMPTY)
        for location_id in list(self.state.backends):
            local = self.state.local(location_id)
            if local is None or not self.state.usable(location_id):
                continue
            try:
                await self._thread(location_id, local.remove_dir, logical_path_of(vpath))
            except (FileNotFoundError, NotADirectoryError):
                continue
            self.ns.remove_dir(location_view(location_id), vpath)
        self.ns.remove_dir(PROJECTS_VIEW, vpath)

    async def _defer(self, copies: list[tuple[FileNode, list[str]]],
                     prune: str | None = None) -> None:
        """Copies of files unlinked or renamed away that sit on locations offline now:
        journaled (one entry per copy) and deleted when their location is back, before it
        is used or scanned (recovery.py), so nothing removed comes back and nothing renamed
        shows twice. One transaction, which also drops the files' catalog rows under these
        names: a crash right after cannot show them again either."""
        copies = [(node, lids) for node, lids in copies if lids]
        if not copies:
            return
        catalog = self.state.catalog
        entries = []
        for node, location_ids in copies:
            for lid in location_ids:
                replica = node.replicas[lid]
                # What is there: a staged replica's newer content was never uploaded.
                known = replica.staged is None
                payload: dict[str, Any] = (
                    {"special": stat.S_IFMT(node.mode)} if node.is_special else {})
                if known:
                    payload.update(size=replica.size, mtime_ns=replica.mtime_ns)
                else:  # the object store holds the version the staging file replaces
                    payload.update(staged=True, change_token=replica.change_token)
                if prune is not None:
                    payload["prune"] = prune
                entries.append((node.logical_path, lid,
                                replica.content_hash if known else None, payload))
        rows = [(node.logical_path, list(node.replicas)) for node, _ in copies]

        def journal() -> None:
            with catalog.transaction():
                for logical_path, lid, content_hash, payload in entries:
                    catalog.journal_begin(DEFERRED_DELETE, logical_path, target_location_id=lid,
                                          expected_hash=content_hash, payload=payload)
                for logical_path, location_ids in rows:
                    for lid in location_ids:
                        catalog.drop_replicas(lid, [logical_path])

        await self._db(journal)
        owed = {lid for _, lids in copies for lid in lids}
        log.info("%d copies on %s go when that is back online", len(entries),
                 ", ".join(self.state.location(lid).name for lid in owed))

    async def _drop_replaced(self, node: FileNode, replaced: FileNode) -> list[str]:
        """The file a rename replaced, where the renamed one has no copy: a regular file
        replaced by a regular file now holds an older version of the new name (stale,
        brought level by sync); anything else (a link or special file, or a file replaced by
        one, or a copy hard-linked to other names, which keep it) is deleted, now or, for
        offline locations, when they are back (returned)."""
        offline = []
        vpath = self._current_vpath(replaced)
        group = self.ns.link_group(vpath) if vpath is not None else None
        shared = group.backing if group is not None else {}
        for location_id, replica in replaced.replicas.items():
            if location_id in node.replicas or replica.state == "missing":
                continue
            if stat.S_ISREG(replaced.mode) and stat.S_ISREG(node.mode) and \
                    location_id not in shared:
                if replica.state in ("present", "stale"):  # stale: older still, still there
                    node.replicas[location_id] = Replica(replica.size, replica.mtime_ns,
                                                         replica.content_hash, "stale",
                                                         change_token=replica.change_token)
                    self.state.queue.mark_stale(location_id, replaced.logical_path)
            elif self.state.usable(location_id):
                await self._delete_replica(location_id, replaced)
                self.state.queue.drop_replica(location_id, replaced.logical_path)
            else:
                offline.append(location_id)
        return offline

    async def _reachable_under(self, node: FileNode, key: str, offline: list[str]) -> bool:
        """Whether a reachable copy of a just renamed file is really at `key` (one deleted
        behind the mount's back is marked missing): only then may its offline copies go."""
        for location_id, replica in node.replicas.items():
            if location_id in offline or replica.state != "present":
                continue
            if replica.staged is not None:
                return True  # the staging file is the content, uploaded under `key`
            local = self.state.local(location_id)
            if node.is_special and local is not None:
                if await self._thread(location_id, local.special_type, key) is not None:
                    return True
            else:
                try:
                    await self._thread(location_id, self.state.backend(location_id).stat, key)
                except FileNotFoundError:
                    pass
                else:
                    return True
            replica.state = "missing"
        return False

    @contextlib.contextmanager
    def _owing(self, location_ids: Iterable[str]) -> Iterator[None]:
        """While an unlink or rename that will owe these (offline) locations deletes runs,
        _bring_back must not take them back: it would miss entries not yet journaled."""
        owed = set(location_ids)
        for lid in owed:
            self.state.deferring[lid] = self.state.deferring.get(lid, 0) + 1
        try:
            yield
        finally:
            for lid in owed:
                self.state.deferring[lid] -= 1

    def _check_offline_copies(self, node: FileNode, holders: list[str]) -> list[str]:
        """The offline locations holding a file about to be renamed: their copies are
        deleted when they are back, so the current version must be reachable, and none of
        them may hold other content (a version only they have). EIO otherwise."""
        # A replica whose newest content is staged here is renamed here, whatever its store.
        offline = [lid for lid in holders if not self.state.usable(lid)
                   and not self.state.serves(lid, node.replicas[lid])]
        if not offline:
            return offline
        current = {node.replicas[lid].content_hash for lid in holders
                   if lid not in offline and node.replicas[lid].state == "present"}
        if not current or any(
                node.replicas[lid].state == "present"
                and (node.replicas[lid].content_hash is None
                     or node.replicas[lid].content_hash not in current) for lid in offline):
            log.error("%s: cannot rename while %s is offline (it may hold the only copy of "
                      "this version, or versions cannot be compared)", node.logical_path,
                      ", ".join(self.state.location(lid).name for lid in offline))
            raise fuse_error(errno.EIO)
        return offline
