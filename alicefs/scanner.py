"""Scanning: how the catalog learns what the locations hold (the guide's `MultiPathScanner`).

A scan lists a location in a worker thread, compares each batch with the catalog's bulk-loaded
signatures as it arrives, and reads only new and changed files — hashing them, sniffing their
type when the name says nothing, and picking up embedded XMP in the same pass — in parallel
worker threads under the location's capacity limiter. Results are written to the catalog in
batches, so an interrupted scan keeps what it finished. Locations are scanned concurrently.

Object-store objects are not downloaded: each is known by its listing (size, ETag or
generation) and, when alicefs wrote it, by the hash in its metadata. Objects other tools wrote
are hashed later, when something must compare them (alicefs.lazy_hash), or when a scan is
asked to (`hash_content`, `discover --hash`).
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import trio
from blake3 import blake3

from alicefs.backends import Backend, LocationUnavailableError, ObjectInfo, open_backend
from alicefs.backends.threaded import ThreadedBackend
from alicefs.catalog import Catalog, FileMeta, Replica, ReplicaIndex, ScanRecord
from alicefs.errors import ApiMisuseError, is_async_callable
from alicefs.media import UNKNOWN_MIME, MediaType, classify_name
from alicefs.model import LocationType, StorageLocation
from alicefs.progress import ScanProgress, scan_progress_display
from alicefs.registry import StorageRegistry
from alicefs.rules import FileAttrs, LocationStatus, type_matches
from alicefs.scan import (
    ListingComparer,
    is_sidecar,
    merge_metadata,
    paths_needing_metadata,
    project_of,
    sidecars_for,
)
from alicefs.signatures import Signatures
from alicefs.sniff import SNIFF_BYTES, sniff
from alicefs.xmp import MAX_PACKET_BYTES, PacketFinder, XmpMetadata, parse_xmp

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_CHUNK = 1 << 20
BIG_FILE = 16 << 20  # from here on, BLAKE3 may use every core for one file
LIST_BATCH = 2000
LIST_BUFFER = 16  # batches the lister may run ahead of the comparison
# Small files are read in batches, so that per-file thread hand-offs do not dominate.
READ_BATCH_FILES = 64
READ_BATCH_BYTES = 8 << 20
WRITE_BATCH = 5000
PROGRESS_INTERVAL = 0.1  # seconds between progress reports
XMP_CATEGORIES = frozenset({"image", "video"})

ProgressCallback = Callable[[str, int, int], "Awaitable[None]"]


@dataclass(frozen=True)
class ScanStats:
    location_id: str
    name: str
    files: int = 0
    bytes: int = 0
    new_files: int = 0
    changed_files: int = 0
    unchanged_files: int = 0
    missing_files: int = 0
    reappeared_files: int = 0  # cataloged as missing, listed again
    files_read: int = 0
    bytes_read: int = 0  # content bytes read: 0 on a rescan of an unchanged location
    seconds: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class DiscoverStats:
    locations: tuple[ScanStats, ...]

    @property
    def files(self) -> int:
        return sum(s.files for s in self.locations)

    @property
    def bytes_read(self) -> int:
        return sum(s.bytes_read for s in self.locations)

    @property
    def errors(self) -> dict[str, str]:
        return {s.name: s.error for s in self.locations if s.error}


@dataclass(frozen=True)
class AssetReplica:
    location_id: str
    location_name: str
    size: int
    mtime_ns: int
    content_hash: str | None
    state: str


@dataclass(frozen=True)
class Asset:
    """A logical file with everything the catalog knows of it."""

    logical_path: str
    project: str
    category: str
    mime_type: str
    tags: tuple[str, ...]
    quality: int | None
    replicas: tuple[AssetReplica, ...]


@dataclass(frozen=True)
class Examined:
    info: ObjectInfo
    content_hash: str | None  # None: the file changed while it was read; read again next scan
    media: MediaType
    embedded: XmpMetadata | None
    bytes_read: int


# ---------------------------------------------------------------------------------------------
# Blocking work, run in worker threads


def examine(backend: Backend, info: ObjectInfo, force: bool, hash_content: bool = False
            ) -> Examined:
    """Hash a file and learn its type and embedded XMP, reading its content once. An object
    is read only when `force`, or when `hash_content` and its metadata has no hash."""
    media = classify_name(info.key)
    want_xmp = media.category in XMP_CATEGORIES or media.mime_type == UNKNOWN_MIME
    if backend.location.type is not LocationType.LOCAL and not force:
        if info.content_hash is None and not backend.lists_metadata:
            # An S3 listing carries no metadata: the stat has the stored hash and the
            # original modification time (the listing's is the upload time).
            info = backend.stat(info.key)
        known = info.content_hash
        if known is not None or not hash_content:
            # Read nothing but (for nameless types) the signature bytes: written by alicefs,
            # the hash is in the object's metadata; else it is computed when needed.
            read = 0
            if media.mime_type == UNKNOWN_MIME:
                head = backend.read(info.key, 0, SNIFF_BYTES)
                read = len(head)
                media = sniff(head) or media
            return Examined(info, known, media, None, read)
    hasher = blake3(max_threads=blake3.AUTO if info.size >= BIG_FILE else 1)
    finder = PacketFinder() if want_xmp else None
    read = 0
    head = b""
    local = backend.location.type is LocationType.LOCAL
    changed = False
    # Small files in one read of their listed size (+1 to see the end): asking a buffered
    # stream for a whole chunk would allocate a megabyte for every small file.
    chunk_size = min(READ_CHUNK, info.size + 1)
    with backend.open_read(info.key) as stream:
        while chunk := stream.read(chunk_size):
            if not read:
                head = chunk[:SNIFF_BYTES]
            read += len(chunk)
            hasher.update(chunk)
            if finder is not None and not finder.done:
                finder.feed(chunk)
        if local:
            # The file read must be the file listed, unmodified: else the hash would be
            # recorded against a size and mtime it does not belong to.
            after = os.fstat(stream.fileno())
            changed = (after.st_size, after.st_mtime_ns, after.st_ino) != (
                info.size, info.mtime_ns, info.inode)
    if media.mime_type == UNKNOWN_MIME:
        media = sniff(head) or media
    embedded = parse_xmp(finder.packet) if finder is not None and finder.packet else None
    content_hash: str | None = hasher.hexdigest()
    if changed or read != info.size:
        log.info("%s changed while being read; it is read again at the next scan", info.key)
        content_hash = None
    return Examined(info, content_hash, media, embedded, read)


def examine_batch(backend: Backend, infos: Sequence[ObjectInfo], force: bool,
                  hash_content: bool) -> list[Examined]:
    """examine() for several small files in one worker-thread hop (run by trio.to_thread);
    files deleted since they were listed are left out (the next scan sees them gone). A scan
    cancelled meanwhile (an unmount) stops between files."""
    results = []
    for info in infos:
        trio.from_thread.check_cancelled()
        try:
            results.append(examine(backend, info, force, hash_content))
        except FileNotFoundError:
            continue
    return results


def read_sidecar(backend: Backend, key: str) -> tuple[XmpMetadata | None, int]:
    with backend.open_read(key) as stream:
        data = stream.read(MAX_PACKET_BYTES)
    return parse_xmp(data), len(data)


def read_embedded(backend: Backend, key: str) -> tuple[XmpMetadata | None, int]:
    """Only the embedded XMP of a file (its sidecar changed, its content did not)."""
    finder = PacketFinder()
    read = 0
    with backend.open_read(key) as stream:
        while not finder.done and (chunk := stream.read(READ_CHUNK)):
            read += len(chunk)
            finder.feed(chunk)
    return (parse_xmp(finder.packet) if finder.packet else None), read


# ---------------------------------------------------------------------------------------------


class _ProgressEmitter:
    """Throttles progress reports and feeds both the guide's callback and a rich sink."""

    def __init__(self, callback: ProgressCallback | None,
                 sink: Callable[[ScanProgress], None] | None):
        if callback is not None and not is_async_callable(callback):
            raise ApiMisuseError("progress_callback must be an async function "
                                 "(async def f(message, current, total)), as the guide shows")
        self.callback = callback
        self.sink = sink
        self._last: dict[str, float] = {}

    async def emit(self, progress: ScanProgress, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last.get(progress.location_name, 0.0) < PROGRESS_INTERVAL:
            return
        self._last[progress.location_name] = now
        if self.sink is not None:
            self.sink(progress)
        if self.callback is not None:
            total = max(progress.files_listed, progress.files_done)
            await self.callback(f"{progress.location_name}: {progress.phase}",
                                progress.files_done, total)


class MultiPathScanner:
    """Scans locations into the catalog. Methods are async (trio); blocking work runs in
    worker threads."""

    def __init__(self, catalog: Catalog, registry: StorageRegistry | None = None, *,
                 skip_hidden: bool = True,
                 backend_factory: Callable[..., Backend] = open_backend,
                 backends: dict[str, ThreadedBackend] | None = None):
        self.catalog = catalog
        if registry is not None:
            registry.attach(catalog)
        self.registry = registry or StorageRegistry(catalog)
        self.skip_hidden = skip_hidden
        self.backend_factory = backend_factory
        # The process's open backends by location id (the mount's): a scan shares their
        # clients and capacity limiters, so a location never sees more than its
        # max_concurrent calls from one process. Locations not in it are opened here.
        self.backends: dict[str, ThreadedBackend] = backends if backends is not None else {}
        self._catalog_limiter = trio.CapacityLimiter(1)

    async def _db(self, func: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(func, *args, limiter=self._catalog_limiter)

    async def discover_all_assets(self, force_scan: bool = False, show_progress: bool = False,
                                  progress_callback: ProgressCallback | None = None, *,
                                  hash_content: bool = False,
                                  progress_sink: Callable[[ScanProgress], None] | None = None,
                                  ) -> DiscoverStats:
        """Scan every location that is not offline, concurrently. `force_scan` re-reads
        every file; `hash_content` also reads the objects of object stores whose hash is not
        known yet (otherwise they are hashed when something needs to compare them)."""
        locations = [loc for loc in await self._db(self.registry.list_locations)
                     if loc.status is not LocationStatus.OFFLINE]
        return await self.scan_locations(locations, force_scan, show_progress,
                                         progress_callback, hash_content=hash_content,
                                         progress_sink=progress_sink)

    async def scan_locations(self, locations: Sequence[StorageLocation],
                             force_scan: bool = False, show_progress: bool = False,
                             progress_callback: ProgressCallback | None = None, *,
                             hash_content: bool = False,
                             progress_sink: Callable[[ScanProgress], None] | None = None,
                             ) -> DiscoverStats:
        """Scan these locations, concurrently."""
        return DiscoverStats(tuple(await self._scan_many(
            locations, _Reading(force_scan, hash_content), show_progress, progress_callback,
            progress_sink)))

    async def scan_location(self, location: StorageLocation | str, force_scan: bool = False,
                            show_progress: bool = False,
                            progress_callback: ProgressCallback | None = None, *,
                            hash_content: bool = False,
                            progress_sink: Callable[[ScanProgress], None] | None = None,
                            ) -> ScanStats:
        """Scan one location, given as a StorageLocation or by id or name."""
        if isinstance(location, str):
            location = await self._db(self.registry.get_location, location)
        [stats] = await self._scan_many([location], _Reading(force_scan, hash_content),
                                        show_progress, progress_callback, progress_sink)
        return stats

    async def _scan_many(self, locations: Sequence[StorageLocation], reading: _Reading,
                         show_progress: bool, callback: ProgressCallback | None,
                         sink: Callable[[ScanProgress], None] | None) -> list[ScanStats]:
        if show_progress and sink is None:
            with scan_progress_display() as display:
                return await self._scan_many(locations, reading, False, callback, display)
        emitter = _ProgressEmitter(callback, sink)
        results: dict[str, ScanStats] = {}

        async def run(location: StorageLocation) -> None:
            results[location.location_id] = await self._scan_one(location, reading, emitter)

        with _fewer_gc_passes():
            async with trio.open_nursery() as nursery:
                for location in locations:
                    nursery.start_soon(run, location)
        return [results[loc.location_id] for loc in locations]

    async def _scan_one(self, location: StorageLocation, reading: _Reading,
                        emitter: _ProgressEmitter) -> ScanStats:
        started = time.time()
        shared = self.backends.get(location.location_id)
        if shared is None:
            try:
                shared = ThreadedBackend(self.backend_factory(location,
                                                              skip_hidden=self.skip_hidden))
            except LookupError as exc:
                return ScanStats(location.location_id, location.name, error=str(exc))
        scan = _LocationScan(self, shared, reading, emitter)
        try:
            stats = await scan.run()
        except LocationUnavailableError as exc:
            await emitter.emit(scan.progress("failed"), force=True)
            return ScanStats(location.location_id, location.name, error=exc.strerror or str(exc))
        return replace(stats, seconds=time.time() - started)

    async def find_project_assets(self, project: str, types: Sequence[str] | None = None
                                  ) -> list[Asset]:
        """Every asset of exactly this project, with all its replicas. `types` are rule type
        entries (`image`, `video/*`, `.png`); an asset matching any of them is kept."""
        return await self._db(self._project_assets, project, tuple(types or ()))

    def _project_assets(self, project: str, types: tuple[str, ...]) -> list[Asset]:
        names = {loc.location_id: loc.name for loc in self.catalog.locations()}
        if project == "_unsorted":
            replicas = [r for r in self.catalog.replicas() if "/" not in r.logical_path]
        else:
            replicas = self.catalog.replicas_under(project + "/")
        by_path: dict[str, list[Replica]] = {}
        for replica in replicas:
            by_path.setdefault(replica.logical_path, []).append(replica)
        metadata = self.catalog.metadata_for(list(by_path))
        assets = []
        for path, group in sorted(by_path.items()):
            meta = metadata.get(path) or _fallback_meta(path)
            if types:
                attrs = FileAttrs(path, group[0].size, 0.0, meta.mime_type, meta.category)
                if not any(type_matches(t, attrs) for t in types):
                    continue
            assets.append(Asset(
                path, project_of(path), meta.category, meta.mime_type, meta.tags, meta.quality,
                tuple(AssetReplica(r.location_id, names.get(r.location_id, r.location_id),
                                   r.size, r.mtime_ns, r.content_hash, r.state)
                      for r in group)))
        return assets


def _fallback_meta(path: str) -> FileMeta:
    media = classify_name(path)
    return FileMeta(path, media.category, media.mime_type)


@dataclass(frozen=True)
class _Reading:
    """What a scan reads besides new and changed files."""

    force: bool  # every file, again
    hash_content: bool  # objects of object stores whose hash is not known yet


@dataclass
class _LocationScan:
    """One scan of one location."""

    scanner: MultiPathScanner
    backend: ThreadedBackend
    reading: _Reading
    emitter: _ProgressEmitter
    comparer: ListingComparer = field(default_factory=lambda: ListingComparer(
        ReplicaIndex(Signatures(), set(), set(), list, list)))
    listing_complete: bool = False  # every file listed was handed out to be read
    all_listed: bool = False  # every file listed and compared (so every sidecar known)
    files_to_read: int = 0
    bytes_to_read: int = 0
    files_read: int = 0
    bytes_read: int = 0
    # key -> (media type, embedded XMP) of the files read whose metadata is not stored yet:
    # all storing it needs of them (stored with their replicas once the listing is
    # complete, so a first discover never holds it for every file)
    examined: dict[str, tuple[MediaType, XmpMetadata | None]] = field(default_factory=dict)
    examined_sidecars: list[str] = field(default_factory=list)  # sidecars read
    # files whose metadata was stored with what a listed sidecar says
    described: set[str] = field(default_factory=set)
    pending_replicas: list[Replica] = field(default_factory=list)

    @property
    def location(self) -> StorageLocation:
        return self.backend.location

    @property
    def force(self) -> bool:
        return self.reading.force

    def progress(self, phase: str) -> ScanProgress:
        c = self.comparer
        return ScanProgress(self.location.name, phase, c.files, c.unchanged_files + self.files_read,
                            self.files_to_read, self.bytes_to_read, self.bytes_read,
                            self.listing_complete)

    async def run(self) -> ScanStats:
        location = self.location
        db = self.scanner._db
        await self.backend.call("probe")
        started = time.time()
        workers = int(self.backend.limiter.total_tokens)
        send_work, receive_work = trio.open_memory_channel[list[ObjectInfo]](workers * 2)
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(self._examine_worker, receive_work.clone())
            receive_work.close()
            async with send_work:
                await self._list(send_work)
        await self._flush_replicas()
        vanished = await db(self.comparer.vanished)
        if self.backend.backend.skip_hidden:
            # Hidden files are not listed, so not listing them says nothing: one made through
            # the mount (a .git directory, say) is not missing.
            vanished = [key for key in vanished if not _is_hidden(key)]
        if vanished and self.comparer.files == 0:
            # An unplugged disk leaves its empty mount point behind: that is not the user
            # deleting every file, so nothing is marked missing.
            raise LocationUnavailableError(
                f"location {location.name!r} lists no files but the catalog has "
                f"{len(vanished)}: not marking them missing (is the disk mounted?)")
        await self._finish_metadata(vanished)
        await db(self.scanner.catalog.mark_missing, location.location_id, vanished)
        await db(self.scanner.catalog.settle_sync_bases)
        c = self.comparer
        await db(self.scanner.catalog.record_scan, ScanRecord(
            location.location_id, started, time.time(), c.files, c.bytes, c.new_files,
            c.changed_files, len(vanished), self.bytes_read, self.force))
        await self.emitter.emit(self.progress("done"), force=True)
        return ScanStats(location.location_id, location.name, c.files, c.bytes, c.new_files,
                         c.changed_files, c.unchanged_files, len(vanished),
                         len(c.reappeared), self.files_read, self.bytes_read)

    async def _list(self, send_work: trio.MemorySendChannel[list[ObjectInfo]]) -> None:
        """List in a worker thread, handing batches back to trio as they fill."""
        object_store = self.location.type is not LocationType.LOCAL
        index = await self.scanner._db(self.scanner.catalog.replica_index,
                                       self.location.location_id, object_store,
                                       not self.reading.hash_content)
        self.comparer = ListingComparer(index, self.force, object_store)
        await self.emitter.emit(self.progress("listing"), force=True)
        send_batch, receive_batch = trio.open_memory_channel[list[ObjectInfo]](LIST_BUFFER)
        backend = self.backend.backend
        unchanged_if = None if self.force else index.trusted.take_if_unchanged
        comparer = self.comparer

        def produce() -> None:
            # The comparison runs here, in the listing thread: a rescan's per-file work then
            # never has to cross threads, and only files to read come back to trio.
            batch: list[ObjectInfo | str] = []
            for info in backend.list(unchanged_if=unchanged_if):
                batch.append(info)
                if len(batch) >= LIST_BATCH:
                    trio.from_thread.run(send_batch.send, comparer.add(batch))
                    batch = []
            trio.from_thread.run(send_batch.send, comparer.add(batch))

        async def producer() -> None:
            async with send_batch:
                await trio.to_thread.run_sync(produce)
            self.all_listed = True

        async with trio.open_nursery() as nursery:
            nursery.start_soon(producer)
            async with receive_batch:
                async for to_read in receive_batch:
                    self.files_to_read += len(to_read)
                    self.bytes_to_read += sum(info.size for info in to_read)
                    await self.emitter.emit(self.progress("listing"))
                    for work in _read_batches(to_read):
                        await send_work.send(work)
        self.listing_complete = True
        await self.scanner._db(self.scanner.catalog.mark_present, self.location.location_id,
                               self.comparer.reappeared)

    async def _examine_worker(self, receive: trio.MemoryReceiveChannel[list[ObjectInfo]]
                              ) -> None:
        async with receive:
            async for work in receive:
                results = await self.backend.run(examine_batch, self.backend.backend, work,
                                                 self.force, self.reading.hash_content)
                now = time.time()
                for result in results:
                    info = result.info
                    if is_sidecar(info.key):
                        self.examined_sidecars.append(info.key)
                    else:
                        self.examined[info.key] = (result.media, result.embedded)
                    self.files_read += 1
                    self.bytes_read += result.bytes_read
                    self.pending_replicas.append(Replica(
                        self.location.location_id, info.key, info.size, info.mtime_ns,
                        result.content_hash, info.inode, info.change_token, "present", now))
                if len(self.pending_replicas) >= WRITE_BATCH:
                    await self._flush_replicas()
                await self.emitter.emit(self.progress("reading"))

    async def _flush_replicas(self) -> None:
        batch, self.pending_replicas = self.pending_replicas, []
        # Once everything is listed every sidecar is known, so the metadata of the files read
        # so far is final: stored right after their replicas (never before, or an interrupted
        # scan would leave metadata of files the catalog does not hold).
        examined: dict[str, tuple[MediaType, XmpMetadata | None]] = {}
        if self.all_listed:
            examined, self.examined = self.examined, {}
        await self.scanner._db(functools.partial(self.scanner.catalog.put_replicas, batch,
                                                 found_by_scan=True))
        await self._store_metadata_of(examined, examined)

    async def _finish_metadata(self, vanished: list[str]) -> None:
        """After the last replicas (and the files read with them): the metadata of every
        file whose sidecar appeared, changed or vanished, but those stored already with
        what the sidecar says."""
        sidecars_changed = self.examined_sidecars + [k for k in vanished if is_sidecar(k)]
        if not sidecars_changed:
            return
        listed = await self.scanner._db(self.comparer.listed_keys)
        companions = paths_needing_metadata((), sidecars_changed, listed) - self.described
        await self._store_metadata_of(companions, {})

    async def _store_metadata_of(self, keys: Iterable[str],
                                 examined: Mapping[str, tuple[MediaType, XmpMetadata | None]]
                                 ) -> None:
        """Media type, tags and quality of files (not sidecars), with what their listed
        sidecars say: `examined` has what reading a file found; a file not read has its
        embedded XMP read if its sidecar does not say everything."""
        found: list[tuple[str, MediaType | None, XmpMetadata | None, XmpMetadata | None]] = []
        for key in sorted(keys):
            sidecar = None
            sidecar_keys = sidecars_for(key, self.comparer.listed_sidecars)
            if sidecar_keys:
                self.described.add(key)
            for sidecar_key in sidecar_keys:
                sidecar = await self._read(read_sidecar, sidecar_key)
                if sidecar is not None:
                    break
            result = examined.get(key)
            if result is not None:
                found.append((key, result[0], sidecar, result[1]))
            else:
                embedded = None
                if (classify_name(key).category in XMP_CATEGORIES
                        and not _sidecar_covers(sidecar)):
                    embedded = await self._read(read_embedded, key)
                found.append((key, None, sidecar, embedded))
            # In batches: DuckDB holds a transaction's rows in memory until it commits (one
            # transaction for a first discover of 100,000 files took 130 MiB).
            if len(found) >= WRITE_BATCH:
                await self.scanner._db(self._store_metadata, found)
                found = []
        if found:
            await self.scanner._db(self._store_metadata, found)

    def _store_metadata(self, found: Sequence[tuple[str, MediaType | None, XmpMetadata | None,
                                                    XmpMetadata | None]]) -> None:
        """Merge what this scan found with the catalog in one transaction, so scans of other
        locations holding the same files cannot interleave between the read and the write
        of a file's metadata."""
        catalog = self.scanner.catalog
        location_id = self.location.location_id
        with catalog.transaction():
            priority = {loc.location_id: loc.priority for loc in catalog.locations()}
            existing = catalog.metadata_for([key for key, *_ in found])
            records = []
            for key, media, sidecar, embedded in found:
                old = existing.get(key)
                if media is None:
                    media = (MediaType(old.mime_type, old.category) if old
                             else classify_name(key))
                merged = merge_metadata(key, media, old, sidecar, embedded, location_id,
                                        priority)
                if merged != old:
                    records.append(merged)
            catalog.put_metadata(records)

    async def _read(self, func: Callable[[Backend, str], tuple[T, int]], key: str) -> T | None:
        """func's value for key, counting the bytes it read; None if the file is gone."""
        try:
            value, read = await self.backend.run(func, self.backend.backend, key)
        except FileNotFoundError:
            return None
        self.bytes_read += read
        return value


_gc_users = 0


@contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """A scan allocates a few objects per file while holding the whole catalog signature
    table: with the default thresholds the cyclic collector runs hundreds of times per scan,
    walking all of it each time (a third of a 100,000-file rescan). Scans create no cycles
    worth collecting early, so collection runs rarely while any scan is in progress."""
    global _gc_users
    if _gc_users == 0:
        _gc_saved[:] = gc.get_threshold()
        gc.set_threshold(max(_gc_saved[0], 100_000), *_gc_saved[1:])
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0:
            gc.set_threshold(*_gc_saved)


_gc_saved: list[int] = []


def _is_hidden(key: str) -> bool:
    return any(part.startswith(".") for part in key.split("/"))


def _read_batches(infos: Sequence[ObjectInfo]) -> Iterator[list[ObjectInfo]]:
    """Group small files into read batches; a large file travels alone."""
    batch: list[ObjectInfo] = []
    batch_bytes = 0
    for info in infos:
        if info.size >= READ_BATCH_BYTES:
            yield [info]
            continue
        batch.append(info)
        batch_bytes += info.size
        if len(batch) >= READ_BATCH_FILES or batch_bytes >= READ_BATCH_BYTES:
            yield batch
            batch, batch_bytes = [], 0
    if batch:
        yield batch


def _sidecar_covers(sidecar: XmpMetadata | None) -> bool:
    return sidecar is not None and bool(sidecar.tags) and sidecar.rating is not None
