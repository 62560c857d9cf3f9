"""Collecting the status every zmqcam process publishes (``<stream> status`` topics).

Status subscriptions never count as demand, so reading status never wakes a camera.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import zmq

from zmqcam.bus import curve, protocol, sockets
from zmqcam.config import Config
from zmqcam.errors import ProtocolError
from zmqcam.names import PANO


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
