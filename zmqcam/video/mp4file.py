"""Record H.264 access units to an .mp4 file (remuxed, nothing re-encoded) and read it back frame by
frame with capture times, for ``record --h264``, replay and calibrate.

The file is fragmented MP4 (``empty_moov+default_base_moof+frag_every_frame``, flushed per frame): the
header goes out at the first keyframe, then every frame as its own fragment, so a recorder killed
mid-recording leaves a file that plays up to its last frame or so (nothing to repair: there is no
index at the end to lose). A clean ``close`` adds the index (mfra) for fast seeking. The cost is a
moof box per frame, about 100 bytes.

Capture times: timestamps are ``TIME_BASE`` ticks since the first frame's capture; the capture time of
that first frame and the source's size (before the even padding) are metadata of the file
(``zmqcam_capture_origin_ns``, ``zmqcam_size``), which ffprobe shows and ``Mp4Reader`` uses.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import av
import av.error
import numpy as np

from zmqcam.errors import VideoError
from zmqcam.video.timeline import NS_PER_SECOND, TIME_BASE, Timeline

__all__ = ["ORIGIN_KEY", "SIZE_KEY", "Mp4Reader", "Mp4Recorder", "RecordedFrame"]

ORIGIN_KEY = "zmqcam_capture_origin_ns"
SIZE_KEY = "zmqcam_size"
# per-frame fragments (a kill loses at most the frame in flight); custom metadata keys allowed
_MOVFLAGS = "empty_moov+default_base_moof+frag_every_frame+use_metadata_tags"


class RecordedFrame(NamedTuple):
    capture_ns: int
    image: np.ndarray  # BGR, the source's size
    keyframe: bool


class Mp4Recorder:
    """Access units of one stream -> ``path``. ``size`` is the source's (width, height), ``coded_size``
    what the encoder made of it (even); frames before the first keyframe are skipped."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        size: tuple[int, int],
        coded_size: tuple[int, int],
        fps: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.size = size
        self.coded_size = coded_size
        self.fps = fps
        self.timeline = Timeline()
        self.frames = 0
        self.skipped = 0
        try:
            self._container: Any = av.open(
                str(self.path), "w", format="mp4", options={"movflags": _MOVFLAGS, "flush_packets": "1"}
            )
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot record to {self.path}: {exc}") from exc
        self._stream = self._container.add_mux_stream(
            "h264", rate=Fraction(fps).limit_denominator(1001), width=coded_size[0], height=coded_size[1]
        )
        self._stream.time_base = TIME_BASE

    def write(self, data: bytes, keyframe: bool, capture_ns: int) -> bool:
        """Append one access unit; False if skipped (no keyframe yet)."""
        if self._container is None:
            raise VideoError(f"{self.path}: the recorder is closed")
        if not self.frames:
            if not keyframe:
                self.skipped += 1
                return False
            # the header (with these) is written with the first frame
            self._container.metadata[ORIGIN_KEY] = str(capture_ns)
            self._container.metadata[SIZE_KEY] = f"{self.size[0]}x{self.size[1]}"
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = self.timeline.stamp(capture_ns)
        packet.duration = round(TIME_BASE.denominator / self.fps)
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"{self.path}: cannot write: {exc}") from exc
        self.frames += 1
        return True

    def close(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        try:
            container.close()
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"{self.path}: cannot finish: {exc}") from exc

    def __enter__(self) -> Mp4Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Mp4Reader:
    """A recording made by ``Mp4Recorder`` (or any MP4 with an H.264 track), frame by frame."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._container: Any = av.open(str(self.path))
        except (av.error.FFmpegError, OSError) as exc:
            raise VideoError(f"cannot read {self.path}: {exc}") from exc
        videos = self._container.streams.video
        if not videos or videos[0].codec_context.name != "h264":
            self._container.close()
            raise VideoError(f"{self.path}: no H.264 video track")
        self._stream = videos[0]
        self._stream.thread_count = 1  # frame threads would only add memory for a sequential read
        meta = self._container.metadata
        self.coded_size = (self._stream.codec_context.width, self._stream.codec_context.height)
        try:
            w, h = (int(v) for v in meta.get(SIZE_KEY, "").split("x"))
            self.size = (w, h)
        except ValueError:
            self.size = self.coded_size
        self.origin_ns = int(meta[ORIGIN_KEY]) if meta.get(ORIGIN_KEY, "").isdigit() else 0

    def capture_times(self) -> list[int]:
        """Every frame's capture time (ns since the epoch), in order, read from the packets without
        decoding anything: the index of the file. A file cut short ends at its last complete fragment."""
        tb = self._stream.time_base or TIME_BASE
        times = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size and packet.pts is not None:
                    times.append(self.origin_ns + round(packet.pts * tb * NS_PER_SECOND))
        except av.error.FFmpegError:
            pass  # a torn last fragment: the frames before it stand
        return times

    def frames(self) -> Iterator[RecordedFrame]:
        """Every decodable frame with its capture time (ns since the epoch), cropped to the source size.
        A file cut short ends at its last complete fragment."""
        w, h = self.size
        tb = self._stream.time_base or TIME_BASE
        try:
            for frame in self._container.decode(self._stream):
                image = frame.to_ndarray(format="bgr24")
                if image.shape[1] != w or image.shape[0] != h:
                    image = np.ascontiguousarray(image[:h, :w])
                capture_ns = self.origin_ns + round((frame.pts or 0) * tb * NS_PER_SECOND)
                yield RecordedFrame(capture_ns, image, bool(frame.key_frame))
        except av.error.FFmpegError as exc:
            raise VideoError(f"{self.path}: unreadable: {exc}") from exc

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> Mp4Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
