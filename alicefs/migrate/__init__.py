"""Tier migration and consolidation (the guide's Auto-Migration): `plan` decides, pure;
`run` carries a plan out through the move protocol; `AutoMigrationService` is the guide's
Python API over both, awaited under trio.

    service = AutoMigrationService(catalog, registry, scanner)
    result = await service.run_auto_migration(dry_run=True)
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from dataclasses import dataclass

import trio

from alicefs import lazy_hash
from alicefs.backends import open_backend
from alicefs.backends.base import LocationUnavailableError
from alicefs.backends.threaded import ThreadedBackend
from alicefs.catalog import Catalog
from alicefs.errors import check_plain_callback
from alicefs.migrate.plan import (
    CatalogFile,
    MigrationPlan,
    PlannedTransfer,
    Skipped,
    plan_consolidation,
    plan_migration,
)
from alicefs.migrate.run import Coordinator, Outcome, ProgressSink, run_plan
from alicefs.model import StorageLocation
from alicefs.registry import StorageRegistry
from alicefs.rules import LocationStatus, SpaceInfo
from alicefs.scanner import MultiPathScanner
from alicefs.transfer.journal import JournaledPartialUploads
from alicefs.transfer.pace import Pacer
from alicefs.transfer.recovery import recover

__all__ = ["AutoMigrationService", "CatalogFile", "Coordinator", "MigrationPlan",
           "MigrationResult", "Outcome", "PlannedTransfer", "Skipped", "load_files"]


@dataclass(frozen=True)
class MigrationResult:
    plan: MigrationPlan
    outcomes: tuple[Outcome, ...]  # empty for a dry run
    dry_run: bool

    def counts(self) -> dict[str, int]:
        """Files per outcome (copied, moved, already there, conflict, failed)."""
        return dict(Counter(o.result for o in self.outcomes))

    @property
    def failed(self) -> tuple[Outcome, ...]:
        return tuple(o for o in self.outcomes if o.result == "failed")


def load_files(catalog: Catalog, *, hard_links: bool = True) -> list[CatalogFile]:
    """Every cataloged file with content, with its replicas and metadata (blocking; bulk
    reads). Symbolic links and special files made through the mount stay where they are;
    so do hard links, unless `hard_links` (sync brings their copies level)."""
    staying = catalog.contentless_paths()
    if not hard_links:
        staying |= catalog.hard_linked_paths()
    by_path: dict[str, list] = {}
    for replica in catalog.replicas():
        if replica.logical_path not in staying:
            by_path.setdefault(replica.logical_path, []).append(replica)
    meta = catalog.all_metadata()
    return [CatalogFile(path, tuple(replicas), meta.get(path))
            for path, replicas in by_path.items()]


class AutoMigrationService:
    """Migration and consolidation against one catalog. Backends are the scanner's (the
    process's one pool: the mount's, when it runs there), opened here when missing. A
    `coordinator` is how a process serving the files (the mount) keeps them consistent
    while they move. One run at a time: a second waits for the first."""

    def __init__(self, catalog: Catalog, registry: StorageRegistry | None = None,
                 scanner: MultiPathScanner | None = None, *, skip_hidden: bool = True,
                 coordinator: Coordinator | None = None):
        self.catalog = catalog
        if registry is not None:
            registry.attach(catalog)
        self.registry = registry or StorageRegistry(catalog)
        self.skip_hidden = scanner.skip_hidden if scanner is not None else skip_hidden
        self.backends: dict[str, ThreadedBackend] = (
            scanner.backends if scanner is not None else {})
        self.coordinator = coordinator or Coordinator()
        # One run that moves data at a time (migrations and sync alike): a second waits.
        self.running = trio.Lock()

    async def reachable(self) -> tuple[list[StorageLocation], dict[str, SpaceInfo | None],
                                       frozenset[str]]:
        """The locations, their free space and which are reachable now (opened if needed)."""
        locations = await trio.to_thread.run_sync(self.registry.list_locations)
        space: dict[str, SpaceInfo | None] = {}
        usable = set()
        for location in locations:
            if (location.status is LocationStatus.OFFLINE
                    or not self.coordinator.may_use(location.location_id)):
                continue
            tb = self.backends.get(location.location_id)
            if tb is None:
                try:
                    backend = open_backend(location, skip_hidden=self.skip_hidden)
                except LookupError:
                    continue
                # Multipart uploads a kill leaves behind are aborted by the next recovery.
                backend.partial_uploads = JournaledPartialUploads(self.catalog)
                tb = ThreadedBackend(backend)
                self.backends[location.location_id] = tb
            try:
                await tb.call("probe")
                space[location.location_id] = await tb.call("free_space")
            except (LocationUnavailableError, OSError):
                continue
            usable.add(location.location_id)
        return locations, space, frozenset(usable)

    async def plan(self, *, move: bool = False, project: str | None = None,
                   limit_files: int | None = None, limit_bytes: int | None = None,
                   record_hashes: bool = True) -> MigrationPlan:
        """What a migration would do now. Replicas whose hash is not known yet are hashed
        first where a file has several (alicefs.lazy_hash), and recorded when
        `record_hashes`."""
        locations, space, usable = await self.reachable()
        files = await self.compared_files(usable, record_hashes)
        return plan_migration(files, locations, space, time.time(), move=move,
                              project=project, limit_files=limit_files,
                              limit_bytes=limit_bytes, usable=usable)

    async def consolidation_plan(self, project: str, target: str, *, move: bool = False,
                                 record_hashes: bool = True) -> MigrationPlan:
        """The plan that gathers `project` into the location `target` (id or name)."""
        destination = await trio.to_thread.run_sync(self.registry.get_location, target)
        _, space, usable = await self.reachable()
        if destination.location_id not in usable:
            raise LocationUnavailableError(f"{destination.name} is not reachable now")
        files = await self.compared_files(usable, record_hashes)
        return plan_consolidation(files, project, destination, space, move=move,
                                  usable=usable)

    async def compared_files(self, usable: frozenset[str], record_hashes: bool,
                             files: list[CatalogFile] | None = None) -> list[CatalogFile]:
        """`files` (default: every cataloged file with content that may move: no hard
        links), with the hashes their replicas need to be compared: without them, two
        replicas of one size could pass for the same content."""
        if files is None:
            files = await trio.to_thread.run_sync(
                functools.partial(load_files, self.catalog, hard_links=False))
        hashed = await lazy_hash.hash_replicas(lazy_hash.to_compare(files, usable),
                                               self.backends)
        if record_hashes:
            await lazy_hash.record(self.catalog, hashed)
        return lazy_hash.with_hashes(files, hashed)

    async def hash_possible_duplicates(self) -> int:
        """Hash the replicas that could hold a content stored elsewhere too (those without a
        hash whose size another replica has, on reachable locations) and record what was
        found, so the catalog's duplicate groups are complete. Returns how many."""
        _, _, usable = await self.reachable()
        contentless = await trio.to_thread.run_sync(self.catalog.contentless_paths)
        replicas = [r for r in await trio.to_thread.run_sync(self.catalog.replicas)
                    if r.logical_path not in contentless]
        hashed = await lazy_hash.hash_replicas(
            lazy_hash.duplicate_candidates(replicas, usable), self.backends)
        await lazy_hash.record(self.catalog, hashed)
        return len(hashed)

    async def carry_out(self, plan: MigrationPlan, *, max_concurrent: int = 4,
                        progress: ProgressSink | None = None, bandwidth: int | None = None
                        ) -> MigrationResult:
        """Carry `plan` out, at most `max_concurrent` transfers at once and, with
        `bandwidth`, at most that many bytes per second in all."""
        check_plain_callback(progress, "progress")
        pacer = Pacer(bandwidth) if bandwidth else None
        async with self.running:
            outcomes = await run_plan(plan, self.catalog, self.backends,
                                      max_concurrent=max_concurrent, progress=progress,
                                      pacer=pacer, coordinator=self.coordinator)
            # The copies agree with their sources: that content is the files' base now.
            await trio.to_thread.run_sync(self.catalog.settle_sync_bases,
                                          [t.logical_path for t in plan.transfers])
        return MigrationResult(plan, outcomes, False)

    async def run_auto_migration(self, dry_run: bool = False, *, move: bool = False,
                                 project: str | None = None, max_concurrent: int = 4,
                                 limit_files: int | None = None,
                                 limit_bytes: int | None = None,
                                 progress: ProgressSink | None = None,
                                 bandwidth: int | None = None) -> MigrationResult:
        """Plan, and unless `dry_run` carry the plan out (nothing is written for a dry
        run, not even to the catalog)."""
        plan = await self.plan(move=move, project=project, limit_files=limit_files,
                               limit_bytes=limit_bytes, record_hashes=not dry_run)
        if dry_run:
            return MigrationResult(plan, (), True)
        return await self.carry_out(plan, max_concurrent=max_concurrent, progress=progress,
                                    bandwidth=bandwidth)

    async def consolidate(self, project: str, target: str, *, move: bool = False,
                          dry_run: bool = False, max_concurrent: int = 4,
                          progress: ProgressSink | None = None,
                          bandwidth: int | None = None) -> MigrationResult:
        """Gather `project` into the location `target` (id or name)."""
        plan = await self.consolidation_plan(project, target, move=move,
                                             record_hashes=not dry_run)
        if dry_run:
            return MigrationResult(plan, (), True)
        return await self.carry_out(plan, max_concurrent=max_concurrent, progress=progress,
                                    bandwidth=bandwidth)

    async def recover(self) -> list[str]:
        """Finish or undo what a killed run left half done (the journal), on the locations
        reachable now. Only for the process that owns the catalog, before it transfers."""
        _, _, usable = await self.reachable()
        plain = {lid: self.backends[lid].backend for lid in usable}
        return await trio.to_thread.run_sync(recover, self.catalog, plain)
