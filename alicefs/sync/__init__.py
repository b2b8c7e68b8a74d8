"""Sync tracking (the guide's Sync Management, DESIGN.md §6): whether the replicas of each
file agree, which one is newer, conflicts and their resolution, and the queue that brings
replicas level. `state` classifies, `plan` decides (pure), `run` carries updates out
through the journaled, verified replacement of `transfer.replace`.

    tracker = SyncTracker(registry)
    conflicts = await tracker.detect_conflicts()
    result = await tracker.process_sync_queue()
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import trio

from alicefs.catalog import Catalog, Replica, SyncBase
from alicefs.errors import NotFoundError, UsageError, check_plain_callback
from alicefs.migrate import AutoMigrationService, CatalogFile, load_files
from alicefs.migrate.plan import file_attrs
from alicefs.migrate.run import ProgressSink
from alicefs.model import StorageLocation
from alicefs.registry import StorageRegistry
from alicefs.rules import LocationStatus, location_matches
from alicefs.scan import project_of
from alicefs.scanner import MultiPathScanner
from alicefs.sync.plan import (
    Decision,
    Strategy,
    SyncPlan,
    SyncUpdate,
    Wanted,
    decide,
    plan_sync,
    resolution,
)
from alicefs.sync.run import SyncOutcome, run_updates
from alicefs.sync.state import FileSync, ReplicaSync, SyncState, classify
from alicefs.transfer.journal import COPY, MOVE
from alicefs.transfer.pace import Pacer

__all__ = ["Decision", "FileSync", "ReplicaSync", "ResolutionResult", "Strategy",
           "SyncOutcome", "SyncPlan", "SyncReport", "SyncResult", "SyncState", "SyncTracker",
           "SyncUpdate"]


@dataclass(frozen=True)
class SyncReport:
    """The sync state of every file (of a project, when asked)."""

    files: tuple[FileSync, ...]

    def counts(self) -> dict[str, int]:
        """Files per state, every state listed."""
        found = Counter(f.state for f in self.files)
        return {state.value: found.get(state, 0) for state in SyncState}

    def in_state(self, state: SyncState) -> list[FileSync]:
        return [f for f in self.files if f.state is state]


@dataclass(frozen=True)
class SyncResult:
    plan: SyncPlan
    outcomes: tuple[SyncOutcome, ...]  # empty for a dry run
    dry_run: bool
    resolved: tuple[Decision, ...] = ()  # conflicts sync.auto_resolve decided

    def counts(self) -> dict[str, int]:
        """Updates per outcome, and `forgotten` missing replicas."""
        counts = dict(Counter(o.result for o in self.outcomes))
        if self.plan.forget and not self.dry_run:
            counts["forgotten"] = len(self.plan.forget)
        return counts

    @property
    def failed(self) -> tuple[SyncOutcome, ...]:
        return tuple(o for o in self.outcomes if o.result == "failed")


@dataclass(frozen=True)
class ResolutionResult:
    decisions: tuple[Decision, ...]
    updates: tuple[SyncUpdate, ...]
    outcomes: tuple[SyncOutcome, ...]  # empty for a dry run or when nothing was decided
    dry_run: bool

    @property
    def failed(self) -> tuple[SyncOutcome, ...]:
        return tuple(o for o in self.outcomes if o.result == "failed")


class SyncTracker:
    """Sync against one catalog (the guide's `SyncTracker(registry)`). Backends, the
    coordinator of a mount that serves the files, and the one-run-at-a-time lock are the
    migration service's: sync and migration never move the same file at once."""

    def __init__(self, registry: StorageRegistry | Catalog,
                 scanner: MultiPathScanner | None = None, *,
                 migration: AutoMigrationService | None = None):
        self.registry = (registry if isinstance(registry, StorageRegistry)
                         else StorageRegistry(registry))
        self.catalog = self.registry.catalog
        self.migration = migration or AutoMigrationService(self.catalog, self.registry,
                                                           scanner)

    # -- what the states are ---------------------------------------------------------------

    async def report(self, project: str | None = None) -> SyncReport:
        """The state of every file with content (of `project`), from the catalog alone."""
        files, bases, uploading = await trio.to_thread.run_sync(self._load, project)
        return _classified(files, bases, uploading)

    async def detect_conflicts(self, project: str | None = None) -> list[FileSync]:
        """Files whose replicas changed independently to different content."""
        return (await self.report(project)).in_state(SyncState.CONFLICT)

    def _load(self, project: str | None
              ) -> tuple[list[CatalogFile], dict[str, SyncBase], dict[str, list[str]]]:
        files = [f for f in load_files(self.catalog)
                 if project is None or project_of(f.logical_path) == project]
        uploading: dict[str, list[str]] = {}
        for entry in self.catalog.journal_open():
            if entry.kind in (COPY, MOVE) and entry.target_location_id is not None:
                uploading.setdefault(entry.logical_path, []).append(entry.target_location_id)
        return files, self.catalog.sync_bases(), uploading

    async def _current_report(self, usable: frozenset[str], project: str | None = None, *,
                              record: bool = True) -> SyncReport:
        """`report`, after hashing the replicas of files with several whose hash is not
        known (on reachable locations): what sync acts on must not rest on a guess. The
        hashes found go to the catalog when `record`."""
        files, bases, uploading = await trio.to_thread.run_sync(self._load, project)
        files = await self.migration.compared_files(usable, record, files)
        if record:
            # Bases settled by the hashes just recorded.
            bases = await trio.to_thread.run_sync(self.catalog.sync_bases)
        return _classified(files, bases, uploading)

    # -- the queue -------------------------------------------------------------------------

    async def plan(self, project: str | None = None) -> SyncPlan:
        locations, _, usable = await self.migration.reachable()
        report = await self._current_report(usable, project)
        return plan_sync(report.files, _wanted(self.catalog, locations), usable)

    async def process_sync_queue(self, *, dry_run: bool = False, project: str | None = None,
                                 max_concurrent: int = 4, progress: ProgressSink | None = None,
                                 bandwidth: int | None = None,
                                 auto_resolve: Mapping[str, str] | None = None
                                 ) -> SyncResult:
        """Bring every replica that is behind to its file's current version, re-create
        missing replicas where the rules want them and forget the others. `auto_resolve`:
        project -> strategy (or "off") for conflicts decided without asking, "*" for every
        other project (settings.yaml `storage.sync`); nothing is written for a dry run."""
        check_plain_callback(progress, "progress")
        async with self.migration.running:
            locations, _, usable = await self.migration.reachable()
            report = await self._current_report(usable, project, record=not dry_run)
            decisions = _auto_decisions(report, auto_resolve or {}, locations)
            plan = plan_sync(report.files, _wanted(self.catalog, locations), usable)
            resolving = [u for d in decisions for u in resolution(d)
                         if u.target_location_id in usable
                         and u.source.location_id in usable]
            plan = SyncPlan(tuple(resolving) + plan.updates, plan.forget, tuple(
                s for s in plan.skipped
                if s.logical_path not in {d.file.logical_path for d in decisions}))
            if dry_run:
                return SyncResult(plan, (), True, tuple(decisions))
            outcomes = await self._carry_out(plan.updates, max_concurrent, progress,
                                             bandwidth)
            for replica in plan.forget:
                self.migration.coordinator.dropped(replica.location_id, replica.logical_path)
            await self.migration.coordinator.flush()
            await trio.to_thread.run_sync(self._forget, plan.forget)
        return SyncResult(plan, outcomes, False, tuple(decisions))

    def _forget(self, replicas: Sequence[Replica]) -> None:
        by_location: dict[str, list[str]] = {}
        for replica in replicas:
            by_location.setdefault(replica.location_id, []).append(replica.logical_path)
        with self.catalog.transaction():
            for location_id, paths in by_location.items():
                self.catalog.drop_replicas(location_id, paths)
            self.catalog.settle_sync_bases([r.logical_path for r in replicas])

    async def _carry_out(self, updates: Sequence[SyncUpdate], max_concurrent: int,
                         progress: ProgressSink | None, bandwidth: int | None
                         ) -> tuple[SyncOutcome, ...]:
        outcomes = await run_updates(
            updates, self.catalog, self.migration.backends, when=datetime.now(),
            max_concurrent=max_concurrent, progress=progress,
            pacer=Pacer(bandwidth) if bandwidth else None,
            coordinator=self.migration.coordinator)
        await self.migration.coordinator.flush()
        await trio.to_thread.run_sync(self.catalog.settle_sync_bases,
                                      sorted({u.logical_path for u in updates}))
        return outcomes

    # -- conflicts -------------------------------------------------------------------------

    async def resolve_conflict(self, which: str | None, strategy: Strategy | str, *,
                               keep: str | None = None, discard_losers: bool = False,
                               dry_run: bool = False, max_concurrent: int = 4
                               ) -> ResolutionResult:
        """Decide the conflicts `which` names (a content hash, or a prefix of one, of a
        competing version; or a logical path; None: every conflict) with `strategy`, and
        unless `dry_run` bring every replica to the winning version, keeping the losing
        ones under conflict names unless `discard_losers`. `keep`: the winning location's
        id or name (manual). Files not in conflict are NotFoundError."""
        strategy = Strategy(strategy)
        keep_id = None
        if keep is not None:
            keep_id = (await trio.to_thread.run_sync(self.registry.get_location,
                                                     keep)).location_id
        async with self.migration.running:
            locations, _, usable = await self.migration.reachable()
            conflicts = (await self._current_report(usable, record=not dry_run)).in_state(
                SyncState.CONFLICT)
            chosen = _select(conflicts, which)
            priorities = {loc.location_id: loc.priority for loc in locations}
            decisions = tuple(decide(f, strategy, priorities, keep_id) for f in chosen)
            updates = tuple(u for d in decisions
                            for u in resolution(d, discard_losers=discard_losers))
            unreachable = [u for u in updates if u.target_location_id not in usable
                           or u.source.location_id not in usable]
            if unreachable:
                raise UsageError(f"{unreachable[0].logical_path}: a location holding a "
                                 "version is not reachable now; nothing decided")
            if dry_run or not updates:
                return ResolutionResult(decisions, updates, (), dry_run)
            outcomes = await self._carry_out(updates, max_concurrent, None, None)
        return ResolutionResult(decisions, updates, outcomes, False)


def _classified(files: Sequence[CatalogFile], bases: Mapping[str, SyncBase],
                uploading: Mapping[str, Sequence[str]]) -> SyncReport:
    return SyncReport(tuple(classify(f.logical_path, f.replicas, bases.get(f.logical_path),
                                     uploading.get(f.logical_path, ()))
                            for f in files))


def _select(conflicts: list[FileSync], which: str | None) -> list[FileSync]:
    if which is None:
        return conflicts
    by_path = [f for f in conflicts if f.logical_path == which]
    if by_path:
        return by_path
    text = which.lower()
    by_hash = [f for f in conflicts
               if len(text) >= 6 and any((c.content_hash or "").startswith(text)
                                         for c in f.candidates)]
    if by_hash:
        return by_hash
    raise NotFoundError(f"no conflict with the path or content hash {which!r} "
                        "(sync-status --state conflict lists them)")


def _wanted(catalog: Catalog, locations: Sequence[StorageLocation]) -> Wanted:
    """Whether a location should hold a file: active, and its rules match the file."""
    policies = {loc.location_id: loc for loc in locations}
    meta = catalog.all_metadata()
    now = time.time()

    def wanted(file: FileSync, location_id: str) -> bool:
        policy = policies.get(location_id)
        source = file.current
        if policy is None or source is None or policy.status is not LocationStatus.ACTIVE:
            return False
        attrs = file_attrs(CatalogFile(file.logical_path, (source,),
                                       meta.get(file.logical_path)), source)
        return location_matches(policy, attrs, now)

    return wanted


def _auto_decisions(report: SyncReport, auto_resolve: Mapping[str, str],
                    locations: Sequence[StorageLocation]) -> list[Decision]:
    priorities = {loc.location_id: loc.priority for loc in locations}
    decisions = []
    for file in report.in_state(SyncState.CONFLICT):
        strategy = auto_resolve.get(project_of(file.logical_path), auto_resolve.get("*"))
        if strategy not in (None, "off", Strategy.MANUAL):
            decision = decide(file, Strategy(strategy), priorities)
            if decision.winner is not None:
                decisions.append(decision)
    return decisions
