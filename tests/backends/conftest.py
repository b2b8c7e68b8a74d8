from __future__ import annotations

from pathlib import Path

import pytest

from alicefs.backends import Backend, LocalBackend
from alicefs.model import LocationType, StorageLocation, location_id_for
from alicefs.rules import LocationStatus


def local_location(root: Path, name: str = "local", **config) -> StorageLocation:
    return StorageLocation(
        location_id=location_id_for(LocationType.LOCAL, str(root), config), name=name,
        priority=50, status=LocationStatus.ACTIVE, rules=(), min_free_bytes=None,
        type=LocationType.LOCAL, path=str(root), config=config)


@pytest.fixture
def local_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


# The contract suite runs against every backend type listed here; S3 and GCS join it with
# fixtures that start real servers.
@pytest.fixture(params=["local"])
def backend(request, local_root: Path) -> Backend:
    if request.param == "local":
        return LocalBackend(local_location(local_root))
    raise AssertionError(request.param)
