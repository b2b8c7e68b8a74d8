"""The S3 server dies in the middle of a multipart upload. Either the upload completes once the
server is back (parts are retried until the deadline), or it fails cleanly: never a partial
object under the final key. A real SeaweedFS, killed with SIGKILL and restarted on the same
ports and data directory."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from alicefs.backends import LocationUnavailableError
from alicefs.backends.s3 import S3Backend
from alicefs.hashing import hash_bytes
from tests.backends.conftest import MiB, s3_location, unique_prefix
from tests.servers import S3Server, ServerStartError

PART = 5 * MiB
PARTS = 8


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory):
    """A server of this module's own: the shared one must not be killed under other tests."""
    server = S3Server(tmp_path_factory.mktemp("seaweedfs-faults"))
    try:
        server.start()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    bucket = server.create_bucket()
    yield server, bucket
    server.stop()


def restart(server: S3Server) -> None:
    try:
        server.start()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)


def payload() -> list[bytes]:
    return [bytes([i]) * PART for i in range(PARTS)]


def killing_source(server: S3Server, chunks: list[bytes], kill_after: int,
                   on_kill=None):
    """Yields the chunks; after `kill_after` of them the server dies (SIGKILL). Parts already
    handed to upload threads are in flight at that moment."""
    for i, chunk in enumerate(chunks):
        if i == kill_after:
            server.kill()
            if on_kill is not None:
                on_kill()
        yield chunk


def no_object_visible(server: S3Server, bucket: str, backend: S3Backend, key: str) -> None:
    with pytest.raises(FileNotFoundError):
        backend.stat(key)
    listed = server.client().list_objects_v2(Bucket=bucket, Prefix=backend.prefix)
    assert listed.get("KeyCount", 0) == 0


def test_upload_survives_a_server_restart(crash_server, caplog):
    server, bucket = crash_server
    caplog.set_level(logging.INFO, logger="alicefs.backends.retry")
    backend = S3Backend(s3_location(server, bucket, prefix=unique_prefix(),
                                    retry_deadline=60.0))
    chunks = payload()
    data = b"".join(chunks)
    restarter = threading.Thread(target=lambda: (time.sleep(0.5), restart(server)))
    try:
        result = backend.write_atomic(
            "p/video.mov", killing_source(server, chunks, 3, on_kill=restarter.start),
            expected_hash=hash_bytes(data))
    except OSError:
        restarter.join()
        # Failing is allowed, but only cleanly.
        no_object_visible(server, bucket, backend, "p/video.mov")
        return
    restarter.join()
    assert result.content_hash == hash_bytes(data)
    assert "transient failure" in caplog.text  # it did go through retries
    with backend.open_read("p/video.mov") as stream:
        assert hash_bytes(stream.read()) == hash_bytes(data)
    uploads = server.client().list_multipart_uploads(Bucket=bucket, Prefix=backend.prefix)
    assert uploads.get("Uploads", []) == []


def test_upload_fails_cleanly_when_the_server_stays_down(crash_server):
    server, bucket = crash_server
    backend = S3Backend(s3_location(server, bucket, prefix=unique_prefix(),
                                    retry_deadline=2.0))
    chunks = payload()
    started = time.monotonic()
    with pytest.raises(LocationUnavailableError) as info:
        backend.write_atomic("p/video.mov", killing_source(server, chunks, 3),
                             expected_hash=hash_bytes(b"".join(chunks)))
    assert "unreachable" in str(info.value)
    assert time.monotonic() - started < 30  # the deadline, not a hang
    restart(server)
    no_object_visible(server, bucket, backend, "p/video.mov")
    # The abort could not reach the server: the unfinished upload is still there, but it is
    # invisible under the key, and a later write of the same key is unaffected.
    backend.write_atomic("p/video.mov", iter(chunks))
    assert backend.stat("p/video.mov").size == len(b"".join(chunks))
