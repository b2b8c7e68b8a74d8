"""The journaled move of one replica between every pair of location types: what lands, and
what recovery makes of a move interrupted after any of its steps."""

from __future__ import annotations

import io
import os

import pytest

from alicefs.backends.base import Backend
from alicefs.catalog import Catalog
from alicefs.hashing import hash_bytes
from alicefs.transfer import move as transfer
from alicefs.transfer.move import Transfer
from alicefs.transfer.recovery import recover

KEY = "p/take.mp4"
MTIME_NS = 1_600_000_000_123_456_789


def _content(backend: Backend, key: str = KEY) -> bytes | None:
    try:
        with backend.open_read(key) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


def _setup(tmp_path, pair, size: int = 300_000):
    source, target = pair
    data = os.urandom(size)
    source.write_atomic(KEY, io.BytesIO(data), mtime_ns=MTIME_NS)
    catalog = Catalog(tmp_path / "catalog.duckdb")
    catalog.put_locations([source.location, target.location])
    return source, target, data, catalog


def test_a_move_lands_verified_and_leaves_nothing_behind(tmp_path, pair):
    source, target, data, catalog = _setup(tmp_path, pair, size=7 << 20)  # multipart on S3
    with catalog:
        move = Transfer(KEY, source, target, hash_bytes(data), MTIME_NS, removes=(source,))
        transfer.begin(catalog, [move])
        result = move.copy()
        assert result.content_hash == hash_bytes(data)
        transfer.recorded(catalog, [move], [move.record_of(result)])
        removed = move.remove()
        transfer.end(catalog, [move], [(lid, KEY) for lid in removed])
        assert _content(target) == data and _content(source) is None
        assert [r.location_id for r in catalog.replicas_of(KEY)] == [
            target.location.location_id]
        assert target.stat(KEY).mtime_ns // 1_000_000_000 == MTIME_NS // 1_000_000_000
        assert catalog.journal_open() == []


STEPS = ["begin", "copy", "recorded", "remove"]


def _run_until(catalog, move: Transfer, last_step: str) -> None:
    result = None
    for step in STEPS:
        if step == "begin":
            transfer.begin(catalog, [move])
        elif step == "copy":
            result = move.copy()
        elif step == "recorded":
            transfer.recorded(catalog, [move], [move.record_of(result)])
        else:
            move.remove()
        if step == last_step:
            return


@pytest.mark.parametrize("last_step", STEPS)
@pytest.mark.parametrize("kind", ["move", "copy"])
def test_a_transfer_interrupted_after_any_step_loses_nothing(tmp_path, pair, last_step, kind):
    """The process dies after `last_step`: recovery rolls the transfer forward once the
    verified copy exists (for a move the source goes), back before (the source stays); the
    content is never lost, and the journal is empty."""
    source, target, data, catalog = _setup(tmp_path, pair)
    with catalog:
        move = Transfer(KEY, source, target, hash_bytes(data), MTIME_NS,
                        removes=(source,) if kind == "move" else ())
        _run_until(catalog, move, last_step)
        recover(catalog, {b.location.location_id: b for b in pair})
        copied = last_step != "begin"
        assert _content(target) == (data if copied else None)
        assert _content(source) == (None if copied and kind == "move" else data)
        assert catalog.journal_open() == []
        holders = {r.location_id for r in catalog.replicas_of(KEY)}
        assert (target.location.location_id in holders) == copied


def test_a_different_file_at_the_target_is_never_replaced(tmp_path, pair):
    source, target, data, catalog = _setup(tmp_path, pair)
    target.write_atomic(KEY, io.BytesIO(b"someone else's"))
    with catalog:
        move = Transfer(KEY, source, target, hash_bytes(data), MTIME_NS, removes=(source,))
        transfer.begin(catalog, [move])
        with pytest.raises(FileExistsError):
            move.copy()
        recover(catalog, {b.location.location_id: b for b in pair})  # rolled back
        assert _content(target) == b"someone else's"
        assert _content(source) == data
        assert catalog.journal_open() == []


def test_an_abandoned_move_keeps_the_source(tmp_path, pair):
    """The file changed while it was copied (the mount looks between steps): the copy goes."""
    source, target, data, catalog = _setup(tmp_path, pair)
    with catalog:
        move = Transfer(KEY, source, target, hash_bytes(data), MTIME_NS, removes=(source,))
        transfer.begin(catalog, [move])
        move.copy()
        move.abandon()
        transfer.end(catalog, [move])
        assert _content(target) is None and _content(source) == data
        assert catalog.journal_open() == []


def test_a_source_changed_before_the_copy_is_refused(tmp_path, pair):
    source, target, data, catalog = _setup(tmp_path, pair)
    with catalog:
        move = Transfer(KEY, source, target, hash_bytes(b"what it held when planned"),
                        MTIME_NS, removes=(source,))
        transfer.begin(catalog, [move])
        with pytest.raises(OSError):
            move.copy()
        recover(catalog, {b.location.location_id: b for b in pair})
        assert _content(target) is None and _content(source) == data
        assert catalog.journal_open() == []


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_a_move_within_one_store_is_copied_by_the_store(tmp_path, request, monkeypatch,
                                                        store):
    """Between two locations of one object store the bytes never come through this machine
    (counted at a proxy in front of the store: a copy through it would count twice the
    file), and the copy is still checked against the content planned."""
    from alicefs.backends.gcs import GCSBackend
    from alicefs.backends.s3 import S3Backend
    from tests.backends.conftest import gcs_location, s3_location, unique_prefix
    from tests.proxy import TcpProxy

    if store == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        proxy = TcpProxy(server.ports["s3"])
        source, target = (S3Backend(s3_location(server, bucket, name=name,
                                                prefix=unique_prefix(),
                                                endpoint_url=proxy.url))
                          for name in ("source", "target"))
    else:
        server = request.getfixturevalue("gcs_server")
        bucket = request.getfixturevalue("gcs_bucket")
        proxy = TcpProxy(server.port)
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        source, target = (GCSBackend(gcs_location(bucket, name=name, prefix=unique_prefix()))
                          for name in ("source", "target"))
    try:
        size = 16 << 20
        source, target, data, catalog = _setup(tmp_path, (source, target), size=size)
        before = proxy.forwarded()
        move = Transfer(KEY, source, target, hash_bytes(data), MTIME_NS, removes=(source,))
        transfer.begin(catalog, [move])
        result = move.copy()
        # Requests and answers (and whatever of the upload above the proxy had not counted
        # yet), not the file twice over.
        assert proxy.forwarded() - before < size // 8
        assert result.content_hash == hash_bytes(data)
        assert result.info.mtime_ns == MTIME_NS and _content(target) == data

        source.write_atomic("p/changed.mp4", io.BytesIO(b"not what was planned"))
        changed = Transfer("p/changed.mp4", source, target, hash_bytes(b"planned"), None)
        with pytest.raises(OSError):
            changed.copy()
        assert _content(target, "p/changed.mp4") is None
        catalog.close()
    finally:
        proxy.close()
