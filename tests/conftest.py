"""Shared fixtures: short-lived run dirs, real child processes, leak-checked ZeroMQ contexts."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

sys.path.insert(0, str(Path(__file__).parent))

from daemon_helpers import Daemon

from zmqcam.config import Config, default_config_dict, from_dict


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A short private directory for ipc sockets (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="zc-", dir="/tmp"))
    os.chmod(path, 0o700)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def make_config(run_dir: Path) -> Callable[..., Config]:
    """Build a config on the built-in default (4 synthetic cameras) with overrides per section."""

    def build(cameras: int = 4, camera: dict[str, Any] | None = None, **sections: dict[str, Any]) -> Config:
        data = default_config_dict(str(run_dir))
        data["camera"] = data["camera"][:cameras]
        for cam in data["camera"]:
            cam.update(camera or {})
        for key, value in sections.items():
            data.setdefault(key, {}).update(value)
        return from_dict(data, label="<test>")

    return build


@pytest.fixture
def ctx() -> Iterator[zmq.Context[Any]]:
    """A ZeroMQ context that fails the test if it leaks a socket (pyzmq's own conftest does this)."""
    context: zmq.Context[Any] = zmq.Context()
    yield context
    leaked = [s for s in list(context._sockets) if not s.closed]  # type: ignore[attr-defined]
    for sock in leaked:
        sock.close(linger=0)
    context.term()
    assert not leaked, f"test leaked {len(leaked)} socket(s)"


@pytest.fixture
def fakes() -> Iterator[Callable[..., Any]]:
    """A factory of started fake ESP32-CAMs (``fakes(fps=10, size=(320, 240))``, arguments of
    ``zmqcam.testing.fakecam.FakeCam``), all stopped at teardown and checked for errors in their
    threads."""
    from zmqcam.testing.fakecam import FakeCam

    started: list[FakeCam] = []

    def start(**kwargs: Any) -> FakeCam:
        kwargs.setdefault("fps", 10.0)
        kwargs.setdefault("capture_delay", 0.02)
        cam = FakeCam(**kwargs)
        started.append(cam)
        return cam.start()

    yield start
    for cam in started:
        cam.stop()
    errors = [e for cam in started for e in cam.errors]
    assert not errors, errors


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.terminate()
        else:
            d.proc.communicate()


class Children:
    """Child processes started with the spawn method, stopped and reaped after the test."""

    def __init__(self) -> None:
        self.procs: list[multiprocessing.process.BaseProcess] = []
        self._mp = multiprocessing.get_context("spawn")

    def start(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> multiprocessing.process.BaseProcess:
        proc = self._mp.Process(target=target, args=args, kwargs=kwargs, daemon=True)
        proc.start()
        self.procs.append(proc)
        return proc

    def stop(self, proc: multiprocessing.process.BaseProcess, timeout: float = 5.0) -> None:
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.join(timeout)
        if proc.is_alive() and proc.pid is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(2)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    yield kids
    kids.stop_all()


#: CI (.ci/run) installs every system package the tests use, so there a missing one is a failure
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def needs(available: bool, reason: str) -> None:
    """Skip the calling test when a system tool it needs is missing, saying which; fail in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason}; .ci/run installs it, so in CI it must be there")
    pytest.skip(reason)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message or predicate}")
        time.sleep(interval)
