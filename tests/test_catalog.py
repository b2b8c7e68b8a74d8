from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from alicefs.catalog import SCHEMA_VERSION, Catalog, FileMeta, PosixAttrs, Replica, SyncBase
from alicefs.errors import CatalogError, NotFoundError, UsageError
from alicefs.model import LocationType, StorageLocation, location_id_for
from alicefs.registry import StorageRegistry
from alicefs.rules import LocationStatus, Rule
from tests.conftest import catalog_held_by_another_process


def make_location(name="ssd", path="/data/ssd", priority=100, rules=(), **config):
    location_type = LocationType.S3 if config.get("bucket") else LocationType.LOCAL
    place = config.pop("bucket", path)
    return StorageLocation(
        location_id=location_id_for(location_type, place, config), name=name, priority=priority,
        status=LocationStatus.ACTIVE, rules=tuple(rules), min_free_bytes=None,
        type=location_type, path=place, config=config)


@pytest.fixture
def catalog(tmp_path):
    with Catalog(tmp_path / "catalog.duckdb") as cat:
        yield cat
        assert cat.check() == []


def test_new_catalog_is_private_and_current(tmp_path):
    with Catalog(tmp_path / "sub" / "catalog.duckdb") as cat:
        assert cat.schema_version == SCHEMA_VERSION
    mode = stat.S_IMODE((tmp_path / "sub" / "catalog.duckdb").stat().st_mode)
    assert mode == 0o600


def test_every_column_is_commented(catalog):
    rows = catalog._query("SELECT table_name, column_name FROM duckdb_columns() "
                          "WHERE NOT internal AND (comment IS NULL OR comment = '')")
    assert rows == []


def test_locations_round_trip(catalog):
    rules = (Rule(max_age_days=30, min_quality_stars=4),
             Rule(include_types=("video", ".mov"), require_tags=("a", "b")))
    ssd = make_location(rules=rules)
    s3 = make_location("cold", priority=25, bucket="bucket", prefix="x/",
                       aws_secret_access_key="s3cr3t", aws_access_key_id="AKIA")
    catalog.put_locations([ssd, s3])
    assert catalog.locations() == [ssd, s3]
    assert catalog.location(s3.location_id).config["aws_secret_access_key"] == "s3cr3t"
    assert catalog.find_location("SSD") == ssd
    with pytest.raises(NotFoundError, match="no location with id or name 'nope'"):
        catalog.find_location("nope")


def test_replicas_round_trip_and_bulk_upsert(catalog):
    loc = make_location()
    catalog.put_locations([loc])
    batch = [Replica(loc.location_id, f"proj/{i:05}.png", i, i * 10, None, i, None, "present",
                     1.5) for i in range(20_000)]
    catalog.put_replicas(batch)
    assert catalog.replicas(loc.location_id) == batch
    # Upsert: changed rows replace, duplicates within one batch keep the last.
    changed = Replica(loc.location_id, "proj/00007.png", 99, 990, "ab" * 32, 7)
    catalog.put_replicas([batch[7], changed])
    assert catalog.replicas_of("proj/00007.png") == [changed]
    catalog.mark_missing(loc.location_id, ["proj/00001.png"])
    assert catalog.replicas_of("proj/00001.png")[0].state == "missing"
    catalog.drop_replicas(loc.location_id, ["proj/00002.png"])
    assert catalog.replicas_of("proj/00002.png") == []
    assert len(catalog.replicas()) == 19_999


def test_metadata_and_sync_base_round_trip(catalog):
    meta = FileMeta("proj/a.png", "image", "image/png", ("portfolio", "client"), "user", 4,
                    "sidecar")
    catalog.put_metadata([meta, FileMeta("proj/b.txt", "text", "text/plain")])
    assert catalog.metadata("proj/a.png") == meta
    assert catalog.metadata("proj/b.txt").tags == ()
    assert set(catalog.all_metadata()) == {"proj/a.png", "proj/b.txt"}
    base = SyncBase("proj/a.png", "cd" * 32, 12, 5.0)
    catalog.set_sync_bases([base])
    assert catalog.sync_base("proj/a.png") == base
    assert catalog.sync_base("proj/none") is None


def test_journal_lifecycle(catalog):
    op = catalog.journal_begin("move", "proj/a.png", source_location_id="a",
                               target_location_id="b", temp_key="proj/.alicefs-tmp-1",
                               expected_hash="ef" * 32, payload={"size": 3})
    catalog.journal_step(op, "written")
    [entry] = catalog.journal_open()
    assert (entry.op_id, entry.kind, entry.step, entry.payload) == (op, "move", "written",
                                                                     {"size": 3})
    catalog.journal_step(op, "verified")
    assert catalog.journal_open()[0].step == "verified"
    catalog.journal_end(op)
    assert catalog.journal_open() == []
    assert catalog.journal_begin("copy", "proj/b.png") > op


def test_transaction_rolls_back_on_error(catalog):
    loc = make_location()
    with pytest.raises(RuntimeError), catalog.transaction() as con:
        con.execute("INSERT INTO locations (location_id, name, type, path, priority, status, "
                    "rules_json, config_json, created_at) VALUES ('x', 'x', 'local', '/x', 1, "
                    "'active', '[]', '{}', 0)")
        raise RuntimeError("boom")
    assert catalog.locations() == []
    catalog.put_locations([loc])
    assert catalog.locations() == [loc]


def test_migration_from_schema_version_1_keeps_data(tmp_path):
    path = tmp_path / "old.duckdb"
    loc = make_location()
    with Catalog(path, _schema_version=1) as old:
        assert old.schema_version == 1
        old._query("INSERT INTO locations VALUES (?, 'ssd', 'local', '/data/ssd', 100, 'active', "
                   "'[]', '{}', NULL, 1.0)", [loc.location_id])
        old._query("INSERT INTO replicas VALUES (?, 'p/a.png', 3, 4, 5, 'ff', 'present', 6.0)",
                   [loc.location_id])
    with Catalog(path) as new:
        assert new.schema_version == SCHEMA_VERSION == 8
        assert new.all_posix_attrs() == {}
        new.put_posix_attrs([PosixAttrs("p/a.png", 0o100600, 1, 2, atime_ns=7)])
        assert new.all_posix_attrs()["p/a.png"].atime_ns == 7
        assert new.last_scans() == {}
        [replica] = new.replicas()
        assert replica == Replica(loc.location_id, "p/a.png", 3, 4, "ff", 5, None, "present", 6.0)
        assert new.locations()[0].name == "ssd"
        new.put_replicas([Replica(loc.location_id, "p/a.png", 3, 4, "ff", 5, "etag-1")])
        assert new.replicas()[0].change_token == "etag-1"


def test_catalog_from_a_newer_alicefs_is_refused(tmp_path):
    path = tmp_path / "c.duckdb"
    with Catalog(path) as cat:
        cat._query("UPDATE catalog_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(CatalogError, match="schema version 999, newer than"):
        Catalog(path)


def test_catalog_held_by_another_process_is_a_clear_error(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    with catalog_held_by_another_process(path), pytest.raises(
            CatalogError, match="in use by another process"):
        Catalog(path)


# -- registry ----------------------------------------------------------------------------------

def test_registry_register_update_remove(catalog):
    registry = StorageRegistry(catalog)
    ssd = registry.register_location(make_location())
    with pytest.raises(UsageError, match="already registered"):
        registry.register_location(make_location(name="other"))
    with pytest.raises(UsageError, match="already used"):
        registry.register_location(make_location(name="SSD", path="/elsewhere"))
    updated = registry.update_location("ssd", priority=5, status=LocationStatus.ARCHIVED,
                                       rules=[Rule(min_age_days=1)])
    assert (updated.location_id, updated.priority, updated.status) == (
        ssd.location_id, 5, LocationStatus.ARCHIVED)
    assert registry.get_location(ssd.location_id).rules == (Rule(min_age_days=1),)
    catalog.put_replicas([Replica(ssd.location_id, "p/a", 1, 1)])
    removed, dropped = registry.remove_location(ssd.location_id)
    assert (removed.name, dropped) == ("ssd", 1)
    assert registry.list_locations() == [] and catalog.replicas() == []


def test_registry_import_is_idempotent_and_matches_by_id(catalog):
    registry = StorageRegistry(catalog)
    extra = registry.register_location(make_location("extra", "/data/extra"))
    configured = [make_location(), make_location("hdd", "/data/hdd", 50)]
    report = registry.import_locations(configured)
    assert [loc.name for loc in report.added] == ["ssd", "hdd"]
    assert report.not_in_config == (extra,)
    again = registry.import_locations(configured)
    assert again.added == () and again.updated == () and len(again.unchanged) == 2
    renamed = [make_location("fast", priority=99), configured[1]]
    report = registry.import_locations(renamed)
    assert [loc.name for loc in report.updated] == ["fast"]
    assert len(registry.list_locations()) == 3


def test_registry_accepts_a_path_like_the_guide(tmp_path):
    registry = StorageRegistry(tmp_path / "data" / "locations.db")
    registry.register_location(make_location())
    assert [loc.name for loc in registry.list_locations()] == ["ssd"]
    registry.catalog.close()


def test_location_ids_do_not_depend_on_trailing_slashes():
    assert location_id_for(LocationType.LOCAL, "/a/b/", {}) == \
        location_id_for(LocationType.LOCAL, "/a/b", {})
    assert location_id_for(LocationType.S3, "bkt", {"prefix": "x"}) == \
        location_id_for(LocationType.S3, "bkt", {"prefix": "/x/"})
    assert location_id_for(LocationType.S3, "bkt", {}) != \
        location_id_for(LocationType.GCS, "bkt", {})


def test_remove_location_leaves_the_catalog_consistent(catalog):
    loc = make_location()
    catalog.put_locations([loc])
    catalog.put_replicas([Replica(loc.location_id, "p/a", 1, 1)])
    catalog._query("DELETE FROM locations")
    assert catalog.check() == [f"replicas of unknown location {loc.location_id}"]
    catalog._query("DELETE FROM replicas")


def test_file_paths_are_usable(tmp_path: Path):
    # A catalog path inside a directory that does not exist yet is created.
    with Catalog(tmp_path / "a" / "b" / "c.duckdb") as cat:
        assert cat.path.exists()


def test_posix_attrs_round_trip_and_drop(catalog):
    link = PosixAttrs("p/link", 0o777, 1, 2, b"caf\xe9.png")  # a non-UTF-8 target
    plain = PosixAttrs("p/a.png", 0o600, 1000, 1000)
    catalog.put_posix_attrs([link, plain, PosixAttrs("p/a.png", 0o640, 1000, 1000)])
    assert catalog.all_posix_attrs() == {
        "p/link": link, "p/a.png": PosixAttrs("p/a.png", 0o640, 1000, 1000)}
    catalog.drop_posix_attrs(["p/link"])
    assert set(catalog.all_posix_attrs()) == {"p/a.png"}


def test_special_files_are_contentless_and_no_scan_misses_them(catalog):
    """A FIFO's row keeps its type and device number; links and special files are left out
    of migration (contentless) and of what a scan compares a listing with."""
    loc = make_location()
    catalog.put_locations([loc])
    fifo = PosixAttrs("p/pipe", stat.S_IFIFO | 0o600, 1, 2, rdev=0)
    device = PosixAttrs("p/null", stat.S_IFCHR | 0o666, 0, 0, rdev=os.makedev(1, 3))
    link = PosixAttrs("p/link", 0o777, 1, 2, b"target")
    catalog.put_posix_attrs([fifo, device, link, PosixAttrs("p/a.png", 0o644, 1, 2)])
    assert catalog.all_posix_attrs()["p/null"] == device
    assert catalog.contentless_paths() == {"p/pipe", "p/null", "p/link"}
    catalog.put_replicas([Replica(loc.location_id, path, 0, 1) for path in
                          ("p/pipe", "p/null", "p/a.png")])
    index = catalog.replica_index(loc.location_id, object_store=False)
    assert index.unhashed == {"p/a.png"}


def test_a_scan_finding_the_older_version_of_a_stale_replica_keeps_it_stale(catalog):
    loc = make_location()
    catalog.put_locations([loc])
    old = Replica(loc.location_id, "p/a.png", 3, 4, "old-hash", 5, None, "present", 6.0)
    catalog.put_replicas([old, dataclasses.replace(old, logical_path="p/b.png")])
    catalog.mark_stale([(loc.location_id, "p/a.png"), (loc.location_id, "p/b.png")])
    rescanned = dataclasses.replace(old, mtime_ns=9, seen_at=7.0)
    rewritten = dataclasses.replace(old, logical_path="p/b.png", content_hash="new-hash")
    catalog.put_replicas([rescanned, rewritten], found_by_scan=True)
    states = {r.logical_path: r.state for r in catalog.replicas()}
    assert states == {"p/a.png": "stale", "p/b.png": "present"}
    catalog.put_replicas([rescanned])  # the mount writing the current version there
    assert {r.logical_path: r.state for r in catalog.replicas()}["p/a.png"] == "present"


def test_namespace_rows_come_in_chunks_joined_with_metadata(tmp_path):
    digest = "5bc7993927bc891ce3dcb784dcd1f3108b06345898d9f24d20927a72e3f3c0e8"
    with Catalog(tmp_path / "c.duckdb") as catalog:
        catalog.put_replicas([Replica("loc", f"p/{i}.png", i, i, None) for i in range(5)])
        catalog.put_replicas([Replica("other", "p/1.png", 7, 8, digest, None, "etag"),
                              Replica("other", "p/2.png", 7, 8, digest.upper())])
        catalog.mark_missing("other", ["p/2.png"])
        catalog.put_metadata([FileMeta("p/1.png", "image", "image/png", ("tagged",), "user", 4,
                                       "user"), FileMeta("p/3.png", "image", "image/png")])
        chunks = list(catalog.namespace_rows(chunk=2))
    assert [len(rows) for _, rows in chunks] == [2, 2, 2, 1]
    codes = chunks[0][0]
    rows = {(codes.locations[row[0] - 1], row[1]): (
        row[2:5], codes.states[row[5] - 1], row[6],
        None if row[7] is None else codes.media[row[7] - 1], row[8:])
        for _, rows in chunks for row in rows}
    assert rows["other", "p/1.png"] == ((7, 8, digest), "present", "etag",
                                        ("image", "image/png"), (["tagged"], 4))
    assert rows["other", "p/2.png"] == ((7, 8, digest.upper()), "missing", None, None,
                                        (None, None))
    assert rows["loc", "p/3.png"] == ((3, 3, None), "present", None,
                                      ("image", "image/png"), (None, None))  # no tags: NULL
    assert rows["loc", "p/0.png"][3:] == (None, (None, None))


def test_released_memory_leaves_the_catalog_working_and_its_limit_as_it_was(tmp_path):
    with Catalog(tmp_path / "c.duckdb") as catalog:
        limit = catalog._con.execute("SELECT current_setting('memory_limit')").fetchone()
        catalog.put_replicas([Replica("loc", f"p/{i}.png", i, i, None) for i in range(1000)])
        assert sum(len(rows) for _, rows in catalog.namespace_rows()) == 1000
        catalog.release_memory()
        assert catalog._con.execute("SELECT current_setting('memory_limit')").fetchone() == \
            limit
        catalog.put_replicas([Replica("loc", "p/after.png", 1, 1, None)])
        assert len(catalog.replicas()) == 1001


def test_watch_names_every_path_whose_replicas_or_metadata_are_written(catalog):
    """What a mount reads back after a scan or a command: the paths written while the
    block ran, by any writer, and nothing else."""
    ssd, hdd = make_location(), make_location("hdd", "/data/hdd")
    catalog.put_locations([ssd, hdd])
    a, b = ssd.location_id, hdd.location_id
    catalog.put_replicas([Replica(a, f"p/{n}.png", 1, 1) for n in "abcdefg"])
    with catalog.watch() as outer:
        with catalog.watch() as inner:
            catalog.put_replicas([Replica(b, "p/a.png", 1, 1)])
            catalog.mark_missing(a, ["p/b.png"])
            catalog.mark_present(a, ["p/b.png"])
        catalog.mark_stale([(a, "p/c.png")])
        catalog.drop_replicas(a, ["p/d.png"])
        catalog.put_metadata([FileMeta("p/e.png", "image", "image/png", ("t",))])
        catalog.set_user_quality("p/f.png", 3, ("image", "image/png"))
        catalog.add_hashes([Replica(a, "p/g.png", 1, 1, "ab" * 32)])  # nothing shown changes
        found = catalog.replicas_for(["p/a.png", "p/g.png", "p/z.png"])
        assert sorted(found, key=lambda r: (r.logical_path, r.location_id)) == sorted(
            (r for r in catalog.replicas() if r.logical_path in ("p/a.png", "p/g.png")),
            key=lambda r: (r.logical_path, r.location_id))
    catalog.put_replicas([Replica(a, "p/later.png", 1, 1)])
    assert inner == {"p/a.png", "p/b.png"}
    assert outer == {"p/a.png", "p/b.png", "p/c.png", "p/d.png", "p/e.png", "p/f.png"}
    with catalog.watch() as rolled_back, pytest.raises(RuntimeError), catalog.transaction():
        catalog.put_replicas([Replica(a, "p/gone.png", 1, 1)])
        raise RuntimeError
    assert rolled_back == {"p/gone.png"}  # a superset is enough: it is compared anyway
    assert catalog.replicas_for(["p/gone.png"]) == []
