"""Tier migration from a script: a small tiered library in a temporary directory (recent
work on a fast disk, older work due for the archive), a preview of the migration, then the
migration itself. Runs in a second or two:

    python examples/auto_migration_demo.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from alicefs import (
    AutoMigrationService,
    DuckDBSearchCache,
    MultiPathScanner,
    StorageLocation,
    StorageRegistry,
)

DAY = 86_400


def make_library(ssd: Path) -> None:
    """Everything starts on the SSD: ten renders of this week, ten of two months ago."""
    for age_days, name in ((2, "fresh"), (60, "aged")):
        folder = ssd / "neon-city" / "renders"
        folder.mkdir(parents=True, exist_ok=True)
        then = time.time() - age_days * DAY
        for i in range(10):
            path = folder / f"{name}-{i:02d}.png"
            path.write_bytes(os.urandom(4096))
            os.utime(path, (then, then))


async def main(root: Path) -> int:
    make_library(root / "ssd")
    (root / "archive").mkdir()
    cache = DuckDBSearchCache(root / "data" / "search.duckdb")
    registry = StorageRegistry(cache)
    registry.register_location(StorageLocation.create(
        "Fast SSD", root / "ssd", priority=100, rules=[{"max_age_days": 30}]))
    registry.register_location(StorageLocation.create(
        "Archive HDD", root / "archive", priority=50, rules=[{"min_age_days": 30}]))
    scanner = MultiPathScanner(cache, registry)
    await scanner.discover_all_assets()

    service = AutoMigrationService(cache, registry, scanner)
    preview = await service.run_auto_migration(dry_run=True, move=True)
    print(f"preview: {len(preview.plan.transfers)} files to move")
    for transfer in preview.plan.transfers[:3]:
        print(f"  {transfer.logical_path}: {transfer.rule}")

    result = await service.run_auto_migration(move=True)
    print(f"migrated: {result.counts()}")
    archived = sorted(p.name for p in (root / "archive" / "neon-city" / "renders").iterdir())
    print(f"the archive now holds {len(archived)} renders, e.g. {archived[0]}")
    again = await service.run_auto_migration(dry_run=True, move=True)
    print(f"a second run would move {len(again.plan.transfers)} files")
    cache.close()
    return 0 if result.counts() == {"moved": 10} and not again.plan.transfers else 1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="alicefs-migration-demo-") as tmp:
        sys.exit(trio.run(main, Path(tmp)))
