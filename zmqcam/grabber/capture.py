"""The capture thread of a grabber: drives one camera source (open, read, reconnect with backoff,
pace) and hands the products someone wants to the grabber's main thread over an inproc PAIR.

It makes only what is wanted: the camera's own JPEG for ``<cam> jpeg``, decoded BGR for ``<cam> raw``
(decoded only while ``raw`` has subscribers). A blocking camera read here never stalls the main
thread's subscription handling, idle timer or shutdown (``zmqcam.grabber.grabber``).

After each (re)connect the camera's warm-up (``camera[].warmup``) holds back its first frames, counted
in ``warmup_frames``, while its state is "warming up": an ESP32's first frames are stale buffers or
still settling exposure. What the source applied of an ESP32's ``controls`` goes into status.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import threading
import time
from typing import Any, NamedTuple

import numpy as np
import simplejpeg
import zmq

from zmqcam.bus.status import ASLEEP, BUSY, CONNECTING, ENDED, LIVE, LOST, WARMING_UP
from zmqcam.config import CameraConfig
from zmqcam.errors import CorruptFrame, SourceBusy, SourceEnded, SourceError, SourceTimeout
from zmqcam.sources import Source, SourceFrame, create_source
from zmqcam.sources.esp32 import Esp32Settings

log = logging.getLogger(__name__)

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
#: a connection that stayed live this long resets the backoff to its start
BACKOFF_RESET_AFTER = 60.0
#: one source call (open or read) that has lasted this many times its timeout, plus STUCK_SLACK
#: seconds, is stuck: the source does not honour its timeout (an OpenCV read that never returns, a
#: driver hung in an ioctl). The grabber then reports itself unhealthy to the supervisor's watchdog.
STUCK_FACTOR = 3.0
STUCK_SLACK = 2.0

OPEN = "open"
READ = "read"


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
        self.warmup_frames = 0  # frames held back after a (re)connect (camera[].warmup)
        self.last_error = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def next_tick(interval: float) -> float:
    """The monotonic time of the next multiple of ``interval`` seconds of the wall clock: every grabber
    of a synchronized panorama (``stitch.sync``) requests its next snapshot then, so that the requests
    leave together, whatever each grabber's phase was (the stitcher's half is ``zmqcam.stitcher.sync``)."""
    wall, mono = time.time(), time.monotonic()
    return mono + (math.floor(wall / interval) + 1) * interval - wall


class Call(NamedTuple):
    """The source call the capture thread is inside: what, since when (monotonic), for how long at
    most (None: no bound, such as a replay waiting out a recorded gap)."""

    what: str
    since: float
    limit: float | None


def call_limit(timeout: float, allowance: float = 0.0) -> float:
    """How long one source call given ``timeout`` may take before it counts as stuck; ``allowance``
    is what the source may add on purpose (see ``read_allowance``)."""
    return STUCK_FACTOR * timeout + STUCK_SLACK + allowance


def read_allowance(source: Source, camera: CameraConfig) -> float:
    """What one read may take beyond the read timeout on purpose: a self-paced source waits for its
    next frame (one interval); a polled one may reconnect inside a read (the connect, then a fresh
    connection's answer, each up to ``connect_timeout``)."""
    pacing = 1.0 / camera.fps if source.self_paced else 0.0
    reconnect = 2 * camera.connect_timeout if source.polled else 0.0
    return pacing + reconnect


class Capture(threading.Thread):
    """Drives one source; hands finished products to the main thread over an inproc PAIR."""

    def __init__(
        self,
        camera: CameraConfig,
        ctx: zmq.Context[Any],
        endpoint: str,
        source_kwargs: dict[str, Any],
        synchronized: bool = False,
    ):
        super().__init__(name=f"capture-{camera.name}", daemon=True)
        self.camera = camera
        #: a polled camera requests on the shared clock tick (``next_tick``) rather than one interval
        #: after its previous answer
        self.synchronized = synchronized
        self.ctx = ctx
        self.endpoint = endpoint
        self.source_kwargs = source_kwargs
        self.counters = Counters()
        self.state = ASLEEP
        self.width = 0
        self.height = 0
        self.last_frame_mono = 0.0
        #: the ESP32 controls the last connection applied (ControlsReport.as_status), None without any
        self.controls: dict[str, Any] | None = None
        # set by the main thread; read here (plain attribute reads are atomic under the GIL)
        self.wanted = False
        self.want_jpeg = False
        self.want_raw = False
        self.stopping = False
        self._wake = threading.Event()
        self._source: Source | None = None
        self._backoff = Backoff()
        self._seq = 0
        #: the source call in progress, read by the main thread's health check (one attribute,
        #: replaced whole, so the main thread never sees half of an update)
        self.call: Call | None = None

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
            self.call = Call(OPEN, time.monotonic(), call_limit(cam.connect_timeout))
            try:
                source.open(cam.connect_timeout)
                self._note_controls(source)
            finally:
                self.call = None
            live_since = time.monotonic()
            warmup = cam.warmup_period
            self.state = LIVE if warmup.none else WARMING_UP
            log.info(
                "%s: connected (%s)%s",
                cam.name,
                source.describe(),
                "" if warmup.none else f"; warming up for {warmup.describe()}",
            )
            self._stream(source, out, live_since)
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
        self._note_controls(source)  # applied before the failure, which is the newer error
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

    def _note_controls(self, source: Source) -> None:
        """Take what applying the camera's controls did (``zmqcam.sources.esp32``) into status; its
        problems are logged when they change, not on every reconnect of a flapping camera."""
        report = source.controls_report if isinstance(source, Esp32Settings) else None
        if report is None:
            return
        shown = report.as_status()
        if shown != self.controls:
            for line in report.errors + report.warnings:
                log.warning("%s: %s", self.camera.name, line)
            log.info("%s: controls applied: %s", self.camera.name, shown["shown"] or "none")
        self.controls = shown
        if report.errors:
            self.counters.last_error = report.errors[-1]

    def _close(self, source: Source) -> None:
        self._source = None
        try:
            source.close()
        except Exception:
            log.debug("%s: close failed", self.camera.name, exc_info=True)

    def _stream(self, source: Source, out: zmq.Socket[Any], live_since: float) -> None:
        cam = self.camera
        interval = 1.0 / cam.fps
        warmup = cam.warmup_period
        warming = not warmup.none
        session_frames = 0
        # streaming sources deliver at the camera's pace: frames early for the cap are dropped, not
        # delayed (delaying would let the TCP buffer fill with old frames); polled sources wait
        polled = source.polled
        next_due = 0.0
        read_limit = call_limit(cam.read_timeout, read_allowance(source, cam)) if source.read_bounded else None
        while self.wanted and not self.stopping:
            if polled and not source.self_paced:
                wait = next_due - time.monotonic()
                if wait > 0:
                    self._sleep(wait)
                    continue
            self.call = Call(READ, time.monotonic(), read_limit)
            try:
                frame = source.read(cam.read_timeout)
            except CorruptFrame as exc:
                self.counters.corrupt += 1
                self.counters.last_error = str(exc) or "corrupt frame"
                continue
            finally:
                self.call = None
            now = time.monotonic()
            session_frames += 1
            if warming:
                # the sensor is still settling (or these are frames buffered before we came): held
                # back, counted; the first frame after the warm-up is published
                if session_frames <= warmup.frames or now - live_since < warmup.seconds:
                    self.counters.warmup_frames += 1
                    next_due = self._next_request(now, interval) if polled else next_due
                    continue
                warming = False
                self.state = LIVE
            if not source.self_paced and not polled and now < next_due - interval * 0.2:
                self.counters.rate_dropped += 1
                continue
            if polled and self.synchronized:
                next_due = next_tick(interval)
            else:
                next_due = max(now, next_due) + interval if next_due else now + interval
            self._publish(frame, out)

    def _next_request(self, now: float, interval: float) -> float:
        return next_tick(interval) if self.synchronized else now + interval

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
