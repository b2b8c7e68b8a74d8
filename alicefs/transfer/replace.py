"""Bringing one replica to another's content (sync, DESIGN.md §6): the journaled, verified
replacement of a replica that holds an older or a losing version, or the re-creation of a
missing one.

Steps: journal (kind `update`: the content expected, and what the target held), keep the
losing version of a conflict under its conflict name (a hard link on local locations, a
server-side copy on object stores; each name tried goes to the journal as `temp_key`
first), copy the new content under a temporary name and verify it, publish it only while
the target still holds exactly what was planned (compare-and-swap: size, mtime and inode on
local locations, the change token on object stores), record, end. A target changed by
anyone meanwhile is not replaced (FileExistsError). Recovery (`recovery._recover_update`)
rolls forward when the target holds the new content, and otherwise removes the file under
the conflict name only while the target still holds exactly what was planned and that file
has the same content: whoever made it, nothing is lost.
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from alicefs.backends.base import Backend, ObjectInfo, WriteResult
from alicefs.backends.local import LocalBackend
from alicefs.backends.objectstore import ObjectStoreBackend
from alicefs.catalog import Catalog, JournalStart, Replica
from alicefs.layout import conflict_name
from alicefs.transfer.journal import UPDATE
from alicefs.transfer.pace import PacedReader, Pacer

#: Conflict copies of one file kept in the same second before giving up.
MAX_CONFLICT_NAMES = 100


def info_of(replica: Replica) -> ObjectInfo:
    """The file a cataloged replica says is there, as `stat` would return it."""
    return ObjectInfo(replica.logical_path, replica.size, replica.mtime_ns, replica.inode,
                      replica.change_token, None)


def verified_replace(source: Backend, target: Backend, key: str, *, expected_hash: str,
                     mtime_ns: int | None, replaced: ObjectInfo | None,
                     pacer: Pacer | None = None) -> WriteResult:
    """Copy `key` from `source` over the target's file `replaced` (None: there is none),
    published only when it verifies against `expected_hash` and only while the target still
    holds `replaced` (FileExistsError otherwise; nothing published)."""
    if (isinstance(source, LocalBackend) and isinstance(target, LocalBackend)
            and pacer is None):
        return target.copy_from(source, key, expected_hash=expected_hash, mtime_ns=mtime_ns,
                                replaces=replaced)
    with source.open_read(key) as stream:
        data = stream if pacer is None else PacedReader(stream, pacer)
        if isinstance(target, ObjectStoreBackend):
            if replaced is not None and replaced.change_token is None:
                raise FileExistsError(errno.EEXIST, f"{key!r}: no version known to replace")
            return target.write_atomic(
                key, data, expected_hash=expected_hash, mtime_ns=mtime_ns,
                replaces=replaced.change_token if replaced is not None else None)
        assert isinstance(target, LocalBackend)
        return target.write_atomic(key, data, expected_hash=expected_hash, mtime_ns=mtime_ns,
                                   replaces=replaced)


def keep_copy(backend: Backend, key: str, new_key: str, expected: ObjectInfo) -> ObjectInfo:
    """A second name for the file at `key` (FileExistsError when `new_key` is taken)."""
    if isinstance(backend, LocalBackend):
        return backend.link_as(key, new_key, expected)
    assert isinstance(backend, ObjectStoreBackend)
    return backend.copy_within(key, new_key).info


@dataclass
class Replacement:
    """One replica to bring to the content of `source` (see the module docstring)."""

    key: str
    source: Backend
    target: Backend
    expected_hash: str
    mtime_ns: int | None
    replaced: Replica | None  # what the target holds, as cataloged; None: a re-creation
    keep_losing: bool = False  # a conflict's losing version: kept under a conflict name
    op_id: int | None = None
    kept: ObjectInfo | None = None  # the conflict copy, once made
    pacer: Pacer | None = None

    def journal_start(self) -> JournalStart:
        replaced = self.replaced
        return JournalStart(
            self.key, self.source.location.location_id, self.target.location.location_id,
            self.expected_hash,
            {"replaced": None if replaced is None else {
                "size": replaced.size, "mtime_ns": replaced.mtime_ns, "inode": replaced.inode,
                "change_token": replaced.change_token, "content_hash": replaced.content_hash},
             "keep_losing": self.keep_losing})

    def keep(self, when: datetime, announce: Callable[[str], None]) -> ObjectInfo:
        """Keep what the target holds under a free conflict name, each name tried passed to
        `announce` first (for the journal). FileExistsError when the target changed, or
        every name is taken."""
        assert self.replaced is not None
        name = self.target.location.name
        for attempt in range(MAX_CONFLICT_NAMES):
            new_key = conflict_name(self.key, when, name, attempt)
            announce(new_key)
            try:
                self.kept = keep_copy(self.target, self.key, new_key, info_of(self.replaced))
                return self.kept
            except FileExistsError:
                if not still_there(self.target, self.key, info_of(self.replaced)):
                    raise
        raise FileExistsError(errno.EEXIST, f"{self.key!r}: {MAX_CONFLICT_NAMES} conflict "
                                            "copies made this second already")

    def replace(self) -> WriteResult:
        return verified_replace(self.source, self.target, self.key,
                                expected_hash=self.expected_hash, mtime_ns=self.mtime_ns,
                                replaced=None if self.replaced is None else info_of(
                                    self.replaced), pacer=self.pacer)

    def target_row(self, result: WriteResult) -> Replica:
        """The catalog row of the target once `replace` published `result`."""
        info = result.info
        return Replica(self.target.location.location_id, self.key, info.size, info.mtime_ns,
                       result.content_hash, info.inode, info.change_token, "present",
                       time.time())

    def kept_row(self) -> Replica | None:
        """The catalog row of the conflict copy, once made."""
        kept, replaced = self.kept, self.replaced
        if kept is None or replaced is None:
            return None
        return Replica(self.target.location.location_id, kept.key, kept.size, kept.mtime_ns,
                       replaced.content_hash, kept.inode, kept.change_token, "present",
                       time.time())


def still_there(backend: Backend, key: str, expected: ObjectInfo) -> bool:
    """Whether the file at `key` still is `expected` (by stat, no reading): the same size,
    mtime and inode on a local location, the same version on an object store."""
    try:
        info = backend.stat(key)
    except FileNotFoundError:
        return False
    if isinstance(backend, ObjectStoreBackend):
        return expected.change_token is not None and info.change_token == expected.change_token
    return ((info.size, info.mtime_ns) == (expected.size, expected.mtime_ns)
            and expected.inode in (None, info.inode))


def begin(catalog: Catalog, replacements: list[Replacement]) -> None:
    """Journal the replacements (one per logical path; one transaction)."""
    op_ids = catalog.journal_begin_many(UPDATE, [r.journal_start() for r in replacements])
    for replacement, op_id in zip(replacements, op_ids, strict=True):
        replacement.op_id = op_id
