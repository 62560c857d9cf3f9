"""The recording file format: what ``zmqcam-daemon record`` writes and replay and calibrate read.

The format, per camera (``OUT_DIR/<cam>.*``):

- ``<cam>.mjpeg``: the JPEGs, concatenated, byte for byte as the camera (or the grabber, for raw
  sources) encoded them. ffmpeg, ffprobe, VLC and OpenCV open this as an MJPEG video (``ffplay
  cam0.mjpeg``; OpenCV: ``cv2.VideoCapture("cam0.mjpeg")``).
- ``<cam>.idx.csv``: one line per frame, ``offset,length,seq,capture_ns,recv_ns,width,height``: where
  the JPEG is, the grabber's sequence number, the capture time (ns since the epoch, the camera
  clock the rig stamped) and when the recorder received it. A spreadsheet opens it.

or, recorded with ``record --h264``, per stream (the panorama, ``pano.mp4``, and each camera whose
``<cam> h264`` topic exists):

- ``<name>.mp4``: the H.264 access units from the bus, remuxed into fragmented MP4 (nothing
  re-encoded; ``zmqcam.video.mp4file``), about a tenth of the MJPEG's size. The capture times are the
  file's own timestamps (from the first frame's capture time, kept in its metadata), so it needs no
  index: any player opens it, and ``Mp4Track`` reads it as ``Track`` reads the MJPEG one.

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

A replay of a panorama recording plays ``pano.mp4`` as one camera, ``panorama``, covering the whole
panorama (``replay.toml`` says so), so the daemon serves the recorded panorama as it was: its
stitcher, with one full-frame camera, passes the picture through.

Pure files: no sockets. The recorder that feeds a ``RecordingWriter`` from the bus is
``zmqcam.recording.recorder``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import IO, Any, NamedTuple, TextIO, TypeVar

import numpy as np
import simplejpeg

from zmqcam.config import Config
from zmqcam.config.toml import render_toml
from zmqcam.errors import RecordingError, VideoError
from zmqcam.files import write_atomic
from zmqcam.names import PANO
from zmqcam.video.mp4file import Mp4Reader, Mp4Recorder, RecordedFrame

__all__ = [
    "INDEX_HEADER",
    "INDEX_SUFFIX",
    "MANIFEST",
    "MP4_SUFFIX",
    "PANORAMA_CAMERA",
    "REPLAY_CONFIG",
    "VIDEO_SUFFIX",
    "IndexEntry",
    "Mp4Track",
    "Recording",
    "RecordingWriter",
    "Span",
    "Track",
    "TrackWriter",
    "open_track",
    "replay_config_dict",
    "replay_config_toml",
    "span_of",
]

FORMAT = "zmqcam-recording"
FORMAT_VERSION = 1
MANIFEST = "recording.json"
REPLAY_CONFIG = "replay.toml"
VIDEO_SUFFIX = ".mjpeg"
INDEX_SUFFIX = ".idx.csv"
INDEX_HEADER = "offset,length,seq,capture_ns,recv_ns,width,height"
#: a stream recorded as H.264 (``record --h264``)
MP4_SUFFIX = ".mp4"
#: the camera a replay of a panorama recording plays ``pano.mp4`` as (not "pano": that is the
#: stitcher's stream, which the replayed daemon makes from it)
PANORAMA_CAMERA = "panorama"
#: the ``video`` of a manifest: how the frames were recorded
MJPEG_VIDEO = "mjpeg"
H264_VIDEO = "h264"
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


_T = TypeVar("_T", bound="_Frames")


class _Frames:
    """What every track of a recording is asked, whatever its file: ``entries`` (one per frame, in
    file order), ``picture(i)``, ``nearest``, and ``close`` (or ``with``)."""

    entries: list[IndexEntry]

    def __len__(self) -> int:
        return len(self.entries)

    def picture(self, i: int) -> np.ndarray | None:
        raise NotImplementedError

    def nearest(self, capture_ns: int) -> int:
        """The index of the frame captured nearest to ``capture_ns`` (the track must not be empty)."""
        # a linear scan: capture times need not be sorted (a camera's clock may have been reset)
        return min(range(len(self.entries)), key=lambda i: abs(self.entries[i].capture_ns - capture_ns))

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Track(_Frames):
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

    def picture(self, i: int) -> np.ndarray | None:
        """Frame ``i`` as BGR pixels; None when its JPEG does not decode."""
        try:
            return simplejpeg.decode_jpeg(self.read(i), colorspace="BGR")
        except (ValueError, RuntimeError):
            return None

    def read(self, i: int) -> bytes:
        """The JPEG bytes of frame ``i``."""
        entry = self.entries[i]
        if self._closed:
            raise RecordingError(f"{self.video_path}: closed")
        return os.pread(self._fd, entry.length, entry.offset)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


class Mp4Track(_Frames):
    """One stream of an H.264 recording (``<name>.mp4``), asked what a ``Track`` is asked: ``entries``
    (capture times from the file's packets, nothing decoded; ``offset``, ``seq`` are the frame's
    number, ``length`` 0: there are no JPEG bytes) and ``picture(i)``, decoded in order (going back
    decodes again from the start). Close it (or use ``with``)."""

    def __init__(self, video_path: str | os.PathLike[str]) -> None:
        self.video_path = Path(video_path)
        if not self.video_path.exists():
            raise RecordingError(f"{self.video_path}: no such file")
        self.name = self.video_path.name.removesuffix(MP4_SUFFIX)
        self.damaged = 0
        try:
            with Mp4Reader(self.video_path) as reader:
                self.size = reader.size
                times = reader.capture_times()
        except VideoError as exc:
            raise RecordingError(str(exc)) from None
        w, h = self.size
        self.entries = [IndexEntry(i, 0, i, t, 0, w, h) for i, t in enumerate(times)]
        self._reader: Mp4Reader | None = None
        self._frames: Iterator[RecordedFrame] | None = None
        self._next = 0  # the number of the frame the decoder gives next

    def picture(self, i: int) -> np.ndarray | None:
        """Frame ``i`` as BGR pixels (the source's size); None past the decodable end."""
        if self._frames is None or i < self._next:
            self._rewind()
        assert self._frames is not None
        frame: RecordedFrame | None = None
        try:
            while self._next <= i:
                frame = next(self._frames, None)
                if frame is None:
                    return None
                self._next += 1
        except VideoError:
            return None
        return frame.image if frame is not None else None

    def _rewind(self) -> None:
        if self._reader is not None:
            self._reader.close()
        try:
            self._reader = Mp4Reader(self.video_path)
        except VideoError as exc:
            raise RecordingError(str(exc)) from None
        self._frames = self._reader.frames()
        self._next = 0

    def close(self) -> None:
        self._frames = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def open_track(video_path: str | os.PathLike[str]) -> Track | Mp4Track:
    """The track a recording's file holds: ``<name>.mp4`` (H.264), else ``<name>.mjpeg``."""
    return Mp4Track(video_path) if str(video_path).endswith(MP4_SUFFIX) else Track(video_path)


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


def span_of(tracks: Sequence[Track | Mp4Track]) -> Span | None:
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
        mjpeg = {p.name[: -len(INDEX_SUFFIX)] for p in self.path.glob("*" + INDEX_SUFFIX)}
        mp4 = {p.name[: -len(MP4_SUFFIX)] for p in self.path.glob("*" + MP4_SUFFIX)}
        self.names = sorted(mjpeg | mp4)
        if not self.names:
            raise RecordingError(f"{self.path}: no recorded camera in it (no *{INDEX_SUFFIX} or *{MP4_SUFFIX} file)")
        self._mp4 = mp4 - mjpeg

    def video_path(self, name: str) -> Path:
        return self.path / f"{name}{MP4_SUFFIX if name in self._mp4 else VIDEO_SUFFIX}"

    def track(self, name: str) -> Track | Mp4Track:
        if name not in self.names:
            raise RecordingError(f"{self.path}: no camera {name!r} in it (it has {', '.join(self.names)})")
        return open_track(self.video_path(name))

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
        tracks: list[Track | Mp4Track] = []
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
    """Writes a recording directory: each stream's track (created with its first frame), the manifest,
    and ``replay.toml``. ``close`` finishes the manifest with the recording's span.

    ``streams`` are camera names, whose ``jpeg`` frames go to ``write``; with ``h264``, the streams'
    access units go to ``write_h264`` instead, and ``pano`` may be among them."""

    def __init__(
        self, out_dir: str | os.PathLike[str], config: Config, cameras: Sequence[str], *, h264: bool = False
    ) -> None:
        self.out_dir = Path(out_dir)
        self.config = config
        self.cameras = list(cameras)
        self.h264 = h264
        for name in self.cameras:
            if not (h264 and name == PANO):
                config.camera_named(name)  # KeyError for a camera the config does not have
        suffixes = (MP4_SUFFIX,) if h264 else (VIDEO_SUFFIX, INDEX_SUFFIX)
        ours = [MANIFEST, *(f"{n}{suffix}" for n in self.cameras for suffix in suffixes)]
        held = any(self.out_dir.glob("*" + INDEX_SUFFIX)) or any(self.out_dir.glob("*" + MP4_SUFFIX))
        if held or any((self.out_dir / name).exists() for name in ours):
            raise RecordingError(f"{self.out_dir}: already holds a recording; choose another directory")
        self._created_dir = not self.out_dir.exists()
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(f"{self.out_dir}: cannot create: {exc.strerror or exc}") from None
        self.tracks: dict[str, TrackWriter] = {}
        #: h264: each stream's MP4, made at its first access unit (a keyframe's size is the file's)
        self.videos: dict[str, Mp4Recorder] = {}
        self.started_ns = time.time_ns()
        self.closed = False
        self._write_manifest(None)
        self._write_replay_config()

    def write(
        self, name: str, jpeg: bytes | memoryview, seq: int, capture_ns: int, recv_ns: int, width: int, height: int
    ) -> None:
        track = self.tracks.get(name)
        if track is None:
            if name not in self.cameras or self.h264:
                raise KeyError(name)
            track = self.tracks[name] = TrackWriter(self.out_dir, name)
        track.write(jpeg, seq, capture_ns, recv_ns, width, height)

    def write_h264(
        self,
        name: str,
        data: bytes,
        keyframe: bool,
        capture_ns: int,
        size: tuple[int, int],
        coded_size: tuple[int, int],
        fps: float,
    ) -> bool:
        """Append one access unit of ``name`` to ``<name>.mp4``; False when it was skipped (the file
        starts at a keyframe). VideoError when the file cannot be written."""
        video = self.videos.get(name)
        if video is None:
            if name not in self.cameras or not self.h264:
                raise KeyError(name)
            if not keyframe:
                return False
            video = self.videos[name] = Mp4Recorder(self.out_dir / f"{name}{MP4_SUFFIX}", size, coded_size, fps)
        return video.write(data, keyframe, capture_ns)

    def frames(self, name: str) -> int:
        if name in self.videos:
            return self.videos[name].frames
        track = self.tracks.get(name)
        return track.frames if track is not None else 0

    def bytes(self, name: str) -> int:
        if name in self.videos:
            with contextlib.suppress(OSError):
                return self.videos[name].path.stat().st_size
            return 0
        track = self.tracks.get(name)
        return track.offset if track is not None else 0

    def _paths(self) -> list[Path]:
        return [t.video_path for t in self.tracks.values()] + [v.path for v in self.videos.values()]

    def _write_manifest(self, ended_ns: int | None) -> None:
        data: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "video": H264_VIDEO if self.h264 else MJPEG_VIDEO,
            "started_ns": self.started_ns,
            "ended_ns": ended_ns,
            "cameras": self.cameras,
            "frames": {n: self.frames(n) for n in self.cameras},
            "config": self.config.model_dump(mode="json", exclude_defaults=True),
        }
        if ended_ns is not None:
            readers = [open_track(path) for path in self._paths()]
            try:
                span = span_of(readers)
            finally:
                for r in readers:
                    r.close()
            if span is not None:
                data["span"] = {"first_ns": span.first_ns, "last_ns": span.last_ns, "interval_ns": span.interval_ns}
        # atomic: a reader (or a crash) never sees half a manifest
        write_atomic(self.out_dir / MANIFEST, json.dumps(data, indent=1) + "\n")

    def _write_replay_config(self) -> None:
        """``replay.toml``: the recorded cameras; an H.264 recording's cameras once known (their
        topics may not exist), else its panorama as one camera."""
        if not self.h264:
            text = replay_config_toml(self.config, self.out_dir, self.cameras)
        else:
            cameras = [n for n in self.cameras if n != PANO and self.frames(n)]
            text = replay_config_toml(self.config, self.out_dir, cameras, h264=True, panorama=not cameras)
        (self.out_dir / REPLAY_CONFIG).write_text(text)

    def close(self) -> None:
        """Close the files and finish the manifest; without a single frame, remove what was written
        (an empty recording is none). Idempotent."""
        if self.closed:
            return
        self.closed = True
        for track in self.tracks.values():
            track.close()
        problems = []
        for video in self.videos.values():
            try:
                video.close()
            except VideoError as exc:  # the frames written so far stay readable
                problems.append(str(exc))
        if not any(self.frames(n) for n in self.cameras):
            for path in self._paths():
                path.unlink(missing_ok=True)
            for name in (MANIFEST, REPLAY_CONFIG):
                (self.out_dir / name).unlink(missing_ok=True)
            if self._created_dir:
                with contextlib.suppress(OSError):
                    self.out_dir.rmdir()
            return
        self._write_manifest(time.time_ns())
        if self.h264:
            self._write_replay_config()
        if problems:
            raise RecordingError("; ".join(problems))


def replay_config_dict(
    config: Config, out_dir: Path, cameras: Sequence[str], *, h264: bool = False, panorama: bool = False
) -> dict[str, Any]:
    """``config`` with the recorded cameras playing their recordings (kind "replay"; ``h264``: their
    ``.mp4``, else their ``.mjpeg``) and the others left out; with ``panorama``, ``pano.mp4`` played
    as the one camera ``PANORAMA_CAMERA``, covering the whole panorama. A replay never pushes to the
    rig's media servers: ``publish`` is left out."""
    data = config.model_dump(mode="json", exclude_defaults=True)
    data.pop("publish", None)
    if panorama:
        width, height = config.pano_size
        data["camera"] = [
            {
                "name": PANORAMA_CAMERA,
                "source": str((out_dir / f"{PANO}{MP4_SUFFIX}").resolve()),
                "kind": "replay",
                "size": [width, height],
                "fps": config.pano_fps,
            }
        ]
        data.get("stitch", {}).pop("cameras", None)
        return data
    suffix = MP4_SUFFIX if h264 else VIDEO_SUFFIX
    data["camera"] = [
        {"name": cam["name"], "source": str((out_dir / f"{cam['name']}{suffix}").resolve()), "kind": "replay"}
        | {k: v for k, v in cam.items() if k not in ("name", "source", "kind")}
        for cam in data["camera"]
        if cam["name"] in cameras
    ]
    stitched = data.get("stitch", {}).get("cameras")
    if stitched is not None:
        data["stitch"]["cameras"] = [n for n in stitched if n in cameras] or None
    return data


def replay_config_toml(
    config: Config, out_dir: Path, cameras: Sequence[str], *, h264: bool = False, panorama: bool = False
) -> str:
    what = (
        "the recorded panorama, played as one camera" if panorama else "each camera's source replaced by its recording"
    )
    header = (
        f"Plays the recording in {out_dir.resolve()} back as if the cameras were there:\n"
        f"    zmqcam-daemon start -c {(out_dir / REPLAY_CONFIG).resolve()}\n"
        f"The config the rig was recorded with, {what}.\n"
        "To run it beside the live daemon, give it another daemon.run_dir and http.port."
    )
    return render_toml(replay_config_dict(config, out_dir, cameras, h264=h264, panorama=panorama), header=header)
