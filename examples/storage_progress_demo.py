"""A custom async progress callback while alicefs discovers a small library: the guide's
"Custom progress in scripts", with alicefs's imports. Runs in a second or two against a
temporary directory:

    python examples/storage_progress_demo.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import trio

from alicefs import DuckDBSearchCache, MultiPathScanner, StorageLocation, StorageRegistry


async def progress_callback(message: str, current: int, total: int) -> None:
    print(f"[{current}/{total}] {message}")


def make_library(root: Path) -> None:
    """Two disks with a few hundred small generated images between them."""
    for disk, count in (("ssd", 300), ("archive", 200)):
        folder = root / disk / "neon-city" / "renders"
        folder.mkdir(parents=True)
        for i in range(count):
            (folder / f"{disk}-{i:04d}.png").write_bytes(os.urandom(2048))


async def main(root: Path) -> int:
    make_library(root)
    cache = DuckDBSearchCache(root / "data" / "search.duckdb")
    registry = StorageRegistry(cache)
    registry.register_location(StorageLocation.create(
        "Fast SSD", root / "ssd", priority=100, rules=[{"max_age_days": 30}]))
    registry.register_location(StorageLocation.create("Archive", root / "archive",
                                                      priority=50))
    scanner = MultiPathScanner(cache, registry)
    stats = await scanner.discover_all_assets(show_progress=False,
                                              progress_callback=progress_callback)
    print(f"discovered {stats.files} files in {len(stats.locations)} locations")
    assets = await scanner.find_project_assets("neon-city")
    print(f"neon-city has {len(assets)} assets")
    cache.close()
    return 0 if stats.files == len(assets) == 500 else 1


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="alicefs-progress-demo-") as tmp:
        sys.exit(trio.run(main, Path(tmp)))
