"""A rig split over two daemons with CURVE on, as on two hosts: real daemons, real tcp, loopback only.

One `--role grabbers` daemon (module-wide) publishes four synthetic cameras on tcp 127.0.0.1
ports; tests start a `--role stitcher,bridge` daemon on the same config file, or consumers of
their own, against it. The config's `key_dir` is relative, and the daemons run from another
directory, so the keys are found beside the config file.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import simplejpeg
import zmq
import zmq.auth

from tests.helpers import Daemon, cli, free_port, read_stream_parts, reader_process, wait_for
from zmqcam import Subscriber
from zmqcam.bus import curve, protocol, sockets
from zmqcam.bus.status import collect_status
from zmqcam.config import Config, default_config_dict, load_config
from zmqcam.config.toml import render_toml

CAMERAS = ["cam0", "cam1", "cam2", "cam3"]


@dataclass
class Rig:
    config_path: Path
    config: Config
    keys: Path
    #: the working directory of every daemon: not the config's directory
    elsewhere: Path
    run_b: Path
    grabbers: Daemon

    def camera_status(self, name: str) -> dict[str, Any] | None:
        return collect_status(self.config, timeout=2.0, streams=[name]).get(name)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("remote")
    keys = root / "keys"
    for args in ([str(keys)], [str(keys), "--client", "laptop"]):
        made = cli("keygen", *args)
        assert made.returncode == 0, made.stderr
    data = default_config_dict(str(root / "a"))
    for cam in data["camera"]:
        cam.update(fps=10.0, idle_timeout=1.0, endpoint=f"tcp://127.0.0.1:{free_port()}")
    data["stitch"] = {"extra_endpoints": [f"tcp://127.0.0.1:{free_port()}"]}
    data["http"] = {"port": free_port()}
    data["curve"] = {"key_dir": "keys"}
    config_path = root / "rig.toml"
    config_path.write_text(render_toml(data))
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    grabbers = Daemon(["-c", str(config_path), "--role", "grabbers"], cwd=elsewhere)
    rig = Rig(config_path, load_config(config_path), keys, elsewhere, root / "b", grabbers)
    try:
        wait_for(lambda: all(rig.camera_status(c) for c in CAMERAS), 40, interval=0.2, message="4 grabbers over CURVE")
        yield rig
    finally:
        _, err = grabbers.terminate()
    assert "Traceback" not in err, err


def _states(rig: Rig) -> dict[str, str]:
    found = collect_status(rig.config, timeout=2.0, streams=CAMERAS)
    return {name: found[name]["state"] if name in found else "no reply" for name in CAMERAS}


def _http_ok(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/status", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _watch(port: int, stop: threading.Event) -> None:
    import requests

    with requests.get(f"http://127.0.0.1:{port}/stream", stream=True, timeout=30) as r:
        for _ in r.iter_content(chunk_size=65536):
            if stop.is_set():
                return


@pytest.mark.slow
def test_split_rig_serves_the_stitched_panorama_over_curve(rig: Rig) -> None:
    """`--role stitcher,bridge` on the same config as the `--role grabbers` daemon: it reads the
    cameras over CURVE tcp, /stream serves the 2347x250 panorama with every camera live, its own
    ipc consumers need no keys, `status` on each daemon shows what that one reaches, and stopping
    it releases the cameras of the other (guards --role, camera/stitch connect, CURVE clients)."""
    config = rig.config
    port = config.http.port
    assert set(_states(rig).values()) == {"asleep"}, "cameras awake before anyone asked"
    viewers = Daemon(
        ["-c", str(rig.config_path), "--role", "stitcher,bridge", "--run-dir", str(rig.run_b)], cwd=rig.elsewhere
    )
    stop = threading.Event()
    watcher: threading.Thread | None = None
    try:
        wait_for(lambda: _http_ok(port), 40, interval=0.2, message="bridge of the second daemon")
        for jpeg in read_stream_parts(port, 2):
            assert simplejpeg.decode_jpeg_header(jpeg)[:2] == (250, 2347)
        watcher = threading.Thread(target=_watch, args=(port, stop), daemon=True)
        watcher.start()

        def all_live() -> Any:
            st = cli("status", "-c", str(rig.config_path), "--run-dir", str(rig.run_b), "--json", cwd=rig.elsewhere)
            if st.returncode != 0:
                return False
            status = json.loads(st.stdout)
            pano = status["streams"].get("pano", {})
            cams = [status["streams"].get(c, {}).get("state") for c in CAMERAS]
            live = cams == ["live"] * 4 and {v["state"] for v in pano.get("cameras", {}).values()} == {"live"}
            return live and status

        status = wait_for(all_live, 40, interval=0.5, message="4 live cameras in the second daemon's status")
        assert status["role"] == "stitcher,bridge" and status["http"] is not None
        assert sorted(status["daemon"]["children"]) == ["bridge", "stitcher"]

        # the panorama is bound on ipc and tcp: ipc consumers need no keys, tcp ones do
        with Subscriber("pano", kind="jpeg", endpoint=f"ipc://{rig.run_b}/pano.sock") as sub:
            ok, frame = sub.read(timeout=10)
            assert ok and frame is not None and (frame.width, frame.height) == (2347, 250)
        pano_tcp = config.stitch.extra_endpoints[0]
        with Subscriber("pano", kind="jpeg", endpoint=pano_tcp, config=rig.config_path) as sub:  # the config's keys
            assert sub.read(timeout=10)[0]
        with Subscriber("pano", kind="jpeg", endpoint=pano_tcp) as sub:  # no keys
            assert sub.read(timeout=2) == (False, None)

        # the grabbers' daemon reports its cameras only: no stitcher, no bridge expected there
        st = cli("status", "-c", str(rig.config_path), cwd=rig.elsewhere)
        assert st.returncode == 0, st.stderr
        assert "role grabbers" in st.stdout and st.stdout.count(" live ") == 4
        assert "pano" not in st.stdout and "http clients" not in st.stdout
    finally:
        stop.set()
        if watcher is not None:
            watcher.join(10)
        out, err = viewers.terminate()
    assert viewers.proc.returncode == 0 and "Traceback" not in err, err
    assert f"reading camera cam0 from {config.consumer_endpoint('cam0')} (CURVE)" in out
    assert rig.grabbers.proc.poll() is None, "stopping one daemon disturbed the other"
    # the second daemon's stitcher is gone, so nobody wants frames: the cameras sleep (idle_timeout 1 s)
    wait_for(lambda: set(_states(rig).values()) == {"asleep"}, 20, interval=0.3, message="cameras released")


def test_subscriber_without_an_allowed_key_gets_nothing_and_wakes_nothing(rig: Rig, tmp_path: Path) -> None:
    """Over tcp with CURVE on, a SUB with no keys or with keys not in authorized/ receives nothing
    and is no demand (the camera stays asleep); a program with a `keygen --client` key, or one
    built from the rig's config, gets frames (guards the ZAP authenticator in the grabbers)."""
    endpoint = rig.config.consumer_endpoint("cam0")
    zmq.auth.create_certificates(tmp_path, "stranger")
    public, secret = zmq.auth.load_certificate(tmp_path / "stranger.key_secret")
    assert secret is not None
    server_public, _ = zmq.auth.load_certificate(rig.keys / "server.key")
    ctx: zmq.Context[Any] = zmq.Context()
    topics = [protocol.topic("cam0", protocol.JPEG)]
    socks = [
        sockets.make_subscriber(ctx, [endpoint], topics),
        sockets.make_subscriber(ctx, [endpoint], topics, curve=curve.ClientKeys(public, secret, server_public)),
    ]
    try:
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            assert not any(s.poll(100) for s in socks), "a subscriber without an allowed key got a message"
            status = rig.camera_status("cam0")
            assert status is not None and status["state"] == "asleep" and status["subscribers"]["jpeg"] == 0
    finally:
        for s in socks:
            s.close(linger=0)
        ctx.term()
    laptop = {"server_key": rig.keys / "server.key", "client_key": rig.keys / "laptop.key_secret"}
    with Subscriber("cam0", kind="jpeg", endpoint=endpoint, **laptop) as sub:
        ok, frame = sub.read(timeout=15)
        assert ok and frame is not None and (frame.width, frame.height) == (640, 480)
    with Subscriber("cam0", kind="jpeg", config=rig.config_path) as sub:
        assert sub.read(timeout=15)[0]


def _process_state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_vanished_remote_subscriber_stops_counting_as_demand(rig: Rig) -> None:
    """A tcp subscriber whose process freezes without closing its connection (SIGSTOP: the kernel
    keeps the TCP connection, nobody answers ZMTP pings) is dropped by the grabber's heartbeats
    within a few seconds: its demand goes and the camera sleeps (guards sockets.HEARTBEAT_*)."""
    endpoint = rig.config.consumer_endpoint("cam1")
    keys = {"server_key": rig.keys / "server.key", "client_key": rig.keys / "laptop.key_secret"}
    with reader_process("cam1", kind="jpeg", endpoint=endpoint, **keys) as proc:
        status = rig.camera_status("cam1")
        assert status is not None and status["subscribers"]["jpeg"] == 1 and status["state"] == "live"
        os.kill(proc.pid, signal.SIGSTOP)

        def released() -> bool:
            status = rig.camera_status("cam1")
            return status is not None and status["subscribers"]["jpeg"] == 0

        # heartbeat timeout 3 s; status is published once a second
        wait_for(released, 10, interval=0.2, message="demand of the frozen subscriber released")
        assert _process_state(proc.pid) == "T", "the subscriber exited: this proves nothing about heartbeats"
        wait_for(lambda: _states(rig)["cam1"] == "asleep", 10, interval=0.3, message="cam1 asleep")
