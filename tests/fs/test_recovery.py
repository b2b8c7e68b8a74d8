"""Start-up recovery of journaled operations a crash interrupted."""

from __future__ import annotations

import os

from alicefs.catalog import Catalog, Replica
from alicefs.config import load_settings
from alicefs.hashing import hash_bytes

TIERS = {"ssd": "priority: 100", "hdd": "priority: 50"}


def test_interrupted_operations_are_finished_or_undone(mount_factory):
    fs = mount_factory(TIERS, start=False)
    settings = load_settings(fs.config)
    ids = {loc.name: loc.location_id for loc in settings.locations}
    for name in ("ssd", "hdd"):
        (fs.roots[name] / "p").mkdir()
    # A move whose copy was published before the crash: rolled forward.
    (fs.roots["hdd"] / "p" / "moved.png").write_bytes(b"moved")
    (fs.roots["ssd"] / "p" / "moved.png").write_bytes(b"moved")
    # A move that crashed before its copy existed: rolled back, the source stays.
    (fs.roots["hdd"] / "p" / "kept.png").write_bytes(b"kept")
    # A delete of two replicas that removed only one: finished.
    (fs.roots["ssd"] / "p" / "gone.txt").write_text("gone")
    with Catalog(settings.catalog_path) as catalog:
        catalog.put_replicas([Replica(ids["hdd"], "p/moved.png", 5, 1, hash_bytes(b"moved"))])
        catalog.journal_begin("move", "p/moved.png", source_location_id=ids["hdd"],
                              target_location_id=ids["ssd"], expected_hash=hash_bytes(b"moved"))
        catalog.journal_begin("move", "p/kept.png", source_location_id=ids["hdd"],
                              target_location_id=ids["ssd"], expected_hash=hash_bytes(b"kept"))
        catalog.journal_begin("delete", "p/gone.txt", payload={"locations": [ids["ssd"],
                                                                             ids["hdd"]]})
    fs.start()
    assert not (fs.roots["hdd"] / "p" / "moved.png").exists()
    assert (fs.projects / "p" / "moved.png").read_bytes() == b"moved"
    assert os.getxattr(fs.projects / "p" / "moved.png", "user.alicefs.locations") == b"ssd"
    assert (fs.projects / "p" / "kept.png").read_bytes() == b"kept"
    assert not (fs.roots["ssd"] / "p" / "gone.txt").exists()
    assert not (fs.projects / "p" / "gone.txt").exists()
    fs.stop()
    with Catalog(settings.catalog_path) as catalog:
        assert catalog.journal_open() == []
