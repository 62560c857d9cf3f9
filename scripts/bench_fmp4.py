"""A fragmented MP4 body read as it arrives (for scripts/bench_viewers.py): which fragment ended, and its time.

``Fragments.feed`` takes the bytes of a ``/stream.mp4`` body (after the HTTP header) in whatever
pieces the socket gives and returns, for each fragment (moof + its mdat) whose last byte was in
that piece, the fragment's decode time: ``moof/traf/tfdt``'s baseMediaDecodeTime, in the bridge
muxer's ticks (``zmqcam.video.timeline.TIME_BASE``, counted from the response's
``X-Capture-Origin-Ns``). Only box headers and the small moof boxes are kept; the mdat (the picture)
and every other box are skipped as they stream by, so a hundred viewers cost little. This walks
boxes (ISO/IEC 14496-12: 32-bit size, type, 64-bit size when the first is 1) and reads one field;
decoding or checking anything else is FFmpeg's job (tests/bridge/test_mp4.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = ["Fragments", "decode_time"]

HEADER = 8  # size (32 bits) + type
LARGE_HEADER = 16  # ... + a 64-bit size, when the 32-bit one is 1
MAX_MOOF = 1 << 20  # a moof kept whole is at most this big (one frame's is about 100 bytes)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, body start, body end) of the boxes in ``data[start:end]``."""
    at = start
    while at + HEADER <= end:
        size, kind = struct.unpack_from(">I4s", data, at)
        head = HEADER
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, at + HEADER)
            head = LARGE_HEADER
        if size < head or at + size > end:
            return
        yield kind, at + head, at + size
        at += size


def decode_time(moof: bytes) -> int | None:
    """The first track's tfdt (baseMediaDecodeTime) of a whole moof box, or None if it has none."""
    for kind, start, end in _boxes(moof, 0, len(moof)):
        for traf, t0, t1 in _boxes(moof, start, end) if kind == b"moof" else ():
            for tfdt, b0, b1 in _boxes(moof, t0, t1) if traf == b"traf" else ():
                if tfdt == b"tfdt" and b1 - b0 >= 8:
                    version = moof[b0]  # then 3 bytes of flags; version 1 has a 64-bit time
                    return int(struct.unpack_from(">Q" if version else ">I", moof, b0 + 4)[0])
    return None


class Fragments:
    """Top-level boxes of an fMP4 body, fed piece by piece; see the module's docstring."""

    def __init__(self) -> None:
        self.head = bytearray()  # a box header being received, then the whole moof
        self.want = HEADER  # bytes ``head`` must hold before it is looked at
        self.skip = 0  # bytes of the current box still to let by unread
        self.in_mdat = False  # the skipped box is the mdat of the moof whose decode time is below
        self.pending: int | None = None  # decode time of the last moof, until its mdat has ended

    def feed(self, data: bytes) -> list[int]:
        ended: list[int] = []
        at, end = 0, len(data)
        while at < end:
            if self.skip:
                n = min(self.skip, end - at)
                self.skip -= n
                at += n
                if not self.skip and self.in_mdat and self.pending is not None:
                    ended.append(self.pending)
                    self.pending = None
                continue
            n = min(self.want - len(self.head), end - at)
            self.head += data[at : at + n]
            at += n
            if len(self.head) < self.want:
                break
            fragment = self._box()
            if fragment is not None:
                ended.append(fragment)
        return ended

    def _box(self) -> int | None:
        """``head`` holds ``want`` bytes: decide what the box is and how to go on. Returns the
        fragment's decode time if its mdat is empty (so it ended here)."""
        size, kind = struct.unpack_from(">I4s", self.head)
        head = HEADER
        if size == 1:
            if len(self.head) < LARGE_HEADER:
                self.want = LARGE_HEADER
                return None
            (size,) = struct.unpack_from(">Q", self.head, HEADER)
            head = LARGE_HEADER
        if kind == b"moof" and head <= size <= MAX_MOOF and len(self.head) < size:
            self.want = size  # keep it whole: the decode time is inside
            return None
        if kind == b"moof" and len(self.head) == size:
            self.pending = decode_time(bytes(self.head))
        # any other box (or a moof too big to be one) is let by; a size of 0 (to the end of the
        # stream) or a malformed one: nothing more to find
        self.skip = size - len(self.head) if head <= size and len(self.head) <= size else 1 << 62
        self.in_mdat = kind == b"mdat"
        self.head.clear()
        self.want = HEADER
        if self.in_mdat and not self.skip:
            fragment, self.pending = self.pending, None
            return fragment
        return None
