"""`zmqcam-daemon` as a user runs it: a real subprocess, real signals, real sockets."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Daemon, child_pids, cli, free_port, read_stream_parts, wait_for, write_config
from zmqcam import Subscriber
from zmqcam.config import default_config_dict
from zmqcam.config.toml import render_toml
from zmqcam.process import EXIT_START_FAILED
from zmqcam.supervisor.supervisor import RESTART_BUDGET, RESTART_WINDOW


def test_start_with_built_in_default_serves_and_stops_cleanly(tmp_path: Path, daemons: list[Daemon]) -> None:
    """The quick start: no config, synthetic rig; /stream delivers panoramas, status shows live
    cameras, SIGTERM ends it within 5 s leaving no process and no socket file."""
    import simplejpeg

    run_dir = tmp_path / "run"
    port = free_port()
    d = Daemon(["--run-dir", str(run_dir), "--port", str(port)], cwd=tmp_path)
    daemons.append(d)
    wait_for(lambda: d.state(run_dir).get("children"), 30, message="daemon state")
    assert d.proc.stdout is not None
    first = d.proc.stdout.readline()
    assert f"http://127.0.0.1:{port}/stream" in first
    assert oct((run_dir).stat().st_mode & 0o777) == "0o700"
    wait_for(lambda: _http_ok(port), 30, message="http bridge")
    parts = read_stream_parts(port, 3)
    for jpeg in parts:
        assert simplejpeg.decode_jpeg_header(jpeg)[:2] == (250, 2347)
    # status while someone watches: cameras live
    import threading

    stop = threading.Event()
    watcher = threading.Thread(target=lambda: _watch(port, stop), daemon=True)
    watcher.start()
    try:

        def live() -> Any:
            st = cli("status", "--run-dir", str(run_dir), "--port", str(port), cwd=tmp_path)
            return st.returncode == 0 and st.stdout.count(" live ") == 4 and st

        st = wait_for(live, 30, interval=0.2, message="4 live cameras in status")
        assert "grabber:cam0" in st.stdout and "stitcher" in st.stdout and "bridge" in st.stdout
    finally:
        stop.set()
        watcher.join(10)
    pid = d.proc.pid
    kids = child_pids(pid)
    assert len(kids) == 6, kids  # 4 grabbers, stitcher, bridge
    t0 = time.monotonic()
    d.terminate()
    assert time.monotonic() - t0 < 5
    assert d.proc.returncode == 0
    assert not [k for k in kids if Path(f"/proc/{k}").exists() and _not_zombie(k)]
    assert not list(run_dir.glob("*.sock")) and not (run_dir / "zmqcam.pid").exists()
    not_running = cli("status", "--run-dir", str(run_dir), cwd=tmp_path)
    assert not_running.returncode == 3 and "not running" in not_running.stderr


def _not_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _http_ok(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/status", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _watch(port: int, stop: Any) -> None:
    import requests

    with requests.get(f"http://127.0.0.1:{port}/stream", stream=True, timeout=30) as r:
        for _ in r.iter_content(chunk_size=65536):
            if stop.is_set():
                return


def test_killed_grabber_is_restarted_and_its_frames_return(tmp_path: Path, daemons: list[Daemon]) -> None:
    """SIGKILL a grabber: the supervisor restarts it and a subscriber gets its frames again, unaided."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "z.toml", run_dir)
    d = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d)
    state = wait_for(
        lambda: d.state(run_dir).get("children", {}).get("grabber:cam1", {}).get("pid") and d.state(run_dir), 30
    )
    old_pid = state["children"]["grabber:cam1"]["pid"]
    with Subscriber("cam1", endpoint=f"ipc://{run_dir}/cam-cam1.sock") as sub:
        assert sub.read(timeout=20)[0]
        os.kill(old_pid, signal.SIGKILL)

        def restarted() -> Any:
            child = d.state(run_dir).get("children", {}).get("grabber:cam1", {})
            return child.get("state") == "running" and child.get("pid") not in (None, old_pid) and child

        child = wait_for(restarted, 15, message="grabber restart")
        assert child["restarts"] == 1
        # frames flow again through the same Subscriber
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ok, frame = sub.read(timeout=1)
            if ok and frame is not None and frame.age < 1.0 and frame.seq < 50:
                break
        else:
            pytest.fail("no frames from the restarted grabber")
    d.terminate()


def test_crash_looping_child_exhausts_its_budget_and_the_rest_keep_serving(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """A grabber that crashes at every start is given up after its restart budget; cam0 keeps serving."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "z.toml", run_dir)
    text = config.read_text().replace(
        'name = "cam1"', 'name = "cam1"\nendpoint = "ipc:///nonexistent-zmqcam-dir/cam1.sock"'
    )
    config.write_text(text)
    d = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d)

    def failed() -> bool:
        return d.state(run_dir).get("children", {}).get("grabber:cam1", {}).get("state") == "failed"

    wait_for(failed, 90, interval=0.2, message="crash budget exhausted")
    state = d.state(run_dir)["children"]
    # exactly the budget: restarted RESTART_BUDGET times, given up at the crash after them
    assert state["grabber:cam1"]["restarts"] == RESTART_BUDGET, state["grabber:cam1"]
    assert state["grabber:cam0"]["state"] == "running" and state["stitcher"]["state"] == "running"
    with Subscriber("cam0", endpoint=f"ipc://{run_dir}/cam-cam0.sock") as sub:
        assert sub.read(timeout=20)[0]
    # given up for good: no restart after that, while the rest serve
    assert d.state(run_dir)["children"]["grabber:cam1"] == state["grabber:cam1"] | {"state": "failed"}
    _, err = d.terminate()
    assert err.count("grabber:cam1 crashed") == RESTART_BUDGET + 1, err
    # within the window: the six crashes came within RESTART_WINDOW, as the last line says
    assert f"{RESTART_BUDGET + 1} times within {RESTART_WINDOW:.0f} s: giving up on it" in err, err


def test_a_child_that_cannot_start_says_why_in_one_line_and_in_status(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A key file removed after the daemon loaded its config: the grabber's next start fails. It says
    why in one log line per attempt, without a traceback, and `zmqcam-daemon status` shows the reason
    beside the process; once the key is back, the next restart serves again. Guards the child that
    crashed with a traceback at its next start, the reason nowhere in status."""
    assert cli("keygen", "keys", cwd=tmp_path).returncode == 0
    run_dir = tmp_path / "run"
    data = default_config_dict(str(run_dir))
    data["camera"] = data["camera"][:1]
    data["camera"][0].update(endpoint=f"tcp://127.0.0.1:{free_port()}", idle_timeout=1.0)
    data.update(stitch={"enabled": False}, http={"enabled": False}, curve={"key_dir": "keys"})
    config = tmp_path / "z.toml"
    config.write_text(render_toml(data))
    d = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d)
    child = wait_for(lambda: d.state(run_dir).get("children", {}).get("grabber:cam0", {}).get("pid"), 30)
    secret = tmp_path / "keys" / "server.key_secret"
    secret.rename(tmp_path / "server.key_secret.away")
    os.kill(child, signal.SIGKILL)

    def reported() -> Any:
        child = d.state(run_dir).get("children", {}).get("grabber:cam0", {})
        return child.get("error") and child.get("state") in ("backoff", "failed") and child

    child = wait_for(reported, 30, message="the start-up error in the process table")
    assert child["last_exit"] == EXIT_START_FAILED
    assert child["error"] == f"{secret}: cannot read: No such file or directory"
    shown = cli("status", "-c", str(config), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("grabber:cam0"))
    assert line.endswith(child["error"]), shown.stdout
    (tmp_path / "server.key_secret.away").rename(secret)
    wait_for(
        lambda: (c := d.state(run_dir)["children"]["grabber:cam0"])["state"] == "running" and not c["error"],
        30,
        message="the grabber back once the key is",
    )
    _, err = d.terminate()
    assert "Traceback" not in err, err
    failures = [line for line in err.splitlines() if "grabber:cam0 crashed at start-up" in line]
    assert failures and all(f"({secret}: cannot read: No such file or directory)" in line for line in failures), err


def test_user_errors_are_one_line_without_traceback(tmp_path: Path, daemons: list[Daemon]) -> None:
    """Bad config, port in use, unwritable run_dir and a second daemon: one clear line, exit 1."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[[camera]]\nname = "Cam"\n')
    r = cli("start", "-c", str(bad), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"{bad}: camera[0].name: 'Cam': String should match pattern '^[a-z0-9_-]{{1,32}}$'"

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("start", "--run-dir", str(tmp_path / "r1"), "--port", str(port), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"zmqcam-daemon: http: cannot listen on 127.0.0.1:{port}: Address already in use"

    blocker = tmp_path / "file"
    blocker.write_text("")
    r = cli("start", "--run-dir", str(blocker / "run"), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"zmqcam-daemon: run_dir {blocker / 'run'}: cannot create: Not a directory"

    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "z.toml", run_dir, cameras=1)
    d = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d)
    wait_for(lambda: (run_dir / "zmqcam.pid").exists(), 30)
    r = cli("start", "-c", str(config), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"zmqcam-daemon: another zmqcam daemon (pid {d.proc.pid}) is already running on run_dir {run_dir}"
    )
    assert d.proc.poll() is None, "the second start must not disturb the first daemon"


def test_sigkilled_daemon_leaves_nothing_that_blocks_the_next_start(tmp_path: Path, daemons: list[Daemon]) -> None:
    """After SIGKILL of the whole daemon, its children exit and a new start comes up over the stale files."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "z.toml", run_dir, cameras=1)
    d = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d)
    wait_for(lambda: len(d.state(run_dir).get("children", {})) == 2 and len(child_pids(d.proc.pid)) == 2, 30)
    kids = child_pids(d.proc.pid)
    os.kill(d.proc.pid, signal.SIGKILL)
    d.proc.communicate(timeout=10)
    assert (run_dir / "zmqcam.pid").exists()  # stale, as a crash leaves it
    wait_for(lambda: not [k for k in kids if _not_zombie(k)], 10, message="orphaned children to exit")
    d2 = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d2)
    wait_for(lambda: (run_dir / "zmqcam.pid").read_text().strip() == str(d2.proc.pid), 30)
    with Subscriber("cam0", endpoint=f"ipc://{run_dir}/cam-cam0.sock") as sub:
        assert sub.read(timeout=20)[0]
    d2.terminate()


def test_reload_restarts_only_the_changed_camera(tmp_path: Path, daemons: list[Daemon]) -> None:
    """SIGHUP/reload with cam1 changed: cam1 restarts, cam0's frames keep flowing from the same
    grabber (its sequence never starts over); an invalid new config is rejected and the old one
    keeps running."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "z.toml", run_dir)
    log = tmp_path / "daemon.log"
    d = Daemon(["-c", str(config)], cwd=tmp_path, log=log)
    daemons.append(d)
    state = wait_for(lambda: len(d.state(run_dir).get("children", {})) == 3 and d.state(run_dir), 30)
    pids = {name: c["pid"] for name, c in state["children"].items()}
    with Subscriber("cam0", endpoint=f"ipc://{run_dir}/cam-cam0.sock") as sub:
        ok, frame = sub.read(timeout=20)
        assert ok and frame is not None
        seqs = [frame.seq]
        config.write_text(config.read_text().replace("rotate = 180", "rotate = 0"))
        r = cli("reload", "-c", str(config), cwd=tmp_path)
        assert r.returncode == 0, r.stderr

        def reloaded() -> Any:
            children = d.state(run_dir).get("children", {})
            new = children.get("grabber:cam1", {})
            return new.get("state") == "running" and new.get("pid") not in (None, pids["grabber:cam1"]) and children

        # cam0's frames flow while cam1 restarts, and after: every read waits for a frame with a
        # deadline, and their sequence only goes up (a restarted grabber would start it over)
        deadline = time.monotonic() + 30
        children = None
        while not children:
            assert time.monotonic() < deadline, "cam1 was not restarted"
            ok, frame = sub.read(timeout=10)
            assert ok and frame is not None, "cam0's frames stopped during the reload"
            seqs.append(frame.seq)
            children = reloaded()
        for _ in range(5):
            ok, frame = sub.read(timeout=10)
            assert ok and frame is not None, "cam0's frames stopped after the reload"
            seqs.append(frame.seq)
    assert seqs == sorted(set(seqs)), f"cam0's sequence started over: {seqs}"
    assert children["grabber:cam0"]["pid"] == pids["grabber:cam0"], "unchanged camera was restarted"
    assert children["grabber:cam0"]["restarts"] == 0, children["grabber:cam0"]
    running = {name: c["pid"] for name, c in children.items()}

    config.write_text(config.read_text().replace("rotate = 0", "rotate = 45", 1))
    os.kill(d.proc.pid, signal.SIGHUP)
    # wait for the daemon to have handled the SIGHUP (its log says so), then look
    wait_for(lambda: "reload rejected:" in log.read_text(), 30, message="the reload to be rejected")
    assert d.proc.poll() is None
    assert {name: c["pid"] for name, c in d.state(run_dir)["children"].items()} == running, "a child was restarted"
    d.terminate()
    text = log.read_text()
    assert "reload rejected:" in text and "rotate: 45" in text and "keeping the running config" in text, text


def test_detach_runs_in_background_and_stop_stops_it(tmp_path: Path) -> None:
    """start --detach returns once the daemon is up (pid file in run_dir); stop ends it."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "z.toml", run_dir, cameras=1)
    r = cli("start", "--detach", "-c", str(config), cwd=tmp_path)
    try:
        assert r.returncode == 0, r.stderr
        pid = int((run_dir / "zmqcam.pid").read_text())
        assert Path(f"/proc/{pid}").exists()
        st = cli("status", "-c", str(config), cwd=tmp_path)
        assert st.returncode == 0 and "grabber:cam0" in st.stdout
    finally:
        stop = cli("stop", "-c", str(config), cwd=tmp_path)
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stdout
    wait_for(lambda: not _not_zombie(pid), 5)


def test_ctrl_c_stops_everything_cleanly(tmp_path: Path, daemons: list[Daemon]) -> None:
    """Ctrl-C signals the whole process group and the supervisor then sends SIGTERM as well: the
    children must stop on the first signal without a traceback from the second."""
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "z.toml", run_dir, cameras=2, http=True)
    d = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d)
    wait_for(lambda: len(child_pids(d.proc.pid)) == 4, 30, message="4 children")
    with Subscriber("pano", endpoint=f"ipc://{run_dir}/pano.sock") as sub:
        assert sub.read(timeout=20)[0]  # cameras and stitcher busy when the signal comes
        os.killpg(d.proc.pid, signal.SIGINT)
        _, err = d.proc.communicate(timeout=10)
    assert d.proc.returncode == 0
    assert "Traceback" not in err, err
