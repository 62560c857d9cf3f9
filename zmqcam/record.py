"""Recordings of a rig: ``zmqcam-daemon record``, and the file format replay and calibrate read.

    zmqcam-daemon record [-c CONFIG] [--cameras a,b] [--duration S] OUT_DIR

subscribes to each camera's ``<cam> jpeg`` topic and appends every frame, byte for byte as the
camera (or the grabber, for raw sources) encoded it, to the camera's own file.

The format, per camera (``OUT_DIR/<cam>.*``):

- ``<cam>.mjpeg``: the JPEGs, concatenated. ffmpeg, ffprobe, VLC and OpenCV open this as an MJPEG
  video (``ffplay cam0.mjpeg``; OpenCV: ``cv2.VideoCapture("cam0.mjpeg")``).
- ``<cam>.idx.csv``: one line per frame, ``offset,length,seq,capture_ns,recv_ns,width,height``: where
  the JPEG is, the grabber's sequence number, the capture time (ns since the epoch, the camera
  clock the rig stamped) and when the recorder received it. A spreadsheet opens it.

and for the whole rig, ``recording.json`` (the cameras, the config they were recorded with, and
once the recording ended, its time span) and ``replay.toml``, a config that plays the recording
back through the daemon (``zmqcam-daemon start -c OUT_DIR/replay.toml``).

Why not AVI or MKV: OpenCV's ``VideoWriter`` takes pixels, so it would decode and re-encode every
frame (lossy, and a CPU cost per frame); a container written by hand leaves an unplayable file when
the recorder is killed before it writes its index and sizes. Concatenated JPEGs are append-only, so
the bytes stay untouched and whatever was written is valid: each frame's bytes are written and
flushed before its index line, so a killed recorder leaves a valid prefix (a torn last line or a
partial last JPEG is ignored by the reader). Timing, which a raw MJPEG stream cannot carry, lives in
the index.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import FrameType
from typing import IO, Any, NamedTuple, TextIO

import zmq

from zmqcam.bus import curve, protocol, sockets
from zmqcam.config import Config
from zmqcam.errors import ProtocolError, RecordingError
from zmqcam.files import write_atomic

__all__ = [
    "INDEX_SUFFIX",
    "MANIFEST",
    "REPLAY_CONFIG",
    "VIDEO_SUFFIX",
    "IndexEntry",
    "Recorder",
    "Recording",
    "RecordingError",
    "RecordingWriter",
    "Span",
    "Track",
    "TrackWriter",
    "add_command",
    "main",
]

FORMAT = "zmqcam-recording"
FORMAT_VERSION = 1
MANIFEST = "recording.json"
REPLAY_CONFIG = "replay.toml"
VIDEO_SUFFIX = ".mjpeg"
INDEX_SUFFIX = ".idx.csv"
INDEX_HEADER = "offset,length,seq,capture_ns,recv_ns,width,height"

#: a camera silent this long is reported lost (the recording goes on; its frames resume in its files)
LOST_AFTER = 2.0
#: with no frame at all after this long, say what is probably wrong
NO_FRAMES_HINT_AFTER = 5.0
#: frames the recorder's socket may hold while the disk is slow (the grabber's own queue is tiny)
RECV_HWM = 256
_POLL_MS = 100
#: a frame interval to assume when a recording has too few frames to measure one
DEFAULT_INTERVAL_NS = 100_000_000


class IndexEntry(NamedTuple):
    offset: int
    length: int
    seq: int
    capture_ns: int
    recv_ns: int
    width: int
    height: int


# ---------------------------------------------------------------------------------------------
# writing


class TrackWriter:
    """Appends one camera's frames: the JPEG bytes, then (flushed after them) its index line."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.video_path = directory / f"{name}{VIDEO_SUFFIX}"
        self.index_path = directory / f"{name}{INDEX_SUFFIX}"
        # "x": never overwrite a recording
        self._video: IO[bytes] = open(self.video_path, "xb")  # noqa: SIM115 - closed in close()
        self._index: TextIO = open(self.index_path, "x", encoding="ascii", newline="\n")  # noqa: SIM115
        self._index.write(INDEX_HEADER + "\n")
        self._index.flush()
        self.offset = 0
        self.frames = 0

    def write(self, jpeg: bytes | memoryview, seq: int, capture_ns: int, recv_ns: int, width: int, height: int) -> None:
        length = len(jpeg)
        self._video.write(jpeg)
        self._video.flush()
        self._index.write(f"{self.offset},{length},{seq},{capture_ns},{recv_ns},{width},{height}\n")
        self._index.flush()
        self.offset += length
        self.frames += 1

    def close(self) -> None:
        self._video.close()
        self._index.close()


# ---------------------------------------------------------------------------------------------
# reading


class Track:
    """One camera of a recording: its index, and its JPEGs read on demand. Close it (or use ``with``)."""

    def __init__(self, video_path: str | os.PathLike[str]) -> None:
        self.video_path = Path(video_path)
        if not self.video_path.exists():
            raise RecordingError(f"{self.video_path}: no such file")
        if not self.video_path.name.endswith(VIDEO_SUFFIX):
            raise RecordingError(f"{self.video_path}: not a recording ({VIDEO_SUFFIX} file)")
        self.name = self.video_path.name[: -len(VIDEO_SUFFIX)]
        self.index_path = self.video_path.with_name(self.name + INDEX_SUFFIX)
        self.damaged = 0  # index lines that name no complete frame
        try:
            self._fd = os.open(self.video_path, os.O_RDONLY)
        except OSError as exc:
            raise RecordingError(f"{self.video_path}: {exc.strerror or exc}") from None
        try:
            self.entries = self._read_index(os.fstat(self._fd).st_size)
        except BaseException:
            os.close(self._fd)
            raise
        self._closed = False

    def _read_index(self, video_size: int) -> list[IndexEntry]:
        try:
            text = self.index_path.read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise RecordingError(f"{self.index_path}: {exc.strerror or exc}") from None
        entries = []
        # a line without its newline is one a killed recorder did not finish: not a frame
        for line in text.split("\n")[:-1]:
            if not line or line == INDEX_HEADER:
                continue
            try:
                entry = IndexEntry(*(int(f) for f in line.split(",")))
            except (TypeError, ValueError):
                self.damaged += 1
                continue
            if entry.offset < 0 or entry.length <= 0 or entry.offset + entry.length > video_size:
                self.damaged += 1  # the bytes never reached the file
                continue
            entries.append(entry)
        return entries

    def __len__(self) -> int:
        return len(self.entries)

    def read(self, i: int) -> bytes:
        """The JPEG bytes of frame ``i``."""
        entry = self.entries[i]
        if self._closed:
            raise RecordingError(f"{self.video_path}: closed")
        return os.pread(self._fd, entry.length, entry.offset)

    def nearest(self, capture_ns: int) -> int:
        """The index of the frame captured nearest to ``capture_ns`` (the track must not be empty)."""
        # a linear scan: capture times need not be sorted (a camera's clock may have been reset)
        return min(range(len(self.entries)), key=lambda i: abs(self.entries[i].capture_ns - capture_ns))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)

    def __enter__(self) -> Track:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Span:
    """The rig-wide time span of a recording, the clock replay schedules every camera on."""

    first_ns: int  # the earliest capture of any camera
    last_ns: int  # the latest
    interval_ns: int  # the typical frame interval

    @property
    def period_ns(self) -> int:
        """One loop of the recording: from the first frame to one interval after the last."""
        return self.last_ns - self.first_ns + self.interval_ns


def span_of(tracks: Sequence[Track]) -> Span | None:
    """The span of some tracks, measured; None when none has a frame."""
    firsts = [t.entries[0].capture_ns for t in tracks if t.entries]
    if not firsts:
        return None
    lasts = [t.entries[-1].capture_ns for t in tracks if t.entries]
    gaps = sorted(
        b.capture_ns - a.capture_ns for t in tracks for a, b in pairwise(t.entries) if b.capture_ns > a.capture_ns
    )
    interval = gaps[len(gaps) // 2] if gaps else DEFAULT_INTERVAL_NS
    return Span(min(firsts), max(lasts), interval)


class Recording:
    """A recording directory: ``names`` of its cameras, ``track(name)``, its ``manifest`` and ``span``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise RecordingError(f"{self.path}: no such recording directory")
        self.manifest: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            manifest = json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))
            if isinstance(manifest, dict) and manifest.get("format") == FORMAT:
                self.manifest = manifest
        self.names = sorted(p.name[: -len(INDEX_SUFFIX)] for p in self.path.glob("*" + INDEX_SUFFIX))
        if not self.names:
            raise RecordingError(f"{self.path}: no recorded camera in it (no *{INDEX_SUFFIX} file)")

    def video_path(self, name: str) -> Path:
        return self.path / f"{name}{VIDEO_SUFFIX}"

    def track(self, name: str) -> Track:
        if name not in self.names:
            raise RecordingError(f"{self.path}: no camera {name!r} in it (it has {', '.join(self.names)})")
        return Track(self.video_path(name))

    @property
    def config_data(self) -> dict[str, Any] | None:
        """The config the rig was recorded with (TOML-shaped), when the manifest has it."""
        data = self.manifest.get("config")
        return data if isinstance(data, dict) else None

    def span(self) -> Span | None:
        """The rig-wide span: from the manifest of a finished recording, else measured."""
        s = self.manifest.get("span")
        if isinstance(s, dict) and all(isinstance(s.get(k), int) for k in ("first_ns", "last_ns", "interval_ns")):
            return Span(s["first_ns"], s["last_ns"], s["interval_ns"])
        tracks: list[Track] = []
        try:
            for name in self.names:
                tracks.append(self.track(name))
            return span_of(tracks)
        finally:
            for t in tracks:
                t.close()


# ---------------------------------------------------------------------------------------------
# the recorder


class RecordingWriter:
    """Writes a recording directory: each camera's track (created with its first frame), the manifest,
    and ``replay.toml``. ``close`` finishes the manifest with the recording's span."""

    def __init__(self, out_dir: str | os.PathLike[str], config: Config, cameras: Sequence[str]) -> None:
        self.out_dir = Path(out_dir)
        self.config = config
        self.cameras = list(cameras)
        for name in self.cameras:
            config.camera_named(name)  # KeyError for a camera the config does not have
        ours = [MANIFEST, *(f"{n}{suffix}" for n in self.cameras for suffix in (VIDEO_SUFFIX, INDEX_SUFFIX))]
        if any(self.out_dir.glob("*" + INDEX_SUFFIX)) or any((self.out_dir / name).exists() for name in ours):
            raise RecordingError(f"{self.out_dir}: already holds a recording; choose another directory")
        self._created_dir = not self.out_dir.exists()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"{self.out_dir}: cannot create: {exc.strerror or exc}") from None
        self.tracks: dict[str, TrackWriter] = {}
        self.started_ns = time.time_ns()
        self.closed = False
        self._write_manifest(None)
        (self.out_dir / REPLAY_CONFIG).write_text(replay_config_toml(config, self.out_dir, self.cameras))

    def write(
        self, name: str, jpeg: bytes | memoryview, seq: int, capture_ns: int, recv_ns: int, width: int, height: int
    ) -> None:
        track = self.tracks.get(name)
        if track is None:
            if name not in self.cameras:
                raise KeyError(name)
            track = self.tracks[name] = TrackWriter(self.out_dir, name)
        track.write(jpeg, seq, capture_ns, recv_ns, width, height)

    def frames(self, name: str) -> int:
        track = self.tracks.get(name)
        return track.frames if track is not None else 0

    def bytes(self, name: str) -> int:
        track = self.tracks.get(name)
        return track.offset if track is not None else 0

    def _write_manifest(self, ended_ns: int | None) -> None:
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "started_ns": self.started_ns,
            "ended_ns": ended_ns,
            "cameras": self.cameras,
            "frames": {n: self.frames(n) for n in self.cameras},
            "config": self.config.model_dump(mode="json", exclude_defaults=True),
        }
        if ended_ns is not None:
            readers = [Track(t.video_path) for t in self.tracks.values()]
            try:
                span = span_of(readers)
            finally:
                for r in readers:
                    r.close()
            if span is not None:
                data["span"] = {"first_ns": span.first_ns, "last_ns": span.last_ns, "interval_ns": span.interval_ns}
        # atomic: a reader (or a crash) never sees half a manifest
        write_atomic(self.out_dir / MANIFEST, json.dumps(data, indent=1) + "\n")

    def close(self) -> None:
        """Close the files and finish the manifest; without a single frame, remove what was written
        (an empty recording is none). Idempotent."""
        if self.closed:
            return
        self.closed = True
        for track in self.tracks.values():
            track.close()
        if not self.tracks:
            for name in (MANIFEST, REPLAY_CONFIG):
                (self.out_dir / name).unlink(missing_ok=True)
            if self._created_dir:
                with contextlib.suppress(OSError):
                    self.out_dir.rmdir()
            return
        self._write_manifest(time.time_ns())


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
    """Records the ``jpeg`` topics of ``cameras`` into ``out_dir``: ``run`` until stopped, then ``close``."""

    def __init__(self, config: Config, out_dir: str | os.PathLike[str], cameras: Sequence[str], ctx: zmq.Context[Any]):
        self.writer = RecordingWriter(out_dir, config, cameras)
        self.out_dir = self.writer.out_dir
        self.cameras = self.writer.cameras
        self.started = time.monotonic()
        self.malformed = 0
        self._last_frame = dict.fromkeys(self.cameras, 0.0)  # monotonic
        self._lost: set[str] = set()
        self._hinted = False
        endpoints = sorted({config.consumer_endpoint(n) for n in self.cameras})
        topics = [protocol.topic(n, protocol.JPEG) for n in self.cameras]
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
            if frame.stream not in self._last_frame or frame.kind != protocol.JPEG:
                self.malformed += 1
                continue
            name = frame.stream
            self.writer.write(name, frame.payload, frame.seq, frame.capture_ns, recv_ns, frame.width, frame.height)
            self._last_frame[name] = time.monotonic()

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
            silent_cams = [n for n, last in self._last_frame.items() if not last]
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
        return ", ".join(f"{n} {self.writer.frames(n)}{' (lost)' if n in self._lost else ''}" for n in self.cameras)

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


def replay_config_dict(config: Config, out_dir: Path, cameras: Sequence[str]) -> dict[str, Any]:
    """``config`` with the recorded cameras playing their recordings (kind "replay") and the others left out."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    data["camera"] = [
        {"name": cam["name"], "source": str((out_dir / f"{cam['name']}{VIDEO_SUFFIX}").resolve()), "kind": "replay"}
        | {k: v for k, v in cam.items() if k not in ("name", "source", "kind")}
        for cam in data["camera"]
        if cam["name"] in cameras
    ]
    stitched = data.get("stitch", {}).get("cameras")
    if stitched is not None:
        data["stitch"]["cameras"] = [n for n in stitched if n in cameras] or None
    return data


def replay_config_toml(config: Config, out_dir: Path, cameras: Sequence[str]) -> str:
    from zmqcam.import_config import render_toml

    header = (
        f"Plays the recording in {out_dir.resolve()} back as if the cameras were there:\n"
        f"    zmqcam-daemon start -c {(out_dir / REPLAY_CONFIG).resolve()}\n"
        "The config the rig was recorded with, each camera's source replaced by its recording.\n"
        "To run it beside the live daemon, give it another daemon.run_dir and http.port."
    )
    return render_toml(replay_config_dict(config, out_dir, cameras), header=header)


# ---------------------------------------------------------------------------------------------
# the command


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM set ``stop``: the loop then closes the files between two frames."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def cmd_record(args: argparse.Namespace) -> int:
    from zmqcam.cli import load_args_config
    from zmqcam.errors import UsageError

    config, _ = load_args_config(args)
    if args.cameras:
        cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
        unknown = [c for c in cameras if c not in {cam.name for cam in config.camera}]
        if unknown or not cameras:
            known = ", ".join(c.name for c in config.camera)
            raise UsageError(
                f"--cameras: no camera named {', '.join(unknown) or '(none)'} in the config (known: {known})"
            )
    else:
        cameras = [c.name for c in config.camera]
    if args.duration is not None and not args.duration > 0:
        raise UsageError(f"--duration: must be a positive number of seconds, not {args.duration:g}")
    stop = threading.Event()
    ctx = zmq.Context()
    try:
        try:
            recorder = Recorder(config, args.out_dir, list(dict.fromkeys(cameras)), ctx)
        except (RecordingError, OSError) as exc:
            raise UsageError(str(exc)) from None
        print(f"recording {', '.join(recorder.cameras)} to {recorder.out_dir} (Ctrl-C stops)", flush=True)
        with _stop_on_signals(stop), recorder:
            try:
                recorder.run(stop, args.duration, Progress())
            except OSError as exc:  # the disk is full, say: what was written so far stays valid
                raise UsageError(f"{recorder.out_dir}: cannot write: {exc.strerror or exc}") from None
    finally:
        ctx.term()
    if not recorder.frames:
        raise UsageError(f"no frames received from {', '.join(recorder.cameras)}: is the daemon running?")
    print(f"replay it: zmqcam-daemon start -c {recorder.out_dir / REPLAY_CONFIG}")
    return 0


def add_command(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "record",
        help="record the cameras' JPEG streams (untouched) with their timestamps",
        description="Record each camera's JPEG frames, untouched, to OUT_DIR/<cam>.mjpeg with a timestamp "
        "index (<cam>.idx.csv). Needs the daemon running. Ctrl-C stops cleanly.",
    )
    from zmqcam.cli import add_config_arguments

    add_config_arguments(p)
    p.add_argument("--cameras", help="comma-separated camera names (default: every camera)")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: at Ctrl-C)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory for the recording (created; must not hold one)")
    p.set_defaults(func=cmd_record)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m zmqcam.record [-c CONFIG] [--cameras a,b] [--duration S] OUT_DIR``."""
    from zmqcam.cli import run_single

    return run_single("record", add_command, argv)


if __name__ == "__main__":
    sys.exit(main())
