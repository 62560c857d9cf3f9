"""Camera-level helpers: camera configs with short timeouts, an opened source, timing a call, and the
one rule for the RTSP tests' system packages. The fake ESP32-CAM and RTSP server fixtures are in
``tests/conftest.py``."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2

from tests.helpers.waiting import needs
from zmqcam.config import CameraConfig
from zmqcam.sources import Source, create_source
from zmqcam.testing.rtsp_server import SYSTEM_PYTHON, rtsp_support

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


def require_rtsp(codec: str) -> None:
    """Skip when this machine cannot run the RTSP tests, saying exactly what is missing. In CI
    (CI=true) the packages are installed (.ci/run), so a missing piece there fails the test
    instead of skipping it silently (the ``needs`` rule)."""
    support = rtsp_support()
    packages = (
        f" -- the RTSP server needs python3-gi, gir1.2-gst-rtsp-server-1.0 and gstreamer1.0-plugins-"
        f"{{base,good,ugly}} for {SYSTEM_PYTHON} (.ci/run installs them)"
    )
    reason = ""
    if not support.get("mjpeg"):
        reason = f"RTSP test server unavailable: {support.get('reason')}{packages}"
    elif codec == "h264" and not support.get("h264"):
        reason = f"RTSP H.264 unavailable: {support.get('h264_reason') or support.get('reason')}{packages}"
    elif re.search(r"FFMPEG:\s+NO", cv2.getBuildInformation()):
        reason = "this OpenCV was built without FFmpeg, so it cannot read RTSP (opencv-python-headless has it)"
    needs(not reason, reason)
