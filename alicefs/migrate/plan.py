"""Migration planning (DESIGN.md §4), pure: from what the catalog knows of every file and
the locations' rules and free space, which copies to make and, with `move`, which replicas
then go.

- A file's **target** is `rules.target_location` of its attributes (size, age, type, tags,
  stars). Room is judged as if the file were already in every location that holds its
  current version, so a file that fits where it is never looks homeless.
- An entry is planned when the target does not hold the current version. After a complete
  run the target holds it, so a second run plans nothing: the plan converges.
- **Capacity**: each planned copy is subtracted from its target's free space before the next
  file is looked at, so a plan never fills a location past its reserve. A file whose
  matching location has no room left is reported (`Skipped`), not tried.
- **Move**: once the target holds the verified current version, the replicas in locations
  whose rules no longer match the file go (never the target's, never a location whose rules
  still match it, e.g. a backup without rules).
- **Sidecars** (`photo.png.xmp`, `photo.xmp`) are not placed by their own rules: they go
  where the file they describe goes.
- A file whose present replicas disagree (a conflict), or whose target holds an older
  version, is left to sync (issue: sync tracking) and reported.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from alicefs.catalog import FileMeta, Replica
from alicefs.media import classify_name
from alicefs.rules import (
    FileAttrs,
    LocationStatus,
    PlacementPolicy,
    PlacementReason,
    SpaceInfo,
    by_preference,
    has_room,
    location_matches,
    rule_matches,
    target_location,
)
from alicefs.scan import SIDECAR_EXTENSION, is_sidecar, project_of


@dataclass(frozen=True)
class CatalogFile:
    """What planning knows of one logical file."""

    logical_path: str
    replicas: tuple[Replica, ...]
    meta: FileMeta | None = None


@dataclass(frozen=True)
class PlannedTransfer:
    """One file to bring to its target."""

    logical_path: str
    size: int
    mtime_ns: int
    content_hash: str | None  # None: not known yet (hashed from the source before copying)
    source_location_id: str  # read from here
    target_location_id: str
    copy: bool  # False: the target already holds the current version (only removals)
    remove_from: tuple[Replica, ...]  # move: replicas that go once the target is verified
    rule: str  # what decided the target, for the dry-run listing


@dataclass(frozen=True)
class Skipped:
    logical_path: str
    reason: str


@dataclass(frozen=True)
class MigrationPlan:
    transfers: tuple[PlannedTransfer, ...]
    skipped: tuple[Skipped, ...]

    def totals(self) -> dict[tuple[str, str], tuple[int, int]]:
        """(source, target) -> (files, bytes) to copy."""
        totals: dict[tuple[str, str], tuple[int, int]] = {}
        for t in self.transfers:
            if t.copy:
                files, size = totals.get((t.source_location_id, t.target_location_id), (0, 0))
                totals[(t.source_location_id, t.target_location_id)] = (files + 1,
                                                                        size + t.size)
        return totals


def plan_migration(files: Iterable[CatalogFile], locations: Sequence[PlacementPolicy],
                   free_space: Mapping[str, SpaceInfo | None], now: float, *,
                   move: bool = False, project: str | None = None,
                   limit_files: int | None = None, limit_bytes: int | None = None,
                   usable: frozenset[str] | None = None) -> MigrationPlan:
    """The plan for `files` (any order; the plan is sorted by logical path). `usable`: the
    locations reachable now (default: all not offline); nothing is read from or written to
    the others, and files only they hold are left out."""
    policies = by_preference(locations)
    reachable = usable if usable is not None else frozenset(
        p.location_id for p in policies if p.status is not LocationStatus.OFFLINE)
    space = dict(free_space)
    order = {p.location_id: i for i, p in enumerate(policies)}
    by_path = {f.logical_path: f for f in files
               if project is None or project_of(f.logical_path) == project}
    transfers: list[PlannedTransfer] = []
    skipped: list[Skipped] = []
    decided: dict[str, str] = {}  # logical path -> where it will be (for its sidecars)
    planned_files = planned_bytes = 0
    ordered = sorted(by_path, key=lambda p: (is_sidecar(p), p))  # sidecars after their files
    stems = _stems(by_path)
    for path in ordered:
        file = by_path[path]
        current = _current(file, reachable, order, skipped)
        if current is None:
            continue
        holders, source = current
        attrs = file_attrs(file, source)
        if is_sidecar(path):
            target = next((decided[c] for c in _companions(path, by_path, stems)
                           if c in decided), None)
            if target is None:
                continue  # nothing it describes is planned or placed: it stays
            rule = f"travels with {_companions(path, by_path, stems)[0]}"
        else:
            placement = target_location(attrs, policies, _as_if_there(space, holders,
                                                                       source.size), now,
                                        current_location_id=source.location_id)
            if placement.location is None or placement.reason is not PlacementReason.MATCHED:
                decided[path] = source.location_id
                homeless = _no_room(attrs, policies, holders, now)
                if homeless is not None:
                    skipped.append(Skipped(path, f"no room in {homeless.name}"))
                continue
            target = placement.location.location_id
            rule = _deciding_rule(placement.location, attrs, now)
        decided[path] = target
        if target not in reachable:
            skipped.append(Skipped(path, "its target is not reachable now"))
            continue
        if _stale_at(file, target):
            skipped.append(Skipped(path, STALE_TARGET))
            continue
        copy = target not in holders
        remove = tuple(holders[lid] for lid in sorted(holders)
                       if move and lid != target and lid in reachable
                       and (is_sidecar(path) or not _matches(policies, lid, attrs, now)))
        if not copy and not remove:
            continue
        if copy and ((limit_files is not None and planned_files >= limit_files) or
                     (limit_bytes is not None and planned_bytes + source.size > limit_bytes)):
            skipped.append(Skipped(path, "over this run's --limit-files/--limit-bytes"))
            continue
        if copy:
            planned_files += 1
            planned_bytes += source.size
            room = space.get(target)
            if room is not None:
                space[target] = replace(room, free_bytes=room.free_bytes - source.size)
        transfers.append(PlannedTransfer(path, source.size, source.mtime_ns,
                                         source.content_hash, source.location_id, target,
                                         copy, remove, rule))
    transfers.sort(key=lambda t: t.logical_path)
    return MigrationPlan(tuple(transfers), tuple(skipped))


STALE_TARGET = "its target holds an older version (sync brings it level)"


def _stale_at(file: CatalogFile, location_id: str) -> bool:
    return any(r.location_id == location_id and r.state == "stale" for r in file.replicas)


def _current(file: CatalogFile, reachable: frozenset[str], order: Mapping[str, int],
             skipped: list[Skipped]) -> tuple[dict[str, Replica], Replica] | None:
    """(locations holding the current version, the replica to read it from), or None when
    the file is left alone (and in `skipped` when that is worth reporting)."""
    present = [r for r in file.replicas if r.state == "present"]
    if not present:
        return None
    hashes = {r.content_hash for r in present if r.content_hash is not None}
    if len(hashes) > 1 or len({r.size for r in present}) > 1:
        skipped.append(Skipped(file.logical_path, "its replicas differ (a conflict: sync "
                                                  "resolves it)"))
        return None
    readable = [r for r in present if r.location_id in reachable]
    if not readable:
        skipped.append(Skipped(file.logical_path, "no location holding it is reachable now"))
        return None
    known = next((r.content_hash for r in present if r.content_hash), None)
    # Read from the most preferred location (by priority: the fastest, by convention).
    source = min(readable, key=lambda r: order.get(r.location_id, len(order)))
    if source.content_hash is None and known is not None:
        source = replace(source, content_hash=known)
    return {r.location_id: r for r in present}, source


def file_attrs(file: CatalogFile, source: Replica) -> FileAttrs:
    """What placement rules see of `file`, whose content `source` holds."""
    meta = file.meta
    if meta is not None:
        mime, category = meta.mime_type, meta.category
    else:
        media = classify_name(file.logical_path)
        mime, category = media.mime_type, media.category
    return FileAttrs(file.logical_path, source.size, source.mtime_ns / 1e9, mime, category,
                     frozenset(meta.tags) if meta else frozenset(),
                     meta.quality if meta else None)


def _as_if_there(space: Mapping[str, SpaceInfo | None], holders: Iterable[str], size: int
                 ) -> dict[str, SpaceInfo | None]:
    """Free space with the file counted as already in every location that holds it."""
    adjusted = dict(space)
    for location_id in holders:
        room = adjusted.get(location_id)
        if room is not None:
            adjusted[location_id] = replace(room, free_bytes=room.free_bytes + size)
    return adjusted


def _matches(policies: Sequence[PlacementPolicy], location_id: str, attrs: FileAttrs,
             now: float) -> bool:
    policy = next((p for p in policies if p.location_id == location_id), None)
    return policy is not None and location_matches(policy, attrs, now)


def _no_room(attrs: FileAttrs, policies: Sequence[PlacementPolicy],
             holders: Mapping[str, Replica], now: float) -> PlacementPolicy | None:
    """The location the file belongs in by its rules when only room kept it away."""
    for policy in policies:
        if policy.status is LocationStatus.ACTIVE and location_matches(policy, attrs, now):
            return None if policy.location_id in holders else policy
    return None


def _deciding_rule(policy: PlacementPolicy, attrs: FileAttrs, now: float) -> str:
    if not policy.rules:
        return f"{policy.name}: no rules (takes every file)"
    rule = next(r for r in policy.rules if rule_matches(r, attrs, now))
    return f"{policy.name}: {rule.describe()}"


def _stems(paths: Iterable[str]) -> dict[str, list[str]]:
    stems: dict[str, list[str]] = {}
    for path in sorted(paths):
        if not is_sidecar(path):
            stems.setdefault(posixpath.splitext(path)[0], []).append(path)
    return stems


def _companions(sidecar: str, paths: Mapping[str, CatalogFile], stems: dict[str, list[str]]
                ) -> list[str]:
    """The files a sidecar describes (`photo.png.xmp` -> photo.png; `photo.xmp` -> photo.*)."""
    base = sidecar[: -len(SIDECAR_EXTENSION)]
    if base in paths:
        return [base]
    return stems.get(base, [])


def plan_consolidation(files: Iterable[CatalogFile], project: str, target: PlacementPolicy,
                       free_space: Mapping[str, SpaceInfo | None], *, move: bool = False,
                       usable: frozenset[str] | None = None) -> MigrationPlan:
    """Gather every file of `project` into `target` (logical paths unchanged), whatever the
    rules say; with `move` every other replica goes once the target holds the file. Room is
    checked as for migration: what does not fit is reported, not tried."""
    reachable = usable if usable is not None else frozenset({target.location_id})
    space = dict(free_space)
    order = {target.location_id: 0}
    transfers: list[PlannedTransfer] = []
    skipped: list[Skipped] = []
    rule = f"consolidate {project} into {target.name}"
    for file in sorted((f for f in files if project_of(f.logical_path) == project),
                       key=lambda f: f.logical_path):
        current = _current(file, reachable, order, skipped)
        if current is None:
            continue
        holders, source = current
        if _stale_at(file, target.location_id):
            skipped.append(Skipped(file.logical_path, STALE_TARGET))
            continue
        copy = target.location_id not in holders
        remove = tuple(holders[lid] for lid in sorted(holders)
                       if move and lid != target.location_id and lid in reachable)
        if not copy and not remove:
            continue
        room = space.get(target.location_id)
        if copy and room is not None:
            if not has_room(target, room, source.size, already_there=False):
                skipped.append(Skipped(file.logical_path, f"no room in {target.name}"))
                continue
            space[target.location_id] = replace(room, free_bytes=room.free_bytes - source.size)
        transfers.append(PlannedTransfer(file.logical_path, source.size, source.mtime_ns,
                                         source.content_hash, source.location_id,
                                         target.location_id, copy, remove, rule))
    return MigrationPlan(tuple(transfers), tuple(skipped))
