"""What every H.264 piece shares: the time base, capture time -> timestamps, and the error type.

Frames arrive at irregular times (cameras drop frames, the stitcher waits for late cameras), so
timestamps come from each frame's capture time, never from a frame counter: a player then shows the
scene at the pace it happened. Every piece (encoder, fMP4 muxer, recorder, pusher) counts in
``TIME_BASE`` (90 kHz, the clock of RTP video, of MPEG-TS and of most MP4 video tracks) from an
origin of its own: the capture time of the first frame it saw.
"""

from __future__ import annotations

from fractions import Fraction

from zmqcam.errors import VideoError

__all__ = ["NS_PER_SECOND", "TIME_BASE", "Timeline"]

#: timestamps of every H.264 piece count in this unit (90 kHz: RTP, MPEG-TS and MP4 video use it)
TIME_BASE = Fraction(1, 90_000)
NS_PER_SECOND = 1_000_000_000


class Timeline:
    """Capture times (ns since the epoch) -> strictly increasing timestamps in ``TIME_BASE``.

    The origin is the first capture time seen (timestamp 0); times round to the nearest tick. A
    capture time at or before the last one (two frames of the same capture, a clock step backwards)
    becomes last + 1 tick: muxers and encoders reject timestamps that do not increase, and one tick
    (11 us) is invisible.
    """

    def __init__(self) -> None:
        self.origin_ns: int | None = None
        self.last: int | None = None

    def stamp(self, capture_ns: int) -> int:
        if self.origin_ns is None:
            self.origin_ns = capture_ns
        ts = ((capture_ns - self.origin_ns) * TIME_BASE.denominator + NS_PER_SECOND // 2) // NS_PER_SECOND
        if self.last is not None and ts <= self.last:
            ts = self.last + 1
        self.last = ts
        return ts

    def capture_ns(self, ts: int) -> int:
        """The capture time a timestamp stands for (exact to one tick)."""
        if self.origin_ns is None:
            raise VideoError("the timeline has no origin yet: no frame was stamped")
        return self.origin_ns + (ts * NS_PER_SECOND + TIME_BASE.denominator // 2) // TIME_BASE.denominator
