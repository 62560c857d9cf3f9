"""A real RTSP server in record mode, as a media server receives a push: ``ffmpeg -rtsp_flags listen``
on 127.0.0.1, decoding what it receives to grey frames on its stdout (counted by a reader thread)
and saying on its stderr what it received (codec and size, parsed from its stream line)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading

import numpy as np

from tests.helpers.waiting import needs

_STREAM_LINE = re.compile(r"Video: (\w+).*?, (\d+)x(\d+)")


class RtspServer:
    """``ffmpeg`` listening for one ANNOUNCE/RECORD at ``rtsp://127.0.0.1:PORT/PATH``; it exits when
    the pusher tears down or disconnects."""

    def __init__(self, port: int, path: str = "zmqcam") -> None:
        needs(shutil.which("ffmpeg") is not None, "needs ffmpeg (Debian package ffmpeg): the RTSP server")
        self.url = f"rtsp://127.0.0.1:{port}/{path}"
        self.received = 0
        self.codec: str | None = None
        self.size: tuple[int, int] | None = None
        self.last_frame: np.ndarray | None = None
        self.proc = subprocess.Popen(
            ["ffmpeg", "-nostdin", "-nostats", "-v", "info", "-rtsp_flags", "listen", "-i", self.url,
             "-f", "rawvideo", "-pix_fmt", "gray", "-"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._read_frames, self._read_log)]
        for thread in self._threads:
            thread.start()

    def _read_log(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            match = _STREAM_LINE.search(raw.decode(errors="replace"))
            if match and self.size is None:
                self.codec = match.group(1)
                self.size = (int(match.group(2)), int(match.group(3)))

    def _read_frames(self) -> None:
        assert self.proc.stdout is not None
        pending = bytearray()
        while chunk := self.proc.stdout.read(65536):
            self.received += len(chunk)
            pending += chunk
            if self.size is None:  # its stream line comes before any frame; kept until it is read
                continue
            frame = self.size[0] * self.size[1]
            whole = len(pending) // frame
            if whole:
                picture = bytes(pending[(whole - 1) * frame : whole * frame])
                self.last_frame = np.frombuffer(picture, np.uint8).reshape(self.size[1], self.size[0])
                del pending[: whole * frame]

    @property
    def frames(self) -> int:
        """Frames decoded so far (0 until its stream line told the size)."""
        return self.received // (self.size[0] * self.size[1]) if self.size else 0

    def pause(self) -> None:
        """SIGSTOP: alive, connection open, reading nothing (a stalled server)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)  # works on a stopped process too
        self.proc.wait(5)
        for thread in self._threads:
            thread.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
