"""Synchronized snapshot capture (``stitch.sync``): four fake ESP32-CAMs answering ``/capture`` after
slightly different delays (as real ones do), stitched by a daemon with and without sync. Without it
each grabber asks one interval after its previous answer, so the cameras drift apart in phase and a
panorama's frames are up to a frame interval apart; with it every grabber asks on the same clock
tick and the panorama's spread shrinks to the cameras' differences in answering. Compared as an
ordering on the same fake cameras, never as an absolute time."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon
from zmqcam.client import Subscriber
from zmqcam.config import default_config_dict, from_dict, load_config
from zmqcam.config.toml import render_toml
from zmqcam.names import LOOPBACK, PANO
from zmqcam.stitcher.sync import closest_frames
from zmqcam.testing.fakecam import FakeCam

FPS = 8.0
#: each fake's delay before it answers (the firmware lights its LED first): 10 ms apart
CAPTURE_DELAYS = (0.05, 0.06, 0.07, 0.08)
PANORAMAS = 12
#: synchronized, the median spread is at most this share of the unsynchronized one
SYNC_VS_FREE = 0.5


@pytest.fixture(scope="module")
def fakes() -> Iterator[list[FakeCam]]:
    cams = [FakeCam(fps=FPS, size=(320, 240), capture_delay=d).start() for d in CAPTURE_DELAYS]
    try:
        yield cams
    finally:
        for cam in cams:
            cam.stop()
        assert not [e for c in cams for e in c.errors]


def spreads(tmp: Path, fakes: list[FakeCam], sync: bool) -> list[float]:
    """The capture spread (ms) of ``PANORAMAS`` panoramas of a daemon on ``fakes``, sync on or off."""
    tmp.mkdir()
    data = default_config_dict(str(tmp / "run"))
    for cam, fake in zip(data["camera"], fakes, strict=True):
        cam.update(source=f"http://{LOOPBACK}:{fake.port}/capture", kind="snapshot", fps=FPS, warmup=0, size=[320, 240])
    data["http"] = {"enabled": False}
    data["stitch"] = {"sync": sync}
    from_dict(data)
    path = tmp / "rig.toml"
    path.write_text(render_toml(data))
    config = load_config(path)
    daemon = Daemon(["-c", str(path)], cwd=tmp)
    try:
        out = []
        with Subscriber(PANO, config=config) as sub:
            while len(out) < PANORAMAS + 2:
                ok, frame = sub.read(timeout=10.0)
                assert ok and frame is not None, "no panorama"
                if not frame.extra.get("stale"):
                    out.append(frame.extra["spread_ns"] / 1e6)
        return out[2:]  # the first ones are the cameras' first pictures, taken when each connected
    finally:
        _, err = daemon.terminate()
        assert daemon.proc.returncode == 0 and "Traceback" not in err, err


def test_synchronized_snapshots_are_taken_closer_together(tmp_path: Path, fakes: list[FakeCam]) -> None:
    free = spreads(tmp_path / "free", fakes, sync=False)
    synced = spreads(tmp_path / "sync", fakes, sync=True)
    assert statistics.median(synced) <= SYNC_VS_FREE * statistics.median(free), (synced, free)


def test_stream_frames_closest_in_capture_time_within_one_interval() -> None:
    """Stream cameras cannot be triggered: the stitcher takes, per camera, the kept frame closest in
    capture time to the newest frame of the camera furthest behind, but never one more than a frame
    interval older than that camera's newest (no more than one interval of added latency)."""
    ms = 1_000_000
    interval = 100 * ms
    # cam0 is furthest behind (newest at 300 ms); cam1's frame at 320 is closer than its newest (390)
    assert closest_frames([[200 * ms, 300 * ms], [220 * ms, 320 * ms, 390 * ms]], [interval] * 2) == [1, 1]
    # the closest frame (250) is more than an interval older than cam1's newest (400): not taken
    assert closest_frames([[300 * ms], [250 * ms, 360 * ms, 400 * ms]], [interval] * 2) == [0, 1]
    # frames already together stay the newest
    assert closest_frames([[100 * ms, 200 * ms], [101 * ms, 201 * ms]], [interval] * 2) == [1, 1]
