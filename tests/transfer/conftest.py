from __future__ import annotations

from pathlib import Path

import pytest

from alicefs.backends import Backend, LocalBackend
from alicefs.backends.gcs import GCSBackend
from alicefs.backends.s3 import S3Backend
from tests.backends.conftest import gcs_location, local_location, s3_location, unique_prefix


def open_location_backend(request: pytest.FixtureRequest, kind: str, root: Path, name: str
                          ) -> Backend:
    """A fresh location of `kind` (local: a directory under `root`; s3, gcs: a prefix of the
    test server's bucket)."""
    if kind == "local":
        (root / name).mkdir()
        return LocalBackend(local_location(root / name, name))
    if kind == "s3":
        return S3Backend(s3_location(request.getfixturevalue("s3_server"),
                                     request.getfixturevalue("s3_bucket"), name=name,
                                     prefix=unique_prefix()))
    if kind == "gcs":
        request.getfixturevalue("gcs_server")
        return GCSBackend(gcs_location(request.getfixturevalue("gcs_bucket"), name=name,
                                       prefix=unique_prefix()))
    raise AssertionError(kind)


#: Every pair of location types a move goes between, and within one store.
PAIRS = ["local-local", "local-s3", "s3-local", "local-gcs", "gcs-local", "s3-gcs",
         "gcs-s3", "s3-s3", "gcs-gcs"]


@pytest.fixture(params=PAIRS)
def pair(request, tmp_path) -> tuple[Backend, Backend]:
    """(source, target): two locations of the kinds the parameter names."""
    source_kind, target_kind = request.param.split("-")
    return (open_location_backend(request, source_kind, tmp_path, "source"),
            open_location_backend(request, target_kind, tmp_path, "target"))
