"""A real bridge process fed by a real ZeroMQ publisher, for the HTTP abuse and resource tests.

The publisher speaks the real wire format on the panorama endpoint from a thread of the test
process, so the bridge serves live frames without grabber and stitcher processes eating the CPU
the tests measure. Raw-socket helpers send exactly the bytes a test means (HTTP client libraries
normalise paths and refuse malformed requests).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
import simplejpeg
import zmq

from tests.helpers.bridge import build_config, get_status, start_bridge
from tests.helpers.processes import Children
from zmqcam.bus import protocol, sockets
from zmqcam.config import Config
from zmqcam.names import PANO


def pano_jpeg(config: Config) -> bytes:
    """A panorama-sized JPEG of about 40 KB (the size the original deployment's panorama has)."""
    width, height = config.pano_size
    ramp = (np.add.outer(np.arange(height), np.arange(width)) % 256).astype(np.uint8)
    noise = np.random.default_rng(1).integers(0, 6, (height, width), dtype=np.uint8)
    image = np.repeat((ramp // 2 + noise)[:, :, None], 3, axis=2)
    return simplejpeg.encode_jpeg(image, quality=80, colorspace="BGR")


class PanoPublisher:
    """Publishes ``pano jpeg`` frames at ``fps`` from a thread, as the stitcher would."""

    def __init__(self, config: Config, fps: float) -> None:
        self.config = config
        self.fps = fps
        self.jpeg = pano_jpeg(config)
        self.sent = 0
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._sock = sockets.make_publisher(self._ctx, [config.pano_endpoints[0]])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pano-publisher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        width, height = self.config.pano_size
        next_at = time.monotonic()
        while not self._stop.is_set():
            while self._sock.poll(0):
                self._sock.recv()  # subscription messages (XPUB)
            self.sent += 1
            parts = protocol.encode(PANO, protocol.JPEG, self.sent, time.time_ns(), self.jpeg, width, height)
            self._sock.send_multipart(parts, copy=False)
            next_at += 1.0 / self.fps
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close(linger=0)
        self._ctx.term()


@dataclass
class FedBridge:
    config: Config
    url: str
    port: int
    pid: int
    publisher: PanoPublisher


@contextmanager
def fed_bridge(fps: float = 15, *, http: dict[str, Any] | None = None, **bridge_kwargs: Any) -> Iterator[FedBridge]:
    """A bridge process (``run_bridge(config, **bridge_kwargs)``) on a free port, with live panoramas."""
    run_dir = tempfile.mkdtemp(prefix="zc-", dir="/tmp")
    config = build_config(run_dir, http={"port": 0, **(http or {})})
    kids = Children()
    publisher = PanoPublisher(config, fps)
    try:
        proc, url = start_bridge(kids, config, **bridge_kwargs)
        assert proc.pid is not None
        yield FedBridge(config, url, int(url.rsplit(":", 1)[1]), proc.pid, publisher)
    finally:
        kids.stop_all()
        publisher.close()
        shutil.rmtree(run_dir, ignore_errors=True)


def http_status_code(reply: bytes) -> int | None:
    match = re.match(rb"HTTP/\d\.\d (\d{3}) ", reply)
    return int(match.group(1)) if match else None


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, limit: int = 65536) -> bytes:
    """Send ``data`` on a new connection, return what comes back until the server closes, the
    response head and its Content-Length body are complete, or ``limit`` bytes arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        # the server may answer and close before it read everything (huge requests)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        reply = b""
        while len(reply) < limit:
            head_end = reply.find(b"\r\n\r\n")
            if head_end >= 0:
                match = re.search(rb"(?i)\r\ncontent-length: *(\d+)", reply[:head_end])
                if match and len(reply) >= head_end + 4 + int(match.group(1)):
                    break
                if not match and reply.startswith(b"HTTP/1.1 200") and b"multipart" in reply[:head_end]:
                    break  # a stream: the head is enough
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            reply += chunk
    return reply


class Viewer:
    """A normal ``/stream`` client reading in a thread for the whole test: counts the live frames it
    gets."""

    def __init__(self, url: str) -> None:
        self.frames = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._response = requests.get(url + "/stream", stream=True, timeout=(5, 15))
        assert self._response.status_code == 200
        self._thread = threading.Thread(target=self._run, name="viewer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        marker = b"X-Zmqcam-State: live"
        tail = b""
        try:
            # chunk_size None: data as it arrives, so the count follows the stream part by part
            for chunk in self._response.iter_content(chunk_size=None):
                if self._stop.is_set():
                    return
                data = tail + chunk
                self.frames += data.count(marker)
                # a marker cut between two chunks is counted once, with the next chunk
                tail = data[-(len(marker) - 1) :] if not data.endswith(marker) else b""
        except BaseException as exc:  # reported by check(); the thread must not die silently
            if not self._stop.is_set():
                self.error = exc

    def check(self, more: int = 3, timeout: float = 5.0) -> None:
        """The viewer is still streaming: no error, and ``more`` new live frames within ``timeout``."""
        assert self.error is None, f"the normal viewer failed: {self.error!r}"
        assert self._thread.is_alive(), "the normal viewer's stream ended"
        target = self.frames + more
        deadline = time.monotonic() + timeout
        while self.frames < target:
            assert self.error is None, f"the normal viewer failed: {self.error!r}"
            assert time.monotonic() < deadline, f"the normal viewer got no new frames for {timeout} s"
            time.sleep(0.05)

    def close(self) -> None:
        self._stop.set()
        self._response.close()
        self._thread.join(5)


def proc_resources(pid: int) -> dict[str, int]:
    """Open fds, threads and RSS (KiB) of a process, from /proc."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {
        "fds": len(list(Path(f"/proc/{pid}/fd").iterdir())),
        "threads": int(fields["Threads"].strip()),
        "rss_kib": int(fields["VmRSS"].split()[0]),
    }


def status_http(url: str) -> dict[str, Any]:
    http: dict[str, Any] = get_status(url)["http"]
    return http
