"""The control socket: how alicefs-ctl runs its commands while a mount holds the catalog.

DuckDB allows one writing process, so while a mount is running every alicefs-ctl command is
sent to it over a Unix socket in the state directory (owner-only) and run there, against the
mount's catalog, and the mount's namespace is brought level with what the command changed.
Protocol: one JSON line each way — {"argv", "cwd"} then {"exit", "stdout", "stderr"}.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

SOCKET_NAME = "control.sock"
MAX_MESSAGE = 64 << 20
# sun_path holds 108 bytes with its terminating NUL; a state directory deep enough (a long
# $HOME, a test's temporary directory) does not fit.
MAX_SOCKET_ADDRESS = 107


def socket_path(state_dir: Path) -> Path:
    return state_dir / SOCKET_NAME


@contextlib.contextmanager
def socket_address(path: Path) -> Iterator[str]:
    """An AF_UNIX address for the socket at `path`: the path itself when it fits, else the
    same file reached through an open descriptor of its directory (/proc/self/fd/N/NAME),
    which keeps the directory's permissions in force, unlike an abstract address."""
    if len(os.fsencode(path)) <= MAX_SOCKET_ADDRESS:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def forward(state_dir: Path, argv: list[str], cwd: Path) -> tuple[int, str, str] | None:
    """Run `argv` in the mount that owns `state_dir`; None when no mount is running."""
    path = socket_path(state_dir)
    if not path.exists():
        return None
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            with socket_address(path) as address:
                client.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # a socket left by a mount that is gone
        client.sendall(json.dumps({"argv": argv, "cwd": str(cwd)}).encode() + b"\n")
        client.shutdown(socket.SHUT_WR)
        data = bytearray()
        while chunk := client.recv(1 << 16):
            data += chunk
            if len(data) > MAX_MESSAGE:
                raise OSError("control socket: answer too large")
    finally:
        client.close()
    reply = json.loads(data)
    return int(reply["exit"]), reply["stdout"], reply["stderr"]


def decode_request(data: bytes) -> tuple[list[str], Path]:
    request = json.loads(data)
    argv = request["argv"]
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a list of strings")
    return argv, Path(request["cwd"])


def encode_reply(code: int, stdout: str, stderr: str) -> bytes:
    return json.dumps({"exit": code, "stdout": stdout, "stderr": stderr}).encode()


def prepare_socket_dir(state_dir: Path) -> Path:
    """The socket's directory, private to the user; a stale socket is removed."""
    state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(state_dir, 0o700)
    path = socket_path(state_dir)
    path.unlink(missing_ok=True)
    return path
