"""Start-up recovery of journaled operations a crash interrupted, on local locations (the
mount's own recovery is in tests/fs/test_recovery.py)."""

from __future__ import annotations

from alicefs.catalog import Catalog, Replica
from alicefs.hashing import hash_bytes
from alicefs.transfer.journal import HANDOVER
from alicefs.transfer.recovery import recover


def _two_local_locations(tmp_path):
    from alicefs.backends import open_backend
    from tests.test_catalog import make_location

    ssd = make_location("ssd", str(tmp_path / "ssd"), 100)
    hdd = make_location("hdd", str(tmp_path / "hdd"), 50)
    for loc in (ssd, hdd):
        (tmp_path / loc.name / "p").mkdir(parents=True)
    return ssd, hdd, {loc.location_id: open_backend(loc) for loc in (ssd, hdd)}


def test_move_whose_source_was_already_deleted_rolls_forward(tmp_path):
    """A move killed after it deleted its source, before its journal entry closed: the
    target is the only copy and must stay (it used to be 'rolled back' by deleting it)."""

    ssd, hdd, backends = _two_local_locations(tmp_path)
    (tmp_path / "ssd" / "p" / "only.png").write_bytes(b"the only copy")
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([ssd, hdd])
        catalog.put_replicas([Replica(hdd.location_id, "p/only.png", 13, 1,
                                      hash_bytes(b"the only copy"))])
        op = catalog.journal_begin("move", "p/only.png", source_location_id=hdd.location_id,
                                   target_location_id=ssd.location_id,
                                   expected_hash=hash_bytes(b"the only copy"))
        catalog.journal_step(op, "recorded")
        done = recover(catalog, backends)
        assert done == ["move p/only.png: rolled forward (source already deleted; target "
                        "verified and recorded)"]
        assert (tmp_path / "ssd" / "p" / "only.png").read_bytes() == b"the only copy"
        assert [(r.location_id, r.content_hash) for r in catalog.replicas_of("p/only.png")] == [
            (ssd.location_id, hash_bytes(b"the only copy"))]
        assert catalog.journal_open() == []


def test_move_whose_source_changed_after_the_copy_keeps_the_source(tmp_path):

    ssd, hdd, backends = _two_local_locations(tmp_path)
    (tmp_path / "ssd" / "p" / "f.png").write_bytes(b"old")
    (tmp_path / "hdd" / "p" / "f.png").write_bytes(b"newer")
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([ssd, hdd])
        catalog.journal_begin("move", "p/f.png", source_location_id=hdd.location_id,
                              target_location_id=ssd.location_id,
                              expected_hash=hash_bytes(b"old"))
        recover(catalog, backends)
        assert (tmp_path / "hdd" / "p" / "f.png").read_bytes() == b"newer"
        assert not (tmp_path / "ssd" / "p" / "f.png").exists()


def test_full_disk_handover_is_finished_or_undone(tmp_path):
    """A write that found its local location full moves the file on: a crash mid-copy
    removes the partial copy, one after the copy was complete finishes the move."""

    ssd, hdd, backends = _two_local_locations(tmp_path)
    (tmp_path / "ssd" / "p" / "half.mov").write_bytes(b"source")
    (tmp_path / "hdd" / "p" / "half.mov").write_bytes(b"sou")  # partial copy
    (tmp_path / "ssd" / "p" / "done.mov").write_bytes(b"source")
    (tmp_path / "hdd" / "p" / "done.mov").write_bytes(b"source and the write")
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([ssd, hdd])
        catalog.journal_begin(HANDOVER, "p/half.mov", source_location_id=ssd.location_id,
                              target_location_id=hdd.location_id)
        op = catalog.journal_begin(HANDOVER, "p/done.mov", source_location_id=ssd.location_id,
                                   target_location_id=hdd.location_id)
        catalog.journal_step(op, "copied")
        recover(catalog, backends)
        assert (tmp_path / "ssd" / "p" / "half.mov").read_bytes() == b"source"
        assert not (tmp_path / "hdd" / "p" / "half.mov").exists()
        assert not (tmp_path / "ssd" / "p" / "done.mov").exists()
        assert (tmp_path / "hdd" / "p" / "done.mov").read_bytes() == b"source and the write"
        assert [r.location_id for r in catalog.replicas_of("p/done.mov")] == [hdd.location_id]
        assert catalog.journal_open() == []


def test_a_multipart_upload_killed_before_s3_named_it_is_aborted(tmp_path, s3_server,
                                                                   s3_bucket):
    """The journal row is written before S3 is asked for the upload; a process killed
    before the answer leaves a row without an upload id, and recovery aborts the uploads
    of that key begun since (and no other key's)."""
    from alicefs.backends.s3 import S3Backend
    from alicefs.transfer.journal import JournaledPartialUploads
    from tests.backends.conftest import s3_location, unique_prefix

    s3 = S3Backend(s3_location(s3_server, s3_bucket, prefix=unique_prefix()))
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([s3.location])
        JournaledPartialUploads(catalog).started(s3.location.location_id, "p/big.mp4")
        for key in ("p/big.mp4", "p/other.mp4"):  # S3 named them; nobody heard
            s3.client.create_multipart_upload(Bucket=s3.bucket, Key=s3.object_key(key))
        done = recover(catalog, {s3.location.location_id: s3})
        assert done == ["multipart p/big.mp4: unfinished multipart upload aborted"]
        listing = s3.client.list_multipart_uploads(Bucket=s3.bucket,
                                                   Prefix=s3.location.prefix)
        assert [u["Key"] for u in listing.get("Uploads", [])] == [s3.object_key("p/other.mp4")]
        assert catalog.journal_open() == []


def test_copy_whose_source_changed_after_the_copy_removes_the_copy(tmp_path):
    """A copy (no source removed) killed after it published, while the file was written at
    its source: the copy is an older version and must not be recorded as a present replica
    (it used to be, making two different contents 'current')."""

    ssd, hdd, backends = _two_local_locations(tmp_path)
    (tmp_path / "ssd" / "p" / "f.png").write_bytes(b"old")
    (tmp_path / "hdd" / "p" / "f.png").write_bytes(b"newer")
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([ssd, hdd])
        op = catalog.journal_begin("copy", "p/f.png", source_location_id=hdd.location_id,
                                   target_location_id=ssd.location_id,
                                   expected_hash=hash_bytes(b"old"))
        catalog.journal_step(op, "recorded")
        done = recover(catalog, backends)
        assert done == ["copy p/f.png: rolled back (source changed after the copy; the copy "
                        "removed)"]
        assert (tmp_path / "hdd" / "p" / "f.png").read_bytes() == b"newer"
        assert not (tmp_path / "ssd" / "p" / "f.png").exists()
        assert catalog.replicas_of("p/f.png") == []
