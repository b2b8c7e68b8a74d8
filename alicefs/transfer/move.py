"""The journaled move of one replica to another location (DESIGN.md §5): journal, verified
copy, record, and only then delete the source.

Each step is blocking and separate, so a caller that serves the file meanwhile (the mount)
can look between steps whether it changed and `abandon` the move instead: then the copy
goes and the source stays. A crash between any two steps is finished or undone by
`recovery.recover` (kind `move`): never by deleting the last verified copy.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from alicefs.backends.base import Backend, WriteResult
from alicefs.catalog import Catalog
from alicefs.transfer.copy import verified_copy
from alicefs.transfer.journal import MOVE


@dataclass
class Move:
    catalog: Catalog
    key: str
    source: Backend
    target: Backend
    expected_hash: str  # the content being moved: what the copy must verify against
    mtime_ns: int | None = None  # kept by the copy
    op_id: int | None = None  # its journal entry, once begun

    def begin(self) -> None:
        """Journal the move before anything is written."""
        self.op_id = self.catalog.journal_begin(
            MOVE, self.key, source_location_id=self.source.location.location_id,
            target_location_id=self.target.location.location_id,
            expected_hash=self.expected_hash)

    def copy(self) -> WriteResult:
        """The verified copy, published under the key in the target (never replacing a file
        there: FileExistsError)."""
        assert self.op_id is not None, "begin() first"
        result = verified_copy(self.source, self.target, self.key,
                               expected_hash=self.expected_hash, mtime_ns=self.mtime_ns)
        self.catalog.journal_step(self.op_id, "verified")
        return result

    def recorded(self) -> None:
        """The caller recorded the copy in the catalog: from here the source may go."""
        assert self.op_id is not None, "begin() first"
        self.catalog.journal_step(self.op_id, "recorded")

    def delete_source(self) -> None:
        """Delete the source. The caller drops its catalog row, then calls `end`: a crash
        before that is rolled forward (the source is gone, the copy recorded)."""
        with contextlib.suppress(FileNotFoundError):
            self.source.delete(self.key)

    def end(self) -> None:
        assert self.op_id is not None, "begin() first"
        self.catalog.journal_end(self.op_id)

    def abandon(self) -> None:
        """The file changed during the move: the copy goes, the source stays."""
        assert self.op_id is not None, "begin() first"
        with contextlib.suppress(FileNotFoundError):
            self.target.delete(self.key)
        self.catalog.journal_end(self.op_id)
