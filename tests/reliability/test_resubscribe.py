"""A panorama asked for again after a pause (issue 13): the way it is used most often.

Home Assistant polls ``/snapshot.jpg`` every 10 s, scripts poll snapshots, browsers reopen streams and
programs open and close a ``Subscriber``. Between two requests the stitcher loses its subscribers,
lets go of the grabbers and, within ``idle_timeout``, the cameras stay open; after it they sleep. The
panorama asked for next must show every live camera live, exactly as on the very first request, and a
snapshot must be newer than the request. A camera that really died meanwhile must still show NO SIGNAL.

The snapshot test runs against the built-in synthetic rig and against four fake ESP32-CAMs (MJPEG) in
the original deployment's geometry, one daemon per rig for the whole module; the reopened stream and
Subscriber run against the fake ESP32-CAMs only (ESP32_ONLY): theirs is the harder wake-up (connect,
warm-up), through the same stitcher, and the synthetic rig's wake-up is the snapshot test's too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import requests
import simplejpeg

from tests.helpers import Daemon, free_port, wait_for
from tests.helpers.stream import Viewer
from zmqcam import Subscriber
from zmqcam.bus.status import collect_status
from zmqcam.config import Config, default_config_dict, from_dict, load_config
from zmqcam.config.toml import render_toml
from zmqcam.image.cards import NO_SIGNAL_COLOR
from zmqcam.image.remap import PanoramaComposer
from zmqcam.testing.fakecam import FakeCam

STALE_AFTER = 1.0
#: the gaps below straddle it: 1 and 2 s keep the cameras open (their frames then older than
#: stale_after, the case that showed NO SIGNAL), IDLE_TIMEOUT is the boundary, and ASLEEP waits
#: until every camera has really gone to sleep (how long after that does not matter: the frames
#: kept from before are older than stale_after either way, as after Home Assistant's 10 s)
IDLE_TIMEOUT = 3.0
ASLEEP = float("inf")
SNAPSHOT_GAPS = [0.0, 1.0, 2.0, IDLE_TIMEOUT, ASLEEP]
REOPEN_GAPS = [1.0, 2.0, ASLEEP]
#: a test run against the fake ESP32-CAM rig only
ESP32_ONLY = pytest.mark.parametrize("rig", ["esp32"], indirect=True)


class Rig:
    def __init__(self, kind: str, daemon: Daemon, config: Config, fakes: list[FakeCam]) -> None:
        self.kind = kind
        self.daemon = daemon
        self.config = config
        self.fakes = fakes
        self.port = config.http.port
        self.slots = PanoramaComposer(config.stitched_cameras).slots

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def no_signal_slots(self, jpeg: bytes) -> list[str]:
        """The cameras whose slot shows the NO SIGNAL card, read off the picture a user sees."""
        image = simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
        assert image.shape[:2] == (self.config.pano_size[1], self.config.pano_size[0])
        card = np.abs(image.astype(np.int16) - np.array(NO_SIGNAL_COLOR, np.int16)).max(axis=2) <= 12
        return [s.name for s in self.slots if card[:, s.x0 : s.x1].mean() > 0.5]

    def camera_states(self) -> dict[str, str]:
        status = collect_status(self.config, timeout=2.0)
        return {c.name: status.get(c.name, {}).get("state", "no reply") for c in self.config.camera}

    def wait_asleep(self) -> None:
        wait_for(
            lambda: set(self.camera_states().values()) == {"asleep"},
            IDLE_TIMEOUT + 10,
            message="every camera asleep",
        )


def pause(rig: Rig, gap: float) -> None:
    """Nobody asks for ``gap`` seconds; ASLEEP: until every camera is asleep (this request wakes them)."""
    if gap == ASLEEP:
        rig.wait_asleep()
    else:
        time.sleep(gap)


@pytest.fixture(scope="module", params=["synthetic", "esp32"])
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp(f"resubscribe-{request.param}")
    fakes = [FakeCam(fps=10.0).start() for _ in range(4)] if request.param == "esp32" else []
    data: dict[str, Any] = default_config_dict(str(tmp / "run"))
    for i, cam in enumerate(data["camera"]):
        cam.update({"fps": 10.0, "idle_timeout": IDLE_TIMEOUT, "connect_timeout": 1.0, "read_timeout": 1.0})
        if fakes:
            cam["source"] = fakes[i].stream_url
    data["stitch"] = {"stale_after": STALE_AFTER}
    data["http"] = {"port": free_port()}
    from_dict(data)  # the test's own config must be valid
    (tmp / "z.toml").write_text(render_toml(data))
    daemon = Daemon(["-c", str(tmp / "z.toml")], cwd=tmp)
    rig = Rig(request.param, daemon, load_config(tmp / "z.toml"), fakes)
    try:
        wait_for(lambda: _answers(rig.url("/status")), 30, interval=0.2, message="the bridge to answer")
        yield rig
    finally:
        _, err = daemon.terminate()
        for fake in fakes:
            fake.stop()
        assert daemon.proc.returncode == 0, err
        assert "Traceback" not in err, err
        assert not [e for fake in fakes for e in fake.errors]


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.ConnectionError:
        return False


def test_snapshots_polled_after_pauses_show_every_live_camera_live_and_are_newer_than_the_request(rig: Rig) -> None:
    """Five of six snapshots polled 1-10 s apart showed live cameras as NO SIGNAL: the stitcher
    counted frames kept from before the pause as stale, and the bridge could hand out a panorama
    cached before the request."""
    last_seq, last_capture = -1, 0.0
    for gap in SNAPSHOT_GAPS:
        pause(rig, gap)
        asked = time.time()
        r = requests.get(rig.url("/snapshot.jpg"), timeout=30)
        assert r.status_code == 200, (gap, r.status_code, r.text[:200])
        assert rig.no_signal_slots(r.content) == [], f"after a {gap} s pause"
        seq, capture = int(r.headers["X-Zmqcam-Seq"]), float(r.headers["X-Timestamp"])
        assert seq > last_seq, f"after a {gap} s pause: seq {seq} is not newer than {last_seq}"
        assert capture > asked, f"after a {gap} s pause: captured {asked - capture:.3f} s before the request"
        assert capture > last_capture
        last_seq, last_capture = seq, capture


@ESP32_ONLY
def test_a_stream_reopened_after_the_last_viewer_left_never_shows_a_live_camera_as_no_signal(rig: Rig) -> None:
    """A /stream viewer that opened the stream 3 or 6 s after the previous one left got NO SIGNAL in
    all four slots in its first frame. Its first part must be the waiting card or a live panorama."""
    for gap in [0.0, *REOPEN_GAPS]:
        pause(rig, gap)
        viewer = Viewer(rig.port)
        try:
            live = 0
            deadline = time.monotonic() + 20
            while live < 5:
                assert time.monotonic() < deadline, f"after a {gap} s pause: {live} live parts in 20 s"
                headers, jpeg = viewer.next_part()
                if headers["X-Zmqcam-State"] == "waking":
                    assert live == 0, "the waiting card came after a live panorama"
                    continue
                assert headers["X-Zmqcam-State"] == "live"
                assert rig.no_signal_slots(jpeg) == [], f"after a {gap} s pause, part {live + 1}"
                live += 1
        finally:
            viewer.close()


@ESP32_ONLY
def test_a_subscriber_closed_and_reopened_gets_every_live_camera_live(rig: Rig) -> None:
    """The original Camera.read() loop, started and stopped: each new Subscriber's first panoramas
    show every camera live, in the header and in the pixels."""
    for gap in [0.0, *REOPEN_GAPS]:
        pause(rig, gap)
        with Subscriber("pano", config=rig.config, kind="jpeg") as sub:
            for n in range(3):
                ok, frame = sub.read(timeout=20)
                assert ok and frame is not None, f"after a {gap} s pause: no panorama"
                assert frame.extra["stale"] == [], f"after a {gap} s pause, frame {n + 1}: {frame.extra['sources']}"
                assert rig.no_signal_slots(frame.jpeg) == []


@ESP32_ONLY  # synthetic cameras cannot die; fake ESP32-CAMs can
def test_a_camera_that_died_while_nobody_watched_still_shows_no_signal(rig: Rig) -> None:
    """The fix must not hide real failures: a camera gone while nobody watched shows NO SIGNAL in the
    next snapshot, the others live; and once it is back, so is its slot."""
    dead = rig.fakes[2]
    rig.wait_asleep()
    dead.refuse()  # powered off: nothing answers on its ports
    try:
        r = requests.get(rig.url("/snapshot.jpg"), timeout=30)
        assert r.status_code == 200, r.text[:200]
        assert rig.no_signal_slots(r.content) == ["cam2"]
    finally:
        dead.accept_again()

    def cam2_back() -> bool:
        r = requests.get(rig.url("/snapshot.jpg"), timeout=30)
        return r.status_code == 200 and rig.no_signal_slots(r.content) == []

    wait_for(cam2_back, 40, interval=0.5, message="cam2's slot back once the camera answers again")
