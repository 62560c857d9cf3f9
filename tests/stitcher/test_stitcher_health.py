"""The stitcher's own health check (issue 18): its loop can run while its work is stuck, and its
heartbeat must then say so, so that the supervisor's watchdog restarts it.

No real part can make the stitcher's loop run without making panoramas (pacing is its own logic),
so the stuck stitcher here is the real one with one method replaced in the test: its pacing never
comes due, which stands for any bug that keeps the loop alive while the work stops. Everything
else is real: synthetic grabbers, the process shell, the Link pipe the supervisor reads.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from tests.helpers import Children, wait_for
from zmqcam import Subscriber
from zmqcam.config import Config
from zmqcam.grabber import run_grabber
from zmqcam.names import STITCHER
from zmqcam.process import ALIVE, UNHEALTHY, read_link, run_child
from zmqcam.stitcher import run_stitcher
from zmqcam.stitcher.stitcher import STUCK_MIN, Stitcher


class NeverDueStitcher(Stitcher):
    """A stitcher with a pacing bug: no panorama ever comes due."""

    def _due(self, now: float) -> float | None:
        return None


def run_never_due_stitcher(config: Config, *, link: Connection | None = None) -> None:
    run_child(STITCHER, config, lambda ctx: NeverDueStitcher(config, ctx), publishes=True, link=link)


class Heartbeats:
    """The supervisor's end of a child's Link: every message the child sent, in order."""

    def __init__(self, reader: Connection) -> None:
        self.reader = reader
        self.messages: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        while self.reader.poll(0.1):
            self.messages.extend(read_link(self.reader))
        return self.messages

    def wait(self, predicate: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict[str, Any]:
        seen = len(self.messages)

        def found() -> Any:
            return next((m for m in self.read()[seen:] if predicate(m)), None)

        return wait_for(found, timeout, interval=0.1, message=what)


def start_stitcher(
    children: Children, target: Callable[..., None], config: Config
) -> tuple[multiprocessing.process.BaseProcess, Heartbeats]:
    """A stitcher process with a Link, as the supervisor starts it, once it beats."""
    reader, writer = multiprocessing.get_context("spawn").Pipe(duplex=False)
    proc = children.start(target, config, link=writer)
    writer.close()  # the child has its own copy
    beats = Heartbeats(reader)
    beats.wait(lambda m: m.get(ALIVE) is True, 30, "the stitcher's first heartbeat")
    return proc, beats


def test_a_stitcher_whose_panoramas_stop_says_so_in_its_heartbeat(
    make_config: Callable[..., Config], children: Children
) -> None:
    """With live cameras and a panorama subscriber, a healthy stitcher's heartbeats all say alive;
    a stitcher whose panoramas never come says "unhealthy", naming how long frames have waited,
    within STUCK_MIN plus the waking time, and is alive again once nobody watches (nothing
    waits then). Guards the stitcher that keeps beating while every viewer is frozen."""
    config = make_config(cameras=2, camera={"fps": 10.0, "idle_timeout": 1.0}, stitch={"stale_after": 1.0})
    for cam in config.camera:
        children.start(run_grabber, config, cam.name)

    healthy, beats = start_stitcher(children, run_stitcher, config)
    with Subscriber("pano", config=config) as sub:
        ok, _ = sub.read(timeout=30)
        assert ok, "no panorama from the healthy stitcher"
        watched = time.monotonic() + config.stitch.stale_after + STUCK_MIN + 2
        while time.monotonic() < watched:
            assert sub.read(timeout=2)[0], "the healthy stitcher stopped making panoramas"
    assert not [m for m in beats.read() if UNHEALTHY in m], beats.messages
    children.stop(healthy)

    _, beats = start_stitcher(children, run_never_due_stitcher, config)
    with Subscriber("pano", config=config) as sub:
        said = beats.wait(lambda m: UNHEALTHY in m, config.stitch.stale_after + STUCK_MIN + 15, "unhealthy")
        assert not sub.read(timeout=0)[0]
    assert said[UNHEALTHY].startswith("pano: frames have been waiting "), said
    assert "for a panorama" in said[UNHEALTHY] and "0 panoramas made" in said[UNHEALTHY], said
    beats.wait(lambda m: m.get(ALIVE) is True, 15, "alive again once nobody watches")
