"""A Google Cloud Storage bucket, holding files at object name `<prefix><logical path>`.

GCS publishes an object only when its upload (one request, or the last chunk of a resumable
upload) completes, so no temporary object is ever written. Generation numbers are the change
tokens; BLAKE3 hash and original mtime travel in custom metadata, which (unlike S3) listings
return too.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, Literal, TypeVar

import google.auth.exceptions as gauth
import requests
from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.oauth2 import service_account

from alicefs.backends.base import (
    Backend,
    IntegrityError,
    LocationUnavailableError,
    ObjectInfo,
    UnchangedIf,
    WriteResult,
)
from alicefs.backends.objectstore import (
    HASH_METADATA,
    MiB,
    ObjectStoreBackend,
    UploadSource,
    content_type_of,
    datetime_ns,
    list_prefix,
    logical_key,
    metadata_mtime_ns,
    upload_metadata,
    upload_source,
)
from alicefs.backends.retry import call_with_retry, describe_error
from alicefs.hashing import hash_stream
from alicefs.model import StorageLocation

T = TypeVar("T")

log = logging.getLogger(__name__)

_SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CHUNK_QUANTUM = 256 * 1024  # resumable chunks must be multiples of 256 KiB


def _status(exc: BaseException) -> int:
    if isinstance(exc, gexc.GoogleAPICallError):
        return int(exc.code or 0)
    if isinstance(exc, InvalidResponse):
        return int(getattr(exc.response, "status_code", 0) or 0)
    return 0


# A rewrite call copies server-side for as long as Google lets it before it answers with a
# token to continue: the SDK's own timeout, not the shorter one for requests that answer at
# once (a rewrite cut short by it would start over, and could never finish).
REWRITE_READ_TIMEOUT = 60.0


def is_transient(exc: BaseException) -> bool:
    """Whether a GCS call that raised `exc` may succeed if simply tried again."""
    if isinstance(exc, gexc.GoogleAPICallError | InvalidResponse):
        return _status(exc) in _TRANSIENT_STATUS
    if isinstance(exc, requests.exceptions.SSLError):
        return False
    # DataCorruption: a checksum mismatch in transit; the next attempt resends.
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            requests.exceptions.ChunkedEncodingError, gauth.TransportError,
                            DataCorruption, ConnectionError, TimeoutError))


_SDK_ERRORS = (gexc.GoogleAPICallError, InvalidResponse, DataCorruption,
               requests.exceptions.RequestException, gauth.GoogleAuthError)


class GCSBackend(ObjectStoreBackend):
    """Bucket `location.path`, objects under `location.prefix`.

    Writes up to `resumable_threshold` are one request from memory; larger ones are resumable
    uploads in chunks of the threshold size (rounded to 256 KiB), from the caller's seekable
    file or a spool. A failed resumable upload is restarted from its first byte on retry.
    """

    default_resumable_threshold = 8 * MiB

    def __init__(self, location: StorageLocation, *, skip_hidden: bool = True):
        super().__init__(location, skip_hidden=skip_hidden)
        config = location.config
        self.bucket_name = location.path
        self.resumable_threshold = int(config.get("resumable_threshold",
                                                  self.default_resumable_threshold))
        quantum = self.resumable_threshold // _CHUNK_QUANTUM * _CHUNK_QUANTUM
        self.chunk_size = min(max(_CHUNK_QUANTUM, quantum), 64 * MiB)

    # -- client and errors -------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"location {self.location.name!r} (gs://{self.bucket_name}/{self.prefix})"

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)

    @property
    def bucket(self) -> storage.Bucket:
        return self.client.bucket(self.bucket_name)

    def _make_client(self) -> storage.Client:
        """A client from `credentials_path` (read here, never via os.environ), else
        application-default credentials. With STORAGE_EMULATOR_HOST set, google-cloud-storage
        itself talks to the emulator with anonymous credentials."""
        config = self.location.config
        project = config.get("project")
        credentials = None
        try:
            if config.get("credentials_path"):
                credentials = service_account.Credentials.from_service_account_file(
                    os.fspath(config["credentials_path"]), scopes=_SCOPES)
                project = project or credentials.project_id
            return storage.Client(project=project, credentials=credentials)
        except (OSError, ValueError, gauth.GoogleAuthError) as exc:
            hint = ("" if config.get("credentials_path") else
                    "; set credentials_path, or run `gcloud auth application-default login`")
            raise LocationUnavailableError(f"{self.where}: no usable credentials "
                                           f"({describe_error(exc)}){hint}") from None

    def _call(self, what: str, fn: Callable[[], T], *, key: str | None = None) -> T:
        """fn() with transient failures retried until the deadline, and any failure mapped to
        the OSError the Backend contract promises."""
        try:
            return call_with_retry(fn, deadline=self.retry_deadline, is_transient=is_transient,
                                   what=f"{self.where}: {what}")
        except _SDK_ERRORS as exc:
            # requests' errors are OSErrors too; they still need mapping. OSErrors raised by fn
            # itself (FileExistsError, IntegrityError) pass unchanged.
            raise self._map_error(exc, what, key) from None

    def _map_error(self, exc: BaseException, what: str, key: str | None) -> OSError:
        status = _status(exc)
        cause = describe_error(exc)
        where = f"{self.where}: {what}"
        if status == 404:
            if key is not None:
                return self._not_found(key)
            return LocationUnavailableError(f"{where}: bucket does not exist ({cause})")
        if status == 401 or (isinstance(exc, gauth.GoogleAuthError) and not is_transient(exc)):
            return LocationUnavailableError(f"{where}: credentials rejected ({cause})")
        if status == 403:
            return PermissionError(errno.EACCES, f"{where}: access denied ({cause}); see "
                                                 "docs/cloud.md for the permissions needed")
        unreachable = isinstance(exc, requests.exceptions.ConnectionError | gauth.TransportError)
        return self._final_error(where, cause, unreachable=unreachable,
                                 transient=is_transient(exc))

    def _not_found(self, key: str) -> OSError:
        """A 404 for an object may mean the bucket is gone: a one-object listing tells (and
        needs only storage.objects.list, unlike a bucket GET)."""
        try:
            next(iter(self.client.list_blobs(self.bucket_name, max_results=1, retry=None,
                                             timeout=self.timeout)), None)
        except gexc.NotFound:
            return LocationUnavailableError(f"{self.where}: bucket does not exist")
        except _SDK_ERRORS:
            pass  # cannot tell; the key is missing as far as this call knows
        return FileNotFoundError(errno.ENOENT, f"{key!r} not found in {self.where}")

    # -- keys and metadata -------------------------------------------------------------

    def _info(self, key: str, blob: storage.Blob) -> ObjectInfo:
        metadata = blob.metadata or {}
        return ObjectInfo(key, int(blob.size or 0),
                          metadata_mtime_ns(metadata, datetime_ns(blob.updated)),
                          change_token=str(blob.generation),
                          content_hash=metadata.get(HASH_METADATA))

    def _reload(self, key: str) -> storage.Blob:
        blob = self.bucket.blob(self.object_key(key))
        self._call(f"stat {key!r}", lambda: blob.reload(retry=None, timeout=self.timeout),
                   key=key)
        return blob

    def _refuse_existing(self, key: str) -> None:
        try:
            self._reload(key)
        except FileNotFoundError:
            return
        raise FileExistsError(errno.EEXIST, f"{key!r} exists in {self.where}")

    # -- Backend -----------------------------------------------------------------------

    def _probe_request(self) -> None:
        # A one-object listing: it needs only the permission every use needs anyway.
        def list_one() -> None:
            for _ in self.client.list_blobs(self.bucket_name, prefix=self.prefix or None,
                                            max_results=1, retry=None, timeout=self.timeout):
                pass

        self._call("probe", list_one)

    def list(self, prefix: str = "", *, unchanged_if: UnchangedIf | None = None
             ) -> Iterator[ObjectInfo]:
        # `unchanged_if` is ignored (the contract allows it): describing a listed object costs
        # nothing beyond the listing request itself.
        # One page per retried request, so a transient failure does not restart the listing.
        full_prefix = self.prefix + list_prefix(prefix)
        token: str | None = None
        while True:
            def page(token: str | None = token) -> tuple[list[storage.Blob], str | None]:
                iterator = self.client.list_blobs(
                    self.bucket_name, prefix=full_prefix or None, page_token=token,
                    page_size=self.list_page_size, retry=None, timeout=self.timeout)
                blobs = list(next(iterator.pages, ()))
                return blobs, iterator.next_page_token

            blobs, token = self._call("list", page)
            for blob in blobs:
                key = logical_key(blob.name, self.prefix, self.skip_hidden)
                if key is not None:
                    yield self._info(key, blob)
            if not token:
                return

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._reload(key))

    def _get_range(self, key: str, offset: int, length: int, change_token: str | None) -> bytes:
        blob = self.bucket.blob(self.object_key(key))
        generation = int(change_token) if change_token else None

        def fetch() -> bytes:
            try:
                # raw_download: the stored bytes, never a decompressed view of them.
                return blob.download_as_bytes(start=offset, end=offset + length - 1,
                                              raw_download=True, checksum=None,
                                              if_generation_match=generation,
                                              retry=None, timeout=self.timeout)
            except gexc.RequestRangeNotSatisfiable:
                return b""  # offset at or past the end
            except gexc.PreconditionFailed:
                raise OSError(errno.ESTALE, f"{key!r} in {self.where} changed while it was "
                                            "being read") from None

        return self._call(f"read {key!r}", fetch, key=key)

    def write_atomic(self, key: str, data: BinaryIO | Iterable[bytes], *,
                     expected_hash: str | None = None, overwrite: bool = False,
                     mtime_ns: int | None = None, replaces: str | None = None) -> WriteResult:
        """One upload straight to the final name: GCS publishes only complete objects.

        Without `overwrite` the upload carries `ifGenerationMatch=0`, so GCS refuses an
        existing name atomically. With `replaces` (a generation) it carries
        `ifGenerationMatch=<generation>` instead, so GCS refuses any other version; a name
        found gone is then created with `ifGenerationMatch=0`. Before a large upload the name
        is also checked, to avoid sending a large file only to be refused. With
        STORAGE_EMULATOR_HOST set every write is checked first: emulators ignore
        preconditions, so that check (racy) is all there is.

        The hash announced in metadata is checked against what is sent before the upload's
        final request, so a mismatch publishes nothing; with `expected_hash` the stored
        object's size and metadata are checked too.
        """
        self.object_key(key)
        if replaces is not None and not replaces.isdigit():
            raise OSError(errno.EINVAL, f"{key!r} in {self.where}: change token {replaces!r} "
                                        "is not a GCS generation")
        with upload_source(data, limit=self.resumable_threshold, expected_hash=expected_hash,
                           stream_ok=False) as source:
            what = f"{key!r} in {self.where}"
            if source.small is not None and expected_hash is not None \
                    and source.announced_hash != expected_hash:
                raise IntegrityError(f"{what}: content hash {source.announced_hash} does not "
                                     f"match expected {expected_hash}; nothing published")
            checked_first = source.small is None or _emulated()
            if replaces is not None:
                overwrite = False  # a name found gone is created, never blindly replaced
                if checked_first:
                    replaces = self._check_version(key, replaces)  # None: gone, so a create
            elif not overwrite and checked_first:
                self._refuse_existing(key)
            metadata = upload_metadata(source.announced_hash, mtime_ns)
            blob = self._upload(key, source, metadata, overwrite, expected_hash, replaces)
            size = source.size
        info = self._info(key, blob)
        if expected_hash is not None and (info.size != size
                                          or info.content_hash != source.announced_hash):
            raise IntegrityError(f"{what}: stored object ({info.size} bytes, hash "
                                 f"{info.content_hash}) is not what was written ({size} bytes, "
                                 f"hash {source.announced_hash})")
        return WriteResult(info, source.announced_hash)

    def _upload(self, key: str, source: UploadSource, metadata: dict[str, str],
                overwrite: bool, expected_hash: str | None,
                replaces: str | None) -> storage.Blob:
        full = self.object_key(key)
        what = f"{key!r} in {self.where}"
        attempts = 0

        def upload() -> storage.Blob:
            nonlocal attempts, replaces
            attempts += 1
            if replaces is not None:
                generation_match: int | None = int(replaces)
            else:
                generation_match = None if overwrite else 0
            large = source.small is None
            blob = self.bucket.blob(full, chunk_size=self.chunk_size if large else None)
            blob.metadata = metadata
            if self.location.config.get("storage_class"):
                blob.storage_class = self.location.config["storage_class"]
            try:
                if large:
                    # size=None: always resumable; the reader checks the hash when it reaches
                    # the end, before the request that would publish the object.
                    blob.upload_from_file(_VerifyingReader(source, what, expected_hash),
                                          content_type=content_type_of(key),
                                          if_generation_match=generation_match,
                                          retry=None, timeout=self.timeout)
                else:
                    blob.upload_from_string(source.small, content_type=content_type_of(key),
                                            if_generation_match=generation_match,
                                            retry=None, timeout=self.timeout)
            except gexc.PreconditionFailed:
                outcome = self._upload_refused(key, attempts, metadata[HASH_METADATA], replaces)
                if outcome == "ours":
                    return self._reload(key)  # our first attempt published; its answer was lost
                replaces = None  # "create": the version to replace is gone
                return upload()
            return blob

        return self._call(f"write {key!r}", upload, key=key)

    def _upload_refused(self, key: str, attempt: int, content_hash: str,
                        replaces: str | None) -> Literal["create", "ours"]:
        """Interpret a failed precondition (ifGenerationMatch `replaces`, or 0 without it).
        "create": the generation `replaces` named is gone; retry with ifGenerationMatch=0.
        "ours": our own earlier attempt published it. Raises FileExistsError when the name
        holds someone else's object."""
        return self._publish_refused_by_condition(
            key, replaces, lambda: attempt > 1 and self._is_ours(key, content_hash))

    def _is_ours(self, key: str, content_hash: str) -> bool:
        try:
            return self.stat(key).content_hash == content_hash
        except FileNotFoundError:
            return False

    def delete(self, key: str) -> None:
        blob = self.bucket.blob(self.object_key(key))
        self._call(f"delete {key!r}", lambda: blob.delete(retry=None, timeout=self.timeout),
                   key=key)

    def same_store(self, other: Backend) -> bool:
        """Whether `other` is reached with the same credentials and project: then this
        location's client can rewrite from its bucket server-side."""
        if not isinstance(other, GCSBackend):
            return False
        keys = ("credentials_path", "project")
        return all(self.location.config.get(k) == other.location.config.get(k) for k in keys)

    def copy_within(self, src_key: str, dst_key: str, *, overwrite: bool = False,
                    source: ObjectStoreBackend | None = None) -> WriteResult:
        """Server-side copy (objects.rewrite, resumed by token for large objects) inside this
        bucket, or from `source` (a location in the same store, `same_store`), pinned to the
        source generation. Metadata (hash, mtime) is copied; storage class is this
        location's. The copy is verified by size and hash metadata; a source without alicefs
        metadata is hashed by reading the copy back."""
        origin = source if isinstance(source, GCSBackend) else self
        source_blob = origin._reload(src_key)
        src = origin._info(src_key, source_blob)
        if not overwrite and _emulated():  # see write_atomic
            self._refuse_existing(dst_key)
        destination = self.bucket.blob(self.object_key(dst_key))
        destination.metadata = dict(source_blob.metadata or {})
        destination.content_type = source_blob.content_type
        if self.location.config.get("storage_class"):
            destination.storage_class = self.location.config["storage_class"]
        token: str | None = None
        while True:
            def rewrite(token: str | None = token) -> str | None:
                try:
                    return destination.rewrite(
                        source_blob, token=token, if_generation_match=None if overwrite else 0,
                        if_source_generation_match=source_blob.generation, retry=None,
                        timeout=(self.connect_timeout, max(self.read_timeout,
                                                           REWRITE_READ_TIMEOUT)))[0]
                except gexc.PreconditionFailed:
                    if self._is_copy_target_free(dst_key, overwrite):
                        raise OSError(errno.ESTALE, f"{src_key!r} in {self.where} changed "
                                                    "while it was being copied") from None
                    raise FileExistsError(errno.EEXIST,
                                          f"{dst_key!r} exists in {self.where}") from None

            token = self._call(f"copy {src_key!r} to {dst_key!r}", rewrite, key=src_key)
            if token is None:
                break
        info = self._info(dst_key, destination)
        content_hash = src.content_hash
        if content_hash is None:
            with self.open_read(dst_key) as stream:
                content_hash = hash_stream(stream)
        elif info.size != src.size or info.content_hash != content_hash:
            raise IntegrityError(f"copy of {src_key!r} to {dst_key!r} in {self.where} does "
                                 "not match its source")
        return WriteResult(info, content_hash)

    def _is_copy_target_free(self, dst_key: str, overwrite: bool) -> bool:
        if overwrite:
            return True
        try:
            self._reload(dst_key)
        except FileNotFoundError:
            return True
        return False


def _emulated() -> bool:
    """Whether google-cloud-storage talks to an emulator (it reads the same variable)."""
    return bool(os.environ.get("STORAGE_EMULATOR_HOST"))


class _VerifyingReader:
    """The file object a resumable upload reads: it hashes what is read and, on reaching the
    end (before the library sends the final chunk, which publishes the object), raises
    IntegrityError if the data is not what the metadata announces."""

    def __init__(self, source: UploadSource, what: str, expected_hash: str | None):
        self._reader = source.reader()
        self._source = source
        self._what = what
        self._expected = expected_hash

    def read(self, size: int = -1) -> bytes:
        data = self._reader.read(size)
        if size < 0 or len(data) < size:
            self._source.verify(self._what, self._expected)
        return data

    def tell(self) -> int:
        return self._reader.tell()


__all__ = ["GCSBackend", "is_transient"]
