"""A verified copy of one file between two locations (blocking).

The target is written under a temporary name (local) or published only complete (object
stores), checked against the hash of what was read, and only then appears under its name;
without `overwrite` an existing key is never replaced (FileExistsError). Within one object
store the copy is server-side: the bytes never leave the store.
"""

from __future__ import annotations

from alicefs.backends.base import Backend, IntegrityError, WriteResult
from alicefs.backends.local import LocalBackend
from alicefs.backends.objectstore import ObjectStoreBackend
from alicefs.hashing import hash_stream
from alicefs.transfer.pace import PacedReader, Pacer


def content_hash_of(backend: Backend, key: str) -> str:
    """The BLAKE3 hash of the file at `key`, read in full."""
    with backend.open_read(key) as stream:
        return hash_stream(stream)


def holds(backend: Backend, key: str, expected_hash: str | None) -> bool:
    """Whether the file at `key` has the content `expected_hash` (by the store's hash
    metadata when it has some, else by reading it)."""
    if expected_hash is None:
        return False
    try:
        info = backend.stat(key)
    except FileNotFoundError:
        return False
    if info.content_hash is not None:
        return info.content_hash == expected_hash
    return content_hash_of(backend, key) == expected_hash


def verified_copy(source: Backend, target: Backend, key: str, *, expected_hash: str,
                  mtime_ns: int | None = None, overwrite: bool = False,
                  pacer: Pacer | None = None) -> WriteResult:
    """Copy `key` from `source` to `target`, published only when what landed hashes to
    `expected_hash` (IntegrityError otherwise, nothing published). The copy keeps `mtime_ns`
    and reads no faster than `pacer` allows. Between two local locations the kernel copies
    (copy_file_range), unless paced; between two locations of one object store the store
    copies (no bytes through this machine, not paced)."""
    if (isinstance(source, LocalBackend) and isinstance(target, LocalBackend)
            and not overwrite and pacer is None):
        return target.copy_from(source, key, expected_hash=expected_hash, mtime_ns=mtime_ns)
    if (isinstance(source, ObjectStoreBackend) and isinstance(target, ObjectStoreBackend)
            and not overwrite and target.same_store(source)):
        result = target.copy_within(key, key, source=source)
        if result.content_hash != expected_hash:
            target.delete(key)  # ours: published just now, where nothing was
            raise IntegrityError(f"{key!r}: the source is no longer the content planned")
        return result
    with source.open_read(key) as stream:
        data = stream if pacer is None else PacedReader(stream, pacer)
        return target.write_atomic(key, data, expected_hash=expected_hash,
                                   mtime_ns=mtime_ns, overwrite=overwrite)


def rename_within(backend: ObjectStoreBackend, old: str, new: str) -> WriteResult:
    """Rename on an object store: a server-side copy (verified by the store's size and the
    hash metadata; the bytes never leave it), then the old key is deleted. Replaces what is
    at `new` (a rename does)."""
    result = backend.copy_within(old, new, overwrite=True)
    backend.delete(old)
    return result
