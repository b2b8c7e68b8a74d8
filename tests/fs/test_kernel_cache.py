"""The kernel keeps names and attributes the mount gave it for minutes (long entry and
attribute timeouts). Whatever changes behind its back must show at once all the same: files
changed in a location and found by a scan, moved by a migration, changed by alicefs-ctl,
or changed through another view of the mount.

Every check stats a name the kernel already holds *before* anything lists its directory:
a listing hands the kernel fresh attributes, which would hide a stale cache."""

from __future__ import annotations

import json
import os
import subprocess
import time

from tests.fs.conftest import wait_for

TIERS = {
    "ssd": "priority: 100, rules: [{max_age_days: 30}]",
    "hdd": "priority: 50",
}
DAY = 86_400


def _write(path, data: bytes, days_old: float = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if days_old:
        then = time.time() - days_old * DAY
        os.utime(path, (then, then))


def _exists(path) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


def test_changes_a_scan_finds_in_a_location_show_at_once(mount_factory):
    fs = mount_factory({"ssd": ""}, start=False)
    disk = fs.roots["ssd"] / "p"
    for name in ("grows.png", "goes.png", "renamed.png", "stays.png"):
        _write(disk / name, name.encode())
    fs.start()
    mnt = fs.mountpoint
    views = (fs.projects / "p", mnt / "types" / "image" / "p", mnt / "locations" / "ssd" / "p")
    for view in views:  # into the kernel's cache
        for name in ("grows.png", "goes.png", "renamed.png", "new.png"):
            _exists(view / name)
        assert os.stat(view / "grows.png").st_size == len(b"grows.png")

    with open(disk / "grows.png", "ab") as growing:
        growing.write(b" and then some")
    (disk / "goes.png").unlink()
    os.rename(disk / "renamed.png", disk / "now-named.png")
    _write(disk / "new.png", b"new")
    result = fs.ctl("scan", "ssd")
    assert result.returncode == 0, result.stderr

    for view in views:
        assert os.stat(view / "grows.png").st_size == len(b"grows.png and then some")
        assert (view / "grows.png").read_bytes() == b"grows.png and then some"
        assert (view / "new.png").read_bytes() == b"new"
        assert (view / "now-named.png").read_bytes() == b"renamed.png"
    here = mnt / "locations" / "ssd" / "p"
    assert not _exists(here / "goes.png")
    assert not _exists(here / "renamed.png")
    for view in views:  # what a lookup shows is what a listing shows
        listed = set(os.listdir(view))
        for name in ("grows.png", "goes.png", "renamed.png", "new.png", "now-named.png"):
            assert _exists(view / name) == (name in listed), (view, name)


def test_the_mounts_own_scan_shows_changes_at_once(mount_factory):
    fs = mount_factory({"ssd": ""}, start=False)
    fs.config.write_text(fs.config.read_text().replace("scan_interval: 1h", "scan_interval: 1s"))
    disk = fs.roots["ssd"] / "p"
    _write(disk / "a.png", b"a")
    _write(disk / "b.png", b"b")
    fs.start()
    here = fs.mountpoint / "locations" / "ssd" / "p"
    assert _exists(here / "a.png")
    scans = fs.log.read_text().count("alicefs.daemon: scan: ")
    (disk / "a.png").unlink()
    while fs.log.read_text().count("alicefs.daemon: scan: ") < scans + 2:
        time.sleep(0.1)  # a scan that began before the unlink may not have seen it
    assert not _exists(here / "a.png")


def test_a_migration_shows_at_once(mount_factory):
    fs = mount_factory(TIERS, start=False)
    _write(fs.roots["ssd"] / "p" / "old.png", b"old" * 100, days_old=40)
    _write(fs.roots["ssd"] / "p" / "fresh.png", b"fresh", days_old=1)
    fs.start()
    ssd = fs.mountpoint / "locations" / "ssd" / "p"
    hdd = fs.mountpoint / "locations" / "hdd"
    assert _exists(ssd / "old.png")
    assert not _exists(hdd / "p")
    result = fs.ctl("migrate", "--move")
    assert result.returncode == 0, result.stderr
    assert not _exists(ssd / "old.png")
    assert (hdd / "p" / "old.png").read_bytes() == b"old" * 100
    assert (fs.projects / "p" / "old.png").read_bytes() == b"old" * 100


def test_location_changes_by_alicefs_ctl_show_at_once(mount_factory):
    fs = mount_factory(TIERS, start=False)
    _write(fs.roots["ssd"] / "p" / "a.png", b"on the ssd")
    _write(fs.roots["hdd"] / "q" / "b.png", b"on the hdd only")
    fs.start()
    locations = fs.mountpoint / "locations"
    status = fs.mountpoint / ".alicefs" / "locations.json"
    assert os.stat(status).st_size == len(status.read_bytes())
    assert _exists(locations / "ssd" / "p" / "a.png")
    assert _exists(fs.projects / "q" / "b.png")
    assert _exists(locations / "hdd" / "q" / "b.png")

    result = fs.ctl("update", "--location-id", "ssd", "--name", "fast")
    assert result.returncode == 0, result.stderr
    assert not _exists(locations / "ssd")
    assert (locations / "fast" / "p" / "a.png").read_bytes() == b"on the ssd"
    assert os.stat(status).st_size == len(status.read_bytes())  # status files never cached
    assert [loc["name"] for loc in json.loads(status.read_bytes())] == ["fast", "hdd"]

    result = fs.ctl("remove", "hdd")
    assert result.returncode == 0, result.stderr
    assert not _exists(locations / "hdd")
    assert not _exists(fs.projects / "q" / "b.png")
    assert (fs.roots["hdd"] / "q" / "b.png").read_bytes() == b"on the hdd only"


def test_changes_through_projects_show_in_the_other_views(mount_factory):
    fs = mount_factory({"ssd": ""}, start=False)
    _write(fs.roots["ssd"] / "p" / "a.png", b"a")
    _write(fs.roots["ssd"] / "p" / "keep.png", b"an empty disk looks unplugged")
    fs.start()
    mnt = fs.mountpoint
    others = (mnt / "types" / "image" / "p", mnt / "locations" / "ssd" / "p")
    for view in others:
        assert os.stat(view / "a.png").st_size == 1
        _exists(view / "b.png")

    with open(fs.projects / "p" / "a.png", "ab") as appending:
        appending.write(b" longer")
        appending.flush()
        for view in others:  # while it is still open
            assert os.stat(view / "a.png").st_size == len(b"a longer")
    os.chmod(fs.projects / "p" / "a.png", 0o600)
    assert os.stat(others[0] / "a.png").st_mode & 0o777 == 0o600
    assert os.stat(others[1] / "a.png").st_mode & 0o777 == 0o400  # locations/ is read-only
    os.utime(fs.projects / "p" / "a.png", ns=(1_000_000_000, 2_000_000_000))
    for view in others:
        assert os.stat(view / "a.png").st_mtime_ns == 2_000_000_000

    # Gone from locations/ when the rename returns; from types/ a moment after (names
    # there reach the kernel without the request waiting: see alicefs.fs.kernel_cache).
    os.rename(fs.projects / "p" / "a.png", fs.projects / "p" / "b.png")
    assert not _exists(others[1] / "a.png")
    wait_for(lambda: not _exists(others[0] / "a.png"), timeout=5)
    for view in others:
        assert (view / "b.png").read_bytes() == b"a longer"
    os.rename(fs.projects / "p" / "b.png", fs.projects / "p" / "b.mp4")  # now a video
    wait_for(lambda: not _exists(others[0] / "b.png"), timeout=5)
    assert (mnt / "types" / "video" / "p" / "b.mp4").read_bytes() == b"a longer"
    os.unlink(fs.projects / "p" / "b.mp4")
    assert not _exists(others[1] / "b.mp4")
    wait_for(lambda: not _exists(mnt / "types" / "video" / "p" / "b.mp4"), timeout=5)


def test_renames_and_unlinks_through_types_show_everywhere(mount_factory):
    fs = mount_factory({"ssd": ""}, start=False)
    _write(fs.roots["ssd"] / "p" / "a.png", b"a")
    _write(fs.roots["ssd"] / "p" / "keep.png", b"an empty disk looks unplugged")
    fs.start()
    typed = fs.mountpoint / "types" / "image" / "p"
    here = fs.mountpoint / "locations" / "ssd" / "p"
    for view in (fs.projects / "p", here):
        assert _exists(view / "a.png")
    os.rename(typed / "a.png", typed / "b.png")
    assert not _exists(here / "a.png")
    wait_for(lambda: not _exists(fs.projects / "p" / "a.png"), timeout=5)
    assert (fs.projects / "p" / "b.png").read_bytes() == b"a"
    assert _exists(here / "b.png")
    os.unlink(typed / "b.png")
    assert not _exists(here / "b.png")
    wait_for(lambda: not _exists(fs.projects / "p" / "b.png"), timeout=5)


def test_hard_links_show_their_count_in_every_view(mount_factory):
    fs = mount_factory({"ssd": ""}, start=False)
    _write(fs.roots["ssd"] / "p" / "a.png", b"a")
    fs.start()
    typed = fs.mountpoint / "types" / "image" / "p" / "a.png"
    assert os.stat(typed).st_nlink == 1
    os.link(fs.projects / "p" / "a.png", fs.projects / "p" / "b.png")
    assert os.stat(typed).st_nlink == 2
    os.unlink(fs.projects / "p" / "b.png")
    assert os.stat(typed).st_nlink == 1


def test_a_directory_emptied_for_a_moment_stays_as_it_was(mount_factory):
    """A rename of a directory's only file empties it for a moment: a process working in
    it, in any view, keeps its directory."""
    fs = mount_factory({"ssd": ""}, start=False)
    _write(fs.roots["ssd"] / "p" / "sub" / "only.png", b"only")
    fs.start()
    for sub in (fs.projects / "p" / "sub", fs.mountpoint / "types" / "image" / "p" / "sub"):
        result = subprocess.run(
            ["sh", "-c", f"mv {fs.projects}/p/sub/only.png {fs.projects}/p/sub/new.png"
                         f" && mv {fs.projects}/p/sub/new.png {fs.projects}/p/sub/only.png"
                         " && pwd -P && ls"],
            cwd=sub, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout == f"{sub}\nonly.png\n"
