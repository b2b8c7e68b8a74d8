"""Migration carried out between every pair of location types (real directories, SeaweedFS
S3 and the GCS emulator): copies and moves, a second run, dry runs, collisions, a source
changed under its copy, a full target, and the guide's example configuration."""

from __future__ import annotations

import io
import os
import subprocess
import time
from dataclasses import dataclass, replace

import pytest

from alicefs.backends import LocalBackend
from alicefs.backends.base import Backend
from alicefs.catalog import Catalog
from alicefs.migrate import AutoMigrationService
from alicefs.migrate.run import run_plan
from alicefs.registry import StorageRegistry
from alicefs.rules import Rule
from alicefs.scanner import MultiPathScanner
from tests.transfer.conftest import PAIRS, open_location_backend

DAY_NS = 86400 * 10**9


@dataclass
class Tiers:
    source: Backend  # priority 100, keeps files up to 30 days old
    target: Backend  # priority 50, no rules
    catalog: Catalog
    registry: StorageRegistry
    files: dict[str, bytes]  # what the source holds, all 40 days old

    def service(self) -> AutoMigrationService:
        return AutoMigrationService(self.catalog, self.registry,
                                    MultiPathScanner(self.catalog, self.registry))

    async def scan(self) -> None:
        stats = await MultiPathScanner(self.catalog, self.registry).discover_all_assets()
        assert stats.errors == {}


def content(backend: Backend, key: str) -> bytes | None:
    try:
        with backend.open_read(key) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def put(backend: Backend, key: str, data: bytes, age_days: float = 40) -> None:
    backend.write_atomic(key, io.BytesIO(data), overwrite=True,
                         mtime_ns=time.time_ns() - int(age_days * DAY_NS))


@pytest.fixture(params=PAIRS)
async def tiers(request, tmp_path):
    source_kind, target_kind = request.param.split("-")
    source = open_location_backend(request, source_kind, tmp_path, "source")
    target = open_location_backend(request, target_kind, tmp_path, "target")
    source.location = replace(source.location, priority=100, rules=(Rule(max_age_days=30),))
    target.location = replace(target.location, priority=50)
    files = {"p/big.mp4": os.urandom(7 << 20), "p/a.png": os.urandom(1000),
             "p/sub/b.png": os.urandom(50_000)}
    for key, data in files.items():
        put(source, key, data)
    put(source, "p/new.png", b"recent: stays", age_days=1)
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        registry = StorageRegistry(catalog)
        registry.register_location(source.location)
        registry.register_location(target.location)
        tiers = Tiers(source, target, catalog, registry, files)
        await tiers.scan()
        yield tiers
        assert catalog.check() == []


@pytest.mark.parametrize("move", [False, True])
async def test_old_files_go_down_a_tier_and_a_second_run_plans_nothing(tiers, move):
    result = await tiers.service().run_auto_migration(move=move)
    assert result.counts() == {"moved" if move else "copied": 3}
    for key, data in tiers.files.items():
        assert content(tiers.target, key) == data
        assert content(tiers.source, key) == (None if move else data)
    assert content(tiers.source, "p/new.png") == b"recent: stays"
    assert content(tiers.target, "p/new.png") is None
    holders = {r.logical_path: set() for r in tiers.catalog.replicas()}
    for r in tiers.catalog.replicas():
        holders[r.logical_path].add(r.location_id)
    source_id, target_id = tiers.source.location.location_id, tiers.target.location.location_id
    assert holders["p/a.png"] == ({target_id} if move else {source_id, target_id})
    assert tiers.catalog.journal_open() == []
    again = await tiers.service().run_auto_migration(move=move)
    assert again.plan.transfers == () and again.outcomes == ()
    await tiers.scan()  # what a scan sees agrees with the catalog: still nothing to do
    assert (await tiers.service().plan(move=move)).transfers == ()


async def test_a_dry_run_writes_nothing(tiers):
    replicas_before = sorted(tiers.catalog.replicas(), key=lambda r: (r.logical_path,
                                                                     r.location_id))
    result = await tiers.service().run_auto_migration(dry_run=True, move=True)
    assert len(result.plan.transfers) == 3 and result.outcomes == ()
    assert all(content(tiers.target, key) is None for key in tiers.files)
    assert sorted(tiers.catalog.replicas(), key=lambda r: (r.logical_path, r.location_id)) \
        == replicas_before
    assert tiers.catalog.journal_open() == []


async def test_a_different_file_at_the_target_is_a_conflict_and_both_survive(tiers):
    """Written there by someone else after the last scan: never replaced; the same content
    already there is only recorded (and for a move the source then goes)."""
    put(tiers.target, "p/a.png", b"someone else's")
    put(tiers.target, "p/sub/b.png", tiers.files["p/sub/b.png"])
    result = await tiers.service().run_auto_migration(move=True)
    by_path = {o.logical_path: o.result for o in result.outcomes}
    assert by_path == {"p/a.png": "conflict", "p/sub/b.png": "already there",
                       "p/big.mp4": "moved"}
    assert content(tiers.target, "p/a.png") == b"someone else's"
    assert content(tiers.source, "p/a.png") == tiers.files["p/a.png"]
    assert content(tiers.source, "p/sub/b.png") is None
    assert content(tiers.target, "p/sub/b.png") == tiers.files["p/sub/b.png"]
    assert tiers.catalog.journal_open() == []


async def test_a_source_changed_after_planning_is_detected_and_kept(tiers):
    service = tiers.service()
    plan = await service.plan(move=True)
    put(tiers.source, "p/a.png", b"edited after the plan")
    outcomes = await run_plan(plan, tiers.catalog, service.backends)
    by_path = {o.logical_path: o for o in outcomes}
    assert by_path["p/a.png"].result == "failed"
    assert "changed" in by_path["p/a.png"].detail
    assert content(tiers.source, "p/a.png") == b"edited after the plan"
    assert content(tiers.target, "p/a.png") is None
    assert by_path["p/big.mp4"].result == "moved"
    assert tiers.catalog.journal_open() == []


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (a disk that fills up), unmounted afterwards."""
    root = tmp_path / "small"
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"this test needs to mount a tmpfs (run as root): {mounted.stderr}")
    try:
        yield root
    finally:
        subprocess.run(["umount", str(root)], check=True)


async def test_a_target_that_fills_up_mid_copy_fails_cleanly(tmp_path, small_disk):
    from tests.backends.conftest import local_location

    (tmp_path / "ssd").mkdir()
    source = LocalBackend(replace(local_location(tmp_path / "ssd", "ssd"), priority=100,
                                  rules=(Rule(max_age_days=30),)))
    target = LocalBackend(replace(local_location(small_disk, "small"), priority=50,
                                  min_free_bytes=0))
    data = os.urandom(3 << 20)
    put(source, "p/v.mp4", data)
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        registry = StorageRegistry(catalog)
        registry.register_location(source.location)
        registry.register_location(target.location)
        await MultiPathScanner(catalog, registry).discover_all_assets()
        service = AutoMigrationService(catalog, registry)
        plan = await service.plan(move=True)
        assert len(plan.transfers) == 1
        (small_disk / "filler").write_bytes(b"\0" * (2 << 20))  # someone else fills it
        [outcome] = await run_plan(plan, catalog, service.backends)
        assert outcome.result == "failed" and "space" in outcome.detail
        assert content(source, "p/v.mp4") == data
        left = [os.path.join(d, f) for d, _, names in os.walk(small_disk) for f in names]
        assert left == [str(small_disk / "filler")]  # no partial file, no temp
        assert catalog.journal_open() == []
        assert [r.location_id for r in catalog.replicas_of("p/v.mp4")] == [
            source.location.location_id]


async def test_the_guides_example_configuration(tmp_path, request):
    """A 40-day-old 5-star image goes from Fast SSD to Archive HDD, a 200-day-old one to S3
    Cold Storage; a new 5-star image stays on the SSD."""
    from tests.backends.conftest import local_location

    ssd_root, hdd_root = tmp_path / "ssd", tmp_path / "hdd"
    ssd = LocalBackend(replace(local_location(ssd_root, "Fast SSD"), priority=100,
                               rules=(Rule(max_age_days=30, min_quality_stars=4),)))
    hdd = LocalBackend(replace(local_location(hdd_root, "Archive HDD"), priority=50,
                               rules=(Rule(min_age_days=30, max_age_days=180),)))
    s3 = open_location_backend(request, "s3", tmp_path, "S3 Cold Storage")
    s3.location = replace(s3.location, priority=25, rules=(Rule(min_age_days=180),))
    for root in (ssd_root, hdd_root):
        root.mkdir()
    images = {"art/new.png": 1, "art/aged.png": 40, "art/old.png": 200}
    for key, age in images.items():
        put(ssd, key, key.encode(), age_days=age)
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        registry = StorageRegistry(catalog)
        for backend in (ssd, hdd, s3):
            registry.register_location(backend.location)
        await MultiPathScanner(catalog, registry).discover_all_assets()
        for key in images:
            catalog.set_user_quality(key, 5, ("image", "image/png"))
        result = await AutoMigrationService(catalog, registry).run_auto_migration(move=True)
        assert result.counts() == {"moved": 2}
        assert content(ssd, "art/new.png") == b"art/new.png"
        assert content(hdd, "art/aged.png") == b"art/aged.png"
        assert content(s3, "art/old.png") == b"art/old.png"
        assert content(ssd, "art/aged.png") is None and content(ssd, "art/old.png") is None

