"""Sync tracking from a script: a file on two disks edited differently on each (a conflict),
detected, then resolved with each strategy in turn (newest, largest, primary, manual); the
losing versions are kept beside the file. Runs in a few seconds in a temporary directory:

    python examples/sync_tracking_demo.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from alicefs import (
    DuckDBSearchCache,
    MultiPathScanner,
    StorageLocation,
    StorageRegistry,
    SyncTracker,
)

KEY = Path("neon-city") / "hero.png"


def write(path: Path, data: bytes, age_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = time.time() - age_s
    os.utime(path, (then, then))


async def main(root: Path) -> int:
    studio, backup = root / "studio", root / "backup"
    cache = DuckDBSearchCache(root / "data" / "search.duckdb")
    registry = StorageRegistry(cache)
    registry.register_location(StorageLocation.create("studio", studio, priority=100))
    registry.register_location(StorageLocation.create("backup", backup, priority=50))
    scanner = MultiPathScanner(cache, registry)
    tracker = SyncTracker(registry)

    # (strategy, the studio's edit, the backup's edit, --keep): each decides differently.
    rounds = [("newest", b"studio, older edit", b"backup, newer edit", None),
              ("largest", b"studio, the longer edit", b"backup, short", None),
              ("primary", b"studio's", b"backup's", None),
              ("manual", b"studio's take", b"backup's take", "backup")]
    for strategy, ours, theirs, keep in rounds:
        for disk in (studio, backup):
            write(disk / KEY, b"agreed version", 3600)
        await scanner.discover_all_assets()
        write(studio / KEY, ours, 120)
        write(backup / KEY, theirs, 60)
        await scanner.discover_all_assets()
        conflicts = await tracker.detect_conflicts()
        print(f"{strategy}: {len(conflicts)} conflict in {conflicts[0].logical_path}")
        result = await tracker.resolve_conflict(str(KEY), strategy, keep=keep)
        decision = result.decisions[0]
        winner = registry.get_location(decision.winner.location_id).name
        print(f"  {decision.why}: the {winner} version wins")
        [outcome] = result.outcomes
        print(f"  the losing version is kept as {outcome.kept_as}")
        if (studio / KEY).read_bytes() != (backup / KEY).read_bytes():
            return 1
    kept = sorted(p.name for p in (studio / "neon-city").iterdir()) + sorted(
        p.name for p in (backup / "neon-city").iterdir())
    print(f"files now: {kept}")
    remaining = await tracker.detect_conflicts()
    cache.close()
    return 0 if not remaining else 1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="alicefs-sync-demo-") as tmp:
        sys.exit(trio.run(main, Path(tmp)))
