"""The mount's write-behind queue to the catalog."""

from __future__ import annotations

import pytest

from alicefs.catalog import Catalog, FileMeta, Replica
from alicefs.fs.catalog_queue import CatalogQueue
from tests.test_catalog import make_location


class FailingOnce(Catalog):
    """A catalog whose next replica write fails (a full disk, say)."""

    fail = False

    def put_replicas(self, replicas):
        if self.fail:
            self.fail = False
            raise OSError(28, "No space left on device")
        return super().put_replicas(replicas)


def _row(location_id: str, size: int) -> Replica:
    return Replica(location_id, "p/a.png", size, 1, None)


def test_a_failed_flush_keeps_its_changes_for_the_next(tmp_path):
    with FailingOnce(tmp_path / "catalog.duckdb") as catalog:
        ssd = make_location("ssd", str(tmp_path / "ssd"), 100)
        hdd = make_location("hdd", str(tmp_path / "hdd"), 50)
        catalog.put_locations([ssd, hdd])
        queue = CatalogQueue(catalog)
        queue.put_replica(_row(ssd.location_id, 1))
        queue.put_replica(_row(hdd.location_id, 1))
        catalog.fail = True
        with pytest.raises(OSError):
            queue.flush()
        queue.put_replica(_row(ssd.location_id, 2))  # newer than what failed: it wins
        assert queue.flush() == 2
        assert sorted((r.location_id, r.size) for r in catalog.replicas_of("p/a.png")) == \
            sorted([(ssd.location_id, 2), (hdd.location_id, 1)])


def test_a_row_put_after_a_stale_mark_is_not_stale(tmp_path):
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        ssd = make_location("ssd", str(tmp_path / "ssd"), 100)
        catalog.put_locations([ssd])
        queue = CatalogQueue(catalog)
        queue.put_replica(_row(ssd.location_id, 1))
        queue.flush()
        queue.mark_stale(ssd.location_id, "p/a.png")
        queue.put_replica(_row(ssd.location_id, 2))  # a fresh copy, after the mark
        queue.flush()
        (row,) = catalog.replicas_of("p/a.png")
        assert (row.size, row.state) == (2, "present")


def test_metadata_waiting_for_the_catalog_is_known_until_flushed(tmp_path):
    """What a read-back of the catalog must not undo: tags set through the mount, newer
    than the catalog's until they are written."""
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        queue = CatalogQueue(catalog)
        queue.put_metadata(FileMeta("p/a.png", "image", "image/png", ("mine",), "user"))
        assert queue.metadata_queued("p/a.png") and not queue.metadata_queued("p/b.png")
        queue.flush()
        assert not queue.metadata_queued("p/a.png")
        assert catalog.metadata("p/a.png").tags == ("mine",)
