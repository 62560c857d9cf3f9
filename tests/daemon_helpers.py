"""Running ``zmqcam-daemon`` as a user does, for tests: a subprocess, its config, its children.

``Daemon`` starts ``zmqcam-daemon start`` in its own session (the ``daemons`` fixture in conftest
stops every one a test started); ``cli`` runs any other subcommand; ``write_config`` writes a
small valid TOML config of synthetic cameras; ``reader_process`` runs a program reading one stream
with ``zmqcam.Subscriber``, in a process of its own that a test can kill or freeze.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from zmqcam.config import default_config_dict, from_dict


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zmqcam.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd
    )


#: a user's program: read the stream once (say so on stdout), then keep reading until killed
_READER = """
import json, sys
from zmqcam import Subscriber
sub = Subscriber(sys.argv[1], **json.loads(sys.argv[2]))
ok, _ = sub.read(timeout=30)
print("reading" if ok else "nothing", flush=True)
while True:
    sub.read(timeout=1)
"""


@contextlib.contextmanager
def reader_process(stream: str, **subscriber: Any) -> Iterator[subprocess.Popen[str]]:
    """A process reading ``stream`` through ``Subscriber(stream, **subscriber)`` (string or path
    arguments: endpoint, kind, server_key, client_key), yielded once it has read a frame. Killed
    by its pid afterwards, whatever the test did to it (SIGKILL ends a SIGSTOPped process too)."""
    arguments = json.dumps({key: str(value) for key, value in subscriber.items()})
    proc = subprocess.Popen([sys.executable, "-c", _READER, stream, arguments], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "reading", "the reader got no frame"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


class Daemon:
    """A `zmqcam-daemon start` subprocess; killed (with its process group) if a test leaves it running."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zmqcam.cli", "start", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def state(self, run_dir: Path) -> dict[str, Any]:
        try:
            return json.loads((run_dir / "daemon.json").read_text())
        except (OSError, ValueError):
            return {}

    def terminate(self, timeout: float = 10) -> tuple[str, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, err = self.proc.communicate(timeout=5)
        return out, err


def child_pids(pid: int) -> list[int]:
    """The live zmqcam processes (titled ``zmqcam:...``) whose parent is ``pid``, from /proc."""
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            title = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and title.startswith(b"zmqcam:"):
            kids.append(int(entry.name))
    return kids


def read_stream_parts(port: int, n: int, timeout: float = 30) -> list[bytes]:
    """Read ``n`` JPEG parts from /stream with a plain socket: the wire as a browser sees it."""
    import requests

    parts = []
    with requests.get(f"http://127.0.0.1:{port}/stream", stream=True, timeout=timeout) as r:
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


def write_config(path: Path, run_dir: Path, cameras: int = 2, http: bool = False, **camera: Any) -> Path:
    data = default_config_dict(str(run_dir))
    data["camera"] = data["camera"][:cameras]
    for cam in data["camera"]:
        cam.update({"fps": 10.0, "idle_timeout": 1.0, **camera})
    data["http"] = {"enabled": http, "port": free_port()}
    from_dict(data)  # the test's own config must be valid
    path.write_text(toml_text(data))
    return path


def toml_text(data: dict[str, Any]) -> str:
    """A tiny TOML writer for the config shapes used here."""
    lines = []
    for key in ("daemon", "stitch", "http"):
        if key in data:
            lines.append(f"[{key}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in data[key].items()]
    for cam in data["camera"]:
        lines.append("[[camera]]")
        for k, v in cam.items():
            if isinstance(v, dict):
                inner = ", ".join(f"{ik} = {json.dumps(iv)}" for ik, iv in v.items())
                lines.append(f"{k} = {{ {inner} }}")
            else:
                lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"
