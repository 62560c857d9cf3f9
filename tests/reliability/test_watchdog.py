"""A hung process is a dead process (issue 18), proven on the real daemon: ``zmqcam-daemon start`` as a
subprocess, its children frozen with SIGSTOP (which stands for any deadlock: a native call that never
returns, a stuck lock, a stopped process), a camera whose reads block far beyond ``read_timeout``
while the grabber's loop keeps running, and consumers that must recover by themselves.

Every daemon here runs with the shortest watchdog allowed (``MIN_WATCHDOG``, 3 s), so that a hang is
caught within seconds and a few seconds of idling are several watchdog periods. The faults and their
tests::

    a grabber SIGSTOPped: restarted, its panorama slot and viewers come back
        -> test_stopped_grabber_is_restarted_as_hung_and_its_slot_comes_back
    the stitcher SIGSTOPped: restarted, pano Subscribers and a reconnecting viewer recover
        -> test_stopped_stitcher_is_restarted_as_hung_and_its_consumers_recover
    the bridge SIGSTOPped: restarted on the same port, a reconnecting viewer is served again
        -> test_stopped_bridge_is_restarted_as_hung_and_viewers_are_served_again
    a camera read that never honours read_timeout (the loop runs, the work is stuck)
        -> test_grabber_stuck_in_a_camera_read_reports_itself_and_is_restarted
    a stitcher whose panoramas stop while its loop runs
        -> stitcher/test_stitcher_health.py
    daemon.watchdog = 0: a stopped child is left alone
        -> test_watchdog_0_leaves_a_stopped_child_alone
    a slow start (large remap tables) and an idle daemon: the watchdog never fires
        -> test_watchdog_never_fires_during_a_slow_start_or_while_idle
    the supervisor itself under systemd (READY, WATCHDOG pings that stop when it hangs)
        -> supervisor/test_systemd.py

The SIGSTOP tests share one daemon (module scope); each freezes a different child once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import simplejpeg

from tests.helpers import Daemon, bus_status, cli, needs, wait_for, write_config
from tests.helpers.daemon import wait_running
from tests.helpers.panorama import all_live, panoramas_until_back, read_until, source_states
from tests.helpers.stream import ReconnectingViewer
from zmqcam import Subscriber
from zmqcam.bus.protocol import Frame
from zmqcam.bus.status import HUNG, RUNNING
from zmqcam.config import Config, load_config
from zmqcam.config.models import MIN_WATCHDOG
from zmqcam.grabber.capture import call_limit
from zmqcam.names import BRIDGE, STITCHER, grabber_name
from zmqcam.supervisor.supervisor import RESTART_DELAY_CAP, STOP_TIMEOUT

CHILDREN = [grabber_name("cam0"), grabber_name("cam1"), STITCHER, BRIDGE]
#: the longest a frozen child can take to run again: the watchdog, a heartbeat late, the SIGTERM grace
#: before SIGKILL, the restart delay and a start on a busy machine
RESTARTED_WITHIN = MIN_WATCHDOG + 1 + STOP_TIMEOUT + RESTART_DELAY_CAP + 20


class Rig:
    def __init__(self, daemon: Daemon, run_dir: Path, config: Config, log: Path) -> None:
        self.daemon = daemon
        self.run_dir = run_dir
        self.config = config
        self.log = log
        self.port = config.http.port
        self.pano = f"ipc://{run_dir}/pano.sock"

    def running(self) -> dict[str, Any]:
        return wait_running(self.daemon, self.run_dir, CHILDREN)

    def table(self) -> dict[str, Any]:
        return self.daemon.state(self.run_dir).get("children", {})


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("watchdog")
    run_dir = tmp / "run"
    path = write_config(
        tmp / "z.toml",
        run_dir,
        http=True,
        sections={"daemon": {"watchdog": MIN_WATCHDOG}, "stitch": {"stale_after": 1.0}},
    )
    d = Daemon(["-c", str(path)], cwd=tmp, log=tmp / "daemon.log")
    try:
        yield Rig(d, run_dir, load_config(path), tmp / "daemon.log")
    finally:
        d.terminate()
        log = (tmp / "daemon.log").read_text()
        assert d.proc.returncode == 0, log
        assert "Traceback" not in log, log


def gone(pid: int) -> bool:
    """Reaped by its parent (no zombie) and not running on as an orphan: no such process at all."""
    return not Path(f"/proc/{pid}").exists()


def stop_until_restarted(rig: Rig, name: str) -> tuple[int, dict[str, Any]]:
    """SIGSTOP child ``name`` by its pid: the watchdog must show it hung, stop it (a stopped process
    ignores SIGTERM, so SIGKILL), reap it and start a new one under the restart budget. Returns the
    stop time (ns) and its process table entry once it runs again."""
    old = rig.running()[name]
    pid = old["pid"]
    os.kill(pid, signal.SIGSTOP)
    stopped_ns = time.time_ns()
    try:
        shown = wait_for(
            lambda: (entry := rig.table().get(name, {})).get("state") == HUNG and entry,
            RESTARTED_WITHIN,
            interval=0.1,
            message=f"{name} shown hung in daemon.json",
        )
        assert shown["hung"].startswith("no heartbeat for"), shown

        def restarted() -> Any:
            entry = rig.table().get(name, {})
            return entry.get("state") == RUNNING and entry.get("pid") not in (None, pid) and entry

        entry = wait_for(restarted, RESTARTED_WITHIN, interval=0.1, message=f"{name} restarted by the watchdog")
    finally:
        if not gone(pid):
            os.kill(pid, signal.SIGCONT)  # the watchdog did not act: let the daemon stop it at teardown
    assert entry["restarts"] == old["restarts"] + 1, entry
    assert entry["hangs"] == old["hangs"] + 1, entry
    assert gone(pid), f"the stopped {name} (pid {pid}) is still there"
    log = rig.log.read_text()
    assert f"{name} (pid {pid}) is hung: no heartbeat for" in log, log
    assert f"{name} (pid {pid}) ignored SIGTERM" in log, log  # SIGKILL after the grace
    return stopped_ns, entry


def assert_restart_shown(rig: Rig, name: str, entry: dict[str, Any]) -> None:
    """The restart and its reason where a user looks: `zmqcam-daemon status` and the bridge's /status."""
    status = cli("status", "-c", str(rig.run_dir.parent / "z.toml"), cwd=rig.run_dir.parent)
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith(name + " "))
    assert re.search(rf"^{re.escape(name)}\s+running\s+{entry['pid']}\s+{entry['restarts']}\s", line), line
    assert f"hung {entry['hangs']}x, last: no heartbeat for" in line, line

    def shown_by_the_bridge() -> Any:
        processes = requests.get(f"http://127.0.0.1:{rig.port}/status", timeout=5).json()["processes"]
        return processes.get(name, {}).get("pid") == entry["pid"] and processes[name]

    process = wait_for(shown_by_the_bridge, 10, interval=0.2, message=f"{name} in the bridge's /status")
    assert (process["state"], process["restarts"], process["hangs"]) == (RUNNING, entry["restarts"], entry["hangs"])


def after(t_ns: int) -> Any:
    def check(frame: Frame) -> bool:
        return all_live(frame) and frame.capture_ns > t_ns

    return check


def test_stopped_stitcher_is_restarted_as_hung_and_its_consumers_recover(rig: Rig) -> None:
    """SIGSTOP the stitcher (it stands for any deadlock) while a program reads the panorama and a
    player watches /stream: the supervisor shows it hung, kills and reaps it, starts a new one, and
    the same Subscriber and the player (reconnecting, as players do) get live panoramas captured
    after the stop. Guards the issue's report: a frozen stitcher left "running, restarts 0" forever
    with every viewer frozen and nothing logged."""
    rig.running()
    viewer = ReconnectingViewer(rig.port, "/stream")
    try:
        with Subscriber("pano", endpoint=rig.pano) as sub:
            read_until(sub, all_live, 30, "both cameras live")
            viewer.live_part_after(0, 20)
            stopped_ns, entry = stop_until_restarted(rig, STITCHER)
            frame = read_until(sub, after(stopped_ns), 30, "live panoramas captured after the stop")
            assert frame.image.shape == (250, rig.config.pano_size[0], 3)
        jpeg = viewer.live_part_after(stopped_ns, 30)
        assert simplejpeg.decode_jpeg_header(jpeg)[:2] == (250, rig.config.pano_size[0])
    finally:
        viewer.close()
    assert_restart_shown(rig, STITCHER, entry)


def test_stopped_grabber_is_restarted_as_hung_and_its_slot_comes_back(rig: Rig) -> None:
    """SIGSTOP a grabber while a program reads the panorama and a player watches the camera: the
    other camera stays live in every panorama, the frozen grabber is restarted as hung, its slot is
    live again in the same Subscriber and the player sees its new frames. Guards a frozen grabber
    costing more than its own slot, or its camera never coming back."""
    rig.running()
    viewer = ReconnectingViewer(rig.port, "/stream/cam1")
    try:
        with Subscriber("pano", endpoint=rig.pano) as sub:
            read_until(sub, all_live, 30, "both cameras live")
            viewer.live_part_after(0, 20)
            name = grabber_name("cam1")
            stopped_ns, entry = stop_until_restarted(rig, name)
            frames = panoramas_until_back(sub, "cam1", stopped_ns, 30, "cam1 live again after its restart")
            assert all(source_states(f)["cam0"] == "live" for f in frames), [source_states(f) for f in frames]
        assert simplejpeg.decode_jpeg_header(viewer.live_part_after(stopped_ns, 30))[:2] == (480, 640)
    finally:
        viewer.close()
    assert_restart_shown(rig, name, entry)


def test_stopped_bridge_is_restarted_as_hung_and_viewers_are_served_again(rig: Rig) -> None:
    """SIGSTOP the HTTP bridge while a player watches /stream and a program reads the panorama: the
    program never notices, the bridge is restarted as hung on the same port, and the player (whose
    connection went silent: a stopped server still accepts TCP but answers nothing) reconnects and
    gets live panoramas captured after the stop. Guards a frozen bridge that holds its port forever."""
    rig.running()
    viewer = ReconnectingViewer(rig.port, "/stream")
    try:
        with Subscriber("pano", endpoint=rig.pano) as sub:
            read_until(sub, all_live, 30, "both cameras live")
            viewer.live_part_after(0, 20)
            stopped_ns, entry = stop_until_restarted(rig, BRIDGE)
            read_until(sub, after(time.time_ns()), 10, "live panoramas while the bridge restarts")
        assert simplejpeg.decode_jpeg_header(viewer.live_part_after(stopped_ns, 30))[:2] == (
            250,
            rig.config.pano_size[0],
        )
        assert viewer.reconnects >= 1
    finally:
        viewer.close()
    assert_restart_shown(rig, BRIDGE, entry)


# ---------------------------------------------------------------------------------------------
# a camera read that never honours read_timeout: the grabber's loop runs, its work does not

#: the frame size the RTP camera sends
RTP_SIZE = (320, 240)


def free_rtp_port() -> int:
    """An even UDP port of 127.0.0.1 whose successor (RTCP) is free too."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1] & ~1
        try:
            with (
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp,
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtcp,
            ):
                rtp.bind(("127.0.0.1", port))
                rtcp.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        return port
    raise AssertionError("no free pair of UDP ports")


@contextlib.contextmanager
def rtp_camera(port: int, sdp: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A network camera sending MPEG-1 video over RTP to 127.0.0.1:``port`` (ffmpeg), described by the
    SDP file ``sdp`` that players open; stopped (SIGKILL: a camera losing power) on exit."""
    width, height = RTP_SIZE
    source = ["-re", "-f", "lavfi", "-i", f"testsrc=size={width}x{height}:rate=25"]
    rtp = ["-c:v", "mpeg1video", "-g", "10", "-f", "rtp", "-sdp_file", str(sdp), f"rtp://127.0.0.1:{port}"]
    proc = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-loglevel", "error", *source, *rtp],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: sdp.exists() and b"m=video" in sdp.read_bytes(), 20, message="ffmpeg's SDP file")
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def test_grabber_stuck_in_a_camera_read_reports_itself_and_is_restarted(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A real source whose reads ignore ``read_timeout``: a ``file`` camera playing an RTP stream
    through its SDP file (how RTP/multicast cameras are read with OpenCV's FFmpeg). When the
    camera stops sending, each read blocks in FFmpeg for about 10 s whatever ``read_timeout``
    (0.5 s here) says; the grabber's loop keeps running and beating, but reports itself unhealthy
    once the read has lasted ``call_limit`` (3 x 0.5 + 2 s), and the watchdog restarts it. With the
    camera back, the same Subscriber gets frames from the new grabber. Guards the grabber frozen on
    one camera read forever while its heartbeat says all is well.

    (If the file source ever passes ``read_timeout`` to OpenCV, this read will be bounded and the
    test needs another source that ignores its timeout.)"""
    needs(bool(shutil.which("ffmpeg")), "needs ffmpeg (Debian package ffmpeg)")
    port = free_rtp_port()
    sdp = tmp_path / "cam.sdp"
    run_dir = tmp_path / "run"
    config = write_config(
        tmp_path / "z.toml",
        run_dir,
        cameras=1,
        sections={"daemon": {"watchdog": MIN_WATCHDOG}, "stitch": {"enabled": False}},
        source=str(sdp),
        kind="file",
        size=list(RTP_SIZE),
        fps=25.0,
        read_timeout=0.5,
        connect_timeout=0.5,
    )
    name = grabber_name("cam0")
    # a local file may name only local files unless the FFmpeg protocol whitelist says otherwise
    env = {"OPENCV_FFMPEG_CAPTURE_OPTIONS": "protocol_whitelist;file,udp,rtp"}
    with rtp_camera(port, sdp) as camera:
        d = Daemon(["-c", str(config)], cwd=tmp_path, log=tmp_path / "daemon.log", env=env)
        daemons.append(d)
        old = wait_running(d, run_dir, [name])[name]
        with Subscriber("cam0", endpoint=f"ipc://{run_dir}/cam-cam0.sock") as sub:
            read_until(sub, lambda frame: True, 30, "frames from the RTP camera")
            camera.kill()  # the camera stops sending: the next read blocks in FFmpeg
            bound = call_limit(0.5, 1 / 25) + MIN_WATCHDOG + STOP_TIMEOUT + 15  # self-paced: one frame more
            hung = wait_for(
                lambda: (entry := d.state(run_dir)["children"][name])["state"] == HUNG and entry,
                bound,
                interval=0.1,
                message="the grabber shown hung",
            )
            assert re.match(r"unhealthy for .*: cam0: the capture thread has been inside one source read", hung["hung"])
            with rtp_camera(port, sdp):  # the camera is back

                def restarted() -> Any:
                    entry = d.state(run_dir)["children"][name]
                    return entry["state"] == RUNNING and entry["pid"] != old["pid"] and entry

                entry = wait_for(restarted, RESTARTED_WITHIN, interval=0.1, message="the grabber restarted")
                back = time.time_ns()
                frame = read_until(sub, lambda f: f.capture_ns > back, 30, "frames from the restarted grabber")
                assert frame.image.shape == (RTP_SIZE[1], RTP_SIZE[0], 3)
    assert (entry["restarts"], entry["hangs"]) == (1, 1), entry
    assert gone(old["pid"])
    d.terminate()
    log = (tmp_path / "daemon.log").read_text()
    assert d.proc.returncode == 0, log
    assert f"{name} (pid {old['pid']}) is hung: unhealthy for" in log, log
    assert "Traceback" not in log, log


# ---------------------------------------------------------------------------------------------
# when the watchdog must not fire


def test_watchdog_0_leaves_a_stopped_child_alone(tmp_path: Path, daemons: list[Daemon]) -> None:
    """``daemon.watchdog = 0`` turns the watchdog off: a grabber SIGSTOPped for twice the shortest
    watchdog is neither reported nor restarted, and serves again once continued. Guards the
    off switch (someone debugging a child with a debugger, or a platform where it misfires)."""
    run_dir = tmp_path / "run"
    config = write_config(
        tmp_path / "z.toml", run_dir, cameras=1, sections={"daemon": {"watchdog": 0}, "stitch": {"enabled": False}}
    )
    d = Daemon(["-c", str(config)], cwd=tmp_path, log=tmp_path / "daemon.log")
    daemons.append(d)
    name = grabber_name("cam0")
    pid = wait_running(d, run_dir, [name])[name]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        until = time.monotonic() + 2 * MIN_WATCHDOG
        while time.monotonic() < until:
            entry = d.state(run_dir)["children"][name]
            assert (entry["state"], entry["pid"], entry["restarts"], entry["hangs"]) == (RUNNING, pid, 0, 0), entry
            time.sleep(0.2)
    finally:
        os.kill(pid, signal.SIGCONT)
    with Subscriber("cam0", endpoint=f"ipc://{run_dir}/cam-cam0.sock") as sub:
        read_until(sub, lambda frame: True, 20, "frames from the continued grabber")
    assert "hung" not in (tmp_path / "daemon.log").read_text()


#: how long the idle test watches once every camera is asleep, in watchdog periods. Every process
#: beats once a HEARTBEAT_INTERVAL (1 s) from its main loop, asleep or not, so an idle loop that
#: slept past the watchdog would be reported within the first period; five leave room for that.
IDLE_PERIODS = 5


@pytest.mark.slow
def test_watchdog_never_fires_during_a_slow_start_or_while_idle(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A rig with a large panorama (two cameras warped to 8000x3000 each: building the remap tables
    takes the stitcher several seconds, longer than the watchdog) starts with the shortest watchdog
    without any child being reported, then idles (cameras asleep, nobody watching, every process
    only publishing its status) for five watchdog periods: nothing is ever reported hung or
    restarted. Guards against start-up counted as a hang, and against a healthy idle process whose
    loop sleeps longer than the watchdog allows."""
    run_dir = tmp_path / "run"
    config = write_config(
        tmp_path / "z.toml",
        run_dir,
        http=True,
        sections={"daemon": {"watchdog": MIN_WATCHDOG, "log_level": "debug"}},
        perspective={"src": [[0, 0], [0, 480], [640, 480], [640, 0]], "width": 8000, "height": 3000},
        crop={"front": 0, "back": 8000},
    )
    d = Daemon(["-c", str(config)], cwd=tmp_path, log=tmp_path / "daemon.log")
    daemons.append(d)
    log = tmp_path / "daemon.log"
    wait_running(d, run_dir, CHILDREN, timeout=60)
    first = wait_for(
        lambda: re.search(r"stitcher: first heartbeat ([0-9.]+) s after its start", log.read_text()),
        60,
        interval=0.2,
        message="the stitcher's first heartbeat",
    )
    assert float(first.group(1)) > MIN_WATCHDOG, f"the start was not slow: {first.group(0)}"

    def asleep(found: dict[str, dict[str, Any]]) -> None:
        assert {found[cam]["state"] for cam in ("cam0", "cam1")} == {"asleep"}, found

    # idle from here: every camera asleep (a status published after this call says so)
    bus_status(load_config(config), asleep, timeout=30)
    until = time.monotonic() + IDLE_PERIODS * MIN_WATCHDOG
    while time.monotonic() < until:
        table = d.state(run_dir)["children"]
        assert all((e["state"], e["restarts"], e["hangs"]) == (RUNNING, 0, 0) for e in table.values()), table
        time.sleep(1.0)
    bus_status(load_config(config), asleep)
    table = d.state(run_dir)["children"]
    assert all((e["state"], e["restarts"], e["hangs"]) == (RUNNING, 0, 0) for e in table.values()), table
    assert " is hung" not in log.read_text()
