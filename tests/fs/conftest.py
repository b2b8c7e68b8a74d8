"""A real alicefs mount in a subprocess (`alicefs mount --foreground`), as s3ql's FUSE tests
do: tests use only ordinary file operations on it and check the backing directories."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR

MOUNT_TIMEOUT = 30


def wait_for(predicate, timeout: float = 30.0) -> None:
    """Poll until `predicate()` holds (work the mount does in the background)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def require_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: these tests mount a real FUSE filesystem")
    if subprocess.run(["which", "fusermount3"], capture_output=True).returncode != 0:
        pytest.fail("fusermount3 is missing: install Debian's fuse3 (make test does)")


@dataclass
class MountedFS:
    config: Path
    mountpoint: Path
    roots: dict[str, Path]
    log: Path
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = None

    @property
    def projects(self) -> Path:
        return self.mountpoint / "projects"

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN_DIR / "alicefs-ctl"), "--config", str(self.config),
                               *args], capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        require_fuse()
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(BIN_DIR / "alicefs"), "mount", "--foreground", "--config",
                 str(self.config), str(self.mountpoint), *self.extra_args],
                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + MOUNT_TIMEOUT
        while not os.path.ismount(self.mountpoint):
            if self.process.poll() is not None:
                pytest.fail(f"alicefs mount exited with {self.process.returncode}:\n"
                            f"{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"alicefs did not mount within {MOUNT_TIMEOUT}s:\n"
                            f"{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        # The first scan runs right after mounting; wait for it so tests see every file.
        while "scan:" not in self.log.read_text().split("mounted")[-1]:
            if time.monotonic() > deadline:
                pytest.fail("the first scan did not finish")
            time.sleep(0.05)

    def stop(self) -> None:
        """Unmount the way users do (fusermount3 -u) and wait for the process to finish."""
        if self.process is None:
            return
        # Unconditionally: a mount whose process died is no longer ismount() (ENOTCONN),
        # but is still in the mount table until it is unmounted.
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL the mount process, then clear the dead mount."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True)

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mount_factory(tmp_path):
    mounts: list[MountedFS] = []

    def create(locations: dict[str, str], *, extra_args: list[str] | None = None,
               settings_extra: str = "", start: bool = True,
               cloud: dict[str, str] | None = None) -> MountedFS:
        """`locations`: name -> the rest of its YAML entry (priority, rules, ...), one line;
        a directory is made for each. `cloud`: name -> the whole entry (type, path = bucket,
        config) of S3/GCS locations."""
        lines = []
        roots = {}
        for name, entry in locations.items():
            root = tmp_path / "roots" / name
            root.mkdir(parents=True, exist_ok=True)
            roots[name] = root
            lines.append(f"    - {{name: {name}, path: {root}{', ' + entry if entry else ''}}}")
        for name, entry in (cloud or {}).items():
            lines.append(f"    - {{name: {name}, {entry}}}")
        config = tmp_path / "settings.yaml"
        config.write_text("storage:\n  scan_interval: 1h\n" + settings_extra
                          + "  locations:\n" + "\n".join(lines) + "\n")
        mountpoint = tmp_path / "mnt"
        mountpoint.mkdir(exist_ok=True)
        fs = MountedFS(config, mountpoint, roots, tmp_path / "alicefs.log", extra_args or [])
        assert fs.ctl("from-config").returncode == 0
        mounts.append(fs)
        if start:
            fs.start()
        return fs

    yield create
    for fs in mounts:
        fs.stop()
