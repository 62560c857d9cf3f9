"""Port P+1 of the fake ESP32-CAM (the firmware's ``stream_httpd``, port 81 on a camera): ``/stream``
in the firmware's exact wire format, one client at a time, the others left waiting."""

from __future__ import annotations

import contextlib
import select
import socket
import time
from urllib.parse import urlsplit

from zmqcam.testing.fakecam import wire
from zmqcam.testing.fakecam.faults import FaultInjection


class StreamPort(FaultInjection):
    """Serves port P+1: one stream client at a time, like the firmware's single stream task."""

    # -- port P+1: the stream -----------------------------------------------------------------

    def _enqueue_stream_client(self, conn: socket.socket) -> None:
        with self._lock:
            if self._stop.is_set():
                wire.close(conn)
                return
            self.stream_connections += 1
            self._stream_queue.append(conn)
            self._stream_wakeup.notify_all()

    def _stream_worker(self) -> None:
        """One client at a time, like the firmware's stream httpd (one task, a handler that loops
        until sending fails). The others wait in the queue without any response."""
        while not self._stop.is_set():
            with self._lock:
                while not self._stream_queue and not self._stop.is_set():
                    self._stream_wakeup.wait(wire.POLL * 4)
                if self._stop.is_set():
                    return
                conn = self._stream_queue.popleft()
                self._clients.add(conn)
                self.active_stream_clients = 1
            try:
                self._stream_session(conn)
            except wire.Gone:
                pass
            finally:
                with self._lock:
                    self._clients.discard(conn)
                    self.active_stream_clients = 0
                    self.stream_clients_served += 1
                wire.close(conn)

    def _prune_waiting(self) -> None:
        """Forget waiting stream clients that have gone away. Their requests are read (and kept
        for when their turn comes), since a closed peer shows only after its pending bytes."""
        with self._lock:
            waiting = list(self._stream_queue)
        gone = [s for s in waiting if self._peer_closed(s)]
        if gone:
            with self._lock:
                for sock in gone:
                    with contextlib.suppress(ValueError):
                        self._stream_queue.remove(sock)
            for sock in gone:
                self._pending.pop(sock, None)
                wire.close(sock)

    def _peer_closed(self, sock: socket.socket) -> bool:
        try:
            while True:
                readable, _, _ = select.select([sock], [], [], 0)
                if not readable:
                    return False
                data = sock.recv(4096)
                if not data:
                    return True
                pending = self._pending.setdefault(sock, bytearray())
                if len(pending) > wire.MAX_REQUEST:
                    return True
                pending += data
        except (OSError, ValueError):
            return True

    def _stream_session(self, conn: socket.socket) -> None:
        buf = self._pending.pop(conn, bytearray())
        while True:
            request = self._read_request(conn, buf, wire.IDLE_TIMEOUT)
            if request is None:
                return
            method, target, _ = request
            if urlsplit(target).path != "/stream" or method != "GET":
                self._send_response(conn, 404, "text/html", b"This URI does not exist")
                continue
            break
        while self._stalled:  # accepted, request read, no response
            self._wait(conn, wire.POLL, stream=True)
        head = (
            wire.status_line(200) + f"Content-Type: {wire.STREAM_CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n"
            "Access-Control-Allow-Origin: *\r\nX-Framerate: 60\r\n\r\n"
        )
        self._send(conn, head.encode())
        next_due = time.monotonic()
        last_prune = 0.0
        while True:
            now = time.monotonic()
            if now - last_prune > 0.2:
                self._prune_waiting()
                last_prune = now
            self._wait(conn, next_due - now, stream=True)
            next_due = max(next_due + 1.0 / self._fps, time.monotonic() - 1.0 / self._fps)
            while self._stalled and not self._stall_partial:
                self._wait(conn, wire.POLL, stream=True)
            jpeg, fault = self.render()
            if fault == "drop":
                return
            part = wire.STREAM_PART.format(len(jpeg), self._timestamp()).encode()
            with self._lock:
                self._record_sent(jpeg, fault)
            self._send(conn, wire.chunk(wire.STREAM_BOUNDARY))
            self._send(conn, wire.chunk(part))
            if self._stalled and self._stall_partial:
                half = len(jpeg) // 2
                self._send(conn, f"{len(jpeg):x}\r\n".encode() + jpeg[:half])
                while self._stalled:
                    self._wait(conn, wire.POLL, stream=True)
                self._send(conn, jpeg[half:] + b"\r\n")
            else:
                self._send(conn, wire.chunk(jpeg))
            with self._lock:
                self.stream_frames_sent += 1
