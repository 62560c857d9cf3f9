"""The grabber: one process per camera, the only holder of the camera connection.

Two threads. The capture thread drives the source (open, read, reconnect with backoff, pace) and
makes only the products someone wants: the camera's own JPEG for ``<cam> jpeg``, decoded BGR for
``<cam> raw`` (decoded only while ``raw`` has subscribers). The main thread owns the XPUB socket:
it publishes what the capture thread hands it over an inproc pair, counts subscriptions, runs the
idle timer and publishes status once a second. A blocking camera read therefore never stalls
subscription handling, the idle timer or shutdown.

Demand: with no frame subscriber for ``idle_timeout`` seconds the camera is closed (the camera sees
its socket closed); the first subscription reopens it at once. ``always_on`` keeps it open.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from typing import Any

import numpy as np
import simplejpeg
import zmq

from zmqcam.bus import curve, protocol, sockets
from zmqcam.bus.status import ASLEEP, BUSY, CONNECTING, ENDED, LIVE, LOST, STATUS_INTERVAL, FpsMeter
from zmqcam.config import CameraConfig, Config
from zmqcam.errors import CorruptFrame, SourceBusy, SourceEnded, SourceError, SourceTimeout
from zmqcam.names import grabber_name, process_title
from zmqcam.process import Shutdown, setup_child
from zmqcam.sources import Source, SourceFrame, create_source

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
#: a connection that stayed live this long resets the backoff to its start
BACKOFF_RESET_AFTER = 60.0


class Backoff:
    """Jittered exponential backoff: start, doubling to a cap, reset after a healthy stretch."""

    def __init__(self, start: float = BACKOFF_START, cap: float = BACKOFF_CAP) -> None:
        self.start = start
        self.cap = cap
        self.current = start

    def next_delay(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.cap, self.current * 2)
        return min(delay, self.cap)

    def reset(self) -> None:
        self.current = self.start


class Counters:
    """Per-camera counters, written by the capture thread, read by the main thread."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0
        self.reconnects = 0
        self.timeouts = 0
        self.corrupt = 0
        self.decode_errors = 0
        self.rate_dropped = 0  # frames that arrived faster than the fps cap
        self.decoded = 0  # JPEG -> BGR decodes (only while someone wants raw)
        self.encoded = 0  # BGR -> JPEG encodes (only while someone wants jpeg)
        self.last_error = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class Capture(threading.Thread):
    """Drives one source; hands finished products to the main thread over an inproc PAIR."""

    def __init__(self, camera: CameraConfig, ctx: zmq.Context[Any], endpoint: str, source_kwargs: dict[str, Any]):
        super().__init__(name=f"capture-{camera.name}", daemon=True)
        self.camera = camera
        self.ctx = ctx
        self.endpoint = endpoint
        self.source_kwargs = source_kwargs
        self.counters = Counters()
        self.state = ASLEEP
        self.width = 0
        self.height = 0
        self.last_frame_mono = 0.0
        # set by the main thread; read here (plain attribute reads are atomic under the GIL)
        self.wanted = False
        self.want_jpeg = False
        self.want_raw = False
        self.stopping = False
        self._wake = threading.Event()
        self._source: Source | None = None
        self._backoff = Backoff()
        self._seq = 0

    # -- called from the main thread

    def set_wanted(self, wanted: bool) -> None:
        if wanted != self.wanted:
            self.wanted = wanted
            self._wake.set()
            if not wanted:
                self._abort_source()

    def stop(self) -> None:
        self.stopping = True
        self.wanted = False
        self._wake.set()
        self._abort_source()

    def _abort_source(self) -> None:
        # closing from this thread unblocks a read in progress; the capture thread then sees
        # that the camera is no longer wanted and does not count it as a failure
        source = self._source
        if source is not None:
            try:
                source.close()
            except Exception:
                log.debug("closing %s from the main thread failed", self.camera.name, exc_info=True)

    # -- the capture thread

    def _sleep(self, seconds: float) -> None:
        """Sleep, waking early when demand changes or the grabber stops."""
        self._wake.wait(seconds)
        self._wake.clear()

    def run(self) -> None:
        out = self.ctx.socket(zmq.PAIR)
        out.setsockopt(zmq.LINGER, 0)
        out.setsockopt(zmq.SNDHWM, 2)
        out.connect(self.endpoint)
        try:
            while not self.stopping:
                if not self.wanted:
                    self.state = ASLEEP
                    self._sleep(1.0)
                    continue
                self._session(out)
        finally:
            out.close(linger=0)

    def _session(self, out: zmq.Socket[Any]) -> None:
        """One connection: open, stream until unwanted or failed, close; back off on failure."""
        cam = self.camera
        self.state = CONNECTING
        source = create_source(cam, **self.source_kwargs)
        self._source = source
        live_since = 0.0
        try:
            source.open(cam.connect_timeout)
            self.state = LIVE
            live_since = time.monotonic()
            log.info("%s: connected (%s)", cam.name, source.describe())
            self._stream(source, out)
        except SourceEnded as exc:
            if self.wanted and not self.stopping:
                self._ended(source, exc)
        except Exception as exc:  # a broken source must not kill the grabber
            if self.wanted and not self.stopping:  # else: closed on purpose by the main thread
                self._lost(source, exc, live_since)
        finally:
            self._close(source)
            if live_since and time.monotonic() - live_since > BACKOFF_RESET_AFTER:
                self._backoff.reset()
            if not self.wanted:
                log.info("%s: camera released (no subscribers)", cam.name)

    def _lost(self, source: Source, exc: Exception, live_since: float) -> None:
        """Count a failed connection, release the camera and wait out the backoff."""
        cam = self.camera
        expected = isinstance(exc, SourceError)
        if isinstance(exc, SourceTimeout):
            self.counters.timeouts += 1
        self.counters.last_error = (str(exc) or type(exc).__name__) if expected else f"{type(exc).__name__}: {exc}"
        if live_since and time.monotonic() - live_since > BACKOFF_RESET_AFTER:
            self._backoff.reset()
        delay = self._backoff.next_delay()
        self.state = BUSY if isinstance(exc, SourceBusy) else LOST
        self.counters.reconnects += 1
        if expected:
            log.warning("%s: %s; reconnecting in %.1f s", cam.name, self.counters.last_error, delay)
        else:
            log.error("%s: source failed unexpectedly; reconnecting in %.1f s", cam.name, delay, exc_info=exc)
        self._close(source)  # the camera is free for others during the backoff
        self._sleep(delay)

    def _ended(self, source: Source, exc: SourceEnded) -> None:
        """The end of a file that does not loop: report "ended" rather than a lost camera (which
        would replay it after each backoff and count reconnects). It stays ended while it is
        wanted; once released (idle_timeout without subscribers), the next viewer plays it again."""
        self.state = ENDED
        log.info("%s: %s; ended (plays again when next woken)", self.camera.name, exc)
        self._close(source)
        while self.wanted and not self.stopping:
            self._sleep(1.0)

    def _close(self, source: Source) -> None:
        self._source = None
        try:
            source.close()
        except Exception:
            log.debug("%s: close failed", self.camera.name, exc_info=True)

    def _stream(self, source: Source, out: zmq.Socket[Any]) -> None:
        cam = self.camera
        interval = 1.0 / cam.fps
        # streaming sources deliver at the camera's pace: frames early for the cap are dropped, not
        # delayed (delaying would let the TCP buffer fill with old frames); polled sources wait
        polled = source.polled
        next_due = 0.0
        while self.wanted and not self.stopping:
            if polled and not source.self_paced:
                wait = next_due - time.monotonic()
                if wait > 0:
                    self._sleep(wait)
                    continue
            try:
                frame = source.read(cam.read_timeout)
            except CorruptFrame as exc:
                self.counters.corrupt += 1
                self.counters.last_error = str(exc) or "corrupt frame"
                continue
            now = time.monotonic()
            if not source.self_paced and not polled and now < next_due - interval * 0.2:
                self.counters.rate_dropped += 1
                continue
            next_due = max(now, next_due) + interval if next_due else now + interval
            self._publish(frame, out)

    def _publish(self, frame: SourceFrame, out: zmq.Socket[Any]) -> None:
        want_jpeg, want_raw = self.want_jpeg, self.want_raw
        jpeg: bytes | None = None
        raw: np.ndarray | None = None
        if frame.is_jpeg:
            jpeg = frame.data  # type: ignore[assignment]
            try:
                height, width, _, _ = simplejpeg.decode_jpeg_header(jpeg)
                if want_raw:
                    raw = simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
                    self.counters.decoded += 1
            except (ValueError, RuntimeError) as exc:
                self.counters.decode_errors += 1
                self.counters.last_error = f"JPEG decode: {exc}"
                return
        else:
            image: np.ndarray = frame.data  # type: ignore[assignment]
            raw = image
            height, width = image.shape[:2]
            if want_jpeg:
                jpeg = simplejpeg.encode_jpeg(
                    image, quality=self.camera.jpeg_quality, colorspace="BGR", colorsubsampling="420"
                )
                self.counters.encoded += 1
        self._seq += 1
        self.counters.frames += 1
        self.counters.bytes += len(jpeg) if frame.is_jpeg and jpeg is not None else raw.nbytes if raw is not None else 0
        self.width, self.height = width, height
        self.last_frame_mono = time.monotonic()
        meta = np.array([self._seq, frame.capture_ns, width, height], dtype=np.int64)
        parts: list[Any] = [
            meta,
            jpeg if (want_jpeg and jpeg is not None) else b"",
            raw if want_raw and raw is not None else b"",
        ]
        # when the main thread is behind, this frame is dropped: the next one is newer
        with contextlib.suppress(zmq.Again):
            out.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)


class Grabber:
    """The main thread of a grabber process: XPUB, demand, idle timer, status."""

    def __init__(
        self, config: Config, camera: CameraConfig, ctx: zmq.Context[Any], source_kwargs: dict[str, Any] | None = None
    ):
        self.config = config
        self.camera = camera
        self.ctx = ctx
        self.name = camera.name
        self.demand = sockets.Demand()
        self.pub = sockets.make_publisher(ctx, [config.camera_endpoint(camera)], curve=curve.server_keys(config))
        pair_endpoint = f"inproc://capture-{camera.name}"
        self.inbox = ctx.socket(zmq.PAIR)
        self.inbox.setsockopt(zmq.LINGER, 0)
        self.inbox.setsockopt(zmq.RCVHWM, 2)
        self.inbox.bind(pair_endpoint)
        self.capture = Capture(camera, ctx, pair_endpoint, source_kwargs or {})
        self.topic_jpeg = protocol.topic(self.name, protocol.JPEG)
        self.topic_raw = protocol.topic(self.name, protocol.RAW)
        self.published = {protocol.JPEG: 0, protocol.RAW: 0}
        self.malformed = 0
        # None while someone wants frames; -inf at start so that a camera nobody asked for stays shut
        self._idle_since: float | None = float("-inf")
        # a gap (the camera slept): measure the new session only
        self._fps = FpsMeter(gap=1.0)
        self._started = time.monotonic()

    def _update_demand(self, now: float) -> None:
        cap = self.capture
        cap.want_jpeg = self.demand.wants(self.topic_jpeg)
        cap.want_raw = self.demand.wants(self.topic_raw)
        has_demand = cap.want_jpeg or cap.want_raw
        if has_demand:
            self._idle_since = None
        elif self._idle_since is None:
            self._idle_since = now
        cap.set_wanted(self.camera.always_on or has_demand or not self._idle_expired(now))

    def _idle_expired(self, now: float) -> bool:
        return self._idle_since is not None and now - self._idle_since >= self.camera.idle_timeout

    def _forward(self) -> None:
        parts = self.inbox.recv_multipart(copy=False)
        seq, capture_ns, width, height = np.frombuffer(parts[0].buffer, dtype=np.int64).tolist()
        self._fps.tick(time.monotonic())
        for kind, part, topic in ((protocol.JPEG, parts[1], self.topic_jpeg), (protocol.RAW, parts[2], self.topic_raw)):
            if len(part.buffer) == 0 or not self.demand.wants(topic):
                continue
            try:
                protocol.send_frame(self.pub, self.name, kind, seq, capture_ns, part.buffer, width, height)
                self.published[kind] += 1
            except zmq.Again:
                pass  # XPUB drops per subscriber at the HWM; Again here is only a full pipe everywhere

    def status(self) -> dict[str, Any]:
        cap = self.capture
        age = time.monotonic() - cap.last_frame_mono if cap.last_frame_mono else None
        return {
            "name": self.name,
            "kind": self.camera.source_kind,
            "state": cap.state,
            "fps": self._fps.fps(),
            "width": cap.width,
            "height": cap.height,
            "last_frame_age": round(age, 3) if age is not None else None,
            "subscribers": self.demand.snapshot(self.name),
            "published": dict(self.published),
            "malformed": self.malformed + self.demand.malformed,
            "uptime": round(time.monotonic() - self._started, 1),
            **cap.counters.as_dict(),
        }

    def _publish_status(self) -> None:
        with contextlib.suppress(zmq.Again):
            self.pub.send_multipart(protocol.encode_status(self.name, self.status()), flags=zmq.NOBLOCK)

    def run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.pub, zmq.POLLIN)
        poller.register(self.inbox, zmq.POLLIN)
        self.capture.start()
        next_status = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                self._update_demand(now)
                if now >= next_status:
                    self._publish_status()
                    next_status = now + STATUS_INTERVAL
                deadline = next_status
                if self._idle_since is not None and self.capture.wanted and not self.camera.always_on:
                    deadline = min(deadline, self._idle_since + self.camera.idle_timeout)
                timeout_ms = max(0, int((deadline - time.monotonic()) * 1000) + 1)
                events = dict(poller.poll(timeout_ms))
                if self.pub in events:
                    sockets.drain_subscriptions(self.pub, self.demand)
                    self._update_demand(time.monotonic())
                if self.inbox in events:
                    self._forward()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the capture thread and close the sockets. Idempotent."""
        if self.pub.closed:
            return
        self.capture.stop()
        if self.capture.is_alive():
            self.capture.join(timeout=2.0)
        self.inbox.close(linger=0)
        self.pub.close(linger=0)


def run_grabber(config: Config, camera_name: str, source_kwargs: dict[str, Any] | None = None) -> None:
    """Process entry point (``multiprocessing`` target): run until SIGTERM/SIGINT."""
    camera = config.camera_named(camera_name)
    setup_child(process_title(grabber_name(camera_name)), config.daemon.log_level)
    if source_kwargs is None:
        source_kwargs = default_source_kwargs(config, camera)
    ctx = zmq.Context()
    grabber = None
    auth = None
    try:
        # before the publisher binds: with CURVE, only authorized keys may subscribe over tcp
        auth = curve.start_authenticator(ctx, curve.server_keys(config))
        grabber = Grabber(config, camera, ctx, source_kwargs)
        grabber.run()
    except Shutdown:
        pass
    finally:
        if grabber is not None:
            grabber.close()
        curve.stop_authenticator(auth)
        # a capture thread stuck in a camera read still holds its socket: exit without term()
        if grabber is None or not grabber.capture.is_alive():
            ctx.term()


def default_source_kwargs(config: Config, camera: CameraConfig) -> dict[str, Any]:
    """Extra constructor arguments a source needs from the whole rig's config."""
    if camera.source_kind == "synthetic":
        from zmqcam.sources.synthetic import scene_offsets

        return {"scene_offset": scene_offsets(config).get(camera.name, 0)}
    return {}
