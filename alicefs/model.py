"""The records every part shares: storage locations and their stable identities."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from alicefs.rules import PlacementPolicy


class LocationType(StrEnum):
    LOCAL = "local"
    S3 = "s3"
    GCS = "gcs"


REDACTED = "***"
_SECRET_WORDS = ("secret", "token", "password", "access_key_id", "private_key")


def is_secret_key(key: str) -> bool:
    """Config keys whose values are credentials: never printed, logged or listed."""
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def redact(config: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (REDACTED if is_secret_key(k) else v) for k, v in config.items()}


def normalize_prefix(prefix: str) -> str:
    """Object-store prefix as a key prefix: no leading slash, one trailing slash unless empty."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def location_id_for(location_type: LocationType, path: str, config: Mapping[str, Any]) -> str:
    """A location's id, derived from what it is (type and place), never from its name.

    A catalog rebuilt from the same settings.yaml gets the same ids; renaming a location or
    changing its priority keeps its id. For object stores the place is endpoint, bucket and
    prefix, so two prefixes of one bucket are two locations.
    """
    if location_type is LocationType.LOCAL:
        place = os.path.normpath(path)
    else:
        endpoint = str(config.get("endpoint_url") or "").rstrip("/").lower()
        place = f"{endpoint}|{path}|{normalize_prefix(str(config.get('prefix') or ''))}"
    digest = hashlib.blake2b(f"{location_type.value}\0{place}".encode(), digest_size=6).hexdigest()
    return f"{location_type.value}-{digest}"


@dataclass(frozen=True, kw_only=True)
class StorageLocation(PlacementPolicy):
    """A configured storage root (the user guide's `StorageLocation`).

    `path` is a directory for `local` and the bucket name for `s3` and `gcs`; `config` holds the
    type-specific settings (prefix, region, credentials, ...), credentials included, so it is
    kept out of repr and shown only through `redacted_config()`.
    """

    type: LocationType
    path: str
    config: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", MappingProxyType(dict(self.config)))

    @classmethod
    def create(cls, name: str, path: str | os.PathLike[str], *, type: str = "local",
               priority: int = 50, status: str = "active",
               rules: Sequence[Mapping[str, Any]] = (), config: Mapping[str, Any] | None = None,
               min_free_bytes: int | str | None = None) -> StorageLocation:
        """A location from the values a settings.yaml entry takes (rules as mappings such as
        {"max_age_days": 30}), validated exactly like one: ConfigError names every problem.
        A relative local path is relative to the working directory."""
        from alicefs.config import location_from_values  # config builds on this module

        values: dict[str, Any] = {"name": name, "type": type, "path": os.fspath(path),
                                  "priority": priority, "status": status,
                                  "rules": [dict(r) for r in rules]}
        if config is not None:
            values["config"] = dict(config)
        if min_free_bytes is not None:
            values["min_free_bytes"] = min_free_bytes
        return location_from_values(values, f"StorageLocation {name!r}", Path.cwd())

    @property
    def prefix(self) -> str:
        return normalize_prefix(str(self.config.get("prefix") or ""))

    def redacted_config(self) -> dict[str, Any]:
        return redact(self.config)

    def __repr__(self) -> str:
        return (f"StorageLocation(location_id={self.location_id!r}, name={self.name!r}, "
                f"type={self.type.value!r}, path={self.path!r}, priority={self.priority}, "
                f"status={self.status.value!r}, rules={len(self.rules)}, "
                f"config={self.redacted_config()!r})")
