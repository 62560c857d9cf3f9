"""CURVE on tcp endpoints, without daemons: the socket rules, the key files, keygen and the roles.

The daemon-level tests (two daemons, CURVE on, a split rig) are in test_remote.py.
"""

from __future__ import annotations

import re
import socket
import stat
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simplejpeg
import zmq
import zmq.auth

from tests.helpers import cli, free_port, wait_for
from zmqcam.bus import curve, protocol, sockets
from zmqcam.config import ConfigError, default_config_dict, from_dict, load_config
from zmqcam.config.keyfiles import key_dir_problems
from zmqcam.config.toml import render_toml
from zmqcam.errors import StartError
from zmqcam.supervisor.roles import check_upstreams
from zmqcam.supervisor.run_dir import check_ports, remove_sockets

_JPEG = simplejpeg.encode_jpeg(np.zeros((8, 8, 3), dtype=np.uint8), colorspace="BGR")


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A key directory made by the real ``keygen`` code, plus one remote client "laptop"."""
    key_dir = tmp_path / "keys"
    curve.keygen(key_dir)
    curve.add_client(key_dir, "laptop")
    return key_dir


def _client(key_dir: Path, name: str) -> curve.ClientKeys:
    return curve.load_client_keys(key_dir / "server.key", key_dir / f"{name}.key_secret")


def _receives(sock: zmq.Socket[Any], pub: zmq.Socket[Any], demand: sockets.Demand, seconds: float) -> bool:
    """Publish for up to ``seconds`` (feeding ``demand``) and report whether ``sock`` got a message."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sockets.drain_subscriptions(pub, demand)
        pub.send_multipart([protocol.topic("cam0", protocol.JPEG), b"x"])
        if sock.poll(50):
            return True
    return False


def test_ipc_stays_null_while_tcp_requires_an_authorized_key(ctx: zmq.Context[Any], keys: Path, run_dir: Path) -> None:
    """One XPUB bound on ipc and tcp with CURVE, as the stitcher binds its panorama: an ipc consumer
    needs no keys (guards the bind-order rule in sockets.make_publisher: set CURVE before the ipc bind
    and local consumers lose every frame), a tcp consumer without a key or with an unknown one gets
    nothing and is not demand, and an authorized one (keygen --client) gets frames."""
    server = curve.ServerKeys(*_server(keys), keys / "authorized")
    auth = curve.start_authenticator(ctx, server)
    ipc = f"ipc://{run_dir}/pano.sock"
    tcp = f"tcp://127.0.0.1:{free_port()}"
    pub = sockets.make_publisher(ctx, [tcp, ipc], curve=server)
    topic = [protocol.topic("cam0", protocol.JPEG)]
    stranger_dir = keys.parent / "stranger"
    stranger_dir.mkdir()
    _, stranger_secret = zmq.auth.create_certificates(stranger_dir, "stranger")
    stranger_public, stranger_key = zmq.auth.load_certificate(stranger_secret)
    assert stranger_key is not None
    subs: dict[str, zmq.Socket[Any]] = {}
    try:
        demand = sockets.Demand()
        subs["tcp without keys"] = sockets.make_subscriber(ctx, [tcp], topic)
        subs["tcp, unknown key"] = sockets.make_subscriber(
            ctx, [tcp], topic, curve=curve.ClientKeys(stranger_public, stranger_key, _server(keys)[0])
        )
        for name, sock in subs.items():
            assert not _receives(sock, pub, demand, 1.5), f"{name} received a frame"
        assert demand.subscribers(topic[0]) == 0, "a refused subscriber counted as demand"

        subs["ipc without keys"] = sockets.make_subscriber(ctx, [ipc], topic)
        assert _receives(subs["ipc without keys"], pub, demand, 5), "ipc consumer got nothing: ipc is not NULL"
        subs["tcp, authorized"] = sockets.make_subscriber(ctx, [tcp], topic, curve=_client(keys, "laptop"))
        assert _receives(subs["tcp, authorized"], pub, demand, 5), "authorized tcp consumer got nothing"
        # one consumer with keys reaching ipc and tcp publishers, as the stitcher reads its grabbers
        subs["both"] = sockets.make_subscriber(ctx, [tcp, ipc], topic, curve=_client(keys, "client"))
        deadline = time.monotonic() + 5
        while demand.subscribers(topic[0]) < 4 and time.monotonic() < deadline:
            _receives(subs["both"], pub, demand, 0.1)
        assert demand.subscribers(topic[0]) == 4  # ipc, laptop, and both connections of "both"
    finally:
        for sock in subs.values():
            sock.close(linger=0)
        pub.close(linger=0)
        curve.stop_authenticator(auth)


def _server(key_dir: Path) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(key_dir / "server.key_secret")
    assert secret is not None
    return public, secret


def test_keys_authorized_while_running_apply_to_the_next_connection(
    ctx: zmq.Context[Any], keys: Path, run_dir: Path
) -> None:
    """authorized/ is re-read when it changes: `keygen --client` for a running rig works without a
    restart, and a key removed from authorized/ is refused from the next connection on."""
    server = curve.ServerKeys(*_server(keys), keys / "authorized")
    auth = curve.start_authenticator(ctx, server)
    tcp = f"tcp://127.0.0.1:{free_port()}"
    pub = sockets.make_publisher(ctx, [tcp], curve=server)
    topic = [protocol.topic("cam0", protocol.JPEG)]
    demand = sockets.Demand()
    socks = []
    try:
        curve.add_client(keys, "late")
        socks.append(sockets.make_subscriber(ctx, [tcp], topic, curve=_client(keys, "late")))
        assert _receives(socks[-1], pub, demand, 5), "a client authorized after the start was refused"
        (keys / "authorized" / "laptop.key").unlink()
        socks.append(sockets.make_subscriber(ctx, [tcp], topic, curve=_client(keys, "laptop")))
        assert not _receives(socks[-1], pub, demand, 1.5), "a key removed from authorized/ still got in"
    finally:
        for sock in socks:
            sock.close(linger=0)
        pub.close(linger=0)
        curve.stop_authenticator(auth)


def test_a_refused_subscriber_says_why(
    ctx: zmq.Context[Any], keys: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Subscriber refused by a CURVE publisher (unknown key, or no keys at all) counts it in
    `refused` and logs one line saying what to fix, instead of silently receiving nothing; an
    authorized one is not refused and gets frames."""
    from zmqcam import Subscriber

    server = curve.ServerKeys(*_server(keys), keys / "authorized")
    auth = curve.start_authenticator(ctx, server)
    tcp = f"tcp://127.0.0.1:{free_port()}"
    pub = sockets.make_publisher(ctx, [tcp], curve=server)
    zmq.auth.create_certificates(tmp_path, "stranger")
    (tmp_path / "stranger.key_secret").chmod(0o600)
    subs = []
    try:
        stranger = Subscriber(
            "cam0", kind="jpeg", endpoint=tcp, context=ctx, server_key=keys / "server.key",
            client_key=tmp_path / "stranger.key_secret",
        )  # fmt: skip
        subs.append(stranger)
        no_keys = Subscriber("cam0", kind="jpeg", endpoint=tcp, context=ctx)
        subs.append(no_keys)
        wait_for(lambda: stranger.refused and no_keys.refused, 10, message="refused handshakes")
        warnings = [r.getMessage() for r in caplog.records if r.name == "zmqcam.client"]
        assert f"cam0 {tcp}: the publisher refused our CURVE key" in " ".join(warnings)
        assert "the publisher probably uses CURVE; pass server_key and client_key" in " ".join(warnings)
        laptop = Subscriber(
            "cam0", kind="jpeg", endpoint=tcp, context=ctx, server_key=keys / "server.key",
            client_key=keys / "laptop.key_secret",
        )  # fmt: skip
        subs.append(laptop)
        demand = sockets.Demand()
        deadline = time.monotonic() + 10
        while not laptop.received and time.monotonic() < deadline:
            sockets.drain_subscriptions(pub, demand)
            protocol.send_frame(pub, "cam0", protocol.JPEG, 1, time.time_ns(), _JPEG, 8, 8)
            time.sleep(0.05)
        assert laptop.received and laptop.refused == 0
    finally:
        for sub in subs:
            sub.close()
        pub.close(linger=0)
        curve.stop_authenticator(auth)


# ---------------------------------------------------------------------------------------------
# config


def _write(path: Path, curve: dict[str, Any] | None = None, **sections: dict[str, Any]) -> Path:
    data = default_config_dict(str(path.parent / "run"))
    data["camera"] = data["camera"][:1]
    if curve is not None:
        data["curve"] = curve
    data.update(sections)
    path.write_text(render_toml(data))
    return path


def test_relative_key_dir_is_relative_to_the_config_file(tmp_path: Path, keys: Path, monkeypatch: Any) -> None:
    """`key_dir = "keys"` means the keys beside the config, whatever the working directory (the
    daemon's children get the absolute path)."""
    config_path = _write(tmp_path / "z.toml", {"key_dir": "keys"})
    monkeypatch.chdir("/")
    config = load_config(config_path)
    assert config.curve.key_dir == str(keys)
    assert curve.client_keys(config) == _client(keys, "client")


def test_bad_key_dir_and_key_files_are_one_line_config_errors(tmp_path: Path, keys: Path) -> None:
    """A missing key dir, a missing or foreign key file, an open secret and an empty authorized/
    are each one line naming the config file, curve.key_dir, its value and the key file."""
    config_path = _write(tmp_path / "z.toml", {"key_dir": "nowhere"})
    with pytest.raises(ConfigError) as err:
        load_config(config_path)
    assert err.value.lines == [
        f"{config_path}: curve.key_dir: 'nowhere': '{tmp_path / 'nowhere'}': no such directory "
        "(make one with: zmqcam-daemon keygen DIR)"
    ]

    config_path = _write(tmp_path / "z.toml", {"key_dir": str(keys)})
    (keys / "server.key_secret").unlink()
    (keys / "client.key_secret").chmod(0o644)
    (keys / "server.key").write_text("not a key\n")
    for key in (keys / "authorized").glob("*.key"):
        key.unlink()
    with pytest.raises(ConfigError) as err:
        load_config(config_path)
    prefix = f"{config_path}: curve.key_dir: '{keys}': "
    assert err.value.lines == [
        prefix + f"'{keys / 'server.key'}': no public-key in it (not a key file made by zmqcam-daemon keygen)",
        prefix + f"'{keys / 'server.key_secret'}': cannot read: No such file or directory",
        prefix + f"'{keys / 'client.key_secret'}': secret key readable by other users (mode 644; chmod 600 it)",
        prefix + f"'{keys / 'authorized'}': no *.key file in it: nobody could subscribe",
    ]
    # the daemon refuses to start on it with the same lines, no traceback
    r = cli("start", "-c", str(config_path), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == err.value.lines


def test_connect_endpoints_are_validated(tmp_path: Path) -> None:
    """camera[].connect and stitch.connect are checked like endpoints, and a wildcard address (a
    bind address pasted where the publisher's host belongs) is refused."""
    data = default_config_dict(str(tmp_path))
    data["camera"] = data["camera"][:2]
    data["camera"][0]["connect"] = "tcp://0.0.0.0:5601"
    data["camera"][1]["connect"] = "udp://host:1"
    data["stitch"] = {"connect": "tcp://stitch-host"}
    with pytest.raises(ConfigError) as err:
        from_dict(data, label="rig.toml")
    assert err.value.lines == [
        "rig.toml: camera[0].connect: 'tcp://0.0.0.0:5601': consumers cannot connect to a wildcard address: "
        "name the publisher's host",
        "rig.toml: camera[1].connect: 'udp://host:1': must be ipc://PATH or tcp://HOST:PORT",
        "rig.toml: stitch.connect: 'tcp://stitch-host': must be ipc://PATH or tcp://HOST:PORT",
    ]


def test_consumers_connect_where_connect_says(tmp_path: Path) -> None:
    """One rule for every consumer: `connect` when set, else the bound endpoint with a wildcard
    host made loopback."""
    data = default_config_dict(str(tmp_path))
    data["camera"] = data["camera"][:2]
    data["camera"][0].update(endpoint="tcp://0.0.0.0:5601", connect="tcp://grabber-host:5601")
    data["camera"][1].update(endpoint="tcp://*:5602")
    data["stitch"] = {"extra_endpoints": ["tcp://0.0.0.0:5600"], "connect": "tcp://stitch-host:5600"}
    config = from_dict(data)
    assert config.consumer_endpoint("cam0") == "tcp://grabber-host:5601"
    assert config.consumer_endpoint("cam1") == "tcp://127.0.0.1:5602"
    assert config.consumer_endpoint("pano") == "tcp://stitch-host:5600"
    assert from_dict(default_config_dict(str(tmp_path))).consumer_endpoint("pano") == f"ipc://{tmp_path}/pano.sock"


# ---------------------------------------------------------------------------------------------
# keygen


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keygen_makes_private_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    """keygen: dirs 0700, secrets 0600, the daemon's client key authorized; a second keygen (or a
    --client name that exists) changes nothing and says why in one line."""
    key_dir = tmp_path / "keys"
    r = cli("keygen", str(key_dir), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f'key_dir = "{key_dir}"' in r.stdout
    assert _mode(key_dir) == 0o700 and _mode(key_dir / "authorized") == 0o700
    assert _mode(key_dir / "server.key_secret") == 0o600 and _mode(key_dir / "client.key_secret") == 0o600
    assert (key_dir / "authorized" / "client.key").read_bytes() == (key_dir / "client.key").read_bytes()
    assert not key_dir_problems(key_dir)
    before = {p.name: p.read_bytes() for p in key_dir.iterdir() if p.is_file()}

    again = cli("keygen", str(key_dir), cwd=tmp_path)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    assert again.stderr.strip() == (
        f"zmqcam-daemon: keygen: {key_dir / 'server.key'} exists; "
        "refusing to overwrite keys (remove them to make new ones)"
    )
    assert {p.name: p.read_bytes() for p in key_dir.iterdir() if p.is_file()} == before

    r = cli("keygen", str(key_dir), "--client", "laptop", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _mode(key_dir / "laptop.key_secret") == 0o600
    assert (key_dir / "authorized" / "laptop.key").read_bytes() == (key_dir / "laptop.key").read_bytes()
    assert 'client_key="laptop.key_secret"' in r.stdout
    secret = (key_dir / "laptop.key_secret").read_bytes()
    again = cli("keygen", str(key_dir), "--client", "laptop", cwd=tmp_path)
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    assert (key_dir / "laptop.key_secret").read_bytes() == secret
    for name in ("server", "Bad Name"):
        bad = cli("keygen", str(key_dir), "--client", name, cwd=tmp_path)
        assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    orphan = cli("keygen", str(tmp_path / "empty"), "--client", "laptop", cwd=tmp_path)
    assert orphan.returncode == 1 and "no rig keys here" in orphan.stderr


def test_remote_program_keys_are_checked_up_front(keys: Path) -> None:
    """Subscriber(server_key=..., client_key=...) with a wrong file says which one, before any
    socket exists; passing only one of the two is refused."""
    from zmqcam import Subscriber

    with pytest.raises(ConfigError) as err:
        Subscriber("pano", endpoint="tcp://127.0.0.1:1", server_key=keys / "server.key", client_key=keys / "laptop.key")
    assert err.value.lines == [f"client_key '{keys / 'laptop.key'}': no secret-key in it (use the .key_secret file)"]
    with pytest.raises(ValueError, match="go together"):
        Subscriber("pano", endpoint="tcp://127.0.0.1:1", server_key=keys / "server.key")


# ---------------------------------------------------------------------------------------------
# roles


def _split_config(tmp_path: Path, grabber_port: int) -> Any:
    data = default_config_dict(str(tmp_path / "run"))
    data["camera"] = data["camera"][:2]
    data["camera"][0]["endpoint"] = f"tcp://127.0.0.1:{grabber_port}"
    data["camera"][1]["endpoint"] = f"ipc://{tmp_path}/shared-cam1.sock"
    data["http"] = {"port": free_port()}
    return from_dict(data)


def test_a_consumer_role_leaves_the_grabbers_endpoints_alone(tmp_path: Path) -> None:
    """A `--role stitcher,bridge` daemon neither probes the grabbers' tcp ports (held by the other
    daemon) nor unlinks their ipc sockets; a `--role grabbers` daemon does both for its own."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = _split_config(tmp_path, taken.getsockname()[1])
        shared = tmp_path / "shared-cam1.sock"
        shared.write_text("")  # stands for the socket the grabbers daemon bound
        (tmp_path / "run").mkdir()
        pano = tmp_path / "run" / "pano.sock"
        pano.write_text("")  # a stale socket of a killed stitcher-role daemon
        check_ports(config, "stitcher,bridge")
        remove_sockets(config, "stitcher,bridge")
        assert shared.exists() and not pano.exists()
        with pytest.raises(StartError, match=re.escape("camera cam0: cannot listen on 127.0.0.1")):
            check_ports(config, "grabbers")
        remove_sockets(config, "grabbers")
        assert not shared.exists()


def test_a_consumer_role_on_ipc_inside_its_own_run_dir_is_refused(tmp_path: Path) -> None:
    """`--role stitcher` on the default (all ipc in run_dir) config could never get a frame: one
    line saying which camera needs a tcp endpoint, exit 1; the grabbers role alone is fine."""
    path = tmp_path / "z.toml"
    data = default_config_dict(str(tmp_path / "run"))
    data["camera"] = data["camera"][:1]
    path.write_text(render_toml(data))
    r = cli("start", "-c", str(path), "--role", "stitcher", cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"zmqcam-daemon: --role stitcher: cam0 is published at ipc://{tmp_path}/run/cam-cam0.sock, inside this "
        "daemon's own run_dir, where no other daemon can bind it; give camera[0] a tcp:// endpoint (and a connect "
        "address) to split the rig"
    )
    check_upstreams(load_config(path), "grabbers")
