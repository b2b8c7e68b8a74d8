"""Content hashes computed when something needs them.

A scan catalogs an object of S3 or GCS from its listing alone — size, ETag or generation, and
the hash alicefs keeps in the metadata of what it wrote — because hashing a bucket other
tools filled would mean downloading all of it. What compares contents hashes the replicas it
must compare first, here: migration and sync before deciding whether the replicas of a file
agree, `duplicates` before grouping equal contents. Each replica is read as the version
cataloged (a local file that changed, an object with another ETag or generation, is left for
the next scan), and what was found is recorded. Two replicas are never taken to hold the same
content unless both hashes are known and equal (docs/design-decisions.md, "Lazy hashing").
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import trio

from alicefs.backends import Backend
from alicefs.backends.objectstore import ObjectStoreBackend
from alicefs.backends.threaded import ThreadedBackend
from alicefs.catalog import Catalog, Replica
from alicefs.hashing import hash_fd, hash_stream
from alicefs.transfer.replace import info_of

if TYPE_CHECKING:
    from alicefs.migrate.plan import CatalogFile


def hash_as_cataloged(backend: Backend, replica: Replica) -> str | None:
    """The content hash of `replica`, read from `backend` only while the file is still what
    the catalog says (None when it changed or went: the next scan looks at it again)."""
    if isinstance(backend, ObjectStoreBackend):
        if replica.change_token is None:
            return None
        try:
            with backend.open_version(info_of(replica)) as stream:
                return hash_stream(stream)
        except OSError as exc:
            if exc.errno == errno.ESTALE or isinstance(exc, FileNotFoundError):
                return None
            raise
    try:
        stream = backend.open_read(replica.logical_path)
    except FileNotFoundError:
        return None
    with stream:
        # The file opened must be the one cataloged, unchanged while it was read.
        before = os.fstat(stream.fileno())
        found = hash_fd(stream.fileno())
        after = os.fstat(stream.fileno())
    same = (before.st_size, before.st_mtime_ns, before.st_ino) == (
        after.st_size, after.st_mtime_ns, after.st_ino) == (
        replica.size, replica.mtime_ns, replica.inode or after.st_ino)
    return found if same else None


async def hash_replicas(replicas: Sequence[Replica],
                        backends: Mapping[str, ThreadedBackend]) -> list[Replica]:
    """`replicas` with their hashes, read in parallel under each location's limit; those
    that changed, went, or could not be read are left out."""
    found: list[Replica] = []

    async def one(replica: Replica) -> None:
        tb = backends[replica.location_id]
        try:
            digest = await tb.run(hash_as_cataloged, tb.backend, replica)
        except OSError:
            return  # unreadable now: still unhashed, so never taken to equal anything
        if digest is not None:
            found.append(replace(replica, content_hash=digest))

    async with trio.open_nursery() as nursery:
        for replica in replicas:
            nursery.start_soon(one, replica)
    return found


def to_compare(files: Iterable[CatalogFile], usable: frozenset[str]) -> list[Replica]:
    """Present replicas without a hash, on usable locations, of files with several replicas
    (in any state: a stale one is brought level from a present one, and once level their
    agreement becomes the base only if both hashes are known)."""
    return [r for file in files if len(file.replicas) > 1 for r in file.replicas
            if r.state == "present" and r.content_hash is None and r.location_id in usable]


def duplicate_candidates(replicas: Iterable[Replica], usable: frozenset[str]) -> list[Replica]:
    """Present replicas without a hash, on usable locations, whose size another present
    replica has: one content stored twice has one size, so only these can be duplicates the
    catalog does not know of yet."""
    present = [r for r in replicas if r.state == "present"]
    sizes: dict[int, int] = {}
    for replica in present:
        sizes[replica.size] = sizes.get(replica.size, 0) + 1
    return [r for r in present if r.content_hash is None and r.location_id in usable
            and sizes[r.size] > 1]


def with_hashes(files: Sequence[CatalogFile], hashed: Sequence[Replica]) -> list[CatalogFile]:
    """`files` with the replicas in `hashed` in place of the cataloged ones."""
    if not hashed:
        return list(files)
    by_key = {(r.logical_path, r.location_id): r for r in hashed}
    return [replace(f, replicas=tuple(by_key.get((r.logical_path, r.location_id), r)
                                      for r in f.replicas))
            if any((f.logical_path, r.location_id) in by_key for r in f.replicas) else f
            for f in files]


async def record(catalog: Catalog, hashed: Sequence[Replica]) -> None:
    """Keep the hashes found; files whose replicas now all agree get their sync base."""
    if not hashed:
        return
    await trio.to_thread.run_sync(catalog.add_hashes, hashed)
    await trio.to_thread.run_sync(catalog.settle_sync_bases,
                                  sorted({r.logical_path for r in hashed}))
