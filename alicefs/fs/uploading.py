"""Uploads of staged files to S3/GCS: a snapshot of the staging file published only over
the version it was made from, conflicts kept under a new name, unreachable stores retried."""

from __future__ import annotations

import errno
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import trio

from alicefs.backends.base import (
    LocationUnavailableError,
    ObjectInfo,
    RetriesExhaustedError,
    WriteResult,
)
from alicefs.fs.base import Handle, OperationsBase
from alicefs.fs.namespace import FileNode, Replica, view_path
from alicefs.fs.staging import Snapshot, StagedFile
from alicefs.layout import conflict_name
from alicefs.media import classify_name

log = logging.getLogger(__name__)

MAX_CONFLICT_NAMES = 100  # conflict copies of one file made in the same second


class Uploading(OperationsBase):
    async def upload_staged(self, vpath: str, location_id: str,
                            from_handle: Handle | None = None) -> None:
        """Upload a snapshot of a staging file and, once verified and recorded, let the
        staging file go. With `from_handle` (fsync) the content of the open file as of now
        is made durable in the store and the working copy stays for the handle.

        Writes that land while the upload runs are not in it: the file then stays staged
        and queued, and another upload of the newer content follows (DESIGN.md §3)."""
        node = self.ns.files.get(vpath)
        if node is None:
            self.uploads.done((vpath, location_id))
            return
        # Uploads, renames and unlinks of one file never interleave: an upload finishing
        # under an old name after a rename, or after an unlink, would lose or resurrect it.
        async with self.lock_for(node):
            replica = node.replicas.get(location_id)
            staged = from_handle.staged if from_handle and from_handle.staged else (
                replica.staged if replica else None)
            if self._current_vpath(node) != vpath:
                # Renamed away or replaced while it waited for the lock: the key now belongs
                # to whatever file is there (its upload is looked at afresh), or to none.
                now = self.ns.files.get(vpath)
                there = now.replicas.get(location_id) if now is not None else None
                if there is not None and there.staged is not None:
                    self.uploads.request((vpath, location_id))
                else:
                    self.uploads.done((vpath, location_id))
                return
            if replica is None or staged is None:
                self.uploads.done((vpath, location_id))
                return
            if from_handle is None and not self.uploads.closing and any(
                    h.node is node and h.writable and h.staged == staged
                    for h in self._handles.values()):
                self.uploads.hold((vpath, location_id))
                return  # being written again: requested again when that handle is released
            version = node.version
            mtime_ns = replica.mtime_ns
            snapshot = await self._thread(None, self.staging.snapshot, staged)
            try:
                result = await self._upload_snapshot(node, location_id, staged, snapshot,
                                                     mtime_ns, version)
            finally:
                await trio.to_thread.run_sync(snapshot.discard)
            if result is None:
                return  # ours was kept under a conflict name (see _keep_conflict)
            replica.change_token = result.info.change_token
            current = node.version == version and replica.staged in (staged, None)
            if current:
                replica.size = result.info.size
                replica.content_hash = result.content_hash
                replica.unsent = False
                self.record(node, location_id)
            still_needed = self._staging_in_use(staged)
            if from_handle is None and current and not still_needed:
                replica.staged = None
                await self._db(self.state.queue.flush)
                await trio.to_thread.run_sync(self.staging.discard, staged)
                if node.created_here is not None and self.relocations is not None:
                    self.relocations.send_nowait(vpath)  # its placement may now be decided
            else:
                # The next upload replaces the version just published, nothing else.
                await trio.to_thread.run_sync(self.staging.uploaded, staged,
                                              replica.change_token)
            if current:
                self.uploads.done((vpath, location_id))
            elif not still_needed or self.uploads.closing:
                self.uploads.request((vpath, location_id))  # written meanwhile: again
            else:
                self.uploads.hold((vpath, location_id))

    async def _upload_snapshot(self, node: FileNode, location_id: str, staged: Path,
                               snapshot: Snapshot, mtime_ns: int, version: int
                               ) -> WriteResult | None:
        """Publish a snapshot as the replica's new version; None when another writer had
        replaced the object meanwhile and ours went to a conflict name."""
        backend = self.state.backend(location_id)
        replica = node.replicas[location_id]
        # What an earlier attempt may have published without our hearing of it, then this
        # one: an upload whose answer is lost must not make the next one a false conflict.
        attempted = replica.attempted_hash
        await trio.to_thread.run_sync(self.staging.attempting, staged, snapshot.content_hash)
        replica.attempted_hash = snapshot.content_hash
        try:
            return await self._thread(location_id, self.staging.upload, backend, snapshot,
                                      node.logical_path, mtime_ns, replica.change_token)
        except (LocationUnavailableError, RetriesExhaustedError) as exc:
            self.unreachable(location_id, exc)
            raise
        except FileExistsError:
            pass
        collision = await self._thread(
            location_id, _settle_collision, backend, snapshot, node.logical_path,
            mtime_ns, self.state.location(location_id).name, attempted)
        if collision.conflict_key is None:
            return collision.ours
        written = node.version != version
        vpath = view_path(node.logical_path)
        self._keep_conflict(node, location_id, staged, collision)
        self.uploads.done((vpath, location_id))
        await self._db(self.state.queue.flush)
        copy_key = (view_path(collision.conflict_key), location_id)
        open_on_it = any(h.staged == staged for h in self._handles.values())
        if not (open_on_it or written):
            await trio.to_thread.run_sync(self.staging.discard, staged)
            return None
        # Still being written, or written during the upload: the staging file is the
        # conflict copy's newer content, and a crash before its next upload must resume it
        # there, not under the other's name.
        copy_replica = self.ns.files[copy_key[0]].replicas[location_id]
        copy_replica.staged, copy_replica.unsent = staged, written
        await trio.to_thread.run_sync(self.staging.renamed, staged, collision.conflict_key,
                                      collision.ours.info.change_token)
        if open_on_it:
            self.uploads.hold(copy_key)
        else:
            self.uploads.request(copy_key)
        return None

    def unreachable(self, location_id: str, exc: OSError) -> None:
        """A request to the location found it unreachable: until a probe sees it back
        (daemon._bring_back), reads of it fail at once instead of each waiting out the
        retry deadline, and nothing new is placed there."""
        if location_id not in self.state.unavailable:
            log.warning("location %s is unreachable: %s", self.state.location(location_id).name,
                        exc)
            self.state.unavailable[location_id] = f"unreachable: {exc.strerror or exc}"

    def _keep_conflict(self, node: FileNode, location_id: str, staged: Path,
                       collision: Collision) -> None:
        """Someone else replaced the object while this mount's version of it waited for its
        upload: theirs keeps the name, ours was uploaded beside it under a conflict name
        (DESIGN.md §6). Handles still open on ours follow it there."""
        ours, theirs, conflict_key = collision.ours, collision.theirs, collision.conflict_key
        vpath = view_path(node.logical_path)
        before = self.ns.views_of(vpath)
        node.replicas[location_id] = Replica(theirs.size, theirs.mtime_ns, theirs.content_hash,
                                             change_token=theirs.change_token)
        self.record(node, location_id)
        node.version += 1
        node.ctime_ns = max(node.ctime_ns, time.time_ns())
        self.ns.reindex(vpath, before)
        copy = FileNode(conflict_key, {location_id: Replica(
            ours.info.size, ours.info.mtime_ns, ours.content_hash,
            change_token=ours.info.change_token)}, node.category, node.mime_type,
            mode=node.mode, uid=node.uid, gid=node.gid, ctime_ns=time.time_ns())
        self.ns.add_file(copy)
        self.record(copy, location_id)
        for handle in self._handles.values():
            if handle.node is node and handle.staged == staged:
                handle.node = copy
                handle.vpath = view_path(conflict_key)
                copy.replicas[location_id].staged = staged
        log.warning("%s in %s was replaced by another writer before this mount's version "
                    "was uploaded: theirs keeps the name, ours is kept as %s",
                    node.logical_path, self.state.location(location_id).name, conflict_key)

    def adopt_staged(self, staged: StagedFile) -> str:
        """Show a staging file left by an earlier run as the current content of its replica
        (it is newer than the object store). Returns its projects path."""
        st = os.stat(staged.path)
        vpath = view_path(staged.logical_path)
        node = self.ns.files.get(vpath)
        if node is None:
            media = classify_name(staged.logical_path)
            node = FileNode(staged.logical_path, {}, media.category, media.mime_type,
                            uid=self.ns.uid, gid=self.ns.gid, ctime_ns=st.st_mtime_ns)
            node.replicas[staged.location_id] = Replica(st.st_size, st.st_mtime_ns)
            self.ns.add_file(node)
        before = self.ns.views_of(vpath)
        replica = node.replicas.setdefault(staged.location_id,
                                           Replica(st.st_size, st.st_mtime_ns))
        replica.size, replica.mtime_ns, replica.state = st.st_size, st.st_mtime_ns, "present"
        replica.content_hash, replica.staged, replica.unsent = None, staged.path, True
        replica.change_token, replica.attempted_hash = staged.replaces, staged.attempted
        self.ns.reindex(vpath, before)
        return vpath


@dataclass(frozen=True)
class Collision:
    """How an upload that found its key taken was settled (see _settle_collision)."""

    ours: WriteResult  # where our content now is
    conflict_key: str | None  # None: ours is at the file's own name after all
    theirs: ObjectInfo | None  # what holds the file's name, when ours does not


def _settle_collision(backend: Any, snapshot: Snapshot, logical_path: str, mtime_ns: int,
                      location_name: str, attempted: str | None) -> Collision:
    """An upload found its key holding a version it may not replace (blocking). If that is
    our content after all (an upload whose answer a crash lost), it counts as uploaded; if
    it is what an earlier attempt of ours sent (`attempted`), ours replaces it; otherwise
    ours is uploaded beside it under a conflict name, and nothing is overwritten."""
    ours = snapshot.content_hash
    try:
        theirs = backend.stat(logical_path)
    except FileNotFoundError:
        # Deleted meanwhile: ours is the only version left, and takes the name back unless
        # yet another one appears first.
        with snapshot.open() as source:
            result = backend.write_atomic(logical_path, source, expected_hash=ours,
                                          mtime_ns=mtime_ns)
        return Collision(result, None, None)
    if theirs.content_hash == ours:
        return Collision(WriteResult(theirs, ours), None, None)
    if theirs.content_hash is not None and theirs.content_hash == attempted:
        # An earlier upload of ours whose answer was lost (a timeout, a crash) did publish:
        # that version is ours to replace.
        try:
            with snapshot.open() as source:
                result = backend.write_atomic(logical_path, source, expected_hash=ours,
                                              mtime_ns=mtime_ns, replaces=theirs.change_token)
            return Collision(result, None, None)
        except FileExistsError:
            theirs = backend.stat(logical_path)  # someone else's after all, meanwhile
    when = datetime.now()
    for attempt in range(MAX_CONFLICT_NAMES):
        conflict_key = conflict_name(logical_path, when, location_name, attempt)
        try:
            with snapshot.open() as source:
                result = backend.write_atomic(conflict_key, source, expected_hash=ours,
                                              mtime_ns=mtime_ns)
        except FileExistsError:
            continue
        return Collision(result, conflict_key, theirs)
    raise OSError(errno.EEXIST, f"no free conflict name for {logical_path!r} in "
                                f"{location_name}")
