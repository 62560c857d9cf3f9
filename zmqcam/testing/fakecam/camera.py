"""``FakeCam``: the fake ESP32-CAM, its two ports on one state, started and stopped as one."""

from __future__ import annotations

import time

from zmqcam.testing.fakecam import wire
from zmqcam.testing.fakecam.snapshot_port import SnapshotPort
from zmqcam.testing.fakecam.stream_port import StreamPort


class FakeCam(SnapshotPort, StreamPort):
    """A fake ESP32-CAM serving on ``host``: snapshots on ``port``, the stream on ``port + 1``.

    ``port=0`` picks a free pair of consecutive ports. Fault injection and counters are
    thread-safe; ``stop()`` ends every thread within about a second."""

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> FakeCam:
        if self._started:
            return self
        self._bind_ports()
        self._started = True
        self._spawn(self._accept_loop, "http", self._serve_http_connection, name="fakecam-accept-http")
        self._spawn(self._accept_loop, "stream", self._enqueue_stream_client, name="fakecam-accept-stream")
        self._spawn(self._stream_worker, name="fakecam-stream")
        return self

    def stop(self, timeout: float = 1.0) -> None:
        """Close every socket and join every thread (within ``timeout`` seconds in total)."""
        self._stop.set()
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
            clients = list(self._clients) + list(self._stream_queue)
            self._stream_queue.clear()
            self._stream_wakeup.notify_all()
        for sock in listeners + clients:
            wire.close(sock)
        deadline = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            self.errors.append(f"threads still running after stop(): {alive}")

    def __enter__(self) -> FakeCam:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
