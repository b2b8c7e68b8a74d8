"""The guide's Python API as a script uses it: its snippet, run as written with only its
imports changed, against a temporary library; the synchronous helper; misuse answered by
documented exceptions with one-line messages; and the guide's `alice storage` command."""

from __future__ import annotations

import re
import subprocess
import textwrap
from pathlib import Path

import pytest
import trio

import alicefs
from alicefs import (
    ApiMisuseError,
    AutoMigrationService,
    CatalogError,
    DuckDBSearchCache,
    MultiPathScanner,
    NotFoundError,
    StorageLocation,
    StorageRegistry,
    SyncTracker,
)
from tests.conftest import BIN_DIR

GUIDE = Path(__file__).parents[2] / "shared" / "reference" / "multi-path-storage-guide.md"
IMPORTS = ("from pathlib import Path\n"
           "from alicefs import (AutoMigrationService, DuckDBSearchCache, MultiPathScanner,\n"
           "                     StorageLocation, StorageRegistry, SyncTracker)\n")


def guide_snippet() -> str:
    """The guide's "Python API" block with its import lines replaced by alicefs's."""
    section = GUIDE.read_text().split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    body = "\n".join(line for line in code.splitlines()
                     if not line.startswith(("from ", "import ")))
    return IMPORTS + body


@pytest.fixture
def library(tmp_path, monkeypatch):
    """The guide's two data files in ./data, a project on a local disk, cataloged with the
    guide's configuration keys (search_db, location_registry_db)."""
    project = tmp_path / "disk" / "my-project"
    project.mkdir(parents=True)
    for i in range(5):
        (project / f"img{i}.png").write_bytes(b"x" * (i + 1))
    (tmp_path / "settings.yaml").write_text(textwrap.dedent("""\
        storage:
          search_db: data/search.duckdb
          location_registry_db: data/locations.db
          locations:
            - {name: disk, path: disk, priority: 100}
    """))
    result = subprocess.run([str(BIN_DIR / "alice"), "storage", "--config", "settings.yaml",
                             "from-config"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_guides_snippet_runs_as_written(library):
    code = compile(guide_snippet(), "guide", "exec", flags=0x2000)  # top-level await
    namespace: dict = {}

    async def main():
        await eval(code, namespace)

    trio.run(main)
    assert namespace["stats"].files == 5
    assert len(namespace["assets"]) == 5
    assert namespace["results"].dry_run and namespace["conflicts"] == []
    # The registry and the cache are one catalog file: no second database appeared.
    namespace["cache"].close()
    assert sorted(p.name for p in (library / "data").iterdir()) == ["search.duckdb"]


def test_synchronous_code_uses_one_helper(library):
    cache = DuckDBSearchCache(Path("data/search.duckdb"))
    scanner = MultiPathScanner(cache, StorageRegistry(cache))
    stats = alicefs.run(scanner.discover_all_assets, force_scan=True)
    assert stats.files == 5
    assert len(alicefs.run(scanner.find_project_assets, "my-project")) == 5
    cache.close()


def test_misuse_raises_documented_exceptions(library):
    cache = DuckDBSearchCache(Path("data/search.duckdb"))
    registry = StorageRegistry(cache)
    scanner = MultiPathScanner(cache, registry)
    with pytest.raises(NotFoundError, match="no location with id or name 'nope'"):
        alicefs.run(scanner.scan_location, "nope")

    def plain(message, current, total):
        return None

    with pytest.raises(ApiMisuseError, match="progress_callback must be an async function"):
        alicefs.run(scanner.discover_all_assets, progress_callback=plain)

    async def awaited(files, size):
        return None

    service = AutoMigrationService(cache, registry, scanner)
    with pytest.raises(ApiMisuseError, match="progress must be a plain function"):
        alicefs.run(service.run_auto_migration, progress=awaited)
    with pytest.raises(ApiMisuseError, match="progress must be a plain function"):
        alicefs.run(SyncTracker(registry).process_sync_queue, progress=awaited)

    elsewhere = StorageRegistry(library / "other.duckdb")
    elsewhere.list_locations()  # used on its own first: it opened its own file
    with pytest.raises(ApiMisuseError, match="one catalog file holds both"):
        MultiPathScanner(cache, elsewhere)
    elsewhere.catalog.close()

    cache.close()
    with pytest.raises(CatalogError, match=r"catalog .*search.duckdb is closed"):
        registry.list_locations()


def test_locations_are_made_and_validated_like_settings(tmp_path):
    location = StorageLocation.create("Fast SSD", tmp_path, priority=100,
                                      rules=[{"max_age_days": 30, "min_quality_stars": 4}])
    assert location.location_id.startswith("local-") and location.rules[0].max_age_days == 30
    with pytest.raises(alicefs.ConfigError, match="min_quality_star"):
        StorageLocation.create("bad", tmp_path, rules=[{"min_quality_star": 4}])


def test_the_alice_command_is_alicefs_ctl(library):
    listed = subprocess.run([str(BIN_DIR / "alice"), "storage", "--config", "settings.yaml",
                             "list", "--json"], capture_output=True, text=True)
    assert listed.returncode == 0 and '"disk"' in listed.stdout
    wrong = subprocess.run([str(BIN_DIR / "alice"), "list"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "expected `alice storage COMMAND`" in wrong.stderr
    bad = subprocess.run([str(BIN_DIR / "alice"), "storage", "frobnicate"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.startswith("alice storage: error:")
