"""The grabber: one process per camera, the only holder of the camera connection.

Two threads. The capture thread drives the source (open, read, reconnect with backoff, pace) and
makes only the products someone wants: the camera's own JPEG for ``<cam> jpeg``, decoded BGR for
``<cam> raw`` (decoded only while ``raw`` has subscribers). The main thread owns the XPUB socket:
it publishes what the capture thread hands it over an inproc pair, counts subscriptions, runs the
idle timer and publishes status once a second. A blocking camera read therefore never stalls
subscription handling, the idle timer or shutdown.

Demand: with no frame subscriber for ``idle_timeout`` seconds the camera is closed (the camera sees
its socket closed); the first subscription reopens it at once. ``always_on`` keeps it open.

Watchdog: the main thread's loop sends the process's heartbeat (``zmqcam.process.Heartbeat``), and
reports itself unhealthy when the capture thread has been inside one source call far beyond its
timeout (``zmqcam.grabber.capture.call_limit``) or has ended: the loop is alive, the camera's work
is not, and only a new process frees a call that never returns.
"""

from __future__ import annotations

import contextlib
import logging
import time
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import zmq

from zmqcam.bus import curve, protocol, sockets
from zmqcam.bus.status import STATUS_INTERVAL, FpsMeter, process_usage
from zmqcam.config import CameraConfig, Config
from zmqcam.grabber.capture import OPEN, Capture
from zmqcam.names import grabber_name
from zmqcam.process import Heartbeat, run_child, stop_fd, stop_requested
from zmqcam.sources import rig_arguments

log = logging.getLogger(__name__)


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
        self.capture = Capture(camera, ctx, pair_endpoint, source_kwargs or {}, config.synchronized(camera))
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
            "warmup": self.camera.warmup_period.describe(),
            "controls": cap.controls,
            "process": process_usage(),
            **cap.counters.as_dict(),
        }

    def _publish_status(self) -> None:
        with contextlib.suppress(zmq.Again):
            self.pub.send_multipart(protocol.encode_status(self.name, self.status()), flags=zmq.NOBLOCK)

    def health(self, now: float) -> str | None:
        """Why the camera's work is stuck while this loop runs, or None (see the module docstring)."""
        cap = self.capture
        if not cap.is_alive() and not cap.stopping:
            return f"{self.name}: the capture thread has ended"
        call = cap.call
        if call is None or call.limit is None or now - call.since <= call.limit:
            return None
        timeout = self.camera.connect_timeout if call.what == OPEN else self.camera.read_timeout
        return (
            f"{self.name}: the capture thread has been inside one source {call.what} for {now - call.since:.1f} s "
            f"(its timeout is {timeout:g} s)"
        )

    def run(self, heartbeat: Heartbeat | None = None) -> None:
        beat = heartbeat or Heartbeat()
        poller = zmq.Poller()
        if (stopping := stop_fd()) is not None:
            poller.register(stopping, zmq.POLLIN)  # a stop signal ends the poll at once
        poller.register(self.pub, zmq.POLLIN)
        poller.register(self.inbox, zmq.POLLIN)
        self.capture.start()
        next_status = time.monotonic()
        try:
            while not stop_requested():
                now = time.monotonic()
                beat.beat(now, self.health)
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
                    subscribers = self.demand.snapshot(self.name)
                    sockets.drain_subscriptions(self.pub, self.demand)
                    self._update_demand(time.monotonic())
                    if self.demand.snapshot(self.name) != subscribers:
                        # status follows demand at once, not up to STATUS_INTERVAL later (and a new
                        # status reader gets one right away)
                        self._publish_status()
                        next_status = time.monotonic() + STATUS_INTERVAL
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

    def can_term(self) -> bool:
        # a capture thread stuck in a camera read still holds its socket
        return not self.capture.is_alive()


def run_grabber(
    config: Config, camera_name: str, source_kwargs: dict[str, Any] | None = None, *, link: Connection | None = None
) -> None:
    """Process entry point (``multiprocessing`` target): run until SIGTERM/SIGINT."""
    camera = config.camera_named(camera_name)
    kwargs = rig_arguments(config, camera) if source_kwargs is None else source_kwargs
    run_child(
        grabber_name(camera_name),
        config,
        lambda ctx: Grabber(config, camera, ctx, kwargs),
        publishes=True,
        link=link,
    )
