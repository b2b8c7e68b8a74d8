"""Object-store logic that needs no server: key mapping, upload sources, ranged readers, and
which errors are transient or final."""

from __future__ import annotations

import errno
import io
import json
import logging
import traceback
from datetime import UTC, datetime

import pytest
import requests
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from google.api_core import exceptions as gexc

from alicefs.backends import IntegrityError, LocationUnavailableError, UnsafeKeyError
from alicefs.backends import gcs as gcs_module
from alicefs.backends import s3 as s3_module
from alicefs.backends.base import TEMP_PREFIX
from alicefs.backends.objectstore import (
    RangedReader,
    datetime_ns,
    list_prefix,
    logical_key,
    metadata_mtime_ns,
    upload_source,
)
from alicefs.backends.s3 import S3Backend
from alicefs.hashing import hash_bytes
from alicefs.model import LocationType
from tests.backends.conftest import cloud_location


@pytest.mark.parametrize(("object_key", "expected"), [
    ("pre/p/a.png", "p/a.png"),
    ("pre/root.png", "root.png"),
    ("other/p/a.png", None),             # outside the prefix
    ("pre/", None),                      # the prefix's own marker
    ("pre/p/dir/", None),                # a directory marker
    ("pre/p//a.png", None),              # not a valid logical path
    ("pre/p/../a.png", None),
    ("pre/p/./a.png", None),
    (f"pre/p/{TEMP_PREFIX}123", None),   # a temporary object
    ("pre/p/.hidden", None),             # hidden, skipped by default
    ("pre/.git/config", None),
    ("pre/p/a" + "b" * 300, None),       # name too long
])
def test_logical_key(object_key, expected):
    assert logical_key(object_key, "pre/", skip_hidden=True) == expected


def test_logical_key_keeps_hidden_names_when_asked():
    assert logical_key("p/.hidden", "", skip_hidden=False) == "p/.hidden"
    assert logical_key(f"p/{TEMP_PREFIX}x", "", skip_hidden=False) is None


def test_list_prefix():
    assert list_prefix("") == ""
    assert list_prefix("a") == "a/"
    assert list_prefix("a/b/") == "a/b/"
    with pytest.raises(UnsafeKeyError):
        list_prefix("../x/")


def test_times_are_exact_nanoseconds():
    moment = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    assert datetime_ns(moment) == 1714979289_123456_000
    assert metadata_mtime_ns({"alicefs-mtime-ns": "42"}, 7) == 42
    assert metadata_mtime_ns({"alicefs-mtime-ns": "junk"}, 7) == 7
    assert metadata_mtime_ns(None, 7) == 7


# -- upload sources ---------------------------------------------------------------------


def drain(source, block=4):
    return b"".join(source.blocks(block))


def test_small_data_is_held_in_memory():
    with upload_source(io.BytesIO(b"hello"), limit=10, expected_hash=None,
                       stream_ok=True) as source:
        assert source.small == b"hello"
        assert source.announced_hash == hash_bytes(b"hello")


def test_large_seekable_file_is_hashed_first_then_read_in_place():
    data = bytes(range(256)) * 10
    stream = io.BytesIO(b"skip" + data)
    stream.seek(4)  # a file is uploaded from where it stands
    with upload_source(stream, limit=100, expected_hash=None, stream_ok=True) as source:
        assert source.small is None and source.file is stream
        assert source.size == len(data)
        assert source.announced_hash == hash_bytes(data)
        assert drain(source, 1000) == data
        assert source.verify("x", None) == hash_bytes(data)
        assert drain(source, 7) == data  # restartable


def test_large_stream_with_expected_hash_is_streamed_when_allowed():
    data = b"x" * 1000
    chunks = (data[i:i + 100] for i in range(0, 1000, 100))
    with upload_source(chunks, limit=150, expected_hash=hash_bytes(data),
                       stream_ok=True) as source:
        assert source.file is None and source.size is None
        assert [len(b) for b in source.blocks(300)] == [300, 300, 300, 100]
        source.verify("x", hash_bytes(data))


def test_large_stream_without_expected_hash_is_spooled():
    data = b"y" * 1000
    with upload_source(iter([data[:600], b"", data[600:]]), limit=150, expected_hash=None,
                       stream_ok=True) as source:
        assert source.file is not None and source.size == 1000
        assert source.announced_hash == hash_bytes(data)
        assert drain(source, 256) == data


def test_streamed_data_that_does_not_match_is_refused():
    with upload_source(iter([b"a" * 100]), limit=10, expected_hash=hash_bytes(b"other"),
                       stream_ok=True) as source:
        drain(source)
        with pytest.raises(IntegrityError):
            source.verify("x", hash_bytes(b"other"))


def test_reader_hashes_what_it_reads():
    data = b"z" * 5000
    with upload_source(io.BytesIO(data), limit=10, expected_hash=None,
                       stream_ok=False) as source:
        reader = source.reader()
        assert reader.read(1000) + reader.read() == data
        source.verify("x", hash_bytes(data))


# -- ranged reader ----------------------------------------------------------------------


def test_ranged_reader_fetches_in_windows_and_seeks():
    data = bytes(range(256)) * 100
    requests_made = []

    def fetch(offset, length):
        requests_made.append((offset, length))
        return data[offset:offset + length]

    reader = RangedReader(fetch, len(data), window=4096)
    assert reader.readall() == data
    assert all(length <= 4096 for _, length in requests_made)
    reader.seek(-10, io.SEEK_END)
    assert reader.read(100) == data[-10:]
    assert reader.read(100) == b""


def test_ranged_reader_refuses_an_object_that_shrank():
    reader = RangedReader(lambda offset, length: b"", 10)
    with pytest.raises(OSError) as info:
        reader.read(5)
    assert info.value.errno == errno.EIO


# -- S3 errors ---------------------------------------------------------------------------


def client_error(code: str, status: int, operation: str = "GetObject") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


@pytest.mark.parametrize(("exc", "transient"), [
    (client_error("SlowDown", 503), True),
    (client_error("InternalError", 500), True),
    (client_error("Whatever", 502), True),
    (client_error("TooManyRequests", 429), True),
    (client_error("RequestTimeout", 400), True),
    (EndpointConnectionError(endpoint_url="http://x"), True),
    (ReadTimeoutError(endpoint_url="http://x"), True),
    (client_error("NoSuchKey", 404), False),
    (client_error("NoSuchBucket", 404), False),
    (client_error("AccessDenied", 403), False),
    (client_error("InvalidAccessKeyId", 403), False),
    (client_error("SignatureDoesNotMatch", 403), False),
    (client_error("NotImplemented", 501), False),
    (ValueError("bug"), False),
])
def test_s3_transient_errors(exc, transient):
    assert s3_module.is_transient(exc) is transient


def s3_backend_without_server(**config) -> S3Backend:
    return S3Backend(cloud_location(LocationType.S3, "bucket", "cold", prefix="pre",
                                    endpoint_url="http://127.0.0.1:9", **config))


def test_s3_archived_object_is_a_clear_error_not_a_hang(caplog):
    backend = s3_backend_without_server()
    error = backend._map_error(client_error("InvalidObjectState", 403), "read 'p/a.mov'",
                               key="p/a.mov")
    assert error.errno == errno.EIO
    assert "restore" in str(error) and "p/a.mov" in str(error)
    assert "restore" in caplog.text


@pytest.mark.parametrize("code", ["NoSuchBucket", "InvalidAccessKeyId",
                                  "SignatureDoesNotMatch", "ExpiredToken"])
def test_s3_location_errors(code):
    error = s3_backend_without_server()._map_error(client_error(code, 403), "list", key=None)
    assert isinstance(error, LocationUnavailableError)
    assert "'cold'" in str(error) and code in str(error)


def test_s3_messages_never_carry_configured_secrets():
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY"
    backend = s3_backend_without_server(aws_access_key_id="AKIDSECRETID",
                                        aws_secret_access_key=secret)
    error = backend._map_error(client_error(f"Bad key {secret} AKIDSECRETID", 400), "x",
                               key=None)
    assert secret not in str(error) and "AKIDSECRETID" not in str(error)


# -- GCS errors --------------------------------------------------------------------------


@pytest.mark.parametrize(("exc", "transient"), [
    (gexc.ServiceUnavailable("down"), True),
    (gexc.TooManyRequests("slow down"), True),
    (gexc.InternalServerError("oops"), True),
    (gexc.GatewayTimeout("late"), True),
    (requests.exceptions.ConnectionError("reset"), True),
    (requests.exceptions.ReadTimeout("late"), True),
    (gexc.NotFound("gone"), False),
    (gexc.Forbidden("no"), False),
    (gexc.Unauthorized("who"), False),
    (gexc.PreconditionFailed("exists"), False),
])
def test_gcs_transient_errors(exc, transient):
    assert gcs_module.is_transient(exc) is transient


def test_gcs_error_mapping():
    backend = gcs_module.GCSBackend(cloud_location(LocationType.GCS, "bucket", "g"))
    assert isinstance(backend._map_error(gexc.Unauthorized("bad token"), "list", None),
                      LocationUnavailableError)
    assert isinstance(backend._map_error(gexc.NotFound("no bucket"), "list", None),
                      LocationUnavailableError)
    denied = backend._map_error(gexc.Forbidden("no storage.objects.get"), "read", "k")
    assert isinstance(denied, PermissionError)
    unreachable = backend._map_error(requests.exceptions.ConnectionError("refused"), "list",
                                     None)
    assert isinstance(unreachable, LocationUnavailableError)
    assert "unreachable" in str(unreachable)


def test_errors_are_logged_at_debug_only_for_skipped_keys(caplog):
    caplog.set_level(logging.DEBUG, logger="alicefs.backends.objectstore")
    assert logical_key("p/dir/", "", True) is None
    assert "directory marker" in caplog.text


# -- credentials that cannot work fail before any request, and never show -----------------


def test_s3_missing_profile_is_an_unavailable_location():
    backend = S3Backend(cloud_location(LocationType.S3, "bucket", "cold",
                                       profile="no-such-profile-for-alicefs"))
    with pytest.raises(LocationUnavailableError) as info:
        backend.probe()
    assert "'cold'" in str(info.value) and "no-such-profile-for-alicefs" in str(info.value)


def test_gcs_unusable_key_file_is_an_unavailable_location(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key_material = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC-not-a-real-key"
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "abc",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{key_material}\n-----END PRIVATE KEY-----\n",
        "client_email": "alicefs@p.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token"}))
    backend = gcs_module.GCSBackend(cloud_location(LocationType.GCS, "bucket", "g",
                                                   credentials_path=str(key_file)))
    with pytest.raises(LocationUnavailableError) as info:
        backend.probe()
    assert "credentials" in str(info.value)
    assert key_material not in "".join(traceback.format_exception(info.value))
    assert key_material not in caplog.text
