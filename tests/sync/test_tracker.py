"""Sync tracking with real replicas in two locations (local directories, SeaweedFS S3, the
GCS emulator): replicas edited outside alicefs, conflicts and every strategy, missing
replicas, ties, and a second run that does nothing."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, replace

import pytest

from alicefs.backends.base import Backend
from alicefs.catalog import Catalog
from alicefs.registry import StorageRegistry
from alicefs.rules import Rule
from alicefs.scanner import MultiPathScanner
from alicefs.sync import Strategy, SyncState, SyncTracker
from alicefs.transfer.journal import COPY
from tests.transfer.conftest import open_location_backend

KINDS = ["local-local", "local-s3", "gcs-local"]
#: The cases whose logic does not depend on the store run on local disks only.
local_only = pytest.mark.parametrize("library", ["local-local"], indirect=True)
KEY = "p/shot.png"


@dataclass
class Library:
    a: Backend  # priority 100
    b: Backend  # priority 50
    catalog: Catalog
    registry: StorageRegistry

    def tracker(self) -> SyncTracker:
        return SyncTracker(self.registry)

    async def scan(self) -> None:
        stats = await MultiPathScanner(self.catalog, self.registry).discover_all_assets()
        assert stats.errors == {}

    async def states(self) -> dict[str, SyncState]:
        return {f.logical_path: f.state for f in (await self.tracker().report()).files}

    def names(self, backend: Backend) -> list[str]:
        return sorted(info.key for info in backend.list())


def put(backend: Backend, key: str, data: bytes, mtime_s: float | None = None) -> None:
    mtime_ns = int((mtime_s if mtime_s is not None else time.time()) * 1e9)
    backend.write_atomic(key, io.BytesIO(data), overwrite=True, mtime_ns=mtime_ns)


def read(backend: Backend, key: str) -> bytes | None:
    try:
        with backend.open_read(key) as stream:
            return stream.read()
    except FileNotFoundError:
        return None


@pytest.fixture(params=KINDS)
async def library(request, tmp_path):
    kind_a, kind_b = request.param.split("-")
    a = open_location_backend(request, kind_a, tmp_path, "alpha")
    b = open_location_backend(request, kind_b, tmp_path, "beta")
    a.location = replace(a.location, priority=100)
    b.location = replace(b.location, priority=50)
    then = time.time() - 3600
    for backend in (a, b):
        put(backend, KEY, b"original", then)
        put(backend, "p/other.png", b"untouched", then)
    with Catalog(tmp_path / "catalog.duckdb") as catalog:
        registry = StorageRegistry(catalog)
        registry.register_location(a.location)
        registry.register_location(b.location)
        lib = Library(a, b, catalog, registry)
        await lib.scan()
        assert set((await lib.states()).values()) == {SyncState.SYNCED}
        yield lib
        assert catalog.check() == []
        assert catalog.journal_open() == []


async def test_a_replica_edited_outside_is_newer_and_sync_brings_the_other_level(library):
    put(library.b, KEY, b"edited in beta")
    await library.scan()
    [file] = [f for f in (await library.tracker().report()).files if f.logical_path == KEY]
    assert file.state is SyncState.PENDING_UPDATE
    assert {r.replica.location_id: r.state for r in file.replicas} == {
        library.a.location.location_id: SyncState.PENDING_UPDATE,
        library.b.location.location_id: SyncState.SYNCED}

    result = await library.tracker().process_sync_queue()
    assert result.counts() == {"updated": 1}
    assert read(library.a, KEY) == b"edited in beta"
    assert set((await library.states()).values()) == {SyncState.SYNCED}

    again = await library.tracker().process_sync_queue()
    assert again.plan.updates == () and again.outcomes == ()
    await library.scan()  # what the copy left agrees with a fresh look
    assert set((await library.states()).values()) == {SyncState.SYNCED}
    assert (await library.tracker().plan()).updates == ()
    assert library.names(library.a) == library.names(library.b) == ["p/other.png", KEY]


@local_only
async def test_two_identical_edits_agree(library):
    put(library.a, KEY, b"same edit")
    put(library.b, KEY, b"same edit")
    await library.scan()
    assert (await library.states())[KEY] is SyncState.SYNCED
    assert library.catalog.sync_base(KEY).base_hash is not None
    assert (await library.tracker().process_sync_queue()).outcomes == ()


async def make_conflict(library: Library, *, a_data: bytes = b"alpha's edit",
                        b_data: bytes = b"beta's longer edit", a_age: float = 60,
                        b_age: float = 30) -> None:
    now = time.time()
    put(library.a, KEY, a_data, now - a_age)
    put(library.b, KEY, b_data, now - b_age)
    await library.scan()
    conflicts = await library.tracker().detect_conflicts()
    assert [f.logical_path for f in conflicts] == [KEY]


@pytest.mark.parametrize(("library", "strategy", "winner"), [
    ("local-local", "newest", "b"), ("local-local", "largest", "b"),
    ("local-local", "primary", "a"), ("local-local", "manual", "a"),
    ("local-s3", "newest", "b"), ("gcs-local", "primary", "a")], indirect=["library"])
async def test_each_strategy_resolves_a_conflict_and_keeps_the_loser(library, strategy,
                                                                     winner):
    await make_conflict(library)
    wins, loses = ((library.a, library.b) if winner == "a" else (library.b, library.a))
    keep = wins.location.name if strategy == "manual" else None
    result = await library.tracker().resolve_conflict(KEY, strategy, keep=keep)
    [decision] = result.decisions
    assert decision.winner.location_id == wins.location.location_id
    [outcome] = result.outcomes
    assert outcome.result == "resolved" and outcome.kept_as is not None
    winning = read(wins, KEY)
    assert read(loses, KEY) == winning
    losing = b"beta's longer edit" if winner == "a" else b"alpha's edit"
    assert outcome.kept_as.startswith("p/shot.conflict-") and outcome.kept_as.endswith(
        f"-{loses.location.name}.png")
    assert read(loses, outcome.kept_as) == losing
    assert read(wins, outcome.kept_as) is None
    states = await library.states()
    assert states[KEY] is SyncState.SYNCED and states[outcome.kept_as] is SyncState.SYNCED
    await library.scan()
    assert set((await library.states()).values()) == {SyncState.SYNCED}
    assert (await library.tracker().process_sync_queue()).outcomes == ()


@local_only
async def test_discarding_losers_keeps_no_conflict_copy(library):
    await make_conflict(library)
    result = await library.tracker().resolve_conflict(None, Strategy.NEWEST,
                                                      discard_losers=True)
    assert [o.kept_as for o in result.outcomes] == [None]
    assert read(library.a, KEY) == read(library.b, KEY) == b"beta's longer edit"
    assert library.names(library.a) == ["p/other.png", KEY]


@local_only
async def test_a_tie_decides_nothing(library):
    await make_conflict(library, a_data=b"same size 1", b_data=b"same size 2")
    result = await library.tracker().resolve_conflict(KEY, Strategy.LARGEST)
    [decision] = result.decisions
    assert decision.winner is None and "tie" in decision.why
    assert result.outcomes == ()
    assert read(library.a, KEY) == b"same size 1" and read(library.b, KEY) == b"same size 2"
    assert (await library.states())[KEY] is SyncState.CONFLICT


@local_only
async def test_manual_without_a_choice_changes_nothing(library):
    await make_conflict(library)
    result = await library.tracker().resolve_conflict(KEY, Strategy.MANUAL)
    assert result.decisions[0].winner is None and result.outcomes == ()
    assert len(result.decisions[0].file.candidates) == 2
    assert (await library.states())[KEY] is SyncState.CONFLICT


@local_only
async def test_conflicts_wait_for_a_decision_unless_auto_resolved(library):
    await make_conflict(library)
    waiting = await library.tracker().process_sync_queue()
    assert waiting.outcomes == () and [s.logical_path for s in waiting.plan.skipped] == [KEY]
    resolved = await library.tracker().process_sync_queue(auto_resolve={"p": "newest"})
    assert resolved.counts() == {"resolved": 1}
    assert read(library.a, KEY) == b"beta's longer edit"


async def test_a_missing_replica_is_recreated_where_the_rules_want_it(library):
    library.b.delete(KEY)
    await library.scan()
    assert (await library.states())[KEY] is SyncState.MISSING
    result = await library.tracker().process_sync_queue()
    assert result.counts() == {"re-created": 1}
    assert read(library.b, KEY) == b"original"
    assert set((await library.states()).values()) == {SyncState.SYNCED}


@local_only
async def test_a_missing_replica_no_rule_wants_is_forgotten(library):
    library.registry.update_location(library.b.location.location_id,
                                     rules=[Rule(include_types=("video",))])
    library.b.delete(KEY)
    await library.scan()
    result = await library.tracker().process_sync_queue()
    assert result.counts() == {"forgotten": 1}
    assert read(library.b, KEY) is None and read(library.a, KEY) == b"original"
    assert [r.location_id for r in library.catalog.replicas_of(KEY)] == [
        library.a.location.location_id]
    assert (await library.states())[KEY] is SyncState.SYNCED


async def test_a_replica_changed_after_its_scan_is_not_replaced(library):
    """The catalog says beta holds the old version; someone writes it before sync runs:
    their version stays, and the next scan shows the conflict."""
    put(library.a, KEY, b"newer in alpha")
    await library.scan()
    put(library.b, KEY, b"written meanwhile", time.time() + 5)
    result = await library.tracker().process_sync_queue()
    assert [o.result for o in result.outcomes] == ["changed"]
    assert read(library.b, KEY) == b"written meanwhile"
    await library.scan()
    assert (await library.states())[KEY] is SyncState.CONFLICT


@local_only
async def test_a_dry_run_changes_nothing(library):
    put(library.b, KEY, b"edited in beta")
    await library.scan()
    before = library.catalog.replicas()
    result = await library.tracker().process_sync_queue(dry_run=True)
    assert [u.reason for u in result.plan.updates] == ["update"] and result.outcomes == ()
    assert read(library.a, KEY) == b"original"
    assert library.catalog.replicas() == before




@local_only
async def test_an_unfinished_copy_is_pending_upload(library):
    target = library.b.location.location_id
    op_id = library.catalog.journal_begin(COPY, "p/other.png",
                                          source_location_id=library.a.location.location_id,
                                          target_location_id=target)
    library.catalog.drop_replicas(target, ["p/other.png"])
    [file] = [f for f in (await library.tracker().report()).files
              if f.logical_path == "p/other.png"]
    assert file.state is SyncState.PENDING_UPLOAD and file.uploading == (target,)
    library.catalog.journal_end(op_id)
