"""Storage backends: one per location type, behind the `Backend` interface."""

from __future__ import annotations

import importlib

from alicefs.backends.base import (
    Backend,
    IntegrityError,
    LocationUnavailableError,
    ObjectInfo,
    UnsafeKeyError,
    WriteResult,
    check_key,
)
from alicefs.backends.local import LocalBackend
from alicefs.model import LocationType, StorageLocation

# Imported on first use: boto3 and google-cloud-storage take a quarter of a second to import,
# which every alicefs-ctl command would otherwise pay.
_BACKENDS: dict[LocationType, tuple[str, str]] = {
    LocationType.LOCAL: ("alicefs.backends.local", "LocalBackend"),
    LocationType.S3: ("alicefs.backends.s3", "S3Backend"),
    LocationType.GCS: ("alicefs.backends.gcs", "GCSBackend"),
}


def open_backend(location: StorageLocation, *, skip_hidden: bool = True) -> Backend:
    """The backend for a location. Raises LookupError for a type this build has none for."""
    try:
        module_name, class_name = _BACKENDS[location.type]
    except KeyError:
        raise LookupError(f"no backend for {location.type.value} locations") from None
    backend_class: type[Backend] = getattr(importlib.import_module(module_name), class_name)
    return backend_class(location, skip_hidden=skip_hidden)


__all__ = [
    "Backend",
    "IntegrityError",
    "LocalBackend",
    "LocationUnavailableError",
    "ObjectInfo",
    "UnsafeKeyError",
    "WriteResult",
    "check_key",
    "open_backend",
]
