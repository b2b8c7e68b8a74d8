"""Retrying transient failures of remote stores: exponential backoff with full jitter, bounded
by a deadline.

The policy is pure (clock, sleep and randomness are parameters) so it is tested without a
server. The backends decide what is transient; the SDKs' own retries are switched off so that
this is the only retry loop and `retry_deadline` means what it says.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

log = logging.getLogger(__name__)

#: First backoff ceiling in seconds; each retry doubles it up to MAX_DELAY.
BASE_DELAY = 0.1
MAX_DELAY = 8.0


def backoff_delay(attempt: int, *, base: float = BASE_DELAY, cap: float = MAX_DELAY,
                  rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number `attempt` (1 for the first retry): "full jitter",
    uniform in [0, min(cap, base * 2**(attempt-1))], which spreads out clients that failed
    together far better than a fixed or equal-jitter backoff."""
    ceiling = min(cap, base * (2 ** min(attempt - 1, 32)))
    return rand() * ceiling


def call_with_retry(fn: Callable[[], T], *, deadline: float,
                    is_transient: Callable[[BaseException], bool], what: str = "call",
                    describe: Callable[[BaseException], str] | None = None,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic,
                    rand: Callable[[], float] = random.random,
                    base: float = BASE_DELAY, cap: float = MAX_DELAY) -> T:
    """fn(), retried while it raises a transient error and the next attempt would still start
    within `deadline` seconds of the first.

    A permanent error, or a transient one once the deadline is spent, propagates unchanged: the
    caller maps it to what the Backend contract promises. Only `Exception`s are considered, so
    KeyboardInterrupt and cancellation go straight through. Each retry is logged at INFO with
    `what` and `describe(error)` (default: its type and message, never request headers, so
    no credentials; a backend passes a describer that also blanks out configured secrets).
    """
    describe = describe or describe_error
    start = clock()
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            attempt += 1
            delay = backoff_delay(attempt, base=base, cap=cap, rand=rand)
            elapsed = clock() - start
            if elapsed + delay > deadline:
                log.warning("%s: giving up after %d attempts in %.1fs: %s", what, attempt,
                            elapsed, describe(exc))
                raise
            log.info("%s: transient failure (%s); retry %d in %.2fs", what,
                     describe(exc), attempt, delay)
            sleep(delay)


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """`Type: message`, cut to `limit` characters, for logs and error messages."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
