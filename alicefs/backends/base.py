"""The interface every location type implements, and the key rules they all enforce.

Keys are logical paths (`project/rel/path`): relative, '/'-separated, no empty, `.` or `..`
component, no NUL, components of at most 255 bytes. A backend maps a key to `<root>/<key>`
(local) or `<prefix><key>` (object stores) and nothing else, so no key reaches outside the
location.
"""

from __future__ import annotations

import errno
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple, Protocol

from alicefs.model import StorageLocation
from alicefs.rules import SpaceInfo

# A rescan's test of a listed file: (key, its `scan.comparable` values) -> unchanged?
UnchangedIf = Callable[[str, tuple[Any, ...]], bool]

MAX_NAME_BYTES = 255
MAX_KEY_BYTES = 4095
TEMP_PREFIX = ".alicefs-tmp-"


class UnsafeKeyError(OSError):
    """A key that is malformed or would resolve outside the location root."""


class IntegrityError(OSError):
    """Written content did not verify against the expected hash; nothing was published."""

    def __init__(self, message: str):
        super().__init__(errno.EIO, message)


class LocationUnavailableError(OSError):
    """The location cannot be reached at all (root missing, bucket gone, endpoint down)."""

    def __init__(self, message: str):
        super().__init__(errno.EIO, message)


class RetriesExhaustedError(OSError):
    """Transient failures (timeouts, dropped connections, 5xx) went on until the retry
    deadline: the store is not answering now, whatever the cause."""

    def __init__(self, message: str):
        super().__init__(errno.EIO, message)


def check_key(key: str) -> str:
    """The key itself if it is a well-formed logical path; raises UnsafeKeyError otherwise."""
    if not isinstance(key, str) or not key:
        raise UnsafeKeyError(errno.EINVAL, "empty key")
    if "\0" in key:
        raise UnsafeKeyError(errno.EINVAL, f"key contains NUL: {key!r}")
    if key.startswith("/"):
        raise UnsafeKeyError(errno.EINVAL, f"absolute key refused: {key!r}")
    if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY_BYTES:
        raise UnsafeKeyError(errno.ENAMETOOLONG, f"key longer than {MAX_KEY_BYTES} bytes")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise UnsafeKeyError(errno.EINVAL, f"key with empty, '.' or '..' component "
                                               f"refused: {key!r}")
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise UnsafeKeyError(errno.ENAMETOOLONG, f"name longer than {MAX_NAME_BYTES} bytes")
    return key


class ObjectInfo(NamedTuple):
    """One file of a location. A NamedTuple rather than a frozen dataclass because listings
    build one per file and construction cost is a third of a 100,000-file rescan's budget."""

    key: str
    size: int
    mtime_ns: int
    inode: int | None = None  # local files
    change_token: str | None = None  # S3 ETag, GCS generation
    content_hash: str | None = None  # when the store knows it without reading (object metadata)


class PartialUploads(Protocol):
    """A journal of unfinished uploads the store keeps (S3 multipart uploads): `started`
    before the upload is asked for returns a token; `named` records the id the store gave
    it, before any part is sent; `ended` once it is completed or aborted. An entry a crash
    left open names what to abort (by id, or, killed before the id came back, by key and
    time)."""

    def started(self, location_id: str, key: str) -> int: ...

    def named(self, token: int, upload_id: str) -> None: ...

    def ended(self, token: int) -> None: ...


class DirInfo(NamedTuple):
    """One directory of a local location, with what the mount shows of it."""

    key: str
    mode: int
    uid: int
    gid: int
    mtime_ns: int


@dataclass(frozen=True)
class WriteResult:
    info: ObjectInfo
    content_hash: str  # BLAKE3 hex of what was published, verified


class Backend(ABC):
    """Blocking access to one location. Callers on the trio thread run these methods in worker
    threads (trio.to_thread.run_sync) under the location's capacity limiter.

    Retry semantics: an implementation retries transient failures (timeouts, throttling, 5xx,
    connection resets) itself, with exponential backoff and jitter, until its retry deadline.
    Whatever it raises is final for that call:

    - FileNotFoundError: the key does not exist.
    - FileExistsError: `write_atomic(overwrite=False)` found the key taken; nothing changed.
    - UnsafeKeyError: the key is malformed or would leave the root (errno EINVAL, EACCES or
      ENAMETOOLONG).
    - IntegrityError: written content did not match `expected_hash`; nothing was published.
    - LocationUnavailableError: the location cannot be reached at all.
    - RetriesExhaustedError: transient failures lasted until the retry deadline.
    - any other OSError: carries the errno the mount should return.

    Writes are atomic: a reader sees the old content or the new, never a partial file. An
    interrupted write leaves at most a temporary file named with TEMP_PREFIX (local), or an
    unfinished multipart upload / resumable session that is invisible under any key. A
    backend that keeps such parts reports each one it starts to `partial_uploads` (when set)
    and removes the ones a crash left behind with `abort_partial`; docs/cloud.md shows the
    lifecycle rule that catches the rest.
    """

    #: Where the invisible partial uploads this backend starts are noted, so those a crash
    #: leaves behind are aborted at the next start (set by whoever owns the journal).
    partial_uploads: PartialUploads | None = None
    #: Whether list() describes a file as fully as stat() (the stored hash, the original
    #: mtime); when not, a scan stats what it has to look at.
    lists_metadata = True

    #: Parallel calls allowed when `config.max_concurrent` is not set.
    default_max_concurrent = 8
    #: Seconds transient failures are retried when `config.retry_deadline` is not set.
    default_retry_deadline = 60.0

    def __init__(self, location: StorageLocation, *, skip_hidden: bool = True):
        self.location = location
        self.skip_hidden = bool(location.config.get("skip_hidden", skip_hidden))
        self.max_concurrent = int(location.config.get("max_concurrent",
                                                      self.default_max_concurrent))
        self.retry_deadline = float(location.config.get("retry_deadline",
                                                        self.default_retry_deadline))

    @abstractmethod
    def probe(self) -> None:
        """Check that the location is reachable and usable; raise LocationUnavailableError
        naming the location and the cause (never a credential) when it is not."""

    @abstractmethod
    def list(self, prefix: str = "", *, unchanged_if: UnchangedIf | None = None
             ) -> Iterator[ObjectInfo | str]:
        """Every file under `prefix` (a key prefix ending in '/' or ""), recursively, with size
        and mtime. Hidden names are skipped when `skip_hidden`; temporary objects always.

        `unchanged_if` is a rescan's shortcut: a file for which `unchanged_if(key, values)`
        is true, `values` being its `scan.comparable` values, may be yielded as its bare key
        (a str) instead of an ObjectInfo, sparing the work of describing a file nobody needs
        described. A backend may ignore it.
        """

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo:
        """The file at `key`."""

    @abstractmethod
    def read(self, key: str, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset`; fewer only at the end of the file."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A readable binary stream of the whole file, for hashing and copying."""

    @abstractmethod
    def write_atomic(self, key: str, data: BinaryIO | Iterable[bytes], *,
                     expected_hash: str | None = None, overwrite: bool = False,
                     mtime_ns: int | None = None) -> WriteResult:
        """Write to a temporary name, flush, verify, then publish under `key`.

        With `expected_hash` the stored content must hash to it before it is published: local
        files are re-read from disk; object stores check the hash streamed while uploading,
        the SDK's transfer checksums and the stored size and metadata. Without
        `overwrite` an existing key is never replaced (FileExistsError). `mtime_ns` sets the
        modification time, so copies keep the original's age.

        Object stores also accept `replaces=<change token>`: compare-and-swap, publishing only
        while the key still holds that version (see ObjectStoreBackend.write_atomic).
        """

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file at `key`."""

    def abort_partial(self, key: str, upload_id: str | None, started_at: float) -> None:
        """Remove an unfinished upload this backend reported to `partial_uploads` (one
        already gone is no error); with no `upload_id`, those of `key` begun from
        `started_at` (epoch seconds) on. Only backends that report any are ever asked."""
        raise NotImplementedError(f"{type(self).__name__} reports no partial uploads")

    @abstractmethod
    def free_space(self) -> SpaceInfo | None:
        """Free and total bytes, or None when the store has no meaningful limit."""
