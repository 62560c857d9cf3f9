"""``[[publish]]`` end to end: one real daemon (two synthetic cameras, the stitcher encoding ``pano
h264``, the bridge) pushing to a real RTSP server in record mode (``ffmpeg -rtsp_flags listen``) and
to a port where no server listens. The server decodes the panorama; killed and started again on the
same port it gets the stream again; stalled (SIGSTOP: alive, reading nothing) it costs a restart of
its target's process and nothing else; the absent one is reported in one line while the daemon
serves everything else."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import Daemon, bus_status, cli, free_port, wait_for, write_config
from tests.helpers.media_server import RtspServer
from zmqcam.config import Config, load_config
from zmqcam.names import LOOPBACK
from zmqcam.video import coded_size

#: seconds a write may hang before the target is unhealthy; the watchdog restarts it 3 s after that
TIMEOUT = 1.0
WATCHDOG = 3.0


@dataclass
class Rig:
    daemon: Daemon
    config_path: Path
    run_dir: Path
    port: int  # the bridge's
    server: RtspServer  # the "lan" target's server, replaced by tests that kill it
    server_port: int
    config: Config

    def children(self) -> dict[str, Any]:
        children: dict[str, Any] = self.daemon.state(self.run_dir).get("children", {})
        return children

    def target(self, name: str) -> dict[str, Any]:
        """What the target's process last reported (the supervisor's process table)."""
        report: dict[str, Any] = self.children().get(f"publish:{name}", {}).get("report", {})
        return report

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = requests.get(f"http://{LOOPBACK}:{self.port}/status", timeout=10).json()
        return body


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    tmp = Path(tempfile.mkdtemp(prefix="zc-pub-", dir="/tmp"))
    run_dir = tmp / "run"
    server_port, away_port = free_port(), free_port()
    server = RtspServer(server_port)
    # lossless H.264 (crf 0): big access units fill the stalled server's socket buffers sooner
    sections: dict[str, dict[str, Any]] = {"daemon": {"watchdog": WATCHDOG}, "stitch": {"h264": {"crf": 0}}}
    path = write_config(tmp / "zmqcam.toml", run_dir, cameras=2, http=True, sections=sections)
    with path.open("a") as toml:
        toml.write(
            f'\n[[publish]]\nname = "lan"\nurl = "{server.url}"\ntimeout = {TIMEOUT}\n'
            f'\n[[publish]]\nname = "away"\nurl = "rtsp://127.0.0.1:{away_port}/nobody"\n'
        )
    config = load_config(path)
    daemon = Daemon(["-c", str(path)], cwd=tmp, log=tmp / "daemon.log")
    rig = Rig(daemon, path, run_dir, config.http.port, server, server_port, config)
    try:
        wait_for(lambda: "publish:lan" in rig.children(), 30, message="the daemon's process table")
        yield rig
    finally:
        daemon.terminate()
        rig.server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_publish_target_pushes_the_panorama_to_an_rtsp_server(rig: Rig) -> None:
    """The RTSP server receives H.264 of the panorama's coded size (its width padded to even) and
    decodes moving pictures from it; the target shows live in daemon.json, ``zmqcam-daemon status``
    and the bridge's /status, counting what it sent."""
    wait_for(lambda: rig.server.frames >= 10, 60, message="the RTSP server to decode 10 frames")
    assert rig.server.codec == "h264"
    assert rig.server.size == coded_size(*rig.config.pano_size, "pad")
    picture = rig.server.last_frame
    assert picture is not None and picture.std() > 20, "a picture of the scene, not a flat card"
    report = wait_for(lambda: rig.target("lan").get("sent", 0) >= 10 and rig.target("lan"), 10)
    assert report["state"] == "live" and report["connects"] == 1 and report["url"] == rig.server.url
    shown = cli("status", "-c", str(rig.config_path))
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("lan "))
    assert " live " in line and rig.server.url in line
    lan = wait_for(lambda: rig.status()["publish"].get("lan", {}).get("state") == "live" and rig.status(), 10)
    assert lan["publish"]["lan"]["sent"] >= 10


def test_publish_targets_keep_the_cameras_awake_with_no_viewer(rig: Rig) -> None:
    """With no viewer at all, long past the cameras' 1 s idle_timeout, both targets (the one whose
    server is away too) subscribe to pano h264, so the stitcher encodes and every camera stays live."""

    def awake(statuses: dict[str, dict[str, Any]]) -> None:
        assert statuses["pano"]["subscribers"]["h264"] == 2, statuses["pano"]["subscribers"]
        assert statuses["pano"]["subscribers"]["jpeg"] == 0, "no viewer"
        for cam in rig.config.camera:
            assert statuses[cam.name]["state"] == "live", statuses[cam.name]

    wait_for(lambda: rig.target("lan").get("sent", 0) >= 30, 60, message="3 s of pushing, no viewer")
    bus_status(rig.config, awake)


def test_a_server_killed_and_started_again_gets_the_stream_again(rig: Rig) -> None:
    """The server killed, the target counts the failure and backs off; a new server on the same port
    is connected to again (a second connect) and decodes frames again."""
    wait_for(lambda: rig.target("lan").get("state") == "live", 60, message="the push to be live")
    rig.server.kill()
    wait_for(lambda: rig.target("lan").get("failures", 0) >= 1, 30, message="the target to notice the server left")
    rig.server = RtspServer(rig.server_port)
    wait_for(lambda: rig.server.frames >= 10, 60, message="the new server to decode 10 frames")
    report = wait_for(lambda: rig.target("lan").get("state") == "live" and rig.target("lan"), 10)
    assert report["connects"] >= 2 and report["failures"] >= 1


def test_a_target_whose_server_is_away_is_one_line_and_the_rest_serve(rig: Rig) -> None:
    """No server at the "away" target's port: it backs off and retries, its last_error one line
    naming the refusal, shown by ``zmqcam-daemon status``, /status and /metrics; meanwhile the
    bridge serves the panorama and the other target stays live."""
    report = wait_for(lambda: rig.target("away").get("failures", 0) >= 2 and rig.target("away"), 60)
    assert report["state"] in ("backoff", "connecting") and report["connects"] == 0
    assert "refused" in report["last_error"].lower() and "\n" not in report["last_error"], report["last_error"]
    shown = cli("status", "-c", str(rig.config_path)).stdout
    assert any(line.strip().startswith("last error:") and "refused" in line.lower() for line in shown.splitlines())
    away = rig.status()["publish"]["away"]
    assert away["failures"] >= 2 and "refused" in away["last_error"].lower()
    metrics = requests.get(f"http://{LOOPBACK}:{rig.port}/metrics", timeout=10).text
    assert 'zmqcam_publish_failures_total{target="away"}' in metrics
    assert 'zmqcam_publish_live{target="lan"}' in metrics
    snapshot = requests.get(f"http://{LOOPBACK}:{rig.port}/snapshot.jpg", timeout=30)
    assert snapshot.status_code == 200 and snapshot.content.startswith(b"\xff\xd8")
    assert rig.children()["publish:away"]["state"] == "running", "an absent server is no crash"


def test_reload_restarts_only_the_target_whose_entry_changed(rig: Rig) -> None:
    """``zmqcam-daemon reload`` after a config edit: a new target starts, the changed one restarts,
    the unchanged one and the rest of the daemon run on."""
    before = wait_for(lambda: rig.target("lan").get("state") == "live" and rig.children(), 60)
    text = rig.config_path.read_text().replace("/nobody", "/elsewhere")
    rig.config_path.write_text(text + f'\n[[publish]]\nname = "late"\nurl = "rtmp://127.0.0.1:{free_port()}/a/b"\n')
    assert cli("reload", "-c", str(rig.config_path)).returncode == 0
    after = wait_for(lambda: "publish:late" in rig.children() and rig.children(), 30, message="the reload")
    assert after["publish:away"]["pid"] != before["publish:away"]["pid"]
    kept = [name for name in before if name != "publish:away"]
    assert {n: after[n]["pid"] for n in kept} == {n: before[n]["pid"] for n in kept}
    report = wait_for(lambda: rig.target("away").get("url", "").endswith("/elsewhere") and rig.target("away"), 30)
    assert report["state"] != "live"
    wait_for(lambda: rig.target("late").get("failures", 0) >= 1, 30, message="the new rtmp target to try")


@pytest.mark.slow  # about 25 s: the kernel's socket buffers fill before a write blocks
def test_a_stalled_server_costs_its_target_a_restart_and_nothing_else(rig: Rig) -> None:
    """A server that stops reading without closing (SIGSTOP) blocks the push's writes for minutes;
    the target reports itself unhealthy once a write is stuck beyond its timeout, the watchdog
    restarts that process only, and the restarted target pushes to a new server again."""
    wait_for(lambda: rig.target("lan").get("state") == "live", 60, message="the push to be live")
    before = {name: child["pid"] for name, child in rig.children().items()}
    rig.server.pause()
    hung = wait_for(lambda: rig.children()["publish:lan"]["hangs"] >= 1 and rig.children(), 120, interval=0.5)
    assert "stuck" in (hung["publish:lan"]["hung"] or ""), hung["publish:lan"]
    others = {name: child["pid"] for name, child in hung.items() if name != "publish:lan"}
    assert others == {name: pid for name, pid in before.items() if name != "publish:lan"}, "the rest ran on"
    rig.server.kill()
    rig.server = RtspServer(rig.server_port)
    wait_for(lambda: rig.server.frames >= 5, 60, message="the restarted target to push again")
