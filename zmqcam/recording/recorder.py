"""The recorder: a bus consumer that writes each camera's ``<cam> jpeg`` frames into a recording.

It subscribes to the cameras' ``jpeg`` topics where consumers connect (nothing is decoded or
re-encoded) and appends every frame to its camera's track (``zmqcam.recording.format``); a camera
that drops out is noted and its gap recorded. ``zmqcam-daemon record`` runs it.

With ``h264`` (``record --h264``) it subscribes to ``pano h264`` instead (which makes the stitcher
encode, as any subscriber does) and to each camera's ``<cam> h264``, a topic that exists only if
something publishes it (a camera track appears with its first keyframe), and remuxes the access
units into ``<name>.mp4``, nothing re-encoded. A unit lost on the bus (a gap in ``x.au``) makes that
stream's file wait for the next keyframe, so no picture in it is built on a missing reference.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO

import zmq

from zmqcam.bus import curve, protocol, sockets
from zmqcam.config import Config
from zmqcam.errors import ProtocolError, RecordingError, VideoError
from zmqcam.names import PANO
from zmqcam.recording.format import RecordingWriter

#: a camera silent this long is reported lost (the recording goes on; its frames resume in its files)
LOST_AFTER = 2.0
#: with no frame at all after this long, say what is probably wrong
NO_FRAMES_HINT_AFTER = 5.0
#: frames the recorder's socket may hold while the disk is slow (the grabber's own queue is tiny)
RECV_HWM = 256
_POLL_MS = 100


class Progress:
    """The progress line: redrawn in place with ``\\r`` on a terminal, else one line per ``interval``."""

    def __init__(self, stream: TextIO | None = None, tty: bool | None = None, interval: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (0.25 if self.tty else 1.0)
        self._next = 0.0
        self._width = 0

    def update(self, text: str, now: float) -> None:
        if now < self._next:
            return
        self._next = now + self.interval
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        """A message on a line of its own (a camera lost or back), not overwritten by the progress line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(text + "\n")
        self.stream.flush()
        self._next = 0.0


class Recorder:
    """Records the ``jpeg`` topics of ``cameras`` into ``out_dir`` (with ``h264``: ``pano h264`` and
    the cameras' ``h264`` topics): ``run`` until stopped, then ``close``."""

    def __init__(
        self,
        config: Config,
        out_dir: str | os.PathLike[str],
        cameras: Sequence[str],
        ctx: zmq.Context[Any],
        *,
        h264: bool = False,
    ):
        self.h264 = h264
        self.kind = protocol.H264 if h264 else protocol.JPEG
        streams = [PANO, *cameras] if h264 else list(cameras)
        self.writer = RecordingWriter(out_dir, config, streams, h264=h264)
        self.out_dir = self.writer.out_dir
        self.cameras = self.writer.cameras
        #: the streams that must deliver (an h264 camera topic may not exist at all)
        self.required = [PANO] if h264 else self.cameras
        self.started = time.monotonic()
        self.malformed = 0
        self._last_frame = dict.fromkeys(self.cameras, 0.0)  # monotonic
        #: h264: each stream's units are written from a keyframe on, and after a gap from the next one
        self._gates = {name: protocol.UnitGate() for name in self.cameras}
        self._lost: set[str] = set()
        self._hinted = False
        endpoints = sorted({config.consumer_endpoint(n) for n in self.cameras})
        topics = [protocol.topic(n, self.kind) for n in self.cameras]
        self.sub = sockets.make_subscriber(ctx, endpoints, topics, curve=curve.client_keys(config), rcvhwm=RECV_HWM)

    # -- the loop

    def run(self, stop: threading.Event, duration: float | None = None, progress: Progress | None = None) -> None:
        """Record until ``stop`` is set or ``duration`` seconds have passed."""
        deadline = self.started + duration if duration is not None else None
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            timeout = _POLL_MS if deadline is None else max(0, min(_POLL_MS, int((deadline - now) * 1000) + 1))
            if self.sub.poll(timeout, zmq.POLLIN):
                self._drain()
            self._watch(time.monotonic(), progress)
        if progress is not None:
            progress.note(self.summary_line())

    def _malformed(self, exc: ProtocolError) -> None:
        self.malformed += 1

    def _drain(self) -> None:
        for frame in sockets.pending_frames(self.sub, RECV_HWM, self._malformed):
            recv_ns = time.time_ns()
            if frame.stream not in self._last_frame or frame.kind != self.kind:
                self.malformed += 1
                continue
            name = frame.stream
            if self.h264:
                self._write_unit(frame)
            else:
                self.writer.write(name, frame.payload, frame.seq, frame.capture_ns, recv_ns, frame.width, frame.height)
            self._last_frame[name] = time.monotonic()

    @property
    def gaps(self) -> int:
        """h264 units lost on the bus."""
        return sum(gate.gaps for gate in self._gates.values())

    def _write_unit(self, frame: protocol.Frame) -> None:
        name = frame.stream
        if not self._gates[name].admit(frame):
            return
        fps = frame.extra.get("fps")
        try:
            self.writer.write_h264(
                name,
                bytes(frame.payload),
                frame.keyframe,
                frame.capture_ns,
                (frame.width, frame.height),
                (frame.extra["coded_w"], frame.extra["coded_h"]),
                float(fps) if isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0 else 30.0,
            )
        except VideoError as exc:
            raise RecordingError(str(exc)) from None

    def _watch(self, now: float, progress: Progress | None) -> None:
        """Report cameras that went silent or came back, and the progress line."""
        notes = []
        for name, last in self._last_frame.items():
            if not last:
                continue
            silent = now - last
            if name not in self._lost and silent >= LOST_AFTER:
                self._lost.add(name)
                notes.append(f"{name}: no frames for {silent:.1f} s; still recording the others")
            elif name in self._lost and silent < LOST_AFTER:
                self._lost.discard(name)
                notes.append(f"{name}: frames again")
        if not self._hinted and now - self.started >= NO_FRAMES_HINT_AFTER:
            silent_cams = [n for n in self.required if not self._last_frame[n]]
            if silent_cams:
                self._hinted = True
                notes.append(
                    f"no frames yet from {', '.join(silent_cams)} "
                    "(is the daemon running with this config? zmqcam-daemon status -c ...)"
                )
        if progress is not None:
            for text in notes:
                progress.note(text)
            progress.update(self.progress_line(now), now)

    # -- reporting

    @property
    def frames(self) -> int:
        return sum(self.writer.frames(n) for n in self.cameras)

    @property
    def bytes(self) -> int:
        return sum(self.writer.bytes(n) for n in self.cameras)

    def _per_camera(self) -> str:
        shown = [n for n in self.cameras if n in self.required or self._last_frame[n]]
        return ", ".join(f"{n} {self.writer.frames(n)}{' (lost)' if n in self._lost else ''}" for n in shown)

    def progress_line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        mb = self.bytes / 1e6
        return f"recording {elapsed:6.1f} s  {self.frames} frames  {mb:.1f} MB  ({self._per_camera()})"

    def summary_line(self) -> str:
        elapsed = time.monotonic() - self.started
        mb = self.bytes / 1e6
        return f"recorded {self.frames} frames, {mb:.1f} MB in {elapsed:.1f} s to {self.out_dir} ({self._per_camera()})"

    def close(self) -> None:
        """Close the socket and the recording. Idempotent."""
        if not self.sub.closed:
            self.sub.close(linger=0)
        self.writer.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
