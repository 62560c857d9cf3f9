"""Local cameras: a USB/V4L2 device, given as an index (``0``) or a path (``/dev/video0``).

OpenCV's V4L2 backend (any backend off Linux). The camera is asked for ``camera.size`` and
``camera.fps`` and for MJPG on the wire (most USB cameras reach their full frame rate only so);
frames are decoded BGR pixels. A missing device is reported clearly at ``open``, before OpenCV
is asked. ``close`` from another thread waits for a read in progress (see ``_opencv``).
"""

from __future__ import annotations

import os
import sys
import time

from zmqcam.errors import SourceError, SourceTimeout
from zmqcam.sources._opencv import CaptureSource
from zmqcam.sources.base import SourceFrame

__all__ = ["DeviceSource", "device_target"]


def device_target(source: str) -> tuple[str | int, str]:
    """What to hand to OpenCV for a device ``source``, and the device path to check."""
    s = source.strip()
    if s.lower() == "device":
        s = "0"
    if s.isdigit():
        return int(s), f"/dev/video{int(s)}"
    if s.startswith("/dev/"):
        return s, s
    raise SourceError(f"not a video device: {s!r} (use an index such as 0, or a path such as /dev/video0)")


class DeviceSource(CaptureSource):
    kind = "device"

    def describe(self) -> str:
        return f"device {self.camera.source.strip()}"

    def open(self, timeout: float) -> None:
        import cv2

        target, path = device_target(self.camera.source)
        linux = sys.platform.startswith("linux")
        if linux and not os.path.exists(path):
            raise SourceError(f"no such video device: {path} (is the camera plugged in? see: ls /dev/video*)")
        if linux and not os.access(path, os.R_OK | os.W_OK):
            raise SourceError(f"no permission to open {path} (add the user to the 'video' group)")
        capture = self._new_capture()
        api = cv2.CAP_V4L2 if linux else cv2.CAP_ANY
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(1, int(timeout * 1000))]
        if not capture.open(target, api, params):
            raise SourceError(f"{path}: cannot open the video device (busy, or not a capture device)")
        width, height = self.camera.size

        def configure(cap: object) -> None:
            for prop, value in (
                (cv2.CAP_PROP_FOURCC, cv2.VideoWriter.fourcc(*"MJPG")),
                (cv2.CAP_PROP_FRAME_WIDTH, width),
                (cv2.CAP_PROP_FRAME_HEIGHT, height),
                (cv2.CAP_PROP_FPS, self.camera.fps),
                (cv2.CAP_PROP_BUFFERSIZE, 1),
                (cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.camera.read_timeout * 1000)),
            ):
                cap.set(prop, value)  # type: ignore[attr-defined]

        capture.use(configure)

    def read(self, timeout: float) -> SourceFrame:
        capture = self._open_capture()
        start = time.monotonic()
        image = capture.read()
        if image is None:
            elapsed = time.monotonic() - start
            if elapsed >= 0.9 * min(timeout, self.camera.read_timeout):
                self._broken = "timed out"
                raise SourceTimeout(f"{self.describe()}: no frame within {elapsed:.3g} s")
            self._broken = "read failed"
            raise SourceError(f"{self.describe()}: read failed (device unplugged?)")
        return SourceFrame.raw(image)
