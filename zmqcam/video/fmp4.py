"""Fragmented MP4 from H.264 access units, muxed once per stream by FFmpeg's mp4 muxer (no re-encode).

``FragmentMuxer`` feeds the access units to PyAV's mp4 muxer writing into memory with
``movflags=empty_moov+default_base_moof+frag_every_frame``: the init segment (ftyp+moov, no samples)
is written once, at the first keyframe, then one fragment (moof+mdat) per access unit. FFmpeg closes
a fragment when the *next* packet arrives (that is when it knows the sample's duration; an explicit
flush, ``av_write_frame(ctx, NULL)``, is not reachable from PyAV 18), so fragment N comes out of
``add`` of access unit N+1: one frame interval of latency, in exchange for exact durations. (The way
to get that frame back is an ``OutputContainer.flush()`` in PyAV calling ``av_write_frame(ctx,
NULL)``; zero-size packets do not do it, the muxer drops them.) The avcC box is FFmpeg's own, made by
PyAV's ``add_mux_stream`` from the first keyframe's SPS/PPS; nothing here writes boxes by hand.

``LiveFragments`` is what the HTTP bridge keeps per stream for its viewers: the init segment and the
fragments since the latest keyframe. A new viewer gets the init segment and that GOP (its picture
comes at once, not up to ``keyint`` frames later); a viewer that falls so far behind that the
fragment it needs is gone skips to the latest keyframe instead of queueing.

Timestamps are the muxer's timeline (``zmqcam.video.timeline``): 0 at the first access unit it
muxed, then capture-time based. A late joiner therefore starts at some t > 0 (its first fragment's
``tfdt``): ffmpeg and ffprobe show that as the stream's start_time, and an MSE player seeks to the
start of what it has buffered (``mse_player.js`` does). Rewriting timestamps per viewer would mean
muxing per viewer, which is what this design avoids.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from fractions import Fraction
from typing import NamedTuple

import av
import av.error

from zmqcam.errors import VideoError
from zmqcam.video.timeline import TIME_BASE, Timeline

__all__ = ["FRAGMENT_MOVFLAGS", "MIME_TYPE", "Fragment", "FragmentMuxer", "LiveFragments", "codec_string"]

#: one fragment per access unit, an init segment without samples, offsets relative to each moof
FRAGMENT_MOVFLAGS = "empty_moov+default_base_moof+frag_every_frame"
MIME_TYPE = "video/mp4"


class Fragment(NamedTuple):
    """One moof+mdat holding one access unit. ``seq`` counts the muxer's fragments from 0."""

    data: bytes
    keyframe: bool
    seq: int
    capture_ns: int


class _Sink(io.RawIOBase):
    """Where the muxer writes: collects the bytes until ``take``."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._chunks.append(bytes(b))
        return len(b)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def codec_string(init_segment: bytes) -> str:
    """The RFC 6381 codec of the init segment's H.264 track, e.g. ``avc1.64001f`` (profile,
    constraints, level from the avcC box FFmpeg wrote), for ``MediaSource.isTypeSupported``."""
    at = init_segment.find(b"avcC")
    if at < 0 or len(init_segment) < at + 8:
        raise VideoError("the init segment has no avcC box: not an H.264 track")
    return "avc1." + init_segment[at + 5 : at + 8].hex()


class FragmentMuxer:
    """H.264 access units of one stream -> an init segment, then one ``Fragment`` per access unit.

    ``width``, ``height`` are the coded size (``H264Encoder.coded_size``). Access units before the
    first keyframe are dropped (counted in ``dropped``): the init segment needs its SPS/PPS.
    """

    def __init__(self, width: int, height: int, fps: float = 30.0) -> None:
        self.size = (width, height)
        self.fps = fps
        self.init_segment: bytes | None = None
        self.timeline = Timeline()
        self.dropped = 0
        self._seq = 0
        self._pending: tuple[bool, int] | None = None  # the muxed access unit whose fragment is not out yet
        self._sink = _Sink()
        self._container: av.container.OutputContainer | None = av.open(
            self._sink, "w", format="mp4", options={"movflags": FRAGMENT_MOVFLAGS, "flush_packets": "1"}
        )
        self._stream = self._container.add_mux_stream(
            "h264", rate=Fraction(fps).limit_denominator(1001), width=width, height=height
        )
        self._stream.time_base = TIME_BASE
        self._duration = round(TIME_BASE.denominator / fps)

    def add(self, data: bytes, keyframe: bool, capture_ns: int) -> list[Fragment]:
        """Mux one access unit; returns the fragments completed by it (the previous access unit's)."""
        if self._container is None:
            raise VideoError("the muxer is closed")
        if self.init_segment is None and not keyframe:
            self.dropped += 1
            return []
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = self.timeline.stamp(capture_ns)
        packet.duration = self._duration  # a guess FFmpeg replaces by the real gap to the next one
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except av.error.FFmpegError as exc:
            raise VideoError(f"mp4 muxer refused an access unit of {len(data)} bytes: {exc}") from exc
        out = self._sink.take()
        if self.init_segment is None:
            self.init_segment = out
            out = b""
        fragments = self._fragment(out)
        self._pending = (keyframe, capture_ns)
        return fragments

    def _fragment(self, data: bytes) -> list[Fragment]:
        if not data:
            return []
        if self._pending is None or data[4:8] != b"moof":
            raise VideoError(f"the mp4 muxer wrote {len(data)} bytes that are not one fragment")
        keyframe, capture_ns = self._pending
        self._pending = None
        fragment = Fragment(data, keyframe, self._seq, capture_ns)
        self._seq += 1
        return [fragment]

    def close(self) -> list[Fragment]:
        """Finish: returns the last access unit's fragment (and writes no index: nobody could seek)."""
        if self._container is None:
            return []
        container, self._container = self._container, None
        try:
            container.close()
        except av.error.FFmpegError as exc:
            raise VideoError(f"mp4 muxer failed to finish: {exc}") from exc
        data = self._sink.take()
        # the trailer of a fragmented file is an mfra index after the last fragment: not for a live stream
        end = data.find(b"mfra") - 4 if b"mfra" in data else len(data)
        return self._fragment(data[:end]) if self.init_segment is not None else []


class LiveFragments:
    """The init segment and the fragments since the latest keyframe, for viewers to join and follow.

    A viewer keeps a cursor: the ``seq`` of the next fragment it needs. ``join`` gives a new viewer
    the init segment and the current GOP; ``since(cursor)`` what to send next. When the fragment at
    the cursor is gone (a new keyframe replaced the GOP it was in, or it was skipped), the viewer is
    moved to the latest keyframe: it skips, it never queues more than one GOP.
    """

    def __init__(self, max_gop: int = 600) -> None:
        #: fragments kept at most: a stream whose keyframes are further apart than this is not cached
        #: past it (new viewers then wait for the next keyframe)
        self.max_gop = max_gop
        self.init_segment: bytes | None = None
        self.gop: list[Fragment] = []
        self.skips = 0

    def add(self, fragments: Iterable[Fragment]) -> None:
        for fragment in fragments:
            if fragment.keyframe:
                self.gop = [fragment]
            elif self.gop and len(self.gop) < self.max_gop and fragment.seq == self.gop[-1].seq + 1:
                self.gop.append(fragment)
            else:
                self.gop = []

    @property
    def next_seq(self) -> int | None:
        return self.gop[-1].seq + 1 if self.gop else None

    def join(self) -> tuple[list[bytes], int | None]:
        """What a new viewer is sent first (init segment + the current GOP), and its cursor. Before
        the first keyframe: nothing, and a cursor of None (call ``since(None)`` later)."""
        if self.init_segment is None or not self.gop:
            return [], None
        return [self.init_segment, *(f.data for f in self.gop)], self.gop[-1].seq + 1

    def since(self, cursor: int | None) -> tuple[list[bytes], int | None]:
        """What a viewer whose cursor is ``cursor`` is sent now, and its new cursor."""
        if not self.gop:
            return [], cursor
        if cursor is None:
            return self.join()
        first = self.gop[0].seq
        if cursor < first:  # what it needs is gone: on to the latest keyframe
            self.skips += 1
            return [f.data for f in self.gop], self.gop[-1].seq + 1
        return [f.data for f in self.gop[cursor - first :]], max(cursor, self.gop[-1].seq + 1)
