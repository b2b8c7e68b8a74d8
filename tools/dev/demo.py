"""`make demo`: build a small demo library and show alicefs working on it.

Creates ./demo (replaced on every run) with two local locations and a settings.yaml, registers
them, and shows where files of different ages, types and ratings belong.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"
CTL = Path(sys.executable).parent / "alicefs-ctl"


def run(*args: str) -> None:
    print(f"\n$ alicefs-ctl {' '.join(args)}", flush=True)
    subprocess.run([str(CTL), "--config", str(DEMO / "settings.yaml"), *args], check=True)


def main() -> None:
    if DEMO.exists():
        shutil.rmtree(DEMO)
    (DEMO / "ssd").mkdir(parents=True)
    (DEMO / "archive").mkdir()
    (DEMO / "settings.yaml").write_text(textwrap.dedent("""\
        storage:
          search_db: state/catalog.duckdb
          locations:
            - name: Fast SSD
              path: ssd
              priority: 100
              rules:
                - max_age_days: 30
                  min_quality_stars: 4
                - require_tags: [portfolio]
            - name: Archive
              path: archive
              priority: 50
              rules:
                - min_age_days: 30
                - include_types: [video]
                  min_size_bytes: 100MB
    """))
    old = DEMO / "archive" / "moodboard" / "2024-sketch.png"
    old.parent.mkdir(parents=True)
    old.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2048))
    year_ago = time.time() - 365 * 86400
    os.utime(old, (year_ago, year_ago))
    print(f"demo library in {DEMO}")
    run("from-config")
    run("list")
    run("explain", "moodboard/render.png", "--quality", "5")
    run("explain", "moodboard/clip.mp4", "--size", "2GiB")
    run("explain", str(old))


if __name__ == "__main__":
    main()
