"""Acceptance tests of real camera protocols, end to end: real grabber processes (and the stitcher
where the panorama is involved) reading the fake ESP32-CAM (``zmqcam.testing.fakecam``, a thread
of this process on 127.0.0.1), GStreamer's RTSP server, and a video file, read back through the
client library and the status every process publishes.

Each test names the regression it guards. Timing bounds are generous for a loaded 2-core machine,
yet every wait is bounded; cameras run at 10-20 fps to keep the CPU load small.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import simplejpeg

from tests.helpers import Children, bus_status, require_rtsp, wait_for
from tests.helpers.panorama import read_until
from zmqcam import Subscriber
from zmqcam.bus.protocol import Frame
from zmqcam.bus.status import collect_status
from zmqcam.config import Config
from zmqcam.grabber import BACKOFF_CAP, run_grabber
from zmqcam.stitcher import run_stitcher
from zmqcam.testing.fakecam import FakeCam
from zmqcam.testing.rtsp_server import RtspServer

# ---------------------------------------------------------------------------------------------
# helpers


def status_where(config: Config, check: Callable[[dict[str, Any]], object], name: str = "cam0") -> dict[str, Any]:
    """The first status of ``name`` published from now on that passes ``check`` (its asserts)."""
    return bus_status(config, lambda s: check(s[name]), streams=[name])[name]


def in_state(state: str) -> Callable[[dict[str, Any]], None]:
    def check(s: dict[str, Any]) -> None:
        assert s["state"] == state, s

    return check


def counter_at_least(counter: str, n: int) -> Callable[[dict[str, Any]], None]:
    def check(s: dict[str, Any]) -> None:
        assert s[counter] >= n, s

    return check


def live_and_clean(s: dict[str, Any]) -> None:
    assert s["state"] == "live" and s["reconnects"] == 0 and s["corrupt"] == 0, s


def watch_status(config: Config, seconds: float, name: str = "cam0") -> list[dict[str, Any]]:
    """Every status message of ``name`` caught during ``seconds`` (one a second is published)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        found = collect_status(config, timeout=min(2.0, max(0.1, remaining))).get(name)
        if found and (not seen or found["uptime"] != seen[-1]["uptime"]):
            seen.append(found)
    return seen


def rig(make_config: Callable[..., Config], cameras: list[dict[str, Any]], **sections: Any) -> Config:
    """A config with one camera per entry of ``cameras`` (fields to override) and short timeouts;
    the panorama is enabled only for two or more cameras."""
    config = make_config(cameras=max(2, len(cameras)), **sections)
    data = config.model_dump()
    data["camera"] = data["camera"][: len(cameras)]
    for cam, fields in zip(data["camera"], cameras, strict=True):
        cam.update({"connect_timeout": 1.0, "read_timeout": 1.0, "idle_timeout": 1.0, "fps": 30.0})
        cam.update(fields)
    data["stitch"]["enabled"] = len(cameras) > 1
    return Config.model_validate(data)


def start(config: Config, children: Children, stitcher: bool = False) -> dict[str, Any]:
    """Grabber processes for every camera (and the stitcher), once they have bound their ipc
    endpoints (faster than waiting for their first status, which comes a second later)."""
    procs = {cam.name: children.start(run_grabber, config, cam.name) for cam in config.camera}
    endpoints = [config.camera_endpoint(cam) for cam in config.camera]
    if stitcher:
        procs["pano"] = children.start(run_stitcher, config)
        endpoints.append(config.pano_endpoints[0])
    assert all(e.startswith("ipc://") for e in endpoints), endpoints
    paths = [Path(e[len("ipc://") :]) for e in endpoints]

    def bound() -> bool:
        dead = [name for name, proc in procs.items() if not proc.is_alive()]
        assert not dead, f"died at start: {dead}"
        return all(path.exists() for path in paths)

    wait_for(bound, 30, message=f"{sorted(procs)} to bind {endpoints}")
    return procs


def read_n(sub: Subscriber, n: int, timeout: float = 15.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    while len(frames) < n and time.monotonic() < deadline:
        ok, frame = sub.read(timeout=0.5)
        if ok and frame is not None:
            frames.append(frame)
    assert len(frames) == n, f"{sub.stream} {sub.kind}: {len(frames)} of {n} frames in {timeout} s"
    return frames


def read_for(sub: Subscriber, seconds: float) -> list[Frame]:
    """Every frame read during ``seconds`` (after a first one, waited for up to 15 s)."""
    frames = read_n(sub, 1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ok, frame = sub.read(timeout=0.5)
        if ok and frame is not None:
            frames.append(frame)
    return frames


def rate(frames: list[Frame]) -> float:
    """Frames per second the grabber published (its seq counts every one, read or skipped here),
    over the capture times of the first and last frame read."""
    span = (frames[-1].capture_ns - frames[0].capture_ns) / 1e9
    assert span > 0, "frames without increasing capture times"
    return (frames[-1].seq - frames[0].seq) / span


def resized_status(size: tuple[int, int]) -> Callable[[dict[str, Any]], None]:
    def check(s: dict[str, Any]) -> None:
        assert (s["width"], s["height"]) == size, s

    return check


def restart_on_port(port: int, **kwargs: Any) -> FakeCam:
    """A new fake camera on ``port`` (the same address the grabber knows), as after a power cycle.
    Retried briefly: another process may hold the port for a moment."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return FakeCam(port=port, **kwargs).start()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def plain_client_frame(cam: FakeCam, timeout: float = 5.0) -> bytes:
    """One JPEG read from the camera's stream by a plain socket client (not zmqcam's parser):
    status line, then the first part's Content-Length and its chunk."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    with socket.create_connection((cam.host, cam.stream_port), timeout=timeout) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: camera\r\n\r\n")
        while time.monotonic() < deadline:
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
            m = re.search(rb"Content-Length: (\d+)\r\n.*?\r\n\r\n\r\n([0-9a-f]+)\r\n", data, re.S)
            if m and len(data) >= m.end() + int(m.group(1)):
                assert data.startswith(b"HTTP/1.1 200 OK\r\n"), bytes(data[:40])
                return bytes(data[m.end() : m.end() + int(m.group(1))])
    raise AssertionError(f"a plain client got no frame in {timeout} s ({len(data)} bytes: {bytes(data[:60])!r})")


class StreamHolder:
    """Another client holding the camera's single stream: a plain socket that keeps reading (so
    the camera never blocks on a full socket) until ``close()``."""

    def __init__(self, cam: FakeCam) -> None:
        self.received = 0
        self._stop = threading.Event()
        self._sock = socket.create_connection((cam.host, cam.stream_port), timeout=5)
        self._sock.sendall(b"GET /stream HTTP/1.1\r\nHost: camera\r\n\r\n")
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._drain, name="stream-holder", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            self.received += len(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> StreamHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_video(path: Path, size: tuple[int, int], fps: float, count: int) -> list[int]:
    """A short MJPEG AVI whose frames are flat grey levels; returns the levels."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "cv2.VideoWriter cannot write MJPG .avi"
    levels = [20 + i * (200 // count) for i in range(count)]
    for level in levels:
        writer.write(np.full((size[1], size[0], 3), level, np.uint8))
    writer.release()
    return levels


# ---------------------------------------------------------------------------------------------
# every source kind through a grabber


@pytest.mark.parametrize(
    ("url", "camera_fps", "cap_fps", "expected"),
    [
        # snapshots are polled: the fps cap is the rate
        ("capture_url", 10.0, 8.0, 8.0),
        # an MJPEG stream runs at the camera's pace, capped by the grabber's fps
        ("stream_url", 10.0, 30.0, 10.0),
        ("stream_url", 20.0, 10.0, 10.0),
    ],
    ids=["snapshot", "mjpeg", "mjpeg-capped"],
)
def test_jpeg_camera_delivers_its_own_bytes_at_its_size_and_rate(
    url: str,
    camera_fps: float,
    cap_fps: float,
    expected: float,
    fakes: Callable[..., FakeCam],
    make_config: Callable[..., Config],
    children: Children,
) -> None:
    """Snapshot and MJPEG cameras: `<cam> jpeg` carries the camera's JPEG bytes untouched (no
    re-encode), with the camera's size in the header, at the camera's rate or the fps cap,
    whichever is lower. Guards against re-encoding, wrong size headers, a broken fps cap
    (frames delayed into a backlog instead of dropped) and a snapshot loop polling too fast."""
    cam = fakes(fps=camera_fps, size=(320, 240))
    config = rig(make_config, [{"source": getattr(cam, url), "size": [320, 240], "fps": cap_fps}])
    assert config.camera[0].source_kind == ("snapshot" if url == "capture_url" else "mjpeg")
    start(config, children)
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        frames = read_for(sub, 1.5)

        def live_at_its_size(s: dict[str, Any]) -> None:
            live_and_clean(s)
            assert (s["width"], s["height"]) == (320, 240), s

        # while subscribed: once the last subscriber left, the camera goes to sleep
        status_where(config, live_at_its_size)
    assert len(frames) >= 8, len(frames)
    assert all(cam.was_sent(f.jpeg) for f in frames), "a JPEG differs from what the camera sent"
    assert all((f.width, f.height) == (320, 240) for f in frames)
    assert simplejpeg.decode_jpeg(frames[-1].jpeg).shape == (240, 320, 3)
    assert 0.7 * expected <= rate(frames) <= 1.25 * expected, f"{rate(frames):.1f} fps, expected {expected}"


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_rtsp_camera_delivers_frames_of_its_size_and_rate(
    codec: str, make_config: Callable[..., Config], children: Children
) -> None:
    """RTSP cameras (RTP/JPEG as the ESP32 Micro-RTSP firmware sends, and H.264) through the
    grabber: decoded frames of the stream's size at the stream's rate. Guards the FFmpeg open
    options (transport, timeouts) and the raw path of the grabber (JPEG made only on demand)."""
    require_rtsp(codec)
    with RtspServer(codec=codec, size=(320, 240), fps=10) as server:
        config = rig(
            make_config,
            [{"source": server.url, "size": [320, 240], "connect_timeout": 5.0, "read_timeout": 3.0}],
        )
        assert config.camera[0].source_kind == "rtsp"
        start(config, children)
        with Subscriber("cam0", kind="raw", config=config) as sub:
            read_n(sub, 3, timeout=30)  # the H.264 decoder may start late, at a key frame
            frames = read_for(sub, 1.5)
        with Subscriber("cam0", kind="jpeg", config=config) as sub:
            jpeg = read_n(sub, 1, timeout=10)[0]

            def live_and_encoded(s: dict[str, Any]) -> None:
                assert s["kind"] == "rtsp" and s["state"] == "live" and s["reconnects"] == 0, s
                assert s["encoded"] > 0 and s["decoded"] == 0, s

            status_where(config, live_and_encoded)
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    assert 7.0 <= rate(frames) <= 12.5, f"{rate(frames):.1f} fps from a 10 fps stream"
    assert (jpeg.width, jpeg.height) == (320, 240) and jpeg.jpeg[:2] == b"\xff\xd8"


def test_file_camera_plays_at_its_own_rate_and_loops(
    tmp_path: Path, make_config: Callable[..., Config], children: Children
) -> None:
    """A video file written here with cv2.VideoWriter plays as a camera: its frames, its size,
    at the file's 10 fps (not the 30 fps cap), looping at the end. Guards the file pacing and
    the end-of-file handling (a file that plays once and then reports the camera lost)."""
    path = tmp_path / "clip.avi"
    levels = write_video(path, (320, 240), 10.0, 8)
    config = rig(make_config, [{"source": str(path), "size": [320, 240], "fps": 30.0}])
    assert config.camera[0].source_kind == "file"
    start(config, children)
    with Subscriber("cam0", kind="raw", config=config) as sub:
        frames = read_for(sub, 1.5)  # 15 frames of an 8-frame file: it looped
        status_where(config, live_and_clean)
    assert all(f.image.shape == (240, 320, 3) for f in frames)
    assert frames[-1].seq - frames[0].seq > len(levels) + 2
    assert 7.0 <= rate(frames) <= 12.5, f"{rate(frames):.1f} fps from a 10 fps file"
    # the pictures are the file's (flat grey levels, JPEG-approximate), and they change
    means = {round(float(f.image.mean())) for f in frames}
    assert len(means) >= 4 and all(min(abs(m - lv) for lv in levels) <= 6 for m in means), (means, levels)


# ---------------------------------------------------------------------------------------------
# demand


def test_jpeg_camera_is_decoded_only_while_raw_is_subscribed(
    fakes: Callable[..., FakeCam], make_config: Callable[..., Config], children: Children
) -> None:
    """An MJPEG camera with only `jpeg` subscribers is never decoded (status `decoded` stays 0
    while frames flow); a `raw` subscriber starts decoding, and its leaving stops it again.
    Guards against decoding every JPEG just in case (the CPU cost the bus exists to avoid)."""
    cam = fakes(fps=15.0)
    config = rig(make_config, [{"source": cam.stream_url}])
    start(config, children)
    with Subscriber("cam0", kind="jpeg", config=config) as jpeg_sub:
        read_n(jpeg_sub, 3)

        def streaming_undecoded(s: dict[str, Any]) -> None:
            assert s["frames"] >= 10, s
            assert s["decoded"] == 0 and s["published"]["raw"] == 0, s

        status_where(config, streaming_undecoded)
        with Subscriber("cam0", kind="raw", config=config) as raw_sub:
            raw = read_n(raw_sub, 3)
            assert all(f.image.shape == (480, 640, 3) for f in raw)

            def decoding(s: dict[str, Any]) -> None:
                assert s["decoded"] >= 5 and s["published"]["raw"] > 0, s

            status_where(config, decoding)
            read_n(jpeg_sub, 2)  # jpeg subscribers are served meanwhile

        # the raw subscriber left: once its unsubscription reached the grabber (a status says so),
        # decoding stops while the camera keeps streaming jpeg
        def no_raw_subscriber(s: dict[str, Any]) -> None:
            assert s["subscribers"].get("raw", 0) == 0, s

        before = status_where(config, no_raw_subscriber)
        read_n(jpeg_sub, 8)

        def more_frames(s: dict[str, Any]) -> None:
            assert s["frames"] > before["frames"], s

        after = status_where(config, more_frames)
    assert after["decoded"] == before["decoded"], "decoding went on with no raw subscriber"


# ---------------------------------------------------------------------------------------------
# failures


def test_killed_camera_shows_no_signal_backs_off_and_comes_back(
    fakes: Callable[..., FakeCam], make_config: Callable[..., Config], children: Children
) -> None:
    """A camera powered off mid-stream (its server gone): its panorama slot shows NO SIGNAL within
    stale_after + 1 s while the other camera stays live; the grabber reports the camera lost and
    retries with a growing delay (about 4 attempts in 4.5 s, where a fixed 0.5 s retry would make
    9); the camera powered on again at the same address is live again within the backoff cap.
    Guards the stale detection, the backoff (no reconnect storm against a dead camera, which
    also floods the log), and that a grabber never gives up on a camera."""
    dying = fakes(fps=10.0)
    steady = fakes(fps=10.0)
    config = rig(
        make_config, [{"source": dying.stream_url}, {"source": steady.stream_url}], stitch={"stale_after": 1.0}
    )
    stale_after = config.stitch.stale_after
    start(config, children, stitcher=True)
    with Subscriber("pano", config=config) as pano:
        read_until(pano, lambda f: not f.extra["stale"], 20, "both cameras live")
        port = dying.port
        dying.stop()
        killed = time.monotonic()
        frame = read_until(pano, lambda f: f.extra["stale"] == ["cam0"], stale_after + 15, "cam0 NO SIGNAL")
        # no sooner than stale_after without a frame (times from the panorama itself, so load
        # cannot decide it); how soon after that is the benchmark's business
        last_cam0 = next(src for src in frame.extra["sources"] if src["name"] == "cam0")
        assert frame.publish_ns - last_cam0["t_cap"] >= stale_after * 1e9
        assert frame.image.shape == (config.pano_size[1], config.pano_size[0], 3)
        states = {s["name"]: s["state"] for s in frame.extra["sources"]}
        assert states == {"cam0": "stale", "cam1": "live"}

        # backing off: delays 0.5, 1, 2, 4 s (+-20 %) -> at most 5 attempts by 4.5 s after the kill
        # (a fixed 0.5 s retry makes 9; a loaded machine can only make fewer)
        seen = watch_status(config, 4.5 - (time.monotonic() - killed))
        assert seen, "no status while the camera was down"
        last = seen[-1]
        assert last["state"] in ("lost", "connecting"), last
        assert last["reconnects"] <= 5, f"{last['reconnects']} reconnects in 4.5 s: no backoff?"
        assert "lost" in {s["state"] for s in seen}
        assert last["last_error"], last
        # and it keeps trying
        status_where(config, counter_at_least("reconnects", 3))
        status_where(config, in_state("live"), "cam1")

        revived = restart_on_port(port, fps=10.0)
        try:
            # the next attempt is at most one (jittered) backoff delay away, never more than the cap
            read_until(pano, lambda f: not f.extra["stale"], BACKOFF_CAP + 15, "cam0 live again")
            assert revived.active_stream_clients == 1
            status_where(config, in_state("live"))
        finally:
            revived.stop()
        assert not revived.errors, revived.errors


def test_stalled_camera_times_out_and_the_grabber_is_not_frozen(
    fakes: Callable[..., FakeCam], make_config: Callable[..., Config], children: Children
) -> None:
    """A camera that stops sending in the middle of a JPEG and then accepts connections without
    answering: the read timeout is counted, the grabber reconnects, keeps publishing status once
    a second with changing state, its panorama slot shows NO SIGNAL while the other camera stays
    live, and it streams again once the camera does; stalled again, the grabber still stops on
    SIGTERM (exit 0, not killed). Guards against a read without timeout (a frozen grabber: no
    status, no recovery, no shutdown) and against one camera's stall costing more than its slot."""
    cam = fakes(fps=10.0)
    steady = fakes(fps=10.0)
    config = rig(make_config, [{"source": cam.stream_url}, {"source": steady.stream_url}], stitch={"stale_after": 1.0})
    grabber = start(config, children, stitcher=True)["cam0"]
    with Subscriber("cam0", kind="jpeg", config=config) as sub, Subscriber("pano", config=config) as pano:
        read_until(pano, lambda f: not f.extra["stale"], 20, "both cameras live")
        read_n(sub, 2)
        cam.stall(partial=True)
        stalled = read_until(pano, lambda f: f.extra["stale"] == ["cam0"], 20, "cam0 NO SIGNAL, cam1 live")
        assert {src["name"]: src["state"] for src in stalled.extra["sources"]} == {"cam0": "stale", "cam1": "live"}
        seen = watch_status(config, 3.0)
        uptimes = [s["uptime"] for s in seen]
        assert len(seen) >= 2 and uptimes == sorted(uptimes), f"status not published while stalled: {uptimes}"
        last = seen[-1]
        assert last["timeouts"] >= 1 and last["reconnects"] >= 1, last
        assert {s["state"] for s in seen} - {"live"}, "state never changed from live"
        assert last["frames"] == seen[-2]["frames"], "frames counted from a stalled camera"
        # the other camera's slot stayed live all along
        assert all(f.extra["sources"][1]["state"] == "live" for f in read_n(pano, 5))
        cam.resume()
        status_where(config, in_state("live"))
        frames = read_n(sub, 3)
        assert all(cam.was_sent(f.jpeg) for f in frames)
        read_until(pano, lambda f: not f.extra["stale"], 20, "cam0 live again")
        cam.stall()
        time.sleep(0.3)  # the capture thread now waits in a read that gets nothing
        children.stop(grabber, timeout=10.0)  # SIGTERM, then SIGKILL after 10 s
        assert grabber.exitcode == 0, f"exit {grabber.exitcode}: the stalled grabber did not stop on SIGTERM"


@pytest.mark.parametrize("url", ["stream_url", "capture_url"], ids=["mjpeg", "snapshot"])
def test_corrupt_and_truncated_jpegs_are_counted_and_skipped(
    url: str, fakes: Callable[..., FakeCam], make_config: Callable[..., Config], children: Children
) -> None:
    """Scrambled and truncated JPEGs (with a Content-Length that matches the cut) are counted as
    `corrupt`, never published, and the connection carries on (no reconnect): exactly the intact
    frames the camera sent are published, in order, and the panorama keeps both slots live. Guards
    against forwarding broken JPEGs to every viewer, and against dropping the camera for one bad
    frame."""
    cam = fakes(fps=10.0)
    other = fakes(fps=10.0)
    # a cap above the camera's rate, so that no intact frame is dropped by the cap (counted apart)
    config = rig(make_config, [{"source": getattr(cam, url), "fps": 30.0}, {"source": other.stream_url}])
    start(config, children, stitcher=True)
    with (
        Subscriber("cam0", kind="jpeg", config=config) as jpeg_sub,
        Subscriber("cam0", kind="raw", config=config) as raw_sub,
        Subscriber("pano", config=config) as pano,
    ):
        read_until(pano, lambda f: not f.extra["stale"], 20, "both cameras live")
        anchor = read_n(jpeg_sub, 1)[0]  # sent before the faults
        cam.corrupt_next(2)
        cam.truncate_next(2)
        received: list[Frame] = []
        deadline = time.monotonic() + 20
        while (cam.pending_faults or len(received) < 5) and time.monotonic() < deadline:
            ok, frame = jpeg_sub.read(timeout=0.5)
            if ok and frame is not None:
                received.append(frame)
        assert not cam.pending_faults
        received += read_n(jpeg_sub, 3)

        def counted_and_live(s: dict[str, Any]) -> None:
            assert s["corrupt"] == 4 and s["decode_errors"] == 0, s
            assert s["reconnects"] == 0 and s["state"] == "live" and s["rate_dropped"] == 0, s

        status_where(config, counted_and_live)
        raw = read_n(raw_sub, 2)
        # a few bad frames (0.4 s) are far below stale_after: the panorama never lost the camera
        assert all(not f.extra["stale"] for f in read_n(pano, 5))
        sent = list(cam.sent_log)
    for frame in received:
        assert frame.jpeg.endswith(b"\xff\xd9") and cam.was_sent(frame.jpeg)
        assert simplejpeg.decode_jpeg(frame.jpeg).shape == (480, 640, 3)
    assert all(f.image.shape == (480, 640, 3) for f in raw)
    # exactly the intact frames: after the anchor and up to the last frame received, the grabber
    # published (seq) one frame per intact frame the camera sent, and none of the damaged ones
    jpegs = [jpeg for jpeg, _ in sent]
    first, last = jpegs.index(anchor.jpeg), jpegs.index(received[-1].jpeg)
    between = sent[first + 1 : last + 1]
    assert sorted(fault for _, fault in between if fault) == ["corrupt", "corrupt", "truncate", "truncate"]
    assert [fault for _, fault in between].count("") == received[-1].seq - anchor.seq, [f for _, f in between]
    assert not any(frame.jpeg == jpeg for frame in received for jpeg, fault in between if fault)


def test_resolution_change_is_followed_and_the_panorama_keeps_its_size(
    fakes: Callable[..., FakeCam], make_config: Callable[..., Config], children: Children
) -> None:
    """A camera switched to another resolution (/control?var=framesize on an ESP32): jpeg and raw
    frames of the new size arrive, and the panorama keeps its configured size with the camera's
    slot live (its geometry rescaled). Guards against a stale size, a crash in the remap, and a
    panorama whose size follows the cameras."""
    cam = fakes(fps=10.0)
    other = fakes(fps=10.0)
    config = rig(make_config, [{"source": cam.stream_url}, {"source": other.stream_url}])
    width, height = config.pano_size
    start(config, children, stitcher=True)
    with (
        Subscriber("cam0", kind="jpeg", config=config) as jpeg_sub,
        Subscriber("cam0", kind="raw", config=config) as raw_sub,
        Subscriber("pano", config=config) as pano,
    ):
        read_until(pano, lambda f: not f.extra["stale"], 20, "both cameras live")
        for new_size in ((800, 600), (320, 240)):
            cam.set_size(*new_size)

            def resized(frame: Frame, size: tuple[int, int] = new_size) -> bool:
                return (frame.width, frame.height) == size

            frame = read_until(jpeg_sub, resized, 10, f"jpeg of {new_size}")
            assert cam.was_sent(frame.jpeg)
            image = read_until(raw_sub, resized, 10, f"raw of {new_size}").image
            assert image.shape == (new_size[1], new_size[0], 3)
            status_where(config, resized_status(new_size))
            for frame in read_n(pano, 3):
                assert frame.image.shape == (height, width, 3)
            live = read_until(pano, lambda f: not f.extra["stale"], 5, "both live after the change")
            assert live.image.shape == (height, width, 3)


# ---------------------------------------------------------------------------------------------
# the camera's single client


def test_power_down_frees_the_camera_for_another_client_and_a_subscriber_reconnects(
    fakes: Callable[..., FakeCam], make_config: Callable[..., Config], children: Children
) -> None:
    """With no subscriber for idle_timeout the grabber closes its connection: the camera sees it
    closed, and since an ESP32 serves a single stream client, another (plain) client now gets
    frames; a new subscriber then makes the grabber reconnect. A brief gap shorter than
    idle_timeout keeps the connection. Guards the power-down (a grabber that holds the camera
    forever locks out every other client) and the wake-up."""
    cam = fakes(fps=10.0)
    config = rig(make_config, [{"source": cam.stream_url, "idle_timeout": 1.0}])
    start(config, children)
    assert cam.stream_connections == 0, "connected to the camera although nobody asked"
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        read_n(sub, 2)
        assert cam.active_stream_clients == 1
    left = time.monotonic()
    assert cam.wait_until(lambda: cam.active_stream_clients == 0, 15.0), "the grabber kept the camera open"
    closed_after = time.monotonic() - left
    # not before idle_timeout (how long after it is load, not behaviour)
    assert closed_after >= 0.7, f"closed {closed_after:.1f} s after the last subscriber left"
    assert cam.stream_connections == 1, "reconnected within the idle timeout"
    status_where(config, in_state("asleep"))
    jpeg = plain_client_frame(cam)
    assert jpeg[:2] == b"\xff\xd8" and cam.was_sent(jpeg)
    assert cam.wait_until(lambda: cam.active_stream_clients == 0, 3.0)
    with Subscriber("cam0", kind="jpeg", config=config) as sub:
        frames = read_n(sub, 2, timeout=15)
    assert all(cam.was_sent(f.jpeg) for f in frames)
    assert cam.stream_connections == 3  # grabber, plain client, grabber again


def test_busy_camera_is_reported_busy_not_hung(
    fakes: Callable[..., FakeCam], make_config: Callable[..., Config], children: Children
) -> None:
    """Another client holds the ESP32's single stream (the camera accepts us and says nothing):
    the grabber reports state "busy" with a reason, keeps publishing status, and is live as soon
    as the other client leaves. Guards against a grabber hanging on a camera that never answers,
    and against reporting a busy camera as broken."""
    cam = fakes(fps=10.0)
    config = rig(make_config, [{"source": cam.stream_url}])
    start(config, children)
    with StreamHolder(cam) as holder:
        assert cam.wait_until(lambda: holder.received > 1000, 5.0), "the other client got no stream"
        with Subscriber("cam0", kind="jpeg", config=config) as sub:
            busy = status_where(config, in_state("busy"))
            assert "another client" in busy["last_error"], busy

            def still_not_streaming(s: dict[str, Any]) -> None:
                assert s["uptime"] > busy["uptime"], s
                assert s["state"] in ("busy", "connecting") and s["frames"] == 0, s

            status_where(config, still_not_streaming)
            assert sub.read(timeout=0.2) == (False, None)
            holder.close()
            read_n(sub, 2, timeout=20)
            status_where(config, in_state("live"))
