"""The mounted filesystem, through ordinary file operations only."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from alicefs.catalog import Catalog
from alicefs.config import load_settings
from tests.conftest import BIN_DIR
from tests.fs.conftest import wait_for
from tests.media_samples import png, xmp

TIERS = {
    "ssd": "priority: 100, rules: [{include_types: [image], max_size_bytes: 10MB}]",
    "hdd": "priority: 50",
}


@pytest.fixture
def fs(mount_factory):
    return mount_factory(TIERS)


def test_tree_and_placement_by_rules(fs):
    assert sorted(os.listdir(fs.mountpoint)) == [".alicefs", "locations", "projects", "types"]
    (fs.projects / "shoot").mkdir()
    (fs.projects / "shoot" / "a.png").write_bytes(b"png")
    (fs.projects / "shoot" / "notes.txt").write_text("text")
    # Checked on the backing stores directly.
    assert (fs.roots["ssd"] / "shoot" / "a.png").read_bytes() == b"png"
    assert (fs.roots["hdd"] / "shoot" / "notes.txt").read_text() == "text"
    assert not (fs.roots["hdd"] / "shoot" / "a.png").exists()
    assert sorted(os.listdir(fs.projects / "shoot")) == ["a.png", "notes.txt"]


def test_files_already_in_locations_show_in_every_view(fs):
    (fs.roots["hdd"] / "old").mkdir()
    (fs.roots["hdd"] / "old" / "clip.mp4").write_bytes(b"v" * 1000)
    (fs.roots["ssd"] / "root-file.png").write_bytes(b"r")
    fs.restart()
    assert (fs.projects / "old" / "clip.mp4").read_bytes() == b"v" * 1000
    assert (fs.mountpoint / "types" / "video" / "old" / "clip.mp4").stat().st_size == 1000
    assert (fs.mountpoint / "locations" / "hdd" / "old" / "clip.mp4").exists()
    assert not (fs.mountpoint / "locations" / "ssd" / "old").exists()
    # A file at a location's root belongs to the project _unsorted.
    assert (fs.projects / "_unsorted" / "root-file.png").read_bytes() == b"r"
    # types/ and locations/ agree with projects/.
    in_projects = {str(p.relative_to(fs.projects)) for p in fs.projects.rglob("*")
                   if p.is_file()}
    in_types = {str(p.relative_to(p.parents[len(p.relative_to(fs.mountpoint / "types")
                                                   .parts) - 2]))
                for p in (fs.mountpoint / "types").rglob("*") if p.is_file()}
    in_locations = set()
    for name in ("ssd", "hdd"):
        base = fs.mountpoint / "locations" / name
        in_locations |= {str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}
    assert in_projects == in_types == {"old/clip.mp4", "_unsorted/root-file.png"}
    assert in_locations == in_projects


def test_read_write_seek_append_truncate(fs):
    path = fs.projects / "p" / "data.bin"
    path.parent.mkdir()
    with open(path, "wb") as f:
        f.write(b"0123456789")
        f.seek(20)
        f.write(b"X")
    assert path.read_bytes() == b"0123456789" + b"\0" * 10 + b"X"
    with open(path, "ab") as f:
        f.write(b"tail")
    with open(path, "r+b") as f:
        f.seek(2)
        f.write(b"ab")
        f.seek(0)
        assert f.read(5) == b"01ab4"
        f.truncate(4)
    assert path.read_bytes() == b"01ab"
    os.truncate(path, 0)
    assert path.stat().st_size == 0
    assert (fs.roots["hdd"] / "p" / "data.bin").read_bytes() == b""


def test_temp_file_renamed_to_its_final_name_lands_by_the_final_name(fs):
    (fs.projects / "render").mkdir()
    tmp = fs.projects / "render" / "x.png.tmp"
    tmp.write_bytes(b"image bytes")
    assert (fs.roots["hdd"] / "render" / "x.png.tmp").exists()  # .tmp: not an image yet
    os.rename(tmp, fs.projects / "render" / "x.png")
    assert (fs.projects / "render" / "x.png").read_bytes() == b"image bytes"
    # Moved in the background: the copy appears first, the source goes once it is recorded.
    wait_for(lambda: (fs.roots["ssd"] / "render" / "x.png").exists()
             and not (fs.roots["hdd"] / "render" / "x.png").exists(), timeout=10)
    assert (fs.roots["ssd"] / "render" / "x.png").read_bytes() == b"image bytes"
    assert os.getxattr(fs.projects / "render" / "x.png", "user.alicefs.locations") == b"ssd"


def test_sidecars_go_where_the_file_they_describe_is(fs):
    (fs.projects / "shoot").mkdir()
    xmp = b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    # Written before its photo (by rules alone it would go to hdd), then the photo arrives
    # as name.tmp and is renamed: the sidecar follows it to the SSD.
    (fs.projects / "shoot" / "a.xmp").write_bytes(xmp)
    (fs.projects / "shoot" / "a.png.tmp").write_bytes(b"photo")
    os.rename(fs.projects / "shoot" / "a.png.tmp", fs.projects / "shoot" / "a.png")
    # Written after its photo: placed beside it at once.
    (fs.projects / "shoot" / "b.png").write_bytes(b"photo")
    (fs.projects / "shoot" / "b.png.xmp").write_bytes(xmp)
    assert (fs.roots["ssd"] / "shoot" / "b.png.xmp").read_bytes() == xmp
    # Moved in the background: the copies appear first, the sources go once recorded.
    wait_for(lambda: (fs.roots["ssd"] / "shoot" / "a.xmp").exists()
             and (fs.roots["ssd"] / "shoot" / "a.png").exists()
             and os.listdir(fs.roots["hdd"] / "shoot") == [])
    assert (fs.projects / "shoot" / "a.xmp").read_bytes() == xmp


def test_rename_keeps_inode_and_location(fs):
    (fs.projects / "a").mkdir()
    (fs.projects / "a" / "doc.txt").write_text("hello")
    inode = (fs.projects / "a" / "doc.txt").stat().st_ino
    (fs.projects / "b" / "deep").mkdir(parents=True)
    os.rename(fs.projects / "a" / "doc.txt", fs.projects / "b" / "deep" / "doc.txt")
    assert (fs.projects / "b" / "deep" / "doc.txt").stat().st_ino == inode
    assert (fs.roots["hdd"] / "b" / "deep" / "doc.txt").read_text() == "hello"
    assert not (fs.roots["hdd"] / "a" / "doc.txt").exists()
    # Replacing rename, as editors save.
    (fs.projects / "b" / "new.txt").write_text("replacement")
    os.rename(fs.projects / "b" / "new.txt", fs.projects / "b" / "deep" / "doc.txt")
    assert (fs.projects / "b" / "deep" / "doc.txt").read_text() == "replacement"
    # A directory rename moves everything below it.
    os.rename(fs.projects / "b", fs.projects / "c")
    assert (fs.projects / "c" / "deep" / "doc.txt").read_text() == "replacement"
    assert (fs.roots["hdd"] / "c" / "deep" / "doc.txt").exists()


def test_unlink_mkdir_rmdir_symlink(fs):
    (fs.projects / "d" / "e").mkdir(parents=True)
    assert (fs.roots["ssd"] / "d" / "e").is_dir()
    (fs.projects / "d" / "e" / "f.txt").write_text("f")
    with pytest.raises(OSError) as info:
        os.rmdir(fs.projects / "d" / "e")
    assert info.value.errno == errno.ENOTEMPTY
    os.unlink(fs.projects / "d" / "e" / "f.txt")
    assert not (fs.roots["hdd"] / "d" / "e" / "f.txt").exists()
    assert (fs.projects / "d" / "e").is_dir()  # emptied, still there
    os.rmdir(fs.projects / "d" / "e")
    assert not (fs.projects / "d" / "e").exists()
    (fs.projects / "d" / "target.txt").write_text("t")
    os.symlink("target.txt", fs.projects / "d" / "link")
    assert os.readlink(fs.projects / "d" / "link") == "target.txt"
    assert (fs.projects / "d" / "link").read_text() == "t"
    os.unlink(fs.projects / "d" / "link")
    with pytest.raises(FileNotFoundError):
        (fs.projects / "nope" / "x").write_text("x")
    with pytest.raises(FileExistsError):
        os.mkdir(fs.projects / "d")


def test_posix_errors(fs):
    with pytest.raises(OSError) as info:
        (fs.projects / ("n" * 256)).write_text("x")
    assert info.value.errno == errno.ENAMETOOLONG
    (fs.projects / "p").mkdir()
    (fs.projects / "p" / "f.txt").write_text("x")
    with pytest.raises(IsADirectoryError):
        os.unlink(fs.projects / "p")
    with pytest.raises(NotADirectoryError):
        os.rmdir(fs.projects / "p" / "f.txt")
    # A name with "..": resolved by the kernel inside the mount, never outside a location.
    assert not (fs.projects / ".." / ".." / "etc").exists()


def test_read_only_views(fs):
    (fs.projects / "p").mkdir()
    (fs.projects / "p" / "a.png").write_bytes(b"a")
    for path in (fs.mountpoint / "locations" / "ssd" / "p" / "new.txt",
                 fs.mountpoint / "types" / "image" / "p" / "new.png",
                 fs.mountpoint / ".alicefs" / "x"):
        with pytest.raises(OSError) as info:
            path.write_bytes(b"x")
        assert info.value.errno == errno.EROFS
    with pytest.raises(OSError) as info:
        os.unlink(fs.mountpoint / "locations" / "ssd" / "p" / "a.png")
    assert info.value.errno == errno.EROFS
    with pytest.raises(OSError) as info:
        os.open(fs.mountpoint / "types" / "image" / "p" / "a.png", os.O_RDWR)
    assert info.value.errno == errno.EROFS
    # types/ allows rename and unlink.
    os.rename(fs.mountpoint / "types" / "image" / "p" / "a.png",
              fs.mountpoint / "types" / "image" / "p" / "b.png")
    assert (fs.projects / "p" / "b.png").read_bytes() == b"a"
    os.unlink(fs.mountpoint / "types" / "image" / "p" / "b.png")
    assert not (fs.roots["ssd"] / "p" / "b.png").exists()


def test_xattrs_with_getfattr_setfattr_and_desktop_names(fs):
    (fs.projects / "p").mkdir()
    photo = fs.projects / "p" / "photo.png"
    photo.write_bytes(b"p")
    run = subprocess.run
    assert run(["setfattr", "-n", "user.alicefs.tags", "-v", "portfolio,client", str(photo)]
               ).returncode == 0
    assert run(["setfattr", "-n", "user.baloo.rating", "-v", "8", str(photo)]).returncode == 0
    out = run(["getfattr", "-d", "-m", "-", str(photo)], capture_output=True, text=True).stdout
    assert 'user.alicefs.quality="4"' in out and 'user.xdg.tags="portfolio,client"' in out
    assert 'user.alicefs.locations="ssd"' in out and 'user.alicefs.sync="synced"' in out
    os.setxattr(photo, "user.xdg.tags", b"a,b")
    assert os.getxattr(photo, "user.alicefs.tags") == b"a,b"
    with pytest.raises(OSError) as info:
        os.setxattr(photo, "user.alicefs.locations", b"x")
    assert info.value.errno == errno.EPERM
    with pytest.raises(OSError) as info:
        os.setxattr(photo, "user.alicefs.quality", b"9")
    assert info.value.errno == errno.EINVAL
    # Kept in the catalog: visible to alicefs-ctl after unmounting, and after a remount.
    fs.restart()
    assert os.getxattr(photo, "user.alicefs.quality") == b"4"
    fs.stop()
    assets = json.loads(fs.ctl("find-project", "p", "--json").stdout)
    assert assets[0]["tags"] == ["a", "b"] and assets[0]["quality"] == 4


def test_noxattr_option(mount_factory):
    fs = mount_factory(TIERS, extra_args=["-o", "noxattr"])
    (fs.projects / "p").mkdir()
    (fs.projects / "p" / "a.png").write_bytes(b"a")
    with pytest.raises(OSError) as info:
        os.getxattr(fs.projects / "p" / "a.png", "user.alicefs.tags")
    assert info.value.errno in (errno.ENOTSUP, errno.ENOSYS)


def _writer(args):
    path, seed = args
    data = hashlib.sha256(str(seed).encode()).digest() * 4000
    for _ in range(3):
        with open(path, "wb") as f:
            f.write(data)
        with open(path, "rb") as f:
            if f.read() != data:
                return False
    return True


def test_eight_processes_writing_and_reading(fs):
    (fs.projects / "par").mkdir()
    jobs = [(str(fs.projects / "par" / f"f{i}.bin"), i) for i in range(8)]
    with ProcessPoolExecutor(8) as pool:
        assert all(pool.map(_writer, jobs))
    for path, seed in jobs:
        expected = hashlib.sha256(str(seed).encode()).digest() * 4000
        with open(path, "rb") as f:
            assert f.read() == expected


def test_two_gib_file_round_trips(fs):
    (fs.projects / "big").mkdir()
    path = fs.projects / "big" / "huge.bin"
    block = os.urandom(1 << 20)
    digest = hashlib.blake2b()
    with open(path, "wb") as f:
        for i in range(2048):
            chunk = block[i % 256:] + block[:i % 256]
            f.write(chunk)
            digest.update(chunk)
    check = hashlib.blake2b()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            check.update(chunk)
    assert path.stat().st_size == 2 << 30
    assert check.hexdigest() == digest.hexdigest()
    os.unlink(path)


def test_status_files(fs):
    locations = json.loads((fs.mountpoint / ".alicefs" / "locations.json").read_text())
    assert [loc["name"] for loc in locations] == ["ssd", "hdd"]
    assert all(loc["state"] == "online" for loc in locations)
    sync = json.loads((fs.mountpoint / ".alicefs" / "sync.json").read_text())
    assert "states" in sync
    assert "uploads_pending" in json.loads((fs.mountpoint / ".alicefs" / "queue.json")
                                           .read_text())


def test_a_location_going_offline_leaves_the_rest_usable(mount_factory):
    fs = mount_factory(TIERS, start=False)
    (fs.roots["ssd"] / "p").mkdir()
    (fs.roots["ssd"] / "p" / "fast.png").write_bytes(b"fast")
    (fs.roots["hdd"] / "p").mkdir()
    (fs.roots["hdd"] / "p" / "slow.txt").write_text("slow")
    fs.start()
    fs.stop()
    fs.roots["ssd"].rename(fs.roots["ssd"].with_name("unplugged"))
    fs.start()
    assert (fs.projects / "p" / "slow.txt").read_text() == "slow"
    with pytest.raises(OSError) as info:
        (fs.projects / "p" / "fast.png").read_bytes()
    assert info.value.errno == errno.EIO
    locations = json.loads((fs.mountpoint / ".alicefs" / "locations.json").read_text())
    assert {loc["name"]: loc["state"] for loc in locations} == {"ssd": "offline",
                                                                 "hdd": "online"}
    # New images cannot go to the unplugged SSD: they land where there is room.
    (fs.projects / "p" / "new.png").write_bytes(b"new")
    assert (fs.roots["hdd"] / "p" / "new.png").read_bytes() == b"new"


def test_sigkill_of_the_mount_loses_nothing(mount_factory):
    fs = mount_factory(TIERS)
    (fs.projects / "k").mkdir()
    for i in range(50):
        (fs.projects / "k" / f"{i}.txt").write_text(str(i))
    fs.kill()
    fs.start()
    assert sorted(os.listdir(fs.projects / "k")) == sorted(f"{i}.txt" for i in range(50))
    assert all((fs.projects / "k" / f"{i}.txt").read_text() == str(i) for i in range(50))


def test_mount_errors_are_one_clear_line(mount_factory, tmp_path):
    fs = mount_factory(TIERS, start=False)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    cases = [
        (["mount", "--config", str(fs.config), str(busy)], "is not empty"),
        (["mount", "--config", str(tmp_path / "none.yaml"), str(fs.mountpoint)],
         "none.yaml: no such file"),
        (["mount", "--config", str(fs.config), str(tmp_path / "nodir")], "does not exist"),
        (["mount", "--config", str(fs.config), str(fs.mountpoint), "-o", "bogus"],
         "unknown mount option 'bogus'"),
    ]
    for args, message in cases:
        result = subprocess.run([str(BIN_DIR / "alicefs"), *args], capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 2
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_background_mount_and_umount(mount_factory):
    fs = mount_factory(TIERS, start=False)
    result = subprocess.run([str(BIN_DIR / "alicefs"), "mount", "--config", str(fs.config),
                             str(fs.mountpoint)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    try:
        # Listening once `alicefs mount` returns: a command run right after it reaches the
        # mount, where it could find the catalog locked and no socket yet.
        assert (fs.config.parent / "state" / "control.sock").is_socket()
        assert fs.ctl("list").returncode == 0
        assert os.path.ismount(fs.mountpoint)
        (fs.projects / "bg").mkdir()
        (fs.projects / "bg" / "f.txt").write_text("background")
    finally:
        result = subprocess.run([str(BIN_DIR / "alicefs"), "umount", str(fs.mountpoint)],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert not os.path.ismount(fs.mountpoint)
    assert (fs.roots["hdd"] / "bg" / "f.txt").read_text() == "background"
    # umount waited for the catalog to be written: alicefs-ctl sees the file at once.
    assets = json.loads(fs.ctl("find-project", "bg", "--json").stdout)
    assert [a["logical_path"] for a in assets] == ["bg/f.txt"]


def test_alicefs_ctl_reaches_a_mount_whose_state_directory_is_deep(mount_factory, tmp_path):
    """A socket path longer than AF_UNIX's 108 bytes (a long $HOME) is bound and reached
    through the state directory's descriptor; the mount used to die at start."""
    state_dir = tmp_path / ("deep-" * 12) / ("state-" * 10)
    fs = mount_factory(TIERS, settings_extra=f"  state_dir: {state_dir}\n")
    assert len(str(state_dir / "control.sock")) > 108
    assert (state_dir / "control.sock").is_socket()
    (fs.projects / "deep").mkdir()
    (fs.projects / "deep" / "shot.png").write_bytes(b"png")
    assert fs.ctl("tag", "deep/shot.png", "--add", "far").returncode == 0
    assert os.getxattr(fs.projects / "deep" / "shot.png", "user.alicefs.tags") == b"far"


def test_alicefs_ctl_works_while_mounted(fs):
    socket_path = fs.config.parent / "state" / "control.sock"
    assert socket_path.is_socket() and (socket_path.stat().st_mode & 0o777) == 0o600
    listed = json.loads(fs.ctl("list", "--json").stdout)
    assert [loc["name"] for loc in listed] == ["ssd", "hdd"]
    (fs.projects / "live").mkdir()
    (fs.projects / "live" / "shot.png").write_bytes(b"png")
    # Tag and rate by mount path; the mount shows the change at once.
    assert fs.ctl("tag", str(fs.projects / "live" / "shot.png"), "--add", "hero").returncode == 0
    assert fs.ctl("rate", "live/shot.png", "5").returncode == 0
    assert os.getxattr(fs.projects / "live" / "shot.png", "user.alicefs.tags") == b"hero"
    assert os.getxattr(fs.projects / "live" / "shot.png", "user.baloo.rating") == b"10"
    # A file added directly in a location appears after a scan run through the mount.
    (fs.roots["hdd"] / "live" / "direct.txt").parent.mkdir(exist_ok=True)
    (fs.roots["hdd"] / "live" / "direct.txt").write_text("direct")
    result = fs.ctl("scan", "hdd", "--json")
    assert result.returncode == 0, result.stderr
    assert (fs.projects / "live" / "direct.txt").read_text() == "direct"
    assets = json.loads(fs.ctl("find-project", "live", "--json").stdout)
    assert [a["logical_path"] for a in assets] == ["live/direct.txt", "live/shot.png"]
    # Priorities changed through the mount take effect for new files at once.
    assert fs.ctl("update", "--location-id", "hdd", "--priority", "200").returncode == 0
    (fs.projects / "live" / "after.png").write_bytes(b"p")
    assert (fs.roots["hdd"] / "live" / "after.png").exists()
    # Errors keep their exit codes.
    assert fs.ctl("rate", "live/none.png", "3").returncode == 2


def test_mount_helper_form(mount_factory):
    # mount.fuse3 runs `alicefs SOURCE MOUNTPOINT -o OPTIONS` for `mount -t fuse.alicefs` and
    # fstab entries; the generic options mount(8) adds are accepted.
    fs = mount_factory(TIERS, start=False)
    result = subprocess.run([str(BIN_DIR / "alicefs"), str(fs.config), str(fs.mountpoint),
                             "-o", "rw,nodev,nosuid,noatime"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    try:
        assert os.path.ismount(fs.mountpoint)
        assert sorted(os.listdir(fs.mountpoint)) == [".alicefs", "locations", "projects",
                                                     "types"]
    finally:
        subprocess.run([str(BIN_DIR / "alicefs"), "umount", str(fs.mountpoint)], timeout=120)
    assert not os.path.ismount(fs.mountpoint)


def test_listings_have_dot_entries_and_explain_takes_mount_paths(fs):
    (fs.projects / "e").mkdir()
    (fs.projects / "e" / "a.png").write_bytes(b"png")
    listing = subprocess.run(["ls", "-a", str(fs.projects / "e")], capture_output=True,
                             text=True).stdout.split()
    assert listing == [".", "..", "a.png"]
    data = json.loads(fs.ctl("explain", str(fs.projects / "e" / "a.png"), "--json").stdout)
    assert data["logical_path"] == "e/a.png" and data["size"] == 3
    assert data["current_location_id"] is not None


def test_writing_a_replicated_file_writes_the_primary_and_marks_the_others(mount_factory):
    fs = mount_factory(TIERS, start=False)
    for name in ("ssd", "hdd"):
        (fs.roots[name] / "r").mkdir()
        (fs.roots[name] / "r" / "both.txt").write_text("version 1")
    fs.start()
    path = fs.projects / "r" / "both.txt"
    assert os.getxattr(path, "user.alicefs.sync") == b"synced"
    path.write_text("version 2")
    assert (fs.roots["ssd"] / "r" / "both.txt").read_text() == "version 2"  # the primary
    assert (fs.roots["hdd"] / "r" / "both.txt").read_text() == "version 1"
    assert os.getxattr(path, "user.alicefs.sync") == b"pending_update"
    # Remembered across a remount: the older copy is never served.
    fs.restart()
    assert path.read_text() == "version 2"
    assert os.getxattr(path, "user.alicefs.sync") == b"pending_update"


def test_new_files_and_directories_belong_to_the_caller(mount_factory):
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (as CI does): it acts as another user")
    fs = mount_factory(TIERS, extra_args=["--allow-other"])
    shared = fs.projects / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    script = ("import os; os.umask(0o027); "
              f"open({str(shared / 'mine.txt')!r}, 'w').write('x'); "
              f"os.mkdir({str(shared / 'subdir')!r})")
    # pytest's temporary directories are private to root: let the other user pass through.
    parents = [p for p in fs.mountpoint.parents if str(p).startswith("/tmp/")]
    modes = {p: p.stat().st_mode & 0o7777 for p in parents}
    try:
        for path in parents:
            os.chmod(path, modes[path] | 0o111)
        result = subprocess.run(["python3", "-c", script], user=1234, group=1234,
                                capture_output=True, text=True, timeout=60)
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
    assert result.returncode == 0, result.stderr
    for path in (shared / "mine.txt", shared / "subdir"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (1234, 1234), path
    backing = fs.roots["hdd"] / "shared" / "mine.txt"
    assert (backing.stat().st_uid, backing.stat().st_mode & 0o777) == (1234, 0o640)
    assert (shared / "subdir").stat().st_mode & 0o777 == 0o750


def test_review_regressions_local(fs):
    (fs.projects / "lr").mkdir()
    # Renamed while open for writing (logrotate): the writer goes on writing.
    log = open(fs.projects / "lr" / "app.log", "w")  # noqa: SIM115
    log.write("one\n")
    log.flush()
    os.rename(fs.projects / "lr" / "app.log", fs.projects / "lr" / "app.log.1")
    log.write("two\n")
    log.close()
    assert (fs.projects / "lr" / "app.log.1").read_text() == "one\ntwo\n"
    # Times set before close (cp -p) are kept.
    with open(fs.projects / "lr" / "copy.txt", "w") as f:
        f.write("x")
        f.flush()
        os.utime(f.fileno(), ns=(1_500_000_000_000_000_000, 1_500_000_000_000_000_000))
    assert (fs.projects / "lr" / "copy.txt").stat().st_mtime_ns == 1_500_000_000_000_000_000
    # Hidden files made through the mount are not "missing" after a scan.
    (fs.projects / "lr" / ".env").write_text("SECRET=1")
    (fs.projects / "lr" / ".git").mkdir()
    (fs.projects / "lr" / ".git" / "HEAD").write_text("ref")
    assert fs.ctl("discover", "--json").returncode == 0
    assert (fs.projects / "lr" / ".env").read_text() == "SECRET=1"
    assert (fs.projects / "lr" / ".git" / "HEAD").read_text() == "ref"


def test_a_full_location_hands_the_file_to_the_next_one(mount_factory, tmp_path):
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (as CI does): it mounts a small tmpfs")
    fs = mount_factory({"small": "priority: 100, min_free_bytes: 0", "big": "priority: 50"},
                       start=False)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(fs.roots["small"])],
                   check=True)
    try:
        fs.start()
        (fs.projects / "full").mkdir()
        data = os.urandom(3 << 20)
        with open(fs.projects / "full" / "big.bin", "wb") as f:  # write-only descriptor
            f.write(data)
        assert (fs.projects / "full" / "big.bin").read_bytes() == data
        assert (fs.roots["big"] / "full" / "big.bin").read_bytes() == data
        assert not (fs.roots["small"] / "full" / "big.bin").exists()
        fs.stop()
        settings = load_settings(fs.config)
        big = next(loc.location_id for loc in settings.locations if loc.name == "big")
        with Catalog(settings.catalog_path) as catalog:
            assert [(r.location_id, r.size) for r in catalog.replicas_of("full/big.bin")] == [
                (big, len(data))]
            assert catalog.journal_open() == []  # the hand-over was journaled, and finished
    finally:
        subprocess.run(["umount", str(fs.roots["small"])], check=True)


def test_projects_holds_only_directories_and_big_listings_are_whole(fs):
    for make in (lambda: (fs.projects / "loose.txt").write_text("x"),
                 lambda: os.symlink("x", fs.projects / "link")):
        with pytest.raises(PermissionError):
            make()
    assert not (fs.roots["hdd"] / "loose.txt").exists()
    (fs.projects / "_unsorted").mkdir()
    (fs.projects / "_unsorted" / "root.txt").write_text("at the root")
    assert (fs.roots["hdd"] / "root.txt").read_text() == "at the root"
    big = fs.projects / "big"
    big.mkdir()
    names = {f"f{i:05}.txt" for i in range(3000)}
    for name in names:
        (fs.roots["hdd"] / "big").mkdir(exist_ok=True)
        (fs.roots["hdd"] / "big" / name).write_text("")
    assert fs.ctl("scan", "hdd").returncode == 0
    assert set(os.listdir(big)) == names
    with pytest.raises(PermissionError):
        os.rename(big / "f00000.txt", fs.projects / "f00000.txt")


def mounted_with_ssd_unplugged(mount_factory, files: dict[str, bytes]):
    """A mount whose files `p/<name>` are on both disks (cataloged), started again with the
    SSD unplugged. Returns the mount and where the SSD's directory is now."""
    fs = mount_factory(TIERS, start=False)
    for root in (fs.roots["ssd"], fs.roots["hdd"]):
        (root / "p").mkdir()
        for name, data in files.items():
            (root / "p" / name).write_bytes(data)
    fs.start()
    fs.stop()
    unplugged = fs.roots["ssd"].with_name("unplugged")
    fs.roots["ssd"].rename(unplugged)
    fs.start()
    return fs, unplugged


def test_unlink_and_rename_while_a_location_is_offline_are_finished_when_it_is_back(
        mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory,
                                               {"gone.png": b"both", "old.png": b"moved"})
    os.unlink(fs.projects / "p" / "gone.png")
    os.rename(fs.projects / "p" / "old.png", fs.projects / "p" / "new.png")
    assert sorted(os.listdir(fs.projects / "p")) == ["new.png"]
    assert sorted(os.listdir(fs.roots["hdd"] / "p")) == ["new.png"]
    # The SSD comes back while mounted: its copies of what was unlinked or renamed away go
    # before it is used, so nothing removed or renamed away comes back.
    unplugged.rename(fs.roots["ssd"])
    wait_for(lambda: os.listdir(fs.roots["ssd"] / "p") == [])
    fs.restart()
    assert sorted(os.listdir(fs.projects / "p")) == ["new.png"]
    assert (fs.projects / "p" / "new.png").read_bytes() == b"moved"
    assert os.getxattr(fs.projects / "p" / "new.png", "user.alicefs.locations") == b"hdd"


def test_a_deferred_unlink_keeps_a_copy_changed_meanwhile(mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory, {"x.png": b"same"})
    os.unlink(fs.projects / "p" / "x.png")
    fs.stop()
    # Written on the unplugged disk by someone else while it was away.
    (unplugged / "p" / "x.png").write_bytes(b"their new version")
    unplugged.rename(fs.roots["ssd"])
    fs.start()
    assert (fs.projects / "p" / "x.png").read_bytes() == b"their new version"


def test_modes_owners_and_symbolic_links_survive_a_remount(mount_factory):
    fs = mount_factory(TIERS)
    (fs.projects / "k").mkdir()
    (fs.projects / "k" / "private.png").write_bytes(b"p")
    os.chmod(fs.projects / "k" / "private.png", 0o600)
    (fs.projects / "k" / "shared.txt").write_text("s")
    os.chown(fs.projects / "k" / "shared.txt", 1234, 5678)
    os.symlink("private.png", fs.projects / "k" / "link.png")
    os.symlink("/etc/hostname", fs.projects / "k" / "outside")
    fs.restart()
    assert os.stat(fs.projects / "k" / "private.png").st_mode & 0o7777 == 0o600
    st = os.stat(fs.projects / "k" / "shared.txt")
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert os.readlink(fs.projects / "k" / "link.png") == "private.png"
    assert (fs.projects / "k" / "link.png").read_bytes() == b"p"
    assert os.readlink(fs.projects / "k" / "outside") == "/etc/hostname"
    os.rename(fs.projects / "k" / "private.png", fs.projects / "k" / "renamed.png")
    fs.restart()
    assert os.stat(fs.projects / "k" / "renamed.png").st_mode & 0o7777 == 0o600


def test_an_access_time_set_through_the_mount_survives_renames_and_remounts(mount_factory):
    """The mount is noatime: an atime is what utimensat last set, kept in the catalog (an
    object store has nowhere else to keep it, and a disk's own atime moves with scans)."""
    fs = mount_factory(TIERS)
    (fs.projects / "t").mkdir()
    (fs.projects / "t" / "shot.png").write_bytes(b"png")
    atime, mtime = 1_600_000_000_123_456_789, 1_700_000_000_987_654_321
    os.utime(fs.projects / "t" / "shot.png", ns=(atime, mtime))
    (fs.projects / "t" / "later.png").write_bytes(b"png")
    os.utime(fs.projects / "t" / "later.png", ns=(atime, mtime))
    os.utime(fs.projects / "t" / "later.png", ns=(mtime, mtime))  # atime set again
    fs.restart()
    st = os.stat(fs.projects / "t" / "shot.png")
    assert (st.st_atime_ns, st.st_mtime_ns) == (atime, mtime)
    assert os.stat(fs.projects / "t" / "later.png").st_atime_ns == mtime
    os.rename(fs.projects / "t" / "shot.png", fs.projects / "t" / "moved.png")
    fs.restart()
    assert os.stat(fs.projects / "t" / "moved.png").st_atime_ns == atime


def test_locations_added_and_removed_while_mounted_show_at_once(mount_factory, tmp_path):
    fs = mount_factory(TIERS)
    archive = tmp_path / "archive"
    (archive / "old").mkdir(parents=True)
    (archive / "old" / "film.mp4").write_bytes(b"archived")
    added = fs.ctl("add", "--name", "archive", "--path", str(archive), "--priority", "200")
    assert added.returncode == 0, added.stderr
    assert "archive" in os.listdir(fs.mountpoint / "locations")
    assert fs.ctl("scan", "archive", "--no-progress").returncode == 0
    assert (fs.projects / "old" / "film.mp4").read_bytes() == b"archived"
    assert (fs.mountpoint / "locations" / "archive" / "old" / "film.mp4").exists()
    (fs.projects / "old" / "first.txt").write_text("placed")
    assert (archive / "old" / "first.txt").read_text() == "placed"  # the new top priority
    removed = fs.ctl("remove", "archive")
    assert removed.returncode == 0, removed.stderr
    assert "archive" not in os.listdir(fs.mountpoint / "locations")
    assert not (fs.projects / "old" / "film.mp4").exists()
    assert (archive / "old" / "film.mp4").read_bytes() == b"archived"  # untouched
    # Past the mount's check for locations coming back online: a removed one does not.
    subprocess.run(["sleep", "6"], check=True)
    (fs.projects / "p").mkdir()
    (fs.projects / "p" / "new.txt").write_text("placed")
    assert (fs.roots["hdd"] / "p" / "new.txt").read_text() == "placed"


def test_later_operations_on_a_file_renamed_while_offline_follow_it(mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(
        mount_factory, {"x.png": b"x", "y.png": b"y", "z.png": b"old", "a.png": b"a",
                        "b.png": b"b"})
    p = fs.projects / "p"
    os.rename(p / "x.png", p / "x2.png")
    os.rename(p / "x2.png", p / "x3.png")
    os.rename(p / "y.png", p / "y2.png")
    os.unlink(p / "y2.png")
    # Renamed, then written while the SSD was away: its copy there is older.
    os.rename(p / "z.png", p / "z2.png")
    (p / "z2.png").write_bytes(b"new")
    # A swap through a temporary name.
    os.rename(p / "a.png", p / "t.png")
    os.rename(p / "b.png", p / "a.png")
    os.rename(p / "t.png", p / "b.png")
    unplugged.rename(fs.roots["ssd"])
    wait_for(lambda: os.listdir(fs.roots["ssd"] / "p") == [])
    fs.restart()
    assert sorted(os.listdir(p)) == ["a.png", "b.png", "x3.png", "z2.png"]
    assert [(p / n).read_bytes() for n in ("a.png", "b.png", "x3.png", "z2.png")] == [
        b"b", b"a", b"x", b"new"]


def test_a_directory_renamed_while_a_location_is_offline(mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory, {"a.png": b"a"})
    os.rename(fs.projects / "p", fs.projects / "q")
    fs.restart()
    assert sorted(os.listdir(fs.projects)) == ["q"]
    fs.stop()
    unplugged.rename(fs.roots["ssd"])
    fs.start()
    assert sorted(os.listdir(fs.projects)) == ["q"]
    assert (fs.projects / "q" / "a.png").read_bytes() == b"a"
    assert os.listdir(fs.roots["ssd"]) == []  # the old copy, and the directory it left


def test_deferred_work_that_fails_keeps_the_location_out_of_use(mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory, {"a.png": b"a"})
    (fs.projects / "q").mkdir()
    os.rename(fs.projects / "p" / "a.png", fs.projects / "q" / "a.png")
    # The old copy cannot be deleted when the disk is back (immutable, even for root).
    old_copy = unplugged / "p" / "a.png"
    subprocess.run(["chattr", "+i", str(old_copy)], check=True)
    try:
        unplugged.rename(fs.roots["ssd"])
        status = fs.mountpoint / ".alicefs" / "locations.json"
        wait_for(lambda: "could not be finished" in status.read_text())
        assert (fs.projects / "q" / "a.png").read_bytes() == b"a"  # from hdd; the mount lives
        assert not (fs.projects / "p" / "a.png").exists()
    finally:
        subprocess.run(["chattr", "-i", str(fs.roots["ssd"] / "p" / "a.png")], check=True)
    # Once it can be done, it is, and the SSD is used again.
    wait_for(lambda: not (fs.roots["ssd"] / "p" / "a.png").exists())
    wait_for(lambda: "could not be finished" not in status.read_text())


def test_sidecars_written_through_the_mount_leave_the_mount_idle(fs):
    (fs.projects / "s").mkdir()
    (fs.projects / "s" / "a.xmp").write_bytes(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    (fs.projects / "s" / "b.png.xmp").write_bytes(b"<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")
    clock_ticks = os.sysconf("SC_CLK_TCK")

    def cpu_seconds() -> float:
        stat_line = Path(f"/proc/{fs.process.pid}/stat").read_text()
        fields = stat_line.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / clock_ticks  # utime + stime

    before = cpu_seconds()
    subprocess.run(["sleep", "2"], check=True)
    # Not a speed measure: a relocation feeding itself would use the whole 2 s.
    assert cpu_seconds() - before < 1.0


def test_a_location_set_offline_and_back_by_the_user_owes_what_happened_meanwhile(
        mount_factory):
    fs = mount_factory(TIERS, start=False)
    for root in (fs.roots["ssd"], fs.roots["hdd"]):
        (root / "p").mkdir()
        (root / "p" / "a.png").write_bytes(b"a")
    fs.start()
    assert fs.ctl("update", "--location-id", "ssd", "--status", "offline").returncode == 0
    os.rename(fs.projects / "p" / "a.png", fs.projects / "p" / "b.png")
    assert fs.ctl("update", "--location-id", "ssd", "--status", "active").returncode == 0
    wait_for(lambda: os.listdir(fs.roots["ssd"] / "p") == [])
    assert fs.ctl("scan", "ssd", "--no-progress").returncode == 0
    assert sorted(os.listdir(fs.projects / "p")) == ["b.png"]


def test_a_rename_that_fails_where_reachable_keeps_the_offline_copy(mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory, {"x.png": b"x"})
    (fs.roots["hdd"] / "p" / "x.png").unlink()  # gone behind the mount's back
    with pytest.raises(OSError):
        os.rename(fs.projects / "p" / "x.png", fs.projects / "p" / "y.png")
    unplugged.rename(fs.roots["ssd"])
    status = fs.mountpoint / ".alicefs" / "locations.json"
    wait_for(lambda: all(loc["state"] == "online" for loc in json.loads(status.read_text())))
    assert (fs.roots["ssd"] / "p" / "x.png").read_bytes() == b"x"  # the only copy left


def test_a_link_renamed_over_a_file_while_offline_then_removed(mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory, {"x.png": b"x"})
    os.symlink("elsewhere", fs.projects / "p" / "tmp")
    os.rename(fs.projects / "p" / "tmp", fs.projects / "p" / "x.png")
    os.unlink(fs.projects / "p" / "x.png")
    unplugged.rename(fs.roots["ssd"])
    status = fs.mountpoint / ".alicefs" / "locations.json"
    wait_for(lambda: all(loc["state"] == "online" for loc in json.loads(status.read_text())))
    assert os.listdir(fs.roots["ssd"] / "p") == []  # the replaced file's copy went too
    assert os.listdir(fs.projects / "p") == []


def wait_all_online(fs) -> None:
    status = fs.mountpoint / ".alicefs" / "locations.json"
    wait_for(lambda: all(loc["state"] == "online" for loc in json.loads(status.read_text())))


def test_a_directory_rename_keeps_offline_copies_whose_reachable_copy_is_gone(mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory, {"x.png": b"x", "y.png": b"y"})
    (fs.roots["hdd"] / "p" / "x.png").unlink()  # gone behind the mount's back
    os.rename(fs.projects / "p", fs.projects / "q")
    unplugged.rename(fs.roots["ssd"])
    wait_all_online(fs)
    assert (fs.roots["ssd"] / "p" / "x.png").read_bytes() == b"x"  # the only copy left
    assert not (fs.roots["ssd"] / "p" / "y.png").exists()  # renamed where reachable


def test_a_rename_over_a_file_while_offline_never_shows_the_replaced_content(mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory, {"a.png": b"A", "b.png": b"B"})
    os.rename(fs.projects / "p" / "a.png", fs.projects / "p" / "b.png")
    unplugged.rename(fs.roots["ssd"])
    wait_all_online(fs)
    fs.restart()
    assert os.listdir(fs.projects / "p") == ["b.png"]
    assert (fs.projects / "p" / "b.png").read_bytes() == b"A"


def test_a_file_renamed_over_a_link_in_another_location(fs):
    (fs.projects / "k").mkdir()
    os.symlink("elsewhere", fs.projects / "k" / "l.bin")  # made in the SSD
    (fs.projects / "k" / "data.bin").write_bytes(b"data")  # placed on the HDD
    assert (fs.roots["ssd"] / "k" / "l.bin").is_symlink()
    os.rename(fs.projects / "k" / "data.bin", fs.projects / "k" / "l.bin")
    assert not (fs.roots["ssd"] / "k" / "l.bin").is_symlink()
    fs.restart()
    assert (fs.projects / "k" / "l.bin").read_bytes() == b"data"
    assert os.getxattr(fs.projects / "k" / "l.bin", "user.alicefs.locations") == b"hdd"


def test_a_deferred_delete_whose_directory_became_a_file_lets_the_location_back(
        mount_factory):
    fs, unplugged = mounted_with_ssd_unplugged(mount_factory, {"a.png": b"a"})
    os.unlink(fs.projects / "p" / "a.png")
    (unplugged / "p" / "a.png").unlink()
    (unplugged / "p").rmdir()
    (unplugged / "p").write_text("now a file")
    unplugged.rename(fs.roots["ssd"])
    wait_all_online(fs)
    assert (fs.roots["ssd"] / "p").read_text() == "now a file"


def test_older_copies_of_a_name_follow_it_through_renames_and_remounts(fs):
    """A file renamed over another keeps the replaced one's copy elsewhere as an older
    version of its name. Renamed over again, and renamed away, that older copy goes with
    the name (it used to be forgotten: left on disk under the old name, where it made a new
    file of that name fail with EEXIST), and the catalog keeps it as older (it used to be
    recorded as current, so a remount showed the old content)."""
    p = fs.projects / "k"
    p.mkdir()
    (p / "a.mp4").write_bytes(b"video v1")  # HDD
    for image in (b"image one", b"image two"):
        (p / "b.png").write_bytes(image)  # SSD
        os.rename(p / "b.png", p / "a.mp4")
    os.rename(p / "a.mp4", p / "c.mp4")
    (p / "a.mp4").write_bytes(b"video v2")
    assert (fs.roots["hdd"] / "k" / "c.mp4").read_bytes() == b"video v1"  # the older copy
    fs.restart()
    assert (p / "c.mp4").read_bytes() == b"image two"
    assert (p / "a.mp4").read_bytes() == b"video v2"
    assert sorted(os.listdir(p)) == ["a.mp4", "c.mp4"]


def test_a_file_back_on_disk_is_served_again_after_the_scan(mount_factory, tmp_path):
    """A file that went missing and is back unchanged changes nothing but its state: the
    scan at mount time still brings the mount level with it (a scan that changed nothing
    else is not read back from the catalog)."""
    fs = mount_factory({"ssd": ""}, start=False)
    on_disk = fs.roots["ssd"] / "p" / "a.png"
    on_disk.parent.mkdir()
    on_disk.write_bytes(b"back again")
    (on_disk.parent / "stays.png").write_bytes(b"an empty disk looks unplugged")
    fs.start()
    assert (fs.projects / "p" / "a.png").read_bytes() == b"back again"
    fs.stop()
    away = tmp_path / "away.png"
    os.rename(on_disk, away)
    fs.start()
    wait_for(lambda: _scans(fs) == 2)  # the one at this mount marks it missing
    with pytest.raises(OSError):
        (fs.projects / "p" / "a.png").read_bytes()
    fs.stop()
    os.rename(away, on_disk)  # the same file: size, mtime and inode as cataloged
    fs.start()
    wait_for(lambda: _scans(fs) == 3)
    assert (fs.projects / "p" / "a.png").read_bytes() == b"back again"


def _scans(fs) -> int:
    """Scans the mount finished, as its log tells."""
    return fs.log.read_text().count(" INFO alicefs.daemon: scan: ")


def _shown_metadata(path: Path) -> tuple[bytes, bytes] | None:
    try:
        return os.getxattr(path, "user.alicefs.tags"), os.getxattr(path, "user.alicefs.quality")
    except OSError:
        return None


def test_a_sidecar_changed_in_a_location_shows_its_tags_after_the_mounts_scan(mount_factory):
    """The mount's own scan reads back what it wrote for a file it already shows: tags and
    rating from a sidecar edited by another program (not only files it did not show)."""
    fs = mount_factory({"ssd": ""}, start=False)
    fs.config.write_text(fs.config.read_text().replace("scan_interval: 1h", "scan_interval: 1s"))
    disk = fs.roots["ssd"] / "p"
    disk.mkdir(parents=True)
    (disk / "a.png").write_bytes(png())
    (disk / "a.xmp").write_bytes(xmp(["draft"], rating=2))
    fs.start()
    photo = fs.projects / "p" / "a.png"
    wait_for(lambda: _shown_metadata(photo) == (b"draft", b"2"))
    (disk / "a.xmp").write_bytes(xmp(["final", "client"], rating=5))
    wait_for(lambda: _shown_metadata(photo) == (b"final,client", b"5"))
