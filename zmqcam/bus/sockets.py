"""ZeroMQ socket set-up shared by every process: publishers, subscribers and demand tracking.

The demand rule of the whole system lives here: a publisher is an XPUB in "verboser" mode, so it
sees every subscribe and unsubscribe of every subscriber, including the unsubscribes libzmq
generates when a subscriber's connection dies (even a SIGKILLed process). ``Demand`` counts them.

Security: with CURVE keys (``zmqcam.bus.curve``), tcp endpoints are encrypted and authenticated and
ipc endpoints stay on the NULL mechanism. libzmq copies a socket's security options into each
listener or connection when it is made, so one socket serves both: bind or connect the local
endpoints first, then set the CURVE options, then bind or connect the tcp ones.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import zmq

from zmqcam.bus import protocol
from zmqcam.bus.curve import ClientKeys, ServerKeys
from zmqcam.errors import ProtocolError, StartError

log = logging.getLogger(__name__)

#: frames queued per subscriber before the publisher drops for it: a slow consumer gets the newest
#: frame, never a growing queue
SEND_HWM = 2
RECV_HWM = 2
#: what an h264 consumer's socket holds instead: a decoder needs every access unit (one lost costs
#: the rest of its GOP), so it may fall a second behind (at 30 fps) before units are dropped
H264_RECV_HWM = 32
#: ZMTP heartbeats, so a subscriber on a vanished host releases demand within a few seconds
HEARTBEAT_IVL_MS = 1000
HEARTBEAT_TIMEOUT_MS = 3000


def _common(sock: zmq.Socket[Any]) -> None:
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    sock.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)


def is_local(endpoint: str) -> bool:
    """ipc and inproc: reachable only on this host (ipc: only by the run_dir's owner); never CURVE."""
    return endpoint.startswith(("ipc://", "inproc://"))


def _local_first(endpoints: Sequence[str]) -> list[str]:
    return sorted(endpoints, key=lambda e: not is_local(e))  # stable: the given order within each group


def _server_curve(sock: zmq.Socket[Any], keys: ServerKeys) -> None:
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SERVER, 1)


def _client_curve(sock: zmq.Socket[Any], keys: ClientKeys) -> None:
    sock.setsockopt(zmq.CURVE_SECRETKEY, keys.secret)
    sock.setsockopt(zmq.CURVE_PUBLICKEY, keys.public)
    sock.setsockopt(zmq.CURVE_SERVERKEY, keys.server)


def make_publisher(ctx: zmq.Context[Any], endpoints: Sequence[str], curve: ServerKeys | None = None) -> zmq.Socket[Any]:
    """An XPUB bound to every endpoint, reporting each subscription change. With ``curve``, its
    tcp endpoints are CURVE servers (the process must run ``curve.start_authenticator`` first).
    StartError naming the endpoint when one cannot be bound (a port taken, a missing directory)."""
    sock = ctx.socket(zmq.XPUB)
    _common(sock)
    sock.setsockopt(zmq.SNDHWM, SEND_HWM)
    sock.setsockopt(zmq.XPUB_VERBOSER, 1)
    for endpoint in _local_first(endpoints):
        try:
            if curve is not None and not is_local(endpoint) and not sock.getsockopt(zmq.CURVE_SERVER):
                _server_curve(sock, curve)
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise StartError(f"cannot bind {endpoint}: {exc.strerror}") from None
    return sock


def make_subscriber(
    ctx: zmq.Context[Any],
    endpoints: Sequence[str],
    topics: Sequence[bytes] = (),
    curve: ClientKeys | None = None,
    rcvhwm: int = RECV_HWM,
) -> zmq.Socket[Any]:
    """A SUB connected to every endpoint; with ``curve``, its tcp connections are CURVE clients."""
    sock = ctx.socket(zmq.SUB)
    _common(sock)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    # reconnect quickly after a publisher restarts, but do not hammer a host that is gone
    sock.setsockopt(zmq.RECONNECT_IVL, 100)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    for t in topics:
        sock.setsockopt(zmq.SUBSCRIBE, t)
    try:
        connect(sock, endpoints, curve)
    except zmq.ZMQError:
        sock.close(linger=0)
        raise
    return sock


def connect(sock: zmq.Socket[Any], endpoints: Sequence[str], curve: ClientKeys | None = None) -> None:
    """Connect a fresh subscriber: local endpoints on NULL, then tcp ones as a CURVE client."""
    curve_set = False
    for endpoint in _local_first(endpoints):
        if curve is not None and not is_local(endpoint) and not curve_set:
            _client_curve(sock, curve)
            curve_set = True
        sock.connect(endpoint)


class Demand:
    """Subscriber counts per subscription prefix, fed from an XPUB's subscription messages."""

    def __init__(self) -> None:
        self.counts: dict[bytes, int] = {}
        self.malformed = 0

    def feed(self, message: bytes) -> None:
        if not message or message[0] not in (0, 1):
            # a plain message sent to an XPUB (not a subscription): not ours, ignore it
            self.malformed += 1
            return
        prefix = bytes(message[1:])
        if message[0] == 1:
            self.counts[prefix] = self.counts.get(prefix, 0) + 1
        else:
            left = self.counts.get(prefix, 0) - 1
            if left > 0:
                self.counts[prefix] = left
            else:
                self.counts.pop(prefix, None)

    def subscribers(self, topic: bytes) -> int:
        """How many subscriptions receive ``topic`` (a subscriber with two matching prefixes counts twice)."""
        return sum(n for prefix, n in self.counts.items() if topic.startswith(prefix))

    def wants(self, topic: bytes) -> bool:
        return any(topic.startswith(prefix) for prefix in self.counts)

    def wants_frames(self, stream: str) -> bool:
        """Whether anyone wants any frame kind of ``stream`` (status subscriptions never count)."""
        return any(self.wants(protocol.topic(stream, kind)) for kind in protocol.FRAME_KINDS)

    def snapshot(self, stream: str) -> dict[str, int]:
        return {kind: self.subscribers(protocol.topic(stream, kind)) for kind in protocol.KINDS}


def drain_subscriptions(sock: zmq.Socket[Any], demand: Demand, limit: int = 1000) -> int:
    """Read every pending subscription message from an XPUB without blocking; return how many."""
    n = 0
    while n < limit:
        try:
            demand.feed(sock.recv(zmq.NOBLOCK))
        except zmq.Again:
            break
        n += 1
    return n


def pending_frames(
    sock: zmq.Socket[Any], limit: int, malformed: Callable[[ProtocolError], None]
) -> Iterator[protocol.Frame]:
    """The frames waiting on a subscriber, decoded, at most ``limit`` of them and without blocking.
    A malformed message is handed to ``malformed`` (to count it) and skipped: never fatal."""
    for _ in range(limit):
        try:
            parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        try:
            frame = protocol.decode(parts)
        except ProtocolError as exc:
            malformed(exc)
            continue
        yield frame
