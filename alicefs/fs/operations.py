"""The pyfuse3 request handlers: every FUSE operation on the namespace and the replicas.

Metadata requests (lookup, getattr, readdir, getxattr) are answered from the in-memory
namespace. Data goes to the best replica: local files through descriptors opened in worker
threads, object-store replicas through the backend's ranged reads, and writes to object stores
through a staging file uploaded on release. No handler lets anything but a FUSEError escape:
an OSError becomes its errno, anything else is logged and becomes EIO.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import posixpath
import stat
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import pyfuse3
import trio
from blake3 import blake3

from alicefs.backends.base import (
    MAX_NAME_BYTES,
    LocationUnavailableError,
    ObjectInfo,
    RetriesExhaustedError,
    WriteResult,
)
from alicefs.catalog import FileMeta, PosixAttrs
from alicefs.catalog import Replica as CatalogReplica
from alicefs.fs.chunk_cache import CHUNK_SIZE, ChunkCache
from alicefs.fs.migration import MountCoordinator
from alicefs.fs.namespace import (
    PROJECTS_VIEW,
    ROOT_INODE,
    STATUS_VIEW,
    FileNode,
    Replica,
    location_view,
    logical_path_of,
    type_view,
    view_path,
)
from alicefs.fs.staging import Snapshot, StagedFile, Staging
from alicefs.fs.state import MountState
from alicefs.fs.uploads import UploadQueue
from alicefs.layout import LOCATIONS, PROJECTS, STATUS_DIR, TYPES, conflict_name
from alicefs.media import CATEGORIES, UNKNOWN_MIME, MediaType, classify_name
from alicefs.migrate.plan import MigrationPlan, PlannedTransfer
from alicefs.migrate.run import run_plan
from alicefs.model import LocationType
from alicefs.rules import (
    FileAttrs,
    LocationStatus,
    PlacementReason,
    SpaceInfo,
    has_room,
    target_location,
)
from alicefs.scan import SIDECAR_EXTENSION, is_sidecar
from alicefs.transfer.copy import rename_within
from alicefs.transfer.journal import DEFERRED_DELETE, HANDOVER

log = logging.getLogger(__name__)

T = TypeVar("T")

XATTR_TAGS = b"user.alicefs.tags"
XATTR_QUALITY = b"user.alicefs.quality"
XATTR_LOCATIONS = b"user.alicefs.locations"
XATTR_SYNC = b"user.alicefs.sync"
XATTR_XDG_TAGS = b"user.xdg.tags"
XATTR_BALOO_RATING = b"user.baloo.rating"
WRITABLE_XATTRS = (XATTR_TAGS, XATTR_QUALITY, XATTR_XDG_TAGS, XATTR_BALOO_RATING)
ALL_XATTRS = (*WRITABLE_XATTRS, XATTR_LOCATIONS, XATTR_SYNC)
STATUS_FILES = ("locations.json", "sync.json", "queue.json")
READ_AHEAD_CHUNKS = 4
UPLOAD_WORKERS = 4
MAX_CONFLICT_NAMES = 100  # conflict copies of one file made in the same second


def fuse_errors(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Let only FUSEErrors out of a handler (DESIGN.md §3)."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return await method(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except OSError as exc:
            if exc.errno is None:
                log.exception("%s failed", method.__name__)
                raise pyfuse3.FUSEError(errno.EIO) from None
            if exc.errno == errno.EIO:
                log.error("%s: %s", method.__name__, exc)
            raise pyfuse3.FUSEError(exc.errno) from None
        except Exception:
            log.exception("%s failed unexpectedly", method.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _fail(code: int) -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(code)


@dataclass
class Handle:
    """An open file."""

    inode: int
    vpath: str  # where it was opened (the file may be renamed while open: see `node`)
    location_id: str | None
    fd: int | None = None
    writable: bool = False
    dirty: bool = False
    staged: Path | None = None  # object-store write: the local file uploaded on release
    status: bytes | None = None  # contents of a .alicefs status file
    hasher: Any = None  # BLAKE3 of the content while writes are sequential from 0
    hashed_upto: int = 0
    created: bool = False
    # (size, mtime_ns, inode) of the backing file after the last write, taken in the same
    # worker-thread hop as the write, so release need not wait for another one; and the
    # file's version then (a release comes after close(2) returned: if another handle wrote
    # since, this stat is older than what the namespace shows)
    last_stat: tuple[int, int, int] | None = None
    stat_version: int = -1
    next_offset: int = 0  # where a sequential reader reads next: read-ahead when it does
    node: FileNode | None = None  # the file itself, whatever it is called now
    # False once the backing filesystem refused a non-blocking read (RWF_NOWAIT): every
    # read of this handle then goes to a worker thread
    page_cache_reads: bool = True


@dataclass
class AliceOperations(pyfuse3.Operations):
    state: MountState
    relocations: trio.MemorySendChannel[str] | None = None  # new files to re-place
    # descriptors to close in the background (FUSE ignores what release returns, and a
    # close on a network filesystem may take a while); None: closed before release returns
    closer: trio.MemorySendChannel[tuple[str | None, int]] | None = None
    # object-store chunks to fetch ahead of a sequential reader; None: no read-ahead
    prefetch: trio.MemorySendChannel[tuple[str, str, str, int]] | None = None
    _handles: dict[int, Handle] = field(default_factory=dict)
    _next_fh: int = 1
    _cached_version: dict[int, int] = field(default_factory=dict)
    # staging files being opened (a worker-thread hop away from having a handle): an upload
    # ending meanwhile must not let them go
    _pinned: Counter[Path] = field(default_factory=Counter)
    _prefetching: set[str] = field(default_factory=set)
    _dir_listings: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    _next_dir_fh: int = 1
    # one lock per file while its staged upload, rename or unlink runs (id(node) -> lock)
    _node_locks: dict[int, trio.Lock] = field(default_factory=dict)
    # projects paths removed or renamed away since the scan in progress began: a scan's
    # view of the catalog must not bring them back
    forgotten: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        super().__init__()
        self.staging = Staging(self.state.settings.cache_dir / "staging")
        # Staged S3/GCS files waiting for upload; its workers run in the mount's nursery.
        self.uploads = UploadQueue(UPLOAD_WORKERS, self.state.usable)
        # How transfers (re-placement here, migration sent to the mount or on its
        # schedule) keep the files they move consistent with what the mount serves.
        self.mover = MountCoordinator(self)
        ns = self.state.namespace
        # Fixed inodes, allocated up front so they are the same on every mount.
        for view, vpath in (("", ""), (PROJECTS_VIEW, ""), ("", TYPES), ("", LOCATIONS),
                            (STATUS_VIEW, "")):
            ns.inode_of(view, vpath)

    # -- helpers ------------------------------------------------------------------------

    @property
    def ns(self):
        return self.state.namespace

    async def _thread(self, location_id: str | None, func: Callable[..., T], *args: Any) -> T:
        limiter = self.state.backends[location_id].limiter if location_id else None
        return await trio.to_thread.run_sync(func, *args, limiter=limiter)

    def _child(self, parent_inode: int, name: bytes) -> tuple[str, str]:
        """(view, vpath) of `name` inside the directory `parent_inode`."""
        entry = self.ns.entry(parent_inode)
        if entry is None:
            raise _fail(errno.ENOENT)
        text = os.fsdecode(name)
        if len(name) > MAX_NAME_BYTES:
            raise _fail(errno.ENAMETOOLONG)
        if entry.view == "":
            if entry.vpath == "":
                fixed = {PROJECTS: (PROJECTS_VIEW, ""), TYPES: ("", TYPES),
                         LOCATIONS: ("", LOCATIONS), STATUS_DIR: (STATUS_VIEW, "")}
                if text in fixed:
                    return fixed[text]
            elif entry.vpath == TYPES and text in CATEGORIES:
                return type_view(text), ""
            elif entry.vpath == LOCATIONS:
                location_id = self.ns.location_id_named(text)
                if location_id is not None:
                    return location_view(location_id), ""
            raise _fail(errno.ENOENT)
        if entry.view == STATUS_VIEW:
            return STATUS_VIEW, text
        return entry.view, f"{entry.vpath}/{text}" if entry.vpath else text

    def _exists(self, view: str, vpath: str) -> str | None:
        """'dir', 'file' or None."""
        if view == "":
            return "dir"
        if view == STATUS_VIEW:
            return "dir" if vpath == "" else ("file" if vpath in STATUS_FILES else None)
        if self.ns.is_dir(view, vpath):
            return "dir"
        node = self.ns.files.get(vpath)
        if node is None:
            return None
        if view == PROJECTS_VIEW:
            return "file"
        if view.startswith("t:"):
            return "file" if type_view(node.category) == view else None
        replica = node.replicas.get(view[2:])
        return "file" if replica is not None and replica.state != "missing" else None

    def _file(self, inode: int) -> tuple[str, str, FileNode]:
        entry = self.ns.entry(inode)
        if entry is None or entry.view in ("", STATUS_VIEW):
            raise _fail(errno.ENOENT if entry is None else errno.EISDIR)
        node = self.ns.files.get(entry.vpath)
        if node is None or self._exists(entry.view, entry.vpath) != "file":
            raise _fail(errno.ENOENT)
        return entry.view, entry.vpath, node

    def _attrs(self, inode: int) -> pyfuse3.EntryAttributes:
        entry = self.ns.entry(inode)
        if entry is None:
            raise _fail(errno.ENOENT)
        kind = self._exists(entry.view, entry.vpath)
        if kind is None:
            raise _fail(errno.ENOENT)
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = inode
        attr.entry_timeout = self.state.options.entry_timeout
        attr.attr_timeout = self.state.options.attr_timeout
        attr.st_uid, attr.st_gid = self.ns.uid, self.ns.gid
        attr.st_blksize = 128 * 1024
        read_only = entry.view.startswith("l:") or entry.view in ("", STATUS_VIEW)
        if kind == "dir":
            node = self.ns.dirs.get(entry.view, {}).get(entry.vpath)
            if node is not None and node.owner is not None:
                attr.st_uid, attr.st_gid = node.owner
            mode = node.mode if node else stat.S_IFDIR | 0o755
            attr.st_mode = mode & ~0o222 if read_only else mode
            attr.st_nlink = 2
            attr.st_size = 4096
            mtime = node.mtime_ns if node else self.ns.now_ns
            attr.st_mtime_ns = attr.st_ctime_ns = attr.st_atime_ns = mtime
            return attr
        if entry.view == STATUS_VIEW:
            attr.st_mode = stat.S_IFREG | 0o444
            attr.st_nlink = 1
            attr.st_size = len(self._status(entry.vpath))
            attr.st_mtime_ns = attr.st_ctime_ns = attr.st_atime_ns = time.time_ns()
            return attr
        node = self.ns.files[entry.vpath]
        if entry.view.startswith("l:"):
            replica = node.replicas[entry.view[2:]]
        else:
            primary = self.state.primary(node)
            replica = node.replicas[primary] if primary else next(iter(node.replicas.values()))
        attr.st_mode = node.mode & ~0o222 if read_only and not node.is_symlink else node.mode
        attr.st_nlink = 1
        attr.st_uid, attr.st_gid = node.uid, node.gid
        attr.st_size = len(node.symlink_target) if node.is_symlink else replica.size
        attr.st_blocks = (attr.st_size + 511) // 512
        attr.st_mtime_ns = attr.st_atime_ns = replica.mtime_ns
        attr.st_ctime_ns = max(node.ctime_ns, replica.mtime_ns)
        return attr

    def _current_vpath(self, node: FileNode) -> str | None:
        """The file's projects path, or None once it was unlinked or replaced."""
        vpath = view_path(node.logical_path)
        return vpath if self.ns.files.get(vpath) is node else None

    @contextlib.contextmanager
    def _pin(self, staged: Path) -> Iterator[None]:
        self._pinned[staged] += 1
        try:
            yield
        finally:
            self._pinned[staged] -= 1
            if not self._pinned[staged]:
                del self._pinned[staged]

    def _staging_in_use(self, staged: Path) -> bool:
        """Whether a handle writes the staging file, or an open of it is under way (the
        kernel may send the next OPEN before the last RELEASE): then it must not go."""
        return staged in self._pinned or any(h.staged == staged for h in self._handles.values())

    def lock_for(self, node: FileNode) -> trio.Lock:
        return self._node_locks.setdefault(id(node), trio.Lock())

    def forget_lock(self, node: FileNode) -> None:
        lock = self._node_locks.get(id(node))
        if lock is not None and not lock.locked() and not lock.statistics().tasks_waiting:
            del self._node_locks[id(node)]

    def open_for_writing(self, node: FileNode) -> bool:
        return any(h.node is node and h.writable for h in self._handles.values())

    def read_from(self, node: FileNode, location_id: str) -> bool:
        """Whether a handle of `node` reads its replica at `location_id`."""
        return any(h.node is node and h.location_id == location_id
                   for h in self._handles.values())

    def busy_paths(self) -> set[str]:
        """Projects paths of files open for writing, or waiting for an upload."""
        busy = {view_path(h.node.logical_path) for h in self._handles.values()
                if h.writable and h.node is not None}
        return busy | self.uploads.paths() | self.forgotten

    def _writable_view(self, view: str) -> None:
        if view != PROJECTS_VIEW:
            raise _fail(errno.EROFS)

    def _touch(self, node: FileNode, location_id: str, size: int | None = None) -> None:
        """Content of the replica at `location_id` changed: the others are now stale."""
        now = time.time_ns()
        replica = node.replicas[location_id]
        if size is not None:
            replica.size = size
        replica.mtime_ns = now
        replica.content_hash = None
        if replica.staged is not None:
            replica.unsent = True
        node.ctime_ns = now
        node.version += 1
        for other_id, other in node.replicas.items():
            if other_id != location_id and other.state == "present":
                other.state = "stale"
                self.state.queue.mark_stale(other_id, node.logical_path)

    # -- lookups ------------------------------------------------------------------------

    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
                     ) -> pyfuse3.EntryAttributes:
        if name == b".":
            return self._attrs(parent_inode)
        if name == b"..":
            return self._attrs(self._parent_inode(parent_inode))
        view, vpath = self._child(parent_inode, name)
        if self._exists(view, vpath) is None:
            raise _fail(errno.ENOENT)
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
            raise _fail(errno.ENOTDIR)
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
            raise _fail(errno.ENOENT)
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
            raise _fail(errno.EBADF)
        for index in range(start_id, len(entries)):
            name, inode = entries[index]
            try:
                attr = self._attrs(inode)
            except pyfuse3.FUSEError:
                continue  # removed while listing
            if not pyfuse3.readdir_reply(token, os.fsencode(name), attr, index + 1):
                return

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        _, _, node = self._file(inode)
        if node.symlink_target is None:
            raise _fail(errno.EINVAL)
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

    # -- open, read, write ----------------------------------------------------------------

    def _new_handle(self, handle: Handle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        entry = self.ns.entry(inode)
        if entry is None:
            raise _fail(errno.ENOENT)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if entry.view == STATUS_VIEW:
            if writable:
                raise _fail(errno.EROFS)
            content = self._status(entry.vpath)
            fh = self._new_handle(Handle(inode, entry.vpath, None, status=content))
            return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)
        view, vpath, node = self._file(inode)
        if writable:
            self._writable_view(view)
        location_id = view[2:] if view.startswith("l:") else self.state.primary(node)
        if location_id is None or not self.state.serves(location_id,
                                                         node.replicas.get(location_id)):
            log.error("%s: no reachable location holds the current version", vpath)
            raise _fail(errno.EIO)
        handle = Handle(inode, vpath, location_id, writable=writable, node=node)
        if writable:
            node.version += 1  # a move of this file in progress must not delete its source
        local = self.state.local(location_id)
        open_flags = flags & (os.O_ACCMODE | os.O_APPEND | os.O_TRUNC)
        staged = node.replicas[location_id].staged
        if local is not None:
            handle.fd = await self._thread(location_id, local.open_fd, node.logical_path,
                                           open_flags)
        elif staged is not None:
            # Newer than the object store: the staging file waiting for its upload. Pinned
            # while it is opened, so an upload ending meanwhile does not let it go.
            with self._pin(staged):
                handle.fd = await trio.to_thread.run_sync(os.open, str(staged),
                                                          open_flags | os.O_CLOEXEC)
            handle.staged = staged if writable else None
        elif writable:
            handle.staged = await self._stage(location_id, node,
                                              truncate=bool(flags & os.O_TRUNC))
            current = node.replicas[location_id].staged
            if current is not None:
                # Another open staged it first: one working copy, or writes would be lost.
                await trio.to_thread.run_sync(self.staging.discard, handle.staged)
                handle.staged = current
            with self._pin(handle.staged):
                handle.fd = await trio.to_thread.run_sync(
                    os.open, str(handle.staged), (open_flags & ~os.O_TRUNC) | os.O_CLOEXEC)
            # From now on the staging file is the current content (a reader may open the file
            # before this handle's release arrives).
            node.replicas[location_id].staged = handle.staged
        if writable and flags & os.O_TRUNC:
            self._touch(node, location_id, size=0)
            handle.dirty = True
            handle.hasher = blake3()
        keep = not writable and self._cached_version.get(inode) == node.version
        self._cached_version[inode] = node.version
        return pyfuse3.FileInfo(fh=self._new_handle(handle), keep_cache=keep)

    async def _stage(self, location_id: str, node: FileNode, truncate: bool) -> Path:
        """A local working copy of an object-store file, uploaded after release; its upload
        replaces the version it was made from, and only that one."""
        backend = self.state.backend(location_id)

        def fill(out: BinaryIO) -> None:
            if not truncate:
                with backend.open_read(node.logical_path) as stream:
                    while chunk := stream.read(1 << 20):
                        out.write(chunk)

        def fetch() -> tuple[Path, str | None]:
            # Asked before reading: a version published in between makes the upload a
            # conflict copy (nothing lost), never an overwrite of what we did not read.
            version = backend.stat(node.logical_path).change_token
            return self.staging.create(location_id, node.logical_path, fill, version), version

        path, node.replicas[location_id].change_token = await self._thread(location_id, fetch)
        return path

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handles[fh]
        if handle.status is not None:
            return handle.status[off:off + size]
        if handle.fd is None:
            return await self._read_object(handle, handle.node, off, size)
        if handle.page_cache_reads:
            # What the backing file's page cache holds is copied without a worker-thread hop
            # (which costs more than the copy); only the rest waits for the device.
            try:
                cached = read_cached(handle.fd, size, off)
            except NotImplementedError:
                handle.page_cache_reads = False
            else:
                if len(cached) == size:
                    return cached
                rest = await self._thread(handle.location_id, os.pread, handle.fd,
                                          size - len(cached), off + len(cached))
                return bytes(cached) + rest if cached else rest
        return await self._thread(handle.location_id, os.pread, handle.fd, size, off)

    async def _read_object(self, handle: Handle, node: FileNode, off: int, size: int
                           ) -> bytes:
        """An object-store read, through the chunk cache, fetching ahead when sequential."""
        location_id = handle.location_id
        replica = node.replicas.get(location_id)
        if replica is None:
            log.error("%s: its location was removed while it was open", node.logical_path)
            raise _fail(errno.EIO)
        end = min(off + size, replica.size)
        if off >= end:
            return b""
        version = replica.content_hash or f"{replica.size}:{replica.mtime_ns}"
        first, last = off // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
        parts = [await self.fetch_chunk(location_id, node.logical_path, version, index)
                 for index in range(first, last + 1)]
        if off == handle.next_offset and self.prefetch is not None:
            for index in range(last + 1, last + 1 + READ_AHEAD_CHUNKS):
                name = ChunkCache.name(location_id, node.logical_path, version, index)
                if index * CHUNK_SIZE < replica.size and name not in self._prefetching:
                    try:
                        self.prefetch.send_nowait((location_id, node.logical_path, version,
                                                   index))
                    except trio.WouldBlock:
                        break  # read-ahead is saturated: this read does not wait for it
                    self._prefetching.add(name)
        handle.next_offset = end
        start = off - first * CHUNK_SIZE
        return b"".join(parts)[start:start + end - off]

    async def fetch_chunk(self, location_id: str, key: str, version: str, index: int) -> bytes:
        cache = self.state.chunks
        name = ChunkCache.name(location_id, key, version, index)
        data = await trio.to_thread.run_sync(cache.get, name) if cache else None
        if data is None:
            if not self.state.usable(location_id):
                # Known to be down: fail now rather than wait out the retry deadline again.
                raise OSError(errno.EIO, f"{self.state.location(location_id).name} is "
                                         f"unreachable ({self.state.unavailable.get(location_id)})")
            try:
                data = await self._thread(location_id, self.state.backend(location_id).read,
                                          key, index * CHUNK_SIZE, CHUNK_SIZE)
            except (LocationUnavailableError, RetriesExhaustedError) as exc:
                self.unreachable(location_id, exc)
                raise
            if cache is not None:
                await trio.to_thread.run_sync(cache.put, name, data)
        self._prefetching.discard(name)
        return data

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handles[fh]
        if not handle.writable or handle.fd is None:
            raise _fail(errno.EBADF)
        node = handle.node
        if node is None:
            raise _fail(errno.EBADF)
        try:
            written, handle.last_stat = await self._thread(handle.location_id, _pwrite_stat,
                                                           handle.fd, buf, off)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or handle.staged is not None:
                raise
            written = await self._write_elsewhere(handle, node, off, buf)
            handle.last_stat = None
        if handle.hasher is not None:
            if off == handle.hashed_upto:
                handle.hasher.update(buf[:written])
                handle.hashed_upto += written
            else:
                handle.hasher = None
        replica = node.replicas.get(handle.location_id)
        if replica is None:
            return written  # its location was removed while it was open: nothing to show
        size = max(replica.size, off + written)
        if not handle.dirty:
            self._touch(node, handle.location_id, size)
            handle.dirty = True
        else:
            replica.size = size
            replica.mtime_ns = time.time_ns()
            replica.content_hash = None  # known again after release, or the next upload
            replica.unsent = replica.staged is not None
            node.version += 1
        handle.stat_version = node.version
        return written

    async def _write_elsewhere(self, handle: Handle, node: FileNode, off: int, buf: bytes
                               ) -> int:
        """The location filled up under a write: move the file to the next eligible location
        with room and carry on there, instead of failing with ENOSPC."""
        full = handle.location_id
        self.state.free_space[full] = SpaceInfo(0, (self.state.free_space.get(full)
                                                    or SpaceInfo(0, 0)).total_bytes)
        size = max(node.replicas[full].size, off + len(buf))
        target = self._place(node.logical_path, size, exclude={full})
        if target is None or self.state.local(target) is None:
            raise _fail(errno.ENOSPC)
        source_backend = self.state.local(full)
        target_backend = self.state.local(target)
        catalog = self.state.catalog

        def copy() -> tuple[int, int]:
            fd = target_backend.create_fd(node.logical_path, stat.S_IMODE(node.mode))
            try:
                # Its own descriptor: the handle's may be write-only.
                source_fd = source_backend.open_fd(node.logical_path, os.O_RDONLY)
                try:
                    while chunk := os.read(source_fd, 1 << 20):
                        os.write(fd, chunk)
                finally:
                    os.close(source_fd)
                written = os.pwrite(fd, buf, off)
                os.fsync(fd)  # durable before the source may go
            except BaseException:
                os.close(fd)
                target_backend.delete(node.logical_path)
                raise
            return fd, written

        # Journaled (recovery.py, kind "handover"): a crash mid-copy removes the partial copy,
        # one after it finishes the hand-over; the source is deleted only once the complete
        # copy is on disk and recorded.
        op_id = await self._db(catalog.journal_begin, HANDOVER, node.logical_path,
                               source_location_id=full, target_location_id=target)
        fd, written = await self._thread(target, copy)
        await self._db(catalog.journal_step, op_id, "copied")
        vpath = self._current_vpath(node)
        before = self.ns.views_of(vpath) if vpath else []
        replica = node.replicas.pop(full)
        node.replicas[target] = Replica(max(replica.size, off + written), time.time_ns(), None,
                                        "present")
        if vpath:
            self.ns.reindex(vpath, before)
        self.record(node, target)
        self.state.queue.drop_replica(full, node.logical_path)
        await self._db(self.state.queue.flush)
        old_fd, handle.fd = handle.fd, fd
        await self._thread(full, _close_and_delete, old_fd, source_backend, node.logical_path)
        await self._db(catalog.journal_end, op_id)
        handle.location_id = target
        if node.created_here == full:
            node.created_here = target
        log.info("%s: %s is full; continued in %s", node.logical_path,
                 self.state.location(full).name, self.state.location(target).name)
        return written

    @fuse_errors
    async def flush(self, fh: int) -> None:
        # Nothing to do at close (release records the file): ENOSYS tells the kernel so, and
        # it stops sending FLUSH, one round trip less for every close(2).
        raise _fail(errno.ENOSYS)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        handle = self._handles[fh]
        if handle.fd is not None and handle.writable:
            await self._thread(handle.location_id,
                               os.fdatasync if datasync else os.fsync, handle.fd)
        node = handle.node
        vpath = self._current_vpath(node) if node else None
        replica = node.replicas.get(handle.location_id) if node else None
        # Whichever handle asks (another one's writes may not even be released yet): the
        # content as of now must be in the store on return.
        if vpath is not None and replica is not None and replica.staged is not None and \
                replica.unsent:
            await self.upload_staged(vpath, handle.location_id, from_handle=handle)

    @fuse_errors
    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh)
        st: tuple[int, int, int] | None = None
        stale = False
        if handle.fd is not None:
            fd = handle.fd
            handle.fd = None
            if handle.dirty and handle.last_stat is None:
                version = handle.node.version if handle.node is not None else -1
                st = await self._thread(handle.location_id, _fstat_and_close, fd)
                # Written through another handle during the hop: the namespace is newer.
                stale = handle.node is not None and handle.node.version != version
            else:
                st = handle.last_stat
                # Written through another handle since: the namespace is newer than this.
                stale = handle.node is not None and handle.node.version != handle.stat_version
                if self.closer is not None:
                    await self.closer.send((handle.location_id, fd))
                else:
                    await self._thread(handle.location_id, os.close, fd)
        node = handle.node
        vpath = self._current_vpath(node) if node else None
        replica = node.replicas.get(handle.location_id) if node else None
        if node is None or vpath is None or replica is None:
            return  # unlinked or replaced while open: nothing to record
        if handle.dirty and st is not None and not stale:
            if handle.hasher is not None and handle.hashed_upto == st[0]:
                replica.content_hash = handle.hasher.hexdigest()
            replica.size, replica.mtime_ns = st[0], st[1]
        if replica.staged is not None:
            await self._settle_staged(vpath, handle, node, replica)
            if not handle.dirty:
                return
        elif not handle.dirty:
            return
        elif st is not None:
            self.record(node, handle.location_id, inode=st[2])
        if node.created_here is not None and self.relocations is not None:
            await self.relocations.send(vpath)

    async def _settle_staged(self, vpath: str, handle: Handle, node: FileNode,
                             replica: Replica) -> None:
        """A handle on an S3/GCS file was released: what the store lacks is uploaded (the
        upload waits while other handles still write), and a staging file whose content the
        store already has goes once nobody has it open for writing."""
        key = (vpath, handle.location_id)
        if replica.unsent:
            self.uploads.request(key)
            return
        if handle.staged is not None and replica.staged == handle.staged and \
                not self._staging_in_use(handle.staged):
            # Never written, or its last change already uploaded (an fsync): nothing to send.
            staged, replica.staged = replica.staged, None
            self.uploads.done(key)
            await trio.to_thread.run_sync(self.staging.discard, staged)

    async def upload_staged(self, vpath: str, location_id: str,
                            from_handle: Handle | None = None) -> None:
        """Upload a snapshot of a staging file and, once verified and recorded, let the
        staging file go. With `from_handle` (fsync) the content of the open file as of now
        is made durable in the store and the working copy stays for the handle.

        Writes that land while the upload runs are not in it: the file then stays staged
        and queued, and another upload of the newer content follows (DESIGN.md §3)."""
        node = self.ns.files.get(vpath)
        if node is None:
            self.uploads.done((vpath, location_id))
            return
        # Uploads, renames and unlinks of one file never interleave: an upload finishing
        # under an old name after a rename, or after an unlink, would lose or resurrect it.
        async with self.lock_for(node):
            replica = node.replicas.get(location_id)
            staged = from_handle.staged if from_handle and from_handle.staged else (
                replica.staged if replica else None)
            if self._current_vpath(node) != vpath:
                # Renamed away or replaced while it waited for the lock: the key now belongs
                # to whatever file is there (its upload is looked at afresh), or to none.
                now = self.ns.files.get(vpath)
                there = now.replicas.get(location_id) if now is not None else None
                if there is not None and there.staged is not None:
                    self.uploads.request((vpath, location_id))
                else:
                    self.uploads.done((vpath, location_id))
                return
            if replica is None or staged is None:
                self.uploads.done((vpath, location_id))
                return
            if from_handle is None and not self.uploads.closing and any(
                    h.node is node and h.writable and h.staged == staged
                    for h in self._handles.values()):
                self.uploads.hold((vpath, location_id))
                return  # being written again: requested again when that handle is released
            version = node.version
            mtime_ns = replica.mtime_ns
            snapshot = await self._thread(None, self.staging.snapshot, staged)
            try:
                result = await self._upload_snapshot(node, location_id, staged, snapshot,
                                                     mtime_ns, version)
            finally:
                await trio.to_thread.run_sync(snapshot.discard)
            if result is None:
                return  # ours was kept under a conflict name (see _keep_conflict)
            replica.change_token = result.info.change_token
            current = node.version == version and replica.staged in (staged, None)
            if current:
                replica.size = result.info.size
                replica.content_hash = result.content_hash
                replica.unsent = False
                self.record(node, location_id)
            still_needed = self._staging_in_use(staged)
            if from_handle is None and current and not still_needed:
                replica.staged = None
                await self._db(self.state.queue.flush)
                await trio.to_thread.run_sync(self.staging.discard, staged)
                if node.created_here is not None and self.relocations is not None:
                    self.relocations.send_nowait(vpath)  # its placement may now be decided
            else:
                # The next upload replaces the version just published, nothing else.
                await trio.to_thread.run_sync(self.staging.uploaded, staged,
                                              replica.change_token)
            if current:
                self.uploads.done((vpath, location_id))
            elif not still_needed or self.uploads.closing:
                self.uploads.request((vpath, location_id))  # written meanwhile: again
            else:
                self.uploads.hold((vpath, location_id))

    async def _upload_snapshot(self, node: FileNode, location_id: str, staged: Path,
                               snapshot: Snapshot, mtime_ns: int, version: int
                               ) -> WriteResult | None:
        """Publish a snapshot as the replica's new version; None when another writer had
        replaced the object meanwhile and ours went to a conflict name."""
        backend = self.state.backend(location_id)
        replica = node.replicas[location_id]
        # What an earlier attempt may have published without our hearing of it, then this
        # one: an upload whose answer is lost must not make the next one a false conflict.
        attempted = replica.attempted_hash
        await trio.to_thread.run_sync(self.staging.attempting, staged, snapshot.content_hash)
        replica.attempted_hash = snapshot.content_hash
        try:
            return await self._thread(location_id, self.staging.upload, backend, snapshot,
                                      node.logical_path, mtime_ns, replica.change_token)
        except (LocationUnavailableError, RetriesExhaustedError) as exc:
            self.unreachable(location_id, exc)
            raise
        except FileExistsError:
            pass
        collision = await self._thread(
            location_id, _settle_collision, backend, snapshot, node.logical_path,
            mtime_ns, self.state.location(location_id).name, attempted)
        if collision.conflict_key is None:
            return collision.ours
        written = node.version != version
        vpath = view_path(node.logical_path)
        self._keep_conflict(node, location_id, staged, collision)
        self.uploads.done((vpath, location_id))
        await self._db(self.state.queue.flush)
        copy_key = (view_path(collision.conflict_key), location_id)
        open_on_it = any(h.staged == staged for h in self._handles.values())
        if not (open_on_it or written):
            await trio.to_thread.run_sync(self.staging.discard, staged)
            return None
        # Still being written, or written during the upload: the staging file is the
        # conflict copy's newer content, and a crash before its next upload must resume it
        # there, not under the other's name.
        copy_replica = self.ns.files[copy_key[0]].replicas[location_id]
        copy_replica.staged, copy_replica.unsent = staged, written
        await trio.to_thread.run_sync(self.staging.renamed, staged, collision.conflict_key,
                                      collision.ours.info.change_token)
        if open_on_it:
            self.uploads.hold(copy_key)
        else:
            self.uploads.request(copy_key)
        return None

    def unreachable(self, location_id: str, exc: OSError) -> None:
        """A request to the location found it unreachable: until a probe sees it back
        (daemon._bring_back), reads of it fail at once instead of each waiting out the
        retry deadline, and nothing new is placed there."""
        if location_id not in self.state.unavailable:
            log.warning("location %s is unreachable: %s", self.state.location(location_id).name,
                        exc)
            self.state.unavailable[location_id] = f"unreachable: {exc.strerror or exc}"

    def _keep_conflict(self, node: FileNode, location_id: str, staged: Path,
                       collision: Collision) -> None:
        """Someone else replaced the object while this mount's version of it waited for its
        upload: theirs keeps the name, ours was uploaded beside it under a conflict name
        (DESIGN.md §6). Handles still open on ours follow it there."""
        ours, theirs, conflict_key = collision.ours, collision.theirs, collision.conflict_key
        vpath = view_path(node.logical_path)
        before = self.ns.views_of(vpath)
        node.replicas[location_id] = Replica(theirs.size, theirs.mtime_ns, theirs.content_hash,
                                             change_token=theirs.change_token)
        self.record(node, location_id)
        node.version += 1
        self.ns.reindex(vpath, before)
        copy = FileNode(conflict_key, {location_id: Replica(
            ours.info.size, ours.info.mtime_ns, ours.content_hash,
            change_token=ours.info.change_token)}, node.category, node.mime_type,
            mode=node.mode, uid=node.uid, gid=node.gid, ctime_ns=time.time_ns())
        self.ns.add_file(copy)
        self.record(copy, location_id)
        for handle in self._handles.values():
            if handle.node is node and handle.staged == staged:
                handle.node = copy
                handle.vpath = view_path(conflict_key)
                copy.replicas[location_id].staged = staged
        log.warning("%s in %s was replaced by another writer before this mount's version "
                    "was uploaded: theirs keeps the name, ours is kept as %s",
                    node.logical_path, self.state.location(location_id).name, conflict_key)

    def _record_attrs(self, node: FileNode) -> None:
        self.state.queue.put_attrs(PosixAttrs(node.logical_path, stat.S_IMODE(node.mode),
                                              node.uid, node.gid, node.symlink_target))

    def record(self, node: FileNode, location_id: str, *, inode: int | None = None) -> None:
        replica = node.replicas[location_id]
        now = time.time()
        self.state.queue.put_replica(CatalogReplica(
            location_id, node.logical_path, replica.size, replica.mtime_ns,
            replica.content_hash, inode, replica.change_token, "present", now))
        # Older versions elsewhere stay in the catalog as they are: the sync process compares
        # hashes and brings them level (DESIGN.md §6).

    def adopt_staged(self, staged: StagedFile) -> str:
        """Show a staging file left by an earlier run as the current content of its replica
        (it is newer than the object store). Returns its projects path."""
        st = os.stat(staged.path)
        vpath = view_path(staged.logical_path)
        node = self.ns.files.get(vpath)
        if node is None:
            media = classify_name(staged.logical_path)
            node = FileNode(staged.logical_path, {}, media.category, media.mime_type,
                            uid=self.ns.uid, gid=self.ns.gid, ctime_ns=st.st_mtime_ns)
            node.replicas[staged.location_id] = Replica(st.st_size, st.st_mtime_ns)
            self.ns.add_file(node)
        before = self.ns.views_of(vpath)
        replica = node.replicas.setdefault(staged.location_id,
                                           Replica(st.st_size, st.st_mtime_ns))
        replica.size, replica.mtime_ns, replica.state = st.st_size, st.st_mtime_ns, "present"
        replica.content_hash, replica.staged, replica.unsent = None, staged.path, True
        replica.change_token, replica.attempted_hash = staged.replaces, staged.attempted
        self.ns.reindex(vpath, before)
        return vpath

    # -- placement ----------------------------------------------------------------------

    def _place(self, logical_path: str, size: int, exclude: set[str] = frozenset(),
               current: str | None = None) -> str | None:
        if is_sidecar(logical_path):
            companion = self._companion_location(logical_path, size, exclude, current)
            if companion is not None:
                return companion
        policies = [loc for loc in self.state.locations
                    if self.state.usable(loc.location_id) and loc.location_id not in exclude
                    and self._keeps_name(loc.location_id, logical_path)]
        attrs = FileAttrs.from_name(logical_path, size, time.time())
        placement = target_location(attrs, policies, self.state.free_space, time.time(),
                                    current_location_id=current)
        if placement.reason is PlacementReason.NO_ROOM or placement.location is None:
            return None
        return placement.location.location_id

    def _keeps_name(self, location_id: str, logical_path: str) -> bool:
        """Whether the location stores `logical_path` under exactly that name. Object stores
        may not keep a backslash (SeaweedFS turns it into '/'): such names go elsewhere,
        and are refused where they cannot (docs/cloud.md)."""
        return "\\" not in logical_path or self.state.local(location_id) is not None

    def _check_names_kept(self, node: FileNode, logical_path: str) -> None:
        if any(not self._keeps_name(lid, logical_path) for lid in node.replicas
               if lid in self.state.backends):
            raise _fail(errno.EINVAL)

    def _companions(self, sidecar: str) -> list[str]:
        """Projects paths of the files a sidecar describes (`photo.png.xmp` -> photo.png;
        `photo.xmp` -> photo.*), as the scanner pairs them."""
        vbase = view_path(sidecar[: -len(SIDECAR_EXTENSION)])
        if vbase in self.ns.files:
            return [vbase]
        parent, _, stem = vbase.rpartition("/")
        return [f"{parent}/{name}" for name in self.ns.children(PROJECTS_VIEW, parent)
                if posixpath.splitext(name)[0] == stem and not is_sidecar(name)
                and f"{parent}/{name}" in self.ns.files]

    def _companion_location(self, sidecar: str, size: int, exclude: set[str],
                            current: str | None) -> str | None:
        """Where the file a sidecar describes is: the sidecar goes there too, so a photo and
        its tags and rating never end up in different locations."""
        for vpath in self._companions(sidecar):
            location_id = self.state.primary(self.ns.files[vpath])
            if (location_id is not None and location_id not in exclude
                    and self.state.location(location_id).status is LocationStatus.ACTIVE
                    and has_room(self.state.location(location_id),
                                 self.state.free_space.get(location_id), size,
                                 location_id == current)):
                return location_id
        return None

    def _sidecars_of(self, vpath: str) -> list[str]:
        """Projects paths of the sidecars describing the file at `vpath` (none for a
        sidecar itself)."""
        logical = self.ns.files[vpath].logical_path
        if is_sidecar(logical):
            return []
        stem = posixpath.splitext(logical)[0]
        return [view_path(key) for key in (logical + SIDECAR_EXTENSION, stem + SIDECAR_EXTENSION)
                if view_path(key) in self.ns.files]

    async def relocate(self, vpath: str) -> None:
        """Re-place a file created through this mount, now that its final name and size are
        known (applications write `name.tmp` and rename it; rules on type and size need the
        final name). Moving it is cheap: it was just written."""
        node = self.ns.files.get(vpath)
        if node is None or node.created_here is None or node.is_symlink:
            return
        if self.open_for_writing(node):
            return  # still being written: looked at again on release
        current = node.created_here
        replica = node.replicas.get(current)
        if replica is None or replica.state != "present" or not self.state.usable(current):
            return
        if replica.staged is not None:
            return  # looked at again once its upload is done (upload_staged)
        target = self._place(node.logical_path, replica.size)
        if target is not None and target != current:
            await self._move_replica(node, current, target)
        if self.relocations is not None and self._current_vpath(node) == vpath:
            for sidecar in self._sidecars_of(vpath):  # written before it: they follow it
                await self.relocations.send(sidecar)

    async def _move_replica(self, node: FileNode, source: str, target: str) -> None:
        """Move a file the way migration does (DESIGN.md §5: temp-write, verify, rename,
        record, then delete the source; journaled), under its lock, given up if the file
        changes meanwhile (a rename waits for the move, and the reverse)."""
        replica = node.replicas[source]
        entry = PlannedTransfer(
            node.logical_path, replica.size, replica.mtime_ns, replica.content_hash, source,
            target, True, (CatalogReplica(source, node.logical_path, replica.size,
                                          replica.mtime_ns, replica.content_hash),),
            "placement of a new file")
        (outcome,) = await run_plan(MigrationPlan((entry,), ()), self.state.catalog,
                                    self.state.backends, coordinator=self.mover)
        if outcome.result == "moved":
            log.info("%s placed in %s", node.logical_path, self.state.location(target).name)
        elif outcome.result == "failed":
            log.error("placing %s: %s", node.logical_path, outcome.detail)

    # -- creating -----------------------------------------------------------------------

    @fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: pyfuse3.RequestContext) -> tuple[pyfuse3.FileInfo,
                                                           pyfuse3.EntryAttributes]:
        vpath = self._new_file_name(parent_inode, name)
        logical = logical_path_of(vpath)
        location_id = self._place(logical, 0)
        if location_id is None:
            if "\\" in logical and self._place(logical.replace("\\", "_"), 0) is not None:
                raise _fail(errno.EINVAL)  # only object stores could take it: see _keeps_name
            raise _fail(errno.ENOSPC)
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
            raise _fail(errno.EEXIST)
        self._check_parent(parent_inode)
        return vpath

    def _new_file_name(self, parent_inode: int, name: bytes) -> str:
        """As _new_name, for a file or link: `projects/` itself holds only projects
        (directories); files at a location's root live in `projects/_unsorted/`."""
        vpath = self._new_name(parent_inode, name)
        if "/" not in vpath:
            raise _fail(errno.EPERM)
        return vpath

    def _check_parent(self, parent_inode: int) -> None:
        view, vpath = self._entry_key(parent_inode)
        if view == PROJECTS_VIEW and vpath == "":
            return  # a new project
        if self._exists(view, vpath) != "dir":
            raise _fail(errno.ENOENT)

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
        vpath = self._new_file_name(parent_inode, name)
        location_id = self._dir_location(vpath)
        if location_id is None:
            raise _fail(errno.EPERM)  # symbolic links need a local location
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

    # -- removing and renaming ------------------------------------------------------------

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        view, vpath = self._child(parent_inode, name)
        if view.startswith("l:") or view in ("", STATUS_VIEW):
            raise _fail(errno.EROFS)
        if self._exists(view, vpath) != "file":
            raise _fail(errno.EISDIR if self._exists(view, vpath) == "dir" else errno.ENOENT)
        node = self.ns.files[vpath]
        async with self.lock_for(node):
            await self._unlink_locked(view, vpath, node)
        self.forget_lock(node)

    async def _unlink_locked(self, view: str, vpath: str, node: FileNode) -> None:
        if self._current_vpath(node) != vpath:
            raise _fail(errno.ENOENT)  # renamed or removed while waiting for an upload
        self.forgotten.add(vpath)
        holders = _holders(node)
        reachable = [lid for lid in holders if self.state.usable(lid)]
        with self._owing(lid for lid in holders if lid not in reachable):
            await self._unlink_replicas(view, vpath, node, holders, reachable)

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
        func = local.remove_link if node.is_symlink and local else backend.delete
        with contextlib.suppress(FileNotFoundError):  # already gone: what unlink wants
            await self._thread(location_id, func, node.logical_path)

    async def _db(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(func, *args, **kwargs))

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        view, vpath = self._child(parent_inode, name)
        self._writable_view(view)
        if self._exists(view, vpath) != "dir":
            raise _fail(errno.ENOTDIR if self._exists(view, vpath) else errno.ENOENT)
        if vpath == "" or self.ns.children(view, vpath):
            raise _fail(errno.ENOTEMPTY)
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

    @fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: pyfuse3.RequestContext) -> None:
        old_view, old = self._child(parent_inode_old, name_old)
        new_view, new = self._child(parent_inode_new, name_new)
        if old_view.startswith("l:") or new_view.startswith("l:") or STATUS_VIEW in (
                old_view, new_view) or "" in (old_view, new_view):
            raise _fail(errno.EROFS)
        if old_view != new_view:
            raise _fail(errno.EXDEV)  # between projects/ and types/, or two types
        kind = self._exists(old_view, old)
        if kind is None:
            raise _fail(errno.ENOENT)
        target_kind = self._exists(new_view, new)
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise _fail(errno.EINVAL)
        if target_kind is not None and flags & pyfuse3.RENAME_NOREPLACE:
            raise _fail(errno.EEXIST)
        if old == new:
            return
        if kind == "file" and "/" not in new:
            raise _fail(errno.EPERM)  # projects/ itself holds only projects (see create)
        if kind == "dir":
            await self._rename_dir(old, new, target_kind)
        else:
            if target_kind == "dir":
                raise _fail(errno.EISDIR)
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
                    raise _fail(errno.ENOENT)  # renamed or removed while waiting for an upload
                if self.ns.files.get(new) is replaced:
                    await self._rename_file_locked(old, new, node)
                    break
            # Another file took the new name while it waited: again, with that one.
        for locked in nodes:
            self.forget_lock(locked)

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
                payload: dict[str, Any] = {"symlink": True} if node.is_symlink else {}
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
        """The file a rename replaced, where the renamed one has no copy: a copy of the same
        kind now holds an older version of the new name (stale, brought level by sync); one
        of another kind (a link replaced by a file, or the reverse) is deleted, now or, for
        offline locations, when they are back (returned)."""
        offline = []
        for location_id, replica in replaced.replicas.items():
            if location_id in node.replicas or replica.state == "missing":
                continue
            if replaced.is_symlink == node.is_symlink:
                if replica.state == "present":
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
            if node.is_symlink and local is not None:
                if await self._thread(location_id, local.is_link, key):
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
            raise _fail(errno.EIO)
        return offline

    async def _rename_file_locked(self, old: str, new: str, node: FileNode) -> None:
        holders = _holders(node)
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
            if replica.state == "present" and replica.staged is None:
                self.record(node, location_id)
        for location_id in requeue:
            self._upload_when_closed((new, location_id), node)
        if node.created_here is not None and self.relocations is not None:
            await self.relocations.send(new)

    async def _rename_dir(self, old: str, new: str, target_kind: str | None) -> None:
        if target_kind == "file":
            raise _fail(errno.ENOTDIR)
        if target_kind == "dir" and self.ns.children(PROJECTS_VIEW, new):
            raise _fail(errno.ENOTEMPTY)
        if new.startswith(old + "/"):
            raise _fail(errno.EINVAL)

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
        offline = {id(node): self._check_offline_copies(node, _holders(node))
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
            if not self.state.usable(location_id) or not self.ns.is_dir(
                    location_view(location_id), old):
                continue
            local = self.state.local(location_id)
            if local is not None:
                if target_kind == "dir":
                    with contextlib.suppress(FileNotFoundError):
                        await self._thread(location_id, local.remove_dir, logical_path_of(new))
                await self._thread(location_id, local.rename, logical_path_of(old),
                                   logical_path_of(new))
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
                if replica.state == "present" and replica.staged is None:
                    self.record(node, location_id)
        for vpath, location_id, node in requeue:
            self._upload_when_closed((vpath, location_id), node)

    def _upload_when_closed(self, key: tuple[str, str], node: FileNode) -> None:
        """Upload a staged file now, or when the handles writing it are released."""
        if self.open_for_writing(node):
            self.uploads.hold(key)
        else:
            self.uploads.request(key)

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

    # -- attributes ---------------------------------------------------------------------

    @fuse_errors
    async def setattr(self, inode: int, attr: pyfuse3.EntryAttributes,
                      fields: pyfuse3.SetattrFields, fh: int | None,
                      ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        entry = self.ns.entry(inode)
        if entry is None:
            raise _fail(errno.ENOENT)
        if entry.view.startswith("l:") or entry.view in ("", STATUS_VIEW):
            raise _fail(errno.EROFS)
        if self._exists(entry.view, entry.vpath) == "dir":
            node = self.ns.dirs[entry.view][entry.vpath]
            if fields.update_mode:
                node.mode = stat.S_IFDIR | stat.S_IMODE(attr.st_mode)
            if fields.update_mtime:
                node.mtime_ns = attr.st_mtime_ns
            return self._attrs(inode)
        view, _vpath, node = self._file(inode)
        if fields.update_size and view != PROJECTS_VIEW:
            raise _fail(errno.EROFS)
        now = time.time_ns()
        mode = stat.S_IMODE(attr.st_mode) if fields.update_mode else None
        owner = None
        if fields.update_uid or fields.update_gid:
            owner = (attr.st_uid if fields.update_uid else node.uid,
                     attr.st_gid if fields.update_gid else node.gid)
        times = None
        if fields.update_mtime or fields.update_atime:
            times = (attr.st_atime_ns if fields.update_atime else now,
                     attr.st_mtime_ns if fields.update_mtime else now)
        primary = self.state.primary(node)
        handle = self._handles.get(fh) if fh is not None else None
        cloud_truncate = (fields.update_size and primary is not None
                          and self.state.local(primary) is None)
        if cloud_truncate:
            await self._truncate_object_replica(node, primary, attr.st_size, handle)
        for location_id, replica in node.replicas.items():
            local = self.state.local(location_id) if location_id in self.state.backends else None
            if local is None or replica.state == "missing" or not self.state.usable(location_id):
                continue
            size = attr.st_size if fields.update_size and location_id == primary else None
            if (mode, owner, times, size) == (None, None, None, None) or node.is_symlink:
                continue
            if size is not None and fh is not None and self._handles.get(fh) and \
                    self._handles[fh].fd is not None:
                await self._thread(location_id, os.ftruncate, self._handles[fh].fd, size)
                size = None
            await self._thread(location_id, functools.partial(
                local.set_attrs, node.logical_path, mode=mode, owner=owner,
                times_ns=times if location_id == primary else None, size=size))
        if fields.update_size and primary is not None:
            self._touch(node, primary, attr.st_size)
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
        if mode is not None or owner is not None:
            self._record_attrs(node)
        if times is not None and primary is not None:
            if self.state.local(primary) is None and not node.is_symlink:
                await self._set_object_times(node, primary, times, handle)
            node.replicas[primary].mtime_ns = times[1]
            for other in self._handles.values():
                if other.node is node:
                    other.last_stat = None  # `cp -p` sets times before close: keep them
            self.record(node, primary)
        node.ctime_ns = now
        return self._attrs(inode)

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

    # -- extended attributes --------------------------------------------------------------

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not self.state.options.xattrs:
            raise _fail(errno.ENOSYS)  # the kernel stops asking for the rest of the mount
        if name not in ALL_XATTRS:
            raise _fail(_unsupported_or_absent(name))
        _, _, node = self._file(inode)
        if name in (XATTR_TAGS, XATTR_XDG_TAGS):
            if not node.tags:
                raise _fail(pyfuse3.ENOATTR)
            return ",".join(node.tags).encode()
        if name == XATTR_QUALITY:
            if node.quality is None:
                raise _fail(pyfuse3.ENOATTR)
            return str(node.quality).encode()
        if name == XATTR_BALOO_RATING:
            if node.quality is None:
                raise _fail(pyfuse3.ENOATTR)
            return str(node.quality * 2).encode()
        if name == XATTR_LOCATIONS:
            names = [self.state.location(lid).name for lid, r in node.replicas.items()
                     if r.state != "missing"]
            return ",".join(names).encode()
        return _sync_state(node).encode()

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if not self.state.options.xattrs:
            raise _fail(errno.ENOSYS)
        entry = self.ns.entry(inode)
        if entry is None or self._exists(entry.view, entry.vpath) != "file" or \
                entry.view == STATUS_VIEW:
            return []
        node = self.ns.files[entry.vpath]
        names = [XATTR_LOCATIONS, XATTR_SYNC]
        if node.tags:
            names += [XATTR_TAGS, XATTR_XDG_TAGS]
        if node.quality is not None:
            names += [XATTR_QUALITY, XATTR_BALOO_RATING]
        return names

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        if not self.state.options.xattrs:
            raise _fail(errno.ENOSYS)
        view, _, node = self._file(inode)
        if view.startswith("l:"):
            raise _fail(errno.EROFS)
        if name in (XATTR_LOCATIONS, XATTR_SYNC):
            raise _fail(errno.EPERM)
        if name not in WRITABLE_XATTRS:
            raise _fail(errno.ENOTSUP)
        text = value.decode("utf-8", "replace").strip().rstrip("\0")
        if name in (XATTR_TAGS, XATTR_XDG_TAGS):
            tags: list[str] = []
            for tag in (t.strip() for t in text.split(",")):
                if tag and tag.casefold() not in {t.casefold() for t in tags}:
                    tags.append(tag)
            node.tags = tuple(tags)
        else:
            try:
                number = int(float(text))
            except ValueError:
                raise _fail(errno.EINVAL) from None
            stars = number // 2 if name == XATTR_BALOO_RATING else number
            if not 0 <= stars <= 5 or (name == XATTR_BALOO_RATING and not 0 <= number <= 10):
                raise _fail(errno.EINVAL)
            node.quality = stars
        self._record_metadata(node)

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        if not self.state.options.xattrs:
            raise _fail(errno.ENOSYS)
        view, _, node = self._file(inode)
        if view.startswith("l:"):
            raise _fail(errno.EROFS)
        if name in (XATTR_TAGS, XATTR_XDG_TAGS):
            node.tags = ()
        elif name in (XATTR_QUALITY, XATTR_BALOO_RATING):
            node.quality = None
        elif name in ALL_XATTRS:
            raise _fail(errno.EPERM)
        else:
            raise _fail(pyfuse3.ENOATTR)
        self._record_metadata(node)

    def _record_metadata(self, node: FileNode) -> None:
        """What the user set through xattrs is theirs: marked `user`, never overwritten by a
        scan, and kept by migrations (metadata belongs to the logical path)."""
        self.state.queue.put_metadata(FileMeta(
            node.logical_path, node.category, node.mime_type, node.tags, "user",
            node.quality, "user" if node.quality is not None else None))
        node.ctime_ns = time.time_ns()

    # -- status files -------------------------------------------------------------------

    def _staged_size(self, key: tuple[str, str]) -> int | None:
        node = self.ns.files.get(key[0])
        replica = node.replicas.get(key[1]) if node is not None else None
        return replica.size if replica is not None else None

    def _status(self, name: str) -> bytes:
        state = self.state
        if name == "locations.json":
            data: Any = [{
                "location_id": loc.location_id, "name": loc.name, "type": loc.type.value,
                "priority": loc.priority, "status": loc.status.value,
                "state": ("offline" if loc.status is LocationStatus.OFFLINE
                          or loc.location_id in state.unavailable else "online"),
                "reason": state.unavailable.get(loc.location_id),
                "free_bytes": (state.free_space.get(loc.location_id) or SpaceInfo(-1, -1)
                               ).free_bytes if loc.type is LocationType.LOCAL else None,
            } for loc in state.locations]
        elif name == "sync.json":
            counts: dict[str, int] = {}
            for node in self.ns.files.values():
                key = _sync_state(node)
                counts[key] = counts.get(key, 0) + 1
            data = {"files": len(self.ns.files), "states": counts}
        else:
            data = {"catalog_changes_pending": state.queue.pending,
                    "uploads_pending": len(self.uploads),
                    "uploads_failing": self.uploads.failures(),
                    "uploads": self.uploads.status(self._staged_size),
                    "open_files": len(self._handles)}
        return (json.dumps(data, indent=2) + "\n").encode()


def _owner_if_root(ctx: pyfuse3.RequestContext) -> tuple[int, int] | None:
    """The caller's (uid, gid) for a new file or directory, when the mount can give it (it
    runs as root) and it differs from the mount's own."""
    if os.geteuid() != 0 or (ctx.uid, ctx.gid) == (os.geteuid(), os.getegid()):
        return None
    return ctx.uid, ctx.gid


def _unsupported_or_absent(name: bytes) -> int:
    """Security labels and ACLs are not supported here, and saying so (ENOTSUP rather than
    "no such attribute") lets `ls -l` and other coreutils stop asking for them on every file
    of the listing: they cache "unsupported" per filesystem. This is what makes `ls -lR` with
    xattrs on nearly as fast as with them off."""
    if name.startswith((b"security.", b"system.", b"trusted.")):
        return errno.EOPNOTSUPP
    return pyfuse3.ENOATTR


def _sync_state(node: FileNode) -> str:
    states = {r.state for r in node.replicas.values()}
    if any(r.staged is not None for r in node.replicas.values()):
        return "pending_upload"  # its newest content is not in the store yet
    if "stale" in states:
        return "pending_update"
    if "missing" in states:
        return "missing"
    hashes = {r.content_hash for r in node.replicas.values() if r.content_hash}
    return "conflict" if len(hashes) > 1 else "synced"


def _holders(node: FileNode) -> list[str]:
    """Locations an unlink or rename must act on: those whose replica is not known to be
    gone (a symbolic link always: scans do not list links that lead out of a location, or
    nowhere, so they may be marked missing while they exist)."""
    return [lid for lid, r in node.replicas.items() if r.state != "missing" or node.is_symlink]


@dataclass(frozen=True)
class Collision:
    """How an upload that found its key taken was settled (see _settle_collision)."""

    ours: WriteResult  # where our content now is
    conflict_key: str | None  # None: ours is at the file's own name after all
    theirs: ObjectInfo | None  # what holds the file's name, when ours does not


def _settle_collision(backend: Any, snapshot: Snapshot, logical_path: str, mtime_ns: int,
                      location_name: str, attempted: str | None) -> Collision:
    """An upload found its key holding a version it may not replace (blocking). If that is
    our content after all (an upload whose answer a crash lost), it counts as uploaded; if
    it is what an earlier attempt of ours sent (`attempted`), ours replaces it; otherwise
    ours is uploaded beside it under a conflict name, and nothing is overwritten."""
    ours = snapshot.content_hash
    try:
        theirs = backend.stat(logical_path)
    except FileNotFoundError:
        # Deleted meanwhile: ours is the only version left, and takes the name back unless
        # yet another one appears first.
        with snapshot.open() as source:
            result = backend.write_atomic(logical_path, source, expected_hash=ours,
                                          mtime_ns=mtime_ns)
        return Collision(result, None, None)
    if theirs.content_hash == ours:
        return Collision(WriteResult(theirs, ours), None, None)
    if theirs.content_hash is not None and theirs.content_hash == attempted:
        # An earlier upload of ours whose answer was lost (a timeout, a crash) did publish:
        # that version is ours to replace.
        try:
            with snapshot.open() as source:
                result = backend.write_atomic(logical_path, source, expected_hash=ours,
                                              mtime_ns=mtime_ns, replaces=theirs.change_token)
            return Collision(result, None, None)
        except FileExistsError:
            theirs = backend.stat(logical_path)  # someone else's after all, meanwhile
    when = datetime.now()
    for attempt in range(MAX_CONFLICT_NAMES):
        conflict_key = conflict_name(logical_path, when, location_name, attempt)
        try:
            with snapshot.open() as source:
                result = backend.write_atomic(conflict_key, source, expected_hash=ours,
                                              mtime_ns=mtime_ns)
        except FileExistsError:
            continue
        return Collision(result, conflict_key, theirs)
    raise OSError(errno.EEXIST, f"no free conflict name for {logical_path!r} in "
                                f"{location_name}")


def read_cached(fd: int, size: int, off: int) -> memoryview:
    """Up to `size` bytes at `off` that are in the page cache, read without blocking (an
    empty view when the first of them is not). NotImplementedError: the filesystem cannot
    tell (RWF_NOWAIT unsupported, as on NFS, tmpfs or FUSE)."""
    buf = bytearray(size)
    try:
        count = os.preadv(fd, [buf], off, os.RWF_NOWAIT)
    except BlockingIOError:
        return memoryview(buf)[:0]
    except OSError as exc:
        if exc.errno == errno.EOPNOTSUPP:
            raise NotImplementedError from None
        raise
    return memoryview(buf)[:count]


def _close_and_delete(fd: int, backend: Any, key: str) -> None:
    os.close(fd)
    backend.delete(key)


def _fstat_and_close(fd: int) -> tuple[int, int, int]:
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_size, st.st_mtime_ns, st.st_ino


def _pwrite_stat(fd: int, buf: bytes, off: int) -> tuple[int, tuple[int, int, int]]:
    written = os.pwrite(fd, buf, off)
    st = os.fstat(fd)
    return written, (st.st_size, st.st_mtime_ns, st.st_ino)


def _object_rename(backend: Any, old: str, new: str) -> str | None:
    """Rename on an object store (server-side); returns the new object's change token."""
    return rename_within(backend, old, new).info.change_token
