"""Running ``zmqcam-daemon`` as a user does, for the tests and the benchmarks alike: free ports, small
valid configs written as TOML, and the daemon as a subprocess in a session of its own (so that it and
its children can be stopped as a group, by its pid, whatever a test did to them).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from zmqcam.config import default_config_dict, from_dict
from zmqcam.config.toml import render_toml
from zmqcam.names import LOOPBACK, STATE_FILE

__all__ = ["DaemonProcess", "daemon_command", "fake_camera_config", "free_port", "write_config"]


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def daemon_command(*args: str) -> list[str]:
    """The command line of ``zmqcam-daemon ARGS`` with this Python (what the console script runs)."""
    return [sys.executable, "-m", "zmqcam.cli", *args]


def write_config(
    path: Path,
    run_dir: Path,
    cameras: int = 2,
    http: bool = False,
    sections: dict[str, dict[str, Any]] | None = None,
    **camera: Any,
) -> Path:
    """A small valid config of synthetic cameras (10 fps, idle after 1 s) written to ``path`` as TOML:
    the first ``cameras`` cameras of the built-in rig, ``camera`` overriding their keys, HTTP on a free
    port when ``http``, and ``sections`` merged into its tables (``{"daemon": {"watchdog": 3}}``)."""
    data = default_config_dict(str(run_dir))
    data["camera"] = data["camera"][:cameras]
    for cam in data["camera"]:
        cam.update({"fps": 10.0, "idle_timeout": 1.0, **camera})
    data["http"] = {"enabled": http, "port": free_port()}
    for table, keys in (sections or {}).items():
        data.setdefault(table, {}).update(keys)
    from_dict(data)  # the test's own config must be valid
    path.write_text(render_toml(data))
    return path


def fake_camera_config(stream_ports: list[int], idle_timeout: float) -> dict[str, Any]:
    """The original deployment's geometry, each camera a fake ESP32-CAM's MJPEG stream on loopback
    (one port per camera of the built-in rig)."""
    data = default_config_dict()
    for cam, port in zip(data["camera"], stream_ports, strict=True):
        cam.update(source=f"http://{LOOPBACK}:{port}/stream", kind="mjpeg", idle_timeout=idle_timeout)
    data["http"] = {"max_clients": 1000}
    return data


class DaemonProcess:
    """``zmqcam-daemon start ARGS`` as a subprocess in its own session (``env``: variables added to
    this process's environment); ``terminate`` stops it, and kills its whole process group if SIGTERM
    did not end it."""

    def __init__(
        self,
        args: list[str],
        cwd: Path | str | None = None,
        stdout: int | IO[Any] | None = subprocess.PIPE,
        stderr: int | IO[Any] | None = subprocess.PIPE,
        env: dict[str, str] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            daemon_command("start", *args),
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def state(self, run_dir: Path | str) -> dict[str, Any]:
        """The supervisor's process table (``daemon.json``), or {} while there is none."""
        try:
            state: dict[str, Any] = json.loads((Path(run_dir) / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return state

    def terminate(self, timeout: float = 10) -> tuple[str, str]:
        """SIGTERM, wait up to ``timeout`` s, else SIGKILL the process group; (stdout, stderr) when piped."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what it started
            out, err = self.proc.communicate(timeout=5)
        return out, err
