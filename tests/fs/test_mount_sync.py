"""Sync in a mount: the sync state of each file (`user.alicefs.sync`, .alicefs/sync.json,
`alicefs-ctl sync-status` answered by the mount), `sync-process` sent to the mount, and a
file written through the mount while sync copies it."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.fs.conftest import BIN_DIR, wait_for

DISKS = {"ssd": "priority: 100", "hdd": "priority: 50"}
NO_SCHEDULE = "  sync: {interval: off}\n"
MiB = 1 << 20


def _both(fs, key: str, data: bytes) -> None:
    then = time.time() - 3600
    for root in fs.roots.values():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (then, then))


def _state(fs, key: str) -> bytes:
    return os.getxattr(fs.projects / key, "user.alicefs.sync")


def test_states_shown_and_levelled_through_the_mount(mount_factory):
    fs = mount_factory(DISKS, start=False, settings_extra=NO_SCHEDULE)
    _both(fs, "p/a.png", b"v1" * 1000)
    _both(fs, "p/b.png", b"untouched")
    fs.start()
    assert _state(fs, "p/a.png") == b"synced"

    (fs.projects / "p" / "a.png").write_bytes(b"v2 through the mount")
    assert _state(fs, "p/a.png") == b"pending_update"
    # A scan re-reading the older version in hdd does not make it current again.
    assert fs.ctl("scan", "hdd", "--no-progress").returncode == 0
    assert _state(fs, "p/a.png") == b"pending_update"
    assert (fs.projects / "p" / "a.png").read_bytes() == b"v2 through the mount"
    counts = json.loads((fs.mountpoint / ".alicefs" / "sync.json").read_text())
    assert counts["states"]["pending_update"] == 1 and counts["states"]["synced"] == 1
    assert counts["not_synced"] == {"pending_update": ["p/a.png"]}
    status = fs.ctl("sync-status", "--json")
    assert status.returncode == 0, status.stderr
    [file] = json.loads(status.stdout)["files"]
    assert {r["location"]: r["state"] for r in file["replicas"]} == {
        "ssd": "synced", "hdd": "pending_update"}

    done = fs.ctl("sync-process", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["counts"] == {"updated": 1}
    assert (fs.roots["hdd"] / "p" / "a.png").read_bytes() == b"v2 through the mount"
    assert _state(fs, "p/a.png") == b"synced"
    assert json.loads(fs.ctl("sync-process", "--json").stdout)["outcomes"] == []
    fs.restart()
    assert _state(fs, "p/a.png") == b"synced"
    assert (fs.projects / "p" / "a.png").read_bytes() == b"v2 through the mount"


def test_a_write_during_sync_keeps_both_versions_in_order(mount_factory):
    fs = mount_factory(DISKS, start=False, settings_extra=NO_SCHEDULE)
    _both(fs, "p/big.bin", os.urandom(48 * MiB))
    fs.start()
    second = os.urandom(48 * MiB)
    (fs.projects / "p" / "big.bin").write_bytes(second)
    # Paced, so the write below lands while the copy runs.
    syncing = subprocess.Popen(
        [str(BIN_DIR / "alicefs-ctl"), "--config", str(fs.config), "sync-process", "--json",
         "--bwlimit", "24MB/s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: any(name.startswith(".alicefs-")
                             for name in os.listdir(fs.roots["hdd"] / "p")), timeout=20)
        with open(fs.projects / "p" / "big.bin", "r+b") as f:
            f.write(b"third version")
        third = b"third version" + second[len(b"third version"):]
        out, err = syncing.communicate(timeout=60)
    finally:
        if syncing.poll() is None:
            syncing.kill()
            syncing.wait()
    assert syncing.returncode == 0, err
    [outcome] = json.loads(out)["outcomes"]
    assert outcome["result"] == "changed", outcome
    assert (fs.roots["ssd"] / "p" / "big.bin").read_bytes() == third
    assert (fs.roots["hdd"] / "p" / "big.bin").read_bytes() == second
    assert _state(fs, "p/big.bin") == b"pending_update"
    assert (fs.projects / "p" / "big.bin").read_bytes() == third

    again = fs.ctl("sync-process", "--json")
    assert json.loads(again.stdout)["counts"] == {"updated": 1}
    assert (fs.roots["hdd"] / "p" / "big.bin").read_bytes() == third
    assert _state(fs, "p/big.bin") == b"synced", fs.ctl("sync-status", "--json").stdout


def test_a_conflict_resolved_by_the_mount_shows_the_kept_version(mount_factory):
    fs = mount_factory(DISKS, start=False, settings_extra=NO_SCHEDULE)
    _both(fs, "p/c.png", b"v1")
    fs.start()
    now = time.time()
    for name, data, age in (("ssd", b"the ssd's edit", 60), ("hdd", b"the hdd's edit", 0)):
        path = fs.roots[name] / "p" / "c.png"
        path.write_bytes(data)
        os.utime(path, (now - age, now - age))
    assert fs.ctl("discover", "--no-progress").returncode == 0
    assert _state(fs, "p/c.png") == b"conflict"
    resolved = fs.ctl("resolve-conflict", "p/c.png", "--strategy", "newest", "--json")
    assert resolved.returncode == 0, resolved.stderr
    [outcome] = json.loads(resolved.stdout)["outcomes"]
    kept = outcome["kept_as"]
    assert kept.startswith("p/c.conflict-") and kept.endswith("-ssd.png")
    assert (fs.projects / "p" / "c.png").read_bytes() == b"the hdd's edit"
    assert (fs.projects / kept).read_bytes() == b"the ssd's edit"
    assert _state(fs, "p/c.png") == b"synced"
    fs.restart()
    assert sorted(os.listdir(fs.projects / "p")) == sorted(["c.png", kept.split("/")[1]])
