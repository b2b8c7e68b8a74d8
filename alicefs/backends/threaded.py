"""Backends from trio: every blocking call runs in a worker thread under the location's
capacity limiter, so the trio thread never blocks and no location gets more than its
`max_concurrent` calls at once."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import trio

from alicefs.backends.base import Backend

T = TypeVar("T")


class ThreadedBackend:
    """Awaitable access to one Backend."""

    def __init__(self, backend: Backend, limiter: trio.CapacityLimiter | None = None):
        self.backend = backend
        self.location = backend.location
        self.limiter = limiter or trio.CapacityLimiter(backend.max_concurrent)

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`func(*args, **kwargs)` in a worker thread, counted against this location's limit."""
        call = functools.partial(func, *args, **kwargs) if kwargs else func
        return await trio.to_thread.run_sync(call, *args if not kwargs else (),
                                             limiter=self.limiter)

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The backend's method `method`, e.g. `await tb.call("stat", key)`."""
        return await self.run(getattr(self.backend, method), *args, **kwargs)
