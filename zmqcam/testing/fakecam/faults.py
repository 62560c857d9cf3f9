"""Fault injection into the fake ESP32-CAM: what tests do to it (stall, corrupt, truncate or drop
frames, drop clients, refuse connections, reboot), in-process or, for a fake running as a process,
over HTTP at ``/fake/<action>`` on its port P."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Any

from zmqcam.testing.fakecam import wire
from zmqcam.testing.fakecam.base import FakeCamBase


class FaultInjection(FakeCamBase):
    """The faults a test can inject; thread-safe, applied by both ports."""

    def stall(self, partial: bool = False) -> None:
        """Stop sending: an active stream stops (``partial``: in the middle of its next JPEG),
        a new stream client or capture request gets no response, until ``resume()``."""
        with self._lock:
            self._stalled = True
            self._stall_partial = partial

    def resume(self) -> None:
        with self._lock:
            self._stalled = False
            self._stall_partial = False

    @property
    def stalled(self) -> bool:
        return self._stalled

    def corrupt_next(self, count: int = 1) -> None:
        """The next ``count`` frames (stream or capture) have a scrambled JPEG header."""
        self._add_faults("corrupt", count)

    def truncate_next(self, count: int = 1) -> None:
        """The next ``count`` frames are cut to half, with a matching Content-Length."""
        self._add_faults("truncate", count)

    def drop_next(self, count: int = 1) -> None:
        """Instead of each of the next ``count`` frames, close the connection."""
        self._add_faults("drop", count)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_faults(self, kind: str, count: int) -> None:
        with self._lock:
            self._faults.extend([kind] * count)

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    def drop_clients(self) -> None:
        """Close every client connection now (stream, waiting stream clients, capture)."""
        with self._lock:
            clients = list(self._clients) + list(self._stream_queue)
            self._stream_queue.clear()
            self._pending.clear()
        for sock in clients:
            wire.close(sock)

    def refuse(self, seconds: float | None = None) -> None:
        """Close both listening sockets: new connections are refused, for ``seconds`` (then they
        reopen by themselves) or until ``accept_again()``. Open connections stay."""
        with self._lock:
            self._refuse_until = math.inf if seconds is None else time.monotonic() + seconds
            listeners = list(self._listeners.values())
            self._listeners.clear()
        for sock in listeners:
            wire.close(sock)

    def accept_again(self) -> None:
        """End ``refuse()`` now; the ports listen again when this returns."""
        with self._lock:
            self._refuse_until = 0.0
            for role, port in (("http", self.port), ("stream", self.stream_port)):
                if role not in self._listeners and not self._stop.is_set():
                    self._listeners[role] = wire.listen(self.host, port)

    def reboot(self, seconds: float = 1.0) -> None:
        """A power cycle: drop every connection, refuse for ``seconds``, restart the uptime clock, and
        forget the sensor settings made through ``/control`` (the firmware keeps them in RAM)."""
        self.refuse(seconds)
        self.drop_clients()
        with self._lock:
            self._boot = time.monotonic() + seconds
            self._settings = dict(self._default_settings)
            self._size = self._default_size

    def fail_control(self, *names: str) -> None:
        """Answer ``/control?var=NAME`` with HTTP 500, as a firmware that does not know NAME does."""
        with self._lock:
            self.failing_controls.update(names)

    def ignore_control(self, *names: str) -> None:
        """Answer ``/control?var=NAME`` with 200 but keep the value (a setting that does not stick)."""
        with self._lock:
            self.ignored_controls.update(names)

    def settings(self) -> dict[str, int]:
        """The sensor settings now (every variable, ``vflip`` included)."""
        with self._lock:
            return dict(self._settings)

    def _fake_control(self, action: str, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        """Fault injection over HTTP, for a fake running as a separate process."""

        def arg(name: str, default: float) -> float:
            try:
                return float(query.get(name, [default])[0])
            except ValueError:
                return default

        count = int(arg("count", 1))
        actions: dict[str, Callable[[], None]] = {
            "stall": lambda: self.stall(partial=bool(arg("partial", 0))),
            "resume": self.resume,
            "corrupt": lambda: self.corrupt_next(count),
            "truncate": lambda: self.truncate_next(count),
            "drop": lambda: self.drop_next(count),
            "drop_clients": self.drop_clients,
            # over HTTP a refusal must end by itself: nobody could reach /fake/accept
            "refuse": lambda: self.refuse(arg("seconds", 5.0)),
            "reboot": lambda: self.reboot(arg("seconds", 1.0)),
            "size": lambda: self.set_size(int(arg("w", 640)), int(arg("h", 480))),
            "fps": lambda: self.set_fps(arg("val", 15.0)),
            "clear": self.clear_faults,
            "fail_control": lambda: self.fail_control(*query.get("var", [])),
            "ignore_control": lambda: self.ignore_control(*query.get("var", [])),
            "stats": lambda: None,
        }
        if action not in actions:
            return 404, {"error": f"unknown action {action!r}", "actions": sorted(actions)}
        if action in ("refuse", "reboot"):
            # answer first, then close the listeners
            threading.Timer(0.05, actions[action]).start()
        else:
            actions[action]()
        return 200, self.stats()
