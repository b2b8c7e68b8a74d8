"""Lookups, attributes and directory listings, answered from the in-memory namespace."""

from __future__ import annotations

import errno
import sys

import pyfuse3

from alicefs.backends.base import MAX_NAME_BYTES
from alicefs.fs.base import STATUS_FILES, OperationsBase, fuse_error, fuse_errors
from alicefs.fs.namespace import PROJECTS_VIEW, ROOT_INODE, STATUS_VIEW, location_view, type_view
from alicefs.layout import LOCATIONS, PROJECTS, STATUS_DIR, TYPES

FS_ENCODING = sys.getfilesystemencoding()  # as os.fsencode, without its call per name


class Lookups(OperationsBase):
    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
                     ) -> pyfuse3.EntryAttributes:
        if name == b".":
            return self._attrs(parent_inode)
        if name == b"..":
            return self._attrs(self._parent_inode(parent_inode))
        view, vpath = self._child(parent_inode, name)
        if self._exists(view, vpath) is None:
            raise fuse_error(errno.ENOENT)
        return self._attrs(self.ns.inode_of(view, vpath))

    def _parent_inode(self, inode: int) -> int:
        entry = self.ns.entry(inode)
        if entry is None or (entry.view == "" and entry.vpath == ""):
            return ROOT_INODE
        if entry.vpath == "":
            if entry.view.startswith("t:"):
                return self.ns.inode_of("", TYPES)
            if entry.view.startswith("l:"):
                return self.ns.inode_of("", LOCATIONS)
            return ROOT_INODE
        if entry.view == "":
            return ROOT_INODE
        return self.ns.inode_of(entry.view, entry.vpath.rpartition("/")[0])

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return self._attrs(inode)

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        if self._exists(*self._entry_key(inode)) != "dir":
            raise fuse_error(errno.ENOTDIR)
        # The listing is taken once per open directory: readdir is called once per buffer
        # full, and rebuilding a 60,000-entry listing each time made it quadratic.
        entries: list[tuple[str, int]] = [(".", inode), ("..", self._parent_inode(inode))]
        entries += [(name, self.ns.inode_of(view, vpath))
                    for name, view, vpath in self._listing(inode)]
        fh = self._next_dir_fh
        self._next_dir_fh += 1
        self._dir_listings[fh] = entries
        return fh

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        self._dir_listings.pop(fh, None)

    def _entry_key(self, inode: int) -> tuple[str, str]:
        entry = self.ns.entry(inode)
        if entry is None:
            raise fuse_error(errno.ENOENT)
        return entry.view, entry.vpath

    def _listing(self, inode: int) -> list[tuple[str, str, str]]:
        """(name, view, vpath) of every entry of a directory."""
        view, vpath = self._entry_key(inode)
        if view == "":
            if vpath == "":
                return [(PROJECTS, PROJECTS_VIEW, ""), (TYPES, "", TYPES),
                        (LOCATIONS, "", LOCATIONS), (STATUS_DIR, STATUS_VIEW, "")]
            if vpath == TYPES:
                return [(c, type_view(c), "") for c in self.ns.top_level(TYPES) or []]
            return [(name, location_view(lid), "") for lid, name in self.ns.locations.items()]
        if view == STATUS_VIEW:
            return [(name, STATUS_VIEW, name) for name in STATUS_FILES]
        prefix = f"{vpath}/" if vpath else ""
        return [(name, view, prefix + name) for name in self.ns.children(view, vpath)]

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self._dir_listings.get(fh)
        if entries is None:
            raise fuse_error(errno.EBADF)
        attr = pyfuse3.EntryAttributes()  # readdir_reply copies it: one for every entry
        fill, reply = self._fill_attrs, pyfuse3.readdir_reply
        for index in range(start_id, len(entries)):
            name, inode = entries[index]
            try:
                fill(attr, inode)
            except pyfuse3.FUSEError:
                continue  # removed while listing
            if not reply(token, name.encode(FS_ENCODING, "surrogateescape"), attr, index + 1):
                return

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        _, _, node = self._file(inode)
        if node.symlink_target is None:
            raise fuse_error(errno.EINVAL)
        return node.symlink_target

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        # Locations on one filesystem count once.
        by_device = {self.state.devices.get(lid, lid): s
                     for lid, s in self.state.free_space.items()
                     if s is not None and self.state.usable(lid)}
        spaces = list(by_device.values())
        block = 4096
        data.f_bsize = data.f_frsize = block
        data.f_blocks = sum(s.total_bytes for s in spaces) // block
        data.f_bfree = data.f_bavail = sum(s.free_bytes for s in spaces) // block
        data.f_files = len(self.ns.files) + 1_000_000
        data.f_ffree = data.f_favail = 1_000_000
        data.f_namemax = MAX_NAME_BYTES
        return data
