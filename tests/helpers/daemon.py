"""Running ``zmqcam-daemon`` as a user does: ``Daemon`` starts ``zmqcam-daemon start`` in its own
session (the ``daemons`` fixture stops every one a test started), ``cli`` runs any other command,
``read_stream_parts`` reads /stream as a browser would. Free ports and test configs come from
``zmqcam.testing.daemon``, which the benchmarks use too."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from tests.helpers.waiting import wait_for
from zmqcam.names import LOOPBACK
from zmqcam.testing.daemon import DaemonProcess, daemon_command, free_port, write_config

__all__ = ["Daemon", "cli", "free_port", "read_stream_parts", "wait_running", "write_config"]


class Daemon(DaemonProcess):
    """A `zmqcam-daemon start` subprocess run from ``cwd``; killed (with its process group) if a test
    leaves it running. ``log``: its stderr (the log) goes to that file, which a test can read while
    the daemon runs (a pipe nobody reads could also fill up and block a long-running daemon);
    ``env``: variables added to its environment."""

    def __init__(self, args: list[str], cwd: Path, log: Path | None = None, env: dict[str, str] | None = None) -> None:
        if log is None:
            super().__init__(args, cwd=cwd, env=env)
            return
        with open(log, "w") as stderr:  # the daemon holds its own copy
            super().__init__(args, cwd=cwd, stderr=stderr, env=env)


def cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``zmqcam-daemon ARGS``, its output captured; no terminal on its stdin (nothing may ask a question)."""
    return subprocess.run(
        daemon_command(*args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


def read_stream_parts(port: int, n: int, timeout: float = 30) -> list[bytes]:
    """Read ``n`` JPEG parts from /stream with a plain socket: the wire as a browser sees it."""
    import requests

    parts = []
    with requests.get(f"http://{LOOPBACK}:{port}/stream", stream=True, timeout=timeout) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        buf = b""
        for chunk in r.iter_content(chunk_size=65536):
            buf += chunk
            while True:
                start = buf.find(b"\xff\xd8")
                end = buf.find(b"\xff\xd9", start)
                if start == -1 or end == -1:
                    break
                parts.append(buf[start : end + 2])
                buf = buf[end + 2 :]
            if len(parts) >= n:
                break
    return parts[:n]


def wait_running(d: Daemon, run_dir: Path, names: list[str], timeout: float = 30) -> dict[str, Any]:
    """The process table once every child in ``names`` is running (the daemon itself still alive)."""

    def running() -> Any:
        assert d.proc.poll() is None, f"the daemon exited: {d.proc.returncode}"
        state = d.state(run_dir)
        if state.get("pid") != d.proc.pid:  # a daemon.json left by a killed daemon
            return False
        table = state.get("children", {})
        return all(table.get(n, {}).get("state") == "running" for n in names) and table

    return wait_for(running, timeout, interval=0.1, message=f"{names} running")
