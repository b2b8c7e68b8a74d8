"""Start-up recovery: operations the journal shows begun and not ended are finished or undone
(DESIGN.md §5.4), before the mount serves anything.

- `delete` (several replicas): deleting is finished — the user asked for it.
- `move` (re-placement): rolled forward when the target holds the expected content (the
  source is then deleted), rolled back otherwise (the source stays, a copy without the
  expected content is not touched). The last verified replica is never deleted.
"""

from __future__ import annotations

import logging

from alicefs.backends.base import Backend
from alicefs.catalog import Catalog, JournalEntry
from alicefs.hashing import hash_stream

log = logging.getLogger(__name__)


def _holds(backend: Backend, key: str, expected_hash: str | None) -> bool:
    try:
        info = backend.stat(key)
    except FileNotFoundError:
        return False
    if expected_hash is None:
        return False
    if info.content_hash is not None:
        return info.content_hash == expected_hash
    with backend.open_read(key) as stream:
        return hash_stream(stream) == expected_hash


def _delete_quietly(backend: Backend, key: str) -> None:
    try:
        backend.delete(key)
    except FileNotFoundError:
        return


def recover(catalog: Catalog, backends: dict[str, Backend]) -> list[str]:
    """Finish or undo every open journal entry (blocking). Returns what was done, one line
    per entry; entries whose locations are unreachable now stay for the next start."""
    done = []
    for entry in catalog.journal_open():
        outcome = _recover_one(entry, catalog, backends)
        if outcome is None:
            continue
        catalog.journal_end(entry.op_id)
        log.info("journal %d (%s %s): %s", entry.op_id, entry.kind, entry.logical_path,
                 outcome)
        done.append(f"{entry.kind} {entry.logical_path}: {outcome}")
    return done


def _recover_one(entry: JournalEntry, catalog: Catalog, backends: dict[str, Backend]
                 ) -> str | None:
    if entry.kind == "delete":
        locations = entry.payload.get("locations", [])
        if any(lid not in backends for lid in locations):
            return None
        for location_id in locations:
            _delete_quietly(backends[location_id], entry.logical_path)
            catalog.drop_replicas(location_id, [entry.logical_path])
        return "deleted from every location"
    if entry.kind == "move":
        source = backends.get(entry.source_location_id or "")
        target = backends.get(entry.target_location_id or "")
        if source is None or target is None:
            return None
        if _holds(target, entry.logical_path, entry.expected_hash):
            if _holds(source, entry.logical_path, entry.expected_hash):
                _delete_quietly(source, entry.logical_path)
                catalog.drop_replicas(source.location.location_id, [entry.logical_path])
                return "rolled forward (target verified, source deleted)"
            # The source changed after the copy: it is the newer content. The copy goes.
            _delete_quietly(target, entry.logical_path)
            catalog.drop_replicas(target.location.location_id, [entry.logical_path])
            return "rolled back (source changed after the copy; the copy removed)"
        return "rolled back (source kept)"
    return f"unknown operation kind {entry.kind!r}: left as it was"
