"""The bridge's ZeroMQ side: one ``Channel`` per stream, subscribed only while HTTP clients want it.

A channel holds the newest frame of one ``<stream> jpeg`` topic, already wrapped as a multipart part
(headers + the JPEG exactly as published + the next boundary), built once per frame however many
clients read it. Clients never queue frames: each writer remembers the generation it sent last and,
once its previous write has finished, takes whatever is newest (``wait_newer``).

Demand: ``acquire`` / ``release`` count the HTTP clients of a channel; the first one subscribes the
channel's SUB socket, the last one unsubscribes it, so an empty bridge lets the cameras sleep.
Status topics are subscribed permanently on a separate socket: they never count as demand.

``Mp4Channel`` is the panorama's ``pano h264`` topic for ``/stream.mp4``: one fMP4 muxer per bridge,
made at the first viewer's first keyframe and dropped with the last viewer, whose fragments every
viewer shares (``zmqcam.video.fmp4.LiveFragments``: a new viewer gets the init segment and the GOP in
progress, a viewer that fell more than a GOP behind skips to the newest keyframe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import zmq
import zmq.asyncio

from zmqcam.bus import curve, protocol, sockets
from zmqcam.bus.curve import ClientKeys
from zmqcam.bus.status import LIVE
from zmqcam.config import Config
from zmqcam.errors import ProtocolError, VideoError
from zmqcam.names import PANO
from zmqcam.video.fmp4 import FragmentMuxer, LiveFragments, codec_string

log = logging.getLogger(__name__)

#: the multipart boundary; every part ends with the next boundary line so that browsers show a frame
#: as soon as it is complete instead of when the next one starts (ustreamer does the same)
BOUNDARY = "frame"
OPENING = f"--{BOUNDARY}\r\n".encode()
_TRAILER = f"\r\n--{BOUNDARY}\r\n".encode()
#: a new viewer's first part is the channel's newest frame when it is younger than this (or than two
#: frame intervals of a slow camera), else the waiting card; the stream's state header says which
FRESH_FOR = 2.0
#: with no new frame, a stream repeats the newest one while it is younger than this (or than three
#: frame intervals); after that viewers see the card
REPEAT_FOR = 10.0
#: with no new frame for this long, a channel wakes its waiting writers to repeat the newest frame (or
#: the card): players keep the connection open and the bridge notices viewers that went away
KEEPALIVE = 2.0

WAKING = "waking"


@dataclass(frozen=True, slots=True)
class Part:
    """One frame as the bridge serves it."""

    seq: int
    capture_ns: int
    width: int
    height: int
    jpeg: bytes
    #: the whole multipart part: headers, the JPEG, the next boundary
    chunk: bytes
    #: monotonic time the frame arrived
    received: float
    state: str
    #: when the oldest camera frame it shows was captured (ns since the epoch): for a panorama, the
    #: earliest capture among its live cameras; for a camera, its capture time
    oldest_capture_ns: int


def oldest_capture(frame: protocol.Frame) -> int:
    """The capture time of the oldest camera frame ``frame`` shows: for a panorama, the earliest
    among the cameras its header lists as live (a panorama with none live shows only NO SIGNAL cards,
    made when it was published); for a camera frame, its own capture time."""
    sources = frame.extra.get("sources")
    if frame.stream != PANO or not isinstance(sources, list):
        return frame.capture_ns
    captures = [
        s["t_cap"] for s in sources if isinstance(s, dict) and s.get("state") == LIVE and type(s.get("t_cap")) is int
    ]
    return min(captures) if captures else frame.publish_ns


def make_part(
    jpeg: bytes | memoryview,
    seq: int,
    capture_ns: int,
    width: int,
    height: int,
    state: str,
    oldest_capture_ns: int | None = None,
) -> Part:
    jpeg = bytes(jpeg)
    # Content-Length and X-Timestamp as the ESP32-CAM firmware and ustreamer send them
    head = (
        "Content-Type: image/jpeg\r\n"
        f"Content-Length: {len(jpeg)}\r\n"
        f"X-Timestamp: {capture_ns // 1_000_000_000}.{capture_ns // 1000 % 1_000_000:06d}\r\n"
        f"X-Zmqcam-Seq: {seq}\r\n"
        f"X-Zmqcam-State: {state}\r\n"
        "\r\n"
    ).encode("ascii")
    chunk = b"".join((head, jpeg, _TRAILER))
    oldest = capture_ns if oldest_capture_ns is None else oldest_capture_ns
    return Part(seq, capture_ns, width, height, jpeg, chunk, time.monotonic(), state, oldest)


class Channel:
    """The newest frame of one stream's ``jpeg`` topic and the HTTP clients that want it."""

    def __init__(self, stream: str, sock: zmq.asyncio.Socket, card: Part, fps: float) -> None:
        self.stream = stream
        self.kind = protocol.JPEG
        self.fresh_for = max(FRESH_FOR, 2.0 / fps)
        self.repeat_for = max(REPEAT_FOR, 3.0 / fps)
        self.topic = protocol.topic(stream, self.kind)
        self.sock = sock
        #: what a viewer sees while the stream has no frames (made once at startup)
        self.card = card
        #: the newest frame received during the current subscription; None while unsubscribed
        self.latest: Part | None = None
        #: bumped on every new frame; writers compare it with the generation they sent last
        self.gen = 0
        self.users = 0
        self.subscribed_since: float | None = None
        self.received = 0
        self.malformed = 0
        self.skipped = 0  # frames some client did not get because a newer one replaced them
        self.sent = 0  # stream parts written to clients
        self.sent_bytes = 0  # bytes of stream parts and snapshots written to clients
        self.keepalive = KEEPALIVE
        self._changed = asyncio.Event()
        # one keepalive timer per channel, running while it has users, re-armed lazily from the last
        # wake-up: no per-client, per-frame timer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_wake = 0.0
        self._ticker: asyncio.TimerHandle | None = None

    def acquire(self) -> None:
        self.users += 1
        if self.users == 1:
            self.sock.setsockopt(zmq.SUBSCRIBE, self.topic)
            self.subscribed_since = time.monotonic()
            self._loop = asyncio.get_running_loop()
            self._last_wake = self._loop.time()
            self._ticker = self._loop.call_at(self._last_wake + self.keepalive, self._tick)
            log.debug("%s: first HTTP client, subscribing", self.stream)

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.sock.setsockopt(zmq.UNSUBSCRIBE, self.topic)
            self.subscribed_since = None
            self.latest = None
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None
            log.debug("%s: last HTTP client left, unsubscribing", self.stream)

    def offer(self, frame: protocol.Frame) -> None:
        """Make ``frame`` the newest and wake every waiting writer."""
        if self.subscribed_since is None:
            return  # queued before we unsubscribed: nobody wants it
        self.received += 1
        self.latest = make_part(
            frame.payload, frame.seq, frame.capture_ns, frame.width, frame.height, LIVE, oldest_capture(frame)
        )
        self.gen += 1
        self.wake()

    def wake(self) -> None:
        """Wake every waiting writer (a new frame, a keepalive, shutdown)."""
        if self._loop is not None:
            self._last_wake = self._loop.time()
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _tick(self) -> None:
        assert self._loop is not None
        due = self._last_wake + self.keepalive
        if self._loop.time() >= due - 0.001:  # call_at may fire up to the clock resolution early
            self.wake()
            due = self._last_wake + self.keepalive
        self._ticker = self._loop.call_at(due, self._tick)

    async def wait_newer(self, gen: int, timeout: float | None = None) -> bool:
        """Wait until a frame newer than generation ``gen`` arrives; False when woken without one
        (a keepalive every ``keepalive`` seconds while the channel has users, or shutdown) or after
        ``timeout``. Writers wait without a timeout: ``asyncio.wait_for`` costs a task and a timer
        per frame per client (with it, and one per write, the bridge used 2.4x the CPU at 100 viewers)."""
        if self.gen != gen:
            return True
        if timeout is None:
            await self._changed.wait()
        else:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return self.gen != gen

    def fresh(self) -> Part | None:
        """The newest frame if it arrived during this subscription and recently."""
        part = self.latest
        if part is not None and time.monotonic() - part.received < self.fresh_for:
            return part
        return None

    def recent(self) -> Part | None:
        """The newest frame if it is recent enough to repeat while nothing newer comes."""
        part = self.latest
        if part is not None and time.monotonic() - part.received < self.repeat_for:
            return part
        return None

    @property
    def state(self) -> str:
        return LIVE if self.fresh() is not None else WAKING


class Mp4Channel(Channel):
    """``<stream> h264`` muxed once into fragmented MP4 for every ``/stream.mp4`` viewer.

    ``live`` holds the init segment and the current GOP's fragments; ``gen`` is bumped at every new
    fragment. ``epoch`` changes when the muxer is replaced (the last viewer left, or the coded size
    changed): a viewer that joined an older muxer must reconnect, as its init segment no longer fits.
    An access unit lost on the bus (a gap in ``x.au``) stops the muxing until the next keyframe, so
    no viewer is sent a picture built on a missing reference.
    """

    def __init__(self, stream: str, sock: zmq.asyncio.Socket, card: Part, fps: float) -> None:
        super().__init__(stream, sock, card, fps)
        self.kind = protocol.H264
        self.topic = protocol.topic(stream, self.kind)
        self.muxer: FragmentMuxer | None = None
        self.live = LiveFragments()
        self.codec = ""
        self.epoch = 0
        self.fragments = 0  # fragments muxed
        self.timeouts = 0  # viewers answered 503: no keyframe in time
        self.skips_before = 0  # viewer skips counted by muxers already dropped
        self.gate = protocol.UnitGate()  # the muxer takes units from a keyframe on, and after a gap

    @property
    def gaps(self) -> int:
        """Access units lost on the bus (the muxing waited for the next keyframe)."""
        return self.gate.gaps

    @property
    def skips(self) -> int:
        """Times a slow viewer was moved on to the newest keyframe."""
        return self.skips_before + self.live.skips

    @property
    def origin_ns(self) -> int | None:
        """The capture time of media time 0 of the current muxer (``X-Capture-Origin-Ns``)."""
        return self.muxer.timeline.origin_ns if self.muxer is not None else None

    def ready(self) -> bool:
        """Whether a viewer can start: an init segment and a GOP to send."""
        return self.live.init_segment is not None and bool(self.live.gop)

    def release(self) -> None:
        super().release()
        if self.users == 0:
            self._reset()

    def _reset(self, keep_gate: bool = False) -> None:
        """Drop the muxer and what viewers were sent; the next unit muxed must be a keyframe (unless
        ``keep_gate``: the unit at hand is one)."""
        if self.muxer is not None:
            with contextlib.suppress(VideoError):
                self.muxer.close()
        self.skips_before += self.live.skips
        self.muxer = None
        self.live = LiveFragments()
        self.codec = ""
        self.epoch += 1
        if not keep_gate:
            self.gate.restart()

    def offer(self, frame: protocol.Frame) -> None:
        if self.subscribed_since is None:
            return
        self.received += 1
        if not self.gate.admit(frame):
            return
        size = (frame.extra["coded_w"], frame.extra["coded_h"])
        if self.muxer is not None and self.muxer.size != size:
            log.info("%s h264: coded size changed to %dx%d: viewers start over", self.stream, *size)
            self._reset(keep_gate=True)  # this keyframe starts the new muxer
            self.wake()  # viewers of the old muxer end
        if self.muxer is None:
            fps = frame.extra.get("fps")
            self.muxer = FragmentMuxer(*size, fps=float(fps) if isinstance(fps, (int, float)) and fps > 0 else 30.0)
        try:
            fragments = self.muxer.add(bytes(frame.payload), frame.keyframe, frame.capture_ns)
        except VideoError as exc:
            self.malformed += 1
            log.warning("%s h264: %s", self.stream, exc)
            self._reset()
            self.wake()
            return
        if self.live.init_segment is None and self.muxer.init_segment is not None:
            self.live.init_segment = self.muxer.init_segment
            self.codec = codec_string(self.muxer.init_segment)
        if fragments:
            self.live.add(fragments)
            self.fragments += len(fragments)
            self.gen += 1
            self.wake()


def _subscriber(
    ctx: zmq.asyncio.Context,
    endpoints: list[str],
    topics: list[bytes] | None = None,
    curve: ClientKeys | None = None,
    rcvhwm: int = sockets.RECV_HWM,
) -> zmq.asyncio.Socket:
    """``sockets.make_subscriber`` on an asyncio context (which makes asyncio sockets)."""
    return cast(zmq.asyncio.Socket, sockets.make_subscriber(ctx, endpoints, topics or [], curve=curve, rcvhwm=rcvhwm))


class Hub:
    """Every ZeroMQ socket of the bridge: a SUB per stream for frames, one SUB for all status."""

    def __init__(self, config: Config, ctx: zmq.asyncio.Context, cards: Callable[[str], Part]) -> None:
        self.config = config
        self.channels: dict[str, Channel] = {}
        endpoints: dict[str, str] = {}
        rates: dict[str, float] = {}
        if config.stitch.enabled:
            endpoints[PANO] = config.consumer_endpoint(PANO)
            rates[PANO] = config.pano_fps
        for cam in config.camera:
            endpoints[cam.name] = config.consumer_endpoint(cam.name)
            rates[cam.name] = cam.fps
        self._sockets: list[zmq.asyncio.Socket] = []
        keys = curve.client_keys(config)
        try:
            for stream, endpoint in endpoints.items():
                sock = _subscriber(ctx, [endpoint], curve=keys)
                self._sockets.append(sock)
                self.channels[stream] = Channel(stream, sock, cards(stream), rates[stream])
            #: /stream.mp4: the panorama's h264 topic, on a socket of its own
            self.mp4: Mp4Channel | None = None
            if PANO in endpoints:
                sock = _subscriber(ctx, [endpoints[PANO]], curve=keys, rcvhwm=sockets.H264_RECV_HWM)
                self._sockets.append(sock)
                self.mp4 = Mp4Channel(PANO, sock, self.channels[PANO].card, rates[PANO])
            status_topics = [protocol.topic(s, protocol.STATUS) for s in endpoints]
            self.status_sock = _subscriber(ctx, sorted(set(endpoints.values())), status_topics, curve=keys)
            self._sockets.append(self.status_sock)
        except BaseException:
            self.close()
            raise
        #: stream -> (its newest status, monotonic time it arrived)
        self.statuses: dict[str, tuple[dict[str, Any], float]] = {}
        #: since when the bridge listens for status: a stream not heard from is "unknown" at first
        self.listening_since = time.monotonic()
        self.malformed = 0
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._read_frames(ch), name=f"frames-{ch.stream}-{ch.kind}")
            for ch in self.all_channels()
        ]
        self._tasks.append(asyncio.create_task(self._read_status(), name="status"))

    async def _read_frames(self, channel: Channel) -> None:
        sock = channel.sock
        while True:
            parts = await sock.recv_multipart(copy=False)
            try:
                frame = protocol.decode(parts)
            except ProtocolError as exc:
                channel.malformed += 1
                log.debug("%s: dropped a malformed message: %s", channel.stream, exc)
                continue
            if frame.stream != channel.stream or frame.kind != channel.kind:
                channel.malformed += 1
                continue
            channel.offer(frame)

    async def _read_status(self) -> None:
        while True:
            parts = await self.status_sock.recv_multipart()
            try:
                stream, body = protocol.decode_status(parts)
            except ProtocolError as exc:
                self.malformed += 1
                log.debug("dropped a malformed status message: %s", exc)
                continue
            self.statuses[stream] = (body, time.monotonic())

    def status_of(self, stream: str) -> tuple[dict[str, Any] | None, float | None]:
        """The newest status a process published, and its age in seconds (None, None if never)."""
        entry = self.statuses.get(stream)
        if entry is None:
            return None, None
        return entry[0], time.monotonic() - entry[1]

    def all_channels(self) -> list[Channel]:
        """The JPEG channels and, when the panorama is stitched, /stream.mp4's."""
        return [*self.channels.values(), *([self.mp4] if self.mp4 is not None else [])]

    def subscriptions(self) -> list[str]:
        return [f"{ch.stream} {ch.kind}" for ch in self.all_channels() if ch.users > 0]

    def wake_all(self) -> None:
        for channel in self.all_channels():
            channel.wake()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, zmq.ZMQError):
                await task
        self._tasks = []
        self.close()

    def close(self) -> None:
        for sock in self._sockets:
            sock.close(linger=0)
        self._sockets = []
