"""Storage backends: one per location type, behind the `Backend` interface."""

from __future__ import annotations

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

_BACKENDS: dict[LocationType, type[Backend]] = {
    LocationType.LOCAL: LocalBackend,
}


def open_backend(location: StorageLocation, *, skip_hidden: bool = True) -> Backend:
    """The backend for a location. Raises LookupError for a type this build has none for."""
    try:
        backend_class = _BACKENDS[location.type]
    except KeyError:
        raise LookupError(f"no backend for {location.type.value} locations") from None
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
