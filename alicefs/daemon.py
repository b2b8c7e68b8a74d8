"""The mount process: the FUSE session and, in one trio nursery, its background services —
catalog write-behind, free-space refresh, periodic scans, re-placement of new files, the
migration schedule, and alicefs-ctl commands sent over the control socket."""

from __future__ import annotations

import functools
import gc
import io
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pyfuse3
import trio

from alicefs import cli, control
from alicefs.catalog import Catalog
from alicefs.config import Settings
from alicefs.fs.catalog_changes import forget_location, show_catalog_changes
from alicefs.fs.kernel_cache import KernelCache
from alicefs.fs.namespace import view_path
from alicefs.fs.operations import AliceOperations
from alicefs.fs.options import MountOptions
from alicefs.fs.state import (
    MountState,
    build_state,
    open_location,
    refresh_free_space,
    unfinished_reason,
)
from alicefs.migrate import AutoMigrationService, MigrationResult
from alicefs.rules import LocationStatus, by_preference
from alicefs.scanner import MultiPathScanner
from alicefs.sync import SyncResult, SyncTracker
from alicefs.transfer.journal import DEFERRED_KINDS, MULTIPART
from alicefs.transfer.recovery import recover, unfinished

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 1.0
DRAIN_REPORT_INTERVAL = 5.0
READ_AHEAD_KIB = 1024
SPACE_INTERVAL = 5.0


def tune_readahead(mountpoint: Path, kib: int = READ_AHEAD_KIB) -> None:
    """Raise the kernel's read-ahead for this mount from 128 KiB to `kib`.

    FUSE read requests are as large as the read-ahead window, and each costs a round trip to
    Python: 1 MiB requests double cold sequential reads (measured: 760 -> 1,320 MB/s).
    Needs root (the sysfs file is root-owned); otherwise the kernel default stays.
    """
    target = str(mountpoint.resolve())
    with open("/proc/self/mountinfo") as mounts:
        device = next((line.split()[2] for line in mounts if line.split()[4] == target), None)
    if device is None:
        return
    try:
        Path(f"/sys/class/bdi/{device}/read_ahead_kb").write_text(f"{kib}\n")
    except OSError as exc:
        log.debug("read-ahead left at the kernel default: %s", exc)


@dataclass
class Mount:
    settings: Settings
    mountpoint: Path
    options: MountOptions

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Mount, serve until unmounted or signalled, then flush and unmount."""
        self._unmounted = trio.Event()
        catalog = await trio.to_thread.run_sync(Catalog, self.settings.catalog_path)
        try:
            # No garbage collection while the namespace's objects are made: each collection
            # would walk all of those made so far (~0.4 s of 1.3 s for 100,000 files), and
            # nothing there makes cyclic garbage. It lives as long as the mount, so it leaves
            # the collector's generations before collection resumes, or the first collection
            # would walk all its millions of objects (~0.07 s for 100,000 files), and every
            # full one again. They are still freed when their last reference goes; only a
            # cycle among them would stay.
            gc.disable()
            try:
                state = await trio.to_thread.run_sync(build_state, self.settings, catalog,
                                                      self.options)
            finally:
                gc.freeze()
                gc.enable()
            for location_id, why in state.unavailable.items():
                log.warning("location %s unavailable: %s", state.location(location_id).name,
                            why)
            ops = AliceOperations(state, background=True)
            # One scanner and one migration service, over the mount's backends, for the
            # schedules and for the commands sent to the mount alike.
            scanner = MultiPathScanner(catalog, skip_hidden=self.settings.skip_hidden,
                                       backends=state.backends)
            migration = AutoMigrationService(catalog, scanner=scanner, coordinator=ops.mover)
            host = cli.Host(catalog, scanner, migration,
                            SyncTracker(catalog, scanner, migration=migration))
            ops.sync = host.sync
            await self._resume_uploads(state, ops)
            for logical_path, source in state.unfinished_moves:
                # A re-placement a crash cut short is done again, as at the file's release.
                node = state.namespace.files.get(view_path(logical_path))
                if node is not None and source in node.replicas:
                    node.created_here = source
                    ops.relocations.send_nowait(view_path(logical_path))
            fuse_options = set(pyfuse3.default_options) | {"fsname=alicefs", "subtype=alicefs",
                                                             "noatime"}
            if self.options.allow_other:
                fuse_options.add("allow_other")
            pyfuse3.init(ops, str(self.mountpoint), fuse_options)
            unmounted_by_us = False
            try:
                async with trio.open_nursery() as nursery:
                    # Only once the session exists: invalidations are written to it.
                    self.kernel_cache = KernelCache(state.namespace)
                    state.namespace.observer = ops.kernel_cache = self.kernel_cache
                    nursery.start_soon(self.kernel_cache.run)
                    nursery.start_soon(self._serve, nursery)
                    await trio.to_thread.run_sync(tune_readahead, self.mountpoint)
                    nursery.start_soon(self._flush_loop, state)
                    nursery.start_soon(self._space_loop, state, ops)
                    nursery.start_soon(self._scan_loop, state, ops, scanner)
                    settings = self.settings
                    # Throttled by migration_max_concurrent and migration_bandwidth alike.
                    if settings.migration_interval is not None:
                        nursery.start_soon(self._scheduled, "migration",
                                           settings.migration_interval, state, functools.partial(
                                               host.migration.run_auto_migration,
                                               move=settings.migration_move,
                                               max_concurrent=settings.migration_max_concurrent,
                                               bandwidth=settings.migration_bandwidth))
                    if settings.sync_interval is not None:
                        nursery.start_soon(self._scheduled, "sync", settings.sync_interval,
                                           state, functools.partial(
                                               host.sync.process_sync_queue,
                                               max_concurrent=settings.migration_max_concurrent,
                                               bandwidth=settings.migration_bandwidth,
                                               auto_resolve=settings.sync_auto_resolve))
                    # Listening before the mount reports ready: alicefs-ctl run right after
                    # `alicefs mount` finds the socket, where it found a locked catalog.
                    await nursery.start(self._control_server, state, ops, host)
                    nursery.start_soon(ops.run_background)
                    unmounted_by_us = await self._wait_for_signal_or_unmount(nursery, ready,
                                                                             ops)
            finally:
                state.namespace.observer = ops.kernel_cache = None
                await trio.to_thread.run_sync(state.queue.flush)
                pyfuse3.close(unmount=unmounted_by_us)
        finally:
            catalog.close()

    async def _wait_for_signal_or_unmount(self, nursery: trio.Nursery,
                                          ready: Callable[[], None] | None,
                                          ops: AliceOperations) -> bool:
        """Until SIGTERM/SIGINT (`alicefs umount`) or an unmount from outside; then finish
        the uploads of staged files before the services stop, unless SIGUSR1 (`alicefs
        umount --timeout`) says to leave them staged for the next mount."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT,
                                       signal.SIGUSR1) as signals:
            if ready is not None:
                ready()
            async with trio.open_nursery() as waiters:
                signalled = False

                async def on_signal() -> None:
                    nonlocal signalled
                    async for signum in signals:
                        log.info("signal %d: finishing pending work, then unmounting", signum)
                        signalled = True
                        waiters.cancel_scope.cancel()
                        return

                async def on_unmount() -> None:
                    await self._unmounted.wait()
                    waiters.cancel_scope.cancel()

                waiters.start_soon(on_signal)
                waiters.start_soon(on_unmount)
            await self._drain_uploads(ops, signals)
        nursery.cancel_scope.cancel()
        return signalled

    async def _drain_uploads(self, ops: AliceOperations, signals: AsyncIterator[int]) -> None:
        """Wait until every staged file is uploaded (failed ones keep being retried), or
        until SIGUSR1 gives up: what is left stays staged and is uploaded at the next
        mount."""
        async with trio.open_nursery() as waiters:

            async def give_up() -> None:
                async for signum in signals:
                    if signum == signal.SIGUSR1:
                        log.warning("unmounting with %d uploads left staged in %s (uploaded "
                                    "at the next mount): %s", len(ops.uploads),
                                    ops.staging.directory,
                                    ", ".join(sorted(ops.uploads.paths())))
                        waiters.cancel_scope.cancel()

            async def report() -> None:
                while True:
                    log.info("waiting for %d uploads (%d failing, retried)", len(ops.uploads),
                             ops.uploads.failures())
                    await trio.sleep(DRAIN_REPORT_INTERVAL)

            async def drained() -> None:
                await ops.uploads.drained()
                waiters.cancel_scope.cancel()

            if ops.uploads.pending:
                waiters.start_soon(give_up)
                waiters.start_soon(report)
                waiters.start_soon(drained)

    async def _serve(self, nursery: trio.Nursery) -> None:
        await pyfuse3.main(min_tasks=32, max_tasks=128)
        log.info("unmounted")
        self._unmounted.set()

    async def _resume_uploads(self, state: MountState, ops: AliceOperations) -> None:
        """Staging files an earlier run left (crash, plain fusermount3 -u) are shown and
        uploaded now."""
        leftovers = await trio.to_thread.run_sync(ops.staging.leftovers)
        for staged in leftovers:
            if staged.location_id not in state.backends:
                log.warning("staged %s for unknown location %s kept in %s",
                            staged.logical_path, staged.location_id, staged.path)
                continue
            ops.uploads.request((ops.adopt_staged(staged), staged.location_id))
            log.info("resuming upload of %s", staged.logical_path)

    async def _flush_loop(self, state: MountState) -> None:
        while True:
            await trio.sleep(FLUSH_INTERVAL)
            try:
                await trio.to_thread.run_sync(state.queue.flush)
            except Exception:  # kept queued and written next time; the mount goes on
                log.exception("writing to the catalog failed")

    async def _space_loop(self, state: MountState, ops: AliceOperations) -> None:
        while True:
            await trio.sleep(SPACE_INTERVAL)
            try:
                await trio.to_thread.run_sync(refresh_free_space, state)
            except Exception:  # the last figures stay; the mount must outlive a bad round
                log.exception("refreshing free space")
            for location_id in [lid for lid in state.unavailable if lid in state.backends]:
                if state.location(location_id).status is not LocationStatus.OFFLINE:
                    try:
                        await self._bring_back(state, location_id)
                    except Exception:
                        # It stays unavailable and is tried again next round; the mount
                        # must outlive whatever went wrong.
                        log.exception("bringing back %s", state.location(location_id).name)
                    if state.usable(location_id):
                        ops.uploads.retry_location(location_id)

    async def _bring_back(self, state: MountState, location_id: str) -> None:
        """A location that was unreachable is used again once it answers and the unlinks and
        renames made while it was away are done there (all of them: until then a scan
        would show them undone)."""
        backend = state.backend(location_id)
        try:
            await trio.to_thread.run_sync(backend.probe)
        except OSError:
            return  # still away
        await trio.to_thread.run_sync(state.queue.flush)
        done = await trio.to_thread.run_sync(recover, state.catalog, {location_id: backend},
                                             DEFERRED_KINDS)
        # Unfinished uploads of an earlier run it was too far away to abort at start-up.
        await trio.to_thread.run_sync(functools.partial(
            recover, state.catalog, {location_id: backend}, (MULTIPART,),
            begun_before=state.started_at))
        owed = (await trio.to_thread.run_sync(unfinished, state.catalog))[location_id]
        owed += state.deferring.get(location_id, 0)  # journaled as we speak: next round
        if owed:
            state.unavailable[location_id] = unfinished_reason(owed)
            return
        state.unavailable.pop(location_id, None)
        await trio.to_thread.run_sync(refresh_free_space, state)
        log.info("location %s is back%s", state.location(location_id).name,
                 f" ({len(done)} deferred operations finished)" if done else "")

    async def _scan_loop(self, state: MountState, ops: AliceOperations,
                         scanner: MultiPathScanner) -> None:
        """Periodic incremental scans, so files added or changed directly in a location show
        in the mount; the first one right away."""
        while True:
            ended = False
            try:
                await self._scan_once(state, ops, scanner)
                ended = True
            except Exception:  # one failed scan must not end the mount; the next one retries
                ended = True
                log.exception("scan failed")
            finally:
                if not ended:
                    # Cancelled (trio delivers it wrapped in its nurseries' exception
                    # groups): unmounting does not wait for a scan, and what this one did
                    # not write is found again by the next.
                    log.info("scan interrupted by the unmount; the next scan covers the rest")
            await trio.sleep(self.settings.scan_interval)

    async def _scan_once(self, state: MountState, ops: AliceOperations,
                         scanner: MultiPathScanner) -> None:
        await trio.to_thread.run_sync(state.queue.flush)
        ops.forgotten.clear()
        started = time.monotonic()
        # Only what the mount can use: a location that is back is scanned once its
        # deferred deletes and renames are done (_space_loop), or it would show them undone.
        with state.catalog.watch() as written:
            stats = await scanner.scan_locations(
                [loc for loc in state.locations if state.usable(loc.location_id)])
        for result in stats.locations:
            if result.error:
                log.warning("scan of %s: %s", result.name, result.error)
        scanned = {s.location_id for s in stats.locations if not s.error}
        # Only the replicas of the locations the scan changed something in (the mount shows
        # its own changes already, and its writes meanwhile are in `written` too).
        changed = {s.location_id for s in stats.locations if not s.error and (
            s.new_files or s.changed_files or s.missing_files or s.reappeared_files)}
        changes = 0
        if changed:
            changes = await show_catalog_changes(state, written, changed, ops.busy_paths)
        for location_id in scanned:
            local = state.local(location_id)
            if local is not None:
                dirs = await trio.to_thread.run_sync(local.list_dirs)
                state.namespace.add_existing_dirs(location_id, dirs)
        await trio.to_thread.run_sync(state.catalog.release_memory)
        await self.kernel_cache.settled()
        log.info("scan: %d files in %.1fs, %d changes shown", stats.files,
                 time.monotonic() - started, changes)

    async def _scheduled(self, what: str, interval: float, state: MountState,
                         run: Callable[[], Awaitable[MigrationResult | SyncResult]]) -> None:
        """`run` (a migration or a sync) every `interval` seconds, the first after one
        interval so a mount's first scan is in first. A run that fails is logged and tried
        again next time: the mount must outlive it."""
        while True:
            await trio.sleep(interval)
            try:
                await trio.to_thread.run_sync(state.queue.flush)
                result = await run()
                await self.kernel_cache.settled()
            except Exception:
                log.exception("scheduled %s failed", what)
                continue
            counts = result.counts()
            if counts:
                log.info("scheduled %s: %s", what, ", ".join(
                    f"{n:,} {outcome}" for outcome, n in sorted(counts.items())))
            for failed in result.failed:
                log.warning("%s of %s failed: %s", what, failed.logical_path, failed.detail)

    async def _control_server(self, state: MountState, ops: AliceOperations, host: cli.Host,
                              *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                              ) -> None:
        """Run alicefs-ctl commands sent over the control socket (see alicefs.control);
        started once it listens."""
        path = await trio.to_thread.run_sync(control.prepare_socket_dir,
                                             self.settings.state_dir)
        listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with control.socket_address(path) as address:
                await listener.bind(address)
            os.chmod(path, 0o600)
            listener.listen(16)
            task_status.started()
            async with trio.open_nursery() as connections:
                while True:
                    conn, _ = await listener.accept()
                    connections.start_soon(self._control_request, conn, state, ops, host)
        finally:
            listener.close()
            path.unlink(missing_ok=True)

    async def _control_request(self, conn: trio.socket.SocketType, state: MountState,
                               ops: AliceOperations, host: cli.Host) -> None:
        stream = trio.SocketStream(conn)
        async with stream:
            data = bytearray()
            while chunk := await stream.receive_some(1 << 16):
                data += chunk
                if len(data) > control.MAX_MESSAGE:
                    return
            try:
                argv, cwd = control.decode_request(bytes(data))
            except (ValueError, KeyError) as exc:
                log.warning("bad control request: %s", exc)
                return
            await trio.to_thread.run_sync(state.queue.flush)
            ops.forgotten.clear()
            stdout, stderr = io.StringIO(), io.StringIO()
            # cli.run reports every failure of the command itself as an exit code; whatever
            # still escapes is a bug in alicefs, and the mount must outlive it. The command
            # runs in a worker thread; what it awaits runs back here, on this event loop.
            try:
                with state.catalog.watch() as written:
                    code = await trio.to_thread.run_sync(functools.partial(
                        cli.run, argv, stdout=stdout, stderr=stderr, cwd=cwd,
                        settings=self.settings, host=host))
                await self._after_command(state, ops, written)
                await self.kernel_cache.settled()
            except Exception:
                log.exception("control command %s failed", argv)
                code = cli.EXIT_INTERNAL
                stderr.write("alicefs-ctl: error: internal error in the mount; see its log\n")
            await stream.send_all(control.encode_reply(code, stdout.getvalue(),
                                                       stderr.getvalue()))

    async def _after_command(self, state: MountState, ops: AliceOperations,
                             written: set[str]) -> None:
        """Bring the namespace level with what a command changed in the catalog: replicas
        (discover, scan) and tags and ratings (tag, rate) of the paths it wrote (`written`),
        locations added or removed (add, remove, from-config), their names, priorities,
        rules and status (update)."""
        locations = {loc.location_id: loc
                     for loc in await trio.to_thread.run_sync(state.catalog.locations)}
        known = {loc.location_id for loc in state.locations}
        for location_id, loc in locations.items():
            if location_id in state.namespace.locations:
                continue
            if location_id in known:  # removed while mounted, and added back
                state.unavailable.pop(location_id, None)
            else:
                backend, why = await trio.to_thread.run_sync(
                    open_location, loc, self.settings.skip_hidden, state.catalog)
                if backend is not None:
                    state.backends[location_id] = backend
                if why is not None:
                    state.unavailable[location_id] = why
                state.set_locations([*state.locations, loc])
            log.info("location %s added", loc.name)
        for location_id in known - set(locations):
            if location_id in state.namespace.locations:
                await forget_location(state, location_id)
                log.info("location %s removed", state.location(location_id).name)
        current = [locations.get(loc.location_id, loc) for loc in state.locations]
        state.set_locations(by_preference(current))
        for loc in state.locations:
            if loc.location_id in locations:
                state.namespace.add_location(loc.location_id, loc.name)
            if (loc.location_id in locations and loc.status is not LocationStatus.OFFLINE
                    and loc.location_id not in state.backends):  # offline when mounted
                backend, why = await trio.to_thread.run_sync(
                    open_location, loc, self.settings.skip_hidden, state.catalog)
                if backend is not None:
                    state.backends[loc.location_id] = backend
                if why is not None:
                    state.unavailable[loc.location_id] = why
        # A location set back to active owes what was unlinked or renamed meanwhile: it is
        # used again only once that is done (_space_loop).
        owed = await trio.to_thread.run_sync(unfinished, state.catalog)
        for location_id in state.backends:
            count = owed[location_id] + state.deferring.get(location_id, 0)
            if count and state.usable(location_id):
                state.unavailable[location_id] = unfinished_reason(count)
        await trio.to_thread.run_sync(refresh_free_space, state)
        await show_catalog_changes(state, written, set(state.backends), ops.busy_paths)


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
