"""The mount point, and the pid files by which `alicefs umount` finds the process serving
one. Light on purpose: `alicefs mount` checks the mount point here before it starts the
mount process, which alone imports the filesystem's modules."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from alicefs.errors import UsageError


def runtime_dir() -> Path:
    """Where running mounts leave their pid files, per user."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    path = Path(base) / "alicefs" if base else Path(f"/tmp/alicefs-{os.getuid()}")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def pid_file(mountpoint: Path) -> Path:
    key = hashlib.blake2b(str(mountpoint.resolve()).encode(), digest_size=8).hexdigest()
    return runtime_dir() / f"mount-{key}.pid"


def check_mountpoint(mountpoint: Path) -> None:
    if not mountpoint.exists():
        raise UsageError(f"mount point {mountpoint} does not exist")
    if not mountpoint.is_dir():
        raise UsageError(f"mount point {mountpoint} is not a directory")
    if os.path.ismount(mountpoint) and _is_fuse_mount(mountpoint):
        raise UsageError(f"{mountpoint} is already a mount point (alicefs umount it first)")
    if any(mountpoint.iterdir()):
        raise UsageError(f"mount point {mountpoint} is not empty: mounting over it would hide "
                         "its files (use an empty directory)")


def _is_fuse_mount(path: Path) -> bool:
    target = str(path.resolve())
    with open("/proc/self/mounts") as mounts:
        return any(line.split()[1] == target and line.split()[2].startswith("fuse")
                   for line in mounts)
