"""The grabber as a real process with a synthetic camera, read through the client library."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.helpers import Children, reader_process, wait_for
from zmqcam import Camera, Subscriber
from zmqcam.bus import protocol
from zmqcam.bus.status import collect_status
from zmqcam.config import Config
from zmqcam.grabber import Backoff, run_grabber


def cam_status(config: Config, name: str = "cam0") -> dict[str, Any]:
    # only the stream asked for: the rig's other streams (no stitcher runs here) would only be waited for
    return collect_status(config, timeout=2.0, streams=[name]).get(name, {})


@pytest.fixture
def one_camera(make_config: Callable[..., Config], children: Children) -> Config:
    config = make_config(cameras=1, camera={"idle_timeout": 1.0, "fps": 20})
    children.start(run_grabber, config, "cam0")
    wait_for(lambda: cam_status(config), 20, message="grabber status")
    return config


def test_frames_arrive_through_the_subscriber(one_camera: Config) -> None:
    """A program reading cam0 gets 640x480 BGR frames with increasing seq and recent capture times."""
    with Subscriber("cam0", config=one_camera) as sub:
        frames = []
        deadline = time.monotonic() + 10
        while len(frames) < 5 and time.monotonic() < deadline:
            ok, frame = sub.read(timeout=2.0)
            if ok:
                frames.append(frame)
    assert len(frames) == 5
    assert all(f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8 for f in frames)
    seqs = [f.seq for f in frames]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    assert all(0 <= f.age < 2.0 for f in frames)
    # the synthetic scene moves: consecutive frames differ
    assert not np.array_equal(frames[0].image, frames[-1].image)


def test_products_are_made_only_while_subscribed(one_camera: Config) -> None:
    """A raw camera's JPEG is encoded only while someone subscribes to jpeg; raw is sent only while wanted."""
    with Subscriber("cam0", kind="raw", config=one_camera) as sub:
        assert sub.read(timeout=10)[0]
        time.sleep(0.5)
        before = cam_status(one_camera)
    assert before["encoded"] == 0, "encoded JPEG although nobody subscribed to jpeg"
    assert before["published"]["jpeg"] == 0 and before["published"]["raw"] > 0
    with Subscriber("cam0", kind="jpeg", config=one_camera) as sub:
        ok, frame = sub.read(timeout=10)
        assert ok and frame is not None and frame.jpeg[:2] == b"\xff\xd8"
        assert frame.image.shape == (480, 640, 3)
        after = wait_for(lambda: (s := cam_status(one_camera)) and s["encoded"] > 0 and s, 5)
    raw_then = after["published"]["raw"]
    time.sleep(1.5)
    assert cam_status(one_camera)["published"]["raw"] == raw_then, "raw frames published with no raw subscriber"


def test_camera_sleeps_after_idle_timeout_and_wakes_on_subscribe(one_camera: Config) -> None:
    """No subscriber for idle_timeout -> camera closed; the first subscription reopens it at once."""
    assert cam_status(one_camera)["state"] == "asleep", "camera opened although nobody asked"
    with Subscriber("cam0", config=one_camera) as sub:
        assert sub.read(timeout=10)[0]
        assert cam_status(one_camera)["state"] == "live"
    # idle_timeout is 1 s; the camera is released soon after
    wait_for(lambda: cam_status(one_camera).get("state") == "asleep", 6, message="camera to sleep")
    frames_asleep = cam_status(one_camera)["frames"]
    time.sleep(1.2)
    assert cam_status(one_camera)["frames"] == frames_asleep, "a sleeping camera kept producing"
    t0 = time.monotonic()
    with Subscriber("cam0", config=one_camera) as sub:
        assert sub.read(timeout=10)[0]
    assert time.monotonic() - t0 < 5


def test_status_subscription_is_not_demand(one_camera: Config) -> None:
    """Watching status (as `zmqcam-daemon status` does) never wakes the camera."""
    for _ in range(3):
        assert cam_status(one_camera)["state"] == "asleep"
    assert cam_status(one_camera)["frames"] == 0


def test_always_on_camera_runs_without_subscribers(make_config: Callable[..., Config], children: Children) -> None:
    """always_on keeps the camera open with nobody watching."""
    config = make_config(cameras=1, camera={"always_on": True, "idle_timeout": 0.0, "fps": 10})
    children.start(run_grabber, config, "cam0")
    status = wait_for(lambda: (s := cam_status(config)) and s.get("frames", 0) > 5 and s, 20)
    assert status["state"] == "live"


def test_idle_timeout_zero_closes_at_once(make_config: Callable[..., Config], children: Children) -> None:
    """idle_timeout = 0 releases the camera as soon as the last subscriber leaves."""
    config = make_config(cameras=1, camera={"idle_timeout": 0.0, "fps": 10})
    children.start(run_grabber, config, "cam0")
    wait_for(lambda: cam_status(config), 20)
    with Subscriber("cam0", config=config) as sub:
        assert sub.read(timeout=10)[0]
    wait_for(lambda: cam_status(config).get("state") == "asleep", 3)


def test_sigkilled_subscriber_releases_demand(one_camera: Config) -> None:
    """A subscriber process killed with SIGKILL counts as gone: the camera goes back to sleep."""
    with reader_process("cam0", endpoint=one_camera.camera_endpoint("cam0")) as proc:
        assert cam_status(one_camera)["subscribers"]["raw"] == 1
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        wait_for(lambda: cam_status(one_camera)["subscribers"]["raw"] == 0, 5, message="unsubscribe on death")
        wait_for(lambda: cam_status(one_camera)["state"] == "asleep", 5, message="camera to sleep")


def test_slow_reader_gets_the_newest_frame(one_camera: Config) -> None:
    """A reader slower than the camera skips frames instead of reading an ever older backlog: after
    three frames arrived while it was not reading, its next read is the newest of them (a backlog
    would hand out the one right after the last read). An order of frames, not an age in ms."""
    with Subscriber("cam0", config=one_camera) as sub:
        ok, last = sub.read(timeout=10)
        for _ in range(4):
            assert ok and last is not None
            arrived = sub.received
            wait_for(lambda n=arrived: sub.received >= n + 3, 10, message="three frames while the reader is busy")
            ok, frame = sub.read(timeout=2)
            assert ok and frame is not None
            assert frame.seq >= last.seq + 3, f"read seq {frame.seq} after {last.seq}: a backlog, not the newest"
            last = frame
        assert sub.skipped >= 8


def test_camera_shim_behaves_like_the_original(one_camera: Config) -> None:
    """cap = Camera(); cap.start(); ret, frame = cap.read(); cap.close() as in the original Camera.py."""
    cap = Camera("cam0", config=one_camera)
    assert cap.read() == (False, None)  # not started: nothing to give, like the original
    cap.start()
    try:
        ret, frame = False, None
        deadline = time.monotonic() + 10
        while not ret and time.monotonic() < deadline:
            ret, frame = cap.read()
        assert ret and frame is not None
        assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
        frame[0, 0] = 1  # the caller owns the array
    finally:
        cap.close()
    assert not cap.starting
    assert cap.read() == (False, None)


def test_backoff_doubles_with_jitter_to_a_cap() -> None:
    """Reconnect delays grow 0.5 s -> 30 s (jittered +-20 %) and start over after a reset."""
    backoff = Backoff(0.5, 30.0)
    delays = [backoff.next_delay() for _ in range(10)]
    assert 0.4 <= delays[0] <= 0.6
    assert 0.8 <= delays[1] <= 1.2
    assert all(d <= 30.0 for d in delays) and delays[-1] >= 24.0
    backoff.reset()
    assert backoff.next_delay() <= 0.6


def test_unknown_stream_name_is_a_clear_error(one_camera: Config) -> None:
    """Subscriber("nope") names the streams that exist."""
    with pytest.raises(ValueError, match=r"no stream named 'nope' \(known: pano, cam0\)"):
        Subscriber("nope", config=one_camera)
    with pytest.raises(ValueError, match="kind must be"):
        Subscriber("cam0", kind="png", config=one_camera)
    assert protocol.topic("cam0", "raw") == b"cam0 raw\x00"
