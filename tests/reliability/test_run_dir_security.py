"""The run directory is the security boundary of every ipc socket: private to its owner, or refused.

ipc endpoints carry no authentication of their own (CURVE is for tcp); what keeps other users of
the machine off the frame bus is that the sockets live in a 0700 directory the daemon owns. These
tests check that boundary as another user meets it: a process running under another uid cannot
connect, and a run_dir owned by someone else is refused with one line.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon, cli, needs, wait_for
from zmqcam import Subscriber

#: the conventional "nobody" uid; any uid other than ours would do
OTHER_UID = 65534


@pytest.fixture
def as_root() -> None:
    """Acting as another user (chown, setuid) needs root: without it the test is skipped saying so,
    and in CI, which runs as root, it fails instead (the ``needs`` rule)."""
    needs(os.geteuid() == 0, "root-only: acting as another user (chown, setuid) needs root; CI runs as root")


def connect_as(uid: int, path: Path) -> str:
    """Try to connect to the unix socket ``path`` from a forked child running as ``uid``; return
    "ok" or the error's name. A fork, not a thread: setuid changes the whole process."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(path))
            result = b"ok"
        except OSError as exc:
            result = type(exc).__name__.encode()
        os.write(write_fd, result)
        os._exit(0)
    os.close(write_fd)
    try:
        _, status = os.waitpid(pid, 0)
        return os.read(read_fd, 100).decode() or f"child status {status}"
    finally:
        os.close(read_fd)


@pytest.fixture
def running(tmp_path: Path, daemons: list[Daemon]) -> Iterator[Path]:
    """A daemon with one synthetic camera on a fresh run_dir; yields the run_dir."""
    os.chmod(tmp_path, 0o755)  # pytest's tmp_path is private already; the run_dir must be private itself
    run_dir = tmp_path / "run"
    config = tmp_path / "one.toml"
    config.write_text(f'[daemon]\nrun_dir = "{run_dir}"\n[[camera]]\nname = "cam0"\n[http]\nenabled = false\n')
    d = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d)
    wait_for(lambda: (run_dir / "cam-cam0.sock").exists(), 30, message="the grabber's socket")
    yield run_dir


@pytest.mark.usefixtures("as_root")
def test_another_user_cannot_reach_the_ipc_sockets(running: Path) -> None:
    """The run_dir is 0700: a process of another user gets PermissionError connecting to a grabber's
    socket, while the owner connects and reads frames."""
    sock = running / "cam-cam0.sock"
    assert stat.S_IMODE(running.stat().st_mode) == 0o700
    assert connect_as(OTHER_UID, sock) == "PermissionError"
    with Subscriber("cam0", endpoint=f"ipc://{sock}") as sub:
        assert sub.read(timeout=20)[0]


@pytest.mark.usefixtures("as_root")
def test_run_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    """A run_dir that exists but belongs to someone else (who could then read or replace our sockets)
    is refused with one line and exit 1; nothing is created in it."""
    run_dir = tmp_path / "theirs"
    run_dir.mkdir(mode=0o700)
    os.chown(run_dir, OTHER_UID, OTHER_UID)
    r = cli("start", "--run-dir", str(run_dir), "--port", "0")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == (
        f"zmqcam-daemon: run_dir {run_dir}: owned by uid {OTHER_UID}, not by you (uid 0); refusing to use it"
    )
    assert list(run_dir.iterdir()) == []


def test_a_too_open_run_dir_of_ours_is_made_private(tmp_path: Path, daemons: list[Daemon]) -> None:
    """A run_dir we own but left group/world accessible is tightened to 0700 before any socket is
    bound in it (else anyone on the machine could subscribe to the cameras)."""
    run_dir = tmp_path / "open"
    run_dir.mkdir()
    os.chmod(run_dir, 0o777)
    config = tmp_path / "one.toml"
    config.write_text(f'[daemon]\nrun_dir = "{run_dir}"\n[[camera]]\nname = "cam0"\n[http]\nenabled = false\n')
    d = Daemon(["-c", str(config)], cwd=tmp_path)
    daemons.append(d)
    wait_for(lambda: (run_dir / "cam-cam0.sock").exists(), 30, message="the grabber's socket")
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    d.terminate()
