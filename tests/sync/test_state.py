"""Sync states, planning and decisions as pure functions: no servers, no files."""

from __future__ import annotations

import pytest

from alicefs.catalog import Replica, SyncBase
from alicefs.sync.plan import Strategy, decide, plan_sync, resolution
from alicefs.sync.state import SyncState, classify

PATH = "p/a.png"


def rep(location: str, content: str | None, *, state: str = "present", size: int = 10,
        mtime: int = 1) -> Replica:
    return Replica(location, PATH, size, mtime, content, state=state)


BASE = SyncBase(PATH, "h0", 10, 0.0)


def states(file) -> dict[str, SyncState]:
    return {r.replica.location_id: r.state for r in file.replicas}


def test_replicas_at_the_base_are_synced():
    file = classify(PATH, [rep("a", "h0"), rep("b", "h0")], BASE)
    assert file.state is SyncState.SYNCED and file.current.location_id == "a"


def test_one_changed_replica_is_newer_and_the_others_pending_update():
    file = classify(PATH, [rep("a", "h0"), rep("b", "h1"), rep("c", "h0")], BASE)
    assert file.state is SyncState.PENDING_UPDATE
    assert file.current.location_id == "b"
    assert states(file) == {"a": SyncState.PENDING_UPDATE, "b": SyncState.SYNCED,
                            "c": SyncState.PENDING_UPDATE}


def test_two_different_changes_are_a_conflict_and_the_same_change_is_not():
    conflict = classify(PATH, [rep("a", "h1"), rep("b", "h2"), rep("c", "h0")], BASE)
    assert conflict.state is SyncState.CONFLICT and conflict.current is None
    assert [c.location_id for c in conflict.candidates] == ["a", "b"]
    assert states(conflict)["c"] is SyncState.PENDING_UPDATE
    same = classify(PATH, [rep("a", "h1"), rep("b", "h1"), rep("c", "h0")], BASE)
    assert same.state is SyncState.PENDING_UPDATE and same.current.content_hash == "h1"


def test_without_a_base_different_replicas_are_a_conflict():
    assert classify(PATH, [rep("a", "h1"), rep("b", "h2")], None).state is SyncState.CONFLICT
    assert classify(PATH, [rep("a", "h1"), rep("b", "h1")], None).state is SyncState.SYNCED


def test_stale_and_missing_replicas_and_unfinished_copies():
    file = classify(PATH, [rep("a", "h1"), rep("b", "h0", state="stale"),
                           rep("c", "h0", state="missing")], BASE, uploading=["d", "a"])
    assert states(file) == {"a": SyncState.SYNCED, "b": SyncState.PENDING_UPDATE,
                            "c": SyncState.MISSING}
    assert file.uploading == ("d",) and file.state is SyncState.PENDING_UPDATE
    only_missing = classify(PATH, [rep("a", "h0"), rep("c", "h0", state="missing")], BASE)
    assert only_missing.state is SyncState.MISSING
    uploading = classify(PATH, [rep("a", "h0")], BASE, uploading=["d"])
    assert uploading.state is SyncState.PENDING_UPLOAD


def test_an_unhashed_replica_of_another_size_is_a_version_of_its_own():
    file = classify(PATH, [rep("a", None, size=99), rep("b", "h1")], BASE)
    assert file.state is SyncState.CONFLICT
    same_size = classify(PATH, [rep("a", None), rep("b", "h1")], BASE)
    assert same_size.current.location_id == "b"


def test_the_queue_updates_recreates_forgets_and_leaves_conflicts():
    behind = classify(PATH, [rep("a", "h1"), rep("b", "h0"), rep("c", "h0", state="missing"),
                             rep("d", "h0", state="missing")], BASE)
    plan = plan_sync([behind], lambda file, location: location == "c",
                     frozenset({"a", "b", "c"}))
    assert [(u.target_location_id, u.reason) for u in plan.updates] == [
        ("b", "update"), ("c", "re-create")]
    assert all(u.source.location_id == "a" for u in plan.updates)
    assert [r.location_id for r in plan.forget] == ["d"]
    conflict = classify(PATH, [rep("a", "h1"), rep("b", "h2")], BASE)
    plan = plan_sync([conflict], lambda *_: True, frozenset({"a", "b"}))
    assert plan.updates == () and "conflict" in plan.skipped[0].reason
    unreachable = plan_sync([behind], lambda *_: True, frozenset({"b", "c", "d"}))
    assert unreachable.updates == () and "not reachable" in unreachable.skipped[0].reason


@pytest.mark.parametrize(("strategy", "winner"), [
    (Strategy.NEWEST, "b"), (Strategy.LARGEST, "a"), (Strategy.PRIMARY, "c")])
def test_strategies_pick_by_their_attribute(strategy, winner):
    file = classify(PATH, [rep("a", "h1", size=30, mtime=1), rep("b", "h2", size=20, mtime=3),
                           rep("c", "h3", size=10, mtime=2)], BASE)
    decision = decide(file, strategy, {"a": 10, "b": 20, "c": 30})
    assert decision.winner.location_id == winner
    updates = resolution(decision)
    assert sorted(u.target_location_id for u in updates) == sorted({"a", "b", "c"} - {winner})
    assert all(u.keep_losing for u in updates)
    assert not any(u.keep_losing for u in resolution(decision, discard_losers=True))


def test_a_tie_or_a_manual_choice_without_a_location_decides_nothing():
    file = classify(PATH, [rep("a", "h1", mtime=5), rep("b", "h2", mtime=5)], BASE)
    assert decide(file, Strategy.NEWEST, {}).winner is None
    assert resolution(decide(file, Strategy.NEWEST, {})) == []
    assert decide(file, Strategy.PRIMARY, {"a": 1, "b": 1}).winner is None
    assert decide(file, Strategy.MANUAL, {}).winner is None
    assert decide(file, Strategy.MANUAL, {}, keep="b").winner.location_id == "b"


def test_the_base_version_losing_is_not_kept_but_changed_versions_are():
    file = classify(PATH, [rep("a", "h1", mtime=9), rep("b", "h2", mtime=1),
                           rep("c", "h0")], BASE)
    updates = {u.target_location_id: u.keep_losing
               for u in resolution(decide(file, Strategy.NEWEST, {}))}
    assert updates == {"b": True, "c": False}
