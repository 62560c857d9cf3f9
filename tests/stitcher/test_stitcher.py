"""The stitcher process with real synthetic grabbers: size, pacing, demand, NO SIGNAL slots."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.helpers import Children, bus_status, wait_for
from zmqcam import Subscriber
from zmqcam.bus.status import collect_status
from zmqcam.config import Config
from zmqcam.grabber import run_grabber
from zmqcam.stitcher import run_stitcher


def start_rig(config: Config, children: Children) -> dict[str, Any]:
    procs = {cam.name: children.start(run_grabber, config, cam.name) for cam in config.camera}
    procs["pano"] = children.start(run_stitcher, config)
    wait_for(lambda: len(collect_status(config, timeout=2.0)) == len(config.camera) + 1, 30, message="rig status")
    return procs


@pytest.fixture
def rig4(make_config: Callable[..., Config], children: Children) -> tuple[Config, dict[str, Any]]:
    config = make_config(camera={"idle_timeout": 1.0, "fps": 10}, stitch={"stale_after": 1.0})
    return config, start_rig(config, children)


def read_frames(sub: Subscriber, n: int, timeout: float = 15.0) -> list[Any]:
    frames = []
    deadline = time.monotonic() + timeout
    while len(frames) < n and time.monotonic() < deadline:
        ok, frame = sub.read(timeout=1.0)
        if ok:
            frames.append(frame)
    assert len(frames) == n, f"got {len(frames)} of {n} panoramas"
    return frames


def test_panorama_of_four_synthetic_cameras(rig4: tuple[Config, dict[str, Any]]) -> None:
    """The panorama has the configured size (2347x250), seq increases, the header lists the 4 sources."""
    config, _ = rig4
    with Subscriber("pano", config=config) as sub:
        frames = read_frames(sub, 8)
    for frame in frames:
        assert frame.image.shape == (250, 2347, 3)
        names = [s["name"] for s in frame.extra["sources"]]
        assert names == ["cam0", "cam1", "cam2", "cam3"]
    live = [f for f in frames if not f.extra["stale"]]
    assert live, "no panorama had all four cameras live"
    assert all(s["state"] == "live" and s["seq"] > 0 and s["t_cap"] > 0 for s in live[-1].extra["sources"])
    # the spread is how far apart the cameras' frames in it were captured
    captured = [src["t_cap"] for src in live[-1].extra["sources"]]
    assert live[-1].extra["spread_ns"] == max(captured) - min(captured)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # the slots are pictures, not NO SIGNAL cards: the synthetic scene is colourful
    assert live[-1].image.std() > 20


def test_jpeg_is_encoded_only_while_subscribed(rig4: tuple[Config, dict[str, Any]]) -> None:
    """pano jpeg is encoded once per panorama and only while someone subscribes to it."""
    config, _ = rig4
    with Subscriber("pano", kind="raw", config=config) as sub:
        read_frames(sub, 3)

        def made_but_not_encoded(s: dict[str, dict[str, Any]]) -> None:
            assert s["pano"]["panoramas"] > 0 and s["pano"]["subscribers"].get("raw") == 1, s["pano"]
            assert s["pano"]["jpeg_encoded"] == 0, "encoded with nobody subscribed to pano jpeg"

        bus_status(config, made_but_not_encoded, streams=["pano"])
    with Subscriber("pano", kind="jpeg", config=config) as a, Subscriber("pano", kind="jpeg", config=config) as b:
        fa = read_frames(a, 3)
        read_frames(b, 3)
        assert fa[-1].jpeg[:2] == b"\xff\xd8" and fa[-1].image.shape == (250, 2347, 3)

        def both_subscribed(s: dict[str, dict[str, Any]]) -> None:
            assert s["pano"]["subscribers"].get("jpeg") == 2, s["pano"]

        first = bus_status(config, both_subscribed, streams=["pano"])["pano"]
        read_frames(a, 5)
        later = bus_status(config, both_subscribed, streams=["pano"])["pano"]
        # two subscribers all along, one encode per panorama (not one per subscriber)
        made = later["panoramas"] - first["panoramas"]
        assert made >= 3 and later["jpeg_encoded"] - first["jpeg_encoded"] == made, (first, later)


def test_killed_grabber_shows_no_signal_and_comes_back(rig4: tuple[Config, dict[str, Any]], children: Children) -> None:
    """A dead camera gets its NO SIGNAL slot within stale_after + 1 s while the others stay live;
    a restart brings it back."""
    config, procs = rig4
    with Subscriber("pano", config=config) as sub:
        wait_for(lambda: (r := sub.read(timeout=1.0))[0] and not r[1].extra["stale"], 15, interval=0)
        os.kill(procs["cam2"].pid, signal.SIGKILL)

        def cam2_stale() -> Any:
            ok, frame = sub.read(timeout=1.0)
            return ok and "cam2" in frame.extra["stale"] and frame

        frame = wait_for(cam2_stale, config.stitch.stale_after + 15, interval=0, message="NO SIGNAL slot")
        # not before stale_after without a frame: the panorama that first shows the card went out at
        # least stale_after after cam2's last frame was captured (times from the frame itself, so a
        # loaded machine cannot make this fail or pass)
        last_cam2 = next(src for src in frame.extra["sources"] if src["name"] == "cam2")
        assert frame.publish_ns - last_cam2["t_cap"] >= config.stitch.stale_after * 1e9
        states = {s["name"]: s["state"] for s in frame.extra["sources"]}
        assert states == {"cam0": "live", "cam1": "live", "cam2": "stale", "cam3": "live"}
        # the slot shows the card: dark grey with light text, unlike the scene
        slots = {name: (x0, x1) for name, x0, x1 in _slots(config)}
        x0, x1 = slots["cam2"]
        card = frame.image[:, x0:x1]
        assert np.median(card) < 80 and card.max() > 180
        children.start(run_grabber, config, "cam2")

        def cam2_live() -> Any:
            ok, frame = sub.read(timeout=1.0)
            return ok and not frame.extra["stale"]

        wait_for(cam2_live, 20, interval=0, message="cam2 back")


def _slots(config: Config) -> list[tuple[str, int, int]]:
    out = []
    x = 0
    for cam in config.stitched_cameras:
        front, back = cam.crop_range
        out.append((cam.name, x, x + back - front))
        x += back - front
    return out


@pytest.mark.parametrize("max_wait", [None, 0.15])
def test_one_slow_camera_does_not_stall_the_panorama(
    make_config: Callable[..., Config], children: Children, max_wait: float | None
) -> None:
    """With one camera at 2 fps and the other at 10, every panorama has the fast camera's newest
    frame; with a max_wait shorter than the slow camera's interval, panoramas go out at the fast
    camera's pace, reusing the slow camera's last frame (the default, 1.5 intervals of the slowest
    camera, waits for it). Counted in frames, not timed: how fast is the benchmark's business."""
    config = make_config(cameras=2, camera={"idle_timeout": 1.0, "fps": 10})
    data = config.model_dump()
    data["camera"][1]["fps"] = 2.0
    data["stitch"]["max_wait"] = max_wait
    config = Config.model_validate(data)
    start_rig(config, children)
    with Subscriber("pano", config=config) as sub:
        read_frames(sub, 3)
        # waiting for the 2 fps camera, panoramas come at its pace: five show a new fast frame each
        # as well as ten would; a short max_wait needs ten for its two-per-slow-frame count
        frames = read_frames(sub, 5 if max_wait is None else 10, timeout=60)
    assert all(not f.extra["stale"] for f in frames)
    fast = [f.extra["sources"][0]["seq"] for f in frames]
    slow = [f.extra["sources"][1]["seq"] for f in frames]
    assert len(set(fast)) == len(fast), "a panorama went out without the fast camera's new frame"
    if max_wait is not None:
        # a short max_wait emits at the fast camera's pace (5 to each slow frame), reusing the slow
        # camera's last frame: at least two panoramas per slow frame, however loaded the machine
        assert len(set(slow)) <= len(slow) // 2, f"panoramas waited for the slow camera: {slow}"


def test_nobody_watching_lets_the_grabbers_sleep(rig4: tuple[Config, dict[str, Any]]) -> None:
    """The stitcher subscribes upstream only while it has subscribers; then the cameras power down."""
    config, _ = rig4

    def all_asleep(s: dict[str, dict[str, Any]]) -> None:
        assert not s["pano"]["upstream"] and all(s[c.name]["state"] == "asleep" for c in config.camera), s

    bus_status(config, all_asleep)
    with Subscriber("pano", config=config) as sub:
        read_frames(sub, 2)

        def all_live(s: dict[str, dict[str, Any]]) -> None:
            assert s["pano"]["upstream"] and all(s[c.name]["state"] == "live" for c in config.camera), s

        bus_status(config, all_live)
    bus_status(config, all_asleep, timeout=config.camera[0].idle_timeout + 15)


def test_tcp_endpoint_serves_remote_consumers(make_config: Callable[..., Config], children: Children) -> None:
    """An extra tcp:// endpoint carries the panorama to consumers on other hosts (here: loopback)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(
        cameras=2, camera={"idle_timeout": 1.0, "fps": 10}, stitch={"extra_endpoints": [f"tcp://127.0.0.1:{port}"]}
    )
    start_rig(config, children)
    with Subscriber("pano", endpoint=f"tcp://127.0.0.1:{port}") as sub:
        frames = read_frames(sub, 3)
    assert frames[-1].image.shape == (250, 632 + 525, 3)
