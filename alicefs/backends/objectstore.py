"""What the S3 and GCS backends share: the mapping between logical paths and object keys
under a prefix, the alicefs metadata every object carries, upload sources (in memory, the
caller's seekable file, a spool, or a one-shot stream), the ranged reader that serves
`open_read`, the runner for parallel multipart parts, and ObjectStoreBackend, the base of
both backends.
"""

from __future__ import annotations

import contextlib
import errno
import io
import itertools
import logging
import mimetypes
import tempfile
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, Literal, TypeVar

from alicefs.backends.base import (
    TEMP_PREFIX,
    Backend,
    IntegrityError,
    LocationUnavailableError,
    ObjectInfo,
    RetriesExhaustedError,
    UnsafeKeyError,
    WriteResult,
    check_key,
)
from alicefs.hashing import CHUNK_SIZE, hash_bytes, hash_stream, new_hasher
from alicefs.model import StorageLocation
from alicefs.rules import SpaceInfo

T = TypeVar("T")

log = logging.getLogger(__name__)

MiB = 1 << 20
HASH_METADATA = "alicefs-blake3"
MTIME_METADATA = "alicefs-mtime-ns"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
mimetypes.init()  # once, here: lazy initialisation from several threads at once is racy


def logical_key(object_key: str, prefix: str, skip_hidden: bool) -> str | None:
    """The logical path an object key under `prefix` stands for, or None when the object is
    not a file of this location: outside the prefix, a "directory marker" (a key ending in
    '/'), a key that is no valid logical path (`a//b`, `..`), a temporary object, or a hidden
    name when `skip_hidden`."""
    if not object_key.startswith(prefix):
        return None
    key = object_key[len(prefix):]
    if not key or key.endswith("/"):
        log.debug("skipping directory marker %r", object_key)
        return None
    try:
        check_key(key)
    except UnsafeKeyError:
        log.debug("skipping object %r: not a valid logical path", object_key)
        return None
    parts = key.split("/")
    if any(part.startswith(TEMP_PREFIX) for part in parts):
        return None
    if skip_hidden and any(part.startswith(".") for part in parts):
        return None
    return key


def list_prefix(prefix: str) -> str:
    """A `list()` prefix as a key prefix: "" or a checked path with one trailing '/'."""
    return f"{check_key(prefix.rstrip('/'))}/" if prefix else ""


def datetime_ns(moment: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond (float seconds lose precision)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1000


def metadata_mtime_ns(metadata: dict[str, str] | None, fallback_ns: int) -> int:
    """The original mtime stored at upload, else the store's own timestamp."""
    value = (metadata or {}).get(MTIME_METADATA)
    if value is not None:
        with contextlib.suppress(ValueError):
            return int(value)
    return fallback_ns


def upload_metadata(content_hash: str, mtime_ns: int | None) -> dict[str, str]:
    # Without a given mtime the upload time is recorded, so stat is stable across copies.
    mtime = mtime_ns if mtime_ns is not None else time.time_ns()
    return {HASH_METADATA: content_hash, MTIME_METADATA: str(mtime)}


def content_type_of(key: str) -> str:
    return mimetypes.guess_type(key, strict=False)[0] or "application/octet-stream"


def _remaining_size(data: object) -> int | None:
    """Bytes left in a seekable file object, or None for streams and iterables."""
    seekable = getattr(data, "seekable", None)
    if seekable is None:
        return None
    try:
        if not seekable():
            return None
        position = data.tell()  # type: ignore[attr-defined]
        end = data.seek(0, io.SEEK_END)  # type: ignore[attr-defined]
        data.seek(position)  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return None
    return max(0, end - position)


def _iter_chunks(data: BinaryIO | Iterable[bytes]) -> Iterator[bytes]:
    if hasattr(data, "read"):
        while chunk := data.read(CHUNK_SIZE):  # type: ignore[union-attr]
            yield chunk
    else:
        for chunk in data:
            if chunk:
                yield bytes(chunk)


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    """`size` bytes, or fewer only at end of file (raw files may return short reads)."""
    parts = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            break
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def _blocks(chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    """The bytes of `chunks` re-cut into blocks of exactly `size` (the last may be shorter)."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class UploadSource:
    """The bytes of one write, with the hash their object metadata announces known before the
    first request (S3 and GCS fix metadata when an upload starts).

    Build it with `upload_source()`. `small` holds everything when the data fits the in-memory
    limit. Otherwise the data is read from a seekable `file` (the caller's own, or a spool) or,
    when the caller vouches for the hash and the store can take a one-shot stream, straight
    from the caller's iterator. Whatever is sent is hashed again on the way (`blocks()`,
    `reader()`), and `verify()` refuses to publish when that differs from the announced or the
    expected hash.
    """

    def __init__(self, *, announced_hash: str, size: int | None, small: bytes | None = None,
                 file: BinaryIO | None = None, start: int = 0,
                 stream: Iterator[bytes] | None = None):
        self.announced_hash = announced_hash
        self.size = size
        self.small = small
        self.file = file
        self.start = start
        self._stream = stream
        self._hasher = new_hasher()
        self._sent = 0

    def blocks(self, block_size: int) -> Iterator[bytes]:
        """The data (of a file- or stream-backed source) in blocks of `block_size`, hashed as
        they are produced. A file-backed source can be read again; a stream only once."""
        self._restart()
        if self.file is not None:
            self.file.seek(self.start)
            chunks: Iterable[bytes] = iter(lambda: _read_exactly(self.file, block_size), b"")
        elif self._stream is not None:
            chunks, self._stream = _blocks(self._stream, block_size), None
        else:
            raise ValueError("blocks() of an in-memory or already consumed source")
        for block in chunks:
            self._record(block)
            yield block

    def reader(self) -> BinaryIO:
        """A fresh file object over the data (from the start) that hashes what is read."""
        if self.file is None:
            raise ValueError("reader() needs a file-backed source")
        self.file.seek(self.start)
        self._restart()
        return _HashingReader(self)  # type: ignore[return-value]

    def _restart(self) -> None:
        self._hasher = new_hasher()
        self._sent = 0

    def _record(self, data: bytes) -> None:
        self._hasher.update(data)
        self._sent += len(data)

    @property
    def sent_bytes(self) -> int:
        return self._sent

    def verify(self, what: str, expected_hash: str | None) -> str:
        """The hash of what was sent, when it matches the announced (and expected) hash;
        raises IntegrityError otherwise."""
        sent = self._hasher.hexdigest()
        if sent != self.announced_hash or (expected_hash is not None and sent != expected_hash):
            raise IntegrityError(f"{what}: content hash {sent} does not match expected "
                                 f"{expected_hash or self.announced_hash}; nothing published")
        return sent


class _HashingReader(io.RawIOBase):
    def __init__(self, source: UploadSource):
        self._source = source

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        assert self._source.file is not None
        # Short only at the end of the data, so a reader can tell the end from a short read.
        data = _read_exactly(self._source.file, len(buffer))
        buffer[:len(data)] = data
        self._source._record(data)
        return len(data)

    def tell(self) -> int:
        return self._source.sent_bytes


@contextlib.contextmanager
def upload_source(data: BinaryIO | Iterable[bytes], *, limit: int, expected_hash: str | None,
                  stream_ok: bool) -> Iterator[UploadSource]:
    """An UploadSource for `data`: in memory up to `limit` bytes, else file-backed. A one-shot
    stream over the limit is streamed as it comes when `stream_ok` and `expected_hash` are
    given (the hash to announce is then known), and otherwise spooled to an anonymous temporary
    file while it is hashed."""
    size = _remaining_size(data)
    if size is not None:
        stream: BinaryIO = data  # type: ignore[assignment]
        if size <= limit:
            body = _read_exactly(stream, size)
            yield UploadSource(announced_hash=hash_bytes(body), size=len(body), small=body)
            return
        start = stream.tell()
        announced = expected_hash or hash_stream(stream)
        yield UploadSource(announced_hash=announced, size=size, file=stream, start=start)
        return
    chunks = _iter_chunks(data)
    head = bytearray()
    for chunk in chunks:
        head += chunk
        if len(head) > limit:
            break
    if len(head) <= limit:
        body = bytes(head)
        yield UploadSource(announced_hash=hash_bytes(body), size=len(body), small=body)
        return
    rest = itertools.chain([bytes(head)], chunks)
    if stream_ok and expected_hash is not None:
        yield UploadSource(announced_hash=expected_hash, size=None, stream=rest)
        return
    with tempfile.TemporaryFile(prefix=TEMP_PREFIX) as spool:
        hasher = new_hasher()
        for chunk in rest:
            hasher.update(chunk)
            spool.write(chunk)
        spool.flush()
        size = spool.tell()
        yield UploadSource(announced_hash=expected_hash or hasher.hexdigest(), size=size,
                           file=spool)  # type: ignore[arg-type]


class RangedReader(io.RawIOBase):
    """A seekable read-only stream over a remote object, fetched by ranged requests of
    `window` bytes. `fetch(offset, length)` does one request (retrying as the backend does)
    and should pin the object version, so a concurrent overwrite is an error, not a mix."""

    def __init__(self, fetch: Callable[[int, int], bytes], size: int, window: int = 8 * MiB):
        self._fetch = fetch
        self._size = size
        self._window = window
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, "negative seek position")
        self._position = base + offset
        return self._position

    def _fetch_at(self, length: int) -> bytes:
        length = min(length, self._size - self._position)
        if length <= 0:
            return b""
        data = self._fetch(self._position, length)
        if not data:
            raise OSError(errno.EIO, "object ended before its stated size")
        self._position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self._fetch_at(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        # RawIOBase.readall would read in 8 KiB requests: fetch whole windows instead.
        parts = []
        while data := self._fetch_at(self._window):
            parts.append(data)
        return b"".join(parts)


def open_ranged(fetch: Callable[[int, int], bytes], size: int,
                window: int = 8 * MiB) -> BinaryIO:
    return io.BufferedReader(RangedReader(fetch, size, window),  # type: ignore[return-value]
                             buffer_size=window)


def run_parallel(jobs: Iterable[Callable[[], T]], workers: int,
                 stop: threading.Event) -> list[T]:
    """Each job's result, in job order, running at most `workers` at once. `jobs` is consumed
    lazily, so a producer that reads and hashes data only runs ahead by `workers` jobs. On the
    first failure `stop` is set (running jobs should give up retrying), queued jobs are
    cancelled, and the error is raised once every running job has ended."""
    results: dict[int, T] = {}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alicefs-part") as pool:
        pending: dict[Future[T], int] = {}
        try:
            for index, job in enumerate(jobs):
                pending[pool.submit(job)] = index
                if len(pending) >= workers:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        results[pending.pop(future)] = future.result()
            for future in list(pending):
                results[pending.pop(future)] = future.result()
        except BaseException:
            stop.set()
            for future in pending:
                future.cancel()
            raise
    return [results[i] for i in range(len(results))]


class ObjectStoreBackend(Backend):
    """A bucket holding files at `<prefix><logical path>`: what S3Backend and GCSBackend do
    alike. A subclass makes its SDK client (`_make_client`) and fetches byte ranges
    (`_get_range`); `read` and `open_read` are built on the latter."""

    default_max_concurrent = 16
    list_page_size = 1000
    connect_timeout = 5.0
    #: Seconds a request may wait for the store's next bytes when `config.read_timeout` is
    #: not set. Well below the retry deadline: a request that hangs (its answer lost) is
    #: then tried again within the deadline, where one that waited as long as the deadline
    #: (the SDKs' 60 s) used it all up, failing the call (an fsync among them) for one
    #: lost answer.
    default_read_timeout = 20.0

    def __init__(self, location: StorageLocation, *, skip_hidden: bool = True):
        super().__init__(location, skip_hidden=skip_hidden)
        self.read_timeout = float(location.config.get("read_timeout",
                                                      self.default_read_timeout))
        self.prefix = location.prefix
        self._client: Any = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The SDK client, made on first use: building a backend needs no credentials yet."""
        with self._client_lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    @abstractmethod
    def _make_client(self) -> Any:
        """A new SDK client; raises LocationUnavailableError when none can be made."""

    @property
    @abstractmethod
    def where(self) -> str:
        """The location as messages name it: its name and bucket URL."""

    def _final_error(self, where: str, cause: str, *, unreachable: bool,
                     transient: bool) -> OSError:
        """The contract's OSError for a failure no store-specific error code explains."""
        if unreachable:
            return LocationUnavailableError(
                f"{where}: endpoint unreachable after retrying for up to "
                f"{self.retry_deadline:g}s ({cause})")
        if transient:
            return RetriesExhaustedError(f"{where}: still failing after retrying for up to "
                                         f"{self.retry_deadline:g}s ({cause})")
        return OSError(errno.EIO, f"{where}: {cause}")

    def probe(self) -> None:
        try:
            self._probe_request()
        except LocationUnavailableError:
            raise
        except OSError as exc:
            # The contract: a location that fails its probe, for whatever cause, is unavailable.
            raise LocationUnavailableError(str(exc)) from None

    @abstractmethod
    def _probe_request(self) -> None:
        """One request, retried like any other, that succeeds only if the bucket is usable."""

    def object_key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def read(self, key: str, offset: int, length: int) -> bytes:
        if offset < 0:
            raise OSError(errno.EINVAL, f"negative offset {offset} reading {key!r}")
        if length <= 0:
            self.stat(key)  # a missing key is still an error
            return b""
        return self._get_range(key, offset, length, change_token=None)

    def open_read(self, key: str) -> BinaryIO:
        return self.open_version(self.stat(key))

    def open_stream(self, key: str, offset: int, size: int, change_token: str | None
                    ) -> BinaryIO:
        """The object of `size` bytes from `offset` on, for one sequential reader, in the
        version `change_token` names (reads fail with ESTALE once it changed): here large
        ranged reads; a store that can stream a whole range in one request does so. A
        failure while reading is not retried: the reader falls back to ranged reads."""
        stream = open_ranged(lambda at, length: self._get_range(
            key, at, length, change_token=change_token), size)
        stream.seek(offset)
        return stream

    def open_version(self, info: ObjectInfo) -> BinaryIO:
        """A stream of exactly the version `info` describes (its change token): reads fail
        with ESTALE once the object has changed."""
        return open_ranged(lambda offset, length: self._get_range(
            info.key, offset, length, change_token=info.change_token), info.size)

    @abstractmethod
    def write_atomic(self, key: str, data: BinaryIO | Iterable[bytes], *,
                     expected_hash: str | None = None, overwrite: bool = False,
                     mtime_ns: int | None = None, replaces: str | None = None) -> WriteResult:
        """Backend.write_atomic, plus compare-and-swap: with `replaces` (a change token as
        stat(), list() and write_atomic return it) the object is published only while `key`
        still holds that version; `overwrite` is then ignored. A key holding another version
        is FileExistsError and nothing is published. A key that is gone (deleted meanwhile)
        is created, but as with overwrite=False nothing that appears in the meantime is
        replaced."""

    @abstractmethod
    def same_store(self, other: Backend) -> bool:
        """Whether `copy_within` can copy from the location `other` server-side."""

    @abstractmethod
    def copy_within(self, src_key: str, dst_key: str, *, overwrite: bool = False,
                    source: ObjectStoreBackend | None = None) -> WriteResult:
        """Server-side copy inside this bucket, or from `source` when `same_store(source)`
        (the bytes never leave the store), metadata included, verified by size and hash
        metadata. Without `overwrite` an existing `dst_key` is FileExistsError; a source
        changed during the copy is ESTALE."""

    def _exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except FileNotFoundError:
            return False
        return True

    def _version_conflict(self, key: str, replaces: str) -> FileExistsError:
        return FileExistsError(errno.EEXIST, f"{key!r} in {self.where} is no longer version "
                                             f"{replaces}: changed by another writer; nothing "
                                             "published")

    def _publish_refused_by_condition(self, key: str, replaces: str | None,
                                      ours: Callable[[], bool]) -> Literal["create", "ours"]:
        """A conditional publish (If-None-Match / If-Match, ifGenerationMatch) was refused.
        "ours": our own earlier attempt published it (`ours()` says whether the key holds
        what we meant to publish). "create": the version `replaces` named is gone; retry as a
        create. Raises FileExistsError when the key holds someone else's object."""
        if ours():
            return "ours"
        # `from None`: called while handling the refusal, which says nothing more.
        if replaces is None:
            raise FileExistsError(errno.EEXIST, f"{key!r} exists in {self.where}") from None
        if not self._exists(key):  # some stores refuse If-Match on a missing key with 412
            return "create"
        raise self._version_conflict(key, replaces) from None

    def _check_version(self, key: str, replaces: str) -> str | None:
        """`replaces` while `key` holds that version; None when the key is gone (the write is
        then a create); FileExistsError when it holds another. A HEAD, so racy on its own:
        the publishing request itself carries the condition wherever the store enforces it."""
        try:
            current = self.stat(key).change_token
        except FileNotFoundError:
            return None
        if current != replaces:
            raise self._version_conflict(key, replaces)
        return replaces

    @abstractmethod
    def _get_range(self, key: str, offset: int, length: int, change_token: str | None) -> bytes:
        """Up to `length` bytes of `key` from `offset`, b"" at or past the end. With a
        `change_token` only from that version of the object: ESTALE once it has changed."""

    def free_space(self) -> SpaceInfo | None:
        return None  # buckets have no meaningful size limit


__all__ = [
    "HASH_METADATA",
    "MTIME_METADATA",
    "MiB",
    "ObjectStoreBackend",
    "RangedReader",
    "UploadSource",
    "content_type_of",
    "datetime_ns",
    "list_prefix",
    "logical_key",
    "metadata_mtime_ns",
    "open_ranged",
    "run_parallel",
    "upload_metadata",
    "upload_source",
]
