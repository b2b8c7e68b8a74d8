"""rename of files and directories in every location holding them (a file stays where it
is, DESIGN.md §3), staged files included."""

from __future__ import annotations

import contextlib
import errno
import time
from typing import Any

import pyfuse3
import trio

from alicefs.fs.base import OperationsBase, fuse_error, fuse_errors, replica_holders
from alicefs.fs.namespace import (
    PROJECTS_VIEW,
    STATUS_VIEW,
    FileNode,
    location_view,
    logical_path_of,
    view_path,
)
from alicefs.media import UNKNOWN_MIME, MediaType, classify_name
from alicefs.transfer.copy import rename_within


class Renaming(OperationsBase):
    @fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        while True:
            view, vpath = self._child(parent_inode_old, name_old)
            is_dir = self._exists(view, vpath) == "dir"
            async with self.tree_lock.exclusive() if is_dir else self.tree_lock.shared():
                # Everything is checked again now; a name that became a directory meanwhile
                # needs the other lock.
                if (self._exists(*self._child(parent_inode_old, name_old)) == "dir") == is_dir:
                    await self._rename(parent_inode_old, name_old, parent_inode_new, name_new,
                                       flags)
                    return

    async def _rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                      name_new: bytes, flags: int) -> None:
        old_view, old = self._child(parent_inode_old, name_old)
        new_view, new = self._child(parent_inode_new, name_new)
        if old_view.startswith("l:") or new_view.startswith("l:") or STATUS_VIEW in (
                old_view, new_view) or "" in (old_view, new_view):
            raise fuse_error(errno.EROFS)
        if old_view != new_view:
            raise fuse_error(errno.EXDEV)  # between projects/ and types/, or two types
        self._removing(old_view, old)
        self._removing(new_view, new)
        kind = self._exists(old_view, old)
        if kind is None:
            raise fuse_error(errno.ENOENT)
        target_kind = self._exists(new_view, new)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise fuse_error(errno.EINVAL)
        if target_kind is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise fuse_error(errno.EEXIST)
        if old == new:
            return
        group = self.ns.link_group(old) if old_view == PROJECTS_VIEW else None
        if group is not None and new in group.names:
            return  # two names of one file: rename(2) does nothing
        if kind == "file" and "/" not in new:
            raise fuse_error(errno.EPERM)  # projects/ itself holds only projects (see create)
        if kind == "dir":
            await self._rename_dir(old, new, target_kind)
        else:
            if target_kind == "dir":
                raise fuse_error(errno.EISDIR)
            self._check_parent(parent_inode_new)
            await self._rename_file(old, new)

    async def _rename_file(self, old: str, new: str) -> None:
        """Rename in every location holding the file (it stays where it is, DESIGN.md §3)."""
        node = self.ns.files[old]
        self._check_names_kept(node, logical_path_of(new))
        while True:
            # The file it replaces is locked too: an upload of that one finishing meanwhile
            # would publish a version the renamed file's upload does not expect to replace.
            replaced = self.ns.files.get(new)
            nodes = sorted({id(n): n for n in (node, replaced) if n is not None}.values(),
                           key=id)
            async with contextlib.AsyncExitStack() as locks:
                for locked in nodes:
                    await locks.enter_async_context(self.lock_for(locked))
                if self._current_vpath(node) != old:
                    raise fuse_error(errno.ENOENT)  # renamed or removed while waiting for an upload
                if self.ns.files.get(new) is replaced:
                    await self._rename_file_locked(old, new, node)
                    break
            # Another file took the new name while it waited: again, with that one.
        for locked in nodes:
            self.forget_lock(locked)

    async def _rename_file_locked(self, old: str, new: str, node: FileNode) -> None:
        holders = replica_holders(node)
        offline = self._check_offline_copies(node, holders)
        # Unreachable stores whose staged replicas are renamed here owe a delete too.
        with self._owing(lid for lid in holders if not self.state.usable(lid)):
            await self._rename_file_replicas(old, new, node, holders, offline)

    async def _rename_file_replicas(self, old: str, new: str, node: FileNode,
                                    holders: list[str], offline: list[str]) -> None:
        old_logical, new_logical = node.logical_path, logical_path_of(new)
        self.forgotten.add(old)
        replaced = self.ns.files.get(new)
        requeue = []
        for location_id in holders:
            if location_id in offline:
                continue
            replica = node.replicas[location_id]
            local = self.state.local(location_id)
            backend = self.state.backend(location_id)
            if local is not None:
                await self._thread(location_id, local.rename, old_logical, new_logical)
            elif replica.staged is not None:
                over = replaced.replicas.get(location_id) if replaced is not None else None
                await self._rename_staged(location_id, node, old_logical, new_logical,
                                          over.change_token if over is not None else None)
                self.uploads.done((old, location_id))
                requeue.append(location_id)
            else:
                replica.change_token = await self._thread(location_id, _object_rename,
                                                          backend, old_logical, new_logical)
        # Only now that the file is under its new name where it is reachable: its copies on
        # offline locations go when they are back.
        await self._defer([(node, offline)])
        before = self.ns.views_of(old)
        for location_id in offline:
            del node.replicas[location_id]
        self.ns.reindex(old, before)
        if replaced is not None:  # after: its copies where this one has none now matter
            await self._defer([(replaced, await self._drop_replaced(node, replaced))])
            for replica in replaced.replicas.values():
                if replica.staged is not None:  # content nobody can reach any more
                    await trio.to_thread.run_sync(self.staging.discard, replica.staged)
                    replica.staged = None
        for location_id in node.replicas:
            self.state.queue.drop_replica(location_id, old_logical)
        media = classify_name(new_logical)
        if media.mime_type == UNKNOWN_MIME:
            media = MediaType(node.mime_type, node.category)  # the name says nothing new
        self.ns.rename_file(old, new, (media.category, media.mime_type))
        self.state.queue.drop_attrs(old_logical)
        self._record_attrs(node)
        node.ctime_ns = time.time_ns()
        for location_id, replica in node.replicas.items():
            if replica.state in ("present", "stale") and replica.staged is None:
                self.record(node, location_id)  # an older version goes with the name too
        for location_id in requeue:
            self._upload_when_closed((new, location_id), node)
        if node.created_here is not None and self.relocations is not None:
            await self.relocations.send(new)

    async def _rename_dir(self, old: str, new: str, target_kind: str | None) -> None:
        if target_kind == "file":
            raise fuse_error(errno.ENOTDIR)
        if target_kind == "dir" and self.ns.children(PROJECTS_VIEW, new):
            raise fuse_error(errno.ENOTEMPTY)
        if new.startswith(old + "/"):
            raise fuse_error(errno.EINVAL)

        def files_in_it() -> list[FileNode]:
            # Ordered by the key of their locks: two directory renames take shared locks in
            # the same order, so neither can hold one the other waits for.
            return sorted((self.ns.files[vp] for vp in self.ns.files_under(old)), key=id)

        if "\\" in new:
            for node in files_in_it():
                self._check_names_kept(node, logical_path_of(new))

        # Every file in it is locked: uploads, unlinks and renames of them finish before, or
        # start after, the rename.
        while True:
            nodes = files_in_it()
            async with contextlib.AsyncExitStack() as locks:
                for node in nodes:
                    await locks.enter_async_context(self.lock_for(node))
                if [id(n) for n in files_in_it()] == [id(n) for n in nodes]:
                    await self._rename_dir_locked(old, new, target_kind, nodes)
                    break
            # Files came or went while it waited: let go of everything and start again.
        for node in nodes:
            self.forget_lock(node)

    async def _rename_dir_locked(self, old: str, new: str, target_kind: str | None,
                                 nodes: list[FileNode]) -> None:
        offline = {id(node): self._check_offline_copies(node, replica_holders(node))
                   for node in nodes}
        with self._owing(lid for lids in offline.values() for lid in lids):
            await self._rename_dir_replicas(old, new, target_kind, nodes, offline)

    async def _rename_dir_replicas(self, old: str, new: str, target_kind: str | None,
                                   nodes: list[FileNode], offline: dict[int, list[str]]
                                   ) -> None:
        def renamed(node: FileNode) -> str:
            return logical_path_of(new + view_path(node.logical_path)[len(old):])

        requeue = []
        for location_id in list(self.state.backends):
            if not self.state.usable(location_id):
                continue
            local = self.state.local(location_id)
            if local is not None:
                # On every local location that has it on disk, shown or not: a directory a
                # copy left behind (see remove_dir) must not stay under the old name.
                await self._rename_local_dir(location_id, local, logical_path_of(old),
                                             logical_path_of(new), target_kind == "dir")
                continue
            if not self.ns.is_dir(location_view(location_id), old):
                continue
            for node in nodes:
                replica = node.replicas.get(location_id)
                if replica is None or replica.state == "missing":
                    continue
                if replica.staged is not None:
                    await self._rename_staged(location_id, node, node.logical_path,
                                              renamed(node), None)
                    self.uploads.done((view_path(node.logical_path), location_id))
                    requeue.append((view_path(renamed(node)), location_id, node))
                    continue
                try:
                    replica.change_token = await self._thread(
                        location_id, _object_rename, self.state.backend(location_id),
                        node.logical_path, renamed(node))
                except FileNotFoundError:
                    replica.state = "missing"  # gone from the store: nothing to move
        # Offline copies of files now under the new name where they are reachable go when
        # their location is back; a file whose reachable copy turned out to be gone keeps
        # them (the only copies left).
        deferred = [(node, offline[id(node)]) for node in nodes
                    if offline[id(node)] and await self._reachable_under(
                        node, renamed(node), offline[id(node)])]
        await self._defer(deferred, prune=logical_path_of(old))
        for node, location_ids in deferred:
            vpath = view_path(node.logical_path)
            before = self.ns.views_of(vpath)
            for location_id in location_ids:
                del node.replicas[location_id]
            self.ns.reindex(vpath, before)
        self.forgotten.update(view_path(node.logical_path) for node in nodes)
        for node in nodes:
            for location_id in node.replicas:
                self.state.queue.drop_replica(location_id, node.logical_path)
            self.state.queue.drop_attrs(node.logical_path)
        if target_kind == "dir":
            for view in list(self.ns.dirs):
                self.ns.remove_dir(view, new)
        self.ns.rename_dir(old, new)
        for node in nodes:
            self._record_attrs(node)
            for location_id, replica in node.replicas.items():
                if replica.state in ("present", "stale") and replica.staged is None:
                    self.record(node, location_id)
        for vpath, location_id, node in requeue:
            self._upload_when_closed((vpath, location_id), node)

    async def _rename_local_dir(self, location_id: str, local: Any, old: str, new: str,
                                over_dir: bool) -> None:
        """Rename a directory on one local location, if it is there; the empty directories
        a copy may have left at the new name there go first (an emptied directory shown at
        the new name is replaced, as rename(2) does)."""
        if over_dir or not self.ns.is_dir(PROJECTS_VIEW, new):
            with contextlib.suppress(FileNotFoundError):
                await self._thread(location_id, local.remove_dir, new)
        with contextlib.suppress(FileNotFoundError):
            await self._thread(location_id, local.rename, old, new)

    async def _rename_staged(self, location_id: str, node: FileNode, old_logical: str,
                             new_logical: str, replaces: str | None) -> None:
        """Rename an object-store file whose newer content still waits in a staging file:
        the upload goes to the new name (replacing the version `replaces` there, nothing
        else), and the old key goes away — when its store is back, if it is unreachable."""
        replica = node.replicas[location_id]
        reachable = self.state.usable(location_id)
        if not reachable and replica.change_token is not None:
            await self._defer([(node, [location_id])])
        await trio.to_thread.run_sync(self.staging.renamed, replica.staged, new_logical,
                                      replaces)
        # What was uploaded went to the old name: nothing of it counts under the new one.
        replica.change_token, replica.attempted_hash = replaces, None
        replica.unsent = True
        if reachable:
            with contextlib.suppress(FileNotFoundError):
                await self._thread(location_id, self.state.backend(location_id).delete,
                                   old_logical)


def _object_rename(backend: Any, old: str, new: str) -> str | None:
    """Rename on an object store (server-side); returns the new object's change token."""
    return rename_within(backend, old, new).info.change_token
