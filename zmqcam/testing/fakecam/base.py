"""The fake ESP32-CAM's state and the plumbing both its ports use (``FakeCamBase``): settings,
counters, the frames it renders, the listening sockets, its threads, and reading and writing HTTP."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import cv2
import numpy as np
import simplejpeg

from zmqcam.testing.fakecam import wire

#: pictures a fake serves instead of its test pattern: a callable given the frame's sequence number
#: (1, 2, ...) that returns JPEG bytes, or a list of JPEGs served in turn (cycled)
FrameSource: TypeAlias = Callable[[int], bytes] | Sequence[bytes]


def damaged(jpeg: bytes, fault: str, seq: int) -> bytes:
    """A frame as a fault leaves it: "corrupt" scrambles its header, "truncate" cuts it to half."""
    if fault == "corrupt":
        scrambled = bytearray(jpeg)
        rng = np.random.default_rng(seq)
        n = min(600, len(jpeg) - 4)
        scrambled[2 : 2 + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        return bytes(scrambled)
    if fault == "truncate":
        return jpeg[: len(jpeg) // 2]
    return jpeg


class FakeCamBase:
    """The state of a fake ESP32-CAM and what both its ports use: settings, counters, frames,
    listening sockets, threads and the HTTP plumbing. ``FakeCam`` puts the ports on it.

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
        source: FrameSource | None = None,
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
        # the firmware's defaults (esp32-camera's sensor init): auto white balance, gain and exposure on
        self._settings: dict[str, int] = {name: 0 for name in (*wire.CONTROL_VARS, *wire.STATUS_KEYS)}
        self._settings.update(
            framesize=wire.framesize_index(self._size), quality=quality, awb=1, awb_gain=1, aec=1, agc=1, aec_value=168
        )
        self._default_settings = dict(self._settings)  # what a reboot goes back to
        self._default_size = self._size
        #: variables answered HTTP 500 (as the firmware answers one it does not know)
        self.failing_controls: set[str] = set()
        #: variables answered 200 that do not change (as framesize does when the sensor is not in JPEG mode)
        self.ignored_controls: set[str] = set()
        #: every ``/control`` request, in order: (var, val) as received
        self.control_requests: list[tuple[str, str]] = []
        self._boot = time.monotonic()
        self._seq = 0
        self._base: dict[tuple[int, int], np.ndarray] = {}
        self._source = self._checked_source(source)
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
        #: the same, each with the fault it was sent with ("" for an intact frame)
        self.sent_log: deque[tuple[bytes, str]] = deque(maxlen=300)
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
            self._settings["framesize"] = wire.framesize_index(self._size)

    def set_fps(self, fps: float) -> None:
        with self._lock:
            self._fps = float(fps)

    def set_source(self, source: FrameSource | None) -> None:
        """Serve ``source``'s pictures from the next frame on (None: the test pattern again). The
        pictures are sent as given, whatever ``size`` says; faults still apply to them."""
        checked = self._checked_source(source)
        with self._lock:
            self._source = checked

    @staticmethod
    def _checked_source(source: FrameSource | None) -> FrameSource | None:
        if source is None or callable(source):
            return source
        pictures = tuple(source)
        if not pictures or not all(isinstance(p, bytes) and p[:2] == b"\xff\xd8" for p in pictures):
            raise ValueError("a fake camera's pictures must be a non-empty list of JPEG bytes (or a callable)")
        return pictures

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

    def _record_sent(self, jpeg: bytes, fault: str) -> None:
        """Called with the lock held, before the frame goes out, so a test never looks too early."""
        self.sent_jpegs.append(jpeg)
        self.sent_log.append((jpeg, fault))

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
        """A new frame: (JPEG, fault applied or "") and its sequence number advanced. The frame is
        the given source's picture for that number when there is one, else the test pattern."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            width, height = self._size
            fault = self._faults.popleft() if self._faults else ""
            quality = self._jpeg_quality()
            source = self._source
        if source is not None:
            picture = source(seq) if callable(source) else source[(seq - 1) % len(source)]
            return damaged(picture, fault, seq), fault
        base = self._base.get((width, height))
        if base is None:
            base = test_pattern(width, height)
            self._base[(width, height)] = base
        img = base.copy()
        x = (seq * 7) % max(1, width)
        cv2.rectangle(img, (x, height // 3), (min(width - 1, x + width // 10), 2 * height // 3), (255, 255, 255), -1)
        scale = max(0.3, width / 640)
        cv2.putText(img, f"#{seq:06d}", (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 2)
        cv2.putText(img, f"{width}x{height}", (8, height - 8), cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6, (0, 0, 0), 1)
        jpeg = simplejpeg.encode_jpeg(img, quality=quality, colorspace="BGR", colorsubsampling="420")
        return damaged(jpeg, fault, seq), fault

    # -- sockets -------------------------------------------------------------------------------------

    def _bind_ports(self) -> None:
        if self._want_port:
            port = self._want_port
            stream_port = self._want_stream_port or port + 1
            http = wire.listen(self.host, port)
            try:
                stream = wire.listen(self.host, stream_port)
            except OSError:
                wire.close(http)
                raise
        else:
            for _ in range(100):
                http = wire.listen(self.host, 0)
                port = http.getsockname()[1]
                stream_port = self._want_stream_port or port + 1
                try:
                    stream = wire.listen(self.host, stream_port)
                    break
                except OSError:
                    wire.close(http)
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
                        listener = self._listeners[role] = wire.listen(self.host, port)
            if listener is None:
                self._stop.wait(wire.POLL)
                continue
            try:
                readable, _, _ = select.select([listener], [], [], wire.POLL)
                if not readable:
                    continue
                conn, _ = listener.accept()
            except (OSError, ValueError):  # closed by refuse() or stop()
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            handle(conn)

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
            if len(buf) > wire.MAX_REQUEST or self._stop.is_set() or time.monotonic() > deadline:
                return None
            try:
                readable, _, _ = select.select([conn], [], [], wire.POLL)
                if not readable:
                    continue
                data = conn.recv(4096)
            except (OSError, ValueError):
                return None
            if not data:
                return None
            buf += data

    def _wait(self, conn: socket.socket, seconds: float, stream: bool = False) -> None:
        """Sleep ``seconds`` while watching the client; raise wire.Gone if it leaves or we stop."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if self._stop.is_set():
                raise wire.Gone
            remaining = deadline - time.monotonic()
            try:
                readable, _, _ = select.select([conn], [], [], max(0.0, min(wire.POLL, remaining)))
                if readable:
                    data = conn.recv(4096, 0 if stream else socket.MSG_PEEK)
                    if not data:
                        raise wire.Gone
                    if not stream:  # a pipelined request: leave it, look again later
                        time.sleep(min(wire.POLL, max(0.0, remaining)))
            except (OSError, ValueError):
                raise wire.Gone from None
            if remaining <= 0:
                return

    def _send(self, conn: socket.socket, data: bytes) -> None:
        if self._stop.is_set():
            raise wire.Gone
        try:
            conn.settimeout(wire.SEND_TIMEOUT)
            conn.sendall(data)
        except (OSError, ValueError):
            raise wire.Gone from None

    def _send_response(
        self, conn: socket.socket, code: int, ctype: str, body: bytes, extra: dict[str, str] | None = None
    ) -> bool:
        """httpd_resp_send: status, Content-Type, Content-Length, custom headers, body."""
        head = wire.status_line(code) + f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        for name, value in (extra or {}).items():
            head += f"{name}: {value}\r\n"
        self._send(conn, head.encode() + b"\r\n" + body)
        return True


def test_pattern(width: int, height: int) -> np.ndarray:
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
