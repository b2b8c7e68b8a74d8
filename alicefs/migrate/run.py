"""Running a migration plan: the transfers of `plan.py` through the move protocol
(`transfer.move`), in batches, in parallel under the locations' capacity limiters.

A batch of small files is journaled, recorded and closed with one commit each (a commit
costs ~3 ms; one per step and file would cap migration at tens of files a second); large
files go one per batch. Within a batch the copies run in parallel.

Outcomes per file: `copied`, `moved`, `already there` (the target held the same content:
recorded, and for a move the sources go), `conflict` (a different file is at the target:
both kept, nothing removed), `busy` (open for writing or waiting for its upload in the mount
that runs the plan: left for the next run), `failed` (with the reason; nothing published,
or recovered like a crash). A replica that changed after it was planned is never removed.

A mount that runs a plan serves the files while they move: its `Coordinator` locks each
batch's files against renames, unlinks and uploads, and switches what it shows to the new
replica the moment the copy is verified — before any source goes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import trio

from alicefs.backends.base import Backend, IntegrityError, WriteResult
from alicefs.backends.threaded import ThreadedBackend
from alicefs.catalog import Catalog, Replica
from alicefs.migrate.plan import MigrationPlan, PlannedTransfer
from alicefs.transfer import move as transfer
from alicefs.transfer.copy import content_hash_of
from alicefs.transfer.move import Transfer
from alicefs.transfer.pace import Pacer
from alicefs.transfer.recovery import recover

log = logging.getLogger(__name__)
T = TypeVar("T")

BATCH_FILES = 256
BATCH_BYTES = 64 << 20
# Below this size local-to-local copies are made in groups (`transfer.copy_together`):
# for small files durability, not the copy, is the cost.
SMALL_FILE_BYTES = 8 << 20
BATCHES_AT_ONCE = 2


@dataclass(frozen=True)
class Outcome:
    logical_path: str
    source_location_id: str
    target_location_id: str
    result: str  # copied | moved | already there | conflict | busy | failed
    bytes: int = 0  # copied
    detail: str = ""


#: Called with (files done, bytes done) as transfers finish.
ProgressSink = Callable[[int, int], None]


class Coordinator:
    """How the process that serves the files while they move keeps them consistent. This
    one is for a process that serves nothing (alicefs-ctl with no mount running); the
    mount has its own (`alicefs.fs.migration`)."""

    def may_use(self, location_id: str) -> bool:
        """Whether transfers may read or write this location now."""
        return True

    @contextlib.asynccontextmanager
    async def hold(self, entries: Sequence[PlannedTransfer]) -> AsyncIterator[dict[str, str]]:
        """Keep a batch's files from being renamed, unlinked or uploaded until it ends;
        yields the paths that must not move now, each with why."""
        yield {}

    def settle(self, entry: PlannedTransfer, row: Replica) -> list[str] | None:
        """The copy `row` is verified (called without awaiting anything in between, so
        nothing can change meanwhile). None when the file changed since `hold`: then the
        copy must go and nothing else. Otherwise what is served is now `row`, and the
        result is which of `entry.remove_from` may be deleted now."""
        return [r.location_id for r in entry.remove_from]

    async def flush(self) -> None:
        """Write what `settle`, `replaced`, `appeared` and `dropped` changed to the
        catalog."""

    def replaced(self, entry: PlannedTransfer, row: Replica) -> bool:
        """Sync replaced the content of a replica of a held file by the source's (`row`,
        called without awaiting anything since the copy was published). True when the file
        did not change since `hold`: `row` is now a current replica. False when it was
        written meanwhile: `row` must be shown as an older version."""
        return True

    def appeared(self, entry: PlannedTransfer, row: Replica) -> None:
        """Sync made a new file: `row`, the conflict copy of the losing version of the held
        file `entry`. Show it."""

    def dropped(self, location_id: str, logical_path: str) -> None:
        """Sync forgot a missing replica no rule wants: stop showing it."""

    def kept(self, entry: PlannedTransfer, location_id: str) -> None:
        """A replica `settle` let go was not deleted after all: it changed since it was
        planned, or deleting it failed (its catalog row stays; the caller must keep
        showing it somehow)."""


async def run_plan(plan: MigrationPlan, catalog: Catalog,
                   backends: Mapping[str, ThreadedBackend], *, max_concurrent: int = 4,
                   progress: ProgressSink | None = None, pacer: Pacer | None = None,
                   coordinator: Coordinator | None = None) -> tuple[Outcome, ...]:
    """Carry out `plan` (every transfer's source, target and removals must be in
    `backends`), copying no faster than `pacer` allows; returns one outcome per transfer,
    in plan order."""
    outcomes: dict[str, Outcome] = {}
    done = [0, 0]
    limiter = trio.CapacityLimiter(max_concurrent)
    # Two batches at once: one's commits and syncs overlap the other's copies.
    batches_at_once = trio.Semaphore(BATCHES_AT_ONCE)
    coordinator = coordinator or Coordinator()

    async def run_batch(batch: list[PlannedTransfer]) -> None:
        async with batches_at_once:
            run = _Batch(catalog, backends, limiter, pacer, coordinator)
            for outcome in await run.run(batch):
                outcomes[outcome.logical_path] = outcome
                done[0] += 1
                done[1] += outcome.bytes
            if progress is not None:
                progress(done[0], done[1])

    async with trio.open_nursery() as nursery:
        for batch in _batches(plan.transfers):
            nursery.start_soon(run_batch, batch)
    return tuple(outcomes[t.logical_path] for t in plan.transfers)


def _batches(transfers: Sequence[PlannedTransfer]) -> list[list[PlannedTransfer]]:
    batches: list[list[PlannedTransfer]] = []
    size = 0
    for entry in transfers:
        if not batches or len(batches[-1]) >= BATCH_FILES or size + entry.size > BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += entry.size
    return batches


class BatchRun:
    """What one batch of transfers (migration's or sync's) runs with: the catalog, the
    backends, the limiter all the run's transfers share, the bandwidth cap and the
    coordinator of the process serving the files."""

    def __init__(self, catalog: Catalog, backends: Mapping[str, ThreadedBackend],
                 limiter: trio.CapacityLimiter, pacer: Pacer | None,
                 coordinator: Coordinator):
        self.catalog = catalog
        self.backends = backends
        self.limiter = limiter
        self.pacer = pacer
        self.coordinator = coordinator

    def _backend(self, location_id: str) -> Backend:
        return self.backends[location_id].backend

    async def _on(self, location_id: str, func: Callable[..., T], *args: Any) -> T:
        """`func(*args)` in the location's worker threads, within the run's limit."""
        async with self.limiter:
            return await self.backends[location_id].run(func, *args)


class _Batch(BatchRun):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.outcomes: dict[str, Outcome] = {}
        self.rows: list[Replica] = []
        self.removed: list[tuple[str, str]] = []

    async def run(self, entries: list[PlannedTransfer]) -> list[Outcome]:
        async with self.coordinator.hold(entries) as busy:
            for entry in entries:
                if entry.logical_path in busy:
                    self._fail(entry, "busy", busy[entry.logical_path])
            await self._run([e for e in entries if e.logical_path not in busy])
        return [self.outcomes[e.logical_path] for e in entries]

    async def _run(self, entries: list[PlannedTransfer]) -> None:
        transfers: dict[str, Transfer] = {}
        async with trio.open_nursery() as nursery:
            for entry in entries:
                nursery.start_soon(self._prepare, entry, transfers)
        await trio.to_thread.run_sync(transfer.begin, self.catalog, list(transfers.values()))
        copied: dict[str, Transfer] = {}
        await self._copy_all(entries, transfers, copied)
        removable, abandoned = self._settle(entries, copied)
        async with trio.open_nursery() as nursery:
            for move in abandoned:
                if move.copies:
                    nursery.start_soon(self._on, move.target.location.location_id,
                                       move.abandon)
        await self.coordinator.flush()
        settled = set(copied) | {t.key for t in abandoned}
        failed = [t for key, t in transfers.items() if key not in settled]
        await trio.to_thread.run_sync(transfer.recorded, self.catalog, list(copied.values()),
                                      [row for row in self.rows if row.logical_path in copied])
        async with trio.open_nursery() as nursery:
            for entry in entries:
                if entry.logical_path in copied:
                    nursery.start_soon(self._remove, entry, copied[entry.logical_path],
                                       removable[entry.logical_path])
        await trio.to_thread.run_sync(transfer.end, self.catalog,
                                      [*copied.values(), *abandoned], self.removed)
        if failed:
            # Nothing of ours published, or not known: decided from what the targets hold,
            # exactly as after a crash.
            plain = {lid: tb.backend for lid, tb in self.backends.items()}
            await trio.to_thread.run_sync(lambda: recover(
                self.catalog, plain, only={t.op_id for t in failed if t.op_id is not None}))

    def _settle(self, entries: list[PlannedTransfer], copied: dict[str, Transfer]
                ) -> tuple[dict[str, list[str]], list[Transfer]]:
        """Let the coordinator switch to the copies (no await: nothing changes meanwhile).
        Returns the replicas each may remove, and the transfers of files written during
        their copy: those keep their sources, and a copy this run made goes (it is older
        than the sources now)."""
        rows = {row.logical_path: row for row in self.rows}
        removable: dict[str, list[str]] = {}
        abandoned: list[Transfer] = []
        for entry in entries:
            if entry.logical_path not in copied:
                continue
            settled = self.coordinator.settle(entry, rows[entry.logical_path])
            if settled is None:
                abandoned.append(copied.pop(entry.logical_path))
                self._fail(entry, "busy", "written while it was copied: the source kept, "
                                          "moved at the next run")
            else:
                removable[entry.logical_path] = settled
        return removable, abandoned

    def _fail(self, entry: PlannedTransfer, result: str, detail: str) -> None:
        self.outcomes[entry.logical_path] = Outcome(
            entry.logical_path, entry.source_location_id, entry.target_location_id, result,
            detail=detail)
        if result == "failed":
            log.warning("migrating %s: %s", entry.logical_path, detail)

    async def _prepare(self, entry: PlannedTransfer, transfers: dict[str, Transfer]) -> None:
        expected = entry.content_hash
        if expected is None:
            try:
                expected = await self._on(entry.source_location_id, content_hash_of,
                                          self._backend(entry.source_location_id),
                                          entry.logical_path)
            except OSError as exc:
                self._fail(entry, "failed", f"reading the source: {exc.strerror or exc}")
                return
        transfers[entry.logical_path] = Transfer(
            entry.logical_path, self._backend(entry.source_location_id),
            self._backend(entry.target_location_id), str(expected), entry.mtime_ns,
            removes=tuple(self._backend(r.location_id) for r in entry.remove_from),
            copies=entry.copy, pacer=self.pacer)

    async def _copy_all(self, entries: list[PlannedTransfer],
                        transfers: dict[str, Transfer], copied: dict[str, Transfer]) -> None:
        """Every copy of the batch, in parallel: small ones between two local locations
        in a few groups (made durable together), the others one by one."""
        together: dict[tuple[str, str], list[PlannedTransfer]] = {}
        async with trio.open_nursery() as nursery:
            for entry in entries:
                move = transfers.get(entry.logical_path)
                if move is None:
                    continue
                if move.copies_together and entry.size < SMALL_FILE_BYTES:
                    pair = (entry.source_location_id, entry.target_location_id)
                    together.setdefault(pair, []).append(entry)
                else:
                    nursery.start_soon(self._copy, entry, move, copied)
            for group in together.values():
                # As many groups as transfers may run at once, none very small: while one
                # waits for its syncfs, the others read.
                count = max(1, min(int(self.limiter.total_tokens), len(group) // 16))
                for part in (group[i::count] for i in range(count)):
                    nursery.start_soon(self._copy_group, part, transfers, copied)

    async def _copy_group(self, entries: list[PlannedTransfer],
                          transfers: dict[str, Transfer], copied: dict[str, Transfer]) -> None:
        moves = [transfers[e.logical_path] for e in entries]
        results = await self._on(entries[0].target_location_id, transfer.copy_together, moves)
        for entry, move, result in zip(entries, moves, results, strict=True):
            await self._conclude(entry, move, result, copied)

    async def _copy(self, entry: PlannedTransfer, move: Transfer,
                    copied: dict[str, Transfer]) -> None:
        if not entry.copy:
            if await self._on(entry.target_location_id, move.target_holds):
                await self._conclude(entry, move, None, copied)
            else:
                self._fail(entry, "failed", "the target no longer holds the current version")
            return
        result: WriteResult | Exception
        try:
            result = await self._on(entry.target_location_id, move.copy)
        except (OSError, IntegrityError) as exc:
            result = exc
        await self._conclude(entry, move, result, copied)

    async def _conclude(self, entry: PlannedTransfer, move: Transfer,
                        result: WriteResult | Exception | None,
                        copied: dict[str, Transfer]) -> None:
        """The outcome of a copy: `result` is what the copy returned or raised (None: the
        target held the content already)."""
        target = entry.target_location_id
        if isinstance(result, FileExistsError):
            if not await self._on(target, move.target_holds):
                self._fail(entry, "conflict", f"a different file is at {entry.logical_path} "
                                              "in the target: both kept")
                return
            result = None
        if isinstance(result, IntegrityError):
            self._fail(entry, "failed", "the source changed while it was copied; nothing "
                                        "published, the source kept")
            return
        if isinstance(result, OSError):
            if result.errno == errno.ESTALE:
                self._fail(entry, "failed", "the source changed while it was copied")
            else:
                self._fail(entry, "failed", str(result.strerror or result))
            return
        if isinstance(result, Exception):
            raise result  # not a failure of the copy: a bug
        if result is not None:
            self.rows.append(move.record_of(result))
            outcome = "moved" if entry.remove_from else "copied"
            size = result.info.size
        else:
            info = await self._on(target, move.target.stat, entry.logical_path)
            self.rows.append(Replica(target, entry.logical_path, info.size, info.mtime_ns,
                                     move.expected_hash, info.inode, info.change_token))
            outcome, size = "already there", 0
        self.outcomes[entry.logical_path] = Outcome(
            entry.logical_path, entry.source_location_id, target, outcome, size)
        copied[entry.logical_path] = move

    async def _remove(self, entry: PlannedTransfer, move: Transfer, removable: list[str]
                      ) -> None:
        kept = []
        for row in entry.remove_from:
            backend = self._backend(row.location_id)
            if row.location_id not in removable:
                kept.append(f"{self.backends[row.location_id].location.name} (being read; "
                            "removed at the next run)")
                continue
            try:
                if await self._on(row.location_id, _unchanged, backend, row, move.expected_hash):
                    await self._on(row.location_id, _delete, backend, entry.logical_path)
                    self.removed.append((row.location_id, entry.logical_path))
                    continue
                kept.append(self.backends[row.location_id].location.name)
            except OSError as exc:
                kept.append(f"{self.backends[row.location_id].location.name} "
                            f"({exc.strerror or exc})")
            self.coordinator.kept(entry, row.location_id)
        if kept:
            previous = self.outcomes[entry.logical_path]
            self.outcomes[entry.logical_path] = Outcome(
                previous.logical_path, previous.source_location_id,
                previous.target_location_id, previous.result, previous.bytes,
                f"kept in {', '.join(kept)}: changed since planned, or not removable")


def _unchanged(backend: Backend, row: Replica, expected_hash: str) -> bool:
    """Whether a replica about to be removed still is the content that was copied: by its
    hash metadata when the store has it, else by size and mtime as cataloged (reading a
    whole file again only to delete it would double the cost of every move)."""
    try:
        info = backend.stat(row.logical_path)
    except FileNotFoundError:
        return True  # gone already: nothing to keep
    if info.content_hash is not None:
        return info.content_hash == expected_hash
    return (info.size, info.mtime_ns) == (row.size, row.mtime_ns)


def _delete(backend: Backend, key: str) -> None:
    try:
        backend.delete(key)
    except FileNotFoundError:
        return
