"""Local working copies of object-store files written through the mount.

Writes to an S3/GCS replica go to a staging file in `cache_dir/staging/`; a background worker
uploads it after the file is closed, and only a verified upload that is recorded lets the
staging file go. Each staging file has a manifest naming its location and logical path, so
one left behind by a crash or a plain `fusermount3 -u` is uploaded at the next mount: nothing
written is lost.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from alicefs.backends.base import Backend, WriteResult

MANIFEST_SUFFIX = ".json"


@dataclass(frozen=True)
class StagedFile:
    path: Path
    location_id: str
    logical_path: str
    replaces: str | None  # the object version it was made from (None: a new file)


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
        _update_manifest(path, logical_path=logical_path, replaces=replaces)

    def uploaded(self, path: Path, version: str | None) -> None:
        """An upload of a staging file that stays (still open, or fsync'ed) published
        `version`: the next upload replaces that (blocking)."""
        _update_manifest(path, replaces=version)

    def upload(self, backend: Backend, path: Path, logical_path: str, mtime_ns: int,
               expected_hash: str | None, replaces: str | None) -> WriteResult:
        """Upload a staging file, verified (blocking). The staging file stays.

        It replaces only the version `replaces` (the object the working copy was made from),
        or, with None, only an absent key: whatever else is there now was written by someone
        else, and the upload raises FileExistsError instead of overwriting it."""
        with open(path, "rb") as source:
            if replaces is None:
                return backend.write_atomic(logical_path, source, expected_hash=expected_hash,
                                            mtime_ns=mtime_ns)
            return backend.write_atomic(logical_path, source, expected_hash=expected_hash,
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
            # Data without a manifest: a fill that never finished.
            if not orphan.suffix and not orphan.with_suffix(MANIFEST_SUFFIX).exists():
                orphan.unlink()
        manifests = sorted(self.directory.glob(f"*{MANIFEST_SUFFIX}"),
                           key=lambda p: p.stat().st_mtime_ns)
        for manifest in manifests:
            data = json.loads(manifest.read_text())
            path = manifest.with_suffix("")
            if path.exists():
                found.append(StagedFile(path, data["location_id"], data["logical_path"],
                                        data.get("replaces")))
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
