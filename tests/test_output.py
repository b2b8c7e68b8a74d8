"""What commands draw on a terminal (rich, imported only then), and what the mount's
processes import."""

from __future__ import annotations

import io
import subprocess
import sys

from rich.console import Console

from alicefs.output import Output
from alicefs.progress import ScanProgress, scan_progress_display, transfer_progress_display


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_table_on_a_terminal_is_drawn_with_rich():
    stdout = Terminal()
    Output(stdout=stdout).table(["name", "files"], [["ssd", "12"], ["archive", "3,400"]], {})
    lines = stdout.getvalue().splitlines()
    assert lines[0].startswith("┏━") and "name" in lines[1]
    assert lines[4] == "│ archive │ 3,400 │"


def test_a_table_elsewhere_is_aligned_text():
    stdout = io.StringIO()
    Output(stdout=stdout).table(["name", "files"], [["ssd", "12"], ["archive", "3,400"]], {})
    assert stdout.getvalue() == "name     files\nssd      12\narchive  3,400\n"


def test_progress_bars_draw_files_and_bytes():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120)
    with scan_progress_display(console) as update:
        update(ScanProgress("ssd", "reading", 10, 4, 6, 6_000, 3_000, True))
    with transfer_progress_display(3, 9_000, console) as advance:
        advance(2, 6_000)
    text = screen.getvalue()
    assert "ssd (reading)" in text and "4/10 files" in text
    assert "migrating" in text and "2/3 files" in text


def imported_by(statement: str) -> set[str]:
    """The top-level packages a fresh interpreter has loaded after `statement`."""
    listing = subprocess.run(
        [sys.executable, "-c", f"{statement}; import sys; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True).stdout
    return {name.partition(".")[0] for name in listing.split()}


def test_the_mount_process_starts_without_rich():
    """rich is ~0.05 s of a mount's start, and the mount draws nothing."""
    assert "rich" not in imported_by("import alicefs.main, alicefs.daemon")


def test_alicefs_mount_starts_its_mount_process_without_the_filesystem_modules():
    """`alicefs mount` checks its arguments and waits for the process it starts, which alone
    imports trio, pyfuse3 and DuckDB (~0.35 s that every mount would spend twice)."""
    loaded = imported_by("import alicefs.main")
    assert not loaded & {"trio", "pyfuse3", "duckdb", "rich"}, loaded
