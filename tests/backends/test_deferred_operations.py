"""Copies left on a location that was offline when their file was unlinked or renamed
(alicefs.transfer.recovery), deleted on each kind of backend when it is back."""

from __future__ import annotations

from alicefs.backends.base import Backend
from alicefs.backends.local import LocalBackend
from alicefs.catalog import Catalog
from alicefs.hashing import hash_bytes
from alicefs.transfer.journal import DEFERRED_DELETE, DEFERRED_KINDS
from alicefs.transfer.recovery import recover, unfinished
from tests.backends.conftest import local_location


def read(backend: Backend, key: str) -> bytes | None:
    try:
        with backend.open_read(key) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def test_deferred_deletes_remove_only_what_is_unchanged(backend, tmp_path):
    for key, data in {"p/gone.png": b"gone", "p/changed.png": b"theirs",
                      "r/sub/moved.png": b"moved"}.items():
        backend.write_atomic(key, [data])
    lid = backend.location.location_id
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([backend.location])
        for key, data, payload in (("p/gone.png", b"gone", None),
                                   # Changed there by someone else since: kept.
                                   ("p/changed.png", b"ours", None),
                                   # From a renamed directory r/: what it leaves empty goes.
                                   ("r/sub/moved.png", b"moved", {"prune": "r"}),
                                   ("p/never-there.png", b"x", None)):
            catalog.journal_begin(DEFERRED_DELETE, key, target_location_id=lid,
                                  expected_hash=hash_bytes(data), payload=payload)
        catalog.journal_begin(DEFERRED_DELETE, "p/x.png", target_location_id="elsewhere")
        assert unfinished(catalog)[lid] == 4
        assert len(recover(catalog, {lid: backend}, DEFERRED_KINDS)) == 4
        assert unfinished(catalog)[lid] == 0
        assert unfinished(catalog)["elsewhere"] == 1  # that location is still away
    assert read(backend, "p/gone.png") is None
    assert read(backend, "p/changed.png") == b"theirs"
    assert read(backend, "r/sub/moved.png") is None
    if isinstance(backend, LocalBackend):
        assert not (backend.root / "r").exists()


def test_a_deferred_delete_of_a_link_leading_out_removes_the_link_only(local_root, tmp_path):
    backend = LocalBackend(local_location(local_root))
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    (local_root / "p").mkdir()
    (local_root / "p" / "out").symlink_to(outside)
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([backend.location])
        catalog.journal_begin(DEFERRED_DELETE, "p/out",
                              target_location_id=backend.location.location_id,
                              payload={"symlink": True})
        assert len(recover(catalog, {backend.location.location_id: backend})) == 1
    assert not (local_root / "p" / "out").is_symlink()
    assert outside.read_text() == "not ours"


def test_recovery_limited_to_some_kinds_leaves_the_others(backend, tmp_path):
    backend.write_atomic("p/x.png", [b"x"])
    lid = backend.location.location_id
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        catalog.put_locations([backend.location])
        catalog.journal_begin("delete", "p/x.png", payload={"locations": [lid]})
        assert recover(catalog, {lid: backend}, DEFERRED_KINDS) == []
        assert len(catalog.journal_open()) == 1
    assert read(backend, "p/x.png") == b"x"
