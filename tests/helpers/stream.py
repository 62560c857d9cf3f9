"""An HTTP viewer of one MJPEG stream of the bridge: the parts (headers and JPEG) as a browser
receives them, for tests that look at what viewers are shown."""

from __future__ import annotations

import time

import requests
from requests.structures import CaseInsensitiveDict

__all__ = ["VIEWER_READ_TIMEOUT", "PartReader", "ReconnectingViewer", "StreamEnded", "Viewer", "connect_viewer"]

#: how long a viewer waits for the next bytes before its read fails
VIEWER_READ_TIMEOUT = 10.0


class StreamEnded(EOFError):
    """The server ended the stream (closed the connection at a part boundary or inside one)."""


class PartReader:
    """Reads the ``multipart/x-mixed-replace`` body of an open /stream response part by part,
    checking the framing strictly: a boundary line, headers, exactly Content-Length bytes, CRLF."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        assert response.status_code == 200, response.status_code
        assert response.headers["Content-Type"] == "multipart/x-mixed-replace;boundary=frame", response.headers
        self._chunks = response.iter_content(chunk_size=65536)
        self._buf = bytearray()

    def _fill(self) -> None:
        try:
            self._buf += next(self._chunks)
        except StopIteration:
            raise StreamEnded("the server ended the stream") from None

    def next_part(self) -> tuple[CaseInsensitiveDict[str], bytes]:
        """(headers, JPEG) of the next part; raises StreamEnded when the server closed the stream
        and requests' errors when the connection broke."""
        while b"\r\n\r\n" not in self._buf:
            self._fill()
        end = self._buf.index(b"\r\n\r\n")
        lines = bytes(self._buf[:end]).decode("ascii").split("\r\n")
        assert lines[0] == "--frame", f"expected a boundary, got {lines[0]!r}"
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        for line in lines[1:]:
            key, sep, value = line.partition(":")
            assert sep, f"malformed part header {line!r}"
            headers[key.strip()] = value.strip()
        length = int(headers["Content-Length"])
        start = end + 4
        while len(self._buf) < start + length + 2:
            self._fill()
        body = bytes(self._buf[start : start + length])
        assert self._buf[start + length : start + length + 2] == b"\r\n", "Content-Length does not match the part"
        del self._buf[: start + length + 2]
        return headers, body

    def next_live(self, timeout: float) -> tuple[CaseInsensitiveDict[str], bytes]:
        """The next part sent as live (not the "waiting for frames" card), within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            headers, body = self.next_part()
            if headers["X-Zmqcam-State"] == "live":
                return headers, body
        raise AssertionError(f"no live frame within {timeout} s")

    def live_parts(self, n: int, timeout: float = 20.0) -> list[bytes]:
        """``n`` JPEGs sent as live (not the "waiting for frames" card)."""
        jpegs: list[bytes] = []
        deadline = time.monotonic() + timeout
        while len(jpegs) < n:
            assert time.monotonic() < deadline, f"{len(jpegs)} of {n} live parts in {timeout} s"
            headers, jpeg = self.next_part()
            if headers.get("X-Zmqcam-State") == "live":
                jpegs.append(jpeg)
        return jpegs

    def live_part_after(self, t_ns: int, timeout: float = 20.0) -> bytes:
        """The first live JPEG captured after ``t_ns`` (the X-Timestamp of the part)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            headers, jpeg = self.next_part()
            captured = int(float(headers["X-Timestamp"]) * 1e9)
            if headers.get("X-Zmqcam-State") == "live" and captured > t_ns:
                return jpeg
        raise AssertionError(f"no live part captured after the kill within {timeout} s")


class Viewer(PartReader):
    """An HTTP viewer of one MJPEG stream of the bridge: the parts as a browser receives them."""

    def __init__(self, port: int, path: str = "/stream", timeout: float = VIEWER_READ_TIMEOUT) -> None:
        super().__init__(requests.get(f"http://127.0.0.1:{port}{path}", stream=True, timeout=timeout))

    def close(self) -> None:
        self.response.close()


def connect_viewer(port: int, path: str, timeout: float = 20.0) -> Viewer:
    """A viewer, retrying while the (restarting) bridge does not accept connections yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Viewer(port, path)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class ReconnectingViewer:
    """A player watching one stream of the bridge the way players do (ffmpeg ``-reconnect 1
    -reconnect_streamed 1``, a browser page): when the stream ends, breaks, or sends nothing for
    ``stall`` seconds, it opens it again, for as long as it is asked to watch."""

    def __init__(self, port: int, path: str = "/stream", stall: float = 3.0) -> None:
        self.port = port
        self.path = path
        self.stall = stall
        #: how often it opened the stream again (the first open not counted)
        self.reconnects = -1
        self._viewer: Viewer | None = None

    def live_part_after(self, t_ns: int, timeout: float) -> bytes:
        """The first live JPEG captured after ``t_ns``, (re)connecting as often as needed meanwhile
        (also while the bridge is not listening yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._viewer is None:
                    self._viewer = Viewer(self.port, self.path, timeout=self.stall)
                    self.reconnects += 1
                headers, jpeg = self._viewer.next_part()
            except (StreamEnded, requests.RequestException, AssertionError):  # ended, broken, stalled, not 200
                self.close()
                time.sleep(0.2)
                continue
            if headers.get("X-Zmqcam-State") == "live" and int(float(headers["X-Timestamp"]) * 1e9) > t_ns:
                return jpeg
        raise AssertionError(f"{self.path}: no live part captured after t_ns within {timeout} s")

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
