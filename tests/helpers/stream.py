"""An HTTP viewer of one MJPEG stream of the bridge: the parts (headers and JPEG) as a browser
receives them, for tests that look at what viewers are shown."""

from __future__ import annotations

import time

import requests

__all__ = ["VIEWER_READ_TIMEOUT", "Viewer", "connect_viewer"]

#: how long a viewer waits for the next bytes before its read fails
VIEWER_READ_TIMEOUT = 10.0


class Viewer:
    """An HTTP viewer of one MJPEG stream of the bridge: the parts as a browser receives them."""

    def __init__(self, port: int, path: str = "/stream", timeout: float = VIEWER_READ_TIMEOUT) -> None:
        self.response = requests.get(f"http://127.0.0.1:{port}{path}", stream=True, timeout=timeout)
        assert self.response.status_code == 200, self.response.status_code
        assert self.response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        self._chunks = self.response.iter_content(chunk_size=65536)
        self._buf = b""

    def next_part(self) -> tuple[dict[str, str], bytes]:
        """(headers, JPEG) of the next part; raises EOFError when the server closed the stream and
        requests' errors when the connection broke."""
        while True:
            self._buf = self._buf.lstrip(b"\r\n")
            if self._buf.startswith(b"--frame\r\n"):
                self._buf = self._buf[len(b"--frame\r\n") :]
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                lines = self._buf[:end].decode("latin-1").split("\r\n")
                headers = dict(line.split(": ", 1) for line in lines if ": " in line)
                length = int(headers["Content-Length"])
                if len(self._buf) >= end + 4 + length:
                    jpeg = self._buf[end + 4 : end + 4 + length]
                    self._buf = self._buf[end + 4 + length :]
                    return headers, jpeg
            try:
                self._buf += next(self._chunks)
            except StopIteration:
                raise EOFError("the server ended the stream") from None

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
