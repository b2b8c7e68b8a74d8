"""Open, read, write, flush, fsync and release: data to and from the best replica (local
descriptors, ranged object reads, staging files for object-store writes), and the
background workers that close descriptors and read ahead."""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from pathlib import Path
from typing import Any, BinaryIO

import pyfuse3
import trio
from blake3 import blake3

from alicefs.backends.base import LocationUnavailableError, RetriesExhaustedError
from alicefs.fs.base import Handle, OperationsBase, fuse_error, fuse_errors
from alicefs.fs.chunk_cache import CHUNK_SIZE, ChunkCache
from alicefs.fs.namespace import STATUS_VIEW, FileNode, Replica
from alicefs.fs.streams import STREAM_AFTER, ObjectStream, sequential, window_for
from alicefs.rules import SpaceInfo
from alicefs.transfer.journal import HANDOVER

log = logging.getLogger(__name__)


class FileIO(OperationsBase):
    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        entry = self.ns.entry(inode)
        if entry is None:
            raise fuse_error(errno.ENOENT)
        writable = (flags & os.O_ACCMODE) != os.O_RDONLY
        if entry.view == STATUS_VIEW:
            if writable:
                raise fuse_error(errno.EROFS)
            if entry.vpath == "sync.json":
                await self.refresh_sync_status()
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
            raise fuse_error(errno.EIO)
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
        """An object-store read, through the chunk cache; a sequential reader's chunks come
        from its stream (alicefs.fs.streams), others' from ranged GETs."""
        location_id = handle.location_id
        replica = node.replicas.get(location_id)
        if replica is None:
            log.error("%s: its location was removed while it was open", node.logical_path)
            raise fuse_error(errno.EIO)
        end = min(off + size, replica.size)
        if off >= end:
            return b""
        version = replica.content_hash or f"{replica.size}:{replica.mtime_ns}"
        first, last = off // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
        if handle.next_offset < 0 or not sequential(handle.next_offset, off):
            handle.run_start = off
        handle.next_offset = end
        stream = self._stream(handle, node.logical_path, replica, version, end, first)
        parts = []
        for index in range(first, last + 1):
            base = index * CHUNK_SIZE
            parts.append(await self._chunk_part(location_id, node.logical_path, version, index,
                                                max(off, base) - base,
                                                min(end, base + CHUNK_SIZE) - base, stream))
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _chunk_part(self, location_id: str, key: str, version: str, index: int,
                          start: int, stop: int, stream: ObjectStream | None) -> bytes:
        """Bytes `start` to `stop` of chunk `index`: from the cache (without a thread hop
        when the page cache holds them), after waiting for the stream that is bringing it,
        else fetched."""
        if stream is not None and stream.serves(index):
            stream.want(index)
            await stream.arrival(index)
        cache = self.state.chunks
        name = ChunkCache.name(location_id, key, version, index)
        if cache is not None and cache.contains(name):
            data = cache.read(name, start, stop - start, wait=False)
            if data is None:
                data = await trio.to_thread.run_sync(cache.read, name, start, stop - start)
            if data is not None:
                return data
        return (await self.fetch_chunk(location_id, key, version, index))[start:stop]

    def _stream(self, handle: Handle, key: str, replica: Replica, version: str, end: int,
                first: int) -> ObjectStream | None:
        """The stream serving a read from chunk `first` to `end`: the handle's, or once the
        handle has read STREAM_AFTER bytes in a row, one another handle started on the same
        version or a new one from the first chunk not cached."""
        current = handle.stream
        if current is not None and current.near(first):
            return current
        cache = self.state.chunks
        if (self._stream_nursery is None or cache is None
                or end - handle.run_start < STREAM_AFTER):
            return None
        location_id = handle.location_id
        assert location_id is not None
        position = first
        while (position * CHUNK_SIZE < replica.size
               and cache.contains(ChunkCache.name(location_id, key, version, position))):
            position += 1
        if position * CHUNK_SIZE >= replica.size:
            return None  # the rest is cached
        stream = self._streams.get((location_id, key, version))
        if stream is None or not stream.near(position):
            stream = ObjectStream(location_id, key, version, replica.change_token, replica.size,
                                  position, window_for(self.state.settings.cache_size))
            self._streams[(location_id, key, version)] = stream
            self._stream_nursery.start_soon(self._run_stream, stream)
            log.debug("streaming %s from chunk %d", key, position)
        if handle.stream is not stream:
            self._leave_stream(handle)
            stream.users += 1
            handle.stream = stream
        return stream

    async def _run_stream(self, stream: ObjectStream) -> None:
        tb = self.state.backends[stream.location_id]
        chunks = self.state.chunks
        assert chunks is not None
        try:
            await stream.run(tb.backend.open_stream, chunks, tb.limiter)
        finally:
            key = (stream.location_id, stream.key, stream.version)
            if self._streams.get(key) is stream:
                del self._streams[key]

    def _leave_stream(self, handle: Handle) -> None:
        """The handle no longer reads through its stream; the last one to leave ends it."""
        stream, handle.stream = handle.stream, None
        if stream is not None:
            stream.users -= 1
            if stream.users == 0:
                stream.close()

    async def fetch_chunk(self, location_id: str, key: str, version: str, index: int) -> bytes:
        """Chunk `index` by one ranged GET, kept in the cache."""
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
        cache = self.state.chunks
        if cache is not None:
            await trio.to_thread.run_sync(cache.put,
                                          ChunkCache.name(location_id, key, version, index), data)
        return data

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handles[fh]
        if not handle.writable or handle.fd is None:
            raise fuse_error(errno.EBADF)
        node = handle.node
        if node is None:
            raise fuse_error(errno.EBADF)
        try:
            written, handle.last_stat = await self._thread(handle.location_id, _pwrite_stat,
                                                           handle.fd, buf, off)
        except OSError as exc:
            if exc.errno != errno.ENOSPC or handle.staged is not None or \
                    self._linked(node):
                raise  # a hard-linked file cannot move without its other names
            written = await self._write_elsewhere(handle, node, off, buf)
            handle.last_stat = None
        if handle.hasher is not None:
            if off == handle.hashed_upto:
                # A view, not a slice: a slice would copy every write once more.
                handle.hasher.update(memoryview(buf)[:written])
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
            replica.mtime_ns = node.ctime_ns = time.time_ns()
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
            raise fuse_error(errno.ENOSPC)
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
        raise fuse_error(errno.ENOSYS)

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
        self._leave_stream(handle)
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

    async def close_descriptors(self) -> None:
        """Close what releases queued (`closer`), under the location's capacity limiter."""
        async for location_id, fd in self._close_queue:
            limiter = self.state.backends[location_id].limiter if location_id else None
            try:
                await trio.to_thread.run_sync(os.close, fd, limiter=limiter)
            except Exception as exc:  # one failing close must never stop the service
                log.warning("closing a file of %s: %s", location_id, exc)


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
