"""setattr: mode, owner, size and times, on local and object-store replicas."""

from __future__ import annotations

import errno
import functools
import os
import stat
import time

import pyfuse3
import trio
from blake3 import blake3

from alicefs.fs.base import Handle, OperationsBase, fuse_error, fuse_errors
from alicefs.fs.namespace import (
    PROJECTS_VIEW,
    STATUS_VIEW,
    FileNode,
    location_view,
    logical_path_of,
    view_path,
)


class Attributes(OperationsBase):
    @fuse_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        entry = self.ns.entry(inode)
        if entry is None:
            raise fuse_error(errno.ENOENT)
        if entry.view.startswith("l:") or entry.view in ("", STATUS_VIEW):
            raise fuse_error(errno.EROFS)
        if self._exists(entry.view, entry.vpath) == "dir":
            await self._set_dir_attrs(entry.vpath, attr, fields)
            return self._attrs(inode)
        view, _vpath, node = self._file(inode)
        if fields.update_size and view != PROJECTS_VIEW:
            raise fuse_error(errno.EROFS)
        now = time.time_ns()
        mode = stat.S_IMODE(attr.st_mode) if fields.update_mode else None
        owner = None
        if fields.update_uid or fields.update_gid:
            owner = (attr.st_uid if fields.update_uid else node.uid,
                     attr.st_gid if fields.update_gid else node.gid)
        primary = self.state.primary(node)
        times = None
        if fields.update_mtime or fields.update_atime:
            if fields.update_atime:
                node.atime_ns = attr.st_atime_ns
            shown = node.replicas[primary].mtime_ns if primary in node.replicas else now
            # What is not being set keeps its value (UTIME_OMIT), as on ext4.
            times = (node.atime_ns if node.atime_ns is not None else shown,
                     attr.st_mtime_ns if fields.update_mtime else shown)
        handle = self._handles.get(fh) if fh is not None else None
        cloud_truncate = (fields.update_size and primary is not None
                          and self.state.local(primary) is None)
        truncated_mtime = None  # what the disk says after a truncate of the primary
        if cloud_truncate:
            await self._truncate_object_replica(node, primary, attr.st_size, handle)
        for location_id, replica in node.replicas.items():
            local = self.state.local(location_id) if location_id in self.state.backends else None
            if local is None or replica.state == "missing" or not self.state.usable(location_id):
                continue
            size = attr.st_size if fields.update_size and location_id == primary else None
            if (mode, owner, times, size) == (None, None, None, None) or node.is_symlink:
                continue
            if node.is_special:
                await self._thread(location_id, functools.partial(
                    local.set_special_attrs, node.logical_path, mode=mode, owner=owner,
                    times_ns=times if location_id == primary else None))
                continue
            if size is not None and fh is not None and self._handles.get(fh) and \
                    self._handles[fh].fd is not None:
                await self._thread(location_id, os.ftruncate, self._handles[fh].fd, size)
                size = None
            mtime_ns = await self._thread(location_id, functools.partial(
                local.set_attrs, node.logical_path, mode=mode, owner=owner,
                times_ns=times if location_id == primary else None, size=size))
            if size is not None:
                truncated_mtime = mtime_ns
        if fields.update_size and primary is not None:
            self._touch(node, primary, attr.st_size)
            if truncated_mtime is not None:
                # As on disk: a move compares the two before it deletes a source.
                node.replicas[primary].mtime_ns = truncated_mtime
            if handle is not None:
                handle.dirty = True
                handle.last_stat = None
                handle.hasher = blake3() if attr.st_size == 0 else None
                handle.hashed_upto = 0
            elif cloud_truncate:
                self.uploads.request((view_path(node.logical_path), primary))
            else:
                self.record(node, primary)
        if mode is not None:
            node.mode = (node.mode & ~0o7777) | mode
        if owner is not None:
            node.uid, node.gid = owner
        if mode is not None or owner is not None or fields.update_atime:
            self._record_attrs(node)
        if times is not None and primary is not None:
            if self.state.local(primary) is None and not node.is_special:
                await self._set_object_times(node, primary, times, handle)
            node.replicas[primary].mtime_ns = times[1]
            for other in self._handles.values():
                if other.node is node:
                    other.last_stat = None  # `cp -p` sets times before close: keep them
            self.record(node, primary)
        node.ctime_ns = now
        return self._attrs(inode)

    async def _set_dir_attrs(self, vpath: str, attr: pyfuse3.EntryAttributes,
                             fields: pyfuse3.SetattrFields) -> None:
        """A directory's mode, owner and mtime: shown at once, and set on the directory in
        every local location that has it (where they last: a remount reads them there)."""
        node = self.ns.dirs[PROJECTS_VIEW][vpath]
        mode = stat.S_IMODE(attr.st_mode) if fields.update_mode else None
        owner = None
        if fields.update_uid or fields.update_gid:
            current = node.owner or (self.ns.uid, self.ns.gid)
            owner = (attr.st_uid if fields.update_uid else current[0],
                     attr.st_gid if fields.update_gid else current[1])
        times = None
        if fields.update_mtime or fields.update_atime:
            if fields.update_atime:
                node.atime_ns = attr.st_atime_ns
            mtime = attr.st_mtime_ns if fields.update_mtime else node.mtime_ns
            times = (node.atime_ns if node.atime_ns is not None else mtime, mtime)
        logical = logical_path_of(vpath)
        for location_id in self.state.backends:
            local = self.state.local(location_id)
            if (local is None or not self.state.usable(location_id)
                    or vpath not in self.ns.dirs.get(location_view(location_id), {})):
                continue
            await self._thread(location_id, functools.partial(
                local.set_dir_attrs, logical, mode=mode, owner=owner, times_ns=times))
        for view in [PROJECTS_VIEW, *(location_view(lid) for lid in self.state.backends)]:
            shown = self.ns.dirs.get(view, {}).get(vpath)
            if shown is None:
                continue
            if mode is not None:
                shown.mode = stat.S_IFDIR | mode
            if owner is not None:
                shown.owner = owner
            if times is not None:
                shown.atime_ns, shown.mtime_ns = times

    async def _set_object_times(self, node: FileNode, location_id: str,
                                times: tuple[int, int], handle: Handle | None) -> None:
        """The mtime of an S3/GCS file lives in its object's metadata: set on the staging
        file (a release reads it back from there), uploaded with the content. An object
        with nothing staged is staged for it, so the new mtime is published like any
        change."""
        replica = node.replicas[location_id]
        if replica.staged is None:
            replica.staged = await self._stage(location_id, node, truncate=False)
        await trio.to_thread.run_sync(functools.partial(os.utime, replica.staged, ns=times))
        replica.unsent = True
        node.version += 1  # an upload running now has the old mtime: another one follows
        if handle is None or handle.staged is None:
            self._upload_when_closed((view_path(node.logical_path), location_id), node)

    async def _truncate_object_replica(self, node: FileNode, location_id: str, size: int,
                                       handle: Handle | None) -> None:
        """Truncate an S3/GCS replica: its staging file (the open handle's, or one made now),
        uploaded like any other change."""
        replica = node.replicas[location_id]
        if handle is not None and handle.fd is not None and handle.staged is not None:
            await trio.to_thread.run_sync(os.ftruncate, handle.fd, size)
            replica.unsent = True
            return
        if replica.staged is None:
            replica.staged = await self._stage(location_id, node, truncate=size == 0)
        await trio.to_thread.run_sync(os.truncate, replica.staged, size)
        replica.unsent = True


class DirectoryTimes(OperationsBase):
    """A directory's mtime and ctime move when an entry is added to it, removed from it or
    renamed in it, as on disk (make, rsync and backup tools look at them)."""

    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo,
                                                           pyfuse3.EntryAttributes]:
        answer = await super().create(parent_inode, name, mode, flags, ctx)
        self._entries_changed(parent_inode)
        return answer

    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        answer = await super().mkdir(parent_inode, name, mode, ctx)
        self._entries_changed(parent_inode)
        return answer

    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        answer = await super().symlink(parent_inode, name, target, ctx)
        self._entries_changed(parent_inode)
        return answer

    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        answer = await super().mknod(parent_inode, name, mode, rdev, ctx)
        self._entries_changed(parent_inode)
        return answer

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await super().unlink(parent_inode, name, ctx)
        self._entries_changed(parent_inode)

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await super().rmdir(parent_inode, name, ctx)
        self._entries_changed(parent_inode)

    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        await super().rename(parent_inode_old, name_old, parent_inode_new, name_new, flags,
                             ctx)
        self._entries_changed(parent_inode_old)
        self._entries_changed(parent_inode_new)

    def _entries_changed(self, inode: int) -> None:
        entry = self.ns.entry(inode)
        if entry is None:
            return
        now = time.time_ns()
        for view in {entry.view, PROJECTS_VIEW}:
            node = self.ns.dirs.get(view, {}).get(entry.vpath)
            if node is not None:
                node.mtime_ns = now
