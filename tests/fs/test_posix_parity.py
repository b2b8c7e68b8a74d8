"""POSIX parity: the same system calls in a native directory and in the mount (over two local
locations) must give the same results and errors. Each case is a sequence of calls; what
each returns (or its errno) is compared, call by call."""

from __future__ import annotations

import errno
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fs.conftest import MountedFS

LONG = "n" * 256  # one byte over NAME_MAX


def outcome(call: Callable[[], object]) -> str:
    try:
        value = call()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    if isinstance(value, os.stat_result):
        return f"ok {stat.filemode(value.st_mode)} size={value.st_size}"
    return f"ok {value}" if isinstance(value, str) else "ok"


def _create(path: Path, data: bytes = b"x") -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    os.write(fd, data)
    os.close(fd)


def _open(path: Path, flags: int) -> None:
    os.close(os.open(path, flags, 0o644))


def case_existing_names(d: Path) -> list[Callable[[], object]]:
    return [lambda: os.mkdir(d / "dir"), lambda: _create(d / "file"),
            lambda: os.symlink("file", d / "link"),
            lambda: os.mkdir(d / "dir"), lambda: os.mkdir(d / "file"),
            lambda: os.mkdir(d / "link"), lambda: _create(d / "dir"),
            lambda: _create(d / "file"), lambda: _create(d / "link"),
            lambda: os.symlink("x", d / "dir"), lambda: os.symlink("x", d / "file"),
            lambda: os.symlink("x", d / "link")]


def case_paths_through_a_file(d: Path) -> list[Callable[[], object]]:
    return [lambda: _create(d / "file"), lambda: os.stat(d / "file" / "x"),
            lambda: _open(d / "file" / "x", os.O_RDONLY),
            lambda: _create(d / "file" / "x"), lambda: os.mkdir(d / "file" / "x"),
            lambda: os.listdir(d / "file"), lambda: os.rmdir(d / "file"),
            lambda: os.rename(d / "file", d / "file" / "x")]


def case_names_too_long(d: Path) -> list[Callable[[], object]]:
    return [lambda: _create(d / LONG), lambda: os.mkdir(d / LONG),
            lambda: os.stat(d / LONG), lambda: os.symlink("x", d / LONG),
            lambda: _create(d / "ok"), lambda: os.rename(d / "ok", d / LONG)]


def case_removing(d: Path) -> list[Callable[[], object]]:
    return [lambda: os.makedirs(d / "full" / "sub"), lambda: _create(d / "file"),
            lambda: os.rmdir(d / "full"), lambda: os.rmdir(d / "file"),
            lambda: os.unlink(d / "full"), lambda: os.unlink(d / "missing"),
            lambda: os.rmdir(d / "missing"), lambda: os.rmdir(d / "full" / "sub"),
            lambda: os.rmdir(d / "full")]


def case_renaming(d: Path) -> list[Callable[[], object]]:
    return [lambda: os.makedirs(d / "a" / "in"), lambda: os.mkdir(d / "b"),
            lambda: os.makedirs(d / "full" / "x"), lambda: _create(d / "file"),
            lambda: os.rename(d / "a", d / "full"), lambda: os.rename(d / "file", d / "b"),
            lambda: os.rename(d / "b", d / "file"), lambda: os.rename(d / "a", d / "a" / "in"),
            lambda: os.rename(d / "missing", d / "c"), lambda: os.rename(d / "a", d / "b"),
            lambda: os.stat(d / "b" / "in"), lambda: os.stat(d / "a")]


def case_open_flags(d: Path) -> list[Callable[[], object]]:
    return [lambda: os.mkdir(d / "dir"), lambda: _create(d / "file", b"12345"),
            lambda: os.symlink("file", d / "link"),
            lambda: _open(d / "dir", os.O_WRONLY), lambda: _open(d / "file", os.O_DIRECTORY),
            lambda: _open(d / "link", os.O_RDONLY | os.O_NOFOLLOW),
            lambda: _open(d / "file", os.O_WRONLY | os.O_TRUNC), lambda: os.stat(d / "file"),
            lambda: _open(d / "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
            lambda: _open(d / "new", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
            lambda: _open(d / "absent", os.O_RDONLY)]


def _times(path: Path) -> str:
    st = os.stat(path, follow_symlinks=False)
    return f"atime={st.st_atime_ns} mtime={st.st_mtime_ns}"


def _owner(path: Path) -> str:
    st = os.stat(path, follow_symlinks=False)
    return f"{st.st_uid}:{st.st_gid} {stat.filemode(st.st_mode)}"


def case_times(d: Path) -> list[Callable[[], object]]:
    return [lambda: _create(d / "file"),
            lambda: os.utime(d / "file", ns=(1_000_000_000_111, 2_000_000_000_222)),
            lambda: _times(d / "file"),
            lambda: os.mkdir(d / "dir"),
            lambda: os.utime(d / "dir", ns=(3_000_000_000_333, 4_000_000_000_444)),
            lambda: _times(d / "dir")]


def case_directory_owner_and_mode(d: Path) -> list[Callable[[], object]]:
    return [lambda: os.mkdir(d / "dir", 0o755), lambda: os.chown(d / "dir", 1234, 4321),
            lambda: os.chmod(d / "dir", 0o1770), lambda: _owner(d / "dir"),
            lambda: _create(d / "file"), lambda: os.chown(d / "file", 1234, 4321),
            lambda: os.chmod(d / "file", 0o640), lambda: _owner(d / "file")]


def _advanced(path: Path, before: list[int]) -> str:
    """Whether the directory's mtime and ctime moved since `before` was taken."""
    st = os.stat(path)
    moved = f"mtime {'moved' if st.st_mtime_ns > before[0] else 'kept'}, " \
            f"ctime {'moved' if st.st_ctime_ns > before[1] else 'kept'}"
    before[:] = [st.st_mtime_ns, st.st_ctime_ns]
    return moved


def case_directory_times_follow_entries(d: Path) -> list[Callable[[], object]]:
    before: list[int] = []
    old = 1_000_000_000_000_000_000
    return [lambda: os.mkdir(d / "dir"), lambda: os.utime(d / "dir", ns=(old, old)),
            lambda: before.extend([old, old]),
            lambda: _create(d / "dir" / "f.txt"), lambda: _advanced(d / "dir", before),
            lambda: os.utime(d / "dir", ns=(old, old)), lambda: before.__setitem__(0, old),
            lambda: os.unlink(d / "dir" / "f.txt"), lambda: _advanced(d / "dir", before),
            lambda: os.utime(d / "dir", ns=(old, old)), lambda: before.__setitem__(0, old),
            lambda: os.mkdir(d / "dir" / "sub"), lambda: _advanced(d / "dir", before),
            lambda: os.utime(d / "dir", ns=(old, old)), lambda: before.__setitem__(0, old),
            lambda: os.rename(d / "dir" / "sub", d / "dir" / "sub2"),
            lambda: _advanced(d / "dir", before)]


def _kind(path: Path) -> str:
    st = os.stat(path, follow_symlinks=False)
    return f"{stat.filemode(st.st_mode)} rdev={st.st_rdev} size={st.st_size}"


def _bind(path: Path) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))


def _fifo_round_trip(path: Path) -> str:
    """Bytes written to the FIFO come out of it (the kernel serves it, not the mount)."""
    reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        writer = os.open(path, os.O_WRONLY)
        os.write(writer, b"through the pipe")
        os.close(writer)
        return os.read(reader, 100).decode()
    finally:
        os.close(reader)


def case_special_files(d: Path) -> list[Callable[[], object]]:
    device = os.makedev(1, 3)  # /dev/null's numbers
    return [lambda: os.mkfifo(d / "fifo", 0o640), lambda: _kind(d / "fifo"),
            lambda: os.mknod(d / "chr", stat.S_IFCHR | 0o600, device), lambda: _kind(d / "chr"),
            lambda: os.mknod(d / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 0)),
            lambda: _kind(d / "blk"), lambda: _bind(d / "sock"), lambda: _kind(d / "sock"),
            lambda: os.mknod(d / "plain", stat.S_IFREG | 0o600), lambda: _kind(d / "plain"),
            lambda: os.mkfifo(d / "fifo"), lambda: os.mkfifo(d / "plain"),
            lambda: os.mkdir(d / "fifo"), lambda: _create(d / "sock"),
            lambda: _fifo_round_trip(d / "fifo"),
            lambda: os.chmod(d / "fifo", 0o604), lambda: os.chown(d / "fifo", 1234, 4321),
            lambda: os.utime(d / "fifo", ns=(1_000_000_000_111, 2_000_000_000_222)),
            lambda: _owner(d / "fifo"), lambda: _times(d / "fifo"),
            lambda: os.truncate(d / "fifo", 0),
            lambda: os.rename(d / "fifo", d / "moved"), lambda: _kind(d / "moved"),
            lambda: os.rename(d / "moved", d / "plain"), lambda: _kind(d / "plain"),
            lambda: os.rename(d / "chr", d / "sock"), lambda: _kind(d / "sock"),
            lambda: os.unlink(d / "plain"), lambda: os.unlink(d / "sock"),
            lambda: os.unlink(d / "blk"), lambda: sorted(os.listdir(d)).__repr__()]


CASES = [case_existing_names, case_paths_through_a_file, case_names_too_long, case_removing,
         case_renaming, case_open_flags, case_times, case_directory_owner_and_mode,
         case_directory_times_follow_entries, case_special_files]


@pytest.fixture(scope="module")
def two_roots(tmp_path_factory):
    """(native directory, directory in a mount over two local locations), shared by the
    cases (each works in a directory of its own)."""
    base = tmp_path_factory.mktemp("parity")
    native = base / "native"
    native.mkdir()
    roots = {name: base / name for name in ("ssd", "hdd")}
    for root in roots.values():
        root.mkdir()
    config = base / "settings.yaml"
    config.write_text(
        "storage:\n  scan_interval: 1h\n  locations:\n"
        f"    - {{name: ssd, path: {roots['ssd']}, priority: 100, "
        "rules: [{include_types: [image]}]}\n"
        f"    - {{name: hdd, path: {roots['hdd']}, priority: 50}}\n")
    (base / "mnt").mkdir()
    fs = MountedFS(config, base / "mnt", roots, base / "alicefs.log")
    assert fs.ctl("from-config").returncode == 0
    fs.start()
    try:
        (fs.projects / "parity").mkdir()
        yield native, fs.projects / "parity"
    finally:
        fs.stop()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__.removeprefix("case_"))
def test_same_results_as_a_native_directory(two_roots, case):
    native, mounted = two_roots
    results = {}
    for name, root in (("native", native), ("mount", mounted)):
        directory = root / case.__name__
        directory.mkdir()
        results[name] = [outcome(call) for call in case(directory)]
    assert results["mount"] == results["native"]


def test_directory_owner_mode_and_times_last(mount_factory):
    """Set on the directory in the location, so a remount (and a look at the disk) shows
    them; they used to be kept in memory only (the owner not even there)."""
    fs = mount_factory({"ssd": "priority: 100"})
    directory = fs.projects / "shared"
    directory.mkdir()
    os.chown(directory, 1234, 4321)
    os.chmod(directory, 0o2775)
    os.utime(directory, ns=(5_000_000_000_000, 6_000_000_000_000))
    on_disk = os.stat(fs.roots["ssd"] / "shared")
    assert (on_disk.st_uid, on_disk.st_gid, stat.S_IMODE(on_disk.st_mode)) == \
        (1234, 4321, 0o2775)
    fs.restart()
    shown = os.stat(fs.projects / "shared")
    assert (shown.st_uid, shown.st_gid, stat.S_IMODE(shown.st_mode)) == (1234, 4321, 0o2775)
    assert shown.st_mtime_ns == 6_000_000_000_000


def test_special_files_last_and_stay_where_they_are(mount_factory):
    """FIFOs, sockets and device nodes are made in the location, cataloged like links:
    a scan does not miss them (it lists regular files only), a remount shows them, a
    migration leaves them alone, and unlink removes them from the location."""
    fs = mount_factory({"ssd": "priority: 100", "hdd": "priority: 50"})
    (fs.projects / "k").mkdir()
    os.mkfifo(fs.projects / "k" / "pipe")
    os.chmod(fs.projects / "k" / "pipe", 0o620)
    os.mknod(fs.projects / "k" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    _bind(fs.projects / "k" / "sock")
    on_disk = {name: os.stat(fs.roots["ssd"] / "k" / name) for name in ("pipe", "null", "sock")}
    assert stat.S_ISFIFO(on_disk["pipe"].st_mode) and stat.S_ISSOCK(on_disk["sock"].st_mode)
    assert on_disk["null"].st_rdev == os.makedev(1, 3)
    shown_before = {name: _kind(fs.projects / "k" / name) for name in on_disk}
    assert fs.ctl("discover", "--no-progress").returncode == 0
    assert fs.ctl("migrate", "--no-progress").returncode == 0
    fs.restart()
    assert {name: _kind(fs.projects / "k" / name) for name in on_disk} == shown_before
    assert stat.S_IMODE(os.stat(fs.projects / "k" / "pipe").st_mode) == 0o620
    assert _fifo_round_trip(fs.projects / "k" / "pipe") == "through the pipe"
    for name in on_disk:
        os.unlink(fs.projects / "k" / name)
    assert os.listdir(fs.roots["ssd"] / "k") == []
    fs.restart()
    assert os.listdir(fs.projects / "k") == []
