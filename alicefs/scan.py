"""What a scan has to do, decided without I/O: which listed files are new or changed, which
cataloged ones vanished, which sidecars describe which files, and how metadata from the user,
sidecars and embedded XMP combine. alicefs/scanner.py does the I/O."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from alicefs.backends.base import ObjectInfo
from alicefs.catalog import FileMeta, ReplicaIndex
from alicefs.media import MediaType
from alicefs.signatures import matches
from alicefs.xmp import XmpMetadata

UNSORTED = "_unsorted"
SIDECAR_EXTENSION = ".xmp"

def project_of(logical_path: str) -> str:
    """The first path component; a file directly at a location's root is in `_unsorted`."""
    head, sep, _ = logical_path.partition("/")
    return head if sep else UNSORTED


def comparable(info: ObjectInfo, object_store: bool) -> tuple[object, ...]:
    """What must be unchanged for a cataloged hash to be trusted without reading the file.

    Local files: size, mtime and inode (a file replaced by rename gets a new inode even with
    the same size and mtime). Object stores: size and change token (ETag or generation), which
    change whenever the content does. Catalog.replica_index loads the same tuples.
    """
    return (info.size, info.change_token) if object_store else info[1:4]


class ListingComparer:
    """Compares a location's listing, fed in batches as it arrives, with the catalog.

    Runs once per listed file on every scan, so the common case (a file whose size, mtime and
    inode match a hashed replica) costs one lookup in the index's signatures, which it takes
    out of the index: what is left at the end was not listed.
    """

    def __init__(self, index: ReplicaIndex, force: bool = False, object_store: bool = False):
        self.index = index
        self.force = force
        self.object_store = object_store
        self.new_files = self.changed_files = self.unchanged_files = 0
        self.files = self.bytes = 0
        self.reappeared: list[str] = []
        self._unseen_unhashed = set(index.unhashed)
        self._taken_bytes = 0  # of index.trusted.taken_bytes, those counted in `bytes`
        # Sidecars listed: the only listed keys a file's metadata asks about (few, kept
        # whole; the listing itself is not)
        self.listed_sidecars: set[str] = set()

    def add(self, batch: Iterable[ObjectInfo | str]) -> list[ObjectInfo]:
        """Account for a batch of listed files; returns those whose content must be read.
        A bare key is a file the lister already found unchanged and took from the index
        (Backend.list's `unchanged_if`: `Signatures.take_if_unchanged`)."""
        # Locals and counters outside the loop: this is the per-file cost of every rescan.
        to_examine = []
        trusted = self.index.trusted
        take = trusted.pop
        missing = self.index.missing
        unhashed = self._unseen_unhashed
        object_store = self.object_store
        force = self.force
        files = unchanged = changed = 0
        size_total = trusted.taken_bytes - self._taken_bytes  # those the lister took
        self._taken_bytes = trusted.taken_bytes
        sidecars = self.listed_sidecars
        for info in batch:
            files += 1
            key = info if info.__class__ is str else info.key
            if key[-1] in "pP" and is_sidecar(key):  # the cheap test first: once per file
                sidecars.add(key)
            if info.__class__ is str:
                unchanged += 1
                if missing and key in missing:
                    self.reappeared.append(key)
                continue
            size_total += info.size
            entry = take(key)
            if entry is not None and not force and matches(
                    entry, (info.size, info.change_token) if object_store else info[1:4]):
                unchanged += 1
                if missing and key in missing:
                    self.reappeared.append(key)
                continue
            if entry is not None:
                changed += 1
            elif unhashed and key in unhashed:
                changed += 1
                unhashed.discard(key)
            to_examine.append(info)
        self.files += files
        self.bytes += size_total
        self.unchanged_files += unchanged
        self.changed_files += changed
        self.new_files += files - unchanged - changed
        return to_examine

    def _unlisted(self) -> Iterator[str]:
        """Cataloged paths the listing did not show (blocking when some hashed ones are
        among them: their paths are read again from the catalog)."""
        trusted, missing = self.index.trusted, self.index.missing
        # Usually none, or only those missing already: then nothing is read.
        if len(trusted) > sum(1 for key in missing if key in trusted):
            for chunk in self.index.trusted_paths():
                yield from trusted.left(chunk)
        else:
            yield from (key for key in missing if key in trusted)
        yield from self._unseen_unhashed

    def vanished(self) -> list[str]:
        """Cataloged as present, not listed: now missing. Call after the last batch
        (blocking: may read the catalog)."""
        missing = self.index.missing
        return sorted(key for key in self._unlisted() if key not in missing)

    def listed_keys(self) -> set[str]:
        """Every key listed (blocking: reads the catalog; only sidecar changes need it).
        Call once the scan wrote what it found: a new file is listed, and cataloged."""
        unlisted = set(self._unlisted())
        return {key for chunk in self.index.location_paths() for key in chunk
                if key not in unlisted}


def sidecars_for(key: str, listed: set[str]) -> list[str]:
    """Sidecar files describing `key`, most specific first: `photo.png.xmp`, then `photo.xmp`."""
    if key.lower().endswith(SIDECAR_EXTENSION):
        return []
    stem = posixpath.splitext(key)[0]
    return [c for c in (key + SIDECAR_EXTENSION, stem + SIDECAR_EXTENSION,
                        key + ".XMP", stem + ".XMP") if c in listed]


def stem_index(listed: Iterable[str]) -> dict[str, list[str]]:
    """Files (not sidecars) by their path without extension: `p/photo.png` under `p/photo`."""
    index: dict[str, list[str]] = {}
    for key in listed:
        if not is_sidecar(key):
            index.setdefault(posixpath.splitext(key)[0], []).append(key)
    return index


def companions_of(sidecar_key: str, listed: set[str], stems: dict[str, list[str]]
                  ) -> list[str]:
    """Files a sidecar describes: `photo.png.xmp` -> photo.png; `photo.xmp` -> every photo.*
    (not photo.raw.png, whose own stem sidecar would be photo.raw.xmp). `stems` is
    stem_index(listed)."""
    base = sidecar_key[: -len(SIDECAR_EXTENSION)]
    if base in listed:
        return [base]
    return list(stems.get(base, ()))


def is_sidecar(key: str) -> bool:
    return key.lower().endswith(SIDECAR_EXTENSION)


_SOURCE_RANK = {"embedded": 1, "sidecar": 2}


def _pick(existing: tuple[Any, str | None, str | None], found: list[tuple[str, Any]],
          location_id: str, priority: Mapping[str, int]) -> tuple[Any, str | None, str | None]:
    """One field's (value, source, origin) after `location_id` reports `found`: its
    (source, value) candidates, best first."""
    _, source, origin = existing
    if source == "user":
        return existing  # what the user set is never overwritten by a scan
    mine = next(((v, s, location_id) for s, v in found), None)
    if source is None or origin is None or origin == location_id:
        return mine or (None, None, None)  # this location's own value: replace or retract
    if mine is None:
        return existing  # another location supplied it; this one has nothing to say
    if _SOURCE_RANK[mine[1]] != _SOURCE_RANK[source]:
        return mine if _SOURCE_RANK[mine[1]] > _SOURCE_RANK[source] else existing
    mine_rank = (priority.get(location_id, 0), location_id)
    theirs_rank = (priority.get(origin, 0), origin)
    return mine if mine_rank > theirs_rank else existing


def merge_metadata(logical_path: str, media: MediaType, existing: FileMeta | None,
                   sidecar: XmpMetadata | None, embedded: XmpMetadata | None,
                   location_id: str, priority: Mapping[str, int]) -> FileMeta:
    """The file's metadata after `location_id`'s scan read its sidecar and embedded XMP.

    DESIGN.md's order: what the user set (never overwritten by a scan), then the sidecar,
    then the embedded packet; each field decided on its own (a sidecar with tags and no rating
    leaves an embedded rating in force). A logical path has replicas in several locations
    scanned concurrently, so each value remembers the location that supplied it: a location
    replaces or retracts its own values, and replaces another's only with a better source or
    the same source from a higher-priority location. The result does not depend on which
    location is scanned first.
    """
    found_tags = [(s, x.tags) for s, x in (("sidecar", sidecar), ("embedded", embedded))
                  if x is not None and x.tags]
    found_quality = [(s, x.rating) for s, x in (("sidecar", sidecar), ("embedded", embedded))
                     if x is not None and x.rating is not None]
    old = existing or FileMeta(logical_path, media.category, media.mime_type)
    tags, tags_source, tags_origin = _pick((old.tags, old.tags_source, old.tags_origin),
                                           found_tags, location_id, priority)
    quality, quality_source, quality_origin = _pick(
        (old.quality, old.quality_source, old.quality_origin), found_quality, location_id,
        priority)
    return FileMeta(logical_path, media.category, media.mime_type, tuple(tags or ()),
                    tags_source, quality, quality_source, tags_origin, quality_origin)


def paths_needing_metadata(examined: Iterable[str], changed_sidecars: Iterable[str],
                           listed: set[str]) -> set[str]:
    """Files whose metadata must be recomputed: those whose content was read, and the
    companions of sidecars that appeared, changed or vanished."""
    needed = {key for key in examined if not is_sidecar(key)}
    changed_sidecars = list(changed_sidecars)
    if changed_sidecars:
        stems = stem_index(listed)
        for sidecar in changed_sidecars:
            needed.update(companions_of(sidecar, listed, stems))
    return needed
