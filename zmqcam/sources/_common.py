"""Helpers shared by the HTTP sources: camera URLs, JPEG checks, camera timestamps."""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from zmqcam.bus.protocol import JPEG_MAX_PADDING, JPEG_PADDING
from zmqcam.config import infer_kind
from zmqcam.errors import CorruptFrame, SourceBusy, SourceError, SourceTimeout

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig

#: a part or snapshot body larger than this is not a camera frame (an ESP32 UXGA JPEG is < 1 MiB)
MAX_FRAME_BYTES = 8 * 1024 * 1024
#: response or part headers larger than this are not from a camera
MAX_HEADER_BYTES = 16 * 1024

# SOFn markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) are not SOFs
_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
# markers without a length field
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def jpeg_size(data: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(width, height) of a complete JPEG, read from its SOF header without decoding it.

    Checks the structure a truncated or scrambled frame breaks: SOI at the start, well-formed
    marker segments up to the start of scan, a frame header, and EOI at the end (padding after
    it is tolerated). Raises CorruptFrame otherwise. This is cheap (the header is a few hundred
    bytes), so every frame can be checked before it is published untouched."""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8:
        raise CorruptFrame(f"not a JPEG: does not start with SOI ({bytes(data[:4]).hex()}), {n} bytes")
    end = n
    while end > 2 and data[end - 1] in JPEG_PADDING:
        end -= 1
    if n - end > JPEG_MAX_PADDING or data[end - 2] != 0xFF or data[end - 1] != 0xD9:
        raise CorruptFrame(f"truncated JPEG: no EOI at the end of {n} bytes")
    pos = 2
    size: tuple[int, int] | None = None
    for _ in range(1000):
        # a marker is 0xFF then a code; 0xFF fill bytes may precede it
        if pos + 1 >= end or data[pos] != 0xFF:
            raise CorruptFrame(f"corrupt JPEG: no marker at byte {pos}")
        while pos + 1 < end and data[pos + 1] == 0xFF:
            pos += 1
        marker = data[pos + 1]
        pos += 2
        if marker in _STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0x00):
            raise CorruptFrame(f"corrupt JPEG: unexpected marker {marker:02X} at byte {pos - 2}")
        if pos + 2 > end:
            raise CorruptFrame("corrupt JPEG: header cut short")
        length = (data[pos] << 8) | data[pos + 1]
        if length < 2 or pos + length > end:
            raise CorruptFrame(f"corrupt JPEG: bad segment length {length} at byte {pos}")
        if marker in _SOF_MARKERS:
            if length < 8:
                raise CorruptFrame("corrupt JPEG: short frame header")
            height = (data[pos + 3] << 8) | data[pos + 4]
            width = (data[pos + 5] << 8) | data[pos + 6]
            if width == 0 or height == 0:
                raise CorruptFrame(f"corrupt JPEG: frame size {width}x{height}")
            size = (width, height)
        if marker == 0xDA:  # start of scan: entropy-coded data follows up to EOI
            if size is None:
                raise CorruptFrame("corrupt JPEG: scan before frame header")
            return size
        pos += length
    raise CorruptFrame("corrupt JPEG: too many segments")


def is_jpeg(data: bytes | bytearray | memoryview) -> bool:
    try:
        jpeg_size(data)
    except CorruptFrame:
        return False
    return True


@dataclass(frozen=True)
class HttpUrl:
    """A parsed http:// camera URL. ``auth`` is a ready ``Authorization`` value or None."""

    host: str
    port: int
    path: str  # with the query string
    auth: str | None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    def describe(self) -> str:
        """The URL without credentials, for logs."""
        return f"http://{self.host_header}{self.path}"


def parse_http_url(url: str, default_path: str) -> HttpUrl:
    """Split a camera URL; ``default_path`` is used when the URL has no path (or just ``/``)."""
    parts = urlsplit(url.strip())
    if parts.scheme.lower() != "http":
        if parts.scheme.lower() == "https":
            raise SourceError(f"https is not supported for cameras: {safe_url(url)}")
        raise SourceError(f"not an http:// URL: {safe_url(url)}")
    if not parts.hostname:
        raise SourceError(f"no host in URL: {safe_url(url)}")
    try:
        port = parts.port or 80
    except ValueError:
        raise SourceError(f"bad port in URL: {safe_url(url)}") from None
    path = parts.path or "/"
    if path == "/" and default_path:
        path = default_path
    if parts.query:
        path += "?" + parts.query
    auth = None
    if parts.username is not None:
        token = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        auth = "Basic " + base64.b64encode(token).decode("ascii")
    return HttpUrl(parts.hostname, port, path, auth)


def use_kind(camera: CameraConfig, kind: str) -> str:
    """The fix for a camera whose URL serves another protocol than its kind: ``use kind = "mjpeg"``,
    and ``or remove kind`` where the URL alone would have chosen the right one (a kind left over
    from an earlier URL)."""
    fix = f'use kind = "{kind}"'
    if camera.kind is not None and infer_kind(camera.source) == kind:
        fix += " or remove kind"
    return fix


def safe_url(url: str) -> str:
    """A URL with any credentials removed, for messages and logs."""
    return re.sub(r"//[^@/]*@", "//***@", url)


def parse_x_timestamp(value: str | None) -> int | None:
    """The ESP32 firmware's ``X-Timestamp: <sec>.<usec>`` (camera uptime) in ns, or None."""
    if not value:
        return None
    m = re.fullmatch(r"\s*(\d{1,12})(?:\.(\d{1,9}))?\s*", value)
    if m is None:
        return None
    frac = (m.group(2) or "").ljust(9, "0")
    return int(m.group(1)) * 1_000_000_000 + int(frac)


class CameraClock:
    """Maps the camera's uptime timestamps onto the epoch clock, for ``capture_ns``.

    The ESP32 stamps each frame with ``X-Timestamp`` from its own uptime clock, not the epoch,
    so it can only tell *relative* timing. We estimate the offset between the two clocks as the
    smallest (arrival - camera time) seen on this connection: arrival = capture + offset +
    network delay, with delay >= 0, so the minimum tracks the offset plus the least delay.
    ``capture_ns = camera time + offset`` then keeps the camera's own frame spacing (no network
    jitter) and is never later than the arrival time. The estimate may rise by 100 ppm of
    elapsed time (a camera crystal slower than ours), and it restarts when the camera clock jumps
    (a reboot) or is missing, in which case the arrival time is used."""

    DRIFT = 1e-4
    MAX_JUMP_NS = 10_000_000_000

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._offset: int | None = None
        self._last_cam = 0
        self._last_arrival = 0

    def capture_ns(self, camera_ns: int | None, arrival_ns: int) -> int:
        if camera_ns is None:
            return arrival_ns
        sample = arrival_ns - camera_ns
        if (
            self._offset is None
            or camera_ns < self._last_cam
            or camera_ns - self._last_cam > self.MAX_JUMP_NS
            or arrival_ns - self._last_arrival > self.MAX_JUMP_NS
        ):
            self._offset = sample
        else:
            allowed = self._offset + int((arrival_ns - self._last_arrival) * self.DRIFT)
            self._offset = min(sample, allowed)
        self._last_cam = camera_ns
        self._last_arrival = arrival_ns
        return min(camera_ns + self._offset, arrival_ns)


class ChunkedDecoder:
    """Incremental decoder of HTTP/1.1 ``Transfer-Encoding: chunked`` (as esp_http_server's
    ``httpd_resp_send_chunk`` sends it: ``<hex size>\r\n<data>\r\n`` per chunk, ``0\r\n\r\n``
    at the end, which a stream never reaches). ``feed`` returns the payload bytes decoded so far;
    a broken framing raises SourceError (the byte stream can no longer be trusted)."""

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)
    MAX_LINE = 1024

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = self._SIZE
        self._remaining = 0

    @property
    def done(self) -> bool:
        """True once the last (zero-size) chunk and the trailer have been read."""
        return self._state == self._DONE

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        buf = self._buf
        buf += data
        out = bytearray()
        pos = 0
        while pos < len(buf):
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, len(buf) - pos)
                out += buf[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = self._DATA_END
            elif state == self._DATA_END:
                if buf[pos] == 0x0A:  # a bare LF is tolerated
                    pos += 1
                    self._state = self._SIZE
                elif buf[pos] == 0x0D:
                    if pos + 1 >= len(buf):
                        break
                    if buf[pos + 1] != 0x0A:
                        raise SourceError("chunked encoding: no CRLF after chunk data")
                    pos += 2
                    self._state = self._SIZE
                else:
                    raise SourceError("chunked encoding: no CRLF after chunk data")
            elif state in (self._SIZE, self._TRAILER):
                eol = buf.find(b"\n", pos)
                if eol < 0:
                    if len(buf) - pos > self.MAX_LINE:
                        raise SourceError("chunked encoding: chunk size line too long")
                    break
                line = bytes(buf[pos:eol]).strip()
                pos = eol + 1
                if state == self._TRAILER:
                    if not line:
                        self._state = self._DONE
                    continue
                size_text = line.split(b";", 1)[0].strip()
                if not size_text:
                    continue  # tolerate a stray empty line between chunks
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise SourceError(f"chunked encoding: bad chunk size {size_text[:20]!r}") from None
                if size < 0 or size > 1 << 31:
                    raise SourceError(f"chunked encoding: bad chunk size {size}")
                if size == 0:
                    self._state = self._TRAILER
                else:
                    self._remaining = size
                    self._state = self._DATA
            else:  # done: ignore anything after the last chunk
                pos = len(buf)
        del buf[:pos]
        return bytes(out)


@dataclass
class HttpResponse:
    status: int
    reason: str
    #: header names in lower case; a repeated header keeps its last value
    headers: dict[str, str] = field(default_factory=dict)
    #: when the response headers arrived (time.time_ns())
    arrival_ns: int = 0

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").strip()

    @property
    def chunked(self) -> bool:
        return "chunked" in self.headers.get("transfer-encoding", "").lower()

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        if value is None or not value.strip().isdigit():
            return None
        return int(value.strip())

    @property
    def keep_alive(self) -> bool:
        return "close" not in self.headers.get("connection", "").lower()


class HttpConnection:
    """One HTTP/1.1 connection to a camera over a plain socket, with explicit deadlines.

    ``close`` may be called from any thread: it shuts the socket down, which wakes a thread
    blocked in ``recv``, and that thread then raises SourceError."""

    def __init__(self, url: HttpUrl) -> None:
        self.url = url
        self.sock: socket.socket | None = None
        self.buf = bytearray()  # bytes received but not consumed yet
        self.closed = False
        self.requests = 0  # requests sent on the current socket
        self._lock = threading.Lock()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def connect(self, timeout: float) -> None:
        desc = self.url.describe()
        try:
            sock = socket.create_connection((self.url.host, self.url.port), timeout=timeout)
        except TimeoutError:
            raise SourceTimeout(f"{desc}: connect timed out after {timeout:g} s") from None
        except ConnectionRefusedError:
            raise SourceError(f"{desc}: connection refused") from None
        except OSError as exc:
            raise SourceError(f"{desc}: cannot connect: {exc.strerror or exc}") from None
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            if self.closed:
                sock.close()
                raise SourceError(f"{desc}: closed")
            old, self.sock = self.sock, sock
        shutdown_and_close(old)
        self.buf.clear()
        self.requests = 0

    def drop(self) -> None:
        """Close the current socket (the connection object stays usable: connect again)."""
        with self._lock:
            sock, self.sock = self.sock, None
        self.buf.clear()
        shutdown_and_close(sock)

    def close(self) -> None:
        """Close for good; idempotent, thread-safe."""
        with self._lock:
            self.closed = True
            sock, self.sock = self.sock, None
        shutdown_and_close(sock)

    def send_request(
        self, extra_headers: dict[str, str] | None = None, timeout: float = 5.0, path: str | None = None
    ) -> None:
        """GET the URL's path (or ``path``, another resource of the same server)."""
        sock = self._sock()
        target = self.url.path if path is None else path
        lines = [f"GET {target} HTTP/1.1", f"Host: {self.url.host_header}", "User-Agent: zmqcam"]
        if self.url.auth:
            lines.append(f"Authorization: {self.url.auth}")
        for name, value in (extra_headers or {}).items():
            lines.append(f"{name}: {value}")
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            sock.settimeout(timeout)
            sock.sendall(request)
        except TimeoutError:
            raise SourceTimeout(f"{self.url.describe()}: sending the request timed out") from None
        except OSError as exc:
            raise self._error("sending the request failed", exc) from None
        self.requests += 1

    def recv(self, timeout: float) -> bytes:
        """The next bytes (buffered first); b"" when the peer closed. Raises SourceTimeout."""
        if self.buf:
            data = bytes(self.buf)
            self.buf.clear()
            return data
        sock = self._sock()
        if timeout <= 0:
            raise SourceTimeout(f"{self.url.describe()}: timed out")
        try:
            sock.settimeout(timeout)
            data = sock.recv(65536)
        except TimeoutError:
            raise SourceTimeout(f"{self.url.describe()}: nothing received for {timeout:.3g} s") from None
        except OSError as exc:
            raise self._error("receive failed", exc) from None
        if not data and self.closed:
            raise SourceError(f"{self.url.describe()}: closed")
        return data

    def read_head(self, timeout: float, busy_if_silent: bool) -> HttpResponse:
        """Read the status line and headers within ``timeout`` seconds.

        ``busy_if_silent``: on a fresh connection, silence means the camera accepted the TCP
        connection but serves someone else (an ESP32 stream server serves one client and leaves
        the next one waiting without a word): raise SourceBusy rather than SourceTimeout."""
        deadline = time.monotonic() + timeout
        head = bytearray()
        desc = self.url.describe()
        while True:
            end = head.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end = head.find(b"\n\n")
                sep = 2
            if end >= 0:
                self.buf[:0] = head[end + sep :]
                return self._parse_head(bytes(head[:end]))
            if len(head) > MAX_HEADER_BYTES:
                raise SourceError(f"{desc}: response headers larger than {MAX_HEADER_BYTES} bytes")
            remaining = deadline - time.monotonic()
            try:
                data = self.recv(remaining)
            except SourceTimeout:
                if not head and busy_if_silent:
                    # from here a busy ESP32 and a hung one look the same: name both, so that
                    # nobody hunts for another viewer that does not exist
                    raise SourceBusy(
                        f"{desc}: connected, but no response within {timeout:g} s "
                        "(the camera is serving another client, or is hung)"
                    ) from None
                if not head:
                    raise SourceTimeout(f"{desc}: no response within {timeout:g} s") from None
                raise SourceTimeout(f"{desc}: incomplete response headers after {timeout:g} s") from None
            if not data:
                raise SourceError(f"{desc}: the camera closed the connection without a response")
            head += data

    def _parse_head(self, head: bytes) -> HttpResponse:
        lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
        m = re.match(r"HTTP/\d(?:\.\d)?\s+(\d{3})\s*(.*)$", lines[0].strip())
        if m is None:
            raise SourceError(f"{self.url.describe()}: not an HTTP response: {lines[0][:60]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        return HttpResponse(int(m.group(1)), m.group(2).strip(), headers, time.time_ns())

    def _sock(self) -> socket.socket:
        sock = self.sock
        if sock is None:
            raise SourceError(f"{self.url.describe()}: {'closed' if self.closed else 'not connected'}")
        return sock

    def _error(self, what: str, exc: OSError) -> SourceError:
        if self.closed:
            return SourceError(f"{self.url.describe()}: closed")
        return SourceError(f"{self.url.describe()}: {what}: {exc.strerror or exc}")


def shutdown_and_close(sock: socket.socket | None) -> None:
    """Really release a socket, waking a thread blocked in recv on it (close alone does not)."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def now_ns() -> int:
    return time.time_ns()
