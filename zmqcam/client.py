"""Reading frames from programs: ``Subscriber``, and ``Camera``, the original class API.

    from zmqcam import Subscriber
    with Subscriber("pano") as sub:          # or a camera name: Subscriber("cam0")
        ok, frame = sub.read(timeout=1.0)    # the newest frame; older ones are skipped
        if ok:
            process(frame.image, frame.seq, frame.capture_ns)

A slow reader never sees stale frames pile up: every ``read`` drains what arrived and returns the
newest. H.264 (``kind="h264"``) is the exception, as a decoder needs every access unit: ``read``
returns them in order, starting at a keyframe; a reader that falls ``MAX_QUEUED_UNITS`` behind, or a
unit lost on the way, skips to the next keyframe (``skipped`` counts what it did not get).

Endpoints come from the config the daemon uses (``./config/zmqcam.toml`` if present, else the
built-in default) unless given explicitly. The subscription reconnects by itself when the
daemon or one of its processes restarts.

From another host, over a CURVE-protected tcp endpoint, name the rig's public key and this
program's own secret key (``zmqcam-daemon keygen DIR --client NAME`` makes and authorizes one)::

    Subscriber("pano", endpoint="tcp://rig-host:5600", server_key="server.key", client_key="NAME.key_secret")
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from zmqcam.bus import curve, protocol, sockets
from zmqcam.config import Config, resolve_config
from zmqcam.errors import ProtocolError
from zmqcam.names import PANO

log = logging.getLogger(__name__)

#: monitor events that mean "connected, but the security handshake failed"
_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
#: at most this many queued messages are read per drain, so a flood cannot starve the caller
_DRAIN_LIMIT = 64
#: H.264 access units a ``Subscriber`` keeps for a slow reader before it skips to the next keyframe
MAX_QUEUED_UNITS = 300


def stream_endpoint(config: Config, stream: str) -> str:
    """The endpoint a consumer connects to for ``stream`` ("pano" or a camera name)."""
    try:
        return config.consumer_endpoint(stream)
    except KeyError:
        names = ", ".join([PANO] + [c.name for c in config.camera])
        raise ValueError(f"no stream named {stream!r} (known: {names})") from None


class Subscriber:
    """The newest frames of one stream. ``kind`` is "raw" (BGR pixels), "jpeg" (encoded once upstream)
    or "h264" (access units, in order, from a keyframe on: decode them with ``zmqcam.video.H264Decoder``).

    A background thread owns the socket and keeps only the newest frame. Queues alone cannot do
    this: when a queue is full ZeroMQ drops the *new* frames and keeps the old ones, so a reader that
    paused would first read frames as old as its pause. ``read`` returns a frame not returned
    before, the newest one, waiting for it if needed.
    """

    def __init__(
        self,
        stream: str = PANO,
        *,
        kind: str = protocol.RAW,
        endpoint: str | None = None,
        config: Config | str | os.PathLike[str] | None = None,
        context: zmq.Context[Any] | None = None,
        server_key: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        if kind not in protocol.FRAME_KINDS:
            raise ValueError(f"kind must be one of {protocol.FRAME_KINDS}, not {kind!r}")
        if (server_key is None) != (client_key is None):
            raise ValueError("server_key and client_key go together (the rig's server.key and your NAME.key_secret)")
        self.stream = stream
        self.kind = kind
        #: CURVE keys for a tcp endpoint: given explicitly, else the config's (when a config is used)
        self._curve: curve.ClientKeys | None = None
        if server_key is not None and client_key is not None:
            self._curve = curve.load_client_keys(server_key, client_key)
        if endpoint is None or config is not None:
            resolved = resolve_config(config)
            endpoint = endpoint or stream_endpoint(resolved, stream)
            if self._curve is None:
                self._curve = curve.client_keys(resolved)
        self.endpoint = endpoint
        self.topic = protocol.topic(stream, kind)
        self._ctx = context or zmq.Context.instance()
        #: frames that arrived but were replaced by a newer one before anyone read them
        self.skipped = 0
        #: malformed messages dropped
        self.malformed = 0
        self.received = 0
        #: security handshakes that failed (a CURVE publisher refused our key, or keys are missing)
        self.refused = 0
        self._cond = threading.Condition()
        self._latest: protocol.Frame | None = None
        #: h264: the access units not read yet, oldest first (bounded: MAX_QUEUED_UNITS)
        self._units: collections.deque[protocol.Frame] = collections.deque()
        self._gate = protocol.UnitGate()  # units are queued from a keyframe on, and after a gap
        self._latest_id = 0
        self._returned_id = 0
        self._closed = False
        self._control_address = f"inproc://zmqcam-subscriber-{id(self):x}-{time.monotonic_ns()}"
        self._control = self._ctx.socket(zmq.PAIR)
        self._control.setsockopt(zmq.LINGER, 0)
        self._control.bind(self._control_address)
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._thread = threading.Thread(target=self._receive_loop, name=f"zmqcam-subscriber-{stream}", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            self._control.close(linger=0)
            raise self._start_error

    @property
    def closed(self) -> bool:
        return self._closed

    def _receive_loop(self) -> None:
        monitor: zmq.Socket[Any] | None = None
        rcvhwm = sockets.H264_RECV_HWM if self.kind == protocol.H264 else sockets.RECV_HWM
        sock = sockets.make_subscriber(self._ctx, [], [self.topic], rcvhwm=rcvhwm)
        try:
            if not sockets.is_local(self.endpoint):
                # watched from before the first connection: a refused key is otherwise silence
                monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)
            sockets.connect(sock, [self.endpoint], self._curve)
        except (zmq.ZMQError, ValueError) as exc:
            self._start_error = exc
            self._started.set()
            if monitor is not None:
                monitor.close(linger=0)
            sock.close(linger=0)
            return
        control = self._ctx.socket(zmq.PAIR)
        control.setsockopt(zmq.LINGER, 0)
        control.connect(self._control_address)
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(control, zmq.POLLIN)
        if monitor is not None:
            poller.register(monitor, zmq.POLLIN)
        self._started.set()
        try:
            while True:
                events = dict(poller.poll())
                if control in events:
                    return
                if monitor is not None and monitor in events:
                    self._handshake_failed(recv_monitor_message(monitor))
                    continue
                if self.kind == protocol.H264:
                    self._queue_units(sock)
                    continue
                newest = self._drain(sock)
                if newest is not None:
                    with self._cond:
                        if self._latest_id != self._returned_id:
                            self.skipped += 1
                        self._latest = newest
                        self._latest_id += 1
                        self._cond.notify_all()
        finally:
            if monitor is not None:
                sock.disable_monitor()
                monitor.close(linger=0)
            sock.close(linger=0)
            control.close(linger=0)

    def _handshake_failed(self, event: Mapping[str, object]) -> None:
        self.refused += 1
        if self.refused > 1:
            return  # libzmq retries with backoff; one line says it all
        if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            why = "the publisher refused our CURVE key (is its .key in the rig's authorized/ directory?)"
        elif self._curve is None:
            why = "the security handshake failed: the publisher probably uses CURVE; pass server_key and client_key"
        else:
            why = "the security handshake failed: is server_key the rig's server.key?"
        log.warning("%s %s: %s", self.stream, self.endpoint, why)

    def _malformed(self, exc: ProtocolError) -> None:
        self.malformed += 1

    def _drain(self, sock: zmq.Socket[Any]) -> protocol.Frame | None:
        newest = None
        for frame in sockets.pending_frames(sock, _DRAIN_LIMIT, self._malformed):
            self.received += 1
            if newest is not None:
                self.skipped += 1
            newest = frame
        return newest

    def _queue_units(self, sock: zmq.Socket[Any]) -> None:
        """Queue every access unit that arrived, in order, from a keyframe on. A unit that does not
        follow the last one queued (``x.au``: lost on the bus) or a full queue (a slow reader) makes
        it wait for the next keyframe: a decoder fed across a gap shows smeared pictures."""
        with self._cond:
            for frame in sockets.pending_frames(sock, _DRAIN_LIMIT, self._malformed):
                self.received += 1
                if len(self._units) >= MAX_QUEUED_UNITS:  # the reader is that far behind: drop the backlog
                    self.skipped += len(self._units)
                    self._units.clear()
                    self._gate.restart()
                # what was queued before a gap still decodes; what follows it does not
                if self._gate.admit(frame):
                    self._units.append(frame)
                else:
                    self.skipped += 1
            if self._units:
                self._cond.notify_all()

    def read(self, timeout: float | None = None) -> tuple[bool, protocol.Frame | None]:
        """Wait up to ``timeout`` seconds (None: forever) for a frame newer than the last one read;
        return ``(True, frame)``, or ``(False, None)`` on timeout. For h264: the next access unit."""
        with self._cond:
            if self._closed:
                raise RuntimeError("Subscriber is closed")
            if self.kind == protocol.H264:
                if not self._cond.wait_for(lambda: bool(self._units) or self._closed, timeout) or self._closed:
                    return False, None
                return True, self._units.popleft()
            if not self._cond.wait_for(lambda: self._latest_id != self._returned_id or self._closed, timeout):
                return False, None
            if self._closed or self._latest is None:
                return False, None
            self._returned_id = self._latest_id
            return True, self._latest

    def __iter__(self) -> Iterator[protocol.Frame]:
        while not self._closed:
            ok, frame = self.read(timeout=1.0)
            if ok and frame is not None:
                yield frame

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        with contextlib.suppress(zmq.ZMQError):
            self._control.send(b"stop")
        self._thread.join(timeout=5)
        self._control.close(linger=0)
        self._latest = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort for scripts that forget close()
        with contextlib.suppress(Exception):
            self.close()


class Camera:
    """Drop-in for the original ``Camera.py`` classes (``jpg_cam``/``rtsp_cam``)::

        cap = Camera()
        cap.start()
        ret, frame = cap.read()     # frame: BGR numpy array of the stitched panorama
        cap.close()

    ``read`` waits up to ``timeout`` seconds (default 1) and returns ``(False, None)`` when no
    frame came, as the original did when it had nothing to give.
    """

    def __init__(
        self,
        stream: str = PANO,
        *,
        config: Config | str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        timeout: float = 1.0,
        server_key: str | os.PathLike[str] | None = None,
        client_key: str | os.PathLike[str] | None = None,
    ) -> None:
        self.stream = stream
        self.config = config
        self.endpoint = endpoint
        self.timeout = timeout
        self._keys = (server_key, client_key)
        self._sub: Subscriber | None = None

    @property
    def starting(self) -> bool:
        """True between start() and close(), like the original's attribute."""
        return self._sub is not None

    def start(self) -> None:
        if self._sub is None:
            self._sub = Subscriber(
                self.stream,
                config=self.config,
                endpoint=self.endpoint,
                server_key=self._keys[0],
                client_key=self._keys[1],
            )

    def read(self, timeout: float | None = None) -> tuple[bool, np.ndarray | None]:
        if self._sub is None:
            return False, None
        ok, frame = self._sub.read(self.timeout if timeout is None else timeout)
        if not ok or frame is None:
            return False, None
        # a copy: the caller may keep or modify it, and the received buffer is read-only
        return True, frame.image.copy()

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None


# the original module exposed both names; either import keeps working
jpg_cam = Camera
rtsp_cam = Camera
