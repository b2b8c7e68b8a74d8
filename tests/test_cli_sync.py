"""`alicefs-ctl sync-status`, `sync-process` and `resolve-conflict` end to end over two local
disks: the worked example of docs/sync.md, JSON output, and bad arguments."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

DOC = Path(__file__).parents[1] / "docs" / "sync.md"


@pytest.fixture
def two_disks(tmp_path, write_config, ctl):
    """`studio` (priority 100) and `backup` (50), both holding neon/a.png and neon/b.png."""
    for disk in ("studio", "backup"):
        (tmp_path / disk / "neon").mkdir(parents=True)
        for name in ("a", "b"):
            (tmp_path / disk / "neon" / f"{name}.png").write_bytes(f"{name} v1".encode())
    config = write_config("""\
        storage:
          locations:
            - {name: studio, path: studio, priority: 100}
            - {name: backup, path: backup, priority: 50}
    """)
    for args in (("from-config",), ("discover", "--no-progress")):
        assert ctl(*args, config=config).returncode == 0
    return config


def edit(path, data: bytes, age_s: float = 0) -> None:
    path.write_bytes(data)
    then = time.time() - age_s
    os.utime(path, (then, then))


def _example_commands() -> list[str]:
    """The commands of docs/sync.md's worked example, in order, comments stripped."""
    text = DOC.read_text().split("## A worked example", 1)[1]
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.split("#", 1)[0].strip() for block in blocks
            for line in block.splitlines() if line.strip()]


def test_the_worked_example(two_disks, ctl, tmp_path):
    """docs/sync.md's worked example, command by command (the fixture ran its first two)."""
    config = two_disks
    ran = ["alicefs-ctl from-config", "alicefs-ctl discover --no-progress"]

    def run(*args: str, shown: str | None = None):
        ran.append(" ".join(["alicefs-ctl", *((shown,) if shown else args)]))
        return ctl(*args, config=config)

    status = run("sync-status")
    assert status.returncode == 0 and "synced: 2" in status.stdout
    edit(tmp_path / "backup" / "neon" / "a.png", b"a v2, edited on the backup")
    edit(tmp_path / "studio" / "neon" / "b.png", b"b: the studio's edit", age_s=60)
    edit(tmp_path / "backup" / "neon" / "b.png", b"b: the backup's later edit")
    assert run("discover", "--no-progress").returncode == 0

    status = run("sync-status")
    assert "pending_update: 1" in status.stdout and "conflict: 1" in status.stdout
    assert "neon/a.png" in status.stdout and "neon/b.png" in status.stdout
    data = json.loads(run("sync-status", "--state", "conflict", "--json").stdout)
    assert [f["path"] for f in data["files"]] == ["neon/b.png"]
    assert {r["location"]: r["state"] for r in data["files"][0]["replicas"]} == {
        "studio": "conflict", "backup": "conflict"}

    dry = run("sync-process", "--dry-run")
    assert dry.returncode == 0 and "neon/a.png" in dry.stdout
    assert "neon/b.png: a conflict" in dry.stderr
    done = run("sync-process", "--no-progress")
    assert done.returncode == 0 and "1 updated" in done.stdout
    assert (tmp_path / "studio" / "neon" / "a.png").read_bytes() == b"a v2, edited on the backup"

    listing = run("resolve-conflict", "neon/b.png", "--strategy", "manual")
    assert listing.returncode == 0 and listing.stdout.count("candidate in") == 2
    conflict_hash = data["files"][0]["replicas"][0]["hash"]
    resolved = run("resolve-conflict", conflict_hash[:12], "--strategy", "newest",
                   shown="resolve-conflict <content-hash> --strategy newest")
    assert resolved.returncode == 0, resolved.stderr
    assert "backup's version wins" in resolved.stdout
    kept = [p.name for p in (tmp_path / "studio" / "neon").iterdir() if "conflict" in p.name]
    assert len(kept) == 1 and kept[0].startswith("b.conflict-") and kept[0].endswith(
        "-studio.png")
    assert (tmp_path / "studio" / "neon" / kept[0]).read_bytes() == b"b: the studio's edit"
    assert (tmp_path / "studio" / "neon" / "b.png").read_bytes() == \
        b"b: the backup's later edit"

    again = json.loads(run("sync-process", "--json").stdout)
    assert again["outcomes"] == [] and again["counts"] == {}
    none_left = run("resolve-conflict", "--all", "--strategy", "newest")
    assert none_left.returncode == 0 and "no conflicts" in none_left.stdout
    assert ran == _example_commands()


def test_a_tie_is_reported_and_exits_1(two_disks, ctl, tmp_path):
    edit(tmp_path / "studio" / "neon" / "a.png", b"same size 1")
    edit(tmp_path / "backup" / "neon" / "a.png", b"same size 2")
    assert ctl("discover", "--no-progress", config=two_disks).returncode == 0
    tie = ctl("resolve-conflict", "neon/a.png", "--strategy", "largest", config=two_disks)
    assert tie.returncode == 1 and "a tie" in tie.stdout and "nothing decided" in tie.stdout
    assert (tmp_path / "studio" / "neon" / "a.png").read_bytes() == b"same size 1"


@pytest.mark.parametrize(("args", "expected"), [
    (("resolve-conflict", "--strategy", "newest"), "or give --all"),
    (("resolve-conflict", "x", "--all", "--strategy", "newest"), "or give --all"),
    (("resolve-conflict", "x", "--strategy", "oldest"), "invalid choice: 'oldest'"),
    (("resolve-conflict", "x", "--strategy", "newest", "--keep", "studio"),
     "--keep goes with --strategy manual"),
    (("resolve-conflict", "nothing/here.png", "--strategy", "newest"), "no conflict with"),
    (("resolve-conflict", "neon/a.png", "--strategy", "manual", "--keep", "nowhere"),
     "no location with id or name 'nowhere'"),
    (("sync-status", "--state", "stale"), "invalid choice: 'stale'"),
    (("sync-process", "--max-concurrent", "0"), "expected"),
])
def test_bad_arguments_say_what_was_expected(two_disks, ctl, args, expected):
    result = ctl(*args, config=two_disks)
    assert result.returncode in (1, 2) and expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_auto_resolve_settings_are_validated(ctl, write_config):
    config = write_config("""\
        storage:
          sync:
            auto_resolve: oldest
            projects: {neon: {auto_resolv: newest}}
          locations: []
    """)
    result = ctl("sync-status", config=config)
    assert result.returncode == 2
    assert "storage.sync.auto_resolve: expected one of off, newest" in result.stderr
    assert 'storage.sync.projects.neon.auto_resolv: unknown key "auto_resolv"' in result.stderr
