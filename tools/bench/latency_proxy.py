"""A loopback TCP proxy that adds network latency without capping throughput.

Every chunk read from one side is forwarded to the other at its arrival time plus half the
round trip: each direction of each connection has a queue of (due time, bytes) and a sender
thread, so a stream keeps flowing at full speed, only shifted in time, as over a long but fat
link. Sleeping per chunk instead would cost a round trip per chunk and throttle streaming.
A new connection also costs a round trip, as the TCP handshake would: nothing the client sends
reaches the server before a full round trip after the connect.

It runs in threads of the calling process and only forwards to a port on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import deque

_CHUNK = 1 << 20
# Bytes queued per direction before the proxy stops reading from the sender: a bound on
# memory far above what a round trip of loopback traffic carries (about 3 GB/s at 40 ms).
_MAX_QUEUED = 64 << 20


class _Pipe:
    """One direction of a connection: reads `source`, sends each chunk to `sink` once due."""

    def __init__(self, source: socket.socket, sink: socket.socket, delay: float,
                 not_before: float, done: threading.Barrier):
        self.source, self.sink, self.delay = source, sink, delay
        self.not_before = not_before  # the end of the simulated handshake
        self.done = done
        self.queue: deque[tuple[float, bytes]] = deque()
        self.queued = 0
        self.cond = threading.Condition()
        self.sender_gone = False  # nobody takes from the queue any more

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._send, daemon=True).start()

    def _read(self) -> None:
        try:
            while data := self.source.recv(_CHUNK):
                self._put(data)
        except OSError:
            pass  # reset: passed on as an end of stream
        self._put(b"")  # the sender shuts the sink's write side down when this is due

    def _put(self, data: bytes) -> None:
        due = max(time.monotonic(), self.not_before) + self.delay
        with self.cond:
            while self.queued > _MAX_QUEUED and not self.sender_gone:
                self.cond.wait()
            if self.sender_gone:
                return
            self.queue.append((due, data))
            self.queued += len(data)
            self.cond.notify_all()

    def _send(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.queue:
                        self.cond.wait()
                    due, data = self.queue.popleft()
                    self.queued -= len(data)
                    self.cond.notify_all()
                time.sleep(max(0.0, due - time.monotonic()))
                if not data:
                    break
                self.sink.sendall(data)
        except OSError:
            pass  # the other end went away; the reader ends on its own error or EOF
        with self.cond:
            self.sender_gone = True
            self.queue.clear()
            self.cond.notify_all()  # a reader waiting for room drops what it reads from now on
        with contextlib.suppress(OSError):
            self.sink.shutdown(socket.SHUT_WR)
        self.done.wait()


class LatencyProxy:
    """Listens on a free 127.0.0.1 port and forwards to `target_port` on 127.0.0.1, adding
    `rtt_ms` / 2 each way."""

    def __init__(self, target_port: int, rtt_ms: float):
        self.target = ("127.0.0.1", target_port)
        self.one_way = rtt_ms / 2000
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop accepting and drop every open connection."""
        self._stopped.set()
        self._thread.join(timeout=5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._connect(client, upstream)

    def _connect(self, client: socket.socket, upstream: socket.socket) -> None:
        for sock in (client, upstream):
            # Chunks are timed by the proxy: Nagle's algorithm would hold small ones back.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._sockets.update((client, upstream))
        # The kernel completed the client's handshake at once; holding its first bytes until
        # a round trip after the connect charges the handshake's round trip.
        handshake_done = time.monotonic() + 2 * self.one_way
        # Both senders wait here, so the sockets are closed once neither direction needs them.
        done = threading.Barrier(2, action=lambda: self._close(client, upstream))
        _Pipe(client, upstream, self.one_way, handshake_done, done).start()
        _Pipe(upstream, client, self.one_way, 0.0, done).start()

    def _close(self, *socks: socket.socket) -> None:
        with self._lock:
            for sock in socks:
                self._sockets.discard(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)  # wakes a reader still in recv()
                sock.close()
