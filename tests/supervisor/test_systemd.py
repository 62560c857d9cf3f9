"""The supervisor under systemd (issue 18): ``sd_notify`` through ``$NOTIFY_SOCKET`` with the standard
library. A test AF_UNIX datagram socket stands in for systemd's: first the protocol, in-process, on a
path and on an abstract name; then the real daemon, ready once its children are started, pinging
at half of ``$WATCHDOG_USEC`` from its own loop (so that a frozen supervisor stops pinging), and
saying when it reloads and stops."""

from __future__ import annotations

import logging
import os
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Daemon, wait_for, write_config
from tests.helpers.daemon import wait_running
from zmqcam.names import grabber_name
from zmqcam.supervisor.systemd import (
    NOTIFY_SOCKET,
    READY,
    RELOADING,
    STOPPING,
    WATCHDOG,
    WATCHDOG_PID,
    WATCHDOG_USEC,
    Notifier,
)


@pytest.fixture
def systemd() -> Iterator[tuple[socket.socket, str]]:
    """systemd's notification socket: an AF_UNIX datagram socket on an abstract name, and the value
    of ``$NOTIFY_SOCKET`` that names it."""
    name = f"zmqcam-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def receive(sock: socket.socket, timeout: float) -> str | None:
    sock.settimeout(timeout)
    try:
        return sock.recv(4096).decode()
    except TimeoutError:
        return None


def next_notification(sock: socket.socket, timeout: float, skip: str = WATCHDOG) -> str:
    """The next datagram other than ``skip`` (the pings that go on meanwhile)."""

    def found() -> str | None:
        message = receive(sock, 0.5)
        return message if message is not None and message != skip else None

    return wait_for(found, timeout, interval=0, message="a notification")


def test_notifier_speaks_sd_notify_to_a_path_and_to_an_abstract_name(
    tmp_path: Path, systemd: tuple[socket.socket, str]
) -> None:
    """READY, WATCHDOG (at half of $WATCHDOG_USEC, no more often), RELOADING with the monotonic
    time, STOPPING, each one datagram, to a socket named by a path or by an abstract name; the
    variables are taken out of the environment so that the children never notify. Guards the
    protocol systemd's Type=notify and WatchdogSec expect."""
    path_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path_sock.bind(str(tmp_path / "notify"))
    abstract_sock, abstract_name = systemd
    try:
        for sock, address in ((path_sock, str(tmp_path / "notify")), (abstract_sock, abstract_name)):
            env = {NOTIFY_SOCKET: address, WATCHDOG_USEC: "4000000", "OTHER": "kept"}
            notifier = Notifier(env)
            assert env == {"OTHER": "kept"}
            assert notifier.ping_interval == 2.0
            notifier.ready()
            assert receive(sock, 5) == READY
            notifier.ping(100.0)
            notifier.ping(101.9)  # not due yet
            notifier.ping(102.0)
            assert [receive(sock, 5), receive(sock, 5), receive(sock, 0.2)] == [WATCHDOG, WATCHDOG, None]
            notifier.reloading()
            reloading = receive(sock, 5)
            assert reloading is not None and reloading.startswith(RELOADING + "\nMONOTONIC_USEC=")
            assert int(reloading.rsplit("=", 1)[1]) > 0
            notifier.stopping()
            assert receive(sock, 5) == STOPPING
            notifier.close()
    finally:
        path_sock.close()


def test_without_systemd_or_for_another_pid_nothing_is_sent_and_a_lost_socket_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Outside systemd every call is a no-op; pings meant for another process (WATCHDOG_PID) are not
    sent; a notification socket that vanished is one warning, never an exception. Guards a daemon
    run by hand, or under a wrapper, that breaks on notifications."""
    assert not Notifier({}).enabled and not Notifier({}).notify(READY)
    other = Notifier({NOTIFY_SOCKET: str(tmp_path / "x"), WATCHDOG_USEC: "1000000", WATCHDOG_PID: "1"}, pid=2)
    assert other.ping_interval is None and other.next_ping is None
    lost = Notifier({NOTIFY_SOCKET: str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="zmqcam.supervisor.systemd"):
        assert not lost.notify(READY) and not lost.notify(STOPPING)
    assert len(caplog.records) == 1 and "cannot notify systemd" in caplog.records[0].getMessage()
    lost.close()


def test_daemon_notifies_ready_pings_from_its_loop_and_says_reloading_and_stopping(
    tmp_path: Path, daemons: list[Daemon], systemd: tuple[socket.socket, str]
) -> None:
    """The daemon as systemd runs it (NOTIFY_SOCKET, WATCHDOG_USEC of 1 s): READY=1 once its
    children are started; WATCHDOG=1 every half second; none while the supervisor is frozen
    (SIGSTOP), so systemd would restart it, and again once it runs; RELOADING=1 then READY=1 around
    a reload; STOPPING=1 on stop. The children's environment has no NOTIFY_SOCKET (NotifyAccess=main).
    Guards a supervisor that hangs unnoticed under systemd."""
    sock, address = systemd
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "z.toml", run_dir, cameras=1, sections={"stitch": {"enabled": False}})
    d = Daemon(["-c", str(config)], cwd=tmp_path, env={NOTIFY_SOCKET: address, WATCHDOG_USEC: "1000000"})
    daemons.append(d)
    assert next_notification(sock, 60) == READY
    name = grabber_name("cam0")
    child = wait_running(d, run_dir, [name])[name]["pid"]
    assert NOTIFY_SOCKET.encode() not in Path(f"/proc/{child}/environ").read_bytes()
    assert [receive(sock, 5) for _ in range(3)] == [WATCHDOG] * 3

    os.kill(d.pid, signal.SIGSTOP)
    try:
        while receive(sock, 0.1) is not None:  # a ping already on its way
            pass
        assert receive(sock, 2.0) is None, "a frozen supervisor kept pinging"
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert receive(sock, 5) == WATCHDOG

    os.kill(d.pid, signal.SIGHUP)
    assert next_notification(sock, 30).startswith(RELOADING + "\n")
    assert next_notification(sock, 30) == READY
    d.terminate()
    assert d.proc.returncode == 0
    messages = []
    while (message := receive(sock, 0.5)) is not None:
        messages.append(message)
    assert STOPPING in messages, messages
