"""Collecting the status every zmqcam process publishes (``<stream> status`` topics).

Status subscriptions never count as demand, so reading status never wakes a camera.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from zmqcam import bus, protocol
from zmqcam.config import Config, connect_endpoint
from zmqcam.errors import ProtocolError


def collect_status(
    config: Config, timeout: float = 1.5, ctx: zmq.Context[Any] | None = None
) -> dict[str, dict[str, Any]]:
    """One status message per stream (every camera and ``pano``), waiting at most ``timeout`` s."""
    context = ctx or zmq.Context.instance()
    endpoints = {connect_endpoint(config.camera_endpoint(c)) for c in config.camera}
    wanted = {c.name for c in config.camera}
    if config.stitch.enabled:
        endpoints.add(connect_endpoint(config.pano_endpoints[0]))
        wanted.add(protocol.PANO)
    topics = [protocol.topic(name, protocol.STATUS) for name in wanted]
    sock = bus.make_subscriber(context, sorted(endpoints), topics)
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
