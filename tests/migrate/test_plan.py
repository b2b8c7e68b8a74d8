"""Migration planning, pure: targets from the rules, convergence, capacity, sidecars, moves."""

from __future__ import annotations

from alicefs.catalog import FileMeta, Replica
from alicefs.migrate.plan import CatalogFile, plan_consolidation, plan_migration
from alicefs.rules import LocationStatus, PlacementPolicy, Rule, SpaceInfo

NOW = 1_800_000_000.0
DAY = 86400
GiB = 1 << 30

# The guide's example configuration.
SSD = PlacementPolicy("ssd", "Fast SSD", 100, LocationStatus.ACTIVE,
                      (Rule(max_age_days=30, min_quality_stars=4),), None)
HDD = PlacementPolicy("hdd", "Archive HDD", 50, LocationStatus.ACTIVE,
                      (Rule(min_age_days=30, max_age_days=180),), None)
S3 = PlacementPolicy("s3", "S3 Cold Storage", 25, LocationStatus.ACTIVE,
                     (Rule(min_age_days=180),), None)
GUIDE = [SSD, HDD, S3]
ROOMY = {"ssd": SpaceInfo(500 * GiB, 1000 * GiB), "hdd": SpaceInfo(500 * GiB, 1000 * GiB),
         "s3": None}


def image(path: str, where: str, age_days: float, stars: int | None = 5, size: int = 1000,
          content: str = "h") -> CatalogFile:
    return CatalogFile(path, (Replica(where, path, size, int((NOW - age_days * DAY) * 1e9),
                                      content),),
                       FileMeta(path, "image", "image/png", quality=stars))


def after(plan, files: list[CatalogFile], move: bool) -> list[CatalogFile]:
    """The files as a completed run of `plan` leaves them."""
    by_path = {f.logical_path: f for f in files}
    for t in plan.transfers:
        file = by_path[t.logical_path]
        source = next(r for r in file.replicas if r.location_id == t.source_location_id)
        removed = {r.location_id for r in t.remove_from}
        replicas = [r for r in file.replicas if r.location_id not in removed]
        if t.copy:
            replicas.append(Replica(t.target_location_id, t.logical_path, source.size,
                                    source.mtime_ns, source.content_hash))
        by_path[t.logical_path] = CatalogFile(file.logical_path, tuple(replicas), file.meta)
    return list(by_path.values())


def test_the_guides_example_ages_images_down_the_tiers():
    files = [image("p/new.png", "ssd", 3), image("p/aged.png", "ssd", 40),
             image("p/old.png", "ssd", 200), image("p/unrated.png", "ssd", 3, stars=None)]
    plan = plan_migration(files, GUIDE, ROOMY, NOW)
    assert [(t.logical_path, t.source_location_id, t.target_location_id, t.copy)
            for t in plan.transfers] == [("p/aged.png", "ssd", "hdd", True),
                                         ("p/old.png", "ssd", "s3", True)]
    assert plan.transfers[0].rule == "Archive HDD: max_age_days=180 AND min_age_days=30"
    assert plan.totals() == {("ssd", "hdd"): (1, 1000), ("ssd", "s3"): (1, 1000)}
    # An unrated new image matches no location: it stays, and that is not worth reporting.
    assert plan.skipped == ()


def test_a_second_run_after_a_complete_one_plans_nothing():
    files = [image(f"p/{i}.png", "ssd", age) for i, age in enumerate((3, 40, 90, 200, 400))]
    for move in (False, True):
        plan = plan_migration(files, GUIDE, ROOMY, NOW, move=move)
        assert plan.transfers
        assert plan_migration(after(plan, files, move), GUIDE, ROOMY, NOW,
                              move=move).transfers == ()


def test_move_removes_only_replicas_whose_rules_no_longer_match():
    backup = PlacementPolicy("backup", "Backup", 10, LocationStatus.ACTIVE, (), None)
    file = CatalogFile("p/a.png", (
        Replica("ssd", "p/a.png", 10, int((NOW - 40 * DAY) * 1e9), "h"),
        Replica("backup", "p/a.png", 10, int((NOW - 40 * DAY) * 1e9), "h")),
        FileMeta("p/a.png", "image", "image/png", quality=5))
    [t] = plan_migration([file], [*GUIDE, backup], ROOMY, NOW, move=True).transfers
    assert (t.target_location_id, t.copy) == ("hdd", True)
    assert [r.location_id for r in t.remove_from] == ["ssd"]  # the backup matches: kept
    # A copy already made by an earlier copy-run: the move only removes.
    copied = after(plan_migration([file], [*GUIDE, backup], ROOMY, NOW), [file], False)
    [t] = plan_migration(copied, [*GUIDE, backup], ROOMY, NOW, move=True).transfers
    assert not t.copy and [r.location_id for r in t.remove_from] == ["ssd"]


def test_a_plan_never_fills_a_location_past_its_reserve():
    small_hdd = {**ROOMY, "hdd": SpaceInfo(GiB + 2500, 100 * GiB)}  # reserve: 1 GiB
    files = [image(f"p/{i}.png", "ssd", 40, size=1000) for i in range(4)]
    plan = plan_migration(files, GUIDE, small_hdd, NOW)
    assert [t.logical_path for t in plan.transfers] == ["p/0.png", "p/1.png"]
    assert [(s.logical_path, s.reason) for s in plan.skipped] == [
        ("p/2.png", "no room in Archive HDD"), ("p/3.png", "no room in Archive HDD")]


def test_sidecars_travel_with_their_file():
    files = [image("p/a.png", "ssd", 40), image("p/a.png.xmp", "ssd", 1),
             image("p/b.png", "ssd", 40), image("p/b.xmp", "ssd", 1),
             image("p/c.png", "hdd", 40), image("p/c.xmp", "ssd", 1)]
    plan = plan_migration(files, GUIDE, ROOMY, NOW, move=True)
    assert {t.logical_path: t.target_location_id for t in plan.transfers} == {
        "p/a.png": "hdd", "p/a.png.xmp": "hdd", "p/b.png": "hdd", "p/b.xmp": "hdd",
        "p/c.xmp": "hdd"}
    assert all([r.location_id for r in t.remove_from] == ["ssd"] for t in plan.transfers)


def test_conflicts_stale_targets_and_unreachable_locations_are_reported_not_tried():
    conflict = CatalogFile("p/x.png", (
        Replica("ssd", "p/x.png", 10, int((NOW - 40 * DAY) * 1e9), "one"),
        Replica("s3", "p/x.png", 10, int((NOW - 40 * DAY) * 1e9), "two")))
    stale = CatalogFile("p/y.png", (
        Replica("ssd", "p/y.png", 10, int((NOW - 40 * DAY) * 1e9), "new"),
        Replica("hdd", "p/y.png", 8, int((NOW - 50 * DAY) * 1e9), "old", state="stale")))
    away = image("p/z.png", "ssd", 200)
    plan = plan_migration([conflict, stale, away], GUIDE, ROOMY, NOW,
                          usable=frozenset({"ssd", "hdd"}))
    assert plan.transfers == ()
    assert {s.logical_path: s.reason.split(" (")[0] for s in plan.skipped} == {
        "p/x.png": "its replicas differ", "p/y.png": "its target holds an older version",
        "p/z.png": "its target is not reachable now"}


def test_project_and_limits_narrow_the_plan():
    files = [image(f"{p}/{i}.png", "ssd", 40) for p in ("a", "b") for i in range(3)]
    plan = plan_migration(files, GUIDE, ROOMY, NOW, project="b", limit_files=2)
    assert [t.logical_path for t in plan.transfers] == ["b/0.png", "b/1.png"]
    assert [s.logical_path for s in plan.skipped] == ["b/2.png"]
    plan = plan_migration(files, GUIDE, ROOMY, NOW, limit_bytes=2500)
    assert len(plan.transfers) == 2


def test_consolidation_gathers_a_project_whatever_the_rules():
    files = [image("film/a.png", "ssd", 1), image("film/b.png", "hdd", 100),
             image("film/c.png", "s3", 400), image("other/d.png", "ssd", 1)]
    plan = plan_consolidation(files, "film", HDD, ROOMY, move=True,
                              usable=frozenset({"ssd", "hdd", "s3"}))
    assert [(t.logical_path, t.source_location_id, t.copy,
             [r.location_id for r in t.remove_from]) for t in plan.transfers] == [
        ("film/a.png", "ssd", True, ["ssd"]), ("film/c.png", "s3", True, ["s3"])]
