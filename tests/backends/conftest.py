from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from alicefs.backends import Backend, LocalBackend
from alicefs.backends.gcs import GCSBackend
from alicefs.backends.s3 import S3Backend
from alicefs.model import LocationType, StorageLocation, location_id_for
from alicefs.rules import LocationStatus

MiB = 1 << 20


def local_location(root: Path, name: str = "local", **config) -> StorageLocation:
    return StorageLocation(
        location_id=location_id_for(LocationType.LOCAL, str(root), config), name=name,
        priority=50, status=LocationStatus.ACTIVE, rules=(), min_free_bytes=None,
        type=LocationType.LOCAL, path=str(root), config=config)


def cloud_location(location_type: LocationType, bucket: str, name: str,
                   **config) -> StorageLocation:
    return StorageLocation(
        location_id=location_id_for(location_type, bucket, config), name=name, priority=50,
        status=LocationStatus.ACTIVE, rules=(), min_free_bytes=None, type=location_type,
        path=bucket, config=config)


def s3_location(server, bucket: str, *, name: str = "s3", **config) -> StorageLocation:
    """An S3 location on the test server. Small multipart settings so that tests exercise
    multipart uploads with a few MiB; a short retry deadline so failures show quickly, and
    a read timeout short enough for a lost answer to be tried again within it."""
    settings = {"endpoint_url": server.endpoint_url, "region": "us-east-1",
                "aws_access_key_id": server.access_key,
                "aws_secret_access_key": server.secret_key,
                "multipart_threshold": 6 * MiB, "multipart_chunksize": 5 * MiB,
                "retry_deadline": 10.0, "read_timeout": 3.0, **config}
    return cloud_location(LocationType.S3, bucket, name, **settings)


def gcs_location(bucket: str, *, name: str = "gcs", **config) -> StorageLocation:
    settings = {"resumable_threshold": 1 * MiB, "retry_deadline": 10.0, "read_timeout": 3.0,
                **config}
    return cloud_location(LocationType.GCS, bucket, name, **settings)


def unique_prefix() -> str:
    """Tests share one bucket per server and keep apart by prefix."""
    return f"test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def s3_backend(s3_server, s3_bucket) -> S3Backend:
    return S3Backend(s3_location(s3_server, s3_bucket, prefix=unique_prefix()))


@pytest.fixture
def gcs_backend(gcs_server, gcs_bucket) -> GCSBackend:
    return GCSBackend(gcs_location(gcs_bucket, prefix=unique_prefix()))


# The contract suite runs against every backend type listed here; S3 and GCS run against real
# servers (tests/servers.py), started once per session when first needed.
@pytest.fixture(params=["local", "s3", "gcs"])
def backend(request, local_root: Path) -> Backend:
    if request.param == "local":
        return LocalBackend(local_location(local_root))
    if request.param == "s3":
        return request.getfixturevalue("s3_backend")
    if request.param == "gcs":
        return request.getfixturevalue("gcs_backend")
    raise AssertionError(request.param)
