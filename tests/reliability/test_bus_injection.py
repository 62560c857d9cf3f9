"""Garbage injected on the bus, at every process that reads it: counted, dropped, survived.

The fuzz tests (``test_fuzz_protocol.py``) prove that ``protocol.decode`` rejects every malformed
message with ProtocolError. These tests prove the processes act on that: a stitcher, a bridge and a
grabber fed malformed messages on their real sockets keep running, count what they dropped in their
status, and keep delivering good frames. The impostor publishers here stand in for a broken or
hostile peer: they bind the endpoints the real processes connect to.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import requests
import simplejpeg
import zmq

from tests.helpers import Children, bus_status, eventually, wait_for
from tests.helpers.stream import Viewer
from zmqcam import Subscriber
from zmqcam.bridge import read_announce, run_bridge
from zmqcam.bus import protocol, sockets
from zmqcam.bus.status import collect_status
from zmqcam.config import Config
from zmqcam.grabber import run_grabber
from zmqcam.stitcher import run_stitcher


def garbage_for(stream: str, kind: str, good: list[bytes]) -> list[list[bytes]]:
    """Every shape of bad message a broken peer could send on ``stream``'s ``kind`` topic."""
    topic = protocol.topic(stream, kind)
    header = json.loads(good[1])
    return [
        [topic],  # too few parts
        [topic, good[1], good[2], b"extra"],  # too many parts
        [topic, b"\xff\xfe", good[2]],  # header not JSON
        [topic, b"[1, 2]", good[2]],  # header not an object
        [topic, json.dumps(header | {"v": 99}).encode(), good[2]],  # unknown header version
        [topic, json.dumps(header | {"w": -5}).encode(), good[2]],  # impossible size
        [topic, good[1], good[2][: len(good[2]) // 3]],  # payload shorter than the header says
        [topic, json.dumps(header | {"stream": "other"}).encode(), good[2]],  # header/topic disagree
        [b"cam0 raw", good[1], good[2]],  # topic without its terminator
        [topic, good[1], b""],  # empty payload
    ]


#: how many messages of each garbage_for() burst a subscriber of the topic receives: all but the
#: one whose topic lacks its terminator (it matches no subscription)
DELIVERED_GARBAGE = 9


def good_raw(stream: str, seq: int, width: int = 640, height: int = 480) -> list[bytes]:
    image = np.full((height, width, 3), 90, np.uint8)
    return [bytes(p) for p in protocol.encode(stream, protocol.RAW, seq, time.time_ns(), image, width, height)]


def good_jpeg(stream: str, seq: int, jpeg: bytes, width: int, height: int) -> list[bytes]:
    return [bytes(p) for p in protocol.encode(stream, protocol.JPEG, seq, time.time_ns(), jpeg, width, height)]


def impostor(ctx: zmq.Context[Any], endpoint: str) -> zmq.Socket[Any]:
    """An XPUB at ``endpoint`` with a deep queue: a broken peer is not bound by our small HWMs, and
    the good frame sent after each burst of garbage must not be the one dropped."""
    pub = sockets.make_publisher(ctx, [])
    pub.setsockopt(zmq.SNDHWM, 1000)
    pub.bind(endpoint)
    return pub


def alive(proc: Any) -> bool:
    return bool(proc.is_alive()) and proc.exitcode is None


def test_stitcher_survives_garbage_from_its_cameras(
    make_config: Callable[..., Config], children: Children, ctx: zmq.Context[Any]
) -> None:
    """Upstream garbage of every kind is counted as malformed, the stitcher keeps running, and
    panoramas built from the good frames in between keep coming with both cameras live."""
    config = make_config(cameras=2, stitch={"stale_after": 1.0})
    impostors = [impostor(ctx, config.camera_endpoint(cam)) for cam in config.camera]
    stitcher = children.start(run_stitcher, config)
    demand = [sockets.Demand() for _ in impostors]
    live_panoramas = 0
    seq = 0
    bursts = 0
    try:
        with Subscriber("pano", config=config) as sub:
            deadline = time.monotonic() + 20
            while live_panoramas < 5 and time.monotonic() < deadline:
                for pub, d in zip(impostors, demand, strict=True):
                    sockets.drain_subscriptions(pub, d)
                seq += 1
                for cam, pub, d in zip(config.camera, impostors, demand, strict=True):
                    if not d.wants(protocol.topic(cam.name, protocol.RAW)):
                        continue
                    good = good_raw(cam.name, seq)
                    for parts in garbage_for(cam.name, protocol.RAW, good):
                        pub.send_multipart(parts)
                    pub.send_multipart(good)
                    bursts += 1
                ok, frame = sub.read(timeout=0.1)
                if ok and frame is not None and not frame.extra["stale"]:
                    assert frame.image.shape == (250, config.pano_size[0], 3)
                    live_panoramas += 1
            assert live_panoramas >= 5, f"only {live_panoramas} live panoramas between the garbage"

        # every message of garbage that reached it (all but the unterminated topic, which its
        # subscription never matches) is counted, as malformed or, for "other" streams, unknown
        def all_counted(found: dict[str, dict[str, Any]]) -> None:
            pano = found["pano"]
            assert pano["malformed"] + pano["unknown"] == bursts * DELIVERED_GARBAGE, (bursts, pano)

        bus_status(config, all_counted, streams=["pano"])
        assert alive(stitcher)
    finally:
        for pub in impostors:
            pub.close(linger=0)


def test_bridge_survives_garbage_on_a_camera_topic(
    make_config: Callable[..., Config], children: Children, ctx: zmq.Context[Any]
) -> None:
    """A camera stream fed garbage between good JPEGs: a viewer of /stream/cam0 gets the good JPEG,
    untouched, and nothing else (before it, the "waking" card); /status counts every malformed
    message that reached the bridge; the bridge stays up."""
    config = make_config(cameras=1, stitch={"enabled": False}, http={"port": 0})
    pub = impostor(ctx, config.camera_endpoint("cam0"))
    bridge = children.start(run_bridge, config)
    info = wait_for(lambda: read_announce(config.run_dir), 30, message="the bridge to listen")
    url = f"http://127.0.0.1:{info['port']}"
    jpeg = simplejpeg.encode_jpeg(np.full((48, 64, 3), 200, np.uint8), colorspace="BGR")
    demand = sockets.Demand()
    viewer = Viewer(info["port"], "/stream/cam0")
    try:
        parts: list[tuple[dict[str, str], bytes]] = []
        deadline = time.monotonic() + 15
        seq = 0
        while sum(body == jpeg for _, body in parts) < 3:
            assert time.monotonic() < deadline, f"the good JPEG reached the viewer {len(parts)} times"
            sockets.drain_subscriptions(pub, demand)
            if demand.wants(protocol.topic("cam0", protocol.JPEG)):
                seq += 1
                good = good_jpeg("cam0", seq, jpeg, 64, 48)
                for garbage in garbage_for("cam0", protocol.JPEG, good):
                    pub.send_multipart(garbage)
                pub.send_multipart(good)
                parts.append(viewer.next_part())
            else:
                time.sleep(0.02)  # waiting for the bridge's subscription to arrive
        for headers, body in parts:
            if headers["X-Zmqcam-State"] == "waking":
                assert not any(b == jpeg for _, b in parts[: parts.index((headers, body))]), "a card after frames"
            else:
                assert headers["X-Zmqcam-State"] == "live" and body == jpeg, "something else reached the viewer"

        def all_counted(status: dict[str, Any]) -> None:
            assert status["http"]["malformed"] == seq * DELIVERED_GARBAGE, (seq, status["http"])

        eventually(lambda: requests.get(url + "/status", timeout=5).json(), all_counted, 10)
        assert alive(bridge)
        assert requests.get(url + "/status", timeout=5).status_code == 200
    finally:
        viewer.close()
        pub.close(linger=0)


def cam0_status(config: Config) -> dict[str, Any] | None:
    """cam0's next status (within a second), asking for no stream that is not running here."""
    return collect_status(config, timeout=1.0, streams=["cam0"]).get("cam0")


@pytest.mark.slow
def test_grabber_survives_garbage_sent_to_its_publisher(
    make_config: Callable[..., Config], children: Children, ctx: zmq.Context[Any]
) -> None:
    """An XSUB peer can send arbitrary messages to a grabber's XPUB: they are counted as malformed
    and never count as demand (the camera stays asleep). Peers that do not speak ZeroMQ at all (a
    browser pointed at the tcp port, a broken greeting) are survived too, and once they are gone the
    camera sleeps again. A real subscriber afterwards gets frames as usual, and a forged
    unsubscribe from another peer does not take its demand away."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(cameras=1, camera={"idle_timeout": 0.5, "fps": 10, "endpoint": f"tcp://127.0.0.1:{port}"})
    grabber = children.start(run_grabber, config, "cam0")
    endpoint = config.camera_endpoint("cam0")
    wait_for(lambda: cam0_status(config), 20, message="grabber status")
    xsub = ctx.socket(zmq.XSUB)
    xsub.setsockopt(zmq.LINGER, 0)
    xsub.connect(endpoint)
    # not subscriptions: plain messages, multipart junk, an empty frame
    for parts in ([b"hello"], [b"\x02junk", b"more"], [b""], [b"\xff" * 5000]):
        xsub.send_multipart(parts)
    try:
        status = wait_for(
            lambda: (s := cam0_status(config)) and s["malformed"] >= 5 and s,
            10,
            message="the grabber to count the junk",
        )
        assert status["state"] == "asleep", "junk messages must not wake the camera"
        # A peer without the ZMTP greeting is taken for a ZMTP 1.0 subscriber, to which libzmq
        # subscribes everything for as long as it stays connected (README, Guarantees: CURVE on tcp
        # prevents it). It must not hurt the grabber, and its demand must end with its connection.
        for junk in (b"GET / HTTP/1.1\r\nHost: cam\r\n\r\n" * 8, b"\xff" + b"\x00" * 8 + b"\x7f\x09" + b"\xee" * 100):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                raw.sendall(junk)
        wait_for(
            lambda: (s := cam0_status(config)) and s["state"] == "asleep",
            10,
            message="the camera to sleep once the junk peers are gone",
        )
        with Subscriber("cam0", config=config) as sub:
            ok, frame = sub.read(timeout=10)
            assert ok and frame is not None and frame.image.shape == (480, 640, 3)
            # a peer cannot cancel someone else's subscription: libzmq passes up only the
            # unsubscribes of subscriptions the sending peer made itself
            xsub.send(b"\x00" + protocol.topic("cam0", protocol.RAW))
            time.sleep(2 * config.camera[0].idle_timeout)  # long enough to sleep, had it counted

            def still_wanted(found: dict[str, dict[str, Any]]) -> None:
                assert found["cam0"]["state"] == "live" and found["cam0"]["subscribers"]["raw"] == 1, found

            bus_status(config, still_wanted, streams=["cam0"])
            assert sub.read(timeout=5)[0]
        assert alive(grabber)
    finally:
        xsub.close(linger=0)
