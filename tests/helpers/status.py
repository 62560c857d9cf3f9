"""Status as of now: wait for a status published after the event a test asserts on, and assert
inside the wait.

Every process publishes its status once a second (and at once when its subscribers change), and the
bridge's /status shows the newest one it heard. A status read right after an event may therefore
have been made before it: "live" read just after the last viewer left, or an old "asleep" before a
wake-up was even seen. So each helper here

- reads only statuses newer than the event: ``bus_status`` opens a fresh subscription for every
  attempt, and a subscription receives only what is published after it; ``bridge_status`` checks
  every process's status in /status was received after ``since`` (a ``time.time()`` taken at the
  event);
- runs the test's ``check`` (plain ``assert`` statements) on each one, retrying while it fails,
  until the deadline, and then fails with the last assertion and the status it saw. A missing
  stream (a KeyError) is retried too, never a crash of the test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from tests.helpers.bridge import get_status
from zmqcam.bus.status import STATUS_INTERVAL, collect_status
from zmqcam.config import Config

T = TypeVar("T")

#: how long to listen for one round of statuses: every process publishes once per STATUS_INTERVAL
ROUND = 2 * STATUS_INTERVAL
#: a status received this soon after the event may have been made before it (in flight meanwhile)
IN_FLIGHT = 0.25


def eventually(fetch: Callable[[], T], check: Callable[[T], object], timeout: float, interval: float = 0.1) -> T:
    """``fetch()`` until ``check(value)`` passes (returns without AssertionError or KeyError); the
    passing value. At the deadline, fail with the last assertion and the value it was about."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        try:
            check(value)
            return value
        except (AssertionError, KeyError) as exc:
            if time.monotonic() >= deadline:
                raise AssertionError(f"not so within {timeout} s: {exc!r}; last seen: {value}") from exc
        time.sleep(interval)


def bus_status(
    config: Config,
    check: Callable[[dict[str, dict[str, Any]]], object],
    timeout: float = 15.0,
    streams: Collection[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The statuses of ``streams`` (default: the whole rig) as published on the bus from now on,
    ``{stream: status}``, once ``check`` passes on them. Call it after the event: each attempt is
    a new subscription, so it sees only statuses published after the call."""
    return eventually(lambda: collect_status(config, timeout=ROUND, streams=streams), check, timeout)


def fresh(status: dict[str, Any], since: float) -> bool:
    """Whether every process's status in a bridge's /status body was received after ``since``."""
    parts = [*status["cameras"].values()]
    if "status_age" in status["stitcher"]:
        parts.append(status["stitcher"])
    return all(p["status_age"] is not None and status["time"] - p["status_age"] >= since + IN_FLIGHT for p in parts)


def bridge_status(
    url: str, check: Callable[[dict[str, Any]], object], since: float, timeout: float = 15.0
) -> dict[str, Any]:
    """The bridge's /status once every process's status in it is newer than ``since`` (a
    ``time.time()`` taken at the event) and ``check`` passes on it."""

    def checked(status: dict[str, Any]) -> None:
        assert fresh(status, since), "a status older than the event"
        check(status)

    return eventually(lambda: get_status(url), checked, timeout)
