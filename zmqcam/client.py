"""Reading frames from programs: ``Subscriber``, and ``Camera``, the original class API.

    from zmqcam import Subscriber
    with Subscriber("pano") as sub:          # or a camera name: Subscriber("cam0")
        ok, frame = sub.read(timeout=1.0)    # the newest frame; older ones are skipped
        if ok:
            process(frame.image, frame.seq, frame.capture_ns)

A slow reader never sees stale frames pile up: every ``read`` drains what arrived and returns the
newest. Endpoints come from the config the daemon uses (``./config/zmqcam.toml`` if present, else
the built-in default) unless given explicitly. The subscription reconnects by itself when the
daemon or one of its processes restarts.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from zmqcam import bus, protocol
from zmqcam.config import Config, connect_endpoint, default_config, load_config
from zmqcam.errors import ProtocolError

DEFAULT_CONFIG_PATH = Path("config") / "zmqcam.toml"
#: at most this many queued messages are read per drain, so a flood cannot starve the caller
_DRAIN_LIMIT = 64


def resolve_config(config: Config | str | os.PathLike[str] | None = None) -> Config:
    """The config a client or the daemon uses when none is named: ./config/zmqcam.toml, else built-in."""
    if isinstance(config, Config):
        return config
    if config is not None:
        return load_config(config)
    if DEFAULT_CONFIG_PATH.is_file():
        return load_config(DEFAULT_CONFIG_PATH)
    return default_config()


def stream_endpoint(config: Config, stream: str) -> str:
    """The endpoint a local consumer connects to for ``stream`` ("pano" or a camera name)."""
    if stream == protocol.PANO:
        return connect_endpoint(config.pano_endpoints[0])
    try:
        return connect_endpoint(config.camera_endpoint(stream))
    except KeyError:
        names = ", ".join([protocol.PANO] + [c.name for c in config.camera])
        raise ValueError(f"no stream named {stream!r} (known: {names})") from None


class Subscriber:
    """The newest frames of one stream. ``kind`` is "raw" (BGR pixels) or "jpeg" (encoded once upstream)."""

    def __init__(
        self,
        stream: str = protocol.PANO,
        *,
        kind: str = protocol.RAW,
        endpoint: str | None = None,
        config: Config | str | os.PathLike[str] | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        if kind not in protocol.FRAME_KINDS:
            raise ValueError(f"kind must be one of {protocol.FRAME_KINDS}, not {kind!r}")
        self.stream = stream
        self.kind = kind
        self.endpoint = endpoint or stream_endpoint(resolve_config(config), stream)
        self.topic = protocol.topic(stream, kind)
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket[Any] | None = bus.make_subscriber(self._ctx, [self.endpoint], [self.topic])
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        #: frames skipped because a newer one had arrived (the reader was slower than the stream)
        self.skipped = 0
        #: malformed messages dropped
        self.malformed = 0
        self.received = 0

    @property
    def closed(self) -> bool:
        return self._sock is None

    def read(self, timeout: float | None = None) -> tuple[bool, protocol.Frame | None]:
        """Wait up to ``timeout`` seconds (None: forever) for a frame; return ``(ok, newest frame)``."""
        if self._sock is None:
            raise RuntimeError("Subscriber is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._poller.poll(None if remaining is None else int(remaining * 1000)):
                return False, None
            frame = self._drain()
            if frame is not None:
                return True, frame
            if deadline is not None and time.monotonic() >= deadline:
                return False, None

    def _drain(self) -> protocol.Frame | None:
        assert self._sock is not None
        newest = None
        for _ in range(_DRAIN_LIMIT):
            try:
                parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            try:
                frame = protocol.decode(parts)
            except ProtocolError:
                self.malformed += 1
                continue
            self.received += 1
            if newest is not None:
                self.skipped += 1
            newest = frame
        return newest

    def __iter__(self) -> Iterator[protocol.Frame]:
        while self._sock is not None:
            ok, frame = self.read(timeout=1.0)
            if ok and frame is not None:
                yield frame

    def close(self) -> None:
        if self._sock is not None:
            self._poller.unregister(self._sock)
            self._sock.close(linger=0)
            self._sock = None

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort for scripts that forget close()
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110
            pass


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
        stream: str = protocol.PANO,
        *,
        config: Config | str | os.PathLike[str] | None = None,
        endpoint: str | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.stream = stream
        self.config = config
        self.endpoint = endpoint
        self.timeout = timeout
        self._sub: Subscriber | None = None

    @property
    def starting(self) -> bool:
        """True between start() and close(), like the original's attribute."""
        return self._sub is not None

    def start(self) -> None:
        if self._sub is None:
            self._sub = Subscriber(self.stream, config=self.config, endpoint=self.endpoint)

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
