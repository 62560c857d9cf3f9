"""The status every zmqcam process publishes (``<stream> status`` topics): its words, its pace, and
collecting it.

The words are shared by who publishes and who shows them: the camera states a grabber reports and
what the bridge and ``zmqcam-daemon status`` show for each, the fps meter the grabber and the
stitcher both report with. Status subscriptions never count as demand, so reading status never
wakes a camera.
"""

from __future__ import annotations

import collections
import contextlib
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import zmq

from zmqcam.bus import curve, protocol, sockets
from zmqcam.config import Config
from zmqcam.errors import ProtocolError
from zmqcam.names import PANO

#: every process publishes its status this often, and at once when its subscribers change
STATUS_INTERVAL = 1.0
#: a process whose newest status is older than this is reported down
STATUS_DOWN_AFTER = 3.5

# camera states, as a grabber reports them
ASLEEP = "asleep"
CONNECTING = "connecting"
LIVE = "live"
WARMING_UP = "warming up"  # connected; its first frames are held back while the sensor settles
LOST = "lost"  # waiting out a backoff before the next connect
BUSY = "busy"  # the camera serves someone else
ENDED = "ended"  # a file or recording with loop = false played to its end

# what people are shown besides those
NO_SIGNAL = "no signal"  # the camera is lost, busy, or its grabber is down
UNKNOWN = "unknown"  # no status heard yet (a bridge that just started)
DOWN = "down"  # the process publishes no status

# process states, as the supervisor's process table (daemon.json) reports each child
STARTING = "starting"
RUNNING = "running"
HUNG = "hung"  # no heartbeat, or its work stuck, for daemon.watchdog seconds: being stopped and restarted
BACKOFF = "backoff"  # crashed; waiting out its restart delay
FAILED = "failed"  # crashed too often; not restarted again
STOPPED = "stopped"

#: grabber state -> what people are shown
CAMERA_STATES = {
    ASLEEP: ASLEEP,
    CONNECTING: CONNECTING,
    WARMING_UP: WARMING_UP,
    LIVE: LIVE,
    LOST: NO_SIGNAL,
    BUSY: NO_SIGNAL,
    ENDED: ENDED,
}


class FpsMeter:
    """Events per second (frames, panoramas) over the last ``window`` seconds.

    With ``gap`` set, a pause longer than that starts the measurement over, so a camera that slept
    and woke up reports the rate of its new session only."""

    def __init__(self, window: float = 2.0, gap: float | None = None) -> None:
        self.window = window
        self.gap = gap
        self._times: collections.deque[float] = collections.deque(maxlen=64)

    def tick(self, now: float) -> None:
        if self.gap is not None and self._times and now - self._times[-1] > self.gap:
            self._times.clear()
        self._times.append(now)

    def fps(self, now: float | None = None) -> float:
        since = (time.monotonic() if now is None else now) - self.window
        times = [t for t in self._times if t > since]
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return round((len(times) - 1) / (times[-1] - times[0]), 2)


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_usage() -> dict[str, Any]:
    """This process's pid, CPU seconds (user + system) and resident memory in bytes, as every process
    reports them in its status: the bridge's ``/metrics`` then shows them for processes on other
    hosts too. ``rss_bytes`` is None where /proc is missing."""
    times = os.times()
    rss: int | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        rss = int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE_SIZE
    return {"pid": os.getpid(), "cpu_seconds": round(times.user + times.system, 3), "rss_bytes": rss}


def all_streams(config: Config) -> list[str]:
    """Every stream of a whole rig: each camera, and ``pano`` when the stitcher is enabled."""
    return [c.name for c in config.camera] + ([PANO] if config.stitch.enabled else [])


def collect_status(
    config: Config,
    timeout: float = 1.5,
    ctx: zmq.Context[Any] | None = None,
    streams: Collection[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """One status message per stream (default: ``all_streams``), waiting at most ``timeout`` s.
    Streams are read where consumers connect (``Config.consumer_endpoint``), with the config's
    CURVE keys on tcp, so a daemon running one role sees the streams it can reach on other hosts."""
    context = ctx or zmq.Context.instance()
    wanted = set(all_streams(config) if streams is None else streams)
    endpoints = {config.consumer_endpoint(name) for name in wanted}
    topics = [protocol.topic(name, protocol.STATUS) for name in wanted]
    sock = sockets.make_subscriber(context, sorted(endpoints), topics, curve=curve.client_keys(config))
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    try:
        while set(found) != wanted:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(int(remaining * 1000) + 1):
                break
            try:
                stream, body = protocol.decode_status(sock.recv_multipart())
            except ProtocolError:
                continue
            found[stream] = body
    finally:
        sock.close(linger=0)
    return found
