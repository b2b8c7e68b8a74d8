from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_DIR = Path(sys.executable).parent


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str


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
