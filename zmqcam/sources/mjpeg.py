"""MJPEG over HTTP (``multipart/x-mixed-replace``): the ESP32-CAM ``http://<ip>:81/stream``.

The CameraWebServer firmware (esp32-camera ``app_httpd.cpp``) answers::

    HTTP/1.1 200 OK
    Content-Type: multipart/x-mixed-replace;boundary=123456789000000000000987654321
    Transfer-Encoding: chunked
    Access-Control-Allow-Origin: *
    X-Framerate: 60

and then, for every frame, three chunks: ``\\r\\n--<boundary>\\r\\n``, the part headers
``Content-Type: image/jpeg\\r\\nContent-Length: <n>\\r\\nX-Timestamp: <sec>.<usec>\\r\\n\\r\\n``
and the JPEG. The boundary comes *before* each part and there is never a closing one, so a frame
is complete when its ``Content-Length`` bytes are in; we publish it then, not one frame later
when the next boundary arrives. Other cameras quote the boundary, write it with or without the
leading ``--``, or leave out ``Content-Length`` (the part then ends at the next boundary); the
parser handles all of them.

Timing: ``X-Timestamp`` is the camera's uptime clock, not the epoch. We use it only for relative
timing: ``capture_ns`` is the camera time mapped onto our clock by ``CameraClock`` (offset
estimated from the earliest arrivals), which keeps the camera's real frame spacing free of network
jitter and is never later than the arrival time. Without ``X-Timestamp``, ``capture_ns`` is the
arrival time of the frame's last byte.

An ESP32's ``camera[].controls`` are applied at the start of ``open``, before the first frame is
asked for (``zmqcam.sources.esp32``).
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from zmqcam.errors import CorruptFrame, SourceError, SourceTimeout
from zmqcam.sources._common import (
    MAX_FRAME_BYTES,
    MAX_HEADER_BYTES,
    CameraClock,
    ChunkedDecoder,
    HttpConnection,
    jpeg_size,
    parse_http_url,
    parse_x_timestamp,
    safe_url,
    use_kind,
)
from zmqcam.sources.base import Source, SourceFrame
from zmqcam.sources.esp32 import Esp32Settings

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig

__all__ = ["ESP32_BOUNDARY", "MjpegSource", "MultipartParser", "boundary_from_content_type"]

#: PART_BOUNDARY of the CameraWebServer firmware
ESP32_BOUNDARY = "123456789000000000000987654321"

_BOUNDARY_RE = re.compile(r"""boundary\s*=\s*(?:"([^"]*)"|'([^']*)'|([^;,\s]+))""", re.IGNORECASE)
_AUTO_BOUNDARY_RE = re.compile(rb"(?:\A|\n)--([\x21-\x7e]{1,200}?)-*[ \t]*\r?\n")


def boundary_from_content_type(content_type: str) -> str | None:
    """The boundary parameter of a multipart Content-Type (quoted or not), or None."""
    m = _BOUNDARY_RE.search(content_type)
    if m is None:
        return None
    value = next(g for g in m.groups() if g is not None).strip()
    return value or None


class MultipartParser:
    """A pure, incremental parser of a ``multipart/x-mixed-replace`` JPEG stream.

    ``feed(data)`` takes any slice of the (de-chunked) body and returns the parts completed by
    it, as ``(headers, jpeg)`` with header names in lower case and the JPEG bytes exactly as
    sent. Memory is bounded: a part larger than ``max_part`` bytes, headers larger than
    ``max_headers``, or ``max_part`` bytes of garbage without a boundary are dropped, and the
    parser resynchronises on the next boundary. Parts that are not a complete JPEG (truncated,
    scrambled) are dropped too. Each dropped part is recorded: ``pop_errors()`` returns (and
    clears) their descriptions, in order, and ``corrupt`` counts them.

    A wrong ``Content-Length`` does not lose sync: if the boundary shows up inside the declared
    length, or the declared length does not end in a complete JPEG, the part is taken to end at
    the next boundary instead (counted in ``length_mismatches``).

    ``boundary`` may be quoted and may or may not include the leading ``--``; the stream may
    write it with or without ``--``. With ``boundary=None`` the first ``--token`` line of the
    stream is taken as the boundary.
    """

    _SEEK, _HEADERS, _BODY = range(3)

    def __init__(
        self,
        boundary: str | bytes | None = None,
        max_part: int = MAX_FRAME_BYTES,
        max_headers: int = MAX_HEADER_BYTES,
    ) -> None:
        self.max_part = max_part
        self.max_headers = max_headers
        self._token: bytes | None = None
        if boundary is not None:
            token = boundary.encode("latin-1") if isinstance(boundary, str) else bytes(boundary)
            token = token.strip().strip(b"\"'").lstrip(b"-") or token
            self._token = token or None
        self._buf = bytearray()
        self._state = self._SEEK
        self._scan = 0  # where the next boundary search starts, relative to _buf
        self._length: int | None = None
        self._mismatch = False
        self._headers: dict[str, str] = {}
        self._garbage = 0  # bytes skipped while seeking, since the last boundary
        self._errors: list[str] = []
        #: parts delivered
        self.parts = 0
        #: parts dropped (see pop_errors)
        self.corrupt = 0
        #: parts whose Content-Length was wrong but which were recovered from the boundary
        self.length_mismatches = 0
        #: bytes that were neither boundary, headers nor part
        self.garbage_bytes = 0

    @property
    def boundary(self) -> bytes | None:
        """The boundary token in use (without leading dashes), once known."""
        return self._token

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a part (bounded by about ``max_part``)."""
        return len(self._buf)

    def pop_errors(self) -> list[str]:
        errors, self._errors = self._errors, []
        return errors

    def feed(self, data: bytes | bytearray | memoryview) -> list[tuple[dict[str, str], bytes]]:
        self._buf += data
        out: list[tuple[dict[str, str], bytes]] = []
        while True:
            if self._state == self._SEEK:
                progressed = self._seek()
            elif self._state == self._HEADERS:
                progressed = self._read_headers()
            else:
                progressed = self._read_body(out)
            if not progressed:
                return out

    # -- states ---------------------------------------------------------------------------

    def _error(self, message: str) -> None:
        self.corrupt += 1
        self._errors.append(message)

    def _skip(self, n: int) -> None:
        """Drop n bytes of the buffer as garbage (outside any part)."""
        if n <= 0:
            return
        junk = bytes(self._buf[:n]).strip(b"\r\n-")
        if junk:
            self._garbage += len(junk)
            self.garbage_bytes += len(junk)
            if self._garbage > self.max_part:
                self._error(f"no boundary in {self._garbage} bytes")
                self._garbage = 0
        del self._buf[:n]
        self._scan = max(0, self._scan - n)

    def _seek(self) -> bool:
        buf = self._buf
        if self._token is None:
            m = _AUTO_BOUNDARY_RE.search(buf)
            if m is None:
                keep = 256
                if len(buf) > keep:
                    self._skip(len(buf) - keep)
                return False
            self._token = m.group(1).rstrip(b"-") or m.group(1)
        token = self._token
        i = buf.find(token, self._scan)
        if i < 0:
            # keep a tail that may hold the start of a boundary split across feeds
            self._skip(len(buf) - len(token))
            self._scan = 0
            return False
        eol = buf.find(b"\n", i + len(token))
        if eol < 0:
            if len(buf) - i - len(token) > 64:  # not a boundary line: skip past the token
                self._skip(i + len(token))
                return True
            self._skip(i)
            self._scan = 0
            return False
        rest = bytes(buf[i + len(token) : eol]).strip()
        if rest not in (b"", b"--"):  # the token inside something else
            self._skip(i + len(token))
            return True
        self._skip(i)  # garbage, CRLF and dashes before the boundary
        del buf[: eol - i + 1]
        self._scan = 0
        self._garbage = 0
        # a closing boundary ("--token--") ends a multipart body; keep seeking (some servers
        # start another one on the same connection)
        self._state = self._SEEK if rest == b"--" else self._HEADERS
        return True

    def _read_headers(self) -> bool:
        buf = self._buf
        if buf[:2] == b"\xff\xd8":  # no part headers at all: the JPEG follows the boundary
            block, start = b"", 0
        elif buf[:2] == b"\r\n":
            block, start = b"", 2
        elif buf[:1] == b"\n":
            block, start = b"", 1
        else:
            end = buf.find(b"\r\n\r\n", 0, self.max_headers + 4)
            sep = 4
            lf_end = buf.find(b"\n\n", 0, self.max_headers + 2)
            if lf_end >= 0 and (end < 0 or lf_end < end):
                end, sep = lf_end, 2
            if end < 0:
                if len(buf) > self.max_headers:
                    self._error(f"part headers larger than {self.max_headers} bytes")
                    self._state = self._SEEK
                    return True
                return False
            block, start = bytes(buf[:end]), end + sep
        headers: dict[str, str] = {}
        for line in block.decode("latin-1").replace("\r\n", "\n").split("\n"):
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        del buf[:start]
        self._headers = headers
        length_text = headers.get("content-length", "").strip()
        self._length = int(length_text) if length_text.isdigit() else None
        if self._length is not None and self._length > self.max_part:
            self._length = None  # not believable; find the end from the boundary
            self._mismatch = True
        else:
            self._mismatch = False
        self._scan = 0
        self._state = self._BODY
        return True

    def _read_body(self, out: list[tuple[dict[str, str], bytes]]) -> bool:
        buf = self._buf
        token = self._token
        assert token is not None
        length = self._length
        # look for the next boundary: in the declared length too, where it means the length is wrong
        limit = len(buf) if length is None else min(len(buf), length + len(token) + 4)
        i = buf.find(token, self._scan, limit)
        if length is not None:
            if i < 0 or i >= length:
                if len(buf) < length:
                    self._scan = max(0, len(buf) - len(token))
                    return False
                body = bytes(buf[:length])
                try:
                    jpeg_size(body)
                except CorruptFrame:
                    # too short, or not what was announced: the part ends at the next boundary
                    self._length = None
                    self._mismatch = True
                    self._scan = max(0, length - len(token))
                    return True
                self._deliver(out, body, length)
                return True
            self._length = None  # a boundary inside the declared length: it was too long
            self._mismatch = True
        if i < 0:
            if len(buf) > self.max_part:
                self._error(f"part larger than {self.max_part} bytes without a boundary")
                keep = len(token)
                del buf[: len(buf) - keep]
                self._scan = 0
                self._state = self._SEEK
                return True
            self._scan = max(0, len(buf) - len(token))
            return False
        end = i
        while end > 0 and buf[end - 1] == 0x2D:  # the dashes of "--boundary"
            end -= 1
        if end >= 2 and buf[end - 2 : end] == b"\r\n":
            end -= 2
        elif end > 0 and buf[end - 1] == 0x0A:
            end -= 1
        body = bytes(buf[:end])
        try:
            jpeg_size(body)
        except CorruptFrame as exc:
            del buf[:end]
            self._scan = 0
            self._state = self._SEEK
            self._error(str(exc))
            return True
        if self._mismatch:
            self.length_mismatches += 1
        self._deliver(out, body, end)
        return True

    def _deliver(self, out: list[tuple[dict[str, str], bytes]], body: bytes, consumed: int) -> None:
        del self._buf[:consumed]
        self._scan = 0
        self._state = self._SEEK
        self.parts += 1
        out.append((self._headers, body))


class MjpegSource(Esp32Settings, Source):
    """An MJPEG-over-HTTP camera. Forwards each JPEG untouched; one TCP connection."""

    kind = "mjpeg"

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self._conn: HttpConnection | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._decoder: ChunkedDecoder | None = None
        self._parser: MultipartParser | None = None
        self._frames: deque[SourceFrame] = deque()
        self._errors: deque[str] = deque()
        self._ended = False
        self._clock = CameraClock()
        #: the response headers of the stream (lower-case names), once open
        self.response_headers: dict[str, str] = {}

    @property
    def parser(self) -> MultipartParser | None:
        return self._parser

    def describe(self) -> str:
        return f"mjpeg {safe_url(self.camera.source)}"

    def open(self, timeout: float) -> None:
        self._apply_controls()  # before the stream starts, so that every frame is taken with them
        url = parse_http_url(self.camera.source, default_path="/")
        conn = HttpConnection(url)
        with self._lock:
            old, self._conn = self._conn, conn
            self._closed = False
        if old is not None:
            old.close()
        self._frames.clear()
        self._errors.clear()
        self._ended = False
        self._clock.reset()
        deadline = time.monotonic() + timeout
        try:
            conn.connect(timeout)
            conn.send_request(
                {"Accept": "multipart/x-mixed-replace, image/jpeg"}, max(0.01, deadline - time.monotonic())
            )
            resp = conn.read_head(max(0.01, deadline - time.monotonic()), busy_if_silent=True)
            desc = url.describe()
            if resp.status == 401:
                raise SourceError(f"{desc}: 401 {resp.reason} (put user:password@ in the URL)")
            if resp.status != 200:
                raise SourceError(f"{desc}: HTTP {resp.status} {resp.reason}")
            ctype = resp.content_type
            if not ctype.lower().startswith("multipart/"):
                if ctype.lower().startswith("image/"):
                    fix = use_kind(self.camera, "snapshot")
                    raise SourceError(f"{desc}: this URL serves single pictures, not an MJPEG stream: {fix}")
                raise SourceError(f"{desc}: not an MJPEG stream: Content-Type {ctype or '(none)'!r}")
            self.response_headers = resp.headers
            self._decoder = ChunkedDecoder() if resp.chunked else None
            self._parser = MultipartParser(boundary_from_content_type(ctype))
        except BaseException:
            conn.close()
            raise
        if conn.buf:
            leftover = bytes(conn.buf)
            conn.buf.clear()
            self._ingest(leftover, time.time_ns())

    def read(self, timeout: float) -> SourceFrame:
        deadline = time.monotonic() + timeout
        while True:
            if self._errors:
                raise CorruptFrame(self._errors.popleft())
            if self._frames:
                return self._frames.popleft()
            conn = self._conn
            if conn is None or self._closed:
                raise SourceError(f"{self.describe()}: {'closed' if self._closed else 'not open'}")
            if self._ended:
                raise SourceError(f"{conn.url.describe()}: the camera ended the stream")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceTimeout(f"{conn.url.describe()}: no frame within {timeout:g} s")
            try:
                data = conn.recv(remaining)
            except SourceTimeout:
                raise SourceTimeout(f"{conn.url.describe()}: no frame within {timeout:g} s") from None
            if not data:
                raise SourceError(f"{conn.url.describe()}: the camera closed the stream")
            self._ingest(data, time.time_ns())

    def _ingest(self, data: bytes, arrival_ns: int) -> None:
        parser = self._parser
        assert parser is not None
        if self._decoder is not None:
            data = self._decoder.feed(data)
            if self._decoder.done:
                self._ended = True
        for headers, jpeg in parser.feed(data):
            camera_ns = parse_x_timestamp(headers.get("x-timestamp"))
            frame = SourceFrame.jpeg(jpeg, self._clock.capture_ns(camera_ns, arrival_ns))
            frame.width, frame.height = jpeg_size(jpeg)
            self._frames.append(frame)
        self._errors.extend(parser.pop_errors())

    def close(self) -> None:
        self._abort_controls()
        with self._lock:
            self._closed = True
            conn = self._conn
        if conn is not None:
            conn.close()
