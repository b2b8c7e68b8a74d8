"""create, mkdir and symlink: new entries, placed by the rules."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from typing import Any

import pyfuse3
import trio
from blake3 import blake3

from alicefs.fs.base import Handle, OperationsBase, fuse_error, fuse_errors
from alicefs.fs.namespace import PROJECTS_VIEW, FileNode, Replica, location_view, logical_path_of
from alicefs.media import classify_name
from alicefs.rules import LocationStatus


class Creating(OperationsBase):
    @fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo,
                                                           pyfuse3.EntryAttributes]:
        async with self.tree_lock.shared():
            return await self._create(parent_inode, name, mode, ctx)

    async def _create(self, parent_inode: int, name: bytes, mode: int,
                      ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo,
                                                            pyfuse3.EntryAttributes]:
        vpath = self._new_file_name(parent_inode, name)
        logical = logical_path_of(vpath)
        location_id = self._place(logical, 0)
        if location_id is None:
            if "\\" in logical and self._place(logical.replace("\\", "_"), 0) is not None:
                raise fuse_error(errno.EINVAL)  # only object stores could take it: see _keeps_name
            raise fuse_error(errno.ENOSPC)
        file_mode = stat.S_IMODE(mode) & ~ctx.umask
        handle = Handle(0, vpath, location_id, writable=True, dirty=True, created=True,
                        hasher=blake3())
        local = self.state.local(location_id)
        if local is not None:
            handle.fd = await self._thread(location_id, self._create_local, local, logical,
                                           file_mode, ctx)
        else:
            handle.staged = await trio.to_thread.run_sync(self.staging.create, location_id,
                                                          logical)
            handle.fd = await trio.to_thread.run_sync(os.open, str(handle.staged),
                                                      os.O_RDWR | os.O_CLOEXEC)
        now = time.time_ns()
        media = classify_name(logical)
        node = FileNode(logical, {location_id: Replica(0, now, staged=handle.staged,
                                                       unsent=handle.staged is not None)},
                        media.category, media.mime_type,
                        mode=stat.S_IFREG | file_mode, uid=ctx.uid, gid=ctx.gid, ctime_ns=now,
                        created_here=location_id)
        self.ns.add_file(node)
        self._record_attrs(node)
        inode = self.ns.inode_of(PROJECTS_VIEW, vpath)
        handle.inode = inode
        handle.node = node
        self._cached_version[inode] = node.version
        return pyfuse3.FileInfo(fh=self._new_handle(handle)), self._attrs(inode)

    @staticmethod
    def _create_local(local: Any, logical: str, mode: int, ctx: pyfuse3.RequestContext) -> int:
        fd = local.create_fd(logical, mode)
        owner = _owner_if_root(ctx)
        if owner is not None:
            os.fchown(fd, *owner)
        return fd

    def _new_name(self, parent_inode: int, name: bytes) -> str:
        """The projects path for a new entry `name` in `parent_inode`, refused unless the
        view is writable, the parent exists and the name is free."""
        view, vpath = self._child(parent_inode, name)
        self._writable_view(view)
        if self._exists(view, vpath) is not None:
            raise fuse_error(errno.EEXIST)
        self._check_parent(parent_inode)
        return vpath

    def _new_file_name(self, parent_inode: int, name: bytes) -> str:
        """As _new_name, for a file or link: `projects/` itself holds only projects
        (directories); files at a location's root live in `projects/_unsorted/`."""
        vpath = self._new_name(parent_inode, name)
        if "/" not in vpath:
            raise fuse_error(errno.EPERM)
        return vpath

    def _check_parent(self, parent_inode: int) -> None:
        view, vpath = self._entry_key(parent_inode)
        if view == PROJECTS_VIEW and vpath == "":
            return  # a new project
        if self._exists(view, vpath) != "dir":
            raise fuse_error(errno.ENOENT)

    def _dir_location(self, vpath: str) -> str | None:
        """Where a new directory or link under `vpath` goes: the highest-priority writable
        local location that already holds the parent, else the highest-priority one."""
        parent = vpath.rpartition("/")[0]
        candidates = [loc.location_id for loc in self.state.locations
                      if self.state.usable(loc.location_id)
                      and loc.status is LocationStatus.ACTIVE
                      and self.state.local(loc.location_id) is not None]
        holding = [lid for lid in candidates if parent == "" or self.ns.is_dir(
            location_view(lid), parent)]
        chosen = holding or candidates
        return chosen[0] if chosen else None

    @fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        async with self.tree_lock.shared():
            return await self._mkdir(parent_inode, name, mode, ctx)

    async def _mkdir(self, parent_inode: int, name: bytes, mode: int,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        vpath = self._new_name(parent_inode, name)
        dir_mode = stat.S_IMODE(mode) & ~ctx.umask
        location_id = self._dir_location(vpath)
        owner = (ctx.uid, ctx.gid)
        if location_id is not None:
            local = self.state.local(location_id)
            try:
                await self._thread(location_id, local.make_dir, logical_path_of(vpath),
                                   dir_mode, _owner_if_root(ctx))
            except FileExistsError:
                # On disk but not yet seen by a scan (directories hold no catalog rows).
                self.ns.make_dir(location_view(location_id), vpath, dir_mode)
                self.ns.make_dir(PROJECTS_VIEW, vpath, dir_mode)
                raise
            self.ns.make_dir(location_view(location_id), vpath, dir_mode, owner)
        self.ns.make_dir(PROJECTS_VIEW, vpath, dir_mode, owner)
        return self._attrs(self.ns.inode_of(PROJECTS_VIEW, vpath))

    @fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        async with self.tree_lock.shared():
            return await self._symlink(parent_inode, name, target, ctx)

    async def _symlink(self, parent_inode: int, name: bytes, target: bytes,
                       ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        vpath = self._new_file_name(parent_inode, name)
        location_id = self._dir_location(vpath)
        if location_id is None:
            raise fuse_error(errno.EPERM)  # symbolic links need a local location
        logical = logical_path_of(vpath)
        local = self.state.local(location_id)
        await self._thread(location_id, local.make_symlink, logical, os.fsdecode(target),
                           _owner_if_root(ctx))
        now = time.time_ns()
        node = FileNode(logical, {location_id: Replica(len(target), now)}, "other",
                        "inode/symlink", mode=stat.S_IFLNK | 0o777, uid=ctx.uid, gid=ctx.gid,
                        ctime_ns=now, symlink_target=target)
        self.ns.add_file(node)
        self.record(node, location_id)
        self._record_attrs(node)
        return self._attrs(self.ns.inode_of(PROJECTS_VIEW, vpath))

    @fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """A FIFO, socket (bind) or device node, made in the local location a new link
        would go to (it has no content to place) and cataloged like a link; a regular file
        (mknod of S_IFREG) is an empty file, made as create makes one."""
        async with self.tree_lock.shared():
            if stat.S_IFMT(mode) == stat.S_IFREG:
                info, attrs = await self._create(parent_inode, name, mode, ctx)
                await self.release(info.fh)
                return attrs
            return await self._mknod(parent_inode, name, mode, rdev, ctx)

    async def _mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                     ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        kind = stat.S_IFMT(mode)
        if kind not in (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
            raise fuse_error(errno.EINVAL)
        vpath = self._new_file_name(parent_inode, name)
        location_id = self._dir_location(vpath)
        if location_id is None:
            raise fuse_error(errno.EPERM)  # only local locations hold special files
        logical = logical_path_of(vpath)
        file_mode = kind | (stat.S_IMODE(mode) & ~ctx.umask)
        if kind not in (stat.S_IFCHR, stat.S_IFBLK):
            rdev = 0
        local = self.state.local(location_id)
        await self._thread(location_id, local.make_special, logical, file_mode, rdev,
                           _owner_if_root(ctx))
        now = time.time_ns()
        node = FileNode(logical, {location_id: Replica(0, now)}, "other", "inode/special",
                        mode=file_mode, uid=ctx.uid, gid=ctx.gid, ctime_ns=now, rdev=rdev)
        self.ns.add_file(node)
        self.record(node, location_id)
        self._record_attrs(node)
        return self._attrs(self.ns.inode_of(PROJECTS_VIEW, vpath))

    @fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        """Another name for a file whose copies are all in local locations: linked in each
        of them, and the same inode in `projects/` (EXDEV when a copy is in S3/GCS or on a
        location offline now, as between filesystems that cannot link)."""
        async with self.tree_lock.shared():
            return await self._link(inode, new_parent_inode, new_name)

    async def _link(self, inode: int, new_parent_inode: int, new_name: bytes
                    ) -> pyfuse3.EntryAttributes:
        view, vpath, node = self._file(inode)
        new_view, _ = self._child(new_parent_inode, new_name)
        self._writable_view(new_view)
        if view != PROJECTS_VIEW:
            raise fuse_error(errno.EXDEV)
        new_vpath = self._new_file_name(new_parent_inode, new_name)
        new_logical = logical_path_of(new_vpath)
        # Under the file's lock: a move of it (migration, re-placement) finishes first.
        async with self.lock_for(node):
            if self._current_vpath(node) != vpath:
                raise fuse_error(errno.ENOENT)  # renamed or removed while it waited
            if self._exists(PROJECTS_VIEW, new_vpath) is not None:
                raise fuse_error(errno.EEXIST)
            holders = [lid for lid, r in node.replicas.items() if r.state != "missing"]
            if not holders or any(self.state.local(lid) is None or not self.state.usable(lid)
                                  or node.replicas[lid].staged is not None
                                  for lid in holders):
                raise fuse_error(errno.EXDEV)
            backing: dict[str, int] = {}
            try:
                for location_id in holders:
                    backing[location_id] = await self._thread(
                        location_id, self.state.local(location_id).link, node.logical_path,
                        new_logical)
            except BaseException:
                with trio.CancelScope(shield=True):
                    for location_id in backing:
                        await self._thread(location_id, _remove_name,
                                           self.state.local(location_id), new_logical,
                                           node.is_special)
                raise
            now = time.time_ns()
            if stat.S_ISREG(node.mode):
                media = classify_name(new_logical)
                category, mime_type = media.category, media.mime_type
            else:
                category, mime_type = node.category, node.mime_type
            twin = FileNode(new_logical, {lid: node.replicas[lid].copy()
                                          for lid in holders},
                            category, mime_type, node.tags, node.quality, node.mode, node.uid,
                            node.gid, now, node.symlink_target, node.rdev, node.atime_ns,
                            node.version)
            node.ctime_ns = now  # its link count changed
            self.ns.add_file(twin)
            self.ns.add_link(vpath, new_vpath, backing)
            for location_id in holders:
                self.record(node, location_id)
            self._record_attrs(node)
            if node.tags or node.quality is not None:
                self._record_metadata(node)
        return self._attrs(inode)


def _remove_name(local: Any, key: str, special: bool) -> None:
    """Undo a hard link just made at `key` (the file keeps its other names)."""
    with contextlib.suppress(FileNotFoundError):
        (local.remove_special if special else local.delete)(key)


def _owner_if_root(ctx: pyfuse3.RequestContext) -> tuple[int, int] | None:
    """The caller's (uid, gid) for a new file or directory, when the mount can give it (it
    runs as root) and it differs from the mount's own."""
    if os.geteuid() != 0 or (ctx.uid, ctx.gid) == (os.geteuid(), os.getegid()):
        return None
    return ctx.uid, ctx.gid
