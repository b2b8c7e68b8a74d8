"""A TCP proxy on loopback in front of a test server, to cut the network without losing the
server's data (the GCS emulator keeps everything in memory): `down()` resets every open
connection and refuses new ones until `up()`; `hang_next()` swallows the next answer the
server sends, and everything after it on that connection (a request whose answer is lost).

It runs in a process of its own: a test blocked in a system call that holds the GIL (mmap's
flush is one, and on the mount it waits for an upload through this proxy) must not stop it.
Only ever forwards to an address on this machine (the servers of tests/servers.py).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

from tests.servers import free_ports

_BUFFER = 1 << 16


class _Forwarder:
    def __init__(self, target_port: int, port: int, host: str = "127.0.0.1"):
        self.host = host
        self.target = (host, target_port)
        self.port = port
        self._listener = socket.create_server((host, self.port))
        self._listener.settimeout(0.2)
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._is_down = False
        self._hang_next = False
        self._stopped = threading.Event()
        self.forwarded = 0  # bytes, both ways
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """The network is gone: open connections are reset, new ones closed at once."""
        with self._lock:
            self._is_down = True
            for sock in self._connections:
                _reset(sock)
            self._connections.clear()

    def up(self) -> None:
        with self._lock:
            self._is_down = False

    def hang_next(self) -> None:
        with self._lock:
            self._hang_next = True

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()
        self.down()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if self._is_down:
                    _reset(client)
                    continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections.update((client, upstream))
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=(source, sink, answers),
                                 daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        hung = False
        try:
            while data := source.recv(_BUFFER):
                with self._lock:
                    if answers and self._hang_next:
                        self._hang_next, hung = False, True
                if hung:
                    continue  # read and dropped until the client gives up and closes
                sink.sendall(data)
                with self._lock:
                    self.forwarded += len(data)
        except OSError:
            pass  # reset by down(), or by either end
        finally:
            if not hung:  # the client must not hear of it: it waits until it gives up
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
            with self._lock:
                self._connections.discard(source)
            with contextlib.suppress(OSError):
                source.close()


class TcpProxy:
    """The proxy process, controlled over its standard input and output."""

    def __init__(self, target_port: int, host: str = "127.0.0.1"):
        self.host = host
        self.port = free_ports(1)[0]
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.proxy", str(target_port), str(self.port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=Path(__file__).resolve().parent.parent)
        self._command("ping")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def down(self) -> None:
        self._command("down")

    def up(self) -> None:
        self._command("up")

    def hang_next(self) -> None:
        self._command("hang")

    def forwarded(self) -> int:
        """Bytes that went through the proxy so far, both ways."""
        return int(self._command("bytes"))

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()

    def _command(self, word: str) -> str:
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write(word + "\n")
        self._process.stdin.flush()
        answer = self._process.stdout.readline().strip()
        status, _, value = answer.partition(" ")
        if status != "ok":
            raise RuntimeError(f"proxy did not answer {word!r}: {answer!r}")
        return value


def _serve(target_port: int, port: int) -> None:
    forwarder = _Forwarder(target_port, port)
    actions = {"down": forwarder.down, "up": forwarder.up, "hang": forwarder.hang_next,
               "ping": lambda: None,
               "bytes": lambda: forwarder.forwarded}
    for line in sys.stdin:
        value = actions[line.strip()]()
        print("ok" if value is None else f"ok {value}", flush=True)
    forwarder.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dropped network looks to the client."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
