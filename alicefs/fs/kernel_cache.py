"""Keeping the kernel's cache of names and attributes true while it holds them for long.

The mount answers lookups and getattr with long entry and attribute timeouts, so that a
`stat` of what was already looked up never reaches Python. The kernel keeps what it was told
until the timeout or until told otherwise; this tells it otherwise whenever the tree changes
behind its back: scans that find files added, changed or gone in a location, migrations,
sync, `alicefs-ctl` commands, uploads, and changes through `projects/` that show in the
other views (a rename there renames the file in `types/` and `locations/` too).

Attributes are invalidated at once, on the trio thread: that takes no lock in the kernel
(without the writeback cache, which the mount does not use).

Names go to the kernel from worker threads: invalidating one takes the lock of its
directory, which a request in progress there may hold while it waits for this process. They
go in two lanes:
- names in `projects/` and `types/`, the views where requests change names (rename and
  unlink work in `types/` too): a request that changed one may hold the very directory (a
  rename holds both parents), and one waiting for the other's names would wait for a lock
  the other holds while it waits in turn. Nothing a request handler waits for may queue
  behind them: they reach the kernel as soon as the trio loop gets to them, a moment after
  the request returns;
- names in `locations/` and the fixed top: only lookups, listings and reads run there, and
  they let go of their directory as soon as the trio loop answers them. A request handler
  that removed names there waits for this lane (without blocking the loop) before it
  answers, so that a rename or unlink through `projects/` is gone from every location's
  view the moment it returns.
Scans and commands wait for both lanes before they report done.
"""

from __future__ import annotations

import contextvars
import errno
import logging
import os
import posixpath

import pyfuse3
import trio

from alicefs.fs.namespace import PROJECTS_VIEW, Namespace

log = logging.getLogger(__name__)

# Where the `locations/` lane stood after the last name the current request handler (a trio
# task; pyfuse3 runs requests one after another in each) queued there: 0 for none.
_views_mark: contextvars.ContextVar[int] = contextvars.ContextVar("views_mark", default=0)
# (view, path) of the names the current request handler's own operation removes or replaces
# (an unlink's, both of a rename's): the kernel updates its cache for those itself.
_own_names: contextvars.ContextVar[frozenset[tuple[str, str]]] = contextvars.ContextVar(
    "own_names", default=frozenset())


class _Lane:
    """Names to invalidate, told to the kernel in order from one worker thread at a time."""

    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.names: list[tuple[str, str, int, int]] = []  # as Namespace.name_gone has them
        self.queued = 0  # names queued since the mount began
        self.told = 0  # of them, those the kernel has been told of
        self._wakeup = trio.Event()
        self._progress = trio.Event()

    def put(self, view: str, vpath: str, parent_inode: int, inode: int) -> None:
        self.names.append((view, vpath, parent_inode, inode))
        self.queued += 1
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            batch, self.names = self.names, []
            # Only what is really gone: a rename empties a directory for a moment, and
            # telling the kernel its name is gone would drop the directory's entry and
            # everything cached below it, all to be looked up again.
            gone = [(parent_inode, os.fsencode(posixpath.basename(vpath)))
                    for view, vpath, parent_inode, inode in batch
                    if not self.namespace.shows(view, vpath, inode)]
            if gone:
                # Not abandoned on cancellation: the thread must be done before the
                # session it writes to is closed.
                await trio.to_thread.run_sync(invalidate_entries, gone)
            self.told += len(batch)
            self._progress.set()
            self._progress = trio.Event()

    async def reached(self, mark: int) -> None:
        """Wait until the kernel has been told of the first `mark` names ever queued."""
        while self.told < mark:
            progress = self._progress
            await progress.wait()


class KernelCache:
    """The namespace's observer while the kernel is served (see Namespace.observer)."""

    def __init__(self, namespace: Namespace) -> None:
        self._tree = _Lane(namespace)  # projects/ and types/
        self._views = _Lane(namespace)  # locations/ and the fixed top

    def removing(self, view: str, vpath: str) -> None:
        """The current request handler removes or replaces the name `vpath` of `view`."""
        _own_names.set(_own_names.get() | {(view, vpath)})

    def name_gone(self, view: str, vpath: str, parent_inode: int, inode: int) -> None:
        if (view, vpath) in _own_names.get():
            return  # as the kernel knows: telling it would only cost a syscall
        if view == PROJECTS_VIEW or view.startswith("t:"):
            self._tree.put(view, vpath, parent_inode, inode)
        else:
            self._views.put(view, vpath, parent_inode, inode)
            _views_mark.set(self._views.queued)

    def attrs_changed(self, inode: int) -> None:
        try:
            pyfuse3.invalidate_inode(inode, attr_only=True)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: the kernel holds nothing of it
                log.warning("telling the kernel inode %d changed: %s", inode, exc)

    async def run(self) -> None:
        """Tell the kernel of the names gone, as they come (until cancelled)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tree.run)
            nursery.start_soon(self._views.run)

    async def request_done(self) -> None:
        """At the end of a request handler: wait until the kernel has been told of the names
        it made go from `locations/` (only those: see the module's docstring; a handler
        waiting for names others queued could wait for itself)."""
        if _own_names.get():
            _own_names.set(frozenset())
        mark = _views_mark.get()
        if mark:
            _views_mark.set(0)
            await self._views.reached(mark)

    async def settled(self) -> None:
        """Wait until the kernel has been told of every name gone so far: a scan or a
        command that changed the tree reports done only once the mount shows it. Never
        in a request handler."""
        await self._tree.reached(self._tree.queued)
        await self._views.reached(self._views.queued)


def invalidate_entries(names: list[tuple[int, bytes]]) -> None:
    """Blocking: run in a worker thread."""
    for parent_inode, name in names:
        try:
            pyfuse3.invalidate_entry(parent_inode, name)
        except OSError as exc:
            if exc.errno != errno.ENOENT:  # ENOENT: the kernel holds no such name
                log.warning("telling the kernel %r in inode %d is gone: %s", name,
                            parent_inode, exc)
