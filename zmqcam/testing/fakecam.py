"""A fake ESP32-CAM: a test double faithful to the CameraWebServer firmware (esp32-camera
``app_httpd.cpp``), for the tests and for trying zmqcam without hardware.

Port P (the firmware's ``camera_httpd``, port 80 on a camera):

* ``/capture`` (and ``/jpg``, the URL of the original deployment's firmware): one JPEG, taken
  150 ms after the request (the firmware lights the LED 150 ms before ``esp_camera_fb_get``),
  with ``Content-Disposition: inline; filename=capture.jpg``, ``Access-Control-Allow-Origin: *``
  and ``X-Timestamp: <sec>.<usec>`` of the camera's uptime clock. Requests are served one at a
  time (the firmware's httpd runs handlers in one task); connections are kept alive.
* ``/status``: JSON (``framesize``, ``quality``, ... as the firmware's status_handler).
* ``/control?var=<name>&val=<int>``: 404 when an argument is missing, 500 for an unknown
  variable; ``framesize`` (the esp32-camera ``framesize_t`` index, 8 = VGA) changes the size.
* ``/fake/...``: fault injection for a fake running as a process (not in the firmware), see
  ``_fake_control``; ``/fake/stats`` returns the counters as JSON.

Port P+1 (``stream_httpd``, port 81 on a camera): ``/stream`` in the firmware's exact wire format::

    HTTP/1.1 200 OK
    Content-Type: multipart/x-mixed-replace;boundary=123456789000000000000987654321
    Transfer-Encoding: chunked
    Access-Control-Allow-Origin: *
    X-Framerate: 60

then per frame three HTTP chunks (``httpd_resp_send_chunk``): ``\\r\\n--<boundary>\\r\\n``,
``Content-Type: image/jpeg\\r\\nContent-Length: <n>\\r\\nX-Timestamp: <sec>.<usec>\\r\\n\\r\\n``
and the JPEG; never a closing boundary. Like the firmware it serves one stream client: a second
one is accepted and left waiting, without a byte of response, until the first one leaves.

Frames: a moving test picture with a frame counter, JPEG-encoded at the configured size and fps.

Use in tests (a thread in the test process)::

    with FakeCam(fps=20) as cam:          # ports picked free; cam.port, cam.stream_port
        url = cam.stream_url              # http://127.0.0.1:<P+1>/stream
        cam.stall(); cam.resume()         # send nothing (new clients get no response)
        cam.corrupt_next(); cam.truncate_next(); cam.drop_next()   # next frame(s), any client
        cam.set_size(320, 240); cam.drop_clients(); cam.refuse(2.0); cam.accept_again()
        cam.wait_until(lambda: cam.active_stream_clients == 0)

``SilentServer`` is a port that accepts connections and never answers (a camera hung at boot).

As a process: ``python -m zmqcam.testing.fakecam --port 8080`` (stream on 8081); it prints
``READY <port> <stream_port>`` once listening and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import select
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np
import simplejpeg

__all__ = ["BOUNDARY", "FRAMESIZES", "FakeCam", "SilentServer", "main"]

#: the firmware's PART_BOUNDARY
BOUNDARY = "123456789000000000000987654321"
STREAM_CONTENT_TYPE = "multipart/x-mixed-replace;boundary=" + BOUNDARY
STREAM_BOUNDARY = b"\r\n--" + BOUNDARY.encode() + b"\r\n"
STREAM_PART = "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}\r\n\r\n"

#: esp32-camera framesize_t -> (width, height)
FRAMESIZES: dict[int, tuple[int, int]] = {
    0: (96, 96),
    1: (160, 120),
    2: (176, 144),
    3: (240, 176),
    4: (240, 240),
    5: (320, 240),
    6: (400, 296),
    7: (480, 320),
    8: (640, 480),
    9: (800, 600),
    10: (1024, 768),
    11: (1280, 720),
    12: (1280, 1024),
    13: (1600, 1200),
}

#: the variables the firmware's cmd_handler knows (anything else: 500)
CONTROL_VARS = (
    "framesize",
    "quality",
    "contrast",
    "brightness",
    "saturation",
    "gainceiling",
    "colorbar",
    "awb",
    "agc",
    "aec",
    "hmirror",
    "vflip",
    "awb_gain",
    "agc_gain",
    "aec_value",
    "aec2",
    "dcw",
    "bpc",
    "wpc",
    "raw_gma",
    "lenc",
    "special_effect",
    "wb_mode",
    "ae_level",
    "led_intensity",
)

_POLL = 0.05  # seconds between checks of the stop flag in blocking loops
_SEND_TIMEOUT = 5.0  # esp_http_server's send_wait_timeout
_IDLE_TIMEOUT = 30.0  # close an idle keep-alive connection after this
_MAX_REQUEST = 8192


def _status_line(code: int) -> str:
    reasons = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 400: "Bad Request"}
    return f"HTTP/1.1 {code} {reasons.get(code, 'Error')}\r\n"


class _Gone(Exception):
    """The client left (or the fake is stopping)."""


class FakeCam:
    """A fake ESP32-CAM serving on ``host``: snapshots on ``port``, the stream on ``port + 1``.

    ``port=0`` picks a free pair of consecutive ports. Fault injection and counters are
    thread-safe; ``stop()`` ends every thread within about a second."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        stream_port: int | None = None,
        size: tuple[int, int] = (640, 480),
        fps: float = 15.0,
        quality: int = 12,
        capture_delay: float = 0.15,
    ) -> None:
        self.host = host
        self._want_port = port
        self._want_stream_port = stream_port
        self.port = 0
        self.stream_port = 0
        self.capture_delay = capture_delay
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._size = (int(size[0]), int(size[1]))
        self._fps = float(fps)
        self._settings: dict[str, int] = {name: 0 for name in CONTROL_VARS}
        self._settings.update(framesize=self._framesize_index(self._size), quality=quality, awb=1, aec=1, agc=1)
        self._boot = time.monotonic()
        self._seq = 0
        self._base: dict[tuple[int, int], np.ndarray] = {}
        self._listeners: dict[str, socket.socket] = {}
        self._refuse_until = 0.0
        self._threads: list[threading.Thread] = []
        self._clients: set[socket.socket] = set()
        self._stream_queue: deque[socket.socket] = deque()
        self._stream_wakeup = threading.Condition(self._lock)
        self._pending: dict[socket.socket, bytearray] = {}  # bytes read from waiting stream clients
        self._capture_lock = threading.Lock()
        self._faults: deque[str] = deque()
        self._stalled = False
        self._stall_partial = False
        self._started = False
        #: the last JPEGs sent (stream and capture), oldest first
        self.sent_jpegs: deque[bytes] = deque(maxlen=300)
        #: unexpected exceptions in the fake's threads (a test should find this empty)
        self.errors: list[str] = []
        # counters
        self.capture_connections = 0
        self.capture_requests = 0
        self.captures_sent = 0
        self.stream_connections = 0
        self.stream_clients_served = 0
        self.stream_frames_sent = 0
        self.active_stream_clients = 0

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
            _close(sock)
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

    # -- URLs ------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def capture_url(self) -> str:
        return f"{self.base_url}/capture"

    @property
    def jpg_url(self) -> str:
        return f"{self.base_url}/jpg"

    @property
    def status_url(self) -> str:
        return f"{self.base_url}/status"

    @property
    def stream_url(self) -> str:
        return f"http://{self.host}:{self.stream_port}/stream"

    # -- settings and fault injection -----------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def fps(self) -> float:
        return self._fps

    def set_size(self, width: int, height: int) -> None:
        """Change the resolution of the following frames (as /control?var=framesize does)."""
        with self._lock:
            self._size = (int(width), int(height))
            self._settings["framesize"] = self._framesize_index(self._size)

    def set_fps(self, fps: float) -> None:
        with self._lock:
            self._fps = float(fps)

    def stall(self, partial: bool = False) -> None:
        """Stop sending: an active stream stops (``partial``: in the middle of its next JPEG),
        a new stream client or capture request gets no response, until ``resume()``."""
        with self._lock:
            self._stalled = True
            self._stall_partial = partial

    def resume(self) -> None:
        with self._lock:
            self._stalled = False
            self._stall_partial = False

    @property
    def stalled(self) -> bool:
        return self._stalled

    def corrupt_next(self, count: int = 1) -> None:
        """The next ``count`` frames (stream or capture) have a scrambled JPEG header."""
        self._add_faults("corrupt", count)

    def truncate_next(self, count: int = 1) -> None:
        """The next ``count`` frames are cut to half, with a matching Content-Length."""
        self._add_faults("truncate", count)

    def drop_next(self, count: int = 1) -> None:
        """Instead of each of the next ``count`` frames, close the connection."""
        self._add_faults("drop", count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_faults(self, kind: str, count: int) -> None:
        with self._lock:
            self._faults.extend([kind] * count)

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def drop_clients(self) -> None:
        """Close every client connection now (stream, waiting stream clients, capture)."""
        with self._lock:
            clients = list(self._clients) + list(self._stream_queue)
            self._stream_queue.clear()
            self._pending.clear()
        for sock in clients:
            _close(sock)

    def refuse(self, seconds: float | None = None) -> None:
        """Close both listening sockets: new connections are refused, for ``seconds`` (then they
        reopen by themselves) or until ``accept_again()``. Open connections stay."""
        with self._lock:
            self._refuse_until = math.inf if seconds is None else time.monotonic() + seconds
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for sock in listeners:
            _close(sock)

    def accept_again(self) -> None:
        """End ``refuse()`` now; the ports listen again when this returns."""
        with self._lock:
            self._refuse_until = 0.0
            for role, port in (("http", self.port), ("stream", self.stream_port)):
                if role not in self._listeners and not self._stop.is_set():
                    self._listeners[role] = _listen(self.host, port)

    def reboot(self, seconds: float = 1.0) -> None:
        """A power cycle: drop every connection, refuse for ``seconds``, restart the uptime clock."""
        self.refuse(seconds)
        self.drop_clients()
        with self._lock:
            self._boot = time.monotonic() + seconds

    # -- counters ----------------------------------------------------------------------------------

    @property
    def waiting_stream_clients(self) -> int:
        return len(self._stream_queue)

    @property
    def open_connections(self) -> int:
        """Client connections open now (capture, active and waiting stream clients)."""
        with self._lock:
            return len(self._clients) + len(self._stream_queue)

    @property
    def frames_sent(self) -> int:
        return self.captures_sent + self.stream_frames_sent

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "port": self.port,
                "stream_port": self.stream_port,
                "size": list(self._size),
                "fps": self._fps,
                "stalled": self._stalled,
                "pending_faults": list(self._faults),
                "refusing": not self._listeners,
                "capture_connections": self.capture_connections,
                "capture_requests": self.capture_requests,
                "captures_sent": self.captures_sent,
                "stream_connections": self.stream_connections,
                "stream_clients_served": self.stream_clients_served,
                "stream_frames_sent": self.stream_frames_sent,
                "active_stream_clients": self.active_stream_clients,
                "waiting_stream_clients": len(self._stream_queue),
                "open_connections": len(self._clients) + len(self._stream_queue),
                "errors": list(self.errors),
            }

    def was_sent(self, jpeg: bytes) -> bool:
        """True when ``jpeg`` is byte for byte one of the last JPEGs sent."""
        return any(jpeg == sent for sent in reversed(self.sent_jpegs))

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
        """Poll ``predicate`` until it is true or ``timeout`` passes; returns its last value."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return bool(predicate())
            time.sleep(0.01)

    # -- frames ------------------------------------------------------------------------------------

    def _timestamp(self) -> str:
        uptime = max(0.0, time.monotonic() - self._boot)
        sec = int(uptime)
        return f"{sec}.{int((uptime - sec) * 1e6):06d}"

    def _jpeg_quality(self) -> int:
        # the sensor's quality is 0 (best) to 63; map it onto libjpeg's 1..100
        q = self._settings.get("quality", 12)
        return max(5, min(95, int(100 - 1.5 * q)))

    def render(self) -> tuple[bytes, str]:
        """A new frame: (JPEG, fault applied or "") and its sequence number advanced."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            width, height = self._size
            fault = self._faults.popleft() if self._faults else ""
            quality = self._jpeg_quality()
        base = self._base.get((width, height))
        if base is None:
            base = _test_pattern(width, height)
            self._base[(width, height)] = base
        img = base.copy()
        x = (seq * 7) % max(1, width)
        cv2.rectangle(img, (x, height // 3), (min(width - 1, x + width // 10), 2 * height // 3), (255, 255, 255), -1)
        scale = max(0.3, width / 640)
        cv2.putText(img, f"#{seq:06d}", (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2)
        cv2.putText(img, f"{width}x{height}", (8, height - 8), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, (0, 0, 0), 1)
        jpeg = simplejpeg.encode_jpeg(img, quality=quality, colorspace="BGR", colorsubsampling="420")
        if fault == "corrupt":
            scrambled = bytearray(jpeg)
            rng = np.random.default_rng(seq)
            n = min(600, len(jpeg) - 4)
            scrambled[2 : 2 + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            jpeg = bytes(scrambled)
        elif fault == "truncate":
            jpeg = jpeg[: len(jpeg) // 2]
        return jpeg, fault

    # -- sockets -------------------------------------------------------------------------------------

    def _bind_ports(self) -> None:
        if self._want_port:
            port = self._want_port
            stream_port = self._want_stream_port or port + 1
            http = _listen(self.host, port)
            try:
                stream = _listen(self.host, stream_port)
            except OSError:
                _close(http)
                raise
        else:
            for _ in range(100):
                http = _listen(self.host, 0)
                port = http.getsockname()[1]
                stream_port = self._want_stream_port or port + 1
                try:
                    stream = _listen(self.host, stream_port)
                    break
                except OSError:
                    _close(http)
            else:
                raise OSError("no free pair of consecutive ports")
        self.port, self.stream_port = port, stream_port
        self._listeners = {"http": http, "stream": stream}

    def _spawn(self, target: Callable[..., None], *args: Any, name: str) -> threading.Thread:
        def run() -> None:
            try:
                target(*args)
            except Exception as exc:  # a bug in the fake: report it, never crash the test run
                self.errors.append(f"{name}: {exc!r}")

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()
        return thread

    def _accept_loop(self, role: str, handle: Callable[[socket.socket], None]) -> None:
        port = self.port if role == "http" else self.stream_port
        while not self._stop.is_set():
            with self._lock:
                listener = self._listeners.get(role)
                if listener is None and time.monotonic() >= self._refuse_until and not self._stop.is_set():
                    with contextlib.suppress(OSError):  # the port may be taken meanwhile: retry
                        listener = self._listeners[role] = _listen(self.host, port)
            if listener is None:
                self._stop.wait(_POLL)
                continue
            try:
                readable, _, _ = select.select([listener], [], [], _POLL)
                if not readable:
                    continue
                conn, _ = listener.accept()
            except (OSError, ValueError):  # closed by refuse() or stop()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            handle(conn)

    # -- port P: snapshots, status, control -----------------------------------------------------

    def _serve_http_connection(self, conn: socket.socket) -> None:
        with self._lock:
            if self._stop.is_set():
                _close(conn)
                return
            self._clients.add(conn)
            self.capture_connections += 1
        self._spawn(self._http_session, conn, name=f"fakecam-http-{conn.fileno()}")

    def _http_session(self, conn: socket.socket) -> None:
        buf = bytearray()
        try:
            while not self._stop.is_set():
                request = self._read_request(conn, buf, _IDLE_TIMEOUT)
                if request is None:
                    return
                method, target, headers = request
                keep = self._handle_http(conn, method, target)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except _Gone:
            return
        finally:
            with self._lock:
                self._clients.discard(conn)
            _close(conn)

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
                self._wait(conn, _POLL)
            jpeg, fault = self.render()
            if fault == "drop":
                return False
            extra = {
                "Content-Disposition": "inline; filename=capture.jpg",
                "Access-Control-Allow-Origin": "*",
                "X-Timestamp": self._timestamp(),
            }
            with self._lock:  # recorded before it is sent, so a test never looks too early
                self.sent_jpegs.append(jpeg)
            keep = self._send_response(conn, 200, "image/jpeg", jpeg, extra)
            with self._lock:
                self.captures_sent += 1
            return keep

    def _status(self) -> dict[str, Any]:
        with self._lock:
            status: dict[str, Any] = {"xclk": 20, "pixformat": 4}
            status.update(self._settings)
            return status

    def _control(self, conn: socket.socket, query: dict[str, list[str]]) -> bool:
        if "var" not in query or "val" not in query:
            return self._send_response(conn, 404, "text/html", b"This URI does not exist")
        var = query["var"][0]
        try:
            val = int(query["val"][0])
        except ValueError:
            val = 0  # the firmware's atoi()
        if var not in CONTROL_VARS:
            return self._send_response(conn, 500, "text/html", b"Internal Server Error")
        if var == "framesize":
            if val not in FRAMESIZES:
                return self._send_response(conn, 500, "text/html", b"Internal Server Error")
            self.set_size(*FRAMESIZES[val])
        with self._lock:
            self._settings[var] = val
        return self._send_response(conn, 200, "text/html", b"", {"Access-Control-Allow-Origin": "*"})

    def _fake_control(self, action: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """Fault injection over HTTP, for a fake running as a separate process."""

        def arg(name: str, default: float) -> float:
            try:
                return float(query.get(name, [default])[0])
            except ValueError:
                return default

        count = int(arg("count", 1))
        actions: dict[str, Callable[[], None]] = {
            "stall": lambda: self.stall(partial=bool(arg("partial", 0))),
            "resume": self.resume,
            "corrupt": lambda: self.corrupt_next(count),
            "truncate": lambda: self.truncate_next(count),
            "drop": lambda: self.drop_next(count),
            "drop_clients": self.drop_clients,
            # over HTTP a refusal must end by itself: nobody could reach /fake/accept
            "refuse": lambda: self.refuse(arg("seconds", 5.0)),
            "reboot": lambda: self.reboot(arg("seconds", 1.0)),
            "size": lambda: self.set_size(int(arg("w", 640)), int(arg("h", 480))),
            "fps": lambda: self.set_fps(arg("val", 15.0)),
            "clear": self.clear_faults,
            "stats": lambda: None,
        }
        if action not in actions:
            return 404, {"error": f"unknown action {action!r}", "actions": sorted(actions)}
        if action in ("refuse", "reboot"):
            # answer first, then close the listeners
            threading.Timer(0.05, actions[action]).start()
        else:
            actions[action]()
        return 200, self.stats()

    # -- port P+1: the stream -----------------------------------------------------------------

    def _enqueue_stream_client(self, conn: socket.socket) -> None:
        with self._lock:
            if self._stop.is_set():
                _close(conn)
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
                    self._stream_wakeup.wait(_POLL * 4)
                if self._stop.is_set():
                    return
                conn = self._stream_queue.popleft()
                self._clients.add(conn)
                self.active_stream_clients = 1
            try:
                self._stream_session(conn)
            except _Gone:
                pass
            finally:
                with self._lock:
                    self._clients.discard(conn)
                    self.active_stream_clients = 0
                    self.stream_clients_served += 1
                _close(conn)

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
                _close(sock)

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
                if len(pending) > _MAX_REQUEST:
                    return True
                pending += data
        except (OSError, ValueError):
            return True

    def _stream_session(self, conn: socket.socket) -> None:
        buf = self._pending.pop(conn, bytearray())
        while True:
            request = self._read_request(conn, buf, _IDLE_TIMEOUT)
            if request is None:
                return
            method, target, _ = request
            if urlsplit(target).path != "/stream" or method != "GET":
                self._send_response(conn, 404, "text/html", b"This URI does not exist")
                continue
            break
        while self._stalled:  # accepted, request read, no response
            self._wait(conn, _POLL, stream=True)
        head = (
            _status_line(200) + f"Content-Type: {STREAM_CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n"
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
                self._wait(conn, _POLL, stream=True)
            jpeg, fault = self.render()
            if fault == "drop":
                return
            part = STREAM_PART.format(len(jpeg), self._timestamp()).encode()
            with self._lock:
                self.sent_jpegs.append(jpeg)
            self._send(conn, _chunk(STREAM_BOUNDARY))
            self._send(conn, _chunk(part))
            if self._stalled and self._stall_partial:
                half = len(jpeg) // 2
                self._send(conn, f"{len(jpeg):x}\r\n".encode() + jpeg[:half])
                while self._stalled:
                    self._wait(conn, _POLL, stream=True)
                self._send(conn, jpeg[half:] + b"\r\n")
            else:
                self._send(conn, _chunk(jpeg))
            with self._lock:
                self.stream_frames_sent += 1

    # -- HTTP plumbing -------------------------------------------------------------------------------

    def _read_request(self, conn: socket.socket, buf: bytearray, idle: float) -> tuple[str, str, dict[str, str]] | None:
        """The next request (method, target, lower-case headers); None on close, stop or idle."""
        deadline = time.monotonic() + idle
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(buf[:end]).decode("latin-1")
                del buf[: end + 4]
                lines = head.split("\r\n")
                fields = lines[0].split()
                if len(fields) < 2:
                    self._send_response(conn, 400, "text/plain", b"Bad Request")
                    return None
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                return fields[0].upper(), fields[1], headers
            if len(buf) > _MAX_REQUEST or self._stop.is_set() or time.monotonic() > deadline:
                return None
            try:
                readable, _, _ = select.select([conn], [], [], _POLL)
                if not readable:
                    continue
                data = conn.recv(4096)
            except (OSError, ValueError):
                return None
            if not data:
                return None
            buf += data

    def _wait(self, conn: socket.socket, seconds: float, stream: bool = False) -> None:
        """Sleep ``seconds`` while watching the client; raise _Gone if it leaves or we stop."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self._stop.is_set():
                raise _Gone
            remaining = deadline - time.monotonic()
            try:
                readable, _, _ = select.select([conn], [], [], max(0.0, min(_POLL, remaining)))
                if readable:
                    data = conn.recv(4096, 0 if stream else socket.MSG_PEEK)
                    if not data:
                        raise _Gone
                    if not stream:  # a pipelined request: leave it, look again later
                        time.sleep(min(_POLL, max(0.0, remaining)))
            except (OSError, ValueError):
                raise _Gone from None
            if remaining <= 0:
                return

    def _send(self, conn: socket.socket, data: bytes) -> None:
        if self._stop.is_set():
            raise _Gone
        try:
            conn.settimeout(_SEND_TIMEOUT)
            conn.sendall(data)
        except (OSError, ValueError):
            raise _Gone from None

    def _send_response(
        self, conn: socket.socket, code: int, ctype: str, body: bytes, extra: dict[str, str] | None = None
    ) -> bool:
        """httpd_resp_send: status, Content-Type, Content-Length, custom headers, body."""
        head = _status_line(code) + f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        for name, value in (extra or {}).items():
            head += f"{name}: {value}\r\n"
        self._send(conn, head.encode() + b"\r\n" + body)
        return True

    @staticmethod
    def _framesize_index(size: tuple[int, int]) -> int:
        for index, wh in FRAMESIZES.items():
            if wh == tuple(size):
                return index
        return 8


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
            self._listener = _listen(self.host, self._want_port)
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
            _close(sock)
        if self._listener is not None:
            _close(self._listener)

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
                readable, _, _ = select.select(watched, [], [], _POLL)
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
            _close(oldest)

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
        _close(sock)


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    return sock


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _test_pattern(width: int, height: int) -> np.ndarray:
    """Colour bars over a grey ramp (BGR)."""
    img = np.empty((height, width, 3), np.uint8)
    bars = [(255, 255, 255), (0, 255, 255), (255, 255, 0), (0, 255, 0), (255, 0, 255), (0, 0, 255), (255, 0, 0)]
    top = height * 2 // 3
    for i, color in enumerate(bars):
        x0, x1 = i * width // len(bars), (i + 1) * width // len(bars)
        img[:top, x0:x1] = color
    ramp = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)
    img[top:] = ramp[None, :, None]
    return img


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zmqcam.testing.fakecam",
        description="A fake ESP32-CAM (CameraWebServer firmware): snapshots on PORT, the stream on PORT+1.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks free ports (see the READY line)")
    parser.add_argument("--stream-port", type=int, default=None, help="default: PORT+1")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--quality", type=int, default=12, help="sensor quality 0 (best) .. 63")
    parser.add_argument("--capture-delay", type=float, default=0.15)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    cam = FakeCam(
        args.host,
        args.port,
        stream_port=args.stream_port,
        size=(width, height),
        fps=args.fps,
        quality=args.quality,
        capture_delay=args.capture_delay,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cam.start()
    try:
        print(f"READY {cam.port} {cam.stream_port}", flush=True)
        print(f"snapshots: {cam.capture_url}  stream: {cam.stream_url}  faults: {cam.base_url}/fake/stats", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cam.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
