"""Unlinks and renames left for a location that was offline (alicefs.fs.recovery), finished
on each kind of backend when it is back."""

from __future__ import annotations

from alicefs.backends.base import Backend
from alicefs.catalog import Catalog, Replica
from alicefs.fs.recovery import (
    DEFERRED_DELETE,
    DEFERRED_KINDS,
    DEFERRED_RENAME,
    recover,
    unfinished,
)
from alicefs.hashing import hash_bytes


def read(backend: Backend, key: str) -> bytes | None:
    try:
        with backend.open_read(key) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def test_deferred_renames_and_deletes_finish_without_losing_anything(backend, tmp_path):
    for key, data in {"p/old.png": b"moved", "p/gone.png": b"gone", "p/stale.png": b"v1",
                      "p/changed.png": b"theirs", "p/a.png": b"a", "p/b.png": b"b"}.items():
        backend.write_atomic(key, [data])
    lid = backend.location.location_id
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([backend.location])

        def defer(kind: str, key: str, data: bytes, to: str | None = None) -> int:
            return catalog.journal_begin(kind, key, target_location_id=lid,
                                         expected_hash=hash_bytes(data),
                                         payload={"to": to} if to else None)

        defer(DEFERRED_RENAME, "p/old.png", b"moved", "p/new.png")
        defer(DEFERRED_DELETE, "p/gone.png", b"gone")
        # Renamed, then written elsewhere while this location was away: its copy is older.
        catalog.put_replicas([Replica("elsewhere", "p/stale2.png", 2, 1, hash_bytes(b"v2"))])
        defer(DEFERRED_RENAME, "p/stale.png", b"v1", "p/stale2.png")
        # Changed there by someone else since it was removed through the mount: kept.
        defer(DEFERRED_DELETE, "p/changed.png", b"ours")
        # The new name is taken there: nothing is replaced, both stay.
        defer(DEFERRED_RENAME, "p/a.png", b"a", "p/b.png")
        assert unfinished(catalog, lid) == 5
        assert len(recover(catalog, {lid: backend}, DEFERRED_KINDS)) == 5
        assert unfinished(catalog, lid) == 0
        states = {r.logical_path: r.state for r in catalog.replicas(lid)}
    assert read(backend, "p/new.png") == b"moved" and read(backend, "p/old.png") is None
    assert states == {"p/new.png": "present", "p/stale2.png": "stale"}
    assert read(backend, "p/gone.png") is None
    assert read(backend, "p/changed.png") == b"theirs"
    assert (read(backend, "p/a.png"), read(backend, "p/b.png")) == (b"a", b"b")


def test_recovery_limited_to_some_kinds_leaves_the_others(backend, tmp_path):
    backend.write_atomic("p/x.png", [b"x"])
    lid = backend.location.location_id
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([backend.location])
        catalog.journal_begin("delete", "p/x.png", payload={"locations": [lid]})
        assert recover(catalog, {lid: backend}, DEFERRED_KINDS) == []
        assert len(catalog.journal_open()) == 1
    assert read(backend, "p/x.png") == b"x"
