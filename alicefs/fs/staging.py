"""Local working copies of object-store files written through the mount.

Writes to an S3/GCS replica go to a staging file in `cache_dir/staging/`; a background worker
uploads it after the file is closed, and only a verified upload that is recorded lets the
staging file go. Each staging file has a manifest naming its location and logical path, so
one left behind by a crash or a plain `fusermount3 -u` is uploaded at the next mount: nothing
written is lost.

An upload sends a snapshot (`Staging.snapshot`), never the staging file itself: the file may
be written again while its upload runs, and the hash announced to the store must be the hash
of exactly what is sent. Newer writes are the next upload's business.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from alicefs.backends.base import Backend, WriteResult
from alicefs.hashing import hash_bytes, new_hasher

MANIFEST_SUFFIX = ".json"
SNAPSHOT_SUFFIX = ".upload"
#: Snapshots up to this size are held in memory (one per upload worker), larger ones copied.
SNAPSHOT_IN_MEMORY = 8 << 20
_COPY_BUFFER = 1 << 20


@dataclass(frozen=True)
class Snapshot:
    """The content of a staging file at one moment, with its hash: what one upload sends.
    Small files are held in memory (`data`), larger ones copied beside the staging file."""

    content_hash: str
    size: int
    data: bytes | None = None
    path: Path | None = None

    def open(self) -> BinaryIO:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")

    def discard(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class StagedFile:
    path: Path
    location_id: str
    logical_path: str
    replaces: str | None  # the object version it was made from (None: a new file)
    attempted: str | None = None  # hash of an upload tried, perhaps published (see below)


class Staging:
    def __init__(self, directory: Path):
        self.directory = directory

    def create(self, location_id: str, logical_path: str,
               fill: Callable[[BinaryIO], None] | None = None, replaces: str | None = None
               ) -> Path:
        """A staging file, filled by `fill` (the content of the object version `replaces`)
        or empty, with its manifest written last (blocking). A fill interrupted by an error
        or a crash leaves no manifest, so a half-downloaded copy is never taken for newer
        content. The manifest keeps `replaces`, so an upload resumed after a crash replaces
        only that version, whatever a scan saw meanwhile."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / uuid.uuid4().hex
        try:
            with open(path, "xb") as out:
                os.chmod(path, 0o600)
                if fill is not None:
                    fill(out)
                    out.flush()
                    os.fsync(out.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        _write_manifest(path, {"location_id": location_id, "logical_path": logical_path,
                               "replaces": replaces})
        return path

    def renamed(self, path: Path, logical_path: str, replaces: str | None) -> None:
        """The file was renamed before its upload (replacing the version `replaces` of the
        new name, or nothing): the manifest follows (blocking)."""
        _update_manifest(path, logical_path=logical_path, replaces=replaces, attempted=None)

    def attempting(self, path: Path, content_hash: str) -> None:
        """An upload of content `content_hash` starts (blocking): if its answer is lost (a
        timeout, a crash) and the store holds this hash, that version is ours to replace."""
        _update_manifest(path, attempted=content_hash)

    def uploaded(self, path: Path, version: str | None) -> None:
        """An upload of a staging file that stays (still open, or fsync'ed) published
        `version`: the next upload replaces that (blocking)."""
        _update_manifest(path, replaces=version)

    def snapshot(self, path: Path) -> Snapshot:
        """What the staging file holds now, hashed as it is read (blocking). Writes that come
        while it is taken may be in it or not; their writer sees to a later upload."""
        with open(path, "rb", buffering=0) as source:
            if os.fstat(source.fileno()).st_size <= SNAPSHOT_IN_MEMORY:
                data = source.readall()
                if len(data) <= SNAPSHOT_IN_MEMORY:
                    return Snapshot(hash_bytes(data), len(data), data=data)
                source.seek(0)  # grew meanwhile: copied like any large file
            copy = path.with_suffix(SNAPSHOT_SUFFIX)
            hasher, size = new_hasher(), 0
            buffer = bytearray(_COPY_BUFFER)
            view = memoryview(buffer)
            try:
                with open(copy, "wb") as out:
                    while count := source.readinto(buffer):
                        hasher.update(view[:count])
                        out.write(view[:count])
                        size += count
            except BaseException:
                copy.unlink(missing_ok=True)
                raise
        return Snapshot(hasher.hexdigest(), size, path=copy)

    def upload(self, backend: Backend, snapshot: Snapshot, logical_path: str, mtime_ns: int,
               replaces: str | None) -> WriteResult:
        """Upload a snapshot of a staging file, verified against its hash (blocking).

        It replaces only the version `replaces` (the object the working copy was made from),
        or, with None, only an absent key: whatever else is there now was written by someone
        else, and the upload raises FileExistsError instead of overwriting it."""
        with snapshot.open() as source:
            if replaces is None:
                return backend.write_atomic(logical_path, source,
                                            expected_hash=snapshot.content_hash,
                                            mtime_ns=mtime_ns)
            return backend.write_atomic(logical_path, source,
                                        expected_hash=snapshot.content_hash,
                                        mtime_ns=mtime_ns, replaces=replaces)

    def discard(self, path: Path) -> None:
        """The upload is verified and recorded: let the working copy go (blocking)."""
        path.with_suffix(MANIFEST_SUFFIX).unlink(missing_ok=True)
        path.unlink(missing_ok=True)

    def leftovers(self) -> list[StagedFile]:
        """Staging files of earlier runs, oldest first (blocking)."""
        if not self.directory.is_dir():
            return []
        found = []
        for orphan in self.directory.iterdir():
            # Data without a manifest (a fill that never finished) and upload snapshots.
            if orphan.suffix == SNAPSHOT_SUFFIX or (
                    not orphan.suffix and not orphan.with_suffix(MANIFEST_SUFFIX).exists()):
                orphan.unlink()
        manifests = sorted(self.directory.glob(f"*{MANIFEST_SUFFIX}"),
                           key=lambda p: p.stat().st_mtime_ns)
        for manifest in manifests:
            data = json.loads(manifest.read_text())
            path = manifest.with_suffix("")
            if path.exists():
                found.append(StagedFile(path, data["location_id"], data["logical_path"],
                                        data.get("replaces"), data.get("attempted")))
            else:
                manifest.unlink()
        return found


def _write_manifest(path: Path, data: dict[str, str | None]) -> None:
    manifest = path.with_suffix(MANIFEST_SUFFIX)
    temp = manifest.with_suffix(".tmp")
    temp.write_text(json.dumps(data))
    os.replace(temp, manifest)


def _update_manifest(path: Path, **changes: str | None) -> None:
    data = json.loads(path.with_suffix(MANIFEST_SUFFIX).read_text())
    _write_manifest(path, {**data, **changes})
