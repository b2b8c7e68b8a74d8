"""What a scan has to do, decided without I/O: which listed files are new or changed, which
cataloged ones vanished, which sidecars describe which files, and how metadata from the user,
sidecars and embedded XMP combine. alicefs/scanner.py does the I/O."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field

from alicefs.backends.base import ObjectInfo
from alicefs.catalog import FileMeta
from alicefs.media import MediaType
from alicefs.xmp import XmpMetadata

UNSORTED = "_unsorted"
SIDECAR_EXTENSION = ".xmp"

# (size, mtime_ns, inode, change_token, state, content_hash), as Catalog.replica_signatures
Signature = tuple[int, int, "int | None", "str | None", str, "str | None"]


def project_of(logical_path: str) -> str:
    """The first path component; a file directly at a location's root is in `_unsorted`."""
    head, sep, _ = logical_path.partition("/")
    return head if sep else UNSORTED


def is_unchanged(signature: Signature, info: ObjectInfo) -> bool:
    """Can the cataloged content hash be trusted for this listed file without reading it?

    Local files: same size, mtime and inode (a file replaced by rename gets a new inode even
    with the same size and mtime). Object stores: same size and change token (ETag or
    generation), which change whenever the content does.
    """
    size, mtime_ns, inode, token, _state, content_hash = signature
    if content_hash is None or info.size != size:
        return False
    if info.change_token is not None or token is not None:
        return info.change_token == token
    return info.mtime_ns == mtime_ns and info.inode == inode


@dataclass
class ListingComparer:
    """Compares a location's listing, fed in batches as it arrives, with the catalog."""

    known: dict[str, Signature]
    force: bool = False
    new_files: int = 0
    changed_files: int = 0
    unchanged_files: int = 0
    files: int = 0
    bytes: int = 0
    reappeared: list[ObjectInfo] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)

    def add(self, batch: Iterable[ObjectInfo]) -> list[ObjectInfo]:
        """Account for a batch of listed files; returns those whose content must be read."""
        to_examine = []
        known = self.known
        for info in batch:
            self.files += 1
            self.bytes += info.size
            self._seen.add(info.key)
            signature = known.get(info.key)
            if signature is None:
                self.new_files += 1
                to_examine.append(info)
            elif self.force or not is_unchanged(signature, info):
                self.changed_files += 1
                to_examine.append(info)
            else:
                self.unchanged_files += 1
                if signature[4] != "present":
                    self.reappeared.append(info)
        return to_examine

    def vanished(self) -> list[str]:
        """Cataloged as present, not listed: now missing. Call after the last batch."""
        return [key for key, sig in self.known.items()
                if sig[4] == "present" and key not in self._seen]

    @property
    def listed_keys(self) -> set[str]:
        return self._seen


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


def merge_metadata(logical_path: str, media: MediaType, existing: FileMeta | None,
                   sidecar: XmpMetadata | None, embedded: XmpMetadata | None) -> FileMeta:
    """The file's metadata from every source, in DESIGN.md's order: what the user set (never
    overwritten by a scan), then the sidecar, then the embedded packet. Each field is decided
    on its own: a sidecar with tags and no rating leaves an embedded rating in force."""
    tags: tuple[str, ...] = ()
    tags_source: str | None = None
    quality: int | None = None
    quality_source: str | None = None
    if existing is not None and existing.tags_source == "user":
        tags, tags_source = existing.tags, "user"
    else:
        for source, found in (("sidecar", sidecar), ("embedded", embedded)):
            if found is not None and found.tags:
                tags, tags_source = found.tags, source
                break
    if existing is not None and existing.quality_source == "user":
        quality, quality_source = existing.quality, "user"
    else:
        for source, found in (("sidecar", sidecar), ("embedded", embedded)):
            if found is not None and found.rating is not None:
                quality, quality_source = found.rating, source
                break
    return FileMeta(logical_path, media.category, media.mime_type, tags, tags_source, quality,
                    quality_source)


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
