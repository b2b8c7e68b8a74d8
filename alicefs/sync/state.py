"""Sync states (DESIGN.md §6), pure: from a file's cataloged replicas and its base hash (the
last content every replica agreed on), the state of each replica and of the file, which
replica holds the current version, and which versions compete in a conflict.

- A replica that changed from the base while the others did not holds the newer version;
  the ones still at the base are `pending_update`.
- Two or more replicas that changed to different content are a `conflict` (also when the
  base is not known and the replicas differ: nothing says which is newer).
- Replicas that changed to the same content agree: `synced`.
- A replica the mount marked stale (another replica was written through it) is
  `pending_update` whatever else holds; one a scan did not find is `missing`.
- A replica whose hash is not known yet counts as the base when its size is the base's,
  else as a version of its own: nothing is ever replaced on that guess, because a sync
  replaces a replica only while it is still exactly what the catalog says.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from alicefs.catalog import Replica, SyncBase


class SyncState(StrEnum):
    SYNCED = "synced"
    PENDING_UPLOAD = "pending_upload"
    PENDING_UPDATE = "pending_update"
    CONFLICT = "conflict"
    MISSING = "missing"


#: A file's state is the most urgent of its replicas', in this order.
_URGENCY = (SyncState.CONFLICT, SyncState.PENDING_UPDATE, SyncState.PENDING_UPLOAD,
            SyncState.MISSING, SyncState.SYNCED)


@dataclass(frozen=True)
class ReplicaSync:
    replica: Replica
    state: SyncState


@dataclass(frozen=True)
class FileSync:
    """What sync knows of one logical file."""

    logical_path: str
    state: SyncState
    replicas: tuple[ReplicaSync, ...]
    base_hash: str | None
    # A replica holding the version the others must be brought to; None in a conflict or
    # when no replica is present.
    current: Replica | None
    # In a conflict, one replica per competing version (the candidates a strategy picks
    # from), in location order.
    candidates: tuple[Replica, ...] = ()
    # Locations an unfinished copy (migration, consolidation) is bringing the file to.
    uploading: tuple[str, ...] = ()

    def in_state(self, state: SyncState) -> list[Replica]:
        return [r.replica for r in self.replicas if r.state is state]


def _version(replica: Replica, base: SyncBase | None) -> str:
    """What identifies a replica's content: its hash, or for an unhashed one a guess that
    never leads to replacing anything (see the module docstring)."""
    if replica.content_hash is not None:
        return replica.content_hash
    if base is not None and replica.size == base.base_size:
        return base.base_hash
    return f"unhashed:{replica.location_id}"


def classify(logical_path: str, replicas: Sequence[Replica], base: SyncBase | None,
             uploading: Iterable[str] = ()) -> FileSync:
    """The sync state of one file from its replicas (any order) and base."""
    ordered = sorted(replicas, key=lambda r: r.location_id)
    present = [r for r in ordered if r.state == "present"]
    versions: dict[str, list[Replica]] = {}
    for replica in present:
        versions.setdefault(_version(replica, base), []).append(replica)
    base_hash = base.base_hash if base is not None else None
    changed = [v for v in versions if v != base_hash]
    states: dict[str, SyncState] = {}
    current: Replica | None = None
    candidates: tuple[Replica, ...] = ()
    if len(changed) > 1:
        candidates = tuple(versions[v][0] for v in changed)
        for version, holders in versions.items():
            state = SyncState.PENDING_UPDATE if version == base_hash else SyncState.CONFLICT
            states.update((r.location_id, state) for r in holders)
    elif present:
        newest = changed[0] if changed else base_hash
        assert newest is not None
        current = versions[newest][0]
        for version, holders in versions.items():
            state = SyncState.SYNCED if version == newest else SyncState.PENDING_UPDATE
            states.update((r.location_id, state) for r in holders)
    for replica in ordered:
        if replica.state == "stale":
            states[replica.location_id] = SyncState.PENDING_UPDATE
        elif replica.state == "missing":
            states[replica.location_id] = SyncState.MISSING
    uploads = tuple(sorted(set(uploading) - {r.location_id for r in present}))
    found = set(states.values()) | ({SyncState.PENDING_UPLOAD} if uploads else set())
    file_state = next((s for s in _URGENCY if s in found), SyncState.SYNCED)
    return FileSync(logical_path, file_state,
                    tuple(ReplicaSync(r, states[r.location_id]) for r in ordered),
                    base_hash, current, candidates, uploads)

