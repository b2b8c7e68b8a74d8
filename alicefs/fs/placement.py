"""Where new files go (the rules, sidecars with their media file), and re-placement of a
file written through the mount once its final name and size are known."""

from __future__ import annotations

import errno
import logging
import posixpath
import time

from alicefs.catalog import Replica as CatalogReplica
from alicefs.fs.base import OperationsBase, fuse_error
from alicefs.fs.namespace import PROJECTS_VIEW, FileNode, view_path
from alicefs.migrate.plan import MigrationPlan, PlannedTransfer
from alicefs.migrate.run import run_plan
from alicefs.rules import FileAttrs, LocationStatus, PlacementReason, has_room, target_location
from alicefs.scan import SIDECAR_EXTENSION, is_sidecar

log = logging.getLogger(__name__)


class Placement(OperationsBase):
    def _place(self, logical_path: str, size: int, exclude: set[str] = frozenset(),
               current: str | None = None) -> str | None:
        if is_sidecar(logical_path):
            companion = self._companion_location(logical_path, size, exclude, current)
            if companion is not None:
                return companion
        policies = [loc for loc in self.state.locations
                    if self.state.usable(loc.location_id) and loc.location_id not in exclude
                    and self._keeps_name(loc.location_id, logical_path)]
        attrs = FileAttrs.from_name(logical_path, size, time.time())
        placement = target_location(attrs, policies, self.state.free_space, time.time(),
                                    current_location_id=current)
        if placement.reason is PlacementReason.NO_ROOM or placement.location is None:
            return None
        return placement.location.location_id

    def _keeps_name(self, location_id: str, logical_path: str) -> bool:
        """Whether the location stores `logical_path` under exactly that name. Object stores
        may not keep a backslash (SeaweedFS turns it into '/'): such names go elsewhere,
        and are refused where they cannot (docs/cloud.md)."""
        return "\\" not in logical_path or self.state.local(location_id) is not None

    def _check_names_kept(self, node: FileNode, logical_path: str) -> None:
        if any(not self._keeps_name(lid, logical_path) for lid in node.replicas
               if lid in self.state.backends):
            raise fuse_error(errno.EINVAL)

    def _companions(self, sidecar: str) -> list[str]:
        """Projects paths of the files a sidecar describes (`photo.png.xmp` -> photo.png;
        `photo.xmp` -> photo.*), as the scanner pairs them."""
        vbase = view_path(sidecar[: -len(SIDECAR_EXTENSION)])
        if vbase in self.ns.files:
            return [vbase]
        parent, _, stem = vbase.rpartition("/")
        return [f"{parent}/{name}" for name in self.ns.children(PROJECTS_VIEW, parent)
                if posixpath.splitext(name)[0] == stem and not is_sidecar(name)
                and f"{parent}/{name}" in self.ns.files]

    def _companion_location(self, sidecar: str, size: int, exclude: set[str],
                            current: str | None) -> str | None:
        """Where the file a sidecar describes is: the sidecar goes there too, so a photo and
        its tags and rating never end up in different locations."""
        for vpath in self._companions(sidecar):
            location_id = self.state.primary(self.ns.files[vpath])
            if (location_id is not None and location_id not in exclude
                    and self.state.location(location_id).status is LocationStatus.ACTIVE
                    and has_room(self.state.location(location_id),
                                 self.state.free_space.get(location_id), size,
                                 location_id == current)):
                return location_id
        return None

    def _sidecars_of(self, vpath: str) -> list[str]:
        """Projects paths of the sidecars describing the file at `vpath` (none for a
        sidecar itself)."""
        logical = self.ns.files[vpath].logical_path
        if is_sidecar(logical):
            return []
        stem = posixpath.splitext(logical)[0]
        return [view_path(key) for key in (logical + SIDECAR_EXTENSION, stem + SIDECAR_EXTENSION)
                if view_path(key) in self.ns.files]

    async def relocate(self, vpath: str) -> None:
        """Re-place a file created through this mount, now that its final name and size are
        known (applications write `name.tmp` and rename it; rules on type and size need the
        final name). Moving it is cheap: it was just written."""
        node = self.ns.files.get(vpath)
        if node is None or node.created_here is None or node.is_special or \
                self._linked(node):
            return  # hard links stay together where they are
        if self.open_for_writing(node):
            return  # still being written: looked at again on release
        current = node.created_here
        replica = node.replicas.get(current)
        if replica is None or replica.state != "present" or not self.state.usable(current):
            return
        if replica.staged is not None:
            return  # looked at again once its upload is done (upload_staged)
        target = self._place(node.logical_path, replica.size)
        if target is not None and target != current:
            await self._move_replica(node, current, target)
        if self.relocations is not None and self._current_vpath(node) == vpath:
            for sidecar in self._sidecars_of(vpath):  # written before it: they follow it
                await self.relocations.send(sidecar)

    async def _move_replica(self, node: FileNode, source: str, target: str) -> None:
        """Move a file the way migration does (DESIGN.md §5: temp-write, verify, rename,
        record, then delete the source; journaled), under its lock, given up if the file
        changes meanwhile (a rename waits for the move, and the reverse)."""
        replica = node.replicas[source]
        entry = PlannedTransfer(
            node.logical_path, replica.size, replica.mtime_ns, replica.content_hash, source,
            target, True, (CatalogReplica(source, node.logical_path, replica.size,
                                          replica.mtime_ns, replica.content_hash),),
            "placement of a new file")
        (outcome,) = await run_plan(MigrationPlan((entry,), ()), self.state.catalog,
                                    self.state.backends, coordinator=self.mover)
        if outcome.result == "moved":
            log.info("%s placed in %s", node.logical_path, self.state.location(target).name)
        elif outcome.result == "failed":
            log.error("placing %s: %s", node.logical_path, outcome.detail)

    async def place_new_files(self) -> None:
        """Re-place the files queued on `relocations` (written through the mount, renamed,
        or released), one at a time; one failing file never stops the others."""
        async for vpath in self._relocation_queue:
            try:
                await self.relocate(vpath)
            except OSError as exc:
                log.error("placing %s: %s", vpath, exc)
            except Exception:
                log.exception("placing %s failed unexpectedly", vpath)
