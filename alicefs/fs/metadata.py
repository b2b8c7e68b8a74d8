"""Extended attributes (tags, ratings, locations, sync state) and the .alicefs status
files."""

from __future__ import annotations

import errno
import json
from typing import Any

import pyfuse3

from alicefs.catalog import Replica as CatalogReplica
from alicefs.fs.base import OperationsBase, fuse_error, fuse_errors
from alicefs.fs.namespace import STATUS_VIEW, FileNode
from alicefs.model import LocationType
from alicefs.rules import LocationStatus, SpaceInfo
from alicefs.sync.state import SyncState, classify

XATTR_TAGS = b"user.alicefs.tags"
XATTR_QUALITY = b"user.alicefs.quality"
XATTR_LOCATIONS = b"user.alicefs.locations"
XATTR_SYNC = b"user.alicefs.sync"
XATTR_XDG_TAGS = b"user.xdg.tags"
XATTR_BALOO_RATING = b"user.baloo.rating"
WRITABLE_XATTRS = (XATTR_TAGS, XATTR_QUALITY, XATTR_XDG_TAGS, XATTR_BALOO_RATING)
ALL_XATTRS = (*WRITABLE_XATTRS, XATTR_LOCATIONS, XATTR_SYNC)
SYNC_LISTED = 100  # files listed per state in .alicefs/sync.json


class Metadata(OperationsBase):
    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not self.state.options.xattrs:
            raise fuse_error(errno.ENOSYS)  # the kernel stops asking for the rest of the mount
        if name not in ALL_XATTRS:
            raise fuse_error(_unsupported_or_absent(name))
        _, _, node = self._file(inode)
        if name in (XATTR_TAGS, XATTR_XDG_TAGS):
            if not node.tags:
                raise fuse_error(pyfuse3.ENOATTR)
            return ",".join(node.tags).encode()
        if name == XATTR_QUALITY:
            if node.quality is None:
                raise fuse_error(pyfuse3.ENOATTR)
            return str(node.quality).encode()
        if name == XATTR_BALOO_RATING:
            if node.quality is None:
                raise fuse_error(pyfuse3.ENOATTR)
            return str(node.quality * 2).encode()
        if name == XATTR_LOCATIONS:
            names = [self.state.location(lid).name for lid, r in node.replicas.items()
                     if r.state != "missing"]
            return ",".join(names).encode()
        return (await self._sync_state(node)).encode()

    async def _sync_state(self, node: FileNode) -> str:
        """The file's sync state (DESIGN.md §6) from what the mount knows of its replicas
        and the base the catalog holds."""
        if any(r.staged is not None for r in node.replicas.values()):
            return SyncState.PENDING_UPLOAD.value  # its newest content is not in the store yet
        base = await self._db(self.state.queue.catalog.sync_base, node.logical_path)
        replicas = [CatalogReplica(location_id, node.logical_path, r.size, r.mtime_ns,
                                   r.content_hash, None, r.change_token, r.state)
                    for location_id, r in node.replicas.items()]
        return classify(node.logical_path, replicas, base).state.value

    async def refresh_sync_status(self) -> None:
        """Recompute .alicefs/sync.json from the catalog (in a worker thread): counts per
        state and, per state that needs attention, the first files in it."""
        if self.sync is None:
            return
        await self._db(self.state.queue.flush)
        # Newest content waiting for its upload: the catalog does not know it yet.
        waiting = {self.ns.files[vpath].logical_path for vpath in self.uploads.paths()
                   if vpath in self.ns.files}
        report = await self.sync.report()
        states = {f.logical_path: f.state for f in report.files}
        states.update((path, SyncState.PENDING_UPLOAD) for path in waiting)
        counts = {state.value: 0 for state in SyncState}
        listed: dict[str, list[str]] = {}
        for path, state in sorted(states.items()):
            counts[state.value] += 1
            if state is not SyncState.SYNCED and len(listed.get(state.value, ())) < SYNC_LISTED:
                listed.setdefault(state.value, []).append(path)
        data = {"files": len(states), "states": counts, "not_synced": listed}
        self.sync_status = (json.dumps(data, indent=2) + "\n").encode()

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        if not self.state.options.xattrs:
            raise fuse_error(errno.ENOSYS)
        entry = self.ns.entry(inode)
        if entry is None or self._exists(entry.view, entry.vpath) != "file" or \
                entry.view == STATUS_VIEW:
            return []
        node = self.ns.files[entry.vpath]
        names = [XATTR_LOCATIONS, XATTR_SYNC]
        if node.tags:
            names += [XATTR_TAGS, XATTR_XDG_TAGS]
        if node.quality is not None:
            names += [XATTR_QUALITY, XATTR_BALOO_RATING]
        return names

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes,
                       ctx: pyfuse3.RequestContext) -> None:
        if not self.state.options.xattrs:
            raise fuse_error(errno.ENOSYS)
        view, _, node = self._file(inode)
        if view.startswith("l:"):
            raise fuse_error(errno.EROFS)
        if name in (XATTR_LOCATIONS, XATTR_SYNC):
            raise fuse_error(errno.EPERM)
        if name not in WRITABLE_XATTRS:
            raise fuse_error(errno.ENOTSUP)
        text = value.decode("utf-8", "replace").strip().rstrip("\0")
        if name in (XATTR_TAGS, XATTR_XDG_TAGS):
            tags: list[str] = []
            for tag in (t.strip() for t in text.split(",")):
                if tag and tag.casefold() not in {t.casefold() for t in tags}:
                    tags.append(tag)
            node.tags = tuple(tags)
        else:
            try:
                number = int(float(text))
            except ValueError:
                raise fuse_error(errno.EINVAL) from None
            stars = number // 2 if name == XATTR_BALOO_RATING else number
            if not 0 <= stars <= 5 or (name == XATTR_BALOO_RATING and not 0 <= number <= 10):
                raise fuse_error(errno.EINVAL)
            node.quality = stars
        self._record_metadata(node)

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        if not self.state.options.xattrs:
            raise fuse_error(errno.ENOSYS)
        view, _, node = self._file(inode)
        if view.startswith("l:"):
            raise fuse_error(errno.EROFS)
        if name in (XATTR_TAGS, XATTR_XDG_TAGS):
            node.tags = ()
        elif name in (XATTR_QUALITY, XATTR_BALOO_RATING):
            node.quality = None
        elif name in ALL_XATTRS:
            raise fuse_error(errno.EPERM)
        else:
            raise fuse_error(pyfuse3.ENOATTR)
        self._record_metadata(node)

    def _staged_size(self, key: tuple[str, str]) -> int | None:
        node = self.ns.files.get(key[0])
        replica = node.replicas.get(key[1]) if node is not None else None
        return replica.size if replica is not None else None

    def _status(self, name: str) -> bytes:
        state = self.state
        if name == "locations.json":
            data: Any = [{
                "location_id": loc.location_id, "name": loc.name, "type": loc.type.value,
                "priority": loc.priority, "status": loc.status.value,
                "state": ("offline" if loc.status is LocationStatus.OFFLINE
                          or loc.location_id in state.unavailable else "online"),
                "reason": state.unavailable.get(loc.location_id),
                "free_bytes": (state.free_space.get(loc.location_id) or SpaceInfo(-1, -1)
                               ).free_bytes if loc.type is LocationType.LOCAL else None,
            } for loc in state.locations]
        elif name == "sync.json":
            return self.sync_status
        else:
            data = {"catalog_changes_pending": state.queue.pending,
                    "uploads_pending": len(self.uploads),
                    "uploads_failing": self.uploads.failures(),
                    "uploads": self.uploads.status(self._staged_size),
                    "open_files": len(self._handles)}
        return (json.dumps(data, indent=2) + "\n").encode()


def _unsupported_or_absent(name: bytes) -> int:
    """Security labels and ACLs are not supported here, and saying so (ENOTSUP rather than
    "no such attribute") lets `ls -l` and other coreutils stop asking for them on every file
    of the listing: they cache "unsupported" per filesystem. This is what makes `ls -lR` with
    xattrs on nearly as fast as with them off."""
    if name.startswith((b"security.", b"system.", b"trusted.")):
        return errno.EOPNOTSUPP
    return pyfuse3.ENOATTR

