"""Loaded by a mount started with this directory on PYTHONPATH (the crash tests): with
ALICEFS_TEST_KILL_AT=POINT:N the process SIGKILLs itself at the Nth pass through POINT of a
transfer — after-begin, after-copy, after-recorded, after-delete or before-end — so every
journal step of a migration run by a mount is interrupted, not only random moments."""

from __future__ import annotations

import functools
import itertools
import os
import signal

_SPEC = os.environ.get("ALICEFS_TEST_KILL_AT")

if _SPEC:
    from alicefs.migrate import run
    from alicefs.transfer import move

    _point, _, _nth = _SPEC.partition(":")
    _passes = itertools.count(1)

    def _pass(point: str) -> None:
        if point == _point and next(_passes) == int(_nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)

    def _after(point: str, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            result = func(*args, **kwargs)
            _pass(point)
            return result
        return wrapper

    def _before(point: str, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            _pass(point)
            return func(*args, **kwargs)
        return wrapper

    move.begin = _after("after-begin", move.begin)
    move.Transfer.copy = _after("after-copy", move.Transfer.copy)
    move.copy_together = _after("after-copy", move.copy_together)
    move.recorded = _after("after-recorded", move.recorded)
    run._delete = _after("after-delete", run._delete)
    move.end = _before("before-end", move.end)
