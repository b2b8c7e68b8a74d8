"""Start-up recovery: operations the journal shows begun and not ended are finished or undone
(DESIGN.md §5.4), before the mount serves anything.

- `delete` (several replicas, or replicas on locations that were offline when the file was
  removed): deleting is finished — the user asked for it — but a replica whose content is
  no longer the one removed (written there by someone else meanwhile) is kept.
- `rename` (replicas on locations that were offline when the file was renamed): the rename
  is done there, unless the old name now holds other content or the new name is taken
  (then both stay where they are, and the next scan shows them).
- `move` (re-placement): rolled forward when the target holds the expected content (the
  source is then deleted), rolled back otherwise (the source stays, a copy without the
  expected content is not touched). The last verified replica is never deleted.
"""

from __future__ import annotations

import contextlib
import logging

from alicefs.backends.base import Backend
from alicefs.backends.local import LocalBackend
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


def _changed_since(backend: Backend, key: str, payload: dict, location_id: str) -> bool:
    """Whether the replica at `key` no longer has the content the journal entry was about
    (`payload["hashes"][location_id]`; unknown hashes count as unchanged)."""
    expected = payload.get("hashes", {}).get(location_id)
    if expected is None:
        return False
    try:
        info = backend.stat(key)
    except FileNotFoundError:
        return False  # gone already: nothing there to keep
    if info.content_hash is not None:
        return info.content_hash != expected
    with backend.open_read(key) as stream:
        return hash_stream(stream) != expected


def _rename_quietly(backend: Backend, old_key: str, new_key: str) -> bool:
    """Rename within one location without replacing anything; False when the new name is
    taken. An old name already gone counts as done."""
    try:
        backend.stat(new_key)
    except FileNotFoundError:
        pass
    else:
        return False
    if isinstance(backend, LocalBackend):
        with contextlib.suppress(FileNotFoundError):
            backend.rename(old_key, new_key)
        return True
    try:
        with backend.open_read(old_key) as source:
            info = backend.stat(old_key)
            backend.write_atomic(new_key, source, expected_hash=info.content_hash,
                                 mtime_ns=info.mtime_ns)
    except FileNotFoundError:
        return True
    except FileExistsError:
        return False
    _delete_quietly(backend, old_key)
    return True


def _delete_quietly(backend: Backend, key: str) -> None:
    try:
        backend.delete(key)
    except FileNotFoundError:
        return


#: Operations left to finish on locations that were offline when they happened: the mount
#: finishes them when such a location is back, before it is used or scanned again.
DEFERRED_KINDS = ("delete", "rename")


def recover(catalog: Catalog, backends: dict[str, Backend],
            kinds: tuple[str, ...] | None = None) -> list[str]:
    """Finish or undo every open journal entry (of `kinds`, when given) (blocking). Returns
    what was done, one line per entry; entries whose locations are unreachable now stay for
    later."""
    done = []
    for entry in catalog.journal_open():
        if kinds is not None and entry.kind not in kinds:
            continue
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
        kept = []
        for location_id in locations:
            backend = backends[location_id]
            if _changed_since(backend, entry.logical_path, entry.payload, location_id):
                kept.append(backend.location.name)
                continue
            _delete_quietly(backend, entry.logical_path)
            catalog.drop_replicas(location_id, [entry.logical_path])
        if kept:
            return f"deleted, except in {', '.join(kept)} (changed there since)"
        return "deleted from every location"
    if entry.kind == "rename":
        locations = entry.payload.get("locations", [])
        if any(lid not in backends for lid in locations):
            return None
        new_key = entry.payload["to"]
        kept = []
        for location_id in locations:
            backend = backends[location_id]
            if (_changed_since(backend, entry.logical_path, entry.payload, location_id)
                    or not _rename_quietly(backend, entry.logical_path, new_key)):
                kept.append(backend.location.name)
        if kept:
            return f"renamed to {new_key!r}, except in {', '.join(kept)}"
        return f"renamed to {new_key!r} in every location"
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
