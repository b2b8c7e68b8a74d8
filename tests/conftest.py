from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_DIR = Path(sys.executable).parent


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


@contextmanager
def catalog_held_by_another_process(path: Path) -> Iterator[None]:
    """Another process keeps the DuckDB file open for writing, as a running mount does."""
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, duckdb
        con = duckdb.connect({str(path)!r})
        print("ready", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        yield
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a settings.yaml (dedented) into tmp_path and return its path."""
    def write(text: str, name: str = "settings.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path
    return write


@pytest.fixture
def ctl(tmp_path: Path):
    """Run the installed `alicefs-ctl` entry point in a subprocess."""
    def run(*args: str, config: Path | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None) -> CliResult:
        cmd = [str(BIN_DIR / "alicefs-ctl")]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or tmp_path,
                              env=env, timeout=60)
        return CliResult(proc.returncode, proc.stdout, proc.stderr)
    return run


# ---------------------------------------------------------------------------------------------
# Real object-store servers (tests/servers.py), one of each per test session, started only when
# a test asks for them. A server that will not start fails the test that needed it.


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):
    """A SeaweedFS S3 server on loopback with one access key (see S3Server)."""
    from tests.servers import S3Server, ServerStartError

    server = S3Server(tmp_path_factory.mktemp("seaweedfs"))
    try:
        server.start()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket(s3_server) -> str:
    """A bucket on `s3_server` shared by the session; tests keep apart by key prefix."""
    return s3_server.create_bucket()


@pytest.fixture(scope="session")
def gcs_server(tmp_path_factory: pytest.TempPathFactory):
    """gcp-storage-emulator on loopback, with STORAGE_EMULATOR_HOST pointing at it for this
    process while the session lasts."""
    from tests.servers import GCSEmulator, ServerStartError

    server = GCSEmulator(tmp_path_factory.mktemp("gcs-emulator"))
    try:
        server.start()
    except ServerStartError as exc:
        pytest.fail(str(exc), pytrace=False)
    previous = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = server.host_url
    yield server
    if previous is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = previous
    server.stop()


@pytest.fixture(scope="session")
def gcs_bucket(gcs_server) -> str:
    """A bucket on `gcs_server` shared by the session; tests keep apart by key prefix."""
    return gcs_server.create_bucket()
