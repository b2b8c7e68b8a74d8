"""The queue of staged S3/GCS files waiting for their upload, and the workers that run it.

A staged file stays in the queue until an upload of its current content is verified and
recorded (the upload itself is `AliceOperations.upload_staged`). A failed upload is not
dropped: it is tried again with growing pauses (`RETRY_DELAYS`), at once when its location
comes back, and the queue says what failed and why (`.alicefs/queue.json`). `alicefs
umount` waits for the queue to drain (`drained`).

Keys are (projects path, location id); a rename moves the key (`renamed`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import trio

log = logging.getLogger(__name__)

UploadKey = tuple[str, str]
#: Seconds between the tries of a failing upload; the last one repeats.
RETRY_DELAYS = (2.0, 5.0, 15.0, 30.0, 60.0)
RETRY_TICK = 1.0


@dataclass
class UploadState:
    """Where one queued upload stands."""

    attempts: int = 0  # failed tries so far
    error: str | None = None  # why the last try failed
    retry_at: float | None = None  # monotonic time of the next try, after a failure
    queued: bool = False  # in the channel, waiting for a worker


class UploadQueue:
    def __init__(self, workers: int, usable: Callable[[str], bool]):
        self.workers = workers
        self._usable = usable
        self.pending: dict[UploadKey, UploadState] = {}
        # Unmounting: files still open for writing are uploaded as they are now, instead of
        # waiting for a release that may never come (a lazy unmount keeps them open).
        self.closing = False
        self._send, self._receive = trio.open_memory_channel[UploadKey](100_000)
        self._changed = trio.Event()

    def __contains__(self, key: UploadKey) -> bool:
        return key in self.pending

    def __len__(self) -> int:
        return len(self.pending)

    def paths(self) -> set[str]:
        return {vpath for vpath, _ in self.pending}

    def request(self, key: UploadKey) -> None:
        """Upload the staged file at `key` (again): its content changed, or it was closed."""
        state = self.pending.setdefault(key, UploadState())
        state.retry_at = None
        if not state.queued:
            state.queued = True
            self._send.send_nowait(key)

    def hold(self, key: UploadKey) -> None:
        """`key` waits for an upload that someone else will request (a handle's release)."""
        self.pending.setdefault(key, UploadState())

    def done(self, key: UploadKey) -> None:
        """Nothing more to upload at `key` (uploaded, unlinked or renamed away)."""
        self.pending.pop(key, None)
        self._wake()

    def renamed(self, old: UploadKey, new: UploadKey) -> None:
        state = self.pending.pop(old, None)
        if state is not None and new not in self.pending:
            self.pending[new] = UploadState(state.attempts, state.error)
        self.request(new)

    def failed(self, key: UploadKey, error: str) -> None:
        state = self.pending.get(key)
        if state is None:
            return
        state.attempts += 1
        state.error = error
        delay = RETRY_DELAYS[min(state.attempts, len(RETRY_DELAYS)) - 1]
        state.retry_at = time.monotonic() + delay
        log.error("upload of %s failed (try %d; tried again in %gs): %s", key[0],
                  state.attempts, delay, error)
        self._wake()

    def retry_location(self, location_id: str) -> None:
        """The location is back: what failed there is tried again now."""
        for key, state in list(self.pending.items()):
            if key[1] == location_id and state.retry_at is not None:
                self.request(key)

    def failures(self) -> int:
        return sum(1 for state in self.pending.values() if state.error is not None)

    def status(self, size_of: Callable[[UploadKey], int | None]) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [{"path": vpath, "location_id": location_id, "bytes": size_of((vpath, location_id)),
                 "attempts": state.attempts, "error": state.error,
                 "retry_in": (None if state.retry_at is None
                              else round(max(0.0, state.retry_at - now), 1))}
                for (vpath, location_id), state in sorted(self.pending.items())]

    async def drained(self) -> None:
        """Upload what waits for its handles to be released, and return once nothing is left
        to upload."""
        self.closing = True
        for key, state in list(self.pending.items()):
            if not state.queued and state.retry_at is None:
                self.request(key)
        while self.pending:
            self._changed = trio.Event()
            await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()

    async def run(self, upload: Callable[[str, str], Awaitable[None]]) -> None:
        """The workers and the retry timer, until cancelled."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._worker, upload, self._receive.clone())
            nursery.start_soon(self._retry_timer)

    async def _worker(self, upload: Callable[[str, str], Awaitable[None]],
                      receive: trio.MemoryReceiveChannel[UploadKey]) -> None:
        async with receive:
            async for key in receive:
                state = self.pending.get(key)
                if state is None:
                    continue
                state.queued = False
                try:
                    await upload(*key)
                except OSError as exc:
                    self.failed(key, str(exc))
                except Exception as exc:
                    # A bug must not stop the service, nor lose the staged file: logged, kept
                    # and retried like any failure.
                    log.exception("upload of %s failed unexpectedly", key[0])
                    self.failed(key, f"internal error: {exc!r}")

    async def _retry_timer(self) -> None:
        while True:
            await trio.sleep(RETRY_TICK)
            now = time.monotonic()
            for key, state in list(self.pending.items()):
                if (state.retry_at is not None and state.retry_at <= now
                        and self._usable(key[1])):
                    self.request(key)
