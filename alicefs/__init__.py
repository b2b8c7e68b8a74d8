"""alicefs: one mounted tree over every storage location a media library lives in.

The Python API of the user guide (docs/api.md), importable from here:

    from alicefs import (AutoMigrationService, DuckDBSearchCache, MultiPathScanner,
                         StorageLocation, StorageRegistry, SyncTracker)

Its methods are async and run under trio (`trio.run(main)`); from plain synchronous code,
`alicefs.run(async_function, *args, **kwargs)` runs one call to completion.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__version__ = "0.1.0"

T = TypeVar("T")

# Loaded on first use, so `import alicefs` (every command's start) stays cheap.
_EXPORTS = {
    "StorageRegistry": "alicefs.registry",
    "StorageLocation": "alicefs.model",
    "DuckDBSearchCache": "alicefs.catalog",
    "Catalog": "alicefs.catalog",
    "MultiPathScanner": "alicefs.scanner",
    "AutoMigrationService": "alicefs.migrate",
    "SyncTracker": "alicefs.sync",
    "Strategy": "alicefs.sync",
    "SyncState": "alicefs.sync",
    "Rule": "alicefs.rules",
    "AliceError": "alicefs.errors",
    "ApiMisuseError": "alicefs.errors",
    "CatalogError": "alicefs.errors",
    "ConfigError": "alicefs.errors",
    "NotFoundError": "alicefs.errors",
    "UsageError": "alicefs.errors",
}

__all__ = [*_EXPORTS, "run"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'alicefs' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def run(function: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Run one async API call from synchronous code, e.g.
    `alicefs.run(scanner.discover_all_assets, force_scan=True)` (a trio event loop for the
    duration of the call; not from inside one)."""
    import trio

    return trio.run(functools.partial(function, *args, **kwargs))
