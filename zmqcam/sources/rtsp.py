"""RTSP cameras (``rtsp://<ip>:554/mjpeg/1`` of the ESP32 Micro-RTSP firmware; H.264 too) through
OpenCV's FFmpeg backend. Frames are decoded BGR pixels (``SourceFrame.raw``).

* Transport: ``camera.rtsp_transport`` ("tcp" by default: robust through NAT and loss). It reaches
  FFmpeg through ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, which OpenCV reads when a capture is opened;
  the variable is process-global, so it is set, the capture constructed and the variable
  restored under one lock (opens of several RTSP cameras in one process are serialised).
* Timeouts are passed at construction: ``cv2.VideoCapture(url, cv2.CAP_FFMPEG,
  [CAP_PROP_OPEN_TIMEOUT_MSEC, ms, CAP_PROP_READ_TIMEOUT_MSEC, ms])``. Reading them back with
  ``get()`` returns -1 and proves nothing; the tests prove them against a frozen server. The read
  timeout is ``camera.read_timeout``, fixed for the capture's life: the ``timeout`` argument of
  ``read`` cannot change it.
* After any read failure the capture is finished (FFmpeg's context does not recover): ``read``
  raises SourceTimeout (the read took about the read timeout: a frozen or vanished camera) or
  SourceError (the stream ended or broke), and every later ``read`` raises SourceError until the
  grabber closes and reopens, which constructs a new VideoCapture.
* With H.264 a frozen server still yields a couple of buffered frames, and after the timeout
  fired FFmpeg may hand out one more buffered frame per read timeout. A read that took the read
  timeout is therefore treated as a timeout even if it returned a frame.
* ``close`` from another thread cannot interrupt a read in progress (see ``_opencv``): the socket
  is released when that read returns, within the read timeout.
"""

from __future__ import annotations

import time

from zmqcam.errors import SourceError, SourceTimeout
from zmqcam.sources._common import safe_url
from zmqcam.sources._opencv import CaptureSource
from zmqcam.sources.base import SourceFrame

__all__ = ["RtspSource", "ffmpeg_options"]

#: a read that took this fraction of the read timeout was cut short by FFmpeg's timeout
_TIMEOUT_FRACTION = 0.9


def ffmpeg_options(transport: str) -> str:
    """The FFmpeg options for an RTSP camera: transport, and quick stream probing (a camera
    sends one video stream; the defaults wait seconds to analyse it)."""
    return f"rtsp_transport;{transport}|analyzeduration;500000|probesize;65536"


class RtspSource(CaptureSource):
    kind = "rtsp"

    def describe(self) -> str:
        return f"rtsp {safe_url(self.camera.source)}"

    def open(self, timeout: float) -> None:
        import cv2

        url = self.camera.source.strip()
        if not url.lower().startswith(("rtsp://", "rtsps://")):
            raise SourceError(f"not an rtsp:// URL: {safe_url(url)}")
        capture = self._new_capture()
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            max(1, int(timeout * 1000)),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            max(1, int(self.camera.read_timeout * 1000)),
        ]
        start = time.monotonic()
        opened = capture.open(url, cv2.CAP_FFMPEG, params, ffmpeg_options(self.camera.rtsp_transport))
        if not opened:
            elapsed = time.monotonic() - start
            was_closed = capture.closed  # close() was called while opening
            capture.close()
            if was_closed:
                raise SourceError(f"{self.describe()}: closed")
            if elapsed >= timeout * _TIMEOUT_FRACTION:
                raise SourceTimeout(f"{self.describe()}: no answer within {timeout:g} s")
            raise SourceError(f"{self.describe()}: cannot open (refused, wrong path, or no playable video stream)")

    def read(self, timeout: float) -> SourceFrame:
        capture = self._open_capture()
        read_timeout = self.camera.read_timeout
        start = time.monotonic()
        image = capture.read()
        elapsed = time.monotonic() - start
        if capture.closed:
            raise SourceError(f"{self.describe()}: closed")
        if elapsed >= read_timeout * _TIMEOUT_FRACTION:
            self._broken = "timed out"
            raise SourceTimeout(f"{self.describe()}: no frame within {read_timeout:g} s")
        if image is None:
            self._broken = "stream failed"
            raise SourceError(f"{self.describe()}: the stream ended or failed")
        return SourceFrame.raw(image)
