"""The run directory: created private, locked to one daemon, holding its pid file and ipc sockets.

It holds the ipc sockets, ``zmqcam.pid``, a ``zmqcam.lock`` held for the daemon's life (so a second
daemon on the same run_dir is refused, and a SIGKILLed one leaves nothing that blocks the next
start) and ``daemon.json``, the process table that ``zmqcam-daemon status`` reads. Also here: the
checks made before anything binds (the TCP ports the daemon needs) and the clean-up of the sockets
a daemon killed with SIGKILL left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from zmqcam.config import Config
from zmqcam.errors import StartError
from zmqcam.names import ALL_PARTS, BRIDGE, LOCK_FILE, PID_FILE
from zmqcam.supervisor.roles import bound_endpoints, parse_role


def prepare_run_dir(path: Path) -> None:
    """Create the run dir 0700, or check an existing one is ours and private."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartError(f"run_dir {path}: cannot create: {exc.strerror}") from None
    info = path.stat()
    if info.st_uid != os.getuid():
        raise StartError(
            f"run_dir {path}: owned by uid {info.st_uid}, not by you (uid {os.getuid()}); refusing to use it"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours but too open: anyone could connect to the ipc sockets
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartError(f"run_dir {path}: not writable")


@contextlib.contextmanager
def run_dir_lock(path: Path) -> Iterator[None]:
    """Hold the run dir's lock; a second daemon on the same run_dir gets a one-line StartError."""
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = read_pid(path)
            raise StartError(f"another zmqcam daemon (pid {pid or '?'}) is already running on run_dir {path}") from None
        yield
    finally:
        os.close(fd)


def read_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def daemon_running(run_dir: Path) -> int | None:
    """The pid of the daemon holding ``run_dir``, or None (a stale pid file does not count)."""
    lock = run_dir / LOCK_FILE
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(run_dir) or -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_ports(config: Config, role: str = ALL_PARTS) -> None:
    """Fail early, with one line, when a TCP port the daemon needs is taken."""
    wanted: list[tuple[str, str, int]] = []
    if BRIDGE in parse_role(role) and config.http.enabled:
        wanted.append(("http", config.http.host, config.http.port))
    for what, endpoint in bound_endpoints(config, role):
        if endpoint.startswith("tcp://"):
            host, _, port_text = endpoint[6:].rpartition(":")
            wanted.append((what, "0.0.0.0" if host == "*" else host, int(port_text)))
    for what, host, port in wanted:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise StartError(f"{what}: cannot listen on {host}:{port}: {exc.strerror}") from None


def remove_sockets(config: Config, role: str = ALL_PARTS) -> None:
    """Unlink the ipc socket files of the parts this daemon runs (only those: another daemon may
    be serving the others from the same directory)."""
    for _, endpoint in bound_endpoints(config, role):
        if endpoint.startswith("ipc://"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(endpoint[len("ipc://") :])
