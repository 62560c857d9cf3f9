"""Faults the daemon must survive (issue 9), proven on the real thing: ``zmqcam-daemon start`` as a
subprocess, its children SIGKILLed by PID, fake ESP32-CAMs (``zmqcam.testing.fakecam``) killed,
flapping, silent or refusing, and consumers (``Subscriber``, HTTP viewers) that are never restarted
by the test: they must recover on their own.

Every fault of the issue and the test that proves it (the README "Guarantees" section cites these;
paths are under ``tests/``, bare names are in this module)::

    grabber SIGKILLed; a Subscriber of that camera gets frames again
        -> supervisor/test_daemon.py::test_killed_grabber_is_restarted_and_its_frames_return
    grabber SIGKILLed; its panorama slot and its HTTP viewer come back
        -> test_killed_grabber_is_restarted_and_its_panorama_slot_comes_back
    grabber of a one-client ESP32 SIGKILLed mid-stream: it gets the camera back
        -> test_killed_grabber_of_a_one_client_camera_gets_the_camera_back
    stitcher SIGKILLed; pano Subscribers and /stream viewers recover
        -> test_killed_stitcher_is_restarted_and_pano_subscribers_recover
    bridge SIGKILLed; HTTP viewers reconnect on the same port, live
        -> test_killed_bridge_is_restarted_and_viewers_reconnect_on_the_same_port
    a child that crashes at every start: budget, the rest serve
        -> supervisor/test_daemon.py::test_crash_looping_child_exhausts_its_budget_and_the_rest_keep_serving
    a child that hangs (SIGSTOP), or whose work is stuck while its loop runs: the watchdog
        -> reliability/test_watchdog.py (its docstring maps each case)
    camera killed (powered off mid-stream), NO SIGNAL, backoff, back
        -> sources/test_cameras_e2e.py::test_killed_camera_shows_no_signal_backs_off_and_comes_back
    camera stalled (mid-JPEG, then silent)
        -> sources/test_cameras_e2e.py::test_stalled_camera_times_out_and_the_grabber_is_not_frozen
    camera flapping every second
        -> test_flapping_camera_never_disturbs_the_rest_and_is_live_once_it_settles
    corrupt and truncated JPEGs
        -> sources/test_cameras_e2e.py::test_corrupt_and_truncated_jpegs_are_counted_and_skipped
    wrong resolution, changed mid-stream
        -> sources/test_cameras_e2e.py::test_resolution_change_is_followed_and_the_panorama_keeps_its_size
    wrong resolution from the start
        -> test_rig_with_cameras_broken_from_the_start_serves_the_rest
    camera that never answers at start (accepts TCP, says nothing)
        -> test_rig_with_cameras_broken_from_the_start_serves_the_rest
    camera whose port has nothing listening at start
        -> test_rig_with_cameras_broken_from_the_start_serves_the_rest
    camera held by another client (accepted, left waiting)
        -> sources/test_cameras_e2e.py::test_busy_camera_is_reported_busy_not_hung
    Subscriber of a camera SIGKILLed: demand released, camera sleeps
        -> grabber/test_grabber.py::test_sigkilled_subscriber_releases_demand
    Subscriber of pano SIGKILLed: the stitcher lets the cameras sleep
        -> test_sigkilled_pano_subscriber_lets_the_cameras_sleep
    daemon pid SIGKILLed: children exit, next start over the pid file
        -> supervisor/test_daemon.py::test_sigkilled_daemon_leaves_nothing_that_blocks_the_next_start
    daemon and children SIGKILLed: stale files; a Subscriber recovers
        -> test_whole_daemon_sigkilled_restarts_over_stale_files_and_a_subscriber_recovers

Not a fault, but alongside: a file camera with ``loop = false`` ends honestly
(test_file_camera_without_loop_ends_instead_of_reconnecting).

The child-kill tests share one daemon (module scope) to keep the suite quick: each waits for every
child to be running before it starts, and kills each child once, far below the restart budget.
Every wait is bounded; cameras run at 10 fps with idle_timeout and stale_after of 1 s.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import simplejpeg

from tests.helpers import Children, Daemon, bridge_status, bus_status, cli, free_port, reader_process, wait_for
from tests.helpers.daemon import wait_running
from tests.helpers.panorama import all_live, captured_after, panoramas_until_back, read_until, source_states
from tests.helpers.stream import VIEWER_READ_TIMEOUT, Viewer, connect_viewer
from zmqcam import Subscriber
from zmqcam.bus.protocol import Frame
from zmqcam.config import Config, default_config_dict, from_dict, load_config
from zmqcam.config.toml import render_toml
from zmqcam.grabber import BACKOFF_CAP, run_grabber
from zmqcam.image.remap import PanoramaComposer
from zmqcam.testing.fakecam import FakeCam, SilentServer

#: seconds; short so that NO SIGNAL, sleep and timeouts show within a test
STALE_AFTER = 1.0
IDLE_TIMEOUT = 1.0
CAMERA_TIMEOUT = 1.0

# ---------------------------------------------------------------------------------------------
# helpers


def write_rig(path: Path, run_dir: Path, cameras: list[dict[str, Any]], http: bool = False) -> Config:
    """A daemon config of ``len(cameras)`` cameras (the built-in rig's geometry, fields overridden
    per camera), short timeouts; returns the config as the daemon will load it."""
    data = default_config_dict(str(run_dir))
    data["camera"] = data["camera"][: len(cameras)]
    for cam, fields in zip(data["camera"], cameras, strict=True):
        cam.update(
            {
                "fps": 10.0,
                "idle_timeout": IDLE_TIMEOUT,
                "connect_timeout": CAMERA_TIMEOUT,
                "read_timeout": CAMERA_TIMEOUT,
                **fields,
            }
        )
    data["stitch"] = {"stale_after": STALE_AFTER}
    data["http"] = {"enabled": http, "port": free_port()}
    from_dict(data)  # the test's own config must be valid
    path.write_text(render_toml(data))
    return load_config(path)


def children(d: Daemon, run_dir: Path) -> dict[str, Any]:
    return d.state(run_dir).get("children", {})


def kill_and_wait_restart(d: Daemon, run_dir: Path, name: str, timeout: float = 20) -> tuple[int, dict[str, Any]]:
    """SIGKILL child ``name`` by its pid; return (the kill time in ns, its entry once restarted)."""
    old = children(d, run_dir)[name]
    os.kill(old["pid"], signal.SIGKILL)
    killed_ns = time.time_ns()

    def restarted() -> Any:
        entry = children(d, run_dir).get(name, {})
        return entry.get("state") == "running" and entry.get("pid") not in (None, old["pid"]) and entry

    entry = wait_for(restarted, timeout, interval=0.1, message=f"{name} restarted by the supervisor")
    assert entry["restarts"] == old["restarts"] + 1, entry
    return killed_ns, entry


def camera_at(port: int) -> FakeCam:
    """A fake camera whose snapshot port is ``port`` (an address a grabber already knows), retried
    briefly while the port is still being released."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return FakeCam(port=port, fps=10.0).start()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# ---------------------------------------------------------------------------------------------
# children SIGKILLed: one daemon for these tests (2 synthetic cameras, stitcher, bridge)

CHILDREN = ["grabber:cam0", "grabber:cam1", "stitcher", "bridge"]


class Rig:
    def __init__(self, daemon: Daemon, run_dir: Path, config: Config) -> None:
        self.daemon = daemon
        self.run_dir = run_dir
        self.config = config
        self.port = config.http.port
        self.pano = f"ipc://{run_dir}/pano.sock"

    def running(self) -> dict[str, Any]:
        return wait_running(self.daemon, self.run_dir, CHILDREN)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("faults")
    run_dir = tmp / "run"
    config = write_rig(tmp / "z.toml", run_dir, [{}, {}], http=True)
    d = Daemon(["-c", str(tmp / "z.toml")], cwd=tmp)
    try:
        yield Rig(d, run_dir, config)
    finally:
        _, err = d.terminate()
        assert d.proc.returncode == 0, err
        assert "Traceback" not in err, err


def test_killed_stitcher_is_restarted_and_pano_subscribers_recover(rig: Rig) -> None:
    """SIGKILL the stitcher while two programs read the panorama (raw and jpeg) and a browser
    watches /stream: the supervisor restarts it, and the same Subscribers and the same HTTP
    connection get live panoramas captured after the kill, with no action by the user. Guards
    the restart, the stitcher re-binding its ipc socket over the one the dead process left, and
    the reconnect of every consumer (a Subscriber or a bridge stuck on the dead socket)."""
    rig.running()
    viewer = connect_viewer(rig.port, "/stream")  # the bridge is a consumer of the panorama too
    try:
        with (
            Subscriber("pano", endpoint=rig.pano) as raw,
            Subscriber("pano", kind="jpeg", endpoint=rig.pano) as jpeg,
        ):
            read_until(raw, all_live, 30, "both cameras live")
            read_until(jpeg, all_live, 10, "both cameras live")
            viewer.live_parts(1)
            killed_ns, _ = kill_and_wait_restart(rig.daemon, rig.run_dir, "stitcher")

            def after_kill(frame: Frame) -> bool:
                return all_live(frame) and frame.capture_ns > killed_ns

            frame = read_until(raw, after_kill, 20, "live cameras captured after the kill")
            assert frame.image.shape == (250, rig.config.pano_size[0], 3)
            encoded = read_until(jpeg, after_kill, 10, "live cameras captured after the kill (jpeg)")
            assert simplejpeg.decode_jpeg_header(encoded.jpeg)[:2] == (250, rig.config.pano_size[0])
        # the same HTTP connection, never reopened, shows panoramas of the new stitcher
        assert simplejpeg.decode_jpeg_header(viewer.live_part_after(killed_ns))[:2] == (250, rig.config.pano_size[0])
    finally:
        viewer.close()


def test_killed_grabber_is_restarted_and_its_panorama_slot_comes_back(rig: Rig) -> None:
    """SIGKILL a grabber while a program reads the panorama and a browser watches the camera: the
    other camera stays live in every panorama, the supervisor restarts the grabber, its slot is
    live again in the same Subscriber and the same HTTP connection shows its new frames. Guards
    the stitcher's and the bridge's reconnect to a restarted grabber (their SUBs must resubscribe,
    or the slot stays NO SIGNAL and the viewer frozen forever)."""
    rig.running()
    viewer = connect_viewer(rig.port, "/stream/cam1")
    try:
        with Subscriber("pano", endpoint=rig.pano) as sub:
            read_until(sub, all_live, 30, "both cameras live")
            viewer.live_parts(1)
            killed_ns, _ = kill_and_wait_restart(rig.daemon, rig.run_dir, "grabber:cam1")
            # the restart is quick (0.25 s), so NO SIGNAL may or may not show: both are fine, but
            # cam0 must be live in every panorama meanwhile and cam1 must come back
            frames = panoramas_until_back(sub, "cam1", killed_ns, 20, "cam1 live again after its restart")
            assert all(source_states(f)["cam0"] == "live" for f in frames), [source_states(f) for f in frames]
        # an HTTP viewer of the camera itself gets the restarted grabber's frames, same connection
        assert simplejpeg.decode_jpeg_header(viewer.live_part_after(killed_ns))[:2] == (480, 640)
    finally:
        viewer.close()


def test_killed_bridge_is_restarted_and_viewers_reconnect_on_the_same_port(rig: Rig) -> None:
    """SIGKILL the HTTP bridge with viewers on /stream and /stream/cam0: their connections end at
    once (no viewer hangs on a dead server), the supervisor restarts the bridge on the same port,
    and viewers that reconnect get live frames of the right size. Guards the restart of the
    bridge (port still bound by the dead one, reuse_address), and the new bridge subscribing
    upstream again for its first viewers."""
    rig.running()
    width, height = rig.config.pano_size
    pano, cam = connect_viewer(rig.port, "/stream"), connect_viewer(rig.port, "/stream/cam0")
    try:
        assert simplejpeg.decode_jpeg_header(pano.live_parts(2)[-1])[:2] == (height, width)
        cam.live_parts(2)
        kill_and_wait_restart(rig.daemon, rig.run_dir, "bridge")
        for viewer in (pano, cam):
            ended = time.monotonic()
            with pytest.raises((EOFError, requests.RequestException)):
                for _ in range(100):  # parts already buffered, then the end
                    viewer.next_part()
            # ended by the dead server, not by our read timeout (which raises the same errors)
            assert time.monotonic() - ended < VIEWER_READ_TIMEOUT / 2
    finally:
        pano.close()
        cam.close()
    pano, cam = connect_viewer(rig.port, "/stream"), connect_viewer(rig.port, "/stream/cam0")
    try:
        for jpeg in pano.live_parts(3):
            assert simplejpeg.decode_jpeg_header(jpeg)[:2] == (height, width)
        for jpeg in cam.live_parts(3):
            assert simplejpeg.decode_jpeg_header(jpeg)[:2] == (480, 640)
    finally:
        pano.close()
        cam.close()
    # the new bridge learns the cameras' state from their next status message (one a second)

    def cam0_live(status: dict[str, Any]) -> None:
        assert status["cameras"]["cam0"]["state"] == "live", status["cameras"]["cam0"]

    watching = time.time()
    viewer = Viewer(rig.port, "/stream/cam0")  # someone watching keeps cam0 awake meanwhile
    try:
        bridge_status(f"http://127.0.0.1:{rig.port}", cam0_live, since=watching)
    finally:
        viewer.close()


def test_sigkilled_pano_subscriber_lets_the_cameras_sleep(rig: Rig) -> None:
    """A program reading the panorama is SIGKILLed (no close, no unsubscribe): the stitcher sees it
    gone, releases the cameras, and both grabbers go to sleep within idle_timeout. Guards the
    whole demand chain against a consumer that dies (cameras kept awake forever by a dead reader)."""
    rig.running()
    with reader_process("pano", endpoint=rig.pano) as proc:

        def read_and_live(found: dict[str, dict[str, Any]]) -> None:
            assert found["pano"]["subscribers"]["raw"] == 1 and found["pano"]["upstream"], found["pano"]
            assert found["cam0"]["state"] == found["cam1"]["state"] == "live", found

        bus_status(rig.config, read_and_live)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        killed = time.monotonic()

        def released_and_asleep(found: dict[str, dict[str, Any]]) -> None:
            assert found["pano"]["upstream"] is False and found["pano"]["subscribers"]["raw"] == 0, found["pano"]
            assert found["cam0"]["state"] == found["cam1"]["state"] == "asleep", found

        bus_status(rig.config, released_and_asleep, timeout=IDLE_TIMEOUT + 15)
        # asleep because the dead reader counted as gone: idle_timeout after the kill, not before
        assert time.monotonic() - killed >= IDLE_TIMEOUT * 0.9


# ---------------------------------------------------------------------------------------------
# the whole daemon SIGKILLed


def test_whole_daemon_sigkilled_restarts_over_stale_files_and_a_subscriber_recovers(tmp_path: Path) -> None:
    """SIGKILL the daemon and every child at once (an OOM kill of the group, a power cut of the
    service): the pid file, daemon.json and every ipc socket file stay behind. A new start over
    them comes up cleanly, and a Subscriber that kept running all along gets live panoramas
    again without being touched. Guards the stale-file handling at start (refusing to start, or
    binding beside a stale socket nobody reaches) and the Subscriber's reconnect across a
    daemon restart."""
    run_dir = tmp_path / "run"
    config = write_rig(tmp_path / "z.toml", run_dir, [{}, {}], http=True)
    args = ["-c", str(tmp_path / "z.toml")]
    first = Daemon(args, cwd=tmp_path)
    second: Daemon | None = None
    try:
        wait_running(first, run_dir, CHILDREN)
        with Subscriber("pano", endpoint=f"ipc://{run_dir}/pano.sock") as sub:
            read_until(sub, all_live, 30, "both cameras live")
            os.killpg(first.proc.pid, signal.SIGKILL)  # its own session: the daemon and its children
            killed_ns = time.time_ns()
            first.proc.communicate(timeout=10)
            stale = {p.name for p in run_dir.iterdir()}
            assert {"zmqcam.pid", "daemon.json", "pano.sock", "cam-cam0.sock", "cam-cam1.sock"} <= stale, stale

            second = Daemon(args, cwd=tmp_path)
            table = wait_running(second, run_dir, CHILDREN)
            assert (run_dir / "zmqcam.pid").read_text().strip() == str(second.proc.pid)
            assert all(entry["restarts"] == 0 for entry in table.values()), table

            def after_restart(frame: Frame) -> bool:
                return all_live(frame) and frame.capture_ns > killed_ns

            frame = read_until(sub, after_restart, 30, "live panoramas from the new daemon")
            assert frame.image.shape == (250, config.pano_size[0], 3)
        viewer = connect_viewer(config.http.port, "/stream")
        try:
            viewer.live_parts(1)
        finally:
            viewer.close()
        _, err = second.terminate()
        assert second.proc.returncode == 0 and "Traceback" not in err, err
        assert not list(run_dir.glob("*.sock")) and not (run_dir / "zmqcam.pid").exists()
    finally:
        for d in (first, second):
            if d is not None and d.proc.poll() is None:
                d.terminate()


# ---------------------------------------------------------------------------------------------
# cameras


@pytest.mark.slow
def test_rig_with_cameras_broken_from_the_start_serves_the_rest(tmp_path: Path, fakes: Callable[..., FakeCam]) -> None:
    """Four cameras, two of them broken from the start: cam2 is powered off (nothing listens on
    its ports), cam3 accepts TCP and never answers; cam1 sends 320x240 where 640x480 is
    configured. The daemon starts and serves: the panorama shows exactly the NO SIGNAL card in
    cam2's and cam3's slots and pictures in cam0's and cam1's, cam0 and cam1 stay live in every
    panorama, status (bus and HTTP) reports each bad camera's state and counters, and no grabber
    crashes. Then cam2 is powered on and cam3 replaced by a working camera at its address: both
    are picked up, every slot live, with no action on the daemon. Guards start-up and stitching
    against a camera that refuses or hangs (a daemon that waits for it, a grabber that hangs,
    crash-loops or gives up, a panorama that stalls) and against a wrong frame size."""
    good = fakes()
    small = fakes(size=(320, 240))
    off = fakes()
    off.refuse()  # powered off from the start: nothing listens on its ports
    with SilentServer() as silent:
        cameras = [
            {"source": good.stream_url},
            {"source": small.stream_url},
            {"source": off.stream_url},
            {"source": silent.url("/capture")},  # a snapshot camera that never answers
        ]
        run_dir = tmp_path / "run"
        config = write_rig(tmp_path / "z.toml", run_dir, cameras, http=True)
        d = Daemon(["-c", str(tmp_path / "z.toml")], cwd=tmp_path)
        try:
            names = [f"grabber:cam{i}" for i in range(4)] + ["stitcher", "bridge"]
            wait_running(d, run_dir, names)
            started = time.time()
            with Subscriber("pano", endpoint=f"ipc://{run_dir}/pano.sock") as sub:
                expected = {"cam0": "live", "cam1": "live", "cam2": "stale", "cam3": "stale"}

                def two_live(frame: Frame) -> bool:
                    states = source_states(frame)
                    return states["cam0"] == states["cam1"] == "live" and set(frame.extra["stale"]) == {"cam2", "cam3"}

                frame = read_until(sub, two_live, 30, "cam0 and cam1 live, cam2 and cam3 NO SIGNAL")
                composer = PanoramaComposer(config.stitched_cameras)
                for index, slot in enumerate(composer.slots):
                    pixels = frame.image[:, slot.x0 : slot.x1]
                    is_card = np.array_equal(pixels, composer.card(index))
                    assert is_card == (expected[slot.name] != "live"), f"{slot.name}: card {is_card}"
                assert frame.image.shape == (250, config.pano_size[0], 3)
                # the bad cameras never disturb the good ones, across several reconnect attempts
                later = [read_until(sub, lambda f: True, 5, "a panorama") for _ in range(10)]
                assert all(source_states(f)["cam0"] == source_states(f)["cam1"] == "live" for f in later)

                def counted(found: dict[str, dict[str, Any]]) -> None:
                    assert found["cam2"]["reconnects"] >= 2 and found["cam3"]["reconnects"] >= 2, found
                    assert found["cam0"]["state"] == found["cam1"]["state"] == "live", found

                found = bus_status(config, counted)

                def shown_by_the_bridge(status: dict[str, Any]) -> None:
                    cams = status["cameras"]
                    assert cams["cam0"]["state"] == "live", cams
                    assert all(cams[n]["reconnects"] >= 2 for n in ("cam2", "cam3")), cams

                # the bridge shows what each grabber last published: one newer than the rig's start
                http = bridge_status(f"http://127.0.0.1:{config.http.port}", shown_by_the_bridge, since=started)
                shown = cli("status", "-c", str(tmp_path / "z.toml"), cwd=tmp_path)
            refused, hung, small_status = found["cam2"], found["cam3"], found["cam1"]
            assert refused["state"] in ("lost", "connecting") and refused["frames"] == 0, refused
            assert "refused" in refused["last_error"].lower(), refused["last_error"]
            # silence on a fresh connection is what a busy ESP32 does too: "busy", naming both causes
            assert hung["state"] in ("busy", "connecting") and hung["frames"] == 0, hung
            assert "no response" in hung["last_error"] and "hung" in hung["last_error"], hung["last_error"]
            assert silent.connections >= 1 and silent.bytes_received > 0, "the grabber never reached cam3"
            assert (small_status["width"], small_status["height"]) == (320, 240), small_status
            assert found["cam0"]["state"] == "live", found["cam0"]
            for name in ("cam2", "cam3"):
                assert http["cameras"][name]["state"] in ("connecting", "no signal"), http["cameras"][name]
                assert http["cameras"][name]["reconnects"] >= 2, http["cameras"][name]
            assert http["cameras"]["cam0"]["state"] == "live", http["cameras"]["cam0"]
            # what `zmqcam-daemon status` shows the user: one line per camera with its state
            assert shown.returncode == 0, shown.stderr
            lines = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines() if line.startswith("cam")}
            assert lines["cam0"] == lines["cam1"] == "live", shown.stdout
            assert lines["cam2"] in ("lost", "connecting") and lines["cam3"] in ("busy", "connecting"), shown.stdout
            viewer = connect_viewer(config.http.port, "/stream")
            try:
                assert simplejpeg.decode_jpeg_header(viewer.live_parts(1)[0])[:2] == (250, config.pano_size[0])
            finally:
                viewer.close()
            table = children(d, run_dir)
            assert all(table[n]["restarts"] == 0 for n in names), table

            # and the camera is picked up when it returns: cam2 powered on, cam3's address answered
            # by a working camera (the hung one power-cycled)
            off.accept_again()
            silent.stop()
            revived = camera_at(silent.port)
            try:
                with Subscriber("pano", endpoint=f"ipc://{run_dir}/pano.sock") as sub:
                    # reconnects back off to at most BACKOFF_CAP: the next attempt is within that
                    read_until(sub, all_live, BACKOFF_CAP + 15, "cam2 and cam3 picked up: every slot live")
                assert revived.captures_sent > 0
            finally:
                revived.stop()
            assert not revived.errors, revived.errors
            assert all(entry["restarts"] == 0 for entry in children(d, run_dir).values())
        finally:
            _, err = d.terminate()
        assert d.proc.returncode == 0 and "Traceback" not in err, err
    assert not silent.errors, silent.errors


def test_killed_grabber_of_a_one_client_camera_gets_the_camera_back(
    tmp_path: Path, fakes: Callable[..., FakeCam]
) -> None:
    """SIGKILL the grabber of an ESP32-CAM in the middle of its stream: an ESP32 serves one
    client and leaves the next one waiting, so the restarted grabber gets the camera only once
    the camera has noticed the dead connection. It must: cam0 is live again in the panorama
    (same Subscriber), the camera serves exactly one client, and the panorama kept coming with
    cam1 live meanwhile. Guards against a restarted grabber locked out by its own dead
    predecessor ("busy" forever) and against a dead grabber stalling the stitcher."""
    esp32 = fakes()
    other = fakes()
    run_dir = tmp_path / "run"
    write_rig(tmp_path / "z.toml", run_dir, [{"source": esp32.stream_url}, {"source": other.stream_url}])
    d = Daemon(["-c", str(tmp_path / "z.toml")], cwd=tmp_path)
    try:
        wait_running(d, run_dir, ["grabber:cam0", "grabber:cam1", "stitcher"])
        with Subscriber("pano", endpoint=f"ipc://{run_dir}/pano.sock") as sub:
            read_until(sub, all_live, 30, "both cameras live")
            assert esp32.active_stream_clients == 1
            killed_ns, _ = kill_and_wait_restart(d, run_dir, "grabber:cam0")
            frames = panoramas_until_back(sub, "cam0", killed_ns, 20, "cam0 live again from its restarted grabber")
            assert all(source_states(f)["cam1"] == "live" for f in frames), [source_states(f) for f in frames]
        assert esp32.stream_connections == 2, esp32.stats()  # the dead grabber's, the new one's
        assert esp32.wait_until(lambda: esp32.waiting_stream_clients == 0, 3.0), esp32.stats()
    finally:
        _, err = d.terminate()
    assert d.proc.returncode == 0 and "Traceback" not in err, err


@pytest.mark.slow
def test_flapping_camera_never_disturbs_the_rest_and_is_live_once_it_settles(
    tmp_path: Path, fakes: Callable[..., FakeCam]
) -> None:
    """cam0 power-cycles six times, about a second apart (0.5 s off, connections dropped, then on
    again), while a program reads the panorama: cam1 is live in every panorama, and after every
    power cycle a panorama made from a cam1 frame captured after it arrives (the stitcher never
    waits for the flapping camera); the grabber is never restarted, its reconnects are counted and
    backed off (no reconnect storm); once the camera settles it is live again without any action.
    Guards against a flapping camera crashing its grabber, stalling the stitcher, or being given up."""
    flapper = fakes()
    steady = fakes()
    run_dir = tmp_path / "run"
    config = write_rig(tmp_path / "z.toml", run_dir, [{"source": flapper.stream_url}, {"source": steady.stream_url}])
    d = Daemon(["-c", str(tmp_path / "z.toml")], cwd=tmp_path)
    try:
        table = wait_running(d, run_dir, ["grabber:cam0", "grabber:cam1", "stitcher"])
        pid = table["grabber:cam0"]["pid"]
        with Subscriber("pano", endpoint=f"ipc://{run_dir}/pano.sock") as sub:
            read_until(sub, all_live, 30, "both cameras live")
            frames: list[Frame] = []
            for cycle in range(6):
                flapper.reboot(0.5)
                rebooted_ns = time.time_ns()
                until = time.monotonic() + 1.0  # a second of flapping, read as a program reads it
                while time.monotonic() < until:
                    ok, frame = sub.read(timeout=0.1)
                    if ok and frame is not None:
                        frames.append(frame)

                def read_after_the_reboot(frame: Frame, since: int = rebooted_ns) -> bool:
                    frames.append(frame)
                    return captured_after(frame, "cam1", since)

                # an order, not a rate: a panorama made after this power cycle (waited for, with a deadline)
                if not (frames and captured_after(frames[-1], "cam1", rebooted_ns)):
                    read_until(sub, read_after_the_reboot, 20, f"a panorama after power cycle {cycle + 1}")
            assert all(source_states(f)["cam1"] == "live" for f in frames), [source_states(f) for f in frames]
            assert any(source_states(f)["cam0"] != "live" for f in frames), "cam0 never went down: no flapping?"

            def backed_off(found: dict[str, dict[str, Any]]) -> None:
                reconnects = found["cam0"]["reconnects"]
                assert 2 <= reconnects <= 12, f"{reconnects} reconnects in 6 power cycles"

            bus_status(config, backed_off, streams=["cam0"])
            # settled: live again within the backoff it reached (a few seconds, far below the cap)
            read_until(sub, all_live, 20, "cam0 live again once it stopped flapping")
        entry = children(d, run_dir)["grabber:cam0"]
        assert entry["pid"] == pid and entry["restarts"] == 0, entry
    finally:
        _, err = d.terminate()
    assert d.proc.returncode == 0 and "Traceback" not in err, err


# ---------------------------------------------------------------------------------------------
# the end of a file is not a fault


@pytest.mark.slow
def test_file_camera_without_loop_ends_instead_of_reconnecting(
    tmp_path: Path, make_config: Callable[..., Config], children: Children
) -> None:
    """A video file with ``loop = false`` plays once and the camera is reported "ended": no
    reconnect counted, no replay while it is watched; released (idle_timeout) and watched again,
    it plays from the start once more. Guards against the end of a file being treated as a lost
    camera (replayed after every backoff, reported "lost" with a growing reconnect count)."""
    import cv2

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 20.0, (640, 480))
    assert writer.isOpened(), "cv2.VideoWriter cannot write MJPG .avi"
    for level in range(40, 200, 20):  # 8 frames, 0.4 s
        writer.write(np.full((480, 640, 3), level, np.uint8))
    writer.release()
    config = make_config(
        cameras=1,
        camera={"source": str(path), "loop": False, "idle_timeout": 0.5},
        stitch={"enabled": False},  # a grabber alone: status need not wait for a stitcher's
    )
    children.start(run_grabber, config, "cam0")
    bus_status(config, lambda found: found["cam0"], timeout=20, streams=["cam0"])
    for session in (1, 2):
        with Subscriber("cam0", config=config) as sub:
            read_until(sub, lambda f: True, 15, "a frame of the file")

            def ended(found: dict[str, dict[str, Any]], session: int = session) -> None:
                assert found["cam0"]["state"] == "ended", found
                assert found["cam0"]["frames"] == 8 * session and found["cam0"]["reconnects"] == 0, found

            bus_status(config, ended, streams=["cam0"])
            sub.read(timeout=0.2)  # the file's last frame, if not read yet
            # longer than the first backoff (0.5 s): a lost camera would have played the file again
            assert sub.read(timeout=1.0) == (False, None)

            def still_ended(found: dict[str, dict[str, Any]], session: int = session) -> None:
                assert found["cam0"]["state"] == "ended" and found["cam0"]["frames"] == 8 * session, found

            bus_status(config, still_ended, streams=["cam0"])

        def asleep(found: dict[str, dict[str, Any]]) -> None:
            assert found["cam0"]["state"] == "asleep", found

        bus_status(config, asleep, streams=["cam0"])
