"""Push H.264 access units to a media server (RTSP ANNOUNCE/RECORD, as MediaMTX accepts, or RTMP),
remuxed by FFmpeg's rtsp/flv muxers through PyAV: nothing is re-encoded.

``Pusher`` is one connection: FFmpeg connects (and sends ANNOUNCE with the SDP built from the first
keyframe's SPS/PPS, then RECORD) when the first access unit is written, so a push always starts at a
keyframe; access units before it are dropped. A server that goes away makes the next write or the
one after it fail with ``BrokenPipeError``/``ConnectionResetError`` (both ``av.error.FFmpegError``
and ``OSError``), a server that is not there makes the first write fail with
``ConnectionRefusedError``: all become ``PushError``.

``PushWorker`` is what the daemon runs per publish target: a thread owning one ``Pusher`` at a time.
``offer`` never blocks (a bounded queue; when the connection cannot keep up the queue is dropped and
the push resumes at the next keyframe), the thread reconnects with jittered exponential backoff
(0.5 s doubling to 30 s, like the grabbers), and ``stats`` says what happened. A write can block
as long as the server stops reading without closing (its TCP window full): that is the worker
thread's time, never the caller's. It is long: FFmpeg's RTSP muxer waits out its socket timeout for
each RTP packet (about 1.4 KB) and ignores the error, so one keyframe can block for minutes, and
PyAV has no interrupt for output containers. ``stats()["writing_for"]`` shows such a write; a
watchdog that must get rid of it needs the push in a process it can kill: run publish targets in a
child process of their own (the supervisor's restart-with-budget shell) watched on ``writing_for``.
For RTMP it is worse: PyAV opens rtmp:// URLs without options, so there is no socket timeout at all.
Tested against ``ffmpeg -rtsp_flags listen`` and ``ffmpeg -listen 1`` (what MediaMTX documents for
ffmpeg publishing), not against MediaMTX itself.
"""

from __future__ import annotations

import collections
import contextlib
import random
import threading
import time
from fractions import Fraction
from typing import Any
from urllib.parse import urlsplit

import av
import av.error

from zmqcam.errors import PushError, VideoError
from zmqcam.video.timeline import TIME_BASE, Timeline

__all__ = ["BACKOFF", "CONNECTING", "COUNTERS", "LIVE", "STOPPED", "PushError", "PushWorker", "Pusher", "push_format"]

#: a ``PushWorker``'s states (``stats()["state"]``)
CONNECTING = "connecting"
LIVE = "live"
BACKOFF = "backoff"
STOPPED = "stopped"
#: the counters ``stats()`` carries: totals since the worker started
COUNTERS = ("connects", "failures", "sent", "dropped")

#: the muxer and its options per URL scheme
_FORMATS = {"rtsp": "rtsp", "rtsps": "rtsp", "rtmp": "flv", "rtmps": "flv"}
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0


def push_format(url: str) -> str:
    """The FFmpeg muxer for a publish URL: rtsp for rtsp(s)://, flv for rtmp(s)://."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in _FORMATS or not urlsplit(url).hostname:
        raise VideoError(f"publish url {url!r}: must be rtsp://host[:port]/path or rtmp://host[:port]/app/key")
    return _FORMATS[scheme]


class Pusher:
    """One connection to a media server. ``write`` access units, starting at a keyframe; ``close``."""

    def __init__(self, url: str, width: int, height: int, fps: float = 30.0, timeout: float = 5.0) -> None:
        self.url = url
        self.format = push_format(url)
        self.timeline = Timeline()
        self.sent = 0
        self.skipped = 0
        # RTSP over TCP (no lost packets, one port); its socket timeout. RTMP gets none: PyAV opens
        # the rtmp:// URL without options (rw_timeout given to the muxer is ignored, with a warning)
        micros = str(int(timeout * 1_000_000))
        options = {"rtsp_transport": "tcp", "timeout": micros} if self.format == "rtsp" else {}
        try:
            self._container: Any = av.open(url, "w", format=self.format, options=options)
        except (av.error.FFmpegError, OSError) as exc:
            raise PushError(f"{url}: {exc}") from exc
        self._stream = self._container.add_mux_stream(
            "h264", rate=Fraction(fps).limit_denominator(1001), width=width, height=height
        )
        self._stream.time_base = TIME_BASE

    def write(self, data: bytes, keyframe: bool, capture_ns: int) -> bool:
        """Send one access unit; False if it was skipped (nothing sent yet and not a keyframe)."""
        if self._container is None:
            raise PushError(f"{self.url}: closed")
        if not self.sent and not keyframe:
            self.skipped += 1
            return False
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts = packet.dts = self.timeline.stamp(capture_ns)
        packet.is_keyframe = keyframe
        try:
            self._container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise PushError(f"{self.url}: {exc}") from exc
        self.sent += 1
        return True

    def close(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        # sends TEARDOWN to a live server; to a dead one it fails, and that is fine
        with contextlib.suppress(av.error.FFmpegError, OSError):
            container.close()


class PushWorker:
    """Keeps pushing one stream to one URL: a thread, a bounded queue, reconnection with backoff.

    States: ``connecting`` (waiting for a keyframe to open the connection with), ``live``,
    ``backoff`` (the last attempt failed; ``retry_in`` seconds to the next), ``stopped``.
    """

    def __init__(
        self,
        url: str,
        width: int,
        height: int,
        fps: float = 30.0,
        *,
        timeout: float = 5.0,
        max_queue: int = 60,
        backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_MAX),
    ) -> None:
        push_format(url)  # a bad URL is the caller's error, now, not a backoff loop
        self.url = url
        self._args = (width, height, fps, timeout)
        self.max_queue = max_queue
        self.backoff = backoff
        self.state = STOPPED
        self.connects = 0
        self.failures = 0
        self.sent = 0
        self.dropped = 0
        self.last_error = ""
        self.retry_at = 0.0
        self._write_started: float | None = None  # monotonic time of the write in progress
        self._queue: collections.deque[tuple[bytes, bool, int]] = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._resync = False  # the queue was dropped: accept nothing before the next keyframe
        self._thread: threading.Thread | None = None

    def start(self) -> PushWorker:
        self._stop = False
        self.state = CONNECTING
        self._thread = threading.Thread(target=self._run, name=f"push:{self.url}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self.state = STOPPED

    def offer(self, data: bytes, keyframe: bool, capture_ns: int) -> None:
        """Queue one access unit for the thread; never blocks. A full queue (the server is slower than
        the stream, or the thread is in backoff) is dropped: the push resumes at the next keyframe."""
        with self._cond:
            if len(self._queue) >= self.max_queue:
                self.dropped += len(self._queue)
                self._queue.clear()
                self._resync = True
            if not keyframe and not self._queue and (self._resync or self.state != LIVE):
                self.dropped += 1  # it needs the frames before it, which the server will not get
                return
            if keyframe:
                self._resync = False
            self._queue.append((data, keyframe, capture_ns))
            self._cond.notify()

    def stats(self) -> dict[str, Any]:
        now = time.monotonic()
        retry_in = max(0.0, self.retry_at - now) if self.state == BACKOFF else 0.0
        started = self._write_started
        return {"url": self.url, "state": self.state, "connects": self.connects, "failures": self.failures,
                "sent": self.sent, "dropped": self.dropped, "last_error": self.last_error,
                "retry_in": round(retry_in, 3), "writing_for": round(now - started, 3) if started else 0.0}  # fmt: skip

    def _next(self) -> tuple[bytes, bool, int] | None:
        with self._cond:
            while not self._queue and not self._stop:
                self._cond.wait()
            return None if self._stop else self._queue.popleft()

    def _run(self) -> None:
        delay = self.backoff[0]
        pusher: Pusher | None = None
        while True:
            item = self._next()
            if item is None:
                break
            data, keyframe, capture_ns = item
            if pusher is None and not keyframe:  # a connection starts at a keyframe: its SPS/PPS make the SDP
                self.dropped += 1
                continue
            try:
                # the connect counts as a write: RTMP connects (and may hang) when the muxer is opened
                self._write_started = time.monotonic()
                try:
                    if pusher is None:
                        pusher = Pusher(self.url, *self._args)
                    pusher.write(data, keyframe, capture_ns)
                finally:
                    self._write_started = None
                if pusher.sent == 1:
                    self.connects += 1
                    self.state = LIVE
                    delay = self.backoff[0]
                self.sent += 1
            except PushError as exc:
                if pusher is not None:
                    pusher.close()
                    pusher = None
                self.failures += 1
                self.last_error = str(exc)
                self.state = BACKOFF
                wait = delay * random.uniform(0.8, 1.2)
                delay = min(delay * 2, self.backoff[1])
                self.retry_at = time.monotonic() + wait
                with self._cond:
                    self._cond.wait_for(lambda: self._stop, timeout=wait)
                    self.dropped += len(self._queue)  # old by now; start again at a keyframe
                    self._queue.clear()
                self.state = CONNECTING
        if pusher is not None:
            pusher.close()
