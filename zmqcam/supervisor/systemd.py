"""Telling systemd how the supervisor is doing (``sd_notify``), with the standard library only.

Under a unit of ``Type=notify`` systemd passes ``$NOTIFY_SOCKET``, an AF_UNIX datagram socket (a
path, or an abstract name written with a leading ``@``), and with ``WatchdogSec=`` also
``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``, the process it expects the pings from). The protocol is one
datagram of ``KEY=VALUE`` lines per notification: ``READY=1`` once the children are started,
``WATCHDOG=1`` at half of the watchdog period, ``RELOADING=1`` (with ``MONOTONIC_USEC``) and then
``READY=1`` around a reload, ``STOPPING=1`` on stop. The pings come from the supervisor's own loop,
never from a side thread: a supervisor that hangs stops pinging, and systemd restarts it.

Outside systemd (no ``$NOTIFY_SOCKET``) every call is a no-op. The variables are taken out of the
environment when read, as ``sd_notify(unset_environment=1)`` does, so that the children (which
inherit it) never notify in the supervisor's name. A notification that cannot be sent is logged
once and never stops the daemon.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

READY = "READY=1"
STOPPING = "STOPPING=1"
RELOADING = "RELOADING=1"
WATCHDOG = "WATCHDOG=1"


class Notifier:
    """The supervisor's line to systemd; every method is a no-op when systemd did not ask."""

    def __init__(self, environ: MutableMapping[str, str] | None = None, pid: int | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.pop(NOTIFY_SOCKET, "")
        usec = env.pop(WATCHDOG_USEC, "")
        watchdog_pid = env.pop(WATCHDOG_PID, "")
        self._address: str | None = None
        if address.startswith("@"):
            self._address = "\0" + address[1:]  # an abstract socket name
        elif address.startswith("/"):
            self._address = address
        elif address:
            log.warning("ignoring %s=%r: neither a path nor an abstract socket name", NOTIFY_SOCKET, address)
        #: seconds between WATCHDOG=1 pings (half of systemd's period); None: systemd does not watch us
        self.ping_interval: float | None = None
        if self._address is not None and usec:
            for_us = not watchdog_pid or watchdog_pid == str(os.getpid() if pid is None else pid)
            if usec.isdigit() and int(usec) > 0 and for_us:
                self.ping_interval = int(usec) / 2e6
            elif for_us:
                log.warning("ignoring %s=%r: not a positive number of microseconds", WATCHDOG_USEC, usec)
        #: when the next ping is due (monotonic); None without a watchdog
        self.next_ping: float | None = 0.0 if self.ping_interval is not None else None
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str) -> bool:
        """Send one notification; False when there is nobody to tell or it could not be sent."""
        if self._address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self._address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc.strerror or exc)
            return False
        return True

    def ready(self) -> None:
        self.notify(READY)

    def stopping(self) -> None:
        self.notify(STOPPING)

    def reloading(self) -> None:
        # systemd 253+ needs the time of the reload request to match it with the READY=1 that ends it
        self.notify(RELOADING, f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def ping(self, now: float) -> None:
        """WATCHDOG=1 when one is due; call from the supervisor's loop, which wakes by ``next_ping``."""
        if self.next_ping is None or self.ping_interval is None or now < self.next_ping:
            return
        self.next_ping = now + self.ping_interval
        self.notify(WATCHDOG)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
