"""Camera sources at the source level (open/read/close) against real servers: the fake ESP32-CAM
on 127.0.0.1 and GStreamer's RTSP server as a subprocess. No mocks."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import CONNECT_TIMEOUT, READ_TIMEOUT, camera, opened, timed
from zmqcam.errors import CorruptFrame, SourceBusy, SourceError, SourceTimeout
from zmqcam.sources import create_source
from zmqcam.sources._common import ChunkedDecoder, jpeg_size, parse_http_url
from zmqcam.sources.device import DeviceSource
from zmqcam.sources.file import FileSource
from zmqcam.sources.mjpeg import MjpegSource
from zmqcam.sources.rtsp import RtspSource
from zmqcam.sources.snapshot import SnapshotSource
from zmqcam.testing.fakecam import FakeCam
from zmqcam.testing.rtsp_server import RtspServer

pytestmark = pytest.mark.timeout(60)

#: the bound on a call that must end by a timeout of about a second (READ_TIMEOUT, CONNECT_TIMEOUT)
#: or at once: generous for a loaded 2-core machine, yet a hang, or a library's default timeout
#: (10 s and more) used instead of ours, exceeds it. How soon it ends is the benchmark's business;
#: that it does not end early is asserted exactly (a lower bound cannot flake).
BOUNDED = 5.0


def read_until_error(source: object, timeout: float, limit: int = 50) -> tuple[float, BaseException]:
    """Read until a read fails; (duration of the failing read, its exception)."""
    for _ in range(limit):
        elapsed, exc, _ = timed(lambda: source.read(timeout))  # type: ignore[attr-defined]
        if exc is not None:
            return elapsed, exc
    raise AssertionError(f"no error in {limit} reads")


def test_credentials_go_to_the_header_not_the_logs() -> None:
    """Guards credential hygiene: user:password@ in a camera URL becomes a Basic Authorization
    header and never appears in describe() or error messages."""
    url = parse_http_url("http://admin:s3cret@10.0.0.5:81/stream", default_path="/")
    assert url.auth == "Basic YWRtaW46czNjcmV0"
    assert "s3cret" not in url.describe()
    source = create_source(camera("http://admin:s3cret@127.0.0.1:9/capture"))
    assert "s3cret" not in source.describe()
    with pytest.raises(SourceError) as info:
        source.open(CONNECT_TIMEOUT)
    assert "s3cret" not in str(info.value)


def test_source_is_chosen_from_the_url() -> None:
    """Guards kind inference: the firmware's URLs select the right source class."""
    cases = {
        "http://10.0.0.5/capture": SnapshotSource,
        "http://10.0.0.5/jpg": SnapshotSource,
        "http://10.0.0.5:81/stream": MjpegSource,
        "http://10.0.0.5/": MjpegSource,
        "rtsp://10.0.0.5:554/mjpeg/1": RtspSource,
        "/dev/video0": DeviceSource,
        "2": DeviceSource,
        "/tmp/rec.mjpeg": FileSource,
    }
    for url, cls in cases.items():
        assert type(create_source(camera(url))) is cls, url
    assert type(create_source(camera("http://10.0.0.5/cam", kind="snapshot"))) is SnapshotSource


# -- snapshot ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/capture", "/jpg"])
def test_snapshot_delivers_untouched_jpegs_on_one_connection(fakecam: FakeCam, path: str) -> None:
    """Guards the snapshot source: JPEG bytes exactly as the camera sent them, the right size,
    one keep-alive connection for many pictures, and the connection really closed by close()."""
    with opened(camera(fakecam.base_url + path)) as source:
        for _ in range(3):
            frame = source.read(READ_TIMEOUT)
            assert frame.is_jpeg and fakecam.was_sent(frame.data)  # type: ignore[arg-type]
            assert (frame.width, frame.height) == (640, 480)
            assert abs(frame.capture_ns - time.time_ns()) < 1e9
        assert fakecam.capture_connections == 1
        assert fakecam.open_connections == 1
    assert fakecam.wait_until(lambda: fakecam.open_connections == 0)


def test_snapshot_stalled_camera_times_out(fakecam: FakeCam) -> None:
    """Guards against hangs: a camera that stops answering gives SourceTimeout within the read
    timeout; one that never answers a fresh connection is SourceBusy within the connect timeout."""
    with opened(camera(fakecam.capture_url)) as source:
        source.read(READ_TIMEOUT)
        fakecam.stall()
        elapsed, exc, _ = timed(lambda: source.read(READ_TIMEOUT))
        assert isinstance(exc, SourceTimeout), exc
        assert READ_TIMEOUT * 0.9 <= elapsed < BOUNDED, elapsed
    source = create_source(camera(fakecam.capture_url))
    try:
        elapsed, exc, _ = timed(lambda: source.open(CONNECT_TIMEOUT))
        assert isinstance(exc, SourceBusy), exc
        assert elapsed < BOUNDED, elapsed
    finally:
        source.close()
    fakecam.resume()


def test_snapshot_corrupt_and_truncated_then_next_works(fakecam: FakeCam) -> None:
    """Guards frame validation: a scrambled or truncated JPEG is CorruptFrame (never published),
    the connection stays up and the next read delivers a good picture."""
    with opened(camera(fakecam.capture_url)) as source:
        source.read(READ_TIMEOUT)
        for inject in (fakecam.corrupt_next, fakecam.truncate_next):
            inject(1)
            with pytest.raises(CorruptFrame):
                source.read(READ_TIMEOUT)
            frame = source.read(READ_TIMEOUT)
            assert jpeg_size(frame.data) == (640, 480)  # type: ignore[arg-type]
        assert fakecam.capture_connections == 1


def test_snapshot_dropped_keepalive_is_retried_once(fakecam: FakeCam) -> None:
    """Guards keep-alive reuse: a connection the camera closed is reopened transparently once;
    a camera that keeps closing is a SourceError, not a loop."""
    with opened(camera(fakecam.capture_url)) as source:
        source.read(READ_TIMEOUT)
        fakecam.drop_next(1)
        assert fakecam.was_sent(source.read(READ_TIMEOUT).data)  # type: ignore[arg-type]
        assert fakecam.capture_connections == 2
        fakecam.drop_next(2)
        with pytest.raises(SourceError, match="closed the connection"):
            source.read(READ_TIMEOUT)


def test_snapshot_resolution_change(fakecam: FakeCam) -> None:
    """Guards a camera switched to another framesize: frames of the new size follow."""
    with opened(camera(fakecam.capture_url)) as source:
        assert source.read(READ_TIMEOUT).width == 640
        fakecam.set_size(320, 240)
        frame = source.read(READ_TIMEOUT)
        assert (frame.width, frame.height) == (320, 240)


def test_snapshot_configuration_errors(fakecam: FakeCam) -> None:
    """Guards clear errors for wrong URLs: 404, a stream URL used as a snapshot, a refused port."""
    with pytest.raises(SourceError, match="404"):
        create_source(camera(fakecam.base_url + "/nothing.jpg")).open(CONNECT_TIMEOUT)
    with pytest.raises(SourceError, match="mjpeg"):
        create_source(camera(fakecam.stream_url, kind="snapshot")).open(CONNECT_TIMEOUT)
    fakecam.refuse()
    elapsed, exc, _ = timed(lambda: create_source(camera(fakecam.capture_url)).open(CONNECT_TIMEOUT))
    assert isinstance(exc, SourceError) and "refused" in str(exc), exc  # a refusal, not a timeout
    assert not isinstance(exc, (SourceTimeout, SourceBusy)) and elapsed < BOUNDED, (exc, elapsed)
    assert fakecam.wait_until(lambda: fakecam.open_connections == 0)


def test_snapshot_close_from_another_thread_aborts_read(fakecam: FakeCam) -> None:
    """Guards shutdown: close() from another thread ends a blocked read at once and frees the camera."""
    with opened(camera(fakecam.capture_url, read_timeout=10.0)) as source:
        source.read(READ_TIMEOUT)
        fakecam.stall()
        threading.Timer(0.3, source.close).start()
        elapsed, exc, _ = timed(lambda: source.read(10.0))
        assert isinstance(exc, SourceError) and not isinstance(exc, SourceTimeout), exc
        assert elapsed < BOUNDED, elapsed  # ended by close(), well before its 10 s timeout
    assert fakecam.wait_until(lambda: fakecam.open_connections == 0)
    fakecam.resume()


# -- mjpeg -------------------------------------------------------------------------------------


def test_mjpeg_delivers_untouched_jpegs(fakecam: FakeCam) -> None:
    """Guards the MJPEG source on the firmware format: every JPEG byte for byte as sent, the
    right size, capture times from X-Timestamp increasing and never after arrival."""
    with opened(camera(fakecam.stream_url)) as source:
        frames = [source.read(READ_TIMEOUT) for _ in range(6)]
        now = time.time_ns()
    assert all(f.is_jpeg and fakecam.was_sent(f.data) for f in frames)  # type: ignore[arg-type]
    assert all((f.width, f.height) == (640, 480) for f in frames)
    stamps = [f.capture_ns for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert stamps[-1] <= now and now - stamps[0] < 2e9
    assert fakecam.stream_connections == 1


@pytest.mark.parametrize("partial", [False, True], ids=["between-frames", "mid-jpeg"])
def test_mjpeg_stalled_stream_times_out(fakecam: FakeCam, partial: bool) -> None:
    """Guards against hangs: a stream that stops (between frames or in the middle of a JPEG)
    gives SourceTimeout within the read timeout."""
    with opened(camera(fakecam.stream_url)) as source:
        source.read(READ_TIMEOUT)
        fakecam.stall(partial=partial)
        elapsed, exc = read_until_error(source, READ_TIMEOUT, limit=5)
        assert isinstance(exc, SourceTimeout), exc
        assert elapsed < BOUNDED, elapsed
    fakecam.resume()


def test_mjpeg_corrupt_and_truncated_then_next_works(fakecam: FakeCam) -> None:
    """Guards frame validation in the stream: each bad JPEG is one CorruptFrame, the stream
    stays up (same connection) and good frames follow."""
    with opened(camera(fakecam.stream_url)) as source:
        source.read(READ_TIMEOUT)
        for inject in (fakecam.corrupt_next, fakecam.truncate_next):
            inject(1)
            outcomes = []
            for _ in range(5):
                try:
                    frame = source.read(READ_TIMEOUT)
                except CorruptFrame:
                    outcomes.append("corrupt")
                    continue
                assert fakecam.was_sent(frame.data) and jpeg_size(frame.data) == (640, 480)  # type: ignore[arg-type]
                outcomes.append("ok")
            assert outcomes.count("corrupt") == 1 and outcomes[-1] == "ok", outcomes
    assert fakecam.stream_connections == 1


def test_mjpeg_resolution_change(fakecam: FakeCam) -> None:
    """Guards a camera switched to another framesize mid-stream: frames of the new size follow."""
    with opened(camera(fakecam.stream_url)) as source:
        source.read(READ_TIMEOUT)
        fakecam.set_size(800, 600)
        sizes = [(f.width, f.height) for f in (source.read(READ_TIMEOUT) for _ in range(4))]
        assert sizes[-1] == (800, 600)


def test_mjpeg_close_frees_the_camera_for_the_next_client(fakecam: FakeCam) -> None:
    """Guards release: after close() the camera sees our connection gone and serves another
    stream client (an ESP32 serves only one)."""
    with opened(camera(fakecam.stream_url)) as source:
        source.read(READ_TIMEOUT)
        assert fakecam.active_stream_clients == 1
    assert fakecam.wait_until(lambda: fakecam.active_stream_clients == 0 and fakecam.open_connections == 0)
    with opened(camera(fakecam.stream_url)) as again:
        assert fakecam.was_sent(again.read(READ_TIMEOUT).data)  # type: ignore[arg-type]
    assert fakecam.wait_until(lambda: fakecam.stream_clients_served == 2)


def test_mjpeg_busy_camera_is_reported_as_busy(fakecam: FakeCam) -> None:
    """Guards the single-client camera: a second client is accepted but never answered; that is
    SourceBusy within the connect timeout (not a hang), and the camera is free after the first leaves."""
    with opened(camera(fakecam.stream_url)) as first:
        first.read(READ_TIMEOUT)
        second = create_source(camera(fakecam.stream_url))
        try:
            elapsed, exc, _ = timed(lambda: second.open(CONNECT_TIMEOUT))
            assert isinstance(exc, SourceBusy), exc
            assert CONNECT_TIMEOUT * 0.9 <= elapsed < BOUNDED, elapsed
        finally:
            second.close()
        assert fakecam.wait_until(lambda: fakecam.waiting_stream_clients == 0)
    with opened(camera(fakecam.stream_url)) as third:
        third.read(READ_TIMEOUT)


def test_mjpeg_close_from_another_thread_aborts_read(fakecam: FakeCam) -> None:
    """Guards shutdown: close() from another thread ends a blocked read at once and the camera
    sees the connection closed."""
    with opened(camera(fakecam.stream_url, read_timeout=10.0)) as source:
        source.read(READ_TIMEOUT)
        fakecam.stall()
        threading.Timer(0.3, source.close).start()
        elapsed, exc = read_until_error(source, 10.0)
        assert isinstance(exc, SourceError) and not isinstance(exc, SourceTimeout), exc
        assert elapsed < BOUNDED, elapsed  # ended by close(), well before its 10 s timeout
        assert fakecam.wait_until(lambda: fakecam.active_stream_clients == 0)
    fakecam.resume()


def test_mjpeg_dropped_or_refused(fakecam: FakeCam) -> None:
    """Guards connection loss: a dropped stream is a SourceError at once; a refused port or a
    snapshot URL used as a stream are clear SourceErrors at open."""
    with opened(camera(fakecam.stream_url)) as source:
        source.read(READ_TIMEOUT)
        fakecam.drop_next()
        _, exc = read_until_error(source, READ_TIMEOUT)
        assert type(exc) is SourceError and "closed" in str(exc), exc  # the drop itself, not a timeout
    with pytest.raises(SourceError, match="snapshot"):
        create_source(camera(fakecam.capture_url, kind="mjpeg")).open(CONNECT_TIMEOUT)
    fakecam.refuse()
    with pytest.raises(SourceError, match="refused"):
        create_source(camera(fakecam.stream_url)).open(CONNECT_TIMEOUT)
    assert fakecam.wait_until(lambda: fakecam.open_connections == 0)


# -- device and file ---------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["/dev/video57", "57"])
def test_device_missing_is_a_clear_error(source: str) -> None:
    """Guards the device source on a machine without that camera: a clear SourceError naming
    the device, not an OpenCV warning and an empty frame."""
    if os.path.exists("/dev/video57"):
        pytest.skip("/dev/video57 exists here")
    with pytest.raises(SourceError, match=r"no such video device: /dev/video57"):
        create_source(camera(source)).open(CONNECT_TIMEOUT)


def write_video(path: Path, frames: int, size: tuple[int, int], fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
    assert writer.isOpened()
    try:
        for i in range(frames):
            img = np.full((size[1], size[0], 3), i * 20 % 256, np.uint8)
            writer.write(img)
    finally:
        writer.release()


def test_file_plays_at_its_frame_rate_and_loops(tmp_path: Path) -> None:
    """Guards the file source: frames of the file's size, paced at the file's frame rate
    (self-paced), looped when loop = true, 'end of file' otherwise; a missing file is clear."""
    path = tmp_path / "clip.avi"
    write_video(path, 8, (160, 120), 20.0)
    with opened(camera(str(path))) as source:
        assert source.self_paced
        start = time.monotonic()
        frames = [source.read(READ_TIMEOUT) for _ in range(12)]  # past the end: loops
        elapsed = time.monotonic() - start
    assert all(f.data.shape == (120, 160, 3) for f in frames)  # type: ignore[union-attr]
    assert elapsed >= 11 / 20 * 0.95, f"12 frames in {elapsed:.3f} s: faster than the file's 20 fps"
    with opened(camera("file://" + str(path), loop=False)) as source:
        for _ in range(8):
            source.read(READ_TIMEOUT)
        with pytest.raises(SourceError, match="end of file"):
            source.read(READ_TIMEOUT)
    with pytest.raises(SourceError, match="no such file"):
        create_source(camera(str(tmp_path / "missing.mp4"))).open(CONNECT_TIMEOUT)


def test_file_replays_an_mjpeg_recording_untouched(fakecam: FakeCam, tmp_path: Path) -> None:
    """Guards recordings: a camera stream saved as curl would save it is replayed with its JPEGs
    byte for byte, looped."""
    path = tmp_path / "rec.mjpeg"
    with socket.create_connection(("127.0.0.1", fakecam.stream_port), timeout=2) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        decoder = ChunkedDecoder()
        body = decoder.feed(data.partition(b"\r\n\r\n")[2])
        while fakecam.stream_frames_sent < 5:
            body += decoder.feed(sock.recv(65536))
    path.write_bytes(body)
    with opened(camera(str(path), fps=50.0)) as source:
        assert isinstance(source, FileSource) and source.is_recording
        frames = [source.read(READ_TIMEOUT) for _ in range(12)]
    assert all(f.is_jpeg and fakecam.was_sent(f.data) for f in frames)  # type: ignore[arg-type]
    assert len({f.data for f in frames}) < len(frames)  # looped


# -- rtsp ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_rtsp_delivers_frames_of_the_right_size(rtsp_server: Callable[..., RtspServer], codec: str) -> None:
    """Guards the RTSP source through OpenCV/FFmpeg over TCP: RTP/JPEG (the ESP32 Micro-RTSP
    firmware) and H.264 both give raw BGR frames of the served size."""
    server = rtsp_server(codec, size=(320, 240), fps=15)
    with opened(camera(server.url, connect_timeout=5.0)) as source:
        frames = [source.read(READ_TIMEOUT * 2) for _ in range(5)]
    assert all(not f.is_jpeg and f.data.shape == (240, 320, 3) for f in frames)  # type: ignore[union-attr]
    assert (frames[0].width, frames[0].height) == (320, 240)


def test_rtsp_killed_server_fails_fast_and_reopen_works(rtsp_server: Callable[..., RtspServer]) -> None:
    """Guards a crashed RTSP camera: read raises SourceError/SourceTimeout within the read
    timeout (no hang), later reads keep failing, and close + open with a new capture recovers."""
    server = rtsp_server("mjpeg", size=(320, 240))
    source = create_source(camera(server.url, connect_timeout=5.0))
    try:
        source.open(5.0)
        source.read(READ_TIMEOUT)
        port = server.port
        server.kill()
        elapsed, exc = read_until_error(source, READ_TIMEOUT)
        assert isinstance(exc, SourceError), exc
        assert elapsed < BOUNDED, elapsed
        with pytest.raises(SourceError):
            source.read(READ_TIMEOUT)
        source.close()
        rtsp_server("mjpeg", size=(320, 240), port=port)
        source.open(5.0)
        assert source.read(READ_TIMEOUT * 2).data.shape == (240, 320, 3)  # type: ignore[union-attr]
    finally:
        source.close()


@pytest.mark.parametrize("codec", ["mjpeg", "h264"])
def test_rtsp_frozen_server_times_out(rtsp_server: Callable[..., RtspServer], codec: str) -> None:
    """Guards CAP_PROP_READ_TIMEOUT_MSEC passed at construction: a server that stops sending
    but keeps the connection open (SIGSTOP: a hung camera) gives SourceTimeout within the read
    timeout, after at most a few buffered frames (H.264)."""
    server = rtsp_server(codec, size=(320, 240))
    with opened(camera(server.url, connect_timeout=5.0)) as source:
        source.read(READ_TIMEOUT)
        server.freeze()
        try:
            start = time.monotonic()
            elapsed, exc = read_until_error(source, READ_TIMEOUT)
            assert isinstance(exc, SourceTimeout), exc
            assert time.monotonic() - start < BOUNDED, elapsed
        finally:
            server.thaw()


def test_rtsp_close_from_another_thread(rtsp_server: Callable[..., RtspServer]) -> None:
    """Guards shutdown with a hung RTSP camera: close() from another thread returns at once (it
    must not release the capture under a running read: a use-after-free), and the blocked read
    ends with SourceError within the read timeout, releasing the capture."""
    server = rtsp_server("mjpeg", size=(320, 240))
    with opened(camera(server.url, connect_timeout=5.0)) as source:
        source.read(READ_TIMEOUT)
        server.freeze()
        closed_at: list[float] = []

        def close() -> None:
            source.close()
            closed_at.append(time.monotonic())

        timer = threading.Timer(0.2, close)
        timer.start()
        try:
            start = time.monotonic()
            _, exc = read_until_error(source, READ_TIMEOUT)
            read_ended = time.monotonic()
            assert isinstance(exc, SourceError), exc
            assert read_ended - start < BOUNDED
        finally:
            timer.join()
            server.thaw()
        # an order: close() returned while the read was still blocked (it did not wait for it)
        assert closed_at and closed_at[0] < read_ended, (closed_at, read_ended)
        with pytest.raises(SourceError, match="closed"):
            source.read(READ_TIMEOUT)


def test_rtsp_silent_server_open_times_out() -> None:
    """Guards CAP_PROP_OPEN_TIMEOUT_MSEC: a host that accepts TCP but never answers RTSP gives
    SourceTimeout within the connect timeout instead of FFmpeg's default of 30 s."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        source = create_source(camera(f"rtsp://127.0.0.1:{port}/mjpeg/1"))
        try:
            elapsed, exc, _ = timed(lambda: source.open(CONNECT_TIMEOUT))
        finally:
            source.close()
        assert isinstance(exc, SourceTimeout), exc
        assert elapsed < BOUNDED, elapsed  # ours, not FFmpeg's default of 30 s


def test_rtsp_refused_is_a_quick_error() -> None:
    """Guards a camera that is off: a refused RTSP connection is a SourceError, quickly."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    elapsed, exc, _ = timed(lambda: create_source(camera(f"rtsp://127.0.0.1:{port}/x")).open(CONNECT_TIMEOUT))
    assert isinstance(exc, SourceError) and not isinstance(exc, SourceTimeout), exc
    assert elapsed < BOUNDED, elapsed
