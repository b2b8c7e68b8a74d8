"""Carrying sync updates out through `transfer.replace`: in batches (one logical path once
per batch), the copies of a batch in parallel under a capacity limiter, the journal begun,
recorded and closed with one commit per batch.

Outcomes per update: `updated`, `re-created`, `resolved` (a conflict's loser brought to the
winner, its version kept under `kept_as` unless discarded), `changed` (the target or the
source is no longer what was planned: nothing replaced; the next scan and run see it),
`busy` (open for writing or waiting for its upload in the mount that runs it), `failed`
(with the reason; recovered like a crash).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import trio

from alicefs.backends.base import IntegrityError, WriteResult
from alicefs.backends.threaded import ThreadedBackend
from alicefs.catalog import Catalog, Replica
from alicefs.migrate.plan import PlannedTransfer
from alicefs.migrate.run import (
    BATCH_BYTES,
    BATCH_FILES,
    BATCHES_AT_ONCE,
    BatchRun,
    Coordinator,
    ProgressSink,
)
from alicefs.sync.plan import SyncUpdate
from alicefs.transfer import replace as transfer
from alicefs.transfer.copy import content_hash_of
from alicefs.transfer.pace import Pacer
from alicefs.transfer.recovery import recover
from alicefs.transfer.replace import Replacement

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SyncOutcome:
    logical_path: str
    source_location_id: str
    target_location_id: str
    result: str  # updated | re-created | resolved | changed | busy | failed
    bytes: int = 0
    detail: str = ""
    kept_as: str | None = None  # where a conflict's losing version was kept


_DONE = {"update": "updated", "re-create": "re-created", "conflict": "resolved"}


async def run_updates(updates: Sequence[SyncUpdate], catalog: Catalog,
                      backends: Mapping[str, ThreadedBackend], *, when: datetime,
                      max_concurrent: int = 4, progress: ProgressSink | None = None,
                      pacer: Pacer | None = None, coordinator: Coordinator | None = None
                      ) -> tuple[SyncOutcome, ...]:
    """Carry out `updates` (sources and targets must be in `backends`); conflict copies are
    named with `when`. Returns one outcome per update, in order."""
    outcomes: dict[int, SyncOutcome] = {}
    done = [0, 0]
    limiter = trio.CapacityLimiter(max_concurrent)
    coordinator = coordinator or Coordinator()
    indexed = list(enumerate(updates))

    # Two batches at once: one's commits and slowest copies overlap the other's copies.
    # A file with several replicas to update is in several batches; the second waits for
    # the first's hold on it.
    batches_at_once = trio.Semaphore(BATCHES_AT_ONCE)

    async def run_batch(batch: list[tuple[int, SyncUpdate]]) -> None:
        async with batches_at_once:
            run = _Batch(catalog, backends, limiter, pacer, coordinator, when)
            for index, outcome in await run.run(batch):
                outcomes[index] = outcome
                done[0] += 1
                done[1] += outcome.bytes
            if progress is not None:
                progress(done[0], done[1])

    async with trio.open_nursery() as nursery:
        for batch in _batches(indexed):
            nursery.start_soon(run_batch, batch)
    return tuple(outcomes[i] for i in range(len(updates)))


def _batches(indexed: list[tuple[int, SyncUpdate]]) -> list[list[tuple[int, SyncUpdate]]]:
    batches: list[list[tuple[int, SyncUpdate]]] = []
    paths: list[set[str]] = []
    sizes: list[int] = []
    for index, update in indexed:
        size = update.source.size
        slot = next((i for i, taken in enumerate(paths)
                     if update.logical_path not in taken and len(batches[i]) < BATCH_FILES
                     and (sizes[i] + size <= BATCH_BYTES or not batches[i])), None)
        if slot is None:
            batches.append([])
            paths.append(set())
            sizes.append(0)
            slot = len(batches) - 1
        batches[slot].append((index, update))
        paths[slot].add(update.logical_path)
        sizes[slot] += size
    return batches


def _held(update: SyncUpdate) -> PlannedTransfer:
    """The update as the coordinator locks it: its source must not change meanwhile."""
    source = update.source
    return PlannedTransfer(update.logical_path, source.size, source.mtime_ns,
                           source.content_hash, source.location_id, update.target_location_id,
                           True, (), "sync")


class _Batch(BatchRun):
    def __init__(self, catalog: Catalog, backends: Mapping[str, ThreadedBackend],
                 limiter: trio.CapacityLimiter, pacer: Pacer | None, coordinator: Coordinator,
                 when: datetime):
        super().__init__(catalog, backends, limiter, pacer, coordinator)
        self.when = when
        self.outcomes: dict[int, SyncOutcome] = {}
        self.results: dict[int, WriteResult] = {}

    def _outcome(self, index: int, update: SyncUpdate, result: str, detail: str = "",
                 size: int = 0, kept_as: str | None = None) -> None:
        self.outcomes[index] = SyncOutcome(update.logical_path, update.source.location_id,
                                           update.target_location_id, result, size, detail,
                                           kept_as)
        if result == "failed":
            log.warning("syncing %s to %s: %s", update.logical_path,
                        update.target_location_id, detail)

    async def run(self, batch: list[tuple[int, SyncUpdate]]) -> list[tuple[int, SyncOutcome]]:
        held = {index: _held(update) for index, update in batch}
        async with self.coordinator.hold(list(held.values())) as busy:
            ready = []
            for index, update in batch:
                if update.logical_path in busy:
                    self._outcome(index, update, "busy", busy[update.logical_path])
                else:
                    ready.append((index, update))
            await self._run(ready, held)
        return [(index, self.outcomes[index]) for index, _ in batch]

    async def _run(self, batch: list[tuple[int, SyncUpdate]],
                   held: dict[int, PlannedTransfer]) -> None:
        replacements: dict[int, Replacement] = {}
        async with trio.open_nursery() as nursery:
            for index, update in batch:
                nursery.start_soon(self._prepare, index, update, replacements)
        ordered = [replacements[i] for i, _ in batch if i in replacements]
        await trio.to_thread.run_sync(transfer.begin, self.catalog, ordered)
        async with trio.open_nursery() as nursery:
            for index, update in batch:
                if index in replacements:
                    nursery.start_soon(self._replace, index, update, replacements[index])
        rows: list[Replica] = []
        for index, update in batch:  # no await: nothing changes in the mount meanwhile
            replacement = replacements.get(index)
            if replacement is None:
                continue
            kept_row = replacement.kept_row()
            if kept_row is not None:
                rows.append(kept_row)
                self.coordinator.appeared(held[index], kept_row)
            if index not in self.results:
                continue
            row = replacement.target_row(self.results[index])
            if not self.coordinator.replaced(held[index], row):
                # The source was written meanwhile: what was copied is older already.
                row = dataclasses.replace(row, state="stale")
                self._outcome(index, update, "changed", "written while it was copied: "
                                                       "brought level at the next run")
            rows.append(row)
        await self.coordinator.flush()
        finished = [r for i, r in replacements.items() if self.outcomes[i].result != "failed"]
        await trio.to_thread.run_sync(self._record, rows, finished)
        failed = {r.op_id for i, r in replacements.items()
                  if self.outcomes[i].result == "failed" and r.op_id is not None}
        if failed:
            # What was published, if anything, is decided from what the target holds,
            # exactly as after a crash.
            plain = {lid: tb.backend for lid, tb in self.backends.items()}
            await trio.to_thread.run_sync(lambda: recover(self.catalog, plain, only=failed))

    def _record(self, rows: list[Replica], finished: list[Replacement]) -> None:
        with self.catalog.transaction():
            self.catalog.put_replicas(rows)
            self.catalog.journal_end_many([r.op_id for r in finished if r.op_id is not None])

    async def _prepare(self, index: int, update: SyncUpdate,
                       replacements: dict[int, Replacement]) -> None:
        source = update.source
        expected = source.content_hash
        backend = self._backend(source.location_id)
        if expected is None:
            try:
                expected = await self._on(source.location_id, content_hash_of, backend,
                                          update.logical_path)
            except OSError as exc:
                self._outcome(index, update, "failed",
                              f"reading the source: {exc.strerror or exc}")
                return
        replacements[index] = Replacement(
            update.logical_path, backend, self._backend(update.target_location_id),
            str(expected), source.mtime_ns, update.replaced, update.keep_losing,
            pacer=self.pacer)

    async def _replace(self, index: int, update: SyncUpdate, replacement: Replacement
                       ) -> None:
        target = update.target_location_id
        try:
            if replacement.keep_losing:
                op_id = replacement.op_id
                assert op_id is not None
                await self._on(target, replacement.keep, self.when,
                               lambda name: self.catalog.journal_temp_key(op_id, name))
            result = await self._on(target, replacement.replace)
        except FileExistsError:
            self._outcome(index, update, "changed", "the replica there changed since it was "
                                                    "cataloged: not replaced (a scan shows it)")
            return
        except IntegrityError:
            self._outcome(index, update, "changed", "the source changed while it was copied: "
                                                    "nothing replaced")
            return
        except OSError as exc:
            if exc.errno == errno.ESTALE:
                self._outcome(index, update, "changed", "the source changed while it was "
                                                        "copied: nothing replaced")
            else:
                self._outcome(index, update, "failed", str(exc.strerror or exc))
            return
        self.results[index] = result
        kept_as = replacement.kept.key if replacement.kept is not None else None
        self._outcome(index, update, _DONE[update.reason], size=result.info.size,
                      kept_as=kept_as)
