"""A publish target's process: ``<stream> h264`` from the bus, pushed to a media server as it is.

One process per ``[[publish]]`` entry (``publish:NAME`` in the process table), so that a server
that stops reading without closing, which blocks FFmpeg's write for minutes (``zmqcam.video.push``),
costs a restart of that target and nothing else: the loop reports itself unhealthy while a write
has been stuck longer than the target's ``timeout``, and the supervisor's watchdog restarts it
``daemon.watchdog`` later, under the same budget as a crash.

It subscribes to ``<stream> h264`` for as long as it runs: a publish target is a consumer like a
viewer, so the stitcher encodes and the cameras stay awake while one is configured, whether or not
its server is there. Each access unit goes to a ``PushWorker`` (a thread; bounded queue; nothing
re-encoded), which connects at a keyframe, and after a failure backs off (0.5 s doubling to 30 s)
and reconnects at the next keyframe. A unit lost on the bus (a gap in ``x.au``) stops the push until
the next keyframe, so the server is never sent a picture built on a missing reference.

What it does is reported with its heartbeat (``zmqcam.process.REPORT``), which the supervisor
writes to its process table: ``state`` (``waiting`` for the stream's first keyframe, then the
worker's ``connecting``, ``live``, ``backoff``), ``connects``, ``failures``, ``sent``, ``dropped``,
``last_error``, ``retry_in``, ``writing_for``, and ``url`` with any password hidden.
"""

from __future__ import annotations

import logging
import time
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import zmq

from zmqcam.bus import curve, protocol, sockets
from zmqcam.config import Config
from zmqcam.errors import ProtocolError
from zmqcam.names import publish_name
from zmqcam.process import Heartbeat, run_child, stop_fd, stop_requested
from zmqcam.video.push import BACKOFF, COUNTERS, LIVE, PushWorker

log = logging.getLogger(__name__)

#: the state before the stream's first keyframe arrived (no connection is tried without one)
WAITING = "waiting"
_DRAIN_LIMIT = 64
#: the loop wakes at least this often (its heartbeat and report)
_WAKE = 1.0
#: how long closing waits for the push thread (a stuck write never returns; the process exits anyway)
_STOP_WAIT = 2.0
#: longest last_error reported (a heartbeat is one small message)
_MAX_ERROR = 300


def shown_url(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``: what status and logs show."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"{parts.username}:***@{host}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        return url
    return urlunsplit(parts._replace(netloc=netloc))


class Publisher:
    """One publish target: subscribes ``<stream> h264``, feeds a ``PushWorker``, reports."""

    def __init__(self, config: Config, name: str, ctx: zmq.Context[Any]) -> None:
        self.name = name
        self.target = config.publish_targets[name]
        self.url = shown_url(self.target.url)
        self.topic = protocol.topic(self.target.stream, protocol.H264)
        endpoint = config.consumer_endpoint(self.target.stream)
        self.sub = sockets.make_subscriber(
            ctx, [endpoint], [self.topic], curve=curve.client_keys(config), rcvhwm=sockets.H264_RECV_HWM
        )
        self.worker: PushWorker | None = None
        self.size: tuple[int, int] | None = None
        #: counters of PushWorkers already replaced (the coded size changed)
        self.before = dict.fromkeys(COUNTERS, 0)  # the push counters of workers retired (totals)
        self.received = 0
        self.malformed = 0
        #: units are pushed from a keyframe on; ``gate.gaps``: units lost on the bus, ``gate.waited``:
        #: units not pushed while a keyframe was awaited (before the first, after a gap)
        self.gate = protocol.UnitGate()
        self._shown_state = WAITING

    # -- input

    def _malformed(self, exc: ProtocolError) -> None:
        self.malformed += 1
        log.debug("dropped a malformed message: %s", exc)

    def _receive(self) -> None:
        for frame in sockets.pending_frames(self.sub, _DRAIN_LIMIT, self._malformed):
            if frame.kind != protocol.H264:
                continue
            self.received += 1
            if self.gate.admit(frame):
                self._push(frame)

    def _push(self, frame: protocol.Frame) -> None:
        size = (frame.extra["coded_w"], frame.extra["coded_h"])
        if self.worker is None or size != self.size:
            self._new_worker(size, frame.extra.get("fps"))
        assert self.worker is not None
        self.worker.offer(bytes(frame.payload), frame.keyframe, frame.capture_ns)

    def _new_worker(self, size: tuple[int, int], fps: Any) -> None:
        """A PushWorker for this coded size: the first keyframe's, or a new one (the stitcher was
        reconfigured), which needs a new connection, as the server was announced the old size."""
        if self.worker is not None:
            log.info("publish %s: the coded size changed to %dx%d: reconnecting", self.name, *size)
            self._retire_worker()
        rate = float(fps) if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0 else 30.0
        self.size = size
        self.worker = PushWorker(self.target.url, *size, rate, timeout=self.target.timeout).start()

    def _retire_worker(self) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        worker.stop(_STOP_WAIT)
        stats = worker.stats()
        for key in COUNTERS:
            self.before[key] += stats[key]

    # -- status

    def report(self) -> dict[str, Any]:
        """What the heartbeat carries to the supervisor's process table."""
        stats: dict[str, Any] = self.worker.stats() if self.worker is not None else {}
        error = str(stats.get("last_error") or "").replace(self.target.url, self.url)
        return {
            "url": self.url,
            "stream": self.target.stream,
            "state": stats.get("state", WAITING),
            **{key: self.before[key] + int(stats.get(key, 0)) for key in COUNTERS},
            "last_error": " ".join(error.split())[:_MAX_ERROR],
            "retry_in": stats.get("retry_in", 0.0),
            "writing_for": stats.get("writing_for", 0.0),
            "received": self.received,
            "skipped": self.gate.waited,
            "gaps": self.gate.gaps,
            "malformed": self.malformed,
        }

    def health(self, now: float) -> str | None:
        """Unhealthy while a write has been stuck longer than the target's ``timeout`` (a server
        that stopped reading): only a restart of this process gets rid of it."""
        if self.worker is None:
            return None
        stuck = self.worker.stats()["writing_for"]
        if stuck <= self.target.timeout:
            return None
        return (
            f"publish {self.name}: a connect or write to {self.url} has been stuck for {stuck:.0f} s "
            f"(timeout {self.target.timeout:g} s): the server stopped reading"
        )

    def _log_state(self) -> None:
        report = self.report()
        state = report["state"]
        if state == self._shown_state:
            return
        self._shown_state = state
        if state == LIVE:
            log.info("publish %s: pushing %s to %s", self.name, self.target.stream, self.url)
        elif state == BACKOFF:
            log.warning("publish %s: %s; retrying in %.1f s", self.name, report["last_error"], report["retry_in"])

    # -- loop

    def run(self, heartbeat: Heartbeat | None = None) -> None:
        beat = heartbeat or Heartbeat()
        poller = zmq.Poller()
        if (stopping := stop_fd()) is not None:
            poller.register(stopping, zmq.POLLIN)
        poller.register(self.sub, zmq.POLLIN)
        try:
            while not stop_requested():
                beat.beat(time.monotonic(), self.health, self.report)
                self._log_state()
                events = dict(poller.poll(int(_WAKE * 1000)))
                if self.sub in events:
                    self._receive()
        finally:
            self.close()

    def close(self) -> None:
        self._retire_worker()
        if not self.sub.closed:
            self.sub.close(linger=0)

    def can_term(self) -> bool:
        return True


def run_publisher(config: Config, name: str, *, link: Connection | None = None) -> None:
    """Process entry point (``multiprocessing`` target): push one target until SIGTERM/SIGINT."""
    run_child(publish_name(name), config, lambda ctx: Publisher(config, name, ctx), link=link)
