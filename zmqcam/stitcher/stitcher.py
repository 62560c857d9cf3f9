"""The stitcher process: camera frames in, one panorama out, made once per frame.

It subscribes to the grabbers' ``raw`` topics only while someone subscribes to its own ``pano``
topics, so "nobody watches" reaches the grabbers as "no subscribers" and they power down. Each
panorama is composed with the precomputed remap tables (``zmqcam.image.remap``) and JPEG-encoded once, and
only while ``pano jpeg`` has subscribers; ``pano h264`` is encoded, in a thread of its own, only while it
has subscribers (``zmqcam.stitcher.encoder``).

Pacing: a panorama is emitted when every live camera has delivered a new frame since the last one,
or when ``max_wait`` passes after the first new frame, so one slow camera never stalls the others.
A camera silent for ``stale_after`` seconds gets a NO SIGNAL slot and is named in the header.

Waking: every subscription starts from nothing. Frames kept from before a pause (nobody watched) say
nothing about the cameras now, so they are forgotten when the panorama is wanted again, and the first
panorama waits for every camera to deliver, for at most ``stale_after``: a camera shows NO SIGNAL only
when it has really delivered nothing for ``stale_after`` since the panorama was asked for.

Watchdog: the loop sends the process's heartbeat (``zmqcam.process.Heartbeat``), and reports itself
unhealthy when frames have been waiting for a panorama far longer than pacing allows (``health``):
the loop runs, but its work does not.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import simplejpeg
import zmq

from zmqcam.bus import curve, protocol, sockets
from zmqcam.bus.status import LIVE, NO_SIGNAL, STATUS_INTERVAL, FpsMeter, process_usage
from zmqcam.config import Config
from zmqcam.config.esp32 import Warmup
from zmqcam.errors import ProtocolError
from zmqcam.image.remap import PanoramaComposer
from zmqcam.names import PANO, STITCHER
from zmqcam.process import Heartbeat, run_child, stop_fd, stop_requested
from zmqcam.stitcher.encoder import H264_COUNTERS, PanoEncoder, encoder_settings
from zmqcam.stitcher.sync import RECENT_FRAMES, closest_frames

log = logging.getLogger(__name__)

#: while someone watches but no camera delivers, a NO SIGNAL panorama goes out this often
HEARTBEAT_INTERVAL = 1.0
#: frames waiting this many max_waits (at least STUCK_MIN seconds) past when their panorama was due
#: mean the stitcher's work is stuck
STUCK_MAX_WAITS = 5
STUCK_MIN = 2.0
_DRAIN_LIMIT = 64


@dataclass
class Slot:
    """What the stitcher knows about one camera."""

    name: str
    fps_hint: float
    #: the camera's warm-up after each (re)connect: its first frame comes that much later
    warmup: Warmup = field(default_factory=Warmup)
    frame: protocol.Frame | None = None
    arrived: float = 0.0  # monotonic time the newest frame arrived
    fresh: bool = False  # a frame arrived since the last panorama
    intervals: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=30))
    #: the last few frames, oldest first, to pick the one closest in capture time (``stitch.sync``)
    recent: collections.deque[protocol.Frame] = field(default_factory=lambda: collections.deque(maxlen=RECENT_FRAMES))

    def live(self, now: float, stale_after: float) -> bool:
        return self.frame is not None and now - self.arrived < stale_after

    def interval(self) -> float:
        """The camera's frame interval, measured; the configured fps until measured."""
        if len(self.intervals) >= 3:
            return sorted(self.intervals)[len(self.intervals) // 2]
        return 1.0 / self.fps_hint

    def warmup_seconds(self) -> float:
        """The camera's warm-up in seconds (a frame count at its measured frame interval), plus the
        interval to the first frame after it (a warm-up ends at a frame, not at its time)."""
        if self.warmup.none:
            return 0.0
        return self.warmup.seconds + (self.warmup.frames + 1) * self.interval()

    def take(self, frame: protocol.Frame, now: float) -> None:
        if self.frame is not None and self.arrived:
            self.intervals.append(now - self.arrived)
        self.frame = frame
        self.recent.append(frame)
        self.arrived = now
        self.fresh = True

    def forget(self) -> None:
        """Drop the frame: after a pause it is evidence of nothing (the measured interval stays)."""
        self.frame = None
        self.recent.clear()
        self.arrived = 0.0
        self.fresh = False


class Stitcher:
    def __init__(self, config: Config, ctx: zmq.Context[Any]) -> None:
        self.config = config
        self.cfg = config.stitch
        cameras = config.stitched_cameras
        self.composer = PanoramaComposer(
            cameras, seam=config.seam_mode, feather_px=self.cfg.feather_px, exposure=config.exposure_mode
        )
        self.slots = [Slot(c.name, c.fps, c.warmup_period) for c in cameras]
        self.by_name = {s.name: s for s in self.slots}
        self.demand = sockets.Demand()
        self.pub = sockets.make_publisher(ctx, config.pano_endpoints, curve=curve.server_keys(config))
        upstream = sorted({config.consumer_endpoint(c.name) for c in cameras})
        self.sub = sockets.make_subscriber(ctx, upstream, curve=curve.client_keys(config))
        self.raw_topics = [protocol.topic(c.name, protocol.RAW) for c in cameras]
        self.topic_raw = protocol.topic(PANO, protocol.RAW)
        self.topic_jpeg = protocol.topic(PANO, protocol.JPEG)
        self.subscribed_upstream = False
        self.subscribed_at = 0.0
        self.seq = 0
        self.last_emit = 0.0
        self.first_fresh = 0.0  # when the oldest frame not yet in a panorama arrived
        self.counters = {"panoramas": 0, "jpeg_encoded": 0, "raw_published": 0, "malformed": 0, "unknown": 0}
        self.counters.update(dict.fromkeys(H264_COUNTERS, 0))
        self.last_spread_ms = 0.0
        #: time spent composing, JPEG- and H.264-encoding panoramas: [count, seconds] (summaries in /metrics)
        self.timing: dict[str, list[Any]] = {
            "compose_seconds": [0, 0.0],
            "encode_seconds": [0, 0.0],
            "h264_encode_seconds": [0, 0.0],
        }
        self.ctx = ctx
        self.topic_h264 = protocol.topic(PANO, protocol.H264)
        #: the H.264 encoder, only while someone subscribes to pano h264
        self.h264: PanoEncoder | None = None
        self._poller = zmq.Poller()
        self._fps = FpsMeter()
        self._last_stale: set[str] = set()

    # -- demand

    def _update_upstream(self, now: float) -> None:
        wanted = self.demand.wants_frames(PANO)
        if wanted == self.subscribed_upstream:
            return
        option = zmq.SUBSCRIBE if wanted else zmq.UNSUBSCRIBE
        for t in self.raw_topics:
            self.sub.setsockopt(option, t)
        self.subscribed_upstream = wanted
        # frames from before the pause, and any still queued from the last subscription, are evidence
        # of nothing: the cameras are waking again, as on the very first request
        self._discard_queued()
        for slot in self.slots:
            slot.forget()
        self.first_fresh = 0.0
        if wanted:
            self.subscribed_at = now
            log.info("panorama wanted: subscribing to %d cameras", len(self.raw_topics))
        else:
            log.info("nobody watches the panorama: releasing the cameras")

    def _discard_queued(self) -> None:
        for _ in range(_DRAIN_LIMIT):
            try:
                self.sub.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return

    # -- input

    def _malformed(self, exc: ProtocolError) -> None:
        self.counters["malformed"] += 1
        log.debug("dropped a malformed message: %s", exc)

    def _receive(self, now: float) -> None:
        for frame in sockets.pending_frames(self.sub, _DRAIN_LIMIT, self._malformed):
            slot = self.by_name.get(frame.stream)
            if slot is None or frame.kind != protocol.RAW:
                self.counters["unknown"] += 1
                continue
            if not self.subscribed_upstream:
                continue  # sent before our unsubscribe reached the grabber: nobody wants it
            if not slot.fresh and not self.first_fresh:
                self.first_fresh = now
            slot.take(frame, now)

    # -- pacing

    def _wake_window(self, slot: Slot) -> float:
        """How long after the subscription a camera that has not delivered is still waking up: its
        ``stale_after``, plus its warm-up (frames it holds back after connecting)."""
        return self.cfg.stale_after + slot.warmup_seconds()

    def max_wait(self) -> float:
        if self.cfg.max_wait is not None:
            return self.cfg.max_wait
        return 1.5 * max(s.interval() for s in self.slots)

    def _due(self, now: float) -> float | None:
        """When the next panorama is due (monotonic time), or None when nothing is pending."""
        if not self.subscribed_upstream:
            return None
        live = [s for s in self.slots if s.live(now, self.cfg.stale_after)]
        waking = [self._wake_window(s) for s in self.slots if s.frame is None]
        if waking and now - self.subscribed_at < max(waking):
            # a camera that has not delivered since the subscription is still waking up: the first
            # panorama waits for it (every arrival re-checks), and shows it missing only once it has
            # really been silent for stale_after past its warm-up
            return self.subscribed_at + max(waking)
        if live and all(s.fresh for s in live):
            return now
        if self.first_fresh:
            return self.first_fresh + self.max_wait()
        # nobody delivers at all: show NO SIGNAL, once the cameras had time to wake up
        woken = self.subscribed_at + max(self._wake_window(s) for s in self.slots)
        if not live and now >= woken:
            return max(self.last_emit + HEARTBEAT_INTERVAL, woken)
        return None

    def _chosen(self, now: float) -> list[protocol.Frame | None]:
        """Each camera's frame for this panorama: its newest, or with ``stitch.sync`` the one closest
        in capture time to the others' (``zmqcam.stitcher.sync``)."""
        chosen = [slot.frame for slot in self.slots]
        live = [i for i, s in enumerate(self.slots) if s.live(now, self.cfg.stale_after) and s.recent]
        if self.cfg.sync and len(live) > 1:
            recent = [list(self.slots[i].recent) for i in live]
            intervals = [int(self.slots[i].interval() * 1e9) for i in live]
            picks = closest_frames([[f.capture_ns for f in frames] for frames in recent], intervals)
            for i, frames, pick in zip(live, recent, picks, strict=True):
                chosen[i] = frames[pick]
        return chosen

    def _emit(self, now: float) -> None:
        stale_after = self.cfg.stale_after
        images = []
        sources = []
        captures = []
        for slot, frame in zip(self.slots, self._chosen(now), strict=True):
            live = slot.live(now, stale_after)
            images.append(frame.image if live and frame is not None else None)
            state = LIVE if live else ("stale" if frame is not None else "missing")
            entry: dict[str, Any] = {"name": slot.name, "state": state}
            if frame is not None:
                entry["seq"] = frame.seq
                entry["t_cap"] = frame.capture_ns
                if live:
                    captures.append(frame.capture_ns)
            sources.append(entry)
            slot.fresh = False
        stale = [s["name"] for s in sources if s["state"] != LIVE]
        if set(stale) != self._last_stale:
            if stale:
                log.warning("NO SIGNAL from %s", ", ".join(stale))
            else:
                log.info("all cameras live")
            self._last_stale = set(stale)
        started = time.perf_counter()
        pano = self.composer.compose(images, now)
        self._timed("compose_seconds", started)
        self.seq += 1
        spread = (max(captures) - min(captures)) if captures else 0
        self.last_spread_ms = spread / 1e6
        capture_ns = max(captures) if captures else time.time_ns()
        extra = {"sources": sources, "spread_ns": spread, "stale": stale}
        height, width = pano.shape[:2]
        if self.demand.wants(self.topic_jpeg):
            started = time.perf_counter()
            jpeg = simplejpeg.encode_jpeg(pano, quality=self.cfg.jpeg_quality, colorspace="BGR", colorsubsampling="420")
            self._timed("encode_seconds", started)
            self.counters["jpeg_encoded"] += 1
            self._send(protocol.JPEG, capture_ns, jpeg, width, height, extra)
        if self.h264 is not None:
            self.h264.offer(pano, self.seq, capture_ns, extra)
        if self.demand.wants(self.topic_raw):
            # the composer reuses its buffer for the next panorama, and a zero-copy send is still
            # reading it in libzmq's I/O thread: hand libzmq its own copy
            self._send(protocol.RAW, capture_ns, pano.copy(), width, height, extra)
            self.counters["raw_published"] += 1
        self.counters["panoramas"] += 1
        self.last_emit = now
        self.first_fresh = 0.0
        self._fps.tick(now)

    def _update_h264(self) -> None:
        """An encoder exactly while someone subscribes to pano h264."""
        wanted = self.demand.wants(self.topic_h264)
        if wanted and self.h264 is None:
            settings = encoder_settings(self.cfg.h264, self.config.pano_fps)
            self.h264 = PanoEncoder(self.ctx, settings, self.composer.size, self.counters, self._timed)
            self._poller.register(self.h264.handoff, zmq.POLLIN)
            self.counters["h264_encoders"] += 1
            log.info("pano h264 wanted: encoding (%s, keyint %d frames)", settings.preset, settings.keyint)
        elif not wanted and self.h264 is not None:
            self._stop_h264()
            log.info("nobody wants pano h264: encoder stopped")

    def _stop_h264(self) -> None:
        if self.h264 is not None:
            self._poller.unregister(self.h264.handoff)
            self.h264.stop()
            self.h264 = None

    def _timed(self, what: str, started: float) -> None:
        entry = self.timing[what]
        entry[0] += 1
        entry[1] += time.perf_counter() - started

    def _send(self, kind: str, capture_ns: int, payload: Any, width: int, height: int, extra: dict[str, Any]) -> None:
        with contextlib.suppress(zmq.Again):
            protocol.send_frame(self.pub, PANO, kind, self.seq, capture_ns, payload, width, height, extra)

    # -- status

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        cameras = {}
        gains = self.composer.gains.status() if self.composer.gains is not None else None
        for i, slot in enumerate(self.slots):
            cameras[slot.name] = {
                "state": LIVE if slot.live(now, self.cfg.stale_after) else (NO_SIGNAL if slot.frame else "waiting"),
                "age": round(now - slot.arrived, 3) if slot.arrived else None,
                "gain": gains[i] if gains is not None else None,
            }
        return {
            "name": PANO,
            "fps": self._fps.fps(now),
            "seq": self.seq,
            "spread_ms": round(self.last_spread_ms, 2),
            "seam": self.config.seam_mode,
            "exposure": self.config.exposure_mode,
            "sync": self.cfg.sync,
            "width": self.composer.size[0],
            "height": self.composer.size[1],
            "subscribers": self.demand.snapshot(PANO),
            "upstream": self.subscribed_upstream,
            "h264_encoding": self.h264 is not None,
            "cameras": cameras,
            **{what: {"count": count, "sum": round(total, 6)} for what, (count, total) in self.timing.items()},
            "process": process_usage(),
            **self.counters,
        }

    def _publish_status(self) -> None:
        with contextlib.suppress(zmq.Again):
            self.pub.send_multipart(protocol.encode_status(PANO, self.status()), flags=zmq.NOBLOCK)

    # -- watchdog

    def health(self, now: float) -> str | None:
        """Why the stitcher's work is stuck while its loop runs, or None: a frame has been waiting for
        its panorama ``STUCK_MAX_WAITS`` max_waits (at least ``STUCK_MIN`` s) longer than pacing
        allows (``max_wait`` after it arrived, and while the cameras wake, ``stale_after`` after the
        subscription). Nothing waits while nobody watches."""
        if not self.subscribed_upstream or not self.first_fresh:
            return None
        max_wait = self.max_wait()
        due = max(self.first_fresh + max_wait, self.subscribed_at + self.cfg.stale_after)
        if now - due <= max(STUCK_MAX_WAITS * max_wait, STUCK_MIN):
            return None
        return (
            f"{PANO}: frames have been waiting {now - self.first_fresh:.1f} s for a panorama "
            f"(max_wait {max_wait:.3g} s); {self.counters['panoramas']} panoramas made"
        )

    # -- loop

    def run(self, heartbeat: Heartbeat | None = None) -> None:
        beat = heartbeat or Heartbeat()
        poller = self._poller
        if (stopping := stop_fd()) is not None:
            poller.register(stopping, zmq.POLLIN)  # a stop signal ends the poll at once
        poller.register(self.pub, zmq.POLLIN)
        poller.register(self.sub, zmq.POLLIN)
        next_status = time.monotonic()
        try:
            while not stop_requested():
                now = time.monotonic()
                beat.beat(now, self.health)
                if now >= next_status:
                    self._publish_status()
                    next_status = now + STATUS_INTERVAL
                due = self._due(now)
                if due is not None and due <= now:
                    self._emit(now)
                    continue
                deadline = next_status if due is None else min(due, next_status)
                timeout_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
                events = dict(poller.poll(timeout_ms))
                now = time.monotonic()
                if self.pub in events:
                    subscribers = self.demand.snapshot(PANO)
                    sockets.drain_subscriptions(self.pub, self.demand)
                    self._update_upstream(now)
                    self._update_h264()
                    if self.demand.snapshot(PANO) != subscribers:
                        # status follows demand at once, not up to STATUS_INTERVAL later
                        self._publish_status()
                        next_status = time.monotonic() + STATUS_INTERVAL
                if self.sub in events:
                    self._receive(now)
                if self.h264 is not None and self.h264.handoff in events:
                    self.h264.forward(self.pub)
        finally:
            self.close()

    def close(self) -> None:
        self._stop_h264()
        if not self.pub.closed:
            self.sub.close(linger=0)
            self.pub.close(linger=0)

    def can_term(self) -> bool:
        return True


def run_stitcher(config: Config, *, link: Connection | None = None) -> None:
    """Process entry point (``multiprocessing`` target): run until SIGTERM/SIGINT."""
    run_child(STITCHER, config, lambda ctx: Stitcher(config, ctx), publishes=True, link=link)
