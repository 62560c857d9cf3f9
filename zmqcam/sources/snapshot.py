"""Snapshots over HTTP: ``GET http://<ip>/capture`` (the original firmware's ``/jpg``) per frame.

One keep-alive connection, requests back to back (the grabber applies the fps cap). Every body is
checked to be a complete JPEG before it is published (CorruptFrame otherwise) and is then
forwarded untouched.

Errors:

* connect timeout -> SourceTimeout; refused or unreachable -> SourceError;
* on a fresh connection, no response headers within ``connect_timeout`` -> SourceBusy (the
  camera accepted us but serves someone else); on a used one, nothing within the read timeout ->
  SourceTimeout;
* 4xx (wrong URL, credentials) -> SourceError; 5xx (the firmware's "Camera capture failed") ->
  CorruptFrame, since the next request usually works; at ``open`` any non-200 is a SourceError;
* a body that is not image/jpeg -> SourceError (a wrong URL); not a complete JPEG, or larger than
  8 MiB -> CorruptFrame.

A keep-alive connection the camera has closed in the meantime (esp_http_server closes idle
sockets) is reopened once, transparently, if the request got no response at all.

``open`` connects and takes the first picture, so a wrong URL or a busy camera is reported by
``open``; the first ``read`` returns that picture. ``capture_ns`` is when the response headers
arrived: the firmware takes the picture just before it answers (``X-Timestamp`` is camera uptime,
of no use for a single picture).

An ESP32's ``camera[].controls`` are applied at the start of ``open``, before the first picture is
asked for (``zmqcam.sources.esp32``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from zmqcam.errors import CorruptFrame, SourceError, SourceTimeout
from zmqcam.sources._common import (
    MAX_FRAME_BYTES,
    ChunkedDecoder,
    HttpConnection,
    HttpResponse,
    jpeg_size,
    parse_http_url,
    safe_url,
    use_kind,
)
from zmqcam.sources.base import Source, SourceFrame
from zmqcam.sources.esp32 import Esp32Settings

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig

__all__ = ["SnapshotSource"]

_JPEG_TYPES = ("image/jpeg", "image/jpg", "image/pjpeg")


class _Dropped(SourceError):
    """A reused keep-alive connection was closed before any response: retry on a new one."""


@contextlib.contextmanager
def _dropped_if_reused(conn: HttpConnection, fresh: bool, desc: str) -> Iterator[None]:
    """A failure on a kept-alive connection (not a timeout) most likely means the camera closed it
    between two snapshots: raise _Dropped, which retries once on a fresh connection."""
    try:
        yield
    except SourceTimeout:
        raise
    except SourceError:
        if fresh or conn.closed:
            raise
        raise _Dropped(desc) from None


class SnapshotSource(Esp32Settings, Source):
    kind = "snapshot"
    polled = True

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self._conn: HttpConnection | None = None
        self._lock = threading.Lock()
        self._pending: SourceFrame | None = None
        #: requests made and connections opened (for tests and status)
        self.requests = 0
        self.connections = 0

    def describe(self) -> str:
        return f"snapshot {safe_url(self.camera.source)}"

    def open(self, timeout: float) -> None:
        self._apply_controls()  # before the first picture, so that every picture is taken with them
        url = parse_http_url(self.camera.source, default_path="/capture")
        conn = HttpConnection(url)
        with self._lock:
            old, self._conn = self._conn, conn
        if old is not None:
            old.close()
        self._pending = None
        try:
            self._pending = self._fetch(conn, timeout, opening=True)
        except BaseException:
            conn.close()
            raise

    def read(self, timeout: float) -> SourceFrame:
        conn = self._conn
        if conn is None or conn.closed:
            raise SourceError(f"{self.describe()}: {'closed' if conn is not None else 'not open'}")
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        return self._fetch(conn, timeout, opening=False)

    def close(self) -> None:
        self._abort_controls()
        with self._lock:
            conn = self._conn
        if conn is not None:
            conn.close()
        self._pending = None

    # ---------------------------------------------------------------------------------------

    def _fetch(self, conn: HttpConnection, timeout: float, opening: bool) -> SourceFrame:
        deadline = time.monotonic() + timeout
        for attempt in range(2):
            fresh = not conn.connected
            if fresh:
                conn.connect(min(self.camera.connect_timeout, timeout))
                self.connections += 1
            try:
                return self._request(conn, deadline, fresh, opening)
            except _Dropped:
                conn.drop()
                if fresh or attempt:
                    raise SourceError(f"{conn.url.describe()}: the camera closed the connection") from None
            except CorruptFrame:
                raise
            except SourceError:
                conn.drop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _request(self, conn: HttpConnection, deadline: float, fresh: bool, opening: bool) -> SourceFrame:
        desc = conn.url.describe()
        remaining = max(0.001, deadline - time.monotonic())
        with _dropped_if_reused(conn, fresh, desc):
            conn.send_request({"Accept": "image/jpeg", "Connection": "keep-alive"}, remaining)
        self.requests += 1
        # a fresh connection gets connect_timeout to answer; silence then means "busy"
        head_timeout = self.camera.connect_timeout if fresh else deadline - time.monotonic()
        with _dropped_if_reused(conn, fresh, desc):
            resp = conn.read_head(max(0.001, head_timeout), busy_if_silent=fresh)
        return self._body(conn, resp, deadline, opening)

    def _body(self, conn: HttpConnection, resp: HttpResponse, deadline: float, opening: bool) -> SourceFrame:
        desc = conn.url.describe()
        length = resp.content_length
        decoder = ChunkedDecoder() if resp.chunked else None
        if length is not None and length > MAX_FRAME_BYTES:
            conn.drop()
            raise CorruptFrame(f"{desc}: a {length}-byte picture (more than {MAX_FRAME_BYTES})")
        ctype = resp.content_type.split(";")[0].strip().lower()
        if ctype.startswith("multipart/"):
            conn.drop()  # a stream never ends; do not wait for it
            fix = use_kind(self.camera, "mjpeg")
            raise SourceError(f"{desc}: this URL serves an MJPEG stream, not single pictures: {fix}")
        body = bytearray()
        raw_total = 0
        while True:
            if length is not None and decoder is None and len(body) >= length:
                break
            if decoder is not None and decoder.done:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SourceTimeout(f"{desc}: the picture took longer than the read timeout")
            data = conn.recv(remaining)
            if not data:
                if length is None and decoder is None:
                    conn.drop()  # HTTP/1.0 style: the body ends at close
                    break
                raise SourceError(f"{desc}: connection lost in the middle of a picture")
            raw_total += len(data)
            if decoder is not None:
                body += decoder.feed(data)
            else:
                body += data
            if raw_total > MAX_FRAME_BYTES + 65536:
                conn.drop()
                raise CorruptFrame(f"{desc}: a picture larger than {MAX_FRAME_BYTES} bytes")
        if length is not None and decoder is None and len(body) > length:
            # more than announced: the connection is out of step; start over on a new one
            del body[length:]
            conn.drop()
        if not resp.keep_alive:
            conn.drop()
        if resp.status != 200:
            what = f"{desc}: HTTP {resp.status} {resp.reason}"
            if opening or resp.status < 500:
                hint = " (put user:password@ in the URL)" if resp.status == 401 else ""
                raise SourceError(what + hint)
            raise CorruptFrame(what)
        if ctype and ctype not in _JPEG_TYPES:
            raise SourceError(f"{desc}: expected a JPEG, got Content-Type {ctype!r}")
        data = bytes(body)
        try:
            width, height = jpeg_size(data)
        except CorruptFrame as exc:
            raise CorruptFrame(f"{desc}: {exc}") from None
        frame = SourceFrame.jpeg(data, resp.arrival_ns)
        frame.width, frame.height = width, height
        return frame
