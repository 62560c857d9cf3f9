"""Capture spread of a daemon on snapshot cameras, with and without ``stitch.sync``: the tests'
comparison and the benchmark's figure alike.

    with snapshot_fakes() as fakes:
        free = capture_spreads(tmp / "free", fakes, sync=False)
        synced = capture_spreads(tmp / "sync", fakes, sync=True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path

from zmqcam.client import Subscriber
from zmqcam.config import default_config_dict, from_dict, load_config
from zmqcam.config.toml import render_toml
from zmqcam.names import LOOPBACK, PANO
from zmqcam.testing.daemon import DaemonProcess
from zmqcam.testing.fakecam import FakeCam

__all__ = ["CAPTURE_DELAYS", "FPS", "capture_spreads", "snapshot_fakes"]

FPS = 8.0
#: each fake's delay before it answers (the firmware lights its LED first): 10 ms apart, as real
#: cameras differ; without sync each grabber asks one interval after its answer, so they drift apart
CAPTURE_DELAYS = (0.05, 0.06, 0.07, 0.08)


@contextlib.contextmanager
def snapshot_fakes(delays: Sequence[float] = CAPTURE_DELAYS) -> Iterator[list[FakeCam]]:
    """Four fake ESP32-CAMs (320x240) answering ``/capture`` after ``delays``; errors are raised at the end."""
    cams = [FakeCam(fps=FPS, size=(320, 240), capture_delay=d).start() for d in delays]
    try:
        yield cams
    finally:
        for cam in cams:
            cam.stop()
    errors = [e for c in cams for e in c.errors]
    if errors:
        raise AssertionError(f"the fake cameras failed: {errors}")


def capture_spreads(tmp: Path, fakes: Sequence[FakeCam], sync: bool, panoramas: int = 12) -> list[float]:
    """The capture spread (ms) of ``panoramas`` panoramas of a daemon (started in ``tmp``, stopped
    after) on the snapshot ``fakes``, ``stitch.sync`` on or off. The first two panoramas are left
    out: they hold the cameras' first pictures, taken when each connected."""
    tmp.mkdir(parents=True, exist_ok=True)
    data = default_config_dict(str(tmp / "run"))
    for cam, fake in zip(data["camera"], fakes, strict=True):
        cam.update(source=f"http://{LOOPBACK}:{fake.port}/capture", kind="snapshot", fps=FPS, warmup=0, size=[320, 240])
    data["http"] = {"enabled": False}
    data["stitch"] = {"sync": sync}
    from_dict(data)
    path = tmp / "rig.toml"
    path.write_text(render_toml(data))
    config = load_config(path)
    daemon = DaemonProcess(["-c", str(path)], cwd=tmp)
    try:
        out: list[float] = []
        with Subscriber(PANO, config=config) as sub:
            while len(out) < panoramas + 2:
                ok, frame = sub.read(timeout=10.0)
                if not ok or frame is None:
                    raise AssertionError("no panorama within 10 s")
                if not frame.extra.get("stale"):
                    out.append(frame.extra["spread_ns"] / 1e6)
        return out[2:]
    finally:
        _, err = daemon.terminate()
        if daemon.proc.returncode != 0 or "Traceback" in err:
            raise AssertionError(f"the daemon did not stop cleanly: {err}")
