"""A video file or a recording, played at its own frame rate (``self_paced``), looped when
``camera.loop``.

Two kinds of file:

* a recording of an MJPEG camera: the multipart body as saved by e.g.
  ``curl -s http://<ip>:81/stream > rec.mjpeg`` (with or without ``curl -i``'s response
  headers). Its JPEGs are forwarded untouched, paced by their ``X-Timestamp`` spacing when they
  have one (gaps clamped to 2 s), else at ``camera.fps``;
* anything OpenCV's FFmpeg backend plays (mp4, mkv, avi, a raw .mjpeg of concatenated JPEGs,
  ...): decoded BGR pixels at the file's frame rate (``camera.fps`` if the file has none).

``source`` is a path or a ``file://`` URL. At the end of a file that is not looped, ``read``
raises SourceEnded("end of file"). ``capture_ns`` is the time a frame is delivered.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlsplit

from zmqcam.errors import SourceEnded, SourceError
from zmqcam.sources._common import jpeg_size, parse_x_timestamp
from zmqcam.sources._opencv import GuardedCapture
from zmqcam.sources.base import Source, SourceFrame
from zmqcam.sources.mjpeg import MultipartParser, boundary_from_content_type

if TYPE_CHECKING:
    import numpy as np

    from zmqcam.config import CameraConfig

__all__ = ["FileSource", "file_path"]

_MAX_GAP_NS = 2_000_000_000
#: a consumer this far behind the schedule restarts it instead of getting a burst of frames
_MAX_LAG = 1.0


def file_path(source: str) -> str:
    s = source.strip()
    if s.lower().startswith("file://"):
        parts = urlsplit(s)
        s = unquote(parts.path if not parts.netloc or parts.netloc == "localhost" else f"//{parts.netloc}{parts.path}")
    return os.path.expanduser(s)


class FileSource(Source):
    kind = "file"
    self_paced = True

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self._path = ""
        self._stop = threading.Event()
        self._capture: GuardedCapture | None = None
        self._file: BinaryIO | None = None
        self._boundary: str | None = None
        self._body_start = 0
        self._parser: MultipartParser | None = None
        self._queue: deque[tuple[bytes, int | None]] = deque()
        self._interval = 1.0 / camera.fps
        self._prev_due: float | None = None
        self._last_stamp: int | None = None
        self._frames_this_pass = 0
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"file {self._path or self.camera.source}"

    @property
    def is_recording(self) -> bool:
        """True when playing an MJPEG recording (JPEGs forwarded untouched)."""
        return self._file is not None

    def open(self, timeout: float) -> None:
        self.close()
        self._stop.clear()
        path = file_path(self.camera.source)
        self._path = path
        if not os.path.isfile(path):
            raise SourceError(f"no such file: {path}")
        try:
            with open(path, "rb") as f:
                head = f.read(4096)
        except OSError as exc:
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None
        self._prev_due = None
        self._last_stamp = None
        self._frames_this_pass = 0
        recording = self._recording_start(head)
        if recording is not None:
            self._boundary, self._body_start = recording
            self._interval = 1.0 / self.camera.fps
            f = open(path, "rb")  # noqa: SIM115 - kept open until close()
            with self._lock:
                self._file = f
            self._rewind_recording()
            return
        import cv2

        capture = GuardedCapture(self.describe())
        if not capture.open(path, cv2.CAP_FFMPEG):
            raise SourceError(f"cannot play {path} (not a video file OpenCV/FFmpeg can read)")
        fps = capture.use(lambda cap: cap.get(cv2.CAP_PROP_FPS))
        self._interval = 1.0 / fps if 0 < fps <= 240 else 1.0 / self.camera.fps
        with self._lock:
            self._capture = capture

    @staticmethod
    def _recording_start(head: bytes) -> tuple[str | None, int] | None:
        """(boundary, offset of the multipart body) when ``head`` starts an MJPEG recording."""
        if head.startswith(b"HTTP/"):
            end = head.find(b"\r\n\r\n")
            if end < 0:
                return None
            m = re.search(rb"(?im)^content-type:\s*(multipart/[^\r\n]*)", head[:end])
            if m is None:
                return None
            return boundary_from_content_type(m.group(1).decode("latin-1")), end + 4
        stripped = head.lstrip(b"\r\n")
        if stripped.startswith(b"--") and re.match(rb"--[\x21-\x7e]{1,200}\r?\n", stripped):
            return None, 0
        return None

    def _rewind_recording(self) -> None:
        assert self._file is not None
        self._file.seek(self._body_start)
        self._parser = MultipartParser(self._boundary)
        self._queue.clear()

    def _next_recorded(self) -> tuple[bytes, int | None] | None:
        """The next JPEG of the recording and its camera time, or None at the end."""
        while not self._queue:
            f, parser = self._file, self._parser
            if f is None or parser is None:
                raise SourceError(f"{self.describe()}: closed")
            try:
                data = f.read(256 * 1024)
            except (OSError, ValueError):  # ValueError: closed by close() meanwhile
                raise SourceError(f"{self.describe()}: closed") from None
            if not data:
                return None
            for headers, jpeg in parser.feed(data):
                self._queue.append((jpeg, parse_x_timestamp(headers.get("x-timestamp"))))
            parser.pop_errors()  # a damaged part of a recording is skipped
        return self._queue.popleft()

    def read(self, timeout: float) -> SourceFrame:
        frame = self._read_recording() if self._file is not None else self._read_video()
        self._frames_this_pass += 1
        return frame

    def _end_of_file(self) -> None:
        if not self.camera.loop:
            raise SourceEnded(f"{self.describe()}: end of file")
        if self._frames_this_pass == 0:
            raise SourceError(f"{self.describe()}: no frames in the file")
        self._frames_this_pass = 0
        self._last_stamp = None

    def _read_recording(self) -> SourceFrame:
        item = self._next_recorded()
        if item is None:
            self._end_of_file()
            self._rewind_recording()
            item = self._next_recorded()
            if item is None:
                raise SourceError(f"{self.describe()}: no frames in the file")
        jpeg, stamp = item
        gap = self._interval
        if stamp is not None and self._last_stamp is not None and 0 <= stamp - self._last_stamp <= _MAX_GAP_NS:
            gap = (stamp - self._last_stamp) / 1e9
        self._last_stamp = stamp
        self._pace(gap)
        frame = SourceFrame.jpeg(jpeg)
        frame.width, frame.height = jpeg_size(jpeg)
        return frame

    def _read_video(self) -> SourceFrame:
        capture = self._capture
        if capture is None or capture.closed:
            raise SourceError(f"{self.describe()}: {'closed' if capture is not None else 'not open'}")
        image = capture.read()
        if image is None:
            self._end_of_file()
            image = self._rewind_video(capture)
        self._pace(self._interval)
        return SourceFrame.raw(image)

    def _rewind_video(self, capture: GuardedCapture) -> np.ndarray:
        import cv2

        capture.use(lambda cap: cap.set(cv2.CAP_PROP_POS_FRAMES, 0))
        image = capture.read()
        if image is None:  # not seekable: open it again
            fresh = GuardedCapture(self.describe())
            if not fresh.open(self._path, cv2.CAP_FFMPEG):
                raise SourceError(f"{self.describe()}: cannot reopen to loop")
            with self._lock:
                old, self._capture = self._capture, fresh
            if old is not None:
                old.close()
            image = fresh.read()
            if image is None:
                raise SourceError(f"{self.describe()}: no frames in the file")
        return image

    def _pace(self, gap: float) -> None:
        """Wait until this frame is due: ``gap`` seconds after the previous one was."""
        now = time.monotonic()
        due = now if self._prev_due is None else self._prev_due + gap
        if now - due > _MAX_LAG:
            due = now  # far behind (a paused consumer): restart the schedule
        if due > now and self._stop.wait(due - now):
            raise SourceError(f"{self.describe()}: closed")
        self._prev_due = due

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            capture, self._capture = self._capture, None
            f, self._file = self._file, None
        if capture is not None:
            capture.close()
        if f is not None:
            f.close()
