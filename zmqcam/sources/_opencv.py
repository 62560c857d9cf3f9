"""``cv2.VideoCapture`` made safe to close from another thread, for the rtsp, device and file sources,
and ``CaptureSource``, the shell the rtsp and device sources share.

OpenCV cannot abort a blocking ``read``, and releasing a capture while another thread reads it
is a use-after-free. So ``close`` from another thread marks the capture closed and, if a read is
in progress, leaves the release to the reading thread, which does it as soon as that read returns
(within the read timeout given at construction). No new read starts after ``close``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from zmqcam.errors import SourceError
from zmqcam.sources.base import Source

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig

T = TypeVar("T")

#: OpenCV's FFmpeg backend reads its options from this variable when a capture is opened
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
#: the variable is process-global: whoever sets it holds this lock until the capture is open
ENV_LOCK = threading.Lock()


class GuardedCapture:
    """One ``cv2.VideoCapture``; ``close`` is idempotent and safe from any thread."""

    def __init__(self, description: str) -> None:
        self.description = description
        self._cap: Any = None
        self._lock = threading.Lock()
        self._busy = False
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def open(
        self,
        target: str | int,
        api: int,
        params: Sequence[int] = (),
        ffmpeg_options: str | None = None,
    ) -> bool:
        """Construct the capture; True when it opened. ``ffmpeg_options`` go through the
        process-global environment variable, set and restored under ``ENV_LOCK``."""
        import cv2

        if ffmpeg_options is None:
            cap = cv2.VideoCapture(target, api, list(params))
        else:
            with ENV_LOCK:
                saved = os.environ.get(FFMPEG_OPTIONS_ENV)
                os.environ[FFMPEG_OPTIONS_ENV] = ffmpeg_options
                try:
                    cap = cv2.VideoCapture(target, api, list(params))
                finally:
                    if saved is None:
                        os.environ.pop(FFMPEG_OPTIONS_ENV, None)
                    else:
                        os.environ[FFMPEG_OPTIONS_ENV] = saved
        with self._lock:
            if self._closed or not cap.isOpened():
                opened = False
            else:
                self._cap, opened = cap, True
        if not opened:
            cap.release()
        return opened

    def use(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(capture)`` unless closed; a concurrent ``close`` waits for it to finish."""
        with self._lock:
            cap = self._cap
            if cap is None or self._closed:
                raise SourceError(f"{self.description}: closed")
            self._busy = True
        try:
            return fn(cap)
        finally:
            with self._lock:
                self._busy = False
                release = self._closed and self._cap is cap
                if release:
                    self._cap = None
            if release:
                cap.release()

    def read(self) -> np.ndarray | None:
        """The next frame, or None when the capture failed (timeout, end, error)."""
        ok, frame = self.use(lambda cap: cap.read())
        if self._closed:
            raise SourceError(f"{self.description}: closed")
        return frame if ok and frame is not None and frame.size else None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            cap = self._cap
            if self._busy:
                return  # the reading thread releases it when its read returns
            self._cap = None
        if cap is not None:
            cap.release()


class CaptureSource(Source):
    """The common shell of the sources that read through one ``GuardedCapture`` (rtsp, device):
    reopening replaces the capture, a read after a failed one asks for a reopen, ``close`` works
    from any thread. Subclasses open with ``_new_capture`` and read from ``_open_capture``."""

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self._capture: GuardedCapture | None = None
        #: why the capture can no longer be read (OpenCV does not recover from a failed read)
        self._broken: str | None = None

    def _new_capture(self) -> GuardedCapture:
        """Close the capture of a previous open, if any, and start a fresh one."""
        old, self._capture = self._capture, None
        if old is not None:
            old.close()
        capture = GuardedCapture(self.describe())
        self._capture = capture
        self._broken = None
        return capture

    def _open_capture(self) -> GuardedCapture:
        """The capture to read, or SourceError when it is closed, never opened or broken."""
        capture = self._capture
        if capture is None or capture.closed:
            raise SourceError(f"{self.describe()}: {'closed' if capture is not None else 'not open'}")
        if self._broken is not None:
            raise SourceError(f"{self.describe()}: {self._broken}; reopen")
        return capture

    def close(self) -> None:
        capture = self._capture
        if capture is not None:
            capture.close()
