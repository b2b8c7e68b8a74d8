"""The mount process: the FUSE session and, in one trio nursery, its background services —
catalog write-behind, free-space refresh, periodic scans and re-placement of new files."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio

from alicefs.catalog import Catalog
from alicefs.config import Settings
from alicefs.errors import UsageError
from alicefs.fs.operations import AliceOperations
from alicefs.fs.state import (
    MountOptions,
    MountState,
    apply_catalog_view,
    build_state,
    read_catalog_view,
    refresh_free_space,
)
from alicefs.scanner import MultiPathScanner

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
SPACE_INTERVAL = 5.0


def runtime_dir() -> Path:
    """Where running mounts leave their pid files, per user."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "alicefs" if base else Path(f"/tmp/alicefs-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def pid_file(mountpoint: Path) -> Path:
    key = hashlib.blake2b(str(mountpoint.resolve()).encode(), digest_size=8).hexdigest()
    return runtime_dir() / f"mount-{key}.pid"


def check_mountpoint(mountpoint: Path) -> None:
    if not mountpoint.exists():
        raise UsageError(f"mount point {mountpoint} does not exist")
    if not mountpoint.is_dir():
        raise UsageError(f"mount point {mountpoint} is not a directory")
    if os.path.ismount(mountpoint) and _is_fuse_mount(mountpoint):
        raise UsageError(f"{mountpoint} is already a mount point (alicefs umount it first)")
    if any(mountpoint.iterdir()):
        raise UsageError(f"mount point {mountpoint} is not empty: mounting over it would hide "
                         "its files (use an empty directory)")


def _is_fuse_mount(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target and line.split()[2].startswith("fuse")
                   for line in mounts)


@dataclass
class Mount:
    settings: Settings
    mountpoint: Path
    options: MountOptions

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Mount, serve until unmounted or signalled, then flush and unmount."""
        catalog = await trio.to_thread.run_sync(Catalog, self.settings.catalog_path)
        try:
            state = await trio.to_thread.run_sync(build_state, self.settings, catalog,
                                                  self.options)
            for location_id, why in state.unavailable.items():
                log.warning("location %s unavailable: %s", state.location(location_id).name,
                            why)
            send_relocation, receive_relocation = trio.open_memory_channel[str](10_000)
            ops = AliceOperations(state, relocations=send_relocation)
            fuse_options = set(pyfuse3.default_options) | {"fsname=alicefs", "subtype=alicefs",
                                                             "noatime"}
            if self.options.allow_other:
                fuse_options.add("allow_other")
            pyfuse3.init(ops, str(self.mountpoint), fuse_options)
            unmounted_by_us = False
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._serve, nursery)
                    nursery.start_soon(self._flush_loop, state)
                    nursery.start_soon(self._space_loop, state)
                    nursery.start_soon(self._scan_loop, state, ops)
                    nursery.start_soon(self._relocation_worker, ops, receive_relocation)
                    unmounted_by_us = await self._wait_for_signal_or_unmount(nursery, ready)
            finally:
                await trio.to_thread.run_sync(state.queue.flush)
                pyfuse3.close(unmount=unmounted_by_us)
        finally:
            catalog.close()

    async def _wait_for_signal_or_unmount(self, nursery: trio.Nursery,
                                          ready: Callable[[], None] | None) -> bool:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            if ready is not None:
                ready()
            async for signum in signals:
                log.info("signal %d: finishing pending work and unmounting", signum)
                nursery.cancel_scope.cancel()
                return True
        return False

    async def _serve(self, nursery: trio.Nursery) -> None:
        await pyfuse3.main(min_tasks=4, max_tasks=64)
        log.info("unmounted")
        nursery.cancel_scope.cancel()

    async def _flush_loop(self, state: MountState) -> None:
        while True:
            await trio.sleep(FLUSH_INTERVAL)
            await trio.to_thread.run_sync(state.queue.flush)

    async def _space_loop(self, state: MountState) -> None:
        while True:
            await trio.sleep(SPACE_INTERVAL)
            await trio.to_thread.run_sync(refresh_free_space, state)

    async def _scan_loop(self, state: MountState, ops: AliceOperations) -> None:
        """Periodic incremental scans, so files added or changed directly in a location show
        in the mount; the first one right away."""
        scanner = MultiPathScanner(state.catalog, skip_hidden=self.settings.skip_hidden)
        while True:
            await trio.to_thread.run_sync(state.queue.flush)
            started = time.monotonic()
            stats = await scanner.discover_all_assets()
            for result in stats.locations:
                if result.error:
                    log.warning("scan of %s: %s", result.name, result.error)
            scanned = {s.location_id for s in stats.locations if not s.error}
            view = await trio.to_thread.run_sync(read_catalog_view, state.catalog, scanned)
            busy = {h.vpath for h in ops._handles.values() if h.writable}
            changes = apply_catalog_view(state, view, busy)
            for location_id in scanned:
                local = state.local(location_id)
                if local is not None:
                    dirs = await trio.to_thread.run_sync(local.list_dirs)
                    state.namespace.add_existing_dirs(location_id, dirs)
            log.info("scan: %d files in %.1fs, %d changes shown", stats.files,
                     time.monotonic() - started, changes)
            await trio.sleep(self.settings.scan_interval)

    async def _relocation_worker(self, ops: AliceOperations,
                                 receive: trio.MemoryReceiveChannel[str]) -> None:
        async for vpath in receive:
            try:
                await ops.relocate(vpath)
            except OSError as exc:
                log.error("placing %s: %s", vpath, exc)


def configure_logging(debug: bool, log_file: Path | None) -> None:
    handler: logging.Handler
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
    else:
        handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)
