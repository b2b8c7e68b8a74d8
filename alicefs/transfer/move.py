"""The journaled copy or move of replicas to another location (DESIGN.md §5): journal,
verified copy, record, and only then remove the replicas that go.

The steps are separate and blocking, so a caller that serves the file meanwhile (the mount)
can look between steps whether it changed and `abandon` the transfer instead: the copy goes
and every other replica stays. The journal steps take lists, so a caller moving many small
files commits once per batch instead of several times per file. A crash between any two
steps is finished or undone by `recovery.recover` (kinds `copy` and `move`), never by
deleting the last verified copy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from alicefs.backends.base import Backend, WriteResult
from alicefs.backends.local import CopyItem, LocalBackend
from alicefs.catalog import Catalog, JournalStart, Replica
from alicefs.transfer.copy import holds, verified_copy
from alicefs.transfer.journal import COPY, MOVE
from alicefs.transfer.pace import Pacer


@dataclass
class Transfer:
    """One file to copy from `source` to `target` and, for a move, the replicas that go once
    the copy is verified and recorded (`removes`: the source, and any other)."""

    key: str
    source: Backend
    target: Backend
    expected_hash: str  # the content being copied: what the copy must verify against
    mtime_ns: int | None = None  # kept by the copy
    removes: tuple[Backend, ...] = ()
    # False: the target held the content already (checked with `target_holds`); only the
    # removals are left to do, and recovery never deletes the target's replica
    copies: bool = True
    op_id: int | None = None  # its journal entry, once begun
    pacer: Pacer | None = None  # the bandwidth cap the copy keeps to

    @property
    def kind(self) -> str:
        return MOVE if self.removes else COPY

    def copy(self) -> WriteResult:
        """The verified copy, published under the key in the target (never replacing a file
        there: FileExistsError)."""
        return verified_copy(self.source, self.target, self.key,
                             expected_hash=self.expected_hash, mtime_ns=self.mtime_ns,
                             pacer=self.pacer)

    @property
    def copies_together(self) -> bool:
        """Whether this copy is cheaper made together with others between the same two
        locations (`copy_together`): local to local, not paced."""
        return (self.copies and self.pacer is None and isinstance(self.source, LocalBackend)
                and isinstance(self.target, LocalBackend))

    def target_holds(self) -> bool:
        return holds(self.target, self.key, self.expected_hash)

    def record_of(self, result: WriteResult) -> Replica:
        """The catalog row of the copy `copy` returned."""
        info = result.info
        return Replica(self.target.location.location_id, self.key, info.size, info.mtime_ns,
                       result.content_hash, info.inode, info.change_token, "present",
                       time.time())

    def remove(self) -> list[str]:
        """Delete the replicas that go (after `recorded`); returns their location ids."""
        for backend in self.removes:
            with contextlib.suppress(FileNotFoundError):
                backend.delete(self.key)
        return [backend.location.location_id for backend in self.removes]

    def abandon(self) -> None:
        """The file changed during the transfer: the copy goes, everything else stays."""
        with contextlib.suppress(FileNotFoundError):
            self.target.delete(self.key)


def copy_together(transfers: Sequence[Transfer]) -> list[WriteResult | Exception]:
    """The verified copies of several transfers between the same two local locations
    (`copies_together`), made durable together; per transfer its result or what it failed
    with."""
    first = transfers[0]
    assert isinstance(first.source, LocalBackend) and isinstance(first.target, LocalBackend)
    return first.target.copy_many_from(first.source, [
        CopyItem(t.key, t.expected_hash, t.mtime_ns) for t in transfers])


def begin(catalog: Catalog, transfers: Sequence[Transfer]) -> None:
    """Journal the transfers (one transaction) before anything is written."""
    for kind in (COPY, MOVE):
        batch = [t for t in transfers if t.kind == kind]
        starts = [JournalStart(t.key, t.source.location.location_id,
                               t.target.location.location_id, t.expected_hash,
                               {"remove_from": [b.location.location_id for b in t.removes],
                                "copied": t.copies})
                  for t in batch]
        for transfer, op_id in zip(batch, catalog.journal_begin_many(kind, starts),
                                   strict=True):
            transfer.op_id = op_id


def recorded(catalog: Catalog, transfers: Sequence[Transfer], rows: Sequence[Replica] = ()
             ) -> None:
    """Record the copies (`rows`; the mount records through its own queue and passes none)
    and note that from here the replicas that go may go: one transaction."""
    with catalog.transaction():
        catalog.put_replicas(rows)
        catalog.journal_step_many(_op_ids(transfers), "recorded")


def end(catalog: Catalog, transfers: Sequence[Transfer],
        removed: Sequence[tuple[str, str]] = ()) -> None:
    """Drop the rows of the replicas removed ((location id, key) pairs) and close the
    journal entries: one transaction."""
    with catalog.transaction():
        by_location: dict[str, list[str]] = {}
        for location_id, key in removed:
            by_location.setdefault(location_id, []).append(key)
        for location_id, keys in by_location.items():
            catalog.drop_replicas(location_id, keys)
        catalog.journal_end_many(_op_ids(transfers))


def _op_ids(transfers: Sequence[Transfer]) -> list[int]:
    assert all(t.op_id is not None for t in transfers), "begin() first"
    return [t.op_id for t in transfers if t.op_id is not None]
