"""Reading frames (panoramas above all) through a ``Subscriber`` until they show a state: what each
slot of a panorama showed, waiting for a frame that satisfies a predicate (with a deadline), and
the predicates the fault and watchdog tests share."""

from __future__ import annotations

import time
from collections.abc import Callable

from zmqcam import Subscriber
from zmqcam.bus.protocol import Frame

__all__ = ["all_live", "captured_after", "live_since", "panoramas_until_back", "read_until", "source_states"]


def source_states(frame: Frame) -> dict[str, str]:
    """What each camera's slot of this panorama showed: ``{camera: state}`` ("live", "stale", ...)."""
    return {s["name"]: s["state"] for s in frame.extra["sources"]}


def read_until(sub: Subscriber, predicate: Callable[[Frame], bool], timeout: float, what: str) -> Frame:
    """The first frame read that satisfies ``predicate``, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Frame | None = None
    while time.monotonic() < deadline:
        ok, frame = sub.read(timeout=0.5)
        if ok and frame is not None:
            last = frame
            if predicate(frame):
                return frame
    seen = source_states(last) if last is not None and last.stream == "pano" else last
    raise AssertionError(f"{sub.stream}: no frame with {what} within {timeout} s (last: {seen})")


def all_live(frame: Frame) -> bool:
    """Every camera's slot of this panorama live."""
    return not frame.extra["stale"]


def captured_after(frame: Frame, name: str, t_ns: int) -> bool:
    """Whether ``name``'s slot of this panorama was made from a frame captured after ``t_ns``."""
    entry = next(s for s in frame.extra["sources"] if s["name"] == name)
    return bool(entry.get("t_cap", 0) > t_ns)


def live_since(frame: Frame, name: str, t_ns: int) -> bool:
    """Every camera live in this panorama, and ``name``'s slot made from a frame captured after
    ``t_ns`` (a slot stays "live" on its last frame for stale_after seconds)."""
    return all_live(frame) and captured_after(frame, name, t_ns)


def panoramas_until_back(sub: Subscriber, name: str, t_ns: int, timeout: float, what: str) -> list[Frame]:
    """Every panorama read until ``name`` is live again from a frame captured after ``t_ns``
    (``live_since``), so a test can check what the other slots showed meanwhile."""
    frames: list[Frame] = []

    def back(frame: Frame) -> bool:
        frames.append(frame)
        return live_since(frame, name, t_ns)

    read_until(sub, back, timeout, what)
    return frames
