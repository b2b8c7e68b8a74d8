"""How commands print: JSON with --json, a rich table on a terminal, aligned text otherwise.

Results go to stdout; notes and errors to stderr, so `--json` output stays parseable.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


class Output:
    def __init__(self, json_mode: bool = False, stdout: TextIO | None = None,
                 stderr: TextIO | None = None):
        self.json_mode = json_mode
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr

    def info(self, text: str) -> None:
        self.stderr.write(text + "\n")

    def error(self, text: str) -> None:
        self.stderr.write(f"alicefs-ctl: error: {text}\n")

    def result(self, data: Any, text: str) -> None:
        if self.json_mode:
            json.dump(data, self.stdout, indent=2, ensure_ascii=False)
            self.stdout.write("\n")
        else:
            self.stdout.write(text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], data: Any) -> None:
        if self.json_mode:
            self.result(data, "")
        elif self.stdout.isatty():
            # Imported only here, for a terminal (see alicefs.progress._progress).
            from rich.console import Console
            from rich.table import Table

            table = Table(*headers, header_style="bold")
            for row in rows:
                table.add_row(*row)
            Console(file=self.stdout).print(table)
        else:
            widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
            for row in [list(headers), *rows]:
                cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
                self.stdout.write("  ".join(cells).rstrip() + "\n")
