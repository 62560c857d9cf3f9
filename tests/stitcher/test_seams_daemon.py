"""Feathered seams and matched exposure in a running daemon: four fake ESP32-CAMs (MJPEG, the firmware's
wire format) show the rendered conveyor scene, each camera with its own gain and colour cast, and the
config has the scene's true geometry with its overlaps (what `calibrate --auto` writes), so the daemon
feathers and matches gains by default. Within a few seconds neighbours agree near every seam; /status
shows the gains; when one camera's exposure jumps, the panorama follows it back to agreement without
flicker. One daemon serves the module."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import Daemon, bridge_status, cli, free_port
from tests.helpers.rig import neutral, scene_camera_tables
from zmqcam.client import Subscriber
from zmqcam.config import Config, from_dict, load_config
from zmqcam.config.models import panorama_slots
from zmqcam.config.toml import render_toml
from zmqcam.image.remap import PanoramaComposer
from zmqcam.names import LOOPBACK, PANO
from zmqcam.testing.fakecam import FakeCam
from zmqcam.testing.scene import Scene

FPS = 8.0
#: distinct noisy JPEGs per camera, served in turn (rendered once)
PICTURES = 2
#: neighbours agree within this many grey levels near each seam (measured about 0.5 in-process;
#: JPEG noise and the frames' alternation add a little)
AGREE_LEVELS = 3.0
#: how much one panorama may move away from agreement compared with the one before (noise)
NOISE_LEVELS = 1.0
#: cam1's exposure jumps by this factor
JUMP = 1.3


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.scene = Scene()
        self.names = [c.name for c in self.scene.cameras]
        self.fakes = [FakeCam(fps=FPS, source=self.jpegs(self.scene, c.name)).start() for c in self.scene.cameras]
        tables = scene_camera_tables(self.scene.cameras)
        for table, fake in zip(tables, self.fakes, strict=True):
            table.update(source=f"http://{LOOPBACK}:{fake.stream_port}/stream", kind="mjpeg", idle_timeout=5.0)
        data: dict[str, Any] = {
            "daemon": {"run_dir": str(tmp / "run")},
            "camera": tables,
            "http": {"port": free_port()},
        }
        from_dict(data)  # the test's own config must be valid
        self.path = tmp / "rig.toml"
        self.path.write_text(render_toml(data))
        self.config: Config = load_config(self.path)
        self.url = f"http://{LOOPBACK}:{self.config.http.port}"
        cameras = self.config.stitched_cameras
        self.slots = panorama_slots(cameras)
        truth = neutral(self.scene).frames(0)
        #: the belt as gain-1, cast-free cameras stitch it: each camera's gain is measured against it
        self.truth = PanoramaComposer(cameras).compose([truth[c.name] for c in cameras]).copy()
        self.daemon: Daemon | None = Daemon(["-c", str(self.path)], cwd=tmp)

    @staticmethod
    def jpegs(scene: Scene, name: str) -> list[bytes]:
        return [scene.jpeg(name, i) for i in range(PICTURES)]

    def mismatch(self, pano: np.ndarray, k: int) -> np.ndarray:
        """Per channel, in grey levels: how much brighter camera k shows the belt than camera k+1 next
        to their seam (40 columns each side, outside the band), each against the truth."""
        seam = self.slots[k].x1
        level = self.truth[:, seam - 60 : seam + 60].reshape(-1, 3).mean(0)

        def gain(cols: slice) -> np.ndarray:
            return pano[:, cols].reshape(-1, 3).mean(0) / self.truth[:, cols].reshape(-1, 3).mean(0)

        return (gain(slice(seam - 60, seam - 20)) - gain(slice(seam + 20, seam + 60))) * level

    def close(self) -> None:
        if self.daemon is not None:
            _, err = self.daemon.terminate()
            assert self.daemon.proc.returncode == 0 and "Traceback" not in err, err
        for fake in self.fakes:
            fake.stop()
        assert not [e for f in self.fakes for e in f.errors]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("seams"))
    try:
        yield rig
    finally:
        rig.close()


def panoramas(sub: Subscriber, seconds: float) -> Iterator[np.ndarray]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ok, frame = sub.read(timeout=5.0)
        assert ok and frame is not None, "no panorama"
        if not frame.extra.get("stale"):
            yield frame.image


def worst(rig: Rig, pano: np.ndarray) -> float:
    return max(float(np.abs(rig.mismatch(pano, k)).max()) for k in range(len(rig.slots) - 1))


def test_neighbours_agree_and_status_shows_the_gains(rig: Rig) -> None:
    """The overlaps' colours agree within a few levels after a few seconds (with `off` they differ by
    the injected gains, tests/image/test_seams.py); /status shows the seam, the exposure mode and each
    camera's gains, cam1 (the darkest camera, bluish) lifted most in red."""
    since = time.time()
    with Subscriber(PANO, config=rig.config) as sub:
        agreed = None
        for pano in panoramas(sub, 30.0):
            if worst(rig, pano) <= AGREE_LEVELS:
                agreed = pano
                break
        assert agreed is not None, "neighbours never agreed"

        def check(status: dict[str, Any]) -> None:
            st = status["stitcher"]
            assert (st["seam"], st["exposure"], st["sync"]) == ("feather", "gain", True)
            gains = st["gains"]
            assert sorted(gains) == sorted(rig.names)
            blue, green, red = gains["cam1"]
            assert red > green > blue and red > max(g[2] for n, g in gains.items() if n != "cam1")

        bridge_status(rig.url, check, since)
        # zmqcam-daemon status prints them too, one line for the panorama's cameras
        shown = cli("status", "-c", str(rig.path)).stdout
        line = next((x for x in shown.splitlines() if "gains (B G R):" in x), None)
        assert line is not None, shown
        assert all(f"{name} " in line for name in rig.names) and "seam feather, exposure gain" in shown, shown


def test_a_light_change_is_followed_without_flicker(rig: Rig) -> None:
    """cam1's exposure jumps by 30 %: the step at its seams shows at once, then shrinks panorama by
    panorama (never growing back beyond noise, never overshooting to the other side) until the
    neighbours agree again, within seconds."""
    brighter = replace(
        rig.scene, cameras=[replace(c, gain=c.gain * JUMP) if c.name == "cam1" else c for c in rig.scene.cameras]
    )
    with Subscriber(PANO, config=rig.config) as sub:
        for pano in panoramas(sub, 30.0):
            if worst(rig, pano) <= AGREE_LEVELS:
                break
        rig.fakes[1].set_source(Rig.jpegs(brighter, "cam1"))
        jumped: list[float] = []  # cam0 minus cam1 near their seam, green
        for pano in panoramas(sub, 20.0):
            value = float(rig.mismatch(pano, 0)[1])
            if jumped or value < -10:
                jumped.append(value)
            if len(jumped) > 4 and abs(value) <= AGREE_LEVELS:
                break
        assert jumped, "the jump never showed"
        assert abs(jumped[-1]) <= AGREE_LEVELS, jumped
        # a frame or two around the switch may still come from before it: judge from the largest step on
        start = int(np.argmin(jumped))
        settling = jumped[start:]
        for before, after in itertools.pairwise(settling):
            assert after >= before - NOISE_LEVELS, settling  # never further apart again
            assert after <= AGREE_LEVELS, settling  # never overshooting to the other side
