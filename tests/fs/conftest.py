"""A real alicefs mount in a subprocess (`alicefs mount --foreground`), as s3ql's FUSE tests
do: tests use only ordinary file operations on it and check the backing directories."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import BIN_DIR
from tests.proxy import TcpProxy
from tests.servers import S3_REGION

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
    env: dict[str, str] | None = None  # the mount's and alicefs-ctl's environment

    @property
    def projects(self) -> Path:
        return self.mountpoint / "projects"

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN_DIR / "alicefs-ctl"), "--config", str(self.config),
                               *args], capture_output=True, text=True, timeout=120,
                              env=self.env)

    def start(self) -> None:
        require_fuse()
        logged_before = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [str(BIN_DIR / "alicefs"), "mount", "--foreground", "--config",
                 str(self.config), str(self.mountpoint), *self.extra_args],
                stdout=log, stderr=log, start_new_session=True, env=self.env)
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
        while "scan:" not in self.log.read_bytes()[logged_before:].decode(errors="replace"):
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
        with contextlib.suppress(ProcessLookupError):  # it may have killed itself
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
               cloud: dict[str, str] | None = None,
               env: dict[str, str] | None = None) -> MountedFS:
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
        fs = MountedFS(config, mountpoint, roots, tmp_path / "alicefs.log", extra_args or [],
                       env=env)
        assert fs.ctl("from-config").returncode == 0
        mounts.append(fs)
        if start:
            fs.start()
        return fs

    yield create
    for fs in mounts:
        fs.stop()


CLOUD_STORES = ("s3", "gcs")
# Stores that fail fast (a test that cuts the network waits seconds, not a minute), where a
# request whose answer is lost (the GCS emulator loses one now and then: an fsync failed
# with EIO when that one request used up the whole deadline) is given up in time to be
# tried once more: an S3 PUT that loses its answer waits 1 s for `100 Continue`, then the
# read timeout (at 1 s, SeaweedFS under a loaded suite was seen to keep silent longer).
SHORT_DEADLINE = "retry_deadline: 4, read_timeout: 1.5"


@dataclass
class CloudMount:
    """A mount whose new files all go to one object store (`store`)."""

    fs: MountedFS
    store: str
    proxy: TcpProxy
    prefix: str
    bucket: str
    s3_client: object | None = None

    @property
    def projects(self) -> Path:
        return self.fs.projects

    def stored(self, key: str) -> bytes | None:
        """The object's content, read straight from the server (not through the proxy)."""
        if self.s3_client is not None:
            try:
                return self.s3_client.get_object(Bucket=self.bucket,
                                                 Key=self.prefix + key)["Body"].read()
            except self.s3_client.exceptions.NoSuchKey:
                return None
        blob = self._gcs_bucket().get_blob(self.prefix + key)
        return None if blob is None else blob.download_as_bytes()

    def stored_mtime_ns(self, key: str) -> int:
        if self.s3_client is not None:
            head = self.s3_client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            return int(head["Metadata"]["alicefs-mtime-ns"])
        return int(self._gcs_bucket().get_blob(self.prefix + key).metadata["alicefs-mtime-ns"])

    def keys(self, directory: str) -> list[str]:
        start = f"{self.prefix}{directory}/"
        if self.s3_client is not None:
            listing = self.s3_client.list_objects_v2(Bucket=self.bucket, Prefix=start)
            names = [o["Key"] for o in listing.get("Contents", [])]
        else:
            names = [b.name for b in self._gcs_bucket().list_blobs(prefix=start)]
        return sorted(name[len(start):] for name in names)

    def _gcs_bucket(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials()).bucket(
            self.bucket)

    def status(self, name: str) -> dict:
        return json.loads((self.fs.mountpoint / ".alicefs" / name).read_text())

    def sync_state(self, path: Path) -> bytes:
        return os.getxattr(path, "user.alicefs.sync")


@pytest.fixture(params=CLOUD_STORES)
def cloud(request, mount_factory) -> Iterator[CloudMount]:
    """The store (priority 100, no rules) takes every new file; images go to a local disk."""
    store = request.param
    prefix = f"w-{uuid.uuid4().hex[:8]}/"
    # @pytest.mark.store_config("key: value, ...") adds to the store's `config` (and
    # replaces SHORT_DEADLINE when it sets a deadline of its own).
    marker = request.node.get_closest_marker("store_config")
    extra = marker.args[0] if marker else ""
    config = extra if "retry_deadline" in extra else ", ".join(filter(None, (SHORT_DEADLINE,
                                                                           extra)))
    env = dict(os.environ)
    if store == "s3":
        server = request.getfixturevalue("s3_server")
        bucket = request.getfixturevalue("s3_bucket")
        proxy = TcpProxy(server.ports["s3"])
        entry = (f"type: s3, path: {bucket}, priority: 100, "
                 f"config: {{endpoint_url: '{proxy.url}', region: {S3_REGION}, "
                 f"prefix: {prefix}, aws_access_key_id: {server.access_key}, "
                 f"aws_secret_access_key: {server.secret_key}, {config}}}")
        client = server.client()
    else:
        server = request.getfixturevalue("gcs_server")
        bucket = request.getfixturevalue("gcs_bucket")
        proxy = TcpProxy(server.port)
        env["STORAGE_EMULATOR_HOST"] = proxy.url
        entry = f"type: gcs, path: {bucket}, priority: 100, config: {{prefix: {prefix}, " \
                f"{config}}}"
        client = None
    try:
        fs = mount_factory({"ssd": "priority: 10, rules: [{include_types: [image]}]"},
                           cloud={"store": entry}, env=env)
        yield CloudMount(fs, store, proxy, prefix, bucket, client)
        fs.stop()  # while the store is reachable: it waits for the uploads
    finally:
        proxy.close()
