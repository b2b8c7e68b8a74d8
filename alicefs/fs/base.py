"""What every handler shares: the mount state, open handles, per-file locks, and the
helpers that resolve inodes to files and record changes."""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pyfuse3
import trio

from alicefs.backends.base import MAX_NAME_BYTES
from alicefs.catalog import FileMeta, PosixAttrs
from alicefs.catalog import Replica as CatalogReplica
from alicefs.fs.kernel_cache import KernelCache
from alicefs.fs.migration import MountCoordinator
from alicefs.fs.namespace import (
    PROJECTS_VIEW,
    STATUS_VIEW,
    FileNode,
    location_view,
    logical_path_of,
    type_view,
    view_path,
)
from alicefs.fs.staging import Staging
from alicefs.fs.state import MountState
from alicefs.fs.uploads import UploadQueue
from alicefs.layout import LOCATIONS, PROJECTS, STATUS_DIR, TYPES
from alicefs.media import CATEGORIES

if TYPE_CHECKING:
    from alicefs.sync import SyncTracker

log = logging.getLogger(__name__)

T = TypeVar("T")

STATUS_FILES = ("locations.json", "sync.json", "queue.json")
UPLOAD_WORKERS = 4


def fuse_errors(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Let only FUSEErrors out of a handler (DESIGN.md §3)."""

    @functools.wraps(method)
    async def wrapper(self: OperationsBase, *args: Any, **kwargs: Any) -> T:
        try:
            return await method(self, *args, **kwargs)
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
        finally:
            if self.kernel_cache is not None:
                await self.kernel_cache.request_done()

    return wrapper


def fuse_error(code: int) -> pyfuse3.FUSEError:
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
    next_offset: int = -1  # where a sequential reader reads next (-1: nothing read yet)
    run_start: int = 0  # where its reads began to follow each other
    stream: Any = None  # the ObjectStream its sequential object-store reads come from
    node: FileNode | None = None  # the file itself, whatever it is called now
    # False once the backing filesystem refused a non-blocking read (RWF_NOWAIT): every
    # read of this handle then goes to a worker thread
    page_cache_reads: bool = True


@dataclass
class OperationsBase(pyfuse3.Operations):
    state: MountState
    # With `background`, the filesystem queues work for its own workers (run_background):
    # re-placement of new files, closing descriptors (FUSE ignores what release returns,
    # and a close on a network filesystem may take a while), reading ahead of sequential
    # readers of object stores. Without, none of that happens (descriptors are closed
    # before release returns).
    background: bool = False
    _handles: dict[int, Handle] = field(default_factory=dict)
    _next_fh: int = 1
    _cached_version: dict[int, int] = field(default_factory=dict)
    # staging files being opened (a worker-thread hop away from having a handle): an upload
    # ending meanwhile must not let them go
    _pinned: Counter[Path] = field(default_factory=Counter)
    # sequential readers' streams of object-store files, by (location id, key, version)
    _streams: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _dir_listings: dict[int, list[tuple[str, int]]] = field(default_factory=dict)
    _next_dir_fh: int = 1
    # one lock per file while its staged upload, rename or unlink runs (id(node) -> lock)
    _node_locks: dict[int, trio.Lock] = field(default_factory=dict)
    # Directory renames and rmdir act on several locations one after another; anything else
    # that adds or removes names interleaved with them (the kernel locks only the parent
    # directories, not their ancestors) would act on a path that moved under it on some
    # locations and not yet on others. They hold it exclusively, the others shared. Taken
    # before any file lock.
    tree_lock: TreeLock = field(default_factory=lambda: TreeLock())
    # projects paths removed or renamed away since the scan in progress began: a scan's
    # view of the catalog must not bring them back
    forgotten: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        super().__init__()
        # Set while the kernel is served: told of what changes behind its back.
        self.kernel_cache: KernelCache | None = None
        self.relocations: trio.MemorySendChannel[str] | None = None
        self.closer: trio.MemorySendChannel[tuple[str | None, int]] | None = None
        # where sequential readers' streams run (run_background's nursery)
        self._stream_nursery: trio.Nursery | None = None
        if self.background:
            self.relocations, self._relocation_queue = trio.open_memory_channel[str](10_000)
            self.closer, self._close_queue = trio.open_memory_channel[
                tuple[str | None, int]](100_000)
        self.staging = Staging(self.state.settings.cache_dir / "staging")
        # Staged S3/GCS files waiting for upload; its workers run in the mount's nursery.
        self.uploads = UploadQueue(UPLOAD_WORKERS, self.state.usable)
        # How transfers (re-placement here, migration sent to the mount or on its
        # schedule) keep the files they move consistent with what the mount serves.
        self.mover = MountCoordinator(self)
        # The mount's sync tracker (set by the daemon), and what .alicefs/sync.json last
        # said: computed from the catalog in a worker thread when the file is opened.
        self.sync: SyncTracker | None = None
        self.sync_status = b"{}\n"
        ns = self.state.namespace
        # Fixed inodes, allocated up front so they are the same on every mount.
        for view, vpath in (("", ""), (PROJECTS_VIEW, ""), ("", TYPES), ("", LOCATIONS),
                            (STATUS_VIEW, "")):
            ns.inode_of(view, vpath)

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
            raise fuse_error(errno.ENOENT)
        text = os.fsdecode(name)
        if len(name) > MAX_NAME_BYTES:
            raise fuse_error(errno.ENAMETOOLONG)
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
            raise fuse_error(errno.ENOENT)
        if entry.view == STATUS_VIEW:
            return STATUS_VIEW, text
        return entry.view, f"{entry.vpath}/{text}" if entry.vpath else text

    def _removing(self, view: str, vpath: str) -> None:
        """This request removes or replaces the name (see KernelCache.removing)."""
        if self.kernel_cache is not None:
            self.kernel_cache.removing(view, vpath)

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
            raise fuse_error(errno.ENOENT if entry is None else errno.EISDIR)
        node = self.ns.files.get(entry.vpath)
        if node is None or self._exists(entry.view, entry.vpath) != "file":
            raise fuse_error(errno.ENOENT)
        return entry.view, entry.vpath, node

    def _attrs(self, inode: int) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        self._fill_attrs(attr, inode)
        return attr

    def _fill_attrs(self, attr: pyfuse3.EntryAttributes, inode: int) -> None:
        """Every field of `attr` for `inode` (readdir fills one object over and over: at
        library scale it is the cost of each entry listed)."""
        ns = self.ns
        found = ns.locate(inode)
        if found is None:
            raise fuse_error(errno.ENOENT)
        view, vpath = found
        options = self.state.options
        attr.st_ino = inode
        attr.entry_timeout = options.entry_timeout
        attr.attr_timeout = options.attr_timeout
        attr.st_blksize = 128 * 1024
        attr.st_rdev = 0
        read_only = view == "" or view[0] in "ls"  # locations/, status and the fixed top
        directory = ns.dirs.get(view, {}).get(vpath) if view else None
        if directory is not None or view == "" or (view == STATUS_VIEW and vpath == ""):
            owner = directory.owner if directory is not None else None
            attr.st_uid, attr.st_gid = owner if owner is not None else (ns.uid, ns.gid)
            mode = directory.mode if directory is not None else stat.S_IFDIR | 0o755
            attr.st_mode = mode & ~0o222 if read_only else mode
            attr.st_nlink = 2
            attr.st_size = 4096
            attr.st_blocks = 8
            mtime = directory.mtime_ns if directory is not None else ns.now_ns
            attr.st_mtime_ns = attr.st_ctime_ns = mtime
            atime = directory.atime_ns if directory is not None else None
            attr.st_atime_ns = mtime if atime is None else atime
            return
        if view == STATUS_VIEW:
            if vpath not in STATUS_FILES:
                raise fuse_error(errno.ENOENT)
            # Their content changes all the time: never cached.
            attr.entry_timeout = attr.attr_timeout = 0
            attr.st_uid, attr.st_gid = ns.uid, ns.gid
            attr.st_mode = stat.S_IFREG | 0o444
            attr.st_nlink = 1
            attr.st_size = len(self._status(vpath))
            attr.st_blocks = (attr.st_size + 511) // 512
            attr.st_mtime_ns = attr.st_ctime_ns = attr.st_atime_ns = time.time_ns()
            return
        node = ns.files.get(vpath)
        if node is None:
            raise fuse_error(errno.ENOENT)
        if view == PROJECTS_VIEW or view[0] == "t":
            if view != PROJECTS_VIEW and view != type_view(node.category):
                raise fuse_error(errno.ENOENT)
            # With one copy (most files), it is the one shown, usable or not.
            replica = node.replicas.sole()
            if replica is None:
                primary = self.state.primary(node)
                replicas = node.replicas
                replica = replicas[primary] if primary else next(iter(replicas.values()))
        else:
            replica = node.replicas.get(view[2:])
            if replica is None or replica.state == "missing":
                raise fuse_error(errno.ENOENT)
        regular = stat.S_ISREG(node.mode)
        attr.st_mode = node.mode & ~0o222 if read_only and regular else node.mode
        attr.st_nlink = ns.link_count(vpath)
        attr.st_uid, attr.st_gid = node.uid, node.gid
        attr.st_rdev = node.rdev
        size = replica.size if node.symlink_target is None else len(node.symlink_target)
        attr.st_size = size
        attr.st_blocks = (size + 511) // 512
        attr.st_mtime_ns = replica.mtime_ns
        attr.st_atime_ns = replica.mtime_ns if node.atime_ns is None else node.atime_ns
        attr.st_ctime_ns = node.ctime_ns

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
            raise fuse_error(errno.EROFS)

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
        vpath = self._current_vpath(node)
        if vpath is not None:  # through projects/: the kernel knows what it wrote there
            self.ns.file_changed(vpath, but=PROJECTS_VIEW)

    def _new_handle(self, handle: Handle) -> int:
        fh = self._next_fh
        self._next_fh += 1
        self._handles[fh] = handle
        return fh

    def _shown_changed(self, paths: list[str]) -> None:
        """The files at these logical paths show something new (see KernelCache)."""
        for path in paths:
            self.ns.file_changed(view_path(path))

    def _record_attrs(self, node: FileNode) -> None:
        special = node.is_special and not node.is_symlink
        names = self._names_synced(node)
        self._shown_changed(names)
        for path in names:
            self.state.queue.put_attrs(PosixAttrs(path, node.mode, node.uid, node.gid,
                                                  node.symlink_target,
                                                  node.rdev if special else None,
                                                  node.atime_ns))

    def record(self, node: FileNode, location_id: str, *, inode: int | None = None) -> None:
        names = self._names_synced(node)
        replica = node.replicas[location_id]
        now = time.time()
        state = "stale" if replica.state == "stale" else "present"
        if len(names) > 1:
            backing = self.ns.link_group(view_path(node.logical_path)).backing
            if location_id in backing:
                inode = backing[location_id] if inode is None else inode
            else:  # a copy of this name only (an older version a rename brought along)
                names = [node.logical_path]
        self._shown_changed(names)
        for path in names:
            self.state.queue.put_replica(CatalogReplica(
                location_id, path, replica.size, replica.mtime_ns, replica.content_hash,
                inode, replica.change_token, state, now))
        # Older versions elsewhere stay in the catalog as they are: the sync process compares
        # hashes and brings them level (DESIGN.md §6).

    def _record_metadata(self, node: FileNode) -> None:
        """What the user set through xattrs is theirs: marked `user`, never overwritten by a
        scan, and kept by migrations (metadata belongs to the logical path; xattrs to the
        file, so every hard link of it gets them)."""
        node.ctime_ns = time.time_ns()
        names = self._names_synced(node)
        self._shown_changed(names)
        for path in names:
            named = self.ns.files[view_path(path)]
            self.state.queue.put_metadata(FileMeta(
                path, named.category, named.mime_type, node.tags, "user", node.quality,
                "user" if node.quality is not None else None))

    def _linked(self, node: FileNode) -> bool:
        """Whether the file has other hard links (names) in the mount."""
        vpath = self._current_vpath(node)
        return vpath is not None and self.ns.link_count(vpath) > 1

    def _names_synced(self, node: FileNode) -> list[str]:
        """The logical paths of `node` and of its other hard links, if any, whose in-memory
        state is first made that of the name its inode stands for (operations through the
        inode change only that name's node): attributes, and the copies in the locations
        where the names are linked (a name may have copies of its own elsewhere)."""
        vpath = self._current_vpath(node)
        group = self.ns.link_group(vpath) if vpath is not None else None
        if group is None:
            return [node.logical_path]
        source = self.ns.files[self.ns.entry(self.ns.inode_of(PROJECTS_VIEW, vpath)).vpath]
        for name in group.names:
            twin = self.ns.files[name]
            if twin is source:
                continue
            before = self.ns.views_of(name)
            for location_id in group.backing:
                if location_id in source.replicas:
                    twin.replicas[location_id] = source.replicas[location_id].copy()
            twin.mode, twin.uid, twin.gid, twin.rdev = (source.mode, source.uid, source.gid,
                                                        source.rdev)
            twin.ctime_ns, twin.atime_ns, twin.version = (source.ctime_ns, source.atime_ns,
                                                          source.version)
            twin.tags, twin.quality = source.tags, source.quality
            self.ns.reindex(name, before)
        return [logical_path_of(name) for name in sorted(group.names)]

    async def _db(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(functools.partial(func, *args, **kwargs))

    def _upload_when_closed(self, key: tuple[str, str], node: FileNode) -> None:
        """Upload a staged file now, or when the handles writing it are released."""
        if self.open_for_writing(node):
            self.uploads.hold(key)
        else:
            self.uploads.request(key)


class TreeLock:
    """A readers-writer lock: many holders at once in `shared`, or one in `exclusive`; a
    waiting exclusive holder goes before shared holders that come after it."""

    def __init__(self) -> None:
        self._changed = trio.Condition()
        self._shared = 0
        self._exclusive = False
        self._writers_waiting = 0

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._changed:
            while self._exclusive or self._writers_waiting:
                await self._changed.wait()
            self._shared += 1
        try:
            yield
        finally:
            self._shared -= 1
            await self._notify()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._changed:
            self._writers_waiting += 1
            try:
                while self._exclusive or self._shared:
                    await self._changed.wait()
            finally:
                self._writers_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            self._exclusive = False
            await self._notify()

    async def _notify(self) -> None:
        with trio.CancelScope(shield=True):  # a release must wake the waiters, cancelled or not
            async with self._changed:
                self._changed.notify_all()


def replica_holders(node: FileNode) -> list[str]:
    """Locations an unlink or rename must act on: those whose replica is not known to be
    gone (a symbolic link or special file always: scans do not list links that lead out of
    a location, or nowhere, so they may be marked missing while they exist)."""
    return [lid for lid, r in node.replicas.items() if r.state != "missing" or node.is_special]
