"""Fixtures and helpers for camera-level tests: a fake ESP32-CAM, a real RTSP server, configs.

Import the fixtures into a test module (``from fixtures_cameras import fakecam``); everything
started here is stopped at teardown (threads joined, subprocesses ended by PID).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from zmqcam.config import CameraConfig
from zmqcam.sources import Source, create_source
from zmqcam.testing.fakecam import FakeCam
from zmqcam.testing.rtsp_server import RtspServer, rtsp_support

#: short timeouts keep failure tests fast; generous enough for a loaded 2-core CI machine
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 1.0


def camera(source: str, kind: str | None = None, **fields: Any) -> CameraConfig:
    """A camera config with short timeouts."""
    values: dict[str, Any] = {
        "name": "cam0",
        "source": source,
        "connect_timeout": CONNECT_TIMEOUT,
        "read_timeout": READ_TIMEOUT,
    }
    if kind is not None:
        values["kind"] = kind
    values.update(fields)
    return CameraConfig(**values)


@contextlib.contextmanager
def opened(config: CameraConfig, timeout: float | None = None) -> Iterator[Source]:
    """A source, opened, and closed at the end whatever happens."""
    source = create_source(config)
    try:
        source.open(timeout if timeout is not None else config.connect_timeout)
        yield source
    finally:
        source.close()


def timed(fn: Callable[[], Any]) -> tuple[float, BaseException | None, Any]:
    """(seconds, exception or None, result) of calling fn."""
    start = time.monotonic()
    try:
        result = fn()
    except BaseException as exc:
        return time.monotonic() - start, exc, None
    return time.monotonic() - start, None, result


@pytest.fixture
def fakecam() -> Iterator[FakeCam]:
    """A fake ESP32-CAM at 640x480, 20 fps, on free ports of 127.0.0.1."""
    cam = FakeCam(fps=20.0)
    cam.start()
    try:
        yield cam
    finally:
        start = time.monotonic()
        cam.stop()
        assert time.monotonic() - start < 1.5, "FakeCam.stop() must be prompt"
        assert cam.errors == [], cam.errors


def require_rtsp(codec: str) -> None:
    """Skip (with the reason) when this machine cannot serve RTSP with ``codec``."""
    support = rtsp_support()
    if not support.get("mjpeg"):
        pytest.skip(f"RTSP test server unavailable: {support.get('reason')}")
    if codec == "h264" and not support.get("h264"):
        pytest.skip(f"RTSP H.264 unavailable: {support.get('h264_reason') or support.get('reason')}")


@pytest.fixture
def rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """A factory: ``rtsp_server(codec="mjpeg", size=(640, 480), fps=15)`` starts a server
    (skipping when GStreamer's RTSP server is not available); all are stopped at teardown."""
    servers: list[RtspServer] = []

    def start(codec: str = "mjpeg", **kwargs: Any) -> RtspServer:
        require_rtsp(codec)
        server = RtspServer(codec=codec, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()
