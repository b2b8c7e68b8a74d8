"""Compare-and-swap publishing on S3 and GCS: `write_atomic(replaces=<change token>)` replaces
only the version it names. Real servers (tests/servers.py), no mocks. The GCS emulator ignores
preconditions, so there the check before the upload is what refuses a stale token; the
decisions taken on a refused precondition are tested against the real server state."""

from __future__ import annotations

import errno
import io
from collections.abc import Callable, Iterator

import pytest
from botocore.exceptions import ClientError

from alicefs.backends.gcs import GCSBackend
from alicefs.backends.s3 import S3Backend
from alicefs.hashing import hash_bytes
from tests.backends.conftest import MiB

# Over both the S3 multipart threshold (6 MiB) and the GCS resumable one (1 MiB) of the tests.
LARGE = 7 * MiB + 12345


@pytest.fixture(params=["s3", "gcs"])
def store(request) -> S3Backend | GCSBackend:
    return request.getfixturevalue(f"{request.param}_backend")


def put(backend, key: str, data: bytes, **kwargs):
    return backend.write_atomic(key, io.BytesIO(data), **kwargs)


def other_writer(backend: S3Backend | GCSBackend) -> S3Backend | GCSBackend:
    """Another client of the same location, as a second mount or tool would be."""
    return type(backend)(backend.location)


def content(size: str, fill: int) -> bytes:
    return bytes([fill]) * (LARGE if size == "large" else 1000)


def read_all(backend, key: str) -> bytes:
    with backend.open_read(key) as stream:
        return stream.read()


def chunks_with_side_effect(data: bytes, at: int, action: Callable[[], object]
                            ) -> Iterator[bytes]:
    """`data` in 1 MiB chunks; `action` runs before chunk number `at` is handed out. The
    upload source buffers the first chunks up to the upload threshold before anything is
    checked or sent, so `at` past that point runs it while parts are being uploaded."""
    for number, start in enumerate(range(0, len(data), MiB)):
        if number == at:
            action()
        yield data[start:start + MiB]


def s3_uploads_left(backend: S3Backend) -> list:
    listing = backend.client.list_multipart_uploads(Bucket=backend.bucket,
                                                    Prefix=backend.prefix)
    return listing.get("Uploads", [])


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


# -- both stores -------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["small", "large"])
def test_replace_with_the_current_token_publishes_a_new_version(store, size):
    old, new = content(size, 1), content(size, 2)
    first = put(store, "p/a.bin", old)
    token = first.info.change_token
    assert token and store.stat("p/a.bin").change_token == token
    # `overwrite` is not needed (and ignored): the token says what may be replaced.
    result = put(store, "p/a.bin", new, replaces=token)
    assert result.content_hash == hash_bytes(new)
    assert result.info.change_token not in (None, token)
    assert store.stat("p/a.bin").change_token == result.info.change_token
    assert read_all(store, "p/a.bin") == new
    # The new token is good for the next replacement, and the old one no longer is.
    with pytest.raises(FileExistsError):
        put(store, "p/a.bin", old, replaces=token)
    put(store, "p/a.bin", old, replaces=result.info.change_token,
        expected_hash=hash_bytes(old))
    assert read_all(store, "p/a.bin") == old


def test_replace_accepts_the_token_a_listing_reports(store):
    put(store, "p/a", b"one")
    [listed] = store.list()
    put(store, "p/a", b"two", replaces=listed.change_token)
    assert store.read("p/a", 0, 10) == b"two"


@pytest.mark.parametrize("size", ["small", "large"])
def test_replace_with_a_stale_token_is_refused(store, size):
    token = put(store, "p/a.bin", content(size, 1)).info.change_token
    theirs = content(size, 3)
    current = put(other_writer(store), "p/a.bin", theirs, overwrite=True).info.change_token
    with pytest.raises(FileExistsError) as info:
        put(store, "p/a.bin", content(size, 2), replaces=token, overwrite=True)
    assert info.value.errno == errno.EEXIST
    assert "'p/a.bin'" in str(info.value) and store.location.name in str(info.value)
    assert store.stat("p/a.bin").change_token == current
    assert read_all(store, "p/a.bin") == theirs


@pytest.mark.parametrize("size", ["small", "large"])
def test_replace_of_a_deleted_key_creates_it(store, size):
    token = put(store, "p/a.bin", content(size, 1)).info.change_token
    other_writer(store).delete("p/a.bin")
    new = content(size, 2)
    result = put(store, "p/a.bin", new, replaces=token)
    assert result.info.change_token == store.stat("p/a.bin").change_token
    assert read_all(store, "p/a.bin") == new


# -- S3: multipart uploads, the decisions on a refused condition, stores without them ---


def test_s3_multipart_replace_with_a_stale_token_changes_nothing(s3_backend):
    token = put(s3_backend, "p/big.mov", content("large", 1)).info.change_token
    theirs = content("large", 3)
    current = put(other_writer(s3_backend), "p/big.mov", theirs,
                  overwrite=True).info.change_token
    data = bytes(range(256)) * (52 * 1024)  # 13 MiB: three parts of 5 MiB

    def sent_anyway() -> None:
        raise AssertionError("the parts were uploaded before the stale token was noticed")

    # Streamed (the hash is given), so chunks past the buffered 7 MiB are read only to be sent.
    with pytest.raises(FileExistsError):
        s3_backend.write_atomic("p/big.mov", chunks_with_side_effect(data, 8, sent_anyway),
                                expected_hash=hash_bytes(data), replaces=token)
    assert s3_backend.stat("p/big.mov").change_token == current
    assert read_all(s3_backend, "p/big.mov") == theirs
    assert s3_uploads_left(s3_backend) == []


def test_s3_multipart_completion_refuses_a_key_replaced_during_the_upload(s3_backend):
    token = put(s3_backend, "p/big.mov", b"first").info.change_token
    theirs = b"replaced while the upload ran"

    def replace() -> None:
        put(other_writer(s3_backend), "p/big.mov", theirs, overwrite=True)

    data = bytes(range(256)) * (52 * 1024)  # 13 MiB: three parts of 5 MiB
    # Chunk 10 is past what the source buffers (7 MiB), so the HEAD check before the upload
    # still saw `token`: only the condition on the completion can refuse it.
    with pytest.raises(FileExistsError):
        s3_backend.write_atomic("p/big.mov", chunks_with_side_effect(data, 10, replace),
                                expected_hash=hash_bytes(data), replaces=token)
    assert s3_backend.read("p/big.mov", 0, 100) == theirs
    assert s3_uploads_left(s3_backend) == []


def test_s3_multipart_replace_creates_a_key_deleted_during_the_upload(s3_backend):
    token = put(s3_backend, "p/big.mov", b"first").info.change_token
    data = bytes(range(256)) * (52 * 1024)
    result = s3_backend.write_atomic(
        "p/big.mov", chunks_with_side_effect(data, 10, lambda: s3_backend.delete("p/big.mov")),
        expected_hash=hash_bytes(data), replaces=token)
    assert result.info.size == len(data)
    assert read_all(s3_backend, "p/big.mov") == data
    assert s3_uploads_left(s3_backend) == []


def test_s3_refused_replace_decisions(s3_backend):
    refused = client_error("PreconditionFailed", 412)
    ours = b"ours"
    token = put(s3_backend, "p/a", b"old").info.change_token
    put(other_writer(s3_backend), "p/a", ours, overwrite=True)
    # A retried request whose first attempt published our content: success.
    assert s3_backend._publish_refused(refused, "p/a", 2, len(ours), hash_bytes(ours),
                                       token) == "ours"
    # The first attempt refused, or another writer's content: refused.
    with pytest.raises(FileExistsError):
        s3_backend._publish_refused(refused, "p/a", 1, len(ours), hash_bytes(ours), token)
    with pytest.raises(FileExistsError):
        s3_backend._publish_refused(refused, "p/a", 2, 5, hash_bytes(b"mine!"), token)
    # The key is gone: a 412 (SeaweedFS) or a 404 NoSuchKey (AWS) means "create it".
    s3_backend.delete("p/a")
    assert s3_backend._publish_refused(refused, "p/a", 1, 4, hash_bytes(ours),
                                       token) == "create"
    assert s3_backend._publish_refused(client_error("NoSuchKey", 404), "p/a", 1, 4,
                                       hash_bytes(ours), token) == "create"


@pytest.mark.parametrize("size", ["small", "large"])
def test_s3_replace_without_conditional_writes_checks_by_head(s3_backend, size):
    # As after a store answered If-Match with NotImplemented.
    s3_backend._conditional_writes = False
    token = put(s3_backend, "p/a.bin", content(size, 1)).info.change_token
    current = put(s3_backend, "p/a.bin", content(size, 2), replaces=token).info.change_token
    with pytest.raises(FileExistsError):
        put(s3_backend, "p/a.bin", content(size, 3), replaces=token)
    assert read_all(s3_backend, "p/a.bin") == content(size, 2)
    s3_backend.delete("p/a.bin")
    put(s3_backend, "p/a.bin", content(size, 4), replaces=current)
    assert read_all(s3_backend, "p/a.bin") == content(size, 4)


# -- GCS ---------------------------------------------------------------------------------


def test_gcs_refused_replace_decisions(gcs_backend):
    ours = b"ours"
    generation = put(gcs_backend, "p/a", b"old").info.change_token
    put(other_writer(gcs_backend), "p/a", ours, overwrite=True)
    assert gcs_backend._upload_refused("p/a", 2, hash_bytes(ours), generation) == "ours"
    with pytest.raises(FileExistsError):
        gcs_backend._upload_refused("p/a", 1, hash_bytes(ours), generation)
    with pytest.raises(FileExistsError):
        gcs_backend._upload_refused("p/a", 2, hash_bytes(b"mine!"), generation)
    gcs_backend.delete("p/a")
    assert gcs_backend._upload_refused("p/a", 1, hash_bytes(ours), generation) == "create"


def test_gcs_token_that_is_no_generation_is_refused(gcs_backend):
    put(gcs_backend, "p/a", b"old")
    with pytest.raises(OSError) as info:
        put(gcs_backend, "p/a", b"new", replaces='"an-s3-etag"')
    assert info.value.errno == errno.EINVAL
    assert gcs_backend.read("p/a", 0, 10) == b"old"
