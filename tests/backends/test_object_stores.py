"""S3 and GCS beyond the common contract: server-side copy, what listings skip, pagination,
metadata, and how unreachable buckets, bad credentials and dead endpoints fail. Real servers
(tests/servers.py), no mocks."""

from __future__ import annotations

import errno
import io
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from google.cloud import storage

from alicefs.backends import Backend, LocationUnavailableError, open_backend
from alicefs.backends.base import TEMP_PREFIX
from alicefs.backends.gcs import GCSBackend
from alicefs.backends.s3 import S3Backend
from alicefs.backends.threaded import ThreadedBackend
from alicefs.hashing import hash_bytes
from alicefs.model import StorageLocation
from tests.backends.conftest import MiB, gcs_location, s3_location, unique_prefix
from tests.proxy import TcpProxy
from tests.servers import free_ports


@dataclass
class Cloud:
    """One object store under test: a backend on a fresh prefix, a way to make more backends
    with other settings, and a raw SDK writer for objects alicefs would never write."""

    kind: str
    backend: S3Backend | GCSBackend
    location: Callable[..., StorageLocation]  # (bucket=..., **config) -> StorageLocation
    raw_put: Callable[[str, bytes], None]     # object key relative to the backend's prefix
    bucket: str

    def make(self, **config: Any) -> S3Backend | GCSBackend:
        bucket = config.pop("bucket", self.bucket)
        return open_backend(self.location(bucket, **config))  # type: ignore[return-value]


@pytest.fixture(params=["s3", "gcs"])
def cloud(request) -> Cloud:
    prefix = unique_prefix()
    if request.param == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        client = server.client()

        def location(bucket: str, **config: Any) -> StorageLocation:
            return s3_location(server, bucket, **{"prefix": prefix, **config})

        def raw_put(key: str, data: bytes) -> None:
            client.put_object(Bucket=bucket, Key=prefix + key, Body=data)
    else:
        request.getfixturevalue("gcs_server")
        bucket = request.getfixturevalue("gcs_bucket")
        raw_bucket = storage.Client().bucket(bucket)

        def location(bucket: str, **config: Any) -> StorageLocation:
            return gcs_location(bucket, **{"prefix": prefix, **config})

        def raw_put(key: str, data: bytes) -> None:
            raw_bucket.blob(prefix + key).upload_from_string(data)
    backend = open_backend(location(bucket))
    return Cloud(request.param, backend, location, raw_put, bucket)  # type: ignore[arg-type]


def put(backend: Backend, key: str, data: bytes, **kwargs):
    return backend.write_atomic(key, io.BytesIO(data), **kwargs)


# -- metadata ------------------------------------------------------------------------------


def test_hash_and_mtime_live_in_object_metadata(cloud):
    put(cloud.backend, "p/a.png", b"png", mtime_ns=1_234_567_890_123_456_789)
    info = cloud.backend.stat("p/a.png")
    assert info.content_hash == hash_bytes(b"png")
    assert info.mtime_ns == 1_234_567_890_123_456_789
    assert info.change_token
    # A fresh backend (no state carried over) reads the same from the store.
    assert cloud.make().stat("p/a.png") == info
    [listed] = cloud.backend.list()
    if cloud.kind == "gcs":  # GCS listings carry metadata
        assert listed == info
    else:  # ListObjectsV2 does not: size and change token only, mtime is LastModified
        assert (listed.size, listed.change_token, listed.content_hash) == (3, info.change_token,
                                                                           None)


def test_what_a_write_reports_is_what_the_store_holds(cloud):
    """Every write after the first is verified without reading it back (S3: by the ETag,
    the store's MD5 of what it stored): what it reports must be what stat() then says."""
    for i in range(3):
        data = f"file {i}".encode() * 100
        result = put(cloud.backend, f"p/{i}.png", data, expected_hash=hash_bytes(data),
                     mtime_ns=1_000_000_000_000 + i)
        assert result.content_hash == hash_bytes(data)
        assert result.info == cloud.backend.stat(f"p/{i}.png")


def test_objects_written_by_other_tools_are_listed_with_store_times(cloud):
    cloud.raw_put("p/foreign.jpg", b"jpeg")
    info = cloud.backend.stat("p/foreign.jpg")
    assert info.size == 4 and info.content_hash is None and info.mtime_ns > 1.6e18
    assert [o.key for o in cloud.backend.list()] == ["p/foreign.jpg"]


# -- listing -------------------------------------------------------------------------------


def test_listing_skips_what_is_not_a_file_of_the_location(cloud):
    for key in ["p/dir/", "p/ok.png", f"p/{TEMP_PREFIX}1234", "p/.hidden", ".git/config",
                "p/sub/.DS_Store"]:
        cloud.raw_put(key, b"x")
    assert [o.key for o in cloud.backend.list()] == ["p/ok.png"]
    assert [o.key for o in cloud.backend.list("p/")] == ["p/ok.png"]
    shown = type(cloud.backend)(cloud.backend.location, skip_hidden=False)
    assert sorted(o.key for o in shown.list()) == [".git/config", "p/.hidden", "p/ok.png",
                                                   "p/sub/.DS_Store"]


def test_listing_stays_inside_the_prefix(cloud):
    put(cloud.backend, "a/1", b"1")
    neighbour = cloud.make(prefix=unique_prefix())
    put(neighbour, "a/2", b"2")
    assert [o.key for o in cloud.backend.list()] == ["a/1"]
    assert [o.key for o in neighbour.list()] == ["a/2"]


def test_listing_pages_through_many_keys(cloud):
    count = 1010 if cloud.kind == "s3" else 120
    cloud.backend.list_page_size = 1000 if cloud.kind == "s3" else 50

    def write(i: int) -> None:
        cloud.raw_put(f"many/{i:05d}.png", b"x")

    threads = [threading.Thread(target=lambda j=j: [write(i) for i in range(j, count, 16)])
               for j in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    keys = [o.key for o in cloud.backend.list("many/")]
    assert keys == [f"many/{i:05d}.png" for i in range(count)]


# -- server-side copy ----------------------------------------------------------------------


def test_copy_within_keeps_content_and_metadata(cloud):
    data = b"v" * 1000
    put(cloud.backend, "p/src.mov", data, mtime_ns=1_500_000_000_000_000_001)
    result = cloud.backend.copy_within("p/src.mov", "q/dst.mov")
    assert result.content_hash == hash_bytes(data)
    info = cloud.backend.stat("q/dst.mov")
    assert (info.size, info.mtime_ns, info.content_hash) == (1000, 1_500_000_000_000_000_001,
                                                             hash_bytes(data))
    assert cloud.backend.read("q/dst.mov", 0, 2000) == data
    with pytest.raises(FileExistsError):
        cloud.backend.copy_within("p/src.mov", "q/dst.mov")
    put(cloud.backend, "p/other", b"other")
    cloud.backend.copy_within("p/other", "q/dst.mov", overwrite=True)
    assert cloud.backend.read("q/dst.mov", 0, 100) == b"other"
    with pytest.raises(FileNotFoundError):
        cloud.backend.copy_within("p/none", "q/x")


def test_copy_within_of_a_foreign_object_hashes_the_copy(cloud):
    cloud.raw_put("p/foreign", b"made elsewhere")
    result = cloud.backend.copy_within("p/foreign", "p/copy")
    assert result.content_hash == hash_bytes(b"made elsewhere")


def test_s3_copies_large_objects_part_by_part(s3_server, s3_bucket):
    backend = S3Backend(s3_location(s3_server, s3_bucket, prefix=unique_prefix()))
    backend.max_single_copy = 6 * MiB  # as if over the 5 GiB limit of one CopyObject
    data = bytes(range(256)) * (52 * 1024)  # 13 MiB: three parts of 5 MiB
    put(backend, "p/big", data)
    result = backend.copy_within("p/big", "p/big-copy")
    assert result.content_hash == hash_bytes(data)
    assert backend.read("p/big-copy", 5 * MiB - 10, 20) == data[5 * MiB - 10:5 * MiB + 10]
    with backend.open_read("p/big-copy") as stream:
        assert hash_bytes(stream.read()) == hash_bytes(data)


# -- S3 specifics --------------------------------------------------------------------------


def test_s3_concurrent_creates_have_one_winner(s3_backend):
    outcomes: list[str] = []

    def create(i: int) -> None:
        try:
            put(s3_backend, "p/race", f"writer {i}".encode())
            outcomes.append("won")
        except FileExistsError:
            outcomes.append("refused")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["refused"] * 7 + ["won"]


def test_s3_failed_multipart_upload_leaves_no_upload_behind(s3_server, s3_bucket, s3_backend):
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: multipart with the test settings
    with pytest.raises(OSError):
        s3_backend.write_atomic("p/bad", iter([data]), expected_hash=hash_bytes(b"other"))
    uploads = s3_server.client().list_multipart_uploads(Bucket=s3_bucket,
                                                        Prefix=s3_backend.prefix)
    assert uploads.get("Uploads", []) == []


def test_s3_reader_refuses_an_object_replaced_while_it_is_read(s3_backend):
    old, new = b"o" * (9 * MiB), b"n" * (9 * MiB)
    put(s3_backend, "p/clip.mov", old)
    with s3_backend.open_read("p/clip.mov") as stream:
        assert stream.read(10) == b"o" * 10  # the first 8 MiB window is fetched
        put(s3_backend, "p/clip.mov", new, overwrite=True)
        with pytest.raises(OSError) as info:
            stream.read()
    assert info.value.errno == errno.ESTALE


def test_a_stream_reads_one_version_from_an_offset_to_the_end(cloud):
    """What a sequential reader of the mount is served by: S3 one GET, GCS large ranges."""
    old, new = bytes(range(256)) * (40 * 1024), b"n" * (10 * MiB)
    info = put(cloud.backend, "p/clip.mov", old).info
    with cloud.backend.open_stream("p/clip.mov", 3 * MiB + 5, info.size,
                                   info.change_token) as stream:
        assert stream.read(MiB) == old[3 * MiB + 5:4 * MiB + 5]
        rest = bytearray()
        while chunk := stream.read(MiB):
            rest += chunk
    assert bytes(rest) == old[4 * MiB + 5:]
    if cloud.kind == "gcs":
        return  # the emulator ignores generation preconditions on reads (real GCS does not)
    put(cloud.backend, "p/clip.mov", new, overwrite=True)
    with pytest.raises(OSError) as refused, cloud.backend.open_stream(
            "p/clip.mov", 0, info.size, info.change_token) as stream:
        stream.read(MiB)
    assert refused.value.errno == errno.ESTALE


def test_s3_storage_class_is_applied(s3_server, s3_bucket):
    backend = S3Backend(s3_location(s3_server, s3_bucket, prefix=unique_prefix(),
                                    storage_class="STANDARD_IA"))
    put(backend, "p/cold", b"x")
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=backend.prefix + "p/cold")
    assert head.get("StorageClass") == "STANDARD_IA"


async def test_s3_through_the_threaded_backend(s3_backend):
    threaded = ThreadedBackend(s3_backend)
    assert threaded.limiter.total_tokens == 16  # the S3 default max_concurrent
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(threaded.call, "write_atomic", f"p/{i}", [b"%d" % i])
    listed = await threaded.call("list")
    assert len(list(listed)) == 20


# -- failures: missing bucket, bad credentials, dead endpoint ------------------------------


def test_missing_bucket_is_an_unavailable_location(cloud):
    backend = cloud.make(bucket="no-such-bucket-here")
    for call in (backend.probe, lambda: list(backend.list()),
                 lambda: backend.stat("p/a"), lambda: backend.read("p/a", 0, 1),
                 lambda: put(backend, "p/a", b"x")):
        with pytest.raises(LocationUnavailableError) as info:
            call()
        assert "no-such-bucket-here" in str(info.value)
        assert "does not exist" in str(info.value)


def test_probe_of_a_good_location(cloud):
    cloud.backend.probe()


def test_dead_endpoint_fails_within_the_deadline(cloud, monkeypatch):
    port = free_ports(1)[0]  # nothing listens there
    if cloud.kind == "gcs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        backend = cloud.make(retry_deadline=1.0)
    else:
        backend = cloud.make(endpoint_url=f"http://127.0.0.1:{port}", retry_deadline=1.0)
    with pytest.raises(LocationUnavailableError) as info:
        backend.probe()
    assert "unreachable" in str(info.value)
    with pytest.raises(LocationUnavailableError):
        backend.stat("p/a")


def test_a_request_whose_answer_is_lost_is_tried_again_within_the_deadline(cloud, monkeypatch,
                                                                           caplog):
    """A request the store never answers waits `read_timeout`, not the whole deadline: the
    call is tried again and succeeds (with the 60 s the SDKs wait, one lost answer used
    up the deadline and failed the call: an upload, so an fsync)."""
    # By default, room for two retries of a lost answer within the deadline.
    backend_type = type(cloud.backend)
    assert backend_type.default_read_timeout * 3 <= backend_type.default_retry_deadline
    cloud.raw_put("p/a.png", b"content")
    server = cloud.backend.location.config.get("endpoint_url") or cloud.kind
    proxy = TcpProxy(int(server.rsplit(":", 1)[1]) if cloud.kind == "s3" else
                     int(os.environ["STORAGE_EMULATOR_HOST"].rsplit(":", 1)[1]))
    try:
        if cloud.kind == "gcs":
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
            backend = cloud.make(read_timeout=1.0, retry_deadline=10.0)
        else:
            backend = cloud.make(endpoint_url=proxy.url, read_timeout=1.0, retry_deadline=10.0)
        assert backend.stat("p/a.png").size == len(b"content")  # connected, as a mount is
        caplog.set_level(logging.INFO, logger="alicefs.backends.retry")
        proxy.hang_next()
        started = time.monotonic()
        assert backend.stat("p/a.png").size == len(b"content")
        assert time.monotonic() - started >= 1.0  # it did wait for the lost answer
        assert "transient failure" in caplog.text
        proxy.hang_next()
        put(backend, "p/b.png", b"written")
        with backend.open_read("p/b.png") as stream:
            assert stream.read() == b"written"
    finally:
        proxy.close()


def test_bad_s3_credentials_fail_at_once_and_never_leak(s3_server, s3_bucket, caplog):
    secret = "alicefsTestSecretValue0123456789abcdefXYZ"
    backend = S3Backend(s3_location(s3_server, s3_bucket, prefix=unique_prefix(),
                                    aws_secret_access_key=secret))
    caplog.set_level(logging.DEBUG)  # everything, botocore's own debug output included
    failures = []
    for call in (backend.probe, lambda: list(backend.list()), lambda: backend.stat("p/a"),
                 lambda: put(backend, "p/a", b"x"), lambda: backend.read("p/a", 0, 1)):
        with pytest.raises(LocationUnavailableError) as info:
            call()
        failures.append(info.value)
    for error in failures:
        text = "".join(traceback.format_exception(error))
        assert secret not in text
        assert str(backend.location.name) in str(error)
        assert any(word in str(error) for word in ("credentials", "access denied"))
    assert caplog.records, "expected log output to check"
    assert secret not in caplog.text
    retried = [r for r in caplog.records if r.name == "alicefs.backends.retry"]
    assert retried == []  # permanent: failed at once
    assert secret not in repr(backend.location)
