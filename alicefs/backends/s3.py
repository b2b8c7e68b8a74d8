"""An S3 bucket (AWS or any S3-compatible store), holding files at key `<prefix><logical path>`.

S3 publishes an object atomically when a PUT or a multipart completion succeeds, so no
temporary object is ever written: an interrupted upload leaves nothing under the final key (an
aborted or abandoned multipart upload is invisible to GET and LIST).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import io
import logging
import math
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO, Literal, TypeVar

import boto3
import botocore.exceptions as bexc
from botocore.config import Config

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
    MTIME_METADATA,
    MiB,
    ObjectStoreBackend,
    UploadSource,
    content_type_of,
    datetime_ns,
    list_prefix,
    logical_key,
    metadata_mtime_ns,
    run_parallel,
    upload_metadata,
    upload_source,
)
from alicefs.backends.retry import call_with_retry, describe_error
from alicefs.hashing import hash_stream
from alicefs.model import StorageLocation, is_secret_key

T = TypeVar("T")

log = logging.getLogger(__name__)


# Error codes that mean "try again": throttling, timeouts, server trouble.
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequests", "TooManyRequestsException",
    "RequestLimitExceeded", "BandwidthLimitExceeded", "RequestTimeout", "RequestTimeoutException",
    "InternalError", "ServiceUnavailable", "PriorRequestNotComplete", "OperationAborted",
})
# Errors that say the bucket or the credentials are unusable, not just one object.
_LOCATION_CODES = frozenset({
    "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
    "InvalidToken", "TokenRefreshRequired", "AllAccessDisabled", "AccountProblem",
    "InvalidBucketName", "PermanentRedirect", "AuthorizationHeaderMalformed",
})
_ARCHIVE_CODES = frozenset({"InvalidObjectState"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})
# The headers that make a publishing request conditional.
_CONDITION_ARGS = ("IfNoneMatch", "IfMatch")
_CREDENTIAL_ERRORS = (bexc.NoCredentialsError, bexc.PartialCredentialsError,
                      bexc.ProfileNotFound, bexc.CredentialRetrievalError, bexc.NoRegionError)


def error_code(exc: BaseException) -> tuple[str, int]:
    """(error code, HTTP status) of a botocore ClientError; ("", 0) for anything else."""
    if not isinstance(exc, bexc.ClientError):
        return "", 0
    response = exc.response or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def is_transient(exc: BaseException) -> bool:
    """Whether an S3 call that raised `exc` may succeed if simply tried again."""
    if isinstance(exc, bexc.ClientError):
        code, status = error_code(exc)
        return code in _TRANSIENT_CODES or status in (429, 500, 502, 503, 504)
    if isinstance(exc, bexc.SSLError):
        return False  # a certificate problem does not heal by itself
    return isinstance(exc, (bexc.ConnectionError, bexc.HTTPClientError,
                            bexc.IncompleteReadError, ConnectionError, TimeoutError))


class S3Backend(ObjectStoreBackend):
    """Bucket `location.path`, keys under `location.prefix`.

    Writes up to `multipart_threshold` are one PUT of bytes held in memory; larger ones are a
    multipart upload of `multipart_chunksize` parts, up to `part_workers` in parallel. Every
    object carries its BLAKE3 hash (`alicefs-blake3`) and original mtime (`alicefs-mtime-ns`)
    as user metadata. `list()` cannot see metadata (ListObjectsV2 does not return it): it
    reports LastModified and no hash; `stat()` reports both from metadata.
    """

    lists_metadata = False
    default_multipart_threshold = 64 * MiB
    default_multipart_chunksize = 16 * MiB
    min_part_size = 5 * MiB  # the S3 minimum for every part but the last
    max_parts = 10_000
    #: Objects larger than this are copied part by part (the S3 limit of one CopyObject).
    max_single_copy = 5 << 30
    #: Memory one multipart upload may hold in parts in flight.
    part_buffer_bytes = 128 * MiB

    def __init__(self, location: StorageLocation, *, skip_hidden: bool = True):
        super().__init__(location, skip_hidden=skip_hidden)
        config = location.config
        self.bucket = location.path
        self.multipart_threshold = int(config.get("multipart_threshold",
                                                  self.default_multipart_threshold))
        self.part_size = max(self.min_part_size,
                             int(config.get("multipart_chunksize",
                                            self.default_multipart_chunksize)))
        self.part_workers = max(1, min(self.max_concurrent,
                                       self.part_buffer_bytes // self.part_size))
        self._secrets = [str(v) for k, v in config.items() if is_secret_key(k) and v]
        # Cleared when the store answers If-None-Match or If-Match with NotImplemented (see
        # write_atomic).
        self._conditional_writes = True
        # Set once a write read back by HEAD showed the store keeps our metadata; from then
        # on a PUT whose ETag is the MD5 of its body is verified without that HEAD.
        self._metadata_kept = False

    # -- client and errors -------------------------------------------------------------

    @property
    def where(self) -> str:
        return f"location {self.location.name!r} (s3://{self.bucket}/{self.prefix})"

    def _scrub(self, text: str) -> str:
        """`text` with every configured credential value blanked out: server messages are
        quoted in errors and logs, and no credential may ever reach either."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _make_client(self) -> Any:
        """A boto3 client from this backend's own Session (never from or into os.environ),
        with our timeouts and without boto's own retries."""
        config = self.location.config
        session_args: dict[str, Any] = {}
        if config.get("aws_access_key_id"):
            session_args.update(aws_access_key_id=config["aws_access_key_id"],
                                aws_secret_access_key=config.get("aws_secret_access_key"),
                                aws_session_token=config.get("aws_session_token"))
        elif config.get("profile"):
            session_args["profile_name"] = config["profile"]
        if config.get("region"):
            session_args["region_name"] = config["region"]
        client_config = Config(
            connect_timeout=self.connect_timeout, read_timeout=self.read_timeout,
            # One attempt per call: call_with_retry is the only retry loop, so retry_deadline
            # bounds the whole call.
            retries={"mode": "standard", "total_max_attempts": 1},
            max_pool_connections=self.max_concurrent * (1 + self.part_workers),
            s3={"addressing_style": config.get("addressing_style", "auto")},
            user_agent_extra="alicefs")
        try:
            session = boto3.session.Session(**session_args)
            return session.client("s3", endpoint_url=config.get("endpoint_url"),
                                  config=client_config)
        except (bexc.BotoCoreError, ValueError) as exc:
            raise LocationUnavailableError(
                f"{self.where}: cannot set up the S3 client: "
                f"{self._scrub(describe_error(exc))}") from None

    def _call(self, what: str, fn: Callable[[], T], *, key: str | None = None,
              stop: threading.Event | None = None) -> T:
        """fn() with transient failures retried until the deadline, and any failure mapped to
        the OSError the Backend contract promises."""
        def transient(exc: BaseException) -> bool:
            return is_transient(exc) and not (stop is not None and stop.is_set())

        try:
            return call_with_retry(fn, deadline=self.retry_deadline, is_transient=transient,
                                   what=f"{self.where}: {what}",
                                   describe=lambda e: self._scrub(describe_error(e)))
        except (bexc.BotoCoreError, bexc.ClientError) as exc:
            # Some botocore errors are OSErrors too (via requests); they still need mapping.
            # OSErrors raised by fn itself (FileExistsError, IntegrityError) pass unchanged.
            raise self._map_error(exc, what, key) from None

    def _map_error(self, exc: BaseException, what: str, key: str | None) -> OSError:
        """The contract's OSError for an S3 failure that is final."""
        code, status = error_code(exc)
        cause = self._scrub(describe_error(exc))
        where = f"{self.where}: {what}"
        if code in _NOT_FOUND_CODES and key is not None:
            return self._not_found(key)
        if code in _NOT_FOUND_CODES or code in _LOCATION_CODES:
            reason = ("bucket does not exist" if code in ("NoSuchBucket", "404", "NotFound")
                      else "credentials or bucket settings rejected")
            return LocationUnavailableError(f"{where}: {reason} ({cause})")
        if code in _ARCHIVE_CODES:
            message = (f"{where}: {key!r} is in an archive storage class (GLACIER or "
                       "DEEP_ARCHIVE) and must be restored before it can be read (e.g. `aws "
                       "s3api restore-object`, then retry once the restore has finished)")
            log.warning("%s", message)
            return OSError(errno.EIO, message)
        if code == "AccessDenied":
            return PermissionError(errno.EACCES, f"{where}: access denied ({cause}); see "
                                                 "docs/cloud.md for the permissions needed")
        if status == 403:
            # A HEAD answers 403 without a body, whatever the reason.
            return LocationUnavailableError(f"{where}: access denied; check the credentials "
                                            f"and permissions ({cause})")
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return LocationUnavailableError(f"{where}: no usable credentials ({cause})")
        unreachable = isinstance(exc, bexc.EndpointConnectionError | bexc.ConnectTimeoutError
                                 | bexc.ProxyConnectionError | bexc.SSLError)
        return self._final_error(where, cause, unreachable=unreachable,
                                 transient=is_transient(exc))

    def _not_found(self, key: str) -> OSError:
        """A bare 404 (HEAD has no body) is a missing key or a missing bucket: ask which."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except bexc.ClientError as exc:
            if error_code(exc)[1] == 404:
                return LocationUnavailableError(f"{self.where}: bucket does not exist")
        except bexc.BotoCoreError:
            pass  # cannot tell; the key is missing as far as this call knows
        return FileNotFoundError(errno.ENOENT, f"{key!r} not found in {self.where}")

    # -- keys and metadata -------------------------------------------------------------

    def _info(self, key: str, head: dict[str, Any]) -> ObjectInfo:
        metadata = head.get("Metadata") or {}
        return ObjectInfo(key, int(head["ContentLength"]),
                          metadata_mtime_ns(metadata, datetime_ns(head["LastModified"])),
                          change_token=head.get("ETag"),
                          content_hash=metadata.get(HASH_METADATA))

    def _write_args(self, key: str) -> dict[str, Any]:
        """Arguments every new object gets: content type, storage class, encryption."""
        config = self.location.config
        args: dict[str, Any] = {"ContentType": content_type_of(key)}
        if config.get("storage_class"):
            args["StorageClass"] = config["storage_class"]
        if config.get("server_side_encryption"):
            args["ServerSideEncryption"] = config["server_side_encryption"]
        if config.get("sse_kms_key_id"):
            args["SSEKMSKeyId"] = config["sse_kms_key_id"]
        return args

    def _head(self, key: str) -> dict[str, Any]:
        full = self.object_key(key)
        return self._call(f"stat {key!r}",
                          lambda: self.client.head_object(Bucket=self.bucket, Key=full), key=key)

    def _refuse_existing(self, key: str) -> None:
        if self._exists(key):
            raise FileExistsError(errno.EEXIST, f"{key!r} exists in {self.where}")

    # -- Backend -----------------------------------------------------------------------

    def _probe_request(self) -> None:
        self._call("probe", lambda: self.client.head_bucket(Bucket=self.bucket))

    def list(self, prefix: str = "", *, unchanged_if: UnchangedIf | None = None
             ) -> Iterator[ObjectInfo]:
        # `unchanged_if` is ignored (the contract allows it): describing a listed object costs
        # nothing beyond the listing request itself.
        # Pages are fetched one request at a time (continuation tokens rather than boto's
        # paginator), so a transient failure retries that page instead of the whole listing.
        request: dict[str, Any] = {"Bucket": self.bucket,
                                   "Prefix": self.prefix + list_prefix(prefix),
                                   "MaxKeys": self.list_page_size}
        while True:
            page = self._call("list", lambda: self.client.list_objects_v2(**request))
            for item in page.get("Contents", ()):
                key = logical_key(item["Key"], self.prefix, self.skip_hidden)
                if key is not None:
                    yield ObjectInfo(key, int(item["Size"]), datetime_ns(item["LastModified"]),
                                     change_token=item.get("ETag"))
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    def stat(self, key: str) -> ObjectInfo:
        return self._info(key, self._head(key))

    def _get_body(self, key: str, byte_range: str, change_token: str | None) -> Any:
        """The body of a GET of `byte_range` ("bytes=A-B" or "bytes=A-"), or None when it
        starts at or past the end; ESTALE when the object is no longer `change_token`."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self.object_key(key),
                                "Range": byte_range}
        if change_token is not None:
            args["IfMatch"] = change_token
        try:
            return self.client.get_object(**args)["Body"]
        except bexc.ClientError as exc:
            code = error_code(exc)[0]
            if code == "InvalidRange":
                return None
            if change_token is not None and code in _PRECONDITION_CODES:
                raise OSError(errno.ESTALE, f"{key!r} in {self.where} changed while it "
                                            "was being read") from None
            raise

    def _get_range(self, key: str, offset: int, length: int, change_token: str | None) -> bytes:
        def fetch() -> bytes:
            body = self._get_body(key, f"bytes={offset}-{offset + length - 1}", change_token)
            if body is None:
                return b""  # offset at or past the end
            # Reading the body is inside the retried call: a connection lost mid-body
            # re-requests the same range.
            with contextlib.closing(body):
                return body.read()

        return self._call(f"read {key!r}", fetch, key=key)

    def open_stream(self, key: str, offset: int, size: int, change_token: str | None
                    ) -> BinaryIO:
        """One GET from `offset` to the end (the request is retried, the body is not)."""
        body = self._call(f"read {key!r}",
                          lambda: self._get_body(key, f"bytes={offset}-", change_token), key=key)
        return body if body is not None else io.BytesIO()

    def write_atomic(self, key: str, data: BinaryIO | Iterable[bytes], *,
                     expected_hash: str | None = None, overwrite: bool = False,
                     mtime_ns: int | None = None, replaces: str | None = None) -> WriteResult:
        """PUT (or a multipart upload) straight to the final key: S3 publishes only a
        complete object, so no temporary name is needed.

        Without `overwrite` the write is conditional (`If-None-Match: *`), so S3 itself
        refuses an existing key, even one created a moment before. With `replaces` (an ETag)
        it carries `If-Match: <ETag>` instead, so S3 refuses any other version; a key found
        gone is then created with `If-None-Match: *`. A store that answers NotImplemented to
        these headers gets a HEAD check before publishing instead, which leaves a small race:
        a key created (or replaced) between the HEAD and the PUT is replaced. Stores that
        silently ignore the headers cannot be detected (see docs/cloud.md). Before a
        multipart upload the key is checked by HEAD as well, so as not to send gigabytes only
        to be refused at completion.

        With `expected_hash` nothing is sent when an in-memory body does not match, a
        multipart upload is aborted before completion when the streamed hash does not, and
        the published object is checked afterwards (size and metadata).
        """
        self.object_key(key)
        if replaces is not None:
            overwrite = False  # a key found gone is created, never blindly replaced
        with upload_source(data, limit=self.multipart_threshold, expected_hash=expected_hash,
                           stream_ok=True) as source:
            content_hash = source.announced_hash
            metadata = upload_metadata(content_hash, mtime_ns)
            if source.small is not None:
                if expected_hash is not None and content_hash != expected_hash:
                    raise IntegrityError(f"{key!r} in {self.where}: content hash "
                                         f"{content_hash} does not match expected "
                                         f"{expected_hash}; nothing published")
                md5 = hashlib.md5(source.small, usedforsecurity=False)
                etag = self._put(key, source.small, metadata, overwrite, replaces,
                                 base64.b64encode(md5.digest()).decode())
                size = len(source.small)
                # The store's MD5 of the bytes it stored (ETag of a plain single PUT) is the
                # MD5 of the bytes we hashed: what landed is what was hashed.
                landed = etag.strip('"').lower() == md5.hexdigest()
            else:
                etag = self._multipart_upload(key, source, metadata, overwrite, expected_hash,
                                              replaces)
                size = source.sent_bytes
                landed = False
        if expected_hash is not None and not (landed and self._metadata_kept):
            info = self._verify_published(key, size, content_hash)
            self._metadata_kept = True
        else:
            info = ObjectInfo(key, size, int(metadata[MTIME_METADATA]), change_token=etag,
                              content_hash=content_hash)
        return WriteResult(info, content_hash)

    def _verify_published(self, key: str, size: int, content_hash: str) -> ObjectInfo:
        info = self.stat(key)
        if info.size != size or info.content_hash != content_hash:
            raise IntegrityError(f"{key!r} in {self.where}: stored object ({info.size} bytes, "
                                 f"hash {info.content_hash}) is not what was written "
                                 f"({size} bytes, hash {content_hash})")
        return info

    def _is_ours(self, key: str, size: int | None, content_hash: str) -> bool:
        """Whether `key` holds exactly what we meant to publish: after a retried request whose
        first attempt did succeed, the retry sees the object our first attempt made."""
        try:
            info = self.stat(key)
        except FileNotFoundError:
            return False
        return info.content_hash == content_hash and (size is None or info.size == size)

    def _conditional(self, key: str, overwrite: bool, args: dict[str, Any],
                     replaces: str | None = None) -> None:
        """Make a publishing request refuse an existing key (with `replaces`: any version
        but that one), or check by HEAD first."""
        if self._conditional_writes:
            if replaces is not None:
                args["IfMatch"] = replaces
            elif not overwrite:
                args["IfNoneMatch"] = "*"
        elif replaces is not None:
            self._check_version(key, replaces)  # a key found gone is created (racy too)
        elif not overwrite:
            self._refuse_existing(key)

    def _publish_refused(self, exc: bexc.ClientError, key: str, attempt: int, size: int | None,
                         content_hash: str, replaces: str | None = None
                         ) -> Literal["retry", "create", "ours"]:
        """Interpret a failed conditional publish (If-Match when `replaces` is given,
        If-None-Match otherwise). "retry": the store lacks conditional writes; retry, checking
        by HEAD instead. "create": the key `replaces` named is gone; retry as a create.
        "ours": our own earlier attempt published it. Raises FileExistsError when the key
        holds someone else's object, and re-raises anything else."""
        code, status = error_code(exc)
        if replaces is not None and code == "NoSuchKey":
            return "create"  # AWS answers If-Match on a missing key with 404
        if code in _PRECONDITION_CODES:
            return self._publish_refused_by_condition(
                key, replaces, lambda: attempt > 1 and self._is_ours(key, size, content_hash))
        if code == "NotImplemented" or status == 501:
            log.warning("%s: the store does not support conditional writes (If-None-Match, "
                        "If-Match); checking keys by HEAD before each write instead",
                        self.where)
            self._conditional_writes = False
            return "retry"
        raise exc

    def _put(self, key: str, body: bytes, metadata: dict[str, str], overwrite: bool,
             replaces: str | None, content_md5: str) -> str:
        full = self.object_key(key)
        attempts = 0

        def put() -> str:
            nonlocal attempts, replaces
            attempts += 1
            args = {"Bucket": self.bucket, "Key": full, "Body": body, "Metadata": metadata,
                    "ContentMD5": content_md5, **self._write_args(key)}
            self._conditional(key, overwrite, args, replaces)
            try:
                return self.client.put_object(**args)["ETag"]
            except bexc.ClientError as exc:
                if not any(name in args for name in _CONDITION_ARGS):
                    raise
                outcome = self._publish_refused(exc, key, attempts, len(body),
                                                metadata[HASH_METADATA], args.get("IfMatch"))
                if outcome == "ours":
                    return self.stat(key).change_token or ""
                if outcome == "create":
                    replaces = None
                return put()

        return self._call(f"write {key!r}", put, key=key)

    # -- multipart ---------------------------------------------------------------------

    def _part_size_for(self, size: int | None) -> int:
        if size is None:
            return self.part_size
        # Stay within S3's 10,000 parts, in whole MiB.
        needed = math.ceil(size / self.max_parts / MiB) * MiB
        return max(self.part_size, needed)

    def _multipart_upload(self, key: str, source: UploadSource, metadata: dict[str, str],
                          overwrite: bool, expected_hash: str | None,
                          replaces: str | None) -> str:
        part_size = self._part_size_for(source.size)

        def parts(upload_id: str, stop: threading.Event) -> Iterator[Callable[[], dict]]:
            for number, block in enumerate(source.blocks(part_size), start=1):
                if number > self.max_parts:
                    raise OSError(errno.EFBIG, f"{key!r}: more than {self.max_parts} parts of "
                                               f"{part_size} bytes; raise multipart_chunksize")
                yield lambda n=number, b=block: self._upload_part(key, upload_id, n, b, stop)

        return self._multipart(
            key, metadata, overwrite, parts,
            before_complete=lambda: source.verify(f"{key!r} in {self.where}", expected_hash),
            size=lambda: source.sent_bytes, replaces=replaces)

    def _upload_part(self, key: str, upload_id: str, number: int, body: bytes,
                     stop: threading.Event) -> dict:
        full = self.object_key(key)
        response = self._call(
            f"upload part {number} of {key!r}",
            lambda: self.client.upload_part(Bucket=self.bucket, Key=full, UploadId=upload_id,
                                            PartNumber=number, Body=body),
            key=key, stop=stop)
        return {"PartNumber": number, "ETag": response["ETag"]}

    def _multipart(self, key: str, metadata: dict[str, str], overwrite: bool,
                   parts: Callable[[str, threading.Event], Iterable[Callable[[], dict]]], *,
                   before_complete: Callable[[], object],
                   size: Callable[[], int | None], replaces: str | None = None) -> str:
        """Create a multipart upload, run its part jobs in parallel, complete it; abort it on
        any failure, so nothing (not even an invisible upload) is left behind."""
        full = self.object_key(key)
        # Completion is conditional too; this only avoids sending gigabytes to be refused.
        if replaces is not None:
            replaces = self._check_version(key, replaces)  # None: gone, so a create
        elif not overwrite:
            self._refuse_existing(key)
        create = {"Bucket": self.bucket, "Key": full, "Metadata": metadata,
                  **self._write_args(key)}
        journal = self.partial_uploads
        # Journaled before it is asked for: a kill between S3 naming the upload and the
        # journal hearing of it must not leave parts nobody knows of.
        token = journal.started(self.location.location_id, key) if journal else None
        try:
            upload_id = self._call(
                f"start multipart upload of {key!r}",
                lambda: self.client.create_multipart_upload(**create)["UploadId"], key=key)
        except BaseException:
            if journal is not None and token is not None:
                journal.ended(token)
            raise
        try:
            if journal is not None and token is not None:
                journal.named(token, upload_id)
            stop = threading.Event()
            done = run_parallel(parts(upload_id, stop), self.part_workers, stop)
            before_complete()
            etag = self._complete(key, upload_id, done, overwrite, size(),
                                  metadata.get(HASH_METADATA, ""), replaces)
        except BaseException:
            if self._abort(key, upload_id) and journal is not None and token is not None:
                journal.ended(token)
            raise
        if journal is not None and token is not None:
            journal.ended(token)
        return etag

    def _complete(self, key: str, upload_id: str, parts: list[dict], overwrite: bool,
                  size: int | None, content_hash: str, replaces: str | None) -> str:
        full = self.object_key(key)
        attempts = 0

        def complete() -> str:
            nonlocal attempts, replaces
            attempts += 1
            args = {"Bucket": self.bucket, "Key": full, "UploadId": upload_id,
                    "MultipartUpload": {"Parts": parts}}
            self._conditional(key, overwrite, args, replaces)
            try:
                return self.client.complete_multipart_upload(**args)["ETag"]
            except bexc.ClientError as exc:
                code = error_code(exc)[0]
                if code == "NoSuchUpload" and attempts > 1 and self._is_ours(key, size,
                                                                             content_hash):
                    # The first attempt completed it; only its response was lost.
                    return self.stat(key).change_token or ""
                if not any(name in args for name in _CONDITION_ARGS):
                    raise
                # A refused completion leaves the upload open, so it can be completed again.
                outcome = self._publish_refused(exc, key, attempts, size, content_hash,
                                                args.get("IfMatch"))
                if outcome == "ours":
                    return self.stat(key).change_token or ""
                if outcome == "create":
                    replaces = None
                return complete()

        return self._call(f"complete multipart upload of {key!r}", complete, key=key)

    def abort_partial(self, key: str, upload_id: str | None, started_at: float) -> None:
        """Abort a multipart upload a crash left unfinished (recovery.py). Without its id
        (the process died before S3 answered), the uploads of exactly this key that S3
        says began from `started_at` on (less a minute for clock skew)."""
        if upload_id is None:
            full = self.object_key(key)
            listing = self._call(f"list multipart uploads of {key!r}", lambda: (
                self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=full)),
                key=key)
            ids = [u["UploadId"] for u in listing.get("Uploads", [])
                   if u["Key"] == full and u["Initiated"].timestamp() >= started_at - 60]
        else:
            ids = [upload_id]
        for one in ids:
            if not self._abort(key, one):
                raise OSError(errno.EIO, f"could not abort multipart upload of {key!r} in "
                                         f"{self.where}")

    def _abort(self, key: str, upload_id: str) -> bool:
        """Abort a multipart upload; False (logged) when the store could not be told."""
        full = self.object_key(key)

        def abort() -> None:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=full,
                                                   UploadId=upload_id)
            except bexc.ClientError as exc:
                if error_code(exc)[0] != "NoSuchUpload":  # else: already gone
                    raise

        try:
            self._call(f"abort multipart upload of {key!r}", abort)
        except OSError as exc:
            # Not fatal: an unfinished upload is invisible under the key. Its journal entry
            # stays, so the next start aborts it; a lifecycle rule
            # (AbortIncompleteMultipartUpload, docs/cloud.md) catches the rest.
            log.warning("%s: could not abort multipart upload %s of %r (tried again at the "
                        "next start): %s", self.where, upload_id, key, exc)
            return False
        return True

    # -- deleting and copying ----------------------------------------------------------

    def delete(self, key: str) -> None:
        # S3 reports success for a missing key; the contract wants FileNotFoundError.
        self._head(key)
        full = self.object_key(key)
        self._call(f"delete {key!r}",
                   lambda: self.client.delete_object(Bucket=self.bucket, Key=full), key=key)

    def same_store(self, other: Backend) -> bool:
        """Whether `other` is in the same S3 service, reached with the same credentials:
        then this location's client can copy from it server-side."""
        if not isinstance(other, S3Backend):
            return False
        keys = ("endpoint_url", "region", "aws_access_key_id", "aws_secret_access_key",
                "aws_session_token", "profile")
        return all(self.location.config.get(k) == other.location.config.get(k) for k in keys)

    def copy_within(self, src_key: str, dst_key: str, *, overwrite: bool = False,
                    source: ObjectStoreBackend | None = None) -> WriteResult:
        """Server-side copy inside this bucket, or from `source` (a location in the same
        store, `same_store`): the bytes never leave the store. Metadata (hash, mtime) is
        copied; storage class and encryption are this location's. The copy is verified by
        size and hash metadata; a source without alicefs metadata is hashed by reading the
        copy back."""
        origin = source if isinstance(source, S3Backend) else self
        head = origin._head(src_key)
        src = origin._info(src_key, head)
        metadata = dict(head.get("Metadata") or {})
        copy_source = {"Bucket": origin.bucket, "Key": origin.object_key(src_key)}
        if src.size <= self.max_single_copy:
            self._copy_object(dst_key, copy_source, src, overwrite)
        else:
            self._copy_multipart(dst_key, copy_source, src, metadata, overwrite)
        content_hash = src.content_hash
        if content_hash is None:
            with self.open_read(dst_key) as stream:
                content_hash = hash_stream(stream)
            info = self.stat(dst_key)
        else:
            info = self._verify_published(dst_key, src.size, content_hash)
        return WriteResult(info, content_hash)

    def _copy_object(self, dst_key: str, copy_source: dict[str, str], src: ObjectInfo,
                     overwrite: bool) -> None:
        attempts = 0

        def copy() -> None:
            nonlocal attempts
            attempts += 1
            args = {"Bucket": self.bucket, "Key": self.object_key(dst_key),
                    "CopySource": copy_source, "CopySourceIfMatch": src.change_token,
                    "MetadataDirective": "COPY", **self._write_args(dst_key)}
            args.pop("ContentType")  # kept from the source along with the metadata
            self._conditional(dst_key, overwrite, args)
            try:
                self.client.copy_object(**args)
            except bexc.ClientError as exc:
                code = error_code(exc)[0]
                # 412 is also the answer when the source changed (CopySourceIfMatch).
                if code in _PRECONDITION_CODES and ("IfNoneMatch" not in args
                                                    or not self._exists(dst_key)):
                    raise OSError(errno.ESTALE, f"{src.key!r} in {self.where} changed while "
                                                "it was being copied") from None
                if "IfNoneMatch" not in args or code not in (*_PRECONDITION_CODES,
                                                             "NotImplemented"):
                    raise
                if self._publish_refused(exc, dst_key, attempts, src.size,
                                         src.content_hash or "") == "retry":
                    copy()

        self._call(f"copy {src.key!r} to {dst_key!r}", copy, key=src.key)

    def _copy_multipart(self, dst_key: str, copy_source: dict[str, str], src: ObjectInfo,
                        metadata: dict[str, str], overwrite: bool) -> None:
        part_size = self._part_size_for(src.size)
        full = self.object_key(dst_key)

        def copy_part(upload_id: str, number: int, first: int, last: int,
                      stop: threading.Event) -> dict:
            response = self._call(
                f"copy part {number} of {src.key!r} to {dst_key!r}",
                lambda: self.client.upload_part_copy(
                    Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number,
                    CopySource=copy_source, CopySourceRange=f"bytes={first}-{last}",
                    CopySourceIfMatch=src.change_token),
                key=src.key, stop=stop)
            return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

        def parts(upload_id: str, stop: threading.Event) -> Iterator[Callable[[], dict]]:
            for number, first in enumerate(range(0, src.size, part_size), start=1):
                last = min(first + part_size, src.size) - 1
                yield lambda n=number, a=first, b=last: copy_part(upload_id, n, a, b, stop)

        self._multipart(dst_key, metadata, overwrite, parts, before_complete=lambda: None,
                        size=lambda: src.size)


__all__ = ["S3Backend", "is_transient"]
