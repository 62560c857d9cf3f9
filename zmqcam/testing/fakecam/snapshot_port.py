"""Port P of the fake ESP32-CAM (the firmware's ``camera_httpd``, port 80 on a camera): ``/capture``
and ``/jpg`` snapshots, ``/status``, ``/control``, and ``/fake/`` fault injection."""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

from zmqcam.testing.fakecam import wire
from zmqcam.testing.fakecam.faults import FaultInjection


class SnapshotPort(FaultInjection):
    """Serves port P: requests one at a time per connection, connections kept alive."""

    # -- port P: snapshots, status, control -----------------------------------------------------

    def _serve_http_connection(self, conn: socket.socket) -> None:
        with self._lock:
            if self._stop.is_set():
                wire.close(conn)
                return
            self._clients.add(conn)
            self.capture_connections += 1
        self._spawn(self._http_session, conn, name=f"fakecam-http-{conn.fileno()}")

    def _http_session(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while not self._stop.is_set():
                request = self._read_request(conn, buf, wire.IDLE_TIMEOUT)
                if request is None:
                    return
                method, target, headers = request
                keep = self._handle_http(conn, method, target)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except wire.Gone:
            return
        finally:
            with self._lock:
                self._clients.discard(conn)
            wire.close(conn)

    def _handle_http(self, conn: socket.socket, method: str, target: str) -> bool:
        """Answer one request; False when the connection must be closed."""
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        if method not in ("GET", "HEAD"):
            return self._send_response(conn, 405, "text/plain", b"Method not allowed")
        if path in ("/capture", "/jpg"):
            return self._capture(conn)
        if path == "/status":
            return self._send_response(conn, 200, "application/json", json.dumps(self._status()).encode())
        if path == "/control":
            return self._control(conn, query)
        if path.startswith("/fake/"):
            code, payload = self._fake_control(path[len("/fake/") :], query)
            return self._send_response(conn, code, "application/json", json.dumps(payload).encode())
        if path == "/":
            page = f'<html><body><img src="http://{self.host}:{self.stream_port}/stream"></body></html>'
            return self._send_response(conn, 200, "text/html", page.encode())
        return self._send_response(conn, 404, "text/html", b"This URI does not exist")

    def _capture(self, conn: socket.socket) -> bool:
        with self._lock:
            self.capture_requests += 1
        # one handler at a time, like the firmware's single httpd task
        with self._capture_lock:
            self._wait(conn, self.capture_delay)  # the LED warm-up before esp_camera_fb_get()
            while self._stalled:
                self._wait(conn, wire.POLL)
            jpeg, fault = self.render()
            if fault == "drop":
                return False
            extra = {
                "Content-Disposition": "inline; filename=capture.jpg",
                "Access-Control-Allow-Origin": "*",
                "X-Timestamp": self._timestamp(),
            }
            with self._lock:  # recorded before it is sent, so a test never looks too early
                self._record_sent(jpeg, fault)
            keep = self._send_response(conn, 200, "image/jpeg", jpeg, extra)
            with self._lock:
                self.captures_sent += 1
            return keep

    def _status(self) -> dict[str, Any]:
        """status_handler's JSON: xclk, pixformat, then the sensor's settings in the firmware's order."""
        with self._lock:
            status: dict[str, Any] = {"xclk": 20, "pixformat": 4}
            status.update({key: self._settings[key] for key in wire.STATUS_KEYS})
            return status

    def _control(self, conn: socket.socket, query: dict[str, list[str]]) -> bool:
        """cmd_handler: 404 without var and val, 500 for a variable it does not know (or one a test
        made fail), else set it and answer an empty 200."""
        if "var" not in query or "val" not in query:
            return self._send_response(conn, 404, "text/html", b"This URI does not exist")
        var = query["var"][0]
        with self._lock:
            self.control_requests.append((var, query["val"][0]))
        try:
            val = int(query["val"][0])
        except ValueError:
            val = 0  # the firmware's atoi()
        if var not in wire.CONTROL_VARS or var in self.failing_controls:
            return self._send_response(conn, 500, "text/html", b"Internal Server Error")
        if var in self.ignored_controls:
            return self._send_response(conn, 200, "text/html", b"", {"Access-Control-Allow-Origin": "*"})
        if var == "framesize":
            if val not in wire.FRAMESIZES:
                return self._send_response(conn, 500, "text/html", b"Internal Server Error")
            self.set_size(*wire.FRAMESIZES[val])
        with self._lock:
            self._settings[var] = val
        return self._send_response(conn, 200, "text/html", b"", {"Access-Control-Allow-Origin": "*"})
