"""Several processes doing random namespace and data operations (hard links included) at
once in one tree of a mount over two local locations, for a fixed time, 20 runs in a row:
no operation fails with anything but the errors the races allow (ENOENT, EEXIST,
ENOTEMPTY, ...), each process reads back what it wrote, a remount shows the same tree as
before the unmount, and `rm -rf` then succeeds and leaves nothing on any location."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import shutil
import time
from pathlib import Path

RUNS = 20
PROCESSES = 4
SECONDS = 0.6
NAMES = ["a", "b", "c"]
# What racing with the others may give: the entry went, came, filled, or changed kind.
RACES = {errno.ENOENT, errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR,
         errno.EINVAL}  # EINVAL: a directory renamed into itself (another moved it there)


def _random_dir(rng: random.Random, top: Path, shallowest: int = 0) -> Path:
    path = top
    for _ in range(rng.randint(shallowest, 3)):
        path = path / rng.choice(NAMES)
    return path


def _content(worker: int, counter: int) -> bytes:
    return hashlib.sha256(f"{worker}-{counter}".encode()).digest() * (1 + counter % 300)


def _work(top: Path, worker: int, seed: int, until: float) -> list[str]:
    """Random operations until `until`; returns the unexpected failures. Files carry the
    worker's number, so only it writes them; directories are everyone's."""
    rng = random.Random(seed * 100 + worker)
    # Every content this worker wrote: directory renames by the others move its files
    # where it does not know, so a read may find any of them (never anything else).
    written = {b""}
    problems = []
    counter = 0
    while time.monotonic() < until:
        counter += 1
        op = rng.choice(["mkdir", "mkdir", "write", "write", "read", "unlink", "rename_dir",
                         "rename_file", "rmdir", "truncate", "link"])
        directory = _random_dir(rng, top, 1 if op in ("rename_dir", "rmdir") else 0)
        name = f"w{worker}-{rng.choice(['x.png', 'y.txt', 'z.mp4'])}"
        try:
            if op == "mkdir":
                (directory / rng.choice(NAMES)).mkdir()
            elif op == "write":
                data = _content(worker, counter)
                written.add(data)
                (directory / name).write_bytes(data)
            elif op == "read":
                path = directory / name
                data = path.read_bytes()
                if data not in written:
                    problems.append(f"{path}: read {len(data)} bytes it never wrote")
            elif op == "unlink":
                (directory / name).unlink()
            elif op == "rename_dir":
                os.rename(directory, _random_dir(rng, top) / rng.choice(NAMES))
            elif op == "rename_file":
                target = _random_dir(rng, top) / f"w{worker}-{rng.choice(['x.png', 'q.mp4'])}"
                os.rename(directory / name, target)
            elif op == "truncate":
                os.truncate(directory / name, 0)
            elif op == "link":
                target = _random_dir(rng, top) / f"w{worker}-{rng.choice(['x.png', 'q.mp4'])}"
                os.link(directory / name, target)
            else:
                directory.rmdir()
        except OSError as exc:
            if exc.errno not in RACES:
                problems.append(f"{op} {directory}: {exc}")
    return problems


def _run_workers(top: Path, seed: int) -> list[str]:
    """PROCESSES forked workers at once; their unexpected failures."""
    until = time.monotonic() + SECONDS
    children = []
    for worker in range(PROCESSES):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(read_end)
                report = "\n".join(_work(top, worker, seed, until))
                os.write(write_end, report.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        children.append((pid, read_end))
    problems = []
    for pid, read_end in children:
        with os.fdopen(read_end, "rb") as report:
            problems += [line for line in report.read().decode().splitlines() if line]
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            problems.append(f"worker {pid} crashed")
    return problems


def _snapshot(top: Path) -> dict[str, str]:
    """Every entry below `top`: directory, or file with its content's digest."""
    entries = {}
    for path in sorted(top.rglob("*")):
        key = str(path.relative_to(top))
        entries[key] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return entries


def test_processes_racing_then_remount_then_rm_rf(mount_factory):
    fs = mount_factory({"ssd": "priority: 100, rules: [{include_types: [image]}]",
                        "hdd": "priority: 50"})
    for run in range(1, RUNS + 1):
        top = fs.projects / "race"
        top.mkdir()
        problems = _run_workers(top, run)
        assert problems == [], f"run {run}: {problems[:10]}"
        before = _snapshot(top)
        fs.restart()
        assert _snapshot(top) == before, f"run {run}: the remount shows another tree"
        shutil.rmtree(top)
        assert not top.exists()
        for root in fs.roots.values():
            assert list(root.rglob("*")) == [], f"run {run}: left in {root}"
