"""Start-up recovery: operations the journal shows begun and not ended are finished or undone
(DESIGN.md §5.4), before the mount serves anything.

- `delete` (several replicas): deleting is finished — the user asked for it.
- `deferred-delete`: a replica left on a location (`target_location_id`) that was offline
  when its file was unlinked, or renamed (the file lives on under its new name where it was
  reachable; the old copy here is removed, not renamed: a chain of renames, a swap or a
  rename over another file then need no replaying). Deleted when the location is back,
  unless it no longer has the content the entry names (written there by someone else
  meanwhile: then it is left alone). A directory a renamed directory left empty goes too.
- `handover` (a write found its local location full and the file goes on in another one): a
  crash before the copy was complete (step `planned`) removes the partial copy and keeps the
  source; after it (step `copied`, the copy on disk with the write that did not fit), the copy
  is recorded and the source deleted.
- `move` and `copy` (re-placement, migration): rolled forward when the target holds the
  expected content (recorded; for a move the replicas in `remove_from` are then deleted),
  rolled back otherwise (the sources stay, a copy without the expected content is not
  touched). The last verified replica is never deleted.
- `update` (sync bringing a replica to another's content, `transfer.replace`): rolled
  forward (recorded, with the conflict copy of the losing version) when the target holds
  the new content; otherwise the target kept its content, and a conflict copy made of it
  is removed only while the target still holds exactly that content (else it is kept and
  recorded: it may be the only copy of that version now).
- `multipart` (an S3 multipart upload, journaled by the backend through
  `JournaledPartialUploads` before it is asked for; `temp_key` its upload id once S3 named
  it): its process died before completing or aborting it, so its parts sit invisible in the
  bucket, billed; it is aborted (without an id: the uploads of that key begun since).
  Whatever wrote it (a staged file, a move) is recovered on its own terms and uploads
  afresh.

An entry that fails (an I/O error) stays open and is tried again later; the location it
names is then kept out of use (see `unfinished`), so a scan cannot show undone work.
"""

from __future__ import annotations

import contextlib
import logging
import stat
import time
from collections import Counter
from collections.abc import Collection

from alicefs.backends.base import Backend, ObjectInfo, UnsafeKeyError
from alicefs.backends.local import LocalBackend
from alicefs.catalog import Catalog, JournalEntry, Replica
from alicefs.transfer.copy import content_hash_of, holds
from alicefs.transfer.journal import (
    COPY,
    DEFERRED_DELETE,
    DEFERRED_KINDS,
    DELETE,
    HANDOVER,
    MOVE,
    MULTIPART,
    UPDATE,
)
from alicefs.transfer.replace import still_there

log = logging.getLogger(__name__)


def _exists(backend: Backend, key: str) -> bool:
    try:
        backend.stat(key)
    except FileNotFoundError:
        return False
    return True


def _record_present(catalog: Catalog, backend: Backend, key: str, content_hash: str | None
                    ) -> None:
    """Record the verified copy at `key` (a crash may have come before the mover did)."""
    info = backend.stat(key)
    catalog.put_replicas([Replica(backend.location.location_id, key, info.size, info.mtime_ns,
                                  content_hash, info.inode, info.change_token, "present",
                                  time.time())])


def _special_kind(entry: JournalEntry) -> int | None:
    """The type (S_IFMT) of the link or special file a deferred delete is about; None for a
    regular file. Entries journaled before special files existed say `symlink`."""
    if "special" in entry.payload:
        return int(entry.payload["special"])
    return stat.S_IFLNK if entry.payload.get("symlink") else None


def _changed_since(backend: Backend, key: str, entry: JournalEntry) -> bool:
    """Whether what is at `key` is no longer the copy a deferred delete is about: other
    content (by hash, or by size and mtime when the hash was not known), or another kind of
    file (a link where a file was, a file where a link was)."""
    kind = _special_kind(entry)
    if kind is not None:
        try:
            return not (isinstance(backend, LocalBackend) and backend.special_type(key) == kind)
        except (UnsafeKeyError, NotADirectoryError):
            return True  # its directory now leads out of the location, or is a file
    try:
        info = backend.stat(key)
    except FileNotFoundError:
        return False  # gone already: nothing there to keep
    except (UnsafeKeyError, NotADirectoryError, IsADirectoryError):
        return True  # a link leading out, a directory, or under a file now: not the copy
    if entry.payload.get("staged"):
        # Its newer content was never uploaded: the store holds the version it replaced.
        return info.change_token != entry.payload.get("change_token")
    if entry.expected_hash is None:
        return (info.size, info.mtime_ns) != (entry.payload.get("size"),
                                              entry.payload.get("mtime_ns"))
    if info.content_hash is not None:
        return info.content_hash != entry.expected_hash
    return content_hash_of(backend, key) != entry.expected_hash


def _remove_emptied_dirs(backend: LocalBackend, old_key: str, renamed_dir: str) -> None:
    """After the old copy of a file of a renamed directory went, the directories it left
    empty, up to the renamed one, go too (the rename took that directory everywhere else)."""
    directory = old_key.rpartition("/")[0]
    while directory == renamed_dir or directory.startswith(renamed_dir + "/"):
        try:
            backend.remove_dir(directory)
        except OSError:
            return  # not empty (other files still to move, or someone else's)
        directory = directory.rpartition("/")[0]


def _delete_quietly(backend: Backend, key: str) -> None:
    try:
        backend.delete(key)
    except FileNotFoundError:
        return


ROLLED_BACK = "rolled back (source kept)"


def recover(catalog: Catalog, backends: dict[str, Backend],
            kinds: tuple[str, ...] | None = None,
            rolled_back: list[JournalEntry] | None = None,
            begun_before: float | None = None, only: Collection[int] | None = None
            ) -> list[str]:
    """Finish or undo open journal entries (blocking). All of them, or those of `kinds`,
    those begun before the epoch time `begun_before` (later ones are the running process's
    own), or just the op_ids `only` (a running process's own failed transfers). Returns
    what was done, one line per entry; entries whose locations are unreachable now, or that
    fail, stay for later. Moves rolled back with their source kept are added to
    `rolled_back`, so the caller can try them again."""
    done = []
    for entry in catalog.journal_open():
        if kinds is not None and entry.kind not in kinds:
            continue
        if begun_before is not None and entry.created_at >= begun_before:
            continue
        if only is not None and entry.op_id not in only:
            continue
        try:
            outcome = _recover_one(entry, catalog, backends)
        except OSError as exc:
            log.warning("journal %d (%s %s) not finished, tried again later: %s", entry.op_id,
                        entry.kind, entry.logical_path, exc)
            continue
        if outcome is None:
            continue
        if outcome == ROLLED_BACK and rolled_back is not None:
            rolled_back.append(entry)
        catalog.journal_end(entry.op_id)
        log.info("journal %d (%s %s): %s", entry.op_id, entry.kind, entry.logical_path,
                 outcome)
        done.append(f"{entry.kind} {entry.logical_path}: {outcome}")
    return done


def unfinished(catalog: Catalog) -> Counter[str]:
    """Location id -> how many deferred deletes it still owes (blocking): while any remain,
    the location must not be used or scanned."""
    return Counter(e.target_location_id for e in catalog.journal_open()
                   if e.kind in DEFERRED_KINDS and e.target_location_id is not None)


def _recover_one(entry: JournalEntry, catalog: Catalog, backends: dict[str, Backend]
                 ) -> str | None:
    if entry.kind == DELETE:
        locations = entry.payload.get("locations", [])
        if any(lid not in backends for lid in locations):
            return None
        for location_id in locations:
            _delete_quietly(backends[location_id], entry.logical_path)
            catalog.drop_replicas(location_id, [entry.logical_path])
        return "deleted from every location"
    if entry.kind == DEFERRED_DELETE:
        backend = backends.get(entry.target_location_id or "")
        if backend is None:
            return None
        if _changed_since(backend, entry.logical_path, entry):
            catalog.drop_replicas(backend.location.location_id, [entry.logical_path])
            return "left alone: changed there since (the next scan shows it)"
        if _special_kind(entry) is not None:
            # The link itself (it may lead out of the location, or nowhere), or the FIFO,
            # socket or device node.
            with contextlib.suppress(FileNotFoundError):
                backend.remove_special(entry.logical_path)
        else:
            _delete_quietly(backend, entry.logical_path)
        catalog.drop_replicas(backend.location.location_id, [entry.logical_path])
        if "prune" in entry.payload and isinstance(backend, LocalBackend):
            _remove_emptied_dirs(backend, entry.logical_path, entry.payload["prune"])
        return "deleted"
    if entry.kind == MULTIPART:
        backend = backends.get(entry.target_location_id or "")
        if backend is None:
            return None
        backend.abort_partial(entry.logical_path, entry.temp_key, entry.created_at)
        return "unfinished multipart upload aborted"
    if entry.kind == HANDOVER:
        source = backends.get(entry.source_location_id or "")
        target = backends.get(entry.target_location_id or "")
        if source is None or target is None:
            return None
        if entry.step != "copied":
            _delete_quietly(target, entry.logical_path)
            catalog.drop_replicas(target.location.location_id, [entry.logical_path])
            return "rolled back (partial copy removed, source kept)"
        if not _exists(target, entry.logical_path):
            return "nothing to finish (the copy is gone; the source is as it was)"
        _record_present(catalog, target, entry.logical_path, None)
        _delete_quietly(source, entry.logical_path)
        catalog.drop_replicas(source.location.location_id, [entry.logical_path])
        return "rolled forward (copy recorded, source deleted)"
    if entry.kind in (MOVE, COPY):
        return _recover_transfer(entry, catalog, backends)
    if entry.kind == UPDATE:
        return _recover_update(entry, catalog, backends)
    return f"unknown operation kind {entry.kind!r}: left as it was"


def _recover_transfer(entry: JournalEntry, catalog: Catalog, backends: dict[str, Backend]
                      ) -> str | None:
    """A copy or move (`move.Transfer`): rolled forward when the target holds the expected
    content (recorded; for a move the replicas that go are deleted), unless a source
    changed after the copy: then it is the newer content, and a copy the transfer made goes
    instead. Rolled back otherwise (whatever the target holds is not touched)."""
    key = entry.logical_path
    target = backends.get(entry.target_location_id or "")
    default = [entry.source_location_id] if entry.kind == MOVE else []
    removes = [lid for lid in entry.payload.get("remove_from", default) if lid]
    copied = entry.payload.get("copied", True)
    if target is None or any(lid not in backends for lid in removes):
        return None
    if isinstance(target, LocalBackend):
        target.remove_temporaries(key)  # a copy the crash cut short
    if not holds(target, key, entry.expected_hash):
        return ROLLED_BACK if entry.kind == MOVE else "rolled back (no verified copy)"
    # A plain copy keeps its source: it is checked as the replicas a move removes are.
    checked = removes or [lid for lid in [entry.source_location_id] if lid in backends]
    present = [lid for lid in checked if _exists(backends[lid], key)]
    if any(not holds(backends[lid], key, entry.expected_hash) for lid in present):
        if not copied:
            _record_present(catalog, target, key, entry.expected_hash)
            return "left as it was (a replica changed since; sync brings them level)"
        # A replica changed after the copy: it is the newer content, the copy an older
        # version nobody asked to keep there. The copy goes.
        _delete_quietly(target, key)
        catalog.drop_replicas(target.location.location_id, [key])
        return "rolled back (source changed after the copy; the copy removed)"
    _record_present(catalog, target, key, entry.expected_hash)
    if not removes:
        return "rolled forward (copy verified and recorded)"
    for location_id in removes:
        if location_id in present:
            _delete_quietly(backends[location_id], key)
        catalog.drop_replicas(location_id, [key])
    if not present:
        # The crash came after the sources were deleted: the copy is the only one left.
        return "rolled forward (source already deleted; target verified and recorded)"
    return "rolled forward (target verified, source deleted)"


def _recover_update(entry: JournalEntry, catalog: Catalog, backends: dict[str, Backend]
                    ) -> str | None:
    key = entry.logical_path
    target = backends.get(entry.target_location_id or "")
    if target is None:
        return None
    if isinstance(target, LocalBackend):
        target.remove_temporaries(key)  # a copy the crash cut short
    replaced = entry.payload.get("replaced")
    kept = entry.temp_key if entry.temp_key and _exists(target, entry.temp_key) else None
    if holds(target, key, entry.expected_hash):
        _record_present(catalog, target, key, entry.expected_hash)
        if kept is not None:
            _record_present(catalog, target, kept, None)  # hashed by the next scan
            return "rolled forward (new content recorded, the losing version kept)"
        return "rolled forward (new content verified and recorded)"
    if kept is None:
        return "rolled back (the replica kept its content)"
    unchanged = replaced is not None and still_there(target, key, ObjectInfo(
        key, replaced["size"], replaced["mtime_ns"], replaced["inode"],
        replaced["change_token"]))
    if unchanged and _same_content(target, key, kept):
        _delete_quietly(target, kept)
        return "rolled back (the replica kept its content; its conflict copy removed)"
    _record_present(catalog, target, kept, None)
    return "rolled back (the replica changed since; the file under its conflict name kept)"


def _same_content(backend: Backend, key: str, other: str) -> bool:
    """Whether two files of a location hold the same content: one file under two names
    (a hard link), the same hash metadata, else by reading both."""
    a, b = backend.stat(key), backend.stat(other)
    if a.inode is not None and a.inode == b.inode:
        return True
    if a.size != b.size:
        return False
    if a.content_hash is not None and b.content_hash is not None:
        return a.content_hash == b.content_hash
    return content_hash_of(backend, key) == content_hash_of(backend, other)
