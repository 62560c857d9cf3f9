"""A child's heartbeat over its Link (``zmqcam.process``): what it says, how often, and that it never
blocks the loop that sends it. Real pipes, as the supervisor makes them."""

from __future__ import annotations

import multiprocessing
import threading
import time
from multiprocessing.connection import Connection

from zmqcam.process import ALIVE, REPORT, UNHEALTHY, Heartbeat, Link, read_link


def pipe() -> tuple[Connection, Connection]:
    return multiprocessing.get_context("spawn").Pipe(duplex=False)


def test_a_heartbeat_goes_out_once_an_interval_and_says_what_is_wrong() -> None:
    """A loop that calls ``beat`` a thousand times a second sends about one heartbeat per interval;
    the health check runs only then, and an answer other than None goes out as "unhealthy" with
    the reason. Guards a heartbeat that floods the supervisor or costs the loop a check per frame."""
    reader, writer = pipe()
    checks: list[float] = []

    def health(now: float) -> str | None:
        checks.append(now)
        return "capture stuck" if now >= 5.0 else None

    beat = Heartbeat(Link(writer), interval=1.0)
    for i in range(10_000):
        beat.beat(i / 1000, health)  # 10 s of a loop running at 1000 iterations a second
    messages = list(read_link(reader))
    assert 10 <= len(messages) <= 11 and len(checks) == len(messages), checks
    expected = [{UNHEALTHY: "capture stuck"} if now >= 5.0 else {ALIVE: True} for now in checks]
    assert messages == expected


def test_heartbeats_never_block_a_child_whose_supervisor_stopped_reading() -> None:
    """A supervisor that is hung or stopped reads nothing; the pipe fills up (64 KiB) after an hour
    of heartbeats. The child's sends must then drop beats, not block its main loop (which would
    freeze a camera because its supervisor froze). Guards the non-blocking child end."""
    reader, writer = pipe()
    link = Link(writer)
    sent: list[bool] = []

    def loop() -> None:
        sent.extend(link.alive() for _ in range(20_000))

    worker = threading.Thread(target=loop, daemon=True)
    worker.start()
    worker.join(30)
    blocked = worker.is_alive()
    reader.close()  # unblocks a blocked writer (EPIPE) so the thread ends either way
    worker.join(5)
    assert not blocked, "a heartbeat blocked on a full pipe"
    assert sent[0] and not sent[-1], "the pipe never filled up, or nothing was sent"
    link.close()


def test_a_heartbeat_without_a_supervisor_does_nothing() -> None:
    """A worker run without a supervisor (in a test, in-process) beats into nothing."""
    calls: list[float] = []
    beat = Heartbeat()
    started = time.monotonic()
    beat.beat(started, lambda now: calls.append(now) or None)
    assert calls == []


def test_a_report_rides_on_the_heartbeat_and_never_costs_it() -> None:
    """A child's report (a publish target's connection) goes out with its heartbeat, healthy or not;
    a report too big for one Link message is left off and the heartbeat still arrives whole. Guards
    a long last_error that would make every heartbeat unreadable, and the child look hung."""
    reader, writer = pipe()
    reports = iter([{"state": "live"}, {"state": "backoff", "last_error": "x" * 10_000}, {"state": "live"}])
    beat = Heartbeat(Link(writer), interval=1.0)
    for now in (0.0, 1.0, 2.0):
        beat.beat(now, lambda t: "stuck" if t == 2.0 else None, lambda: next(reports))
    messages = list(read_link(reader))
    assert messages == [
        {ALIVE: True, REPORT: {"state": "live"}},
        {ALIVE: True},
        {UNHEALTHY: "stuck", REPORT: {"state": "live"}},
    ]
