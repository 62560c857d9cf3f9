"""Real camera protocols through real grabber (and stitcher) processes, against the fake ESP32-CAM
and GStreamer's RTSP server: what a rig of real cameras does to the daemon."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import Children, wait_for
from fixtures_cameras import camera as camera_config
from fixtures_cameras import opened, require_rtsp

from zmqcam import Subscriber
from zmqcam.config import Config
from zmqcam.grabber import run_grabber
from zmqcam.status import collect_status
from zmqcam.stitcher import run_stitcher
from zmqcam.testing.fakecam import FakeCam
from zmqcam.testing.rtsp_server import RtspServer


def status(config: Config, name: str = "cam0") -> dict[str, Any]:
    return collect_status(config, timeout=2.0).get(name, {})


@pytest.fixture
def fake() -> Iterator[FakeCam]:
    cam = FakeCam(fps=15.0, capture_delay=0.05)
    cam.start()
    yield cam
    cam.stop()


def rig(make_config: Callable[..., Config], sources: list[dict[str, Any]], **sections: Any) -> Config:
    """A config whose cameras read the given sources (fields per camera) with short timeouts."""
    config = make_config(cameras=max(2, len(sources)), **sections)
    data = config.model_dump()
    data["camera"] = data["camera"][: len(sources)]
    for cam, fields in zip(data["camera"], sources, strict=True):
        cam.update({"connect_timeout": 1.0, "read_timeout": 1.0, "idle_timeout": 1.0, "fps": 15.0, **fields})
    if len(sources) == 1:
        data["stitch"]["enabled"] = False
    return Config.model_validate(data)


def start(config: Config, children: Children, stitcher: bool = False) -> None:
    for cam in config.camera:
        children.start(run_grabber, config, cam.name)
    if stitcher:
        children.start(run_stitcher, config)
    names = {c.name for c in config.camera} | ({"pano"} if stitcher else set())
    wait_for(lambda: set(collect_status(config, timeout=2.0)) >= names, 30, message="grabber status")


def read_n(sub: Subscriber, n: int, timeout: float = 15.0) -> list[Any]:
    frames: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(frames) < n and time.monotonic() < deadline:
        ok, frame = sub.read(timeout=1.0)
        if ok:
            frames.append(frame)
    assert len(frames) == n, f"{len(frames)} of {n} frames"
    return frames


@pytest.mark.parametrize("url", ["stream_url", "capture_url", "jpg_url"])
def test_jpeg_sources_forward_the_cameras_bytes_untouched(
    url: str, fake: FakeCam, make_config: Callable[..., Config], children: Children
) -> None:
    """MJPEG and snapshot JPEGs reach `<cam> jpeg` byte for byte as the camera sent them, at the
    right size; they are decoded only while someone subscribes to raw."""
    config = rig(make_config, [{"source": getattr(fake, url)}])
    start(config, children)
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        frames = read_n(sub, 5)
        assert all(fake.was_sent(f.jpeg) for f in frames)
        assert all((f.width, f.height) == (640, 480) for f in frames)
        seen = status(config)
        assert seen["decoded"] == 0, "decoded JPEG although nobody wants raw"
        with Subscriber("cam0", kind="raw", config=config) as raw:
            image = read_n(raw, 2)[-1].image
            assert image.shape == (480, 640, 3)
            wait_for(lambda: status(config)["decoded"] > 0, 5, message="decodes while raw is wanted")


def test_mjpeg_stream_rate(fake: FakeCam, make_config: Callable[..., Config], children: Children) -> None:
    """An MJPEG camera at 15 fps is published at about 15 fps."""
    config = rig(make_config, [{"source": fake.stream_url}])
    start(config, children)
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        read_n(sub, 3)
        t0 = time.monotonic()
        read_n(sub, 15)
        rate = 15 / (time.monotonic() - t0)
    assert 10 <= rate <= 20, rate


def test_power_down_frees_the_camera_and_a_new_subscriber_reconnects(
    fake: FakeCam, make_config: Callable[..., Config], children: Children
) -> None:
    """After idle_timeout with no subscriber the camera sees our connection closed and can serve
    another client; a new subscriber then reconnects."""
    config = rig(make_config, [{"source": fake.stream_url}])
    start(config, children)
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        read_n(sub, 2)
        assert fake.active_stream_clients == 1
    assert fake.wait_until(lambda: fake.active_stream_clients == 0, 6), "grabber kept the camera open"
    wait_for(lambda: status(config)["state"] == "asleep", 5)
    # the ESP32 serves one client: another one now gets frames
    with opened(camera_config(fake.stream_url)) as other:
        assert other.read(2.0).is_jpeg
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        read_n(sub, 2)


def test_killed_camera_shows_no_signal_backs_off_and_comes_back(
    fake: FakeCam, make_config: Callable[..., Config], children: Children
) -> None:
    """A camera that dies: NO SIGNAL in the panorama within stale_after + 1 s, reconnect attempts
    back off, and the camera is live again soon after it returns."""
    other = FakeCam(fps=15.0)
    other.start()
    try:
        config = rig(
            make_config,
            [{"source": fake.stream_url}, {"source": other.stream_url}],
            stitch={"stale_after": 1.0},
        )
        start(config, children, stitcher=True)
        with Subscriber("pano", config=config) as sub:
            wait_for(lambda: (r := sub.read(timeout=1.0))[0] and not r[1].extra["stale"], 20, interval=0)
            fake.refuse()
            fake.drop_clients()
            killed = time.monotonic()

            def no_signal() -> Any:
                ok, frame = sub.read(timeout=1.0)
                return ok and frame.extra["stale"] == ["cam0"]

            wait_for(no_signal, 4, interval=0, message="NO SIGNAL for cam0")
            assert time.monotonic() - killed <= config.stitch.stale_after + 1.0 + 0.5
            lost = wait_for(lambda: (s := status(config)) and s["reconnects"] >= 3 and s, 10)
            assert lost["state"] in ("lost", "connecting")
            assert status(config, "cam1")["state"] == "live"
            fake.accept_again()
            back = time.monotonic()

            def live_again() -> Any:
                ok, frame = sub.read(timeout=1.0)
                return ok and not frame.extra["stale"]

            # the backoff had grown to about 2-4 s by now; well under its 30 s cap
            wait_for(live_again, 15, interval=0, message="cam0 live again")
            assert time.monotonic() - back < 15
    finally:
        other.stop()


def test_stalled_camera_times_out_and_recovers(
    fake: FakeCam, make_config: Callable[..., Config], children: Children
) -> None:
    """A camera that accepts but sends nothing: timeouts are counted, the grabber keeps publishing
    status (not frozen) and reconnects; when the camera resumes, frames flow again."""
    config = rig(make_config, [{"source": fake.stream_url}])
    start(config, children)
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        read_n(sub, 2)
        fake.stall()
        stalled = wait_for(lambda: (s := status(config)) and s["timeouts"] >= 1 and s, 10)
        assert stalled["state"] in ("lost", "busy", "connecting")
        status(config)  # still answering
        fake.resume()
        fake.drop_clients()
        wait_for(lambda: status(config)["state"] == "live", 20, message="live after resume")
        read_n(sub, 2)


def test_corrupt_and_truncated_jpegs_are_counted_and_skipped(
    fake: FakeCam, make_config: Callable[..., Config], children: Children
) -> None:
    """Bad JPEGs in the stream are counted as corrupt and skipped; the stream goes on."""
    config = rig(make_config, [{"source": fake.stream_url}])
    start(config, children)
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        read_n(sub, 2)
        fake.corrupt_next(2)
        fake.truncate_next(2)
        wait_for(lambda: status(config)["corrupt"] >= 4, 10, message="4 corrupt frames counted")
        frames = read_n(sub, 5)
        assert all(fake.was_sent(f.jpeg) for f in frames)
        assert status(config)["reconnects"] == 0


def test_resolution_change_is_followed(fake: FakeCam, make_config: Callable[..., Config], children: Children) -> None:
    """A camera switching resolution: frames of the new size arrive, the panorama keeps its size."""
    other = FakeCam(fps=15.0)
    other.start()
    try:
        config = rig(make_config, [{"source": fake.stream_url}, {"source": other.stream_url}])
        start(config, children, stitcher=True)
        pano_size = config.pano_size
        with Subscriber("cam0", kind="jpeg", config=config) as cam, Subscriber("pano", config=config) as pano:
            read_n(cam, 2)
            fake.set_size(800, 600)
            wait_for(lambda: (r := cam.read(timeout=1.0))[0] and r[1].width == 800, 10, interval=0)
            for frame in read_n(pano, 3):
                assert frame.image.shape == (pano_size[1], pano_size[0], 3)
            assert not frame.extra["stale"]
    finally:
        other.stop()


def test_busy_camera_is_reported_busy_not_hung(
    fake: FakeCam, make_config: Callable[..., Config], children: Children
) -> None:
    """Someone else holds the ESP32's single stream: the grabber says "busy" and goes live once
    the other client leaves."""
    config = rig(make_config, [{"source": fake.stream_url}])
    start(config, children)
    with opened(camera_config(fake.stream_url)) as holder:
        holder.read(2.0)
        with Subscriber("cam0", kind="jpeg", config=config) as sub:
            wait_for(lambda: status(config)["state"] == "busy", 10, message="busy state")
            holder.close()
            read_n(sub, 2, timeout=20)
    assert status(config)["state"] == "live"


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_rtsp_camera_through_the_grabber(codec: str, make_config: Callable[..., Config], children: Children) -> None:
    """An RTSP camera (MJPEG as the ESP32 Micro-RTSP firmware sends, or H.264) delivers frames of
    its size through the grabber."""
    require_rtsp(codec)
    server = RtspServer(codec=codec, size=(320, 240), fps=15)
    server.start()
    try:
        config = rig(
            make_config, [{"source": server.url, "size": [320, 240], "read_timeout": 3.0, "connect_timeout": 5.0}]
        )
        start(config, children)
        with Subscriber("cam0", config=config) as sub:
            frames = read_n(sub, 5, timeout=30)
        assert all(f.image.shape == (240, 320, 3) for f in frames)
    finally:
        server.stop()


def test_file_camera_through_the_grabber(
    tmp_path: Path, make_config: Callable[..., Config], children: Children
) -> None:
    """A video file plays as a camera, looped, paced at its frame rate."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 20.0, (320, 240))
    for i in range(10):
        image = np.full((240, 320, 3), i * 20, np.uint8)
        writer.write(image)
    writer.release()
    config = rig(make_config, [{"source": str(path), "size": [320, 240], "fps": 30.0}])
    start(config, children)
    with Subscriber("cam0", config=config) as sub:
        read_n(sub, 2)
        t0 = time.monotonic()
        frames = read_n(sub, 20)  # more than the file holds: it loops
        rate = 20 / (time.monotonic() - t0)
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    assert 12 <= rate <= 26, rate  # the file's 20 fps, not the 30 fps cap
