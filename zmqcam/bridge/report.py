"""The body of ``/status``: what the grabbers and the stitcher last published (the bridge subscribes
to every ``status`` topic for good), merged with the bridge's own per-stream counters.

A process not heard from is "unknown" while the bridge has listened for less than
``STATUS_DOWN_AFTER`` (it just started; every process publishes within a second, and at once when
the bridge subscribes), and "down" after that; a process whose newest status is older than that is
"down" too. Status bodies come from our own processes but are read defensively: a missing or
mistyped field shows as 0 or null, never as an exception in the status handler.

The processes of the daemon (state, pid, restarts, and how often the watchdog found one hung) come
from the supervisor's process table, ``daemon.json`` in the run_dir, re-read only when it changed;
so do the publish targets' reports (a publish target only subscribes: it has no status topic).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from zmqcam.bridge.hub import Channel, Hub
from zmqcam.bus.status import CAMERA_STATES, DOWN, LIVE, NO_SIGNAL, RUNNING, STATUS_DOWN_AFTER, UNKNOWN
from zmqcam.names import PANO, PUBLISH_PREFIX, STATE_FILE
from zmqcam.video.push import COUNTERS as PUSH_COUNTERS


def _num(value: Any) -> float | int | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def channel_status(channel: Channel, viewers: Mapping[str, int]) -> dict[str, Any]:
    return {
        "clients": viewers.get(channel.stream, 0),
        "subscribed": channel.users > 0,
        "received": channel.received,
        "skipped": channel.skipped,
        "malformed": channel.malformed,
    }


def _not_up(hub: Hub, status: dict[str, Any] | None) -> str:
    """What a process that publishes no current status is: unknown until the bridge has listened long
    enough to know, down after."""
    just_started = time.monotonic() - hub.listening_since < STATUS_DOWN_AFTER
    return UNKNOWN if status is None and just_started else DOWN


def camera_status(hub: Hub, name: str, viewers: Mapping[str, int]) -> dict[str, Any]:
    st, age = hub.status_of(name)
    up = st is not None and age is not None and age < STATUS_DOWN_AFTER
    body = st or {}
    grabber_state = str(body.get("state")) if up else _not_up(hub, st)
    frame_age = _num(body.get("last_frame_age"))
    return {
        "state": UNKNOWN if grabber_state == UNKNOWN else CAMERA_STATES.get(grabber_state, NO_SIGNAL),
        "grabber_state": grabber_state,
        "fps": (_num(body.get("fps")) or 0.0) if up else 0.0,
        "last_frame_age": round(frame_age + (age or 0.0), 3) if frame_age is not None else None,
        "reconnects": _count(body.get("reconnects")),
        "decode_errors": _count(body.get("decode_errors")) + _count(body.get("corrupt")),
        "drops": _count(body.get("rate_dropped")),
        "timeouts": _count(body.get("timeouts")),
        "frames": _count(body.get("frames")),
        "bytes": _count(body.get("bytes")),
        "warmup_frames": _count(body.get("warmup_frames")),
        "warmup": str(body.get("warmup") or ""),
        "controls": body.get("controls") if isinstance(body.get("controls"), dict) else None,
        "width": _count(body.get("width")),
        "height": _count(body.get("height")),
        "last_error": str(body.get("last_error") or ""),
        "subscribers": body.get("subscribers") if isinstance(body.get("subscribers"), dict) else {},
        "status_age": round(age, 3) if age is not None else None,
        "http": channel_status(hub.channels[name], viewers),
    }


def stitcher_status(hub: Hub, viewers: Mapping[str, int]) -> dict[str, Any]:
    channel = hub.channels.get(PANO)
    if channel is None:
        return {"state": "disabled"}
    st, age = hub.status_of(PANO)
    up = st is not None and age is not None and age < STATUS_DOWN_AFTER
    body = st or {}
    upstream = bool(body.get("upstream")) and up
    cameras = body.get("cameras")
    if not isinstance(cameras, dict):
        cameras = {}
    stale = [n for n, c in cameras.items() if not (isinstance(c, dict) and c.get("state") == LIVE)]
    return {
        "state": ("running" if upstream else "idle") if up else _not_up(hub, st),
        "fps": (_num(body.get("fps")) or 0.0) if up else 0.0,
        "spread_ms": _num(body.get("spread_ms")),
        "seam": str(body.get("seam") or ""),
        "exposure": str(body.get("exposure") or ""),
        "sync": body.get("sync") is True,
        # per camera [B, G, R] (zmqcam.image.exposure); null with exposure "off"
        "gains": {
            n: c.get("gain") for n, c in cameras.items() if isinstance(c, dict) and isinstance(c.get("gain"), list)
        },
        "width": _count(body.get("width")),
        "height": _count(body.get("height")),
        "panoramas": _count(body.get("panoramas")),
        "jpeg_encoded": _count(body.get("jpeg_encoded")),
        "h264_encoding": bool(body.get("h264_encoding")) and up,
        "h264_encoded": _count(body.get("h264_encoded")),
        "h264_skipped": _count(body.get("h264_skipped")),
        "stale": stale if upstream else [],
        "subscribers": body.get("subscribers") if isinstance(body.get("subscribers"), dict) else {},
        "status_age": round(age, 3) if age is not None else None,
        "http": channel_status(channel, viewers),
    }


class ProcessTable:
    """The supervisor's process table as ``/status`` shows it: per process its ``state``, ``pid``,
    ``restarts``, ``hangs`` (restarts the watchdog caused) and ``hung`` (why, the last time). Empty
    without a supervisor (a bridge run alone). The file is re-read only when it was replaced."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / STATE_FILE
        self._version: tuple[int, int, int] | None = None
        self._table: dict[str, dict[str, Any]] = {}

    def read(self) -> dict[str, dict[str, Any]]:
        try:
            info = os.stat(self.path)
        except OSError:
            self._version, self._table = None, {}
            return self._table
        version = (info.st_ino, info.st_mtime_ns, info.st_size)  # written by rename: a new inode each time
        if version != self._version:
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return self._table  # being replaced: the previous table until the next read
            children = data.get("children") if isinstance(data, dict) else None
            self._table = {
                str(name): _process(entry)
                for name, entry in (children.items() if isinstance(children, dict) else ())
                if isinstance(entry, dict)
            }
            self._version = version
        return self._table


def _process(entry: dict[str, Any]) -> dict[str, Any]:
    pid = entry.get("pid")
    hung = entry.get("hung")
    return {
        "state": str(entry.get("state")),
        "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        "restarts": _count(entry.get("restarts")),
        "hangs": _count(entry.get("hangs")),
        "hung": hung if isinstance(hung, str) else None,
        **({"report": entry["report"]} if isinstance(entry.get("report"), dict) else {}),
    }


def publish_status(processes: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each ``[[publish]]`` target (``publish:NAME`` in the process table) by NAME: its push ``state``
    (waiting, connecting, live, backoff; its process's state when that is not running), ``url``,
    the counters, ``last_error`` and ``retry_in``, as its process last reported them."""
    targets = {}
    for process, entry in processes.items():
        if not process.startswith(PUBLISH_PREFIX):
            continue
        told = entry.get("report")
        told = told if isinstance(told, dict) else {}
        running = entry.get("state") == RUNNING
        targets[process[len(PUBLISH_PREFIX) :]] = {
            "state": str(told.get("state") or UNKNOWN) if running else str(entry.get("state")),
            "url": str(told.get("url") or ""),
            **{key: _count(told.get(key)) for key in PUSH_COUNTERS},
            "last_error": str(told.get("last_error") or ""),
            "retry_in": _num(told.get("retry_in")) or 0.0,
            "restarts": _count(entry.get("restarts")),
        }
    return targets
