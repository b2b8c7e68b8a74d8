"""Every command of the reference user guide (../shared/reference/multi-path-storage-guide.md)
runs as written, through `alice storage`, against a temporary library: its shell blocks in
order, with only the placeholders (<id>, <location-id>, <content-hash>...) filled in, and
the Python lines of its progress block run as Python."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import textwrap
import time
from pathlib import Path

import trio

from alicefs import DuckDBSearchCache, MultiPathScanner, StorageRegistry
from alicefs.catalog import Catalog
from tests.conftest import BIN_DIR

GUIDE = Path(__file__).parents[2] / "shared" / "reference" / "multi-path-storage-guide.md"


def guide_blocks() -> list[tuple[list[str], str]]:
    """Per ```bash block: its `alice storage` commands (continuation lines joined) and the
    Python lines it shows (the progress callback), in guide order."""
    blocks = []
    for block in re.findall(r"```bash\n(.*?)```", GUIDE.read_text(), re.S):
        joined = block.replace("\\\n", " ")
        commands = [line.strip() for line in joined.splitlines()
                    if line.strip().startswith("alice storage")]
        python = "\n".join(line for line in joined.splitlines()
                           if line and not line.startswith(("#", "alice storage")))
        blocks.append((commands, python))
    return blocks


def make_library(root: Path) -> Path:
    """Two disks holding "my-project" (recent and old images, a video), cataloged from the
    guide's configuration keys, and a settings file for ALICEFS_CONFIG."""
    for disk in ("ssd", "archive"):
        (root / disk / "my-project").mkdir(parents=True)
    then = time.time() - 200 * 86400
    for name, age in (("new.png", 0), ("old.png", then), ("clip.mp4", 0)):
        path = root / "ssd" / "my-project" / name
        path.write_bytes(os.urandom(3000))
        if age:
            os.utime(path, (age, age))
    shared = root / "ssd" / "my-project" / "shared.png"
    shared.write_bytes(b"agreed")
    (root / "archive" / "my-project" / "shared.png").write_bytes(b"agreed")
    settings = root / "settings.yaml"
    settings.write_text(textwrap.dedent(f"""\
        storage:
          search_db: {root}/data/search.duckdb
          location_registry_db: {root}/data/locations.duckdb
          locations:
            - name: "Fast SSD"
              type: "local"
              path: "{root}/ssd"
              priority: 100
              rules:
                - max_age_days: 30
            - name: "Archive HDD"
              type: "local"
              path: "{root}/archive"
              priority: 50
              rules:
                - min_age_days: 30
    """))
    return settings


def test_every_guide_command_runs_as_written(tmp_path):
    settings = make_library(tmp_path)
    env = {**os.environ, "ALICEFS_CONFIG": str(settings)}
    archive = None

    def fill(command: str) -> str:
        if "<content-hash>" in command:
            make_conflict()
            command = command.replace("<content-hash>", conflict_hash())
        return (command.replace("<id>", archive).replace("<location-id>", archive)
                .replace("<target-location-id>", archive))

    def make_conflict() -> None:
        for disk, data in (("ssd", b"the ssd's edit"), ("archive", b"the archive's later")):
            path = tmp_path / disk / "my-project" / "shared.png"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(data)
        assert run("alice storage discover --no-progress").returncode == 0

    def conflict_hash() -> str:
        with Catalog(tmp_path / "data" / "search.duckdb") as catalog:
            hashes = {r.content_hash for r in catalog.replicas_of("my-project/shared.png")}
        return sorted(h for h in hashes if h)[0]

    def run(command: str) -> subprocess.CompletedProcess:
        argv = shlex.split(command)
        return subprocess.run([str(BIN_DIR / "alice"), *argv[1:]], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=120)

    ran = 0
    for commands, python in guide_blocks():
        for command in commands:
            if archive is None and "from-config" not in command and "init" not in command:
                with Catalog(tmp_path / "data" / "search.duckdb") as catalog:
                    archive = catalog.find_location("Archive HDD").location_id
            result = run(fill(command) if "<" in command else command)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            assert "Traceback" not in result.stderr
            ran += 1
        if "progress_callback" in python:
            printed = run_progress_snippet(tmp_path, python)
            assert any("Fast SSD: done" in line for line in printed)
    assert ran >= 20
    assert (tmp_path / "archive" / "my-project" / "new.png").exists()  # consolidated


def run_progress_snippet(root: Path, python: str) -> list[str]:
    """The guide's "Custom progress in scripts" lines, with a scanner over the library."""
    lines: list[str] = []
    cache = DuckDBSearchCache(root / "data" / "search.duckdb")
    namespace = {"scanner": MultiPathScanner(cache, StorageRegistry(cache)),
                 "print": lines.append}
    code = compile(python, "guide", "exec", flags=0x2000)  # top-level await

    async def main() -> None:
        await eval(code, namespace)

    try:
        trio.run(main)
    finally:
        cache.close()
    return lines
