"""``SilentServer``: a port that accepts connections and never answers (a camera hung at boot)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections import deque

from zmqcam.testing.fakecam import wire


class SilentServer:
    """A port that accepts TCP connections and never answers: a camera whose web server hung at
    boot, or a device at the camera's address that is no camera. Unlike ``FakeCam.stall()`` it has
    never sent a byte to anyone. Each connection is held open (at most ``max_connections``; beyond
    that the oldest is closed, so it stays bounded) and whatever the client sends is read and dropped.

    ::

        with SilentServer() as silent:
            url = silent.url("/capture")       # http://127.0.0.1:<port>/capture
            silent.connections                 # accepted so far
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, max_connections: int = 16) -> None:
        self.host = host
        self._want_port = port
        self.port = 0
        self.max_connections = max_connections
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._held: deque[socket.socket] = deque()
        self._thread: threading.Thread | None = None
        #: connections accepted so far, and bytes received from them (requests nobody answers)
        self.connections = 0
        self.bytes_received = 0
        #: unexpected exceptions in the server's thread (a test should find this empty)
        self.errors: list[str] = []

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._held)

    def start(self) -> SilentServer:
        if self._listener is None:
            self._listener = wire.listen(self.host, self._want_port)
            self.port = self._listener.getsockname()[1]
            self._thread = threading.Thread(target=self._run, name="silent-server", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self.errors.append("silent-server thread still running after stop()")
        with self._lock:
            held = list(self._held)
            self._held.clear()
        for sock in held:
            wire.close(sock)
        if self._listener is not None:
            wire.close(self._listener)

    def __enter__(self) -> SilentServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        listener = self._listener
        assert listener is not None
        try:
            while not self._stop.is_set():
                with self._lock:
                    watched = [listener, *self._held]
                readable, _, _ = select.select(watched, [], [], wire.POLL)
                for sock in readable:
                    if sock is listener:
                        self._accept(listener)
                    else:
                        self._discard_input(sock)
        except Exception as exc:  # a bug in the fake: report it, never crash the test run
            self.errors.append(f"silent-server: {exc!r}")

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        oldest = None
        with self._lock:
            self.connections += 1
            self._held.append(conn)
            if len(self._held) > self.max_connections:
                oldest = self._held.popleft()
        if oldest is not None:
            wire.close(oldest)

    def _discard_input(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except OSError:
            data = b""
        if data:
            self.bytes_received += len(data)
            return
        with self._lock, contextlib.suppress(ValueError):  # the client gave up: forget it
            self._held.remove(sock)
        wire.close(sock)
