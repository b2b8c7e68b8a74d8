"""The kinds of journal entries (the catalog's `journal` table) and what each one promises.

An entry is written before an operation's first step and removed after its last, so one
left open names work a crash interrupted; `recovery.recover` finishes or undoes it at the
next start. The steps of each kind are described where recovery handles them.
"""

from __future__ import annotations

from alicefs.catalog import Catalog

#: A re-placement: copy to the target, verify, record, then remove the replicas that go
#: (`move.Transfer`; payload `remove_from`, default the source; `copied` false when the
#: target held the content already and only removals were left).
MOVE = "move"
#: The same without removals: the source stays.
COPY = "copy"
#: Bringing a replica to another's content (sync): `transfer.replace.Replacement`; payload
#: `replaced` (what the target held, or None for a re-creation) and `keep_losing`;
#: `temp_key` the conflict copy of the losing version, once made.
UPDATE = "update"
#: Deleting a file's replicas in several locations.
DELETE = "delete"
#: A replica to delete from a location that was offline when its file was unlinked or
#: renamed: done when the location is back, before it is used or scanned.
DEFERRED_DELETE = "deferred-delete"
DEFERRED_KINDS = (DEFERRED_DELETE,)
#: A write found its local location full and the file goes on in another one.
HANDOVER = "handover"
#: An S3 multipart upload the store keeps (invisible) until it is completed or aborted.
MULTIPART = "multipart"


class JournaledPartialUploads:
    """The journal as a backend's `partial_uploads` (thread-safe, like the catalog)."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def started(self, location_id: str, key: str) -> int:
        return self.catalog.journal_begin(MULTIPART, key, target_location_id=location_id)

    def named(self, token: int, upload_id: str) -> None:
        self.catalog.journal_temp_key(token, upload_id)

    def ended(self, token: int) -> None:
        self.catalog.journal_end(token)
