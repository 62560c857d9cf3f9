"""Shared fixtures: short-lived run dirs, configs, real child processes and daemons, leak-checked
ZeroMQ contexts, fake ESP32-CAMs and RTSP servers. Helpers are in ``tests.helpers``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from tests.helpers import IN_CI, Children, Daemon, needs, require_rtsp
from zmqcam.config import Config, default_config_dict, from_dict
from zmqcam.testing.fakecam import FakeCam
from zmqcam.testing.rtsp_server import RtspServer

#: tests that may skip in CI, by node id prefix, each with the reason it may. CI (.ci/run) installs
#: every system tool the suite needs and runs as root, so any other skip there hides a failure.
ALLOWED_SKIPS_IN_CI: dict[str, str] = {}

#: node ids of the tests skipped in this session
_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Note every skipped test (an expected failure, xfail, is not a skip)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def _hidden_failures() -> list[str]:
    """The skipped tests that hide a failure: in CI, every one outside ALLOWED_SKIPS_IN_CI."""
    if not IN_CI:
        return []
    return [nodeid for nodeid in _SKIPPED if not any(nodeid.startswith(p) for p in ALLOWED_SKIPS_IN_CI)]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    hidden = _hidden_failures()
    if hidden:
        terminalreporter.section("skipped in CI, and not in tests/conftest.py's ALLOWED_SKIPS_IN_CI", red=True)
        for nodeid in hidden:
            terminalreporter.write_line(f"SKIPPED IN CI: {nodeid}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In CI a skipped test outside ALLOWED_SKIPS_IN_CI fails the run: a skip there is a failure
    that nobody would see."""
    if _hidden_failures() and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
def fakecam() -> Iterator[FakeCam]:
    """A fake ESP32-CAM at 640x480, 20 fps, on free ports of 127.0.0.1."""
    cam = FakeCam(fps=20.0)
    cam.start()
    try:
        yield cam
    finally:
        # a generous join: stop() records any thread still running after it as an error (how
        # promptly it stops is test_fakecam.py's concern, not every test's)
        cam.stop(timeout=10.0)
        assert cam.errors == [], cam.errors


@pytest.fixture
def rtsp_server() -> Iterator[Callable[..., RtspServer]]:
    """A factory: ``rtsp_server(codec="mjpeg", size=(640, 480), fps=15)`` starts a server (skipping
    where GStreamer's RTSP server is missing, failing in CI: ``require_rtsp``); all are stopped at
    teardown."""
    servers: list[RtspServer] = []

    def start(codec: str = "mjpeg", **kwargs: Any) -> RtspServer:
        require_rtsp(codec)
        server = RtspServer(codec=codec, **kwargs)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.terminate()
        else:
            d.proc.communicate()


@pytest.fixture
def children() -> Iterator[Children]:
    kids = Children()
    yield kids
    kids.stop_all()


CHROMIUM = os.environ.get("ZMQCAM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ZMQCAM_CHROMEDRIVER", "/usr/bin/chromedriver")


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    """Headless Debian Chromium driven by selenium (skips without it, fails in CI)."""
    needs(
        os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK),
        f"needs chromium ({CHROMIUM}) and chromedriver ({CHROMEDRIVER}) (Debian packages chromium, chromium-driver)",
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1400,1100",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium", ignore_errors=True)
