"""A recording made by ``zmqcam-daemon record``, played back at its recorded timing.

``source`` is the camera's ``<cam>.mjpeg`` in a recording directory (a path or ``file://`` URL), or
the directory itself, in which case the file named after the camera is played. The JPEG bytes go
out untouched, so the grabber publishes exactly what the live camera published. An H.264 recording's
``<name>.mp4`` (``record --h264``; ``pano.mp4`` is played as the camera ``panorama``) is decoded in
order and its pictures go out as raw frames, which the grabber JPEG-encodes like a raw camera's.

Timing: every frame is due at ``open time + (its capture time - the recording's first capture)``,
and its ``capture_ns`` is that due time. "The recording's first capture" is the earliest frame of
*any* camera of the recording (from ``recording.json``), so a whole rig replayed together keeps its
cameras' relative timing, their gaps (a camera that dropped out is silent again at the same moment)
and their frame spacing, up to the few milliseconds between the grabbers opening. With
``loop = true`` (the default) playback starts over one frame interval after the rig's last frame,
every camera on the same period. Each ``open`` (the daemon opens a camera when someone watches)
starts from the beginning. A consumer that stalls more than a second shifts the schedule rather
than getting a burst of late frames.

The grabber numbers frames itself, so replayed frames carry new sequence numbers, in the recorded
order; the originals are in the recording's index.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from zmqcam.errors import CorruptFrame, RecordingError, SourceEnded, SourceError
from zmqcam.recording.format import MP4_SUFFIX, VIDEO_SUFFIX, Mp4Track, Recording, Span, Track, open_track
from zmqcam.sources.base import Source, SourceFrame
from zmqcam.sources.file import file_path

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig

__all__ = ["ReplaySource", "recording_track_path"]

_Read = TypeVar("_Read")

#: a consumer this far behind the schedule shifts it instead of getting a burst of frames
_MAX_LAG_NS = 1_000_000_000


def recording_track_path(source: str, camera_name: str) -> Path:
    """The track a replay ``source`` names: the file itself, or ``<dir>/<camera>.mjpeg`` (else
    ``<dir>/<camera>.mp4`` when only that is there)."""
    path = Path(file_path(source))
    if not path.is_dir():
        return path
    mjpeg, mp4 = path / f"{camera_name}{VIDEO_SUFFIX}", path / f"{camera_name}{MP4_SUFFIX}"
    return mp4 if mp4.exists() and not mjpeg.exists() else mjpeg


class ReplaySource(Source):
    kind = "replay"
    self_paced = True
    #: a recorded gap is waited out however long it is (see ``read``)
    read_bounded = False

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self._path = recording_track_path(camera.source, camera.name)
        self._track: Track | Mp4Track | None = None
        self._span = Span(0, 0, 0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._next = 0  # the index of the next frame
        self._loop = 0
        self._start_mono_ns = 0
        self._start_wall_ns = 0

    def describe(self) -> str:
        return f"replay {self._path}"

    def open(self, timeout: float) -> None:
        self.close()
        try:
            track = open_track(self._path)
        except RecordingError as exc:
            raise SourceError(str(exc)) from None
        try:
            span = Recording(self._path.parent).span()
        except RecordingError as exc:
            track.close()
            raise SourceError(str(exc)) from None
        if not track.entries or span is None:
            track.close()
            raise SourceError(f"{self.describe()}: no frames in the recording")
        self._span = span
        self._next = 0
        self._loop = 0
        self._start_mono_ns = time.monotonic_ns()
        self._start_wall_ns = time.time_ns()
        with self._lock:
            self._track = track
        self._stop.clear()

    def read(self, timeout: float) -> SourceFrame:
        track = self._track
        if track is None or self._stop.is_set():
            raise SourceError(f"{self.describe()}: closed")
        if self._next >= len(track.entries):
            if not self.camera.loop:
                raise SourceEnded(f"{self.describe()}: end of recording")
            self._next = 0
            self._loop += 1
        i = self._next
        entry = track.entries[i]
        offset = self._loop * self._span.period_ns + max(0, entry.capture_ns - self._span.first_ns)
        # a recorded gap is waited out however long it is (the camera was silent that long), so
        # ``timeout`` does not apply; close() ends the wait at once
        late = time.monotonic_ns() - (self._start_mono_ns + offset)
        if late > _MAX_LAG_NS:
            self._start_mono_ns += late
            self._start_wall_ns += late
        elif late < 0 and self._stop.wait(-late / 1e9):
            raise SourceError(f"{self.describe()}: closed")
        due_ns = self._start_wall_ns + offset
        if isinstance(track, Mp4Track):
            # decoded in order: the next picture costs one decode
            image = self._frame_of(track, i, track.picture)
            if image is None:
                raise CorruptFrame(f"{self.describe()}: frame {i} does not decode")
            return SourceFrame.raw(image, due_ns)
        data = self._frame_of(track, i, track.read)
        if len(data) != entry.length or not data.startswith(b"\xff\xd8"):
            raise CorruptFrame(f"{self.describe()}: frame {i} is not a JPEG")
        frame = SourceFrame.jpeg(data, due_ns)
        frame.width, frame.height = entry.width, entry.height
        return frame

    def _frame_of(self, track: Track | Mp4Track, i: int, read: Callable[[int], _Read]) -> _Read:
        """``read(i)`` of ``track`` unless close() let go of it meanwhile; frame ``i`` is then done."""
        with self._lock:
            if self._track is not track:
                raise SourceError(f"{self.describe()}: closed")
            try:
                data = read(i)
            except OSError as exc:
                raise SourceError(f"{self.describe()}: {exc.strerror or exc}") from None
            except RecordingError as exc:
                raise SourceError(f"{self.describe()}: {exc}") from None
        self._next = i + 1
        return data

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            track, self._track = self._track, None
        if track is not None:
            track.close()
