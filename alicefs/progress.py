"""Progress bars for long operations: rich on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


@dataclass(frozen=True)
class ScanProgress:
    """Where one location's scan stands."""

    location_name: str
    phase: str  # listing | reading | done | failed
    files_listed: int
    files_done: int  # unchanged files plus files read
    files_to_read: int
    bytes_to_read: int
    bytes_read: int
    listing_complete: bool


def _progress(console: Console | None) -> Progress:
    """Bars over bytes, with files, bytes, rate and time remaining, on `console` (stderr by
    default). rich is imported only here, once something is drawn: the mount, which draws
    nothing, would spend ~0.05 s of its start on it."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                    TextColumn("{task.fields[files]}"), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console or Console(file=sys.stderr),
                    transient=False)


@contextmanager
def scan_progress_display(console: Console | None = None
                          ) -> Iterator[Callable[[ScanProgress], None]]:
    """A sink for ScanProgress that draws one bar per location: files done of files listed,
    bytes read of bytes to read, read rate and time remaining."""
    with _progress(console) as progress:
        tasks: dict[str, TaskID] = {}

        def update(event: ScanProgress) -> None:
            task = tasks.get(event.location_name)
            if task is None:
                task = tasks[event.location_name] = progress.add_task(
                    event.location_name, total=None, files="")
            listed = f"{event.files_listed:,}" + ("" if event.listing_complete else "+")
            progress.update(
                task,
                completed=event.bytes_read,
                total=event.bytes_to_read if event.listing_complete else None,
                files=f"{event.files_done:,}/{listed} files",
                description=f"{event.location_name} ({event.phase})",
            )

        yield update


@contextmanager
def transfer_progress_display(files: int, total_bytes: int, console: Console | None = None
                              ) -> Iterator[Callable[[int, int], None]]:
    """A sink for (files done, bytes done) of a migration: one bar over the bytes to copy,
    with files, rate and time remaining."""
    with _progress(console) as progress:
        task = progress.add_task("migrating", total=total_bytes, files=f"0/{files:,} files")

        def update(files_done: int, bytes_done: int) -> None:
            progress.update(task, completed=bytes_done, files=f"{files_done:,}/{files:,} files")

        yield update
