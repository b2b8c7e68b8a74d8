"""Sync planning, pure: what `sync-process` and `resolve-conflict` do to each file.

- **Queue** (`plan_sync`): every `pending_update` replica is brought to the current version;
  a `missing` replica is re-created from a good one when the rules say its location should
  hold the file (an active location whose rules match it), else dropped from the catalog —
  never by deleting anything. Conflicts wait for a decision; files whose current version
  no reachable location holds wait too.
- **Decision** (`decide`): in a conflict the strategy picks one of the competing versions:
  `newest` (latest mtime), `largest` (size), `primary` (highest-priority location), or
  `manual` (the version in the location the user names). A tie on the deciding attribute
  decides nothing. The losing versions are kept under conflict names in their own
  locations unless the user discards them (`resolution`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from alicefs.catalog import Replica
from alicefs.migrate.plan import Skipped
from alicefs.sync.state import FileSync, SyncState


class Strategy(StrEnum):
    NEWEST = "newest"
    LARGEST = "largest"
    PRIMARY = "primary"
    MANUAL = "manual"


@dataclass(frozen=True)
class SyncUpdate:
    """Bring the replica at `target_location_id` to the content `source` holds."""

    logical_path: str
    source: Replica
    target_location_id: str
    # What the target holds, as cataloged: replaced only while it still is exactly that.
    # None: nothing there (a missing replica re-created).
    replaced: Replica | None
    keep_losing: bool = False  # a conflict's losing version: kept under a conflict name

    @property
    def reason(self) -> str:
        if self.replaced is None:
            return "re-create"
        return "conflict" if self.keep_losing else "update"


@dataclass(frozen=True)
class SyncPlan:
    updates: tuple[SyncUpdate, ...]
    forget: tuple[Replica, ...]  # missing replicas no rule wants there: dropped from the catalog
    skipped: tuple[Skipped, ...]


#: Whether the rules say a location should hold a file: (file, location id) -> bool.
Wanted = Callable[[FileSync, str], bool]


def plan_sync(files: Iterable[FileSync], wanted: Wanted, usable: frozenset[str]) -> SyncPlan:
    """The queue's work for `files`, sorted by logical path. Nothing is read from or written
    to locations outside `usable` (the reachable ones)."""
    updates: list[SyncUpdate] = []
    forget: list[Replica] = []
    skipped: list[Skipped] = []
    for file in sorted(files, key=lambda f: f.logical_path):
        if file.state is SyncState.CONFLICT:
            skipped.append(Skipped(file.logical_path, "a conflict: resolve-conflict decides "
                                                      "(or sync.auto_resolve)"))
            continue
        behind = file.in_state(SyncState.PENDING_UPDATE)
        missing = file.in_state(SyncState.MISSING)
        if not behind and not missing:
            continue
        current = file.current
        if current is None:
            skipped.append(Skipped(file.logical_path, "no replica holds its current version"))
            continue
        if current.location_id not in usable:
            skipped.append(Skipped(file.logical_path, "the location holding its current "
                                                      "version is not reachable now"))
            continue
        for replica in behind:
            if replica.location_id in usable:
                updates.append(SyncUpdate(file.logical_path, current, replica.location_id,
                                          replica))
            else:
                skipped.append(Skipped(file.logical_path, "a location holding an older "
                                                          "version is not reachable now"))
        for replica in missing:
            if not wanted(file, replica.location_id):
                forget.append(replica)
            elif replica.location_id in usable:
                updates.append(SyncUpdate(file.logical_path, current, replica.location_id,
                                          None))
            else:
                skipped.append(Skipped(file.logical_path, "a location that should hold it "
                                                          "is not reachable now"))
    return SyncPlan(tuple(updates), tuple(forget), tuple(skipped))


@dataclass(frozen=True)
class Decision:
    """What a strategy decided for one conflict: the winning replica, or None and why."""

    file: FileSync
    strategy: Strategy
    winner: Replica | None
    why: str


def decide(file: FileSync, strategy: Strategy, priorities: Mapping[str, int],
           keep: str | None = None) -> Decision:
    """Pick the winning version of a conflict. `priorities`: location id -> priority;
    `keep`: the location id whose version wins (manual)."""
    candidates = file.candidates
    if strategy is Strategy.MANUAL:
        if keep is None:
            return Decision(file, strategy, None, "manual: name the winning location with "
                                                  "--keep")
        chosen = next((r.replica for r in file.replicas
                       if r.replica.location_id == keep and r.replica.state == "present"), None)
        if chosen is None:
            return Decision(file, strategy, None, "manual: no present version of it there")
        return Decision(file, strategy, chosen, "manual: the version chosen")
    measure: Callable[[Replica], int] = {
        Strategy.NEWEST: lambda r: r.mtime_ns,
        Strategy.LARGEST: lambda r: r.size,
        Strategy.PRIMARY: lambda r: priorities.get(r.location_id, 0),
    }[strategy]
    ranked = sorted(candidates, key=measure, reverse=True)
    if len(ranked) > 1 and measure(ranked[0]) == measure(ranked[1]):
        return Decision(file, strategy, None, f"{strategy}: a tie between "
                                              f"{ranked[0].location_id} and "
                                              f"{ranked[1].location_id}; nothing decided")
    what = {Strategy.NEWEST: "the latest modification", Strategy.LARGEST: "the largest",
            Strategy.PRIMARY: "the highest-priority location"}[strategy]
    return Decision(file, strategy, ranked[0], f"{strategy}: {what}")


def resolution(decision: Decision, *, discard_losers: bool = False) -> list[SyncUpdate]:
    """The updates that carry a decision out: every present replica not holding the winning
    version gets it; the changed versions that lose are kept under conflict names first
    unless `discard_losers` (the base version, superseded by them, is not kept)."""
    winner = decision.winner
    if winner is None:
        return []
    file = decision.file
    updates = []
    for entry in file.replicas:
        replica = entry.replica
        if replica.location_id == winner.location_id or replica.state == "missing":
            continue
        if replica.state == "present" and replica.content_hash == winner.content_hash \
                and winner.content_hash is not None:
            continue
        changed = replica.state == "present" and (replica.content_hash != file.base_hash
                                                  or file.base_hash is None)
        updates.append(SyncUpdate(file.logical_path, winner, replica.location_id, replica,
                                  keep_losing=changed and not discard_losers))
    return updates
