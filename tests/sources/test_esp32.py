"""ESP32-CAM settings and warm-up against the fake ESP32-CAM, which answers ``/control`` and ``/status``
as the CameraWebServer firmware does: ``camera[].controls`` applied on every (re)connect before a
frame is published and read back, problems reported in the camera's status while it keeps working;
``camera[].warmup`` holding back (and counting) the first frames of each connection; a ``kind`` that
does not fit the URL named with its fix."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import simplejpeg

from tests.helpers import Children, Daemon, camera, cli, opened, wait_for
from zmqcam import Subscriber
from zmqcam.bus import protocol, sockets
from zmqcam.bus.status import collect_status
from zmqcam.config import Config, default_config_dict, from_dict
from zmqcam.config.esp32 import FRAMESIZES
from zmqcam.config.toml import render_toml
from zmqcam.errors import SourceError
from zmqcam.grabber import run_grabber
from zmqcam.names import connect_endpoint
from zmqcam.sources.esp32 import Esp32Controls, control_server
from zmqcam.stitcher import run_stitcher
from zmqcam.testing.fakecam import FakeCam

CONTROLS = {"framesize": "QVGA", "quality": 10, "aec": 0, "aec_value": 300, "awb": 0, "vflip": 1}


def rig_config(run_dir: Any, fake: FakeCam, stream: bool = True, **fields: Any) -> Config:
    """One camera on the fake: its MJPEG stream (or its snapshots), short timeouts, ``fields``."""
    data = default_config_dict(str(run_dir))
    cam = data["camera"][0]
    cam.update(
        source=fake.stream_url if stream else fake.capture_url,
        idle_timeout=1.0,
        fps=20.0,
        connect_timeout=1.0,
        read_timeout=1.0,
        **fields,
    )
    data["camera"] = [cam]
    data["http"] = {"enabled": False}
    return from_dict(data, label="<test>")


def first_jpegs(config: Config, ctx: Any, n: int, timeout: float = 15.0) -> list[bytes]:
    """The first ``n`` JPEGs the grabber publishes after a subscriber arrives."""
    sub = sockets.make_subscriber(ctx, [connect_endpoint(config.camera_endpoint("cam0"))], [b"cam0 jpeg\x00"])
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < n and time.monotonic() < deadline:
            if sub.poll(200):
                got.append(bytes(protocol.decode(sub.recv_multipart()).payload))
    finally:
        sub.close(linger=0)
    assert len(got) == n, f"{len(got)} of {n} frames within {timeout} s"
    return got


def cam_status(config: Config) -> dict[str, Any]:
    return collect_status(config, timeout=2.0, streams=["cam0"]).get("cam0", {})


def test_controls_are_set_in_order_and_read_back(fakecam: FakeCam) -> None:
    """Each control reaches /control once, in config order (framesize by name as its index); the report
    holds what /status shows, and vflip, which the firmware's /status omits, as unverified."""
    report = Esp32Controls(camera(fakecam.capture_url, controls=CONTROLS)).apply()
    assert fakecam.control_requests == [
        ("framesize", str(FRAMESIZES["QVGA"][0])),
        ("quality", "10"),
        ("aec", "0"),
        ("aec_value", "300"),
        ("awb", "0"),
        ("vflip", "1"),
    ]
    assert report.errors == [] and report.warnings == []
    assert report.applied == {"framesize": 5, "quality": 10, "aec": 0, "aec_value": 300, "awb": 0, "vflip": 1}
    assert report.unverified == ["vflip"]
    assert report.as_status()["shown"] == "framesize=QVGA quality=10 aec=0 aec_value=300 awb=0 vflip=1"
    assert fakecam.size == (320, 240)
    settings = fakecam.settings()
    assert (settings["aec"], settings["aec_value"], settings["vflip"]) == (0, 300, 1)


def test_refused_and_ignored_controls_are_reported_and_the_rest_applied(fakecam: FakeCam) -> None:
    """A variable the firmware answers 500 for (unknown, or made to fail) is an error naming it; one
    that is accepted but does not stick is a warning; every other setting is still applied."""
    fakecam.fail_control("awb")
    fakecam.ignore_control("aec")
    controls = {"quality": 20, "awb": 0, "nosuch_setting": 3, "aec": 0, "brightness": 1}
    report = Esp32Controls(camera(fakecam.capture_url, controls=controls)).apply()
    assert len(report.errors) == 2
    assert "awb = 0" in report.errors[0] and "HTTP 500" in report.errors[0]
    assert "nosuch_setting = 3" in report.errors[1]
    assert report.warnings == ["controls: aec=0 did not stick: the camera reports aec=1"]
    assert report.applied == {"quality": 20, "aec": 1, "brightness": 1}
    settings = fakecam.settings()
    assert (settings["quality"], settings["brightness"]) == (20, 1)


def test_control_server_of_a_stream_is_the_port_below_it(fakecam: FakeCam) -> None:
    """The firmware runs its stream server on the control server's port + 1 (81 and 80)."""
    assert control_server(camera(fakecam.stream_url, controls={"quality": 5})).port == fakecam.port
    assert control_server(camera(fakecam.capture_url, controls={"quality": 5})).port == fakecam.port
    assert control_server(camera("http://10.0.0.9:81/stream", controls={"quality": 5})).port == 80
    assert control_server(camera("http://10.0.0.9/stream", kind="mjpeg", controls={"quality": 5})).port == 80


def test_unreachable_control_server_is_one_error_not_a_hang() -> None:
    """Nothing listening on the control port: one error line, within the connect timeout."""
    report = Esp32Controls(camera("http://127.0.0.1:9/capture", controls={"quality": 5, "aec": 0})).apply()
    assert len(report.errors) == 1 and "connection refused" in report.errors[0]
    assert report.applied == {}


@pytest.mark.parametrize("stream", [True, False], ids=["mjpeg", "snapshot"])
def test_grabber_applies_controls_before_the_first_frame_and_on_every_reconnect(
    run_dir: Any, children: Children, fakes: Callable[..., FakeCam], ctx: Any, stream: bool
) -> None:
    """Through a grabber process: the very first published frame already has the framesize the config
    asks for (the remap then follows the new size); a variable the firmware refuses shows in the
    camera's status (controls.errors, last_error) while the camera stays live; after the camera
    reboots (and forgets its settings) the reconnect applies them again."""
    fake = fakes(fps=20.0)
    config = rig_config(run_dir, fake, stream, controls={"framesize": "QVGA", "nosuch": 1}, warmup=0, always_on=True)
    children.start(run_grabber, config, "cam0")
    jpegs = first_jpegs(config, ctx, 3)
    assert all(simplejpeg.decode_jpeg_header(j)[:2] == (240, 320) for j in jpegs)
    status = wait_for(lambda: (s := cam_status(config)) and s.get("controls") and s, 10, message="controls in status")
    assert status["state"] == "live"
    assert status["controls"]["applied"] == {"framesize": 5}
    assert status["controls"]["shown"] == "framesize=QVGA"
    assert "nosuch = 1" in status["controls"]["errors"][0] and "nosuch" in status["last_error"]
    assert [var for var, _ in fake.control_requests] == ["framesize", "nosuch"]
    fake.reboot(0.3)
    wait_for(lambda: fake.size == (640, 480), 5, message="the reboot")
    wait_for(lambda: len(fake.control_requests) == 4 and fake.size == (320, 240), 20, message="controls applied again")


def test_warmup_frames_are_held_back_and_counted(
    run_dir: Any, children: Children, fakes: Callable[..., FakeCam], ctx: Any
) -> None:
    """warmup = "5 frames": the first frame published after connecting is the sixth the camera sent
    on that connection, and the status counts the five held back."""
    fake = fakes(fps=20.0)
    config = rig_config(run_dir, fake, warmup="5 frames")
    children.start(run_grabber, config, "cam0")
    wait_for(lambda: cam_status(config).get("state") == "asleep", 20, message="the grabber")
    assert fake.stream_frames_sent == 0
    first = first_jpegs(config, ctx, 1)[0]
    sent = list(fake.sent_jpegs)
    assert first in sent and sent.index(first) == 5, "the first published frame is not the camera's sixth"
    status = cam_status(config)
    assert status["warmup_frames"] == 5 and status["warmup"] == "5 frames"


def test_esp32_cameras_warm_up_by_default_and_others_do_not() -> None:
    """Half a second for an ESP32 (snapshot, MJPEG) when the config names none; nothing for others."""
    assert camera("http://10.0.0.9/capture").warmup_period.seconds == 0.5
    assert camera("http://10.0.0.9:81/stream").warmup_period.seconds == 0.5
    assert camera("rtsp://10.0.0.9:554/mjpeg/1").warmup_period.none
    assert camera("synthetic").warmup_period.none
    assert camera("http://10.0.0.9/capture", warmup="2 s").warmup_period.seconds == 2.0


def test_a_kind_that_does_not_fit_the_url_says_how_to_fix_it(fakecam: FakeCam) -> None:
    """kind = "snapshot" on the MJPEG stream (a kind left from an earlier URL) and kind = "mjpeg" on
    the snapshot URL: one line naming what the URL serves and the fix, "or remove kind" where the URL
    alone picks the right one."""
    with pytest.raises(SourceError) as stale_snapshot, opened(camera(fakecam.stream_url, kind="snapshot")):
        pass
    assert str(stale_snapshot.value).endswith(
        'this URL serves an MJPEG stream, not single pictures: use kind = "mjpeg" or remove kind'
    )
    with pytest.raises(SourceError) as stale_mjpeg, opened(camera(fakecam.capture_url, kind="mjpeg")):
        pass
    assert str(stale_mjpeg.value).endswith(
        'this URL serves single pictures, not an MJPEG stream: use kind = "snapshot" or remove kind'
    )
    odd_url = fakecam.capture_url.replace("/capture", "/jpg?x=1")  # inferred as a snapshot anyway
    with pytest.raises(SourceError) as wrong, opened(camera(odd_url, kind="mjpeg")):
        pass
    assert "or remove kind" in str(wrong.value)


def test_the_kind_mismatch_is_the_cameras_last_error(
    run_dir: Any, children: Children, fakes: Callable[..., FakeCam]
) -> None:
    """What the user sees in status for a stale kind: the grabber's last_error carries the fix."""
    fake = fakes(fps=10.0)
    config = rig_config(run_dir, fake, kind="snapshot", always_on=True)
    children.start(run_grabber, config, "cam0")
    status = wait_for(lambda: (s := cam_status(config)) and s.get("last_error") and s, 20, message="last_error")
    assert 'use kind = "mjpeg" or remove kind' in status["last_error"]
    assert status["state"] in ("lost", "connecting")


def test_panorama_waits_for_a_warming_camera_instead_of_showing_no_signal(
    run_dir: Any, children: Children, fakes: Callable[..., FakeCam]
) -> None:
    """With stale_after 0.5 s and one camera warming up for 1.5 s, the first panorama still waits for
    it (the waking window is stale_after plus the warm-up): every slot live, none NO SIGNAL."""
    data = default_config_dict(str(run_dir))
    data["camera"] = data["camera"][:2]
    for cam, warmup in zip(data["camera"], (0, 1.5), strict=True):
        fake = fakes(fps=20.0)
        cam.update(source=fake.stream_url, idle_timeout=1.0, fps=20.0, connect_timeout=1.0, read_timeout=1.0)
        cam["warmup"] = warmup
    data["stitch"] = {"stale_after": 0.5}
    data["http"] = {"enabled": False}
    config = from_dict(data, label="<test>")
    for cam in config.camera:
        children.start(run_grabber, config, cam.name)
    children.start(run_stitcher, config)
    wait_for(lambda: len(collect_status(config, timeout=1.0)) == 3, 20, message="every process")
    with Subscriber("pano", config=config) as sub:
        ok, frame = sub.read(timeout=15)
    assert ok and frame is not None
    assert [s["state"] for s in frame.extra["sources"]] == ["live", "live"], frame.extra["sources"]
    assert frame.extra["stale"] == []
    assert collect_status(config, timeout=2.0)["cam1"]["warmup_frames"] >= 20


def test_daemon_status_shows_the_applied_controls(
    tmp_path: Any, daemons: list[Daemon], fakes: Callable[..., FakeCam]
) -> None:
    """`zmqcam-daemon status` lists, under the camera, the settings as the camera reports them after
    applying, and what it refused."""
    fake = fakes(fps=10.0)
    fake.fail_control("led_intensity")
    run_dir = tmp_path / "run"
    config = rig_config(run_dir, fake, controls={"framesize": "CIF", "quality": 15, "led_intensity": 50})
    data = config.model_dump(exclude_none=True)
    data["camera"][0].update(always_on=True)
    path = tmp_path / "rig.toml"
    path.write_text(render_toml(data))
    daemons.append(Daemon(["-c", str(path)], cwd=tmp_path))

    def shown() -> str | None:
        done = cli("status", "-c", str(path), cwd=tmp_path)
        return done.stdout if done.returncode == 0 and "controls:" in done.stdout else None

    out = wait_for(shown, 30, interval=0.3, message="controls in `zmqcam-daemon status`")
    assert "controls: framesize=CIF quality=15" in out
    assert "led_intensity = 50: the camera refused it (HTTP 500" in out
    assert fake.size == (400, 296)
