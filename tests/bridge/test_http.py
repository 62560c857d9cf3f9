"""The HTTP bridge as a real process, read by real HTTP clients: requests, aiohttp, cv2 and ffmpeg.

Most tests share one rig (2 synthetic cameras at 15 fps, the stitcher, the bridge) started once for
the module; error paths use a bridge with nothing upstream, which starts in about a second.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest
import requests
import simplejpeg
import zmq

from tests.helpers import Children, bridge_status, eventually, needs, wait_for
from tests.helpers.bridge import FPS, IDLE_TIMEOUT, build_config, get_status, start_bridge
from tests.helpers.status import fresh
from tests.helpers.stream import PartReader, StreamEnded
from zmqcam.bridge import Bridge, read_announce
from zmqcam.bus import protocol, sockets
from zmqcam.bus.status import STATUS_DOWN_AFTER
from zmqcam.config import Config, load_config
from zmqcam.errors import ConfigError
from zmqcam.grabber import run_grabber
from zmqcam.names import connect_endpoint
from zmqcam.stitcher import run_stitcher

WRITE_TIMEOUT = 3.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a JPEG, decoding it fully so a broken one fails the test."""
    assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9", "not a complete JPEG"
    image = simplejpeg.decode_jpeg(data, colorspace="BGR")
    return image.shape[1], image.shape[0]


class SendQueue:
    """The kernel's send queue of one TCP connection of this machine (``/proc/net/tcp``: the bytes
    written by the server that the client has not taken), watched for when it last changed."""

    def __init__(self, local_port: int, remote_port: int) -> None:
        self._ports = (f"{local_port:04X}", f"{remote_port:04X}")
        self.last_change = time.monotonic()
        self.most = 0
        self._last = -1

    def size(self) -> int:
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if (fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]) == self._ports:
                return int(fields[4].split(":")[0], 16)
        return 0

    async def watch(self) -> None:
        while True:
            size = self.size()
            if size != self._last:
                self._last, self.last_change, self.most = size, time.monotonic(), max(self.most, size)
            await asyncio.sleep(0.05)


def open_stream(url: str, path: str = "/stream") -> requests.Response:
    return requests.get(url + path, stream=True, timeout=(5, 15))


@dataclass
class Rig:
    config: Config
    url: str
    bridge_pid: int

    @property
    def pano_size(self) -> tuple[int, int]:
        return self.config.pano_size

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    run_dir = tempfile.mkdtemp(prefix="zc-", dir="/tmp")
    config = build_config(run_dir, http={"port": 0, "snapshot_timeout": 5.0, "max_clients": 200})
    kids = Children()
    try:
        for cam in config.camera:
            kids.start(run_grabber, config, cam.name)
        kids.start(run_stitcher, config)
        proc, url = start_bridge(kids, config, write_timeout=WRITE_TIMEOUT)

        def everyone_reports() -> bool:
            status = get_status(url)
            ages = [c["status_age"] for c in status["cameras"].values()] + [status["stitcher"]["status_age"]]
            return all(age is not None for age in ages)

        wait_for(everyone_reports, 30, interval=0.2, message="grabber and stitcher status via the bridge")
        assert proc.pid is not None
        yield Rig(config, url, proc.pid)
    finally:
        kids.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def lonely() -> Iterator[tuple[Config, str]]:
    """A bridge with nothing upstream (no grabbers, no stitcher), max_clients 2, snapshot_timeout 0.5 s."""
    run_dir = tempfile.mkdtemp(prefix="zc-", dir="/tmp")
    config = build_config(run_dir, http={"port": 0, "max_clients": 2, "snapshot_timeout": 0.5})
    kids = Children()
    try:
        _, url = start_bridge(kids, config)
        yield config, url
    finally:
        kids.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


def wait_idle(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """Wait until the bridge has no client and no subscription left (earlier tests' clients are gone)."""
    return wait_for(
        lambda: (s := get_status(url)) and s["http"]["clients"] == 0 and not s["subscriptions"] and s,
        timeout,
        interval=0.1,
        message="the bridge to be idle",
    )


def all_asleep(status: dict[str, Any]) -> None:
    assert all(c["state"] == "asleep" for c in status["cameras"].values()), status["cameras"]


# ---------------------------------------------------------------------------------------------
# streams


def test_stream_parts_are_complete_panorama_jpegs(rig: Rig) -> None:
    """/stream: every part has Content-Type, a correct Content-Length and X-Timestamp, and holds a
    complete JPEG of the panorama's size; live frames come in order with recent capture times."""
    with open_stream(rig.url) as response:
        reader = PartReader(response)
        parts = [reader.next_live(15)] + [reader.next_part() for _ in range(9)]
    seqs = []
    for headers, body in parts:
        assert headers["content-type"] == "image/jpeg"
        assert int(headers["content-length"]) == len(body)
        assert re.fullmatch(r"\d+\.\d{6}", headers["x-timestamp"])
        assert jpeg_size(body) == rig.pano_size
        if headers["x-zmqcam-state"] == "live":
            assert abs(time.time() - float(headers["x-timestamp"])) < 5
            seqs.append(int(headers["x-zmqcam-seq"]))
    assert len(seqs) >= 8
    assert seqs == sorted(seqs) and len(set(seqs)) >= 5


def test_camera_stream_forwards_the_published_jpeg_untouched(rig: Rig, ctx: zmq.Context[Any]) -> None:
    """/stream/cam0 sends exactly the bytes the grabber published on "cam0 jpeg" (no re-encode)."""
    sub = sockets.make_subscriber(ctx, [connect_endpoint(rig.config.camera_endpoint("cam0"))], [b"cam0 jpeg\x00"])
    published: dict[int, bytes] = {}
    try:
        with open_stream(rig.url, "/stream/cam0") as response:
            reader = PartReader(response)
            served = [reader.next_live(15)] + [reader.next_part() for _ in range(12)]
            # the bridge and our own SUB get the same messages: collect what was published meanwhile
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and len(published) < 40:
                if sub.poll(200):
                    frame = protocol.decode(sub.recv_multipart())
                    published[frame.seq] = frame.jpeg
    finally:
        sub.close(linger=0)
    live = [(int(h["x-zmqcam-seq"]), body) for h, body in served if h["x-zmqcam-state"] == "live"]
    matched = [(seq, body) for seq, body in live if seq in published]
    assert len(matched) >= 5, (
        f"too few frames seen by both: served {[s for s, _ in live]}, published {sorted(published)}"
    )
    for seq, body in matched:
        assert body == published[seq], f"frame {seq} differs from the published JPEG"
    assert all(jpeg_size(body) == (640, 480) for _, body in live)


def test_a_viewer_of_sleeping_cameras_gets_headers_at_once_then_wakes_them(rig: Rig) -> None:
    """After the last client leaves, the bridge unsubscribes and the grabbers power down after
    idle_timeout; a new viewer gets the headers and a "waking" card at once, then live frames."""
    with open_stream(rig.url) as response:
        PartReader(response).next_live(15)
    left, left_wall = time.monotonic(), time.time()
    wait_idle(rig.url, 5)

    # a status from before the viewer left may still say "asleep" (from before it woke them)
    bridge_status(rig.url, all_asleep, since=left_wall, timeout=IDLE_TIMEOUT + 10)
    slept_after = time.monotonic() - left
    assert slept_after >= IDLE_TIMEOUT * 0.9

    # "at once" is an order, not a time: the headers and the card come before any live frame, that
    # is, before the cameras woke (the benchmark measures how long waking takes)
    started, woke_wall = time.monotonic(), time.time()
    with open_stream(rig.url) as response:
        headers_after = time.monotonic() - started
        assert response.headers["X-Zmqcam-State"] == "waking"
        reader = PartReader(response)
        headers, body = reader.next_part()
        first_part_after = time.monotonic() - started
        assert headers["x-zmqcam-state"] == "waking"
        assert jpeg_size(body) == rig.pano_size
        reader.next_live(10)
        live_after = time.monotonic() - started

        def live(status: dict[str, Any]) -> None:
            assert all(c["state"] == "live" for c in status["cameras"].values())

        bridge_status(rig.url, live, since=woke_wall)
    print(f"asleep {slept_after:.2f} s after the last viewer; new viewer: headers {headers_after * 1000:.0f} ms,")
    print(f"first (waking) part {first_part_after * 1000:.0f} ms, first live frame {live_after * 1000:.0f} ms")


def test_fps_cap_sends_the_newest_frames_at_the_asked_rate(rig: Rig) -> None:
    """?fps=3 gets at most 3 frames a second, each the newest (skipped in between, never queued):
    the frames between two parts were skipped, and none of them comes later."""
    cap = 3
    with open_stream(rig.url, f"/stream/cam0?fps={cap}") as response:
        reader = PartReader(response)
        reader.next_live(15)
        started = time.monotonic()
        seqs = []
        while len(seqs) < 6:
            headers, _ = reader.next_part()
            seqs.append(int(headers["x-zmqcam-seq"]))
        elapsed = time.monotonic() - started
    # a cap is an upper bound, so a loaded machine can only make the rate lower (the keepalive
    # resends the newest frame only after 2 s without one, far slower than the cap)
    assert len(seqs) / elapsed <= cap * 1.2, f"{len(seqs) / elapsed:.1f} fps with a cap of {cap}"
    # the newest each time: the camera's frames in between were skipped, never sent later
    assert all(b > a for a, b in itertools.pairwise(seqs)), seqs
    assert sum(b - a - 1 for a, b in itertools.pairwise(seqs)) >= len(seqs), f"nothing skipped at {FPS} fps: {seqs}"


def test_status_reports_cameras_stitcher_and_clients(rig: Rig) -> None:
    """/status merges grabber and stitcher status with the bridge's own counters: with one viewer,
    every camera live at about its rate, read by the stitcher, the stitcher running for that one
    viewer, and the frames sent to it counted."""
    sent_before = wait_idle(rig.url)["http"]["frames_sent"]
    with open_stream(rig.url) as response:
        reader = PartReader(response)
        reader.next_live(15)
        opened = time.time()

        def settled(status: dict[str, Any]) -> None:
            # the grabbers measure fps over the last 2 s, which may span a camera's wake-up; a
            # status from before this viewer's demand reached every process says nothing about it
            assert set(status) == {
                "version",
                "time",
                "cameras",
                "stitcher",
                "http",
                "subscriptions",
                "processes",
                "publish",
            }
            assert status["publish"] == {}  # no [[publish]] target
            assert status["processes"] == {}  # a bridge run without a supervisor: no process table
            assert set(status["cameras"]) == {"cam0", "cam1"}
            for cam in status["cameras"].values():
                for key in (
                    "state",
                    "fps",
                    "last_frame_age",
                    "reconnects",
                    "decode_errors",
                    "drops",
                    "subscribers",
                    "http",
                ):
                    assert key in cam
                assert cam["state"] == "live", cam
                assert 0 <= cam["last_frame_age"] < 1.5, cam
                assert FPS * 0.5 < cam["fps"] < FPS * 1.5, cam
                assert cam["reconnects"] == 0 and cam["decode_errors"] == 0, cam
                assert cam["subscribers"].get("raw", 0) >= 1, cam  # the stitcher
                assert cam["subscribers"].get("status", 0) >= 1, cam  # the bridge
            pano = status["stitcher"]
            assert pano["state"] == "running" and pano["stale"] == [], pano
            assert FPS * 0.5 < pano["fps"] < FPS * 1.5, pano
            # two cameras capturing on their own clocks: their frames in one panorama are apart by
            # less than a frame interval or two, more than nothing (a unit slip, ns for ms, fails)
            assert isinstance(pano["spread_ms"], (int, float)) and 0 < pano["spread_ms"] < 3 * 1000 / FPS, pano
            assert (pano["width"], pano["height"]) == rig.pano_size
            assert pano["subscribers"].get("jpeg") == 1 and pano["http"]["clients"] == 1, pano
            assert status["http"]["clients"] == 1 and status["http"]["streams"] == {"pano": 1}
            assert status["subscriptions"] == ["pano jpeg"]
            assert status["http"]["frames_sent"] - sent_before > FPS, "frames sent to this viewer not counted"

        def read_on() -> dict[str, Any]:
            # keep reading: a viewer that stops reading is dropped after write_timeout
            for _ in range(3):
                reader.next_part()
            return get_status(rig.url)

        def fresh_and_settled(status: dict[str, Any]) -> None:
            assert fresh(status, opened), "a status from before this viewer"
            settled(status)

        eventually(read_on, fresh_and_settled, 20, interval=0.0)


def test_snapshots_wake_the_cameras(rig: Rig) -> None:
    """/snapshot.jpg and /snapshot/<cam>.jpg wake sleeping cameras and return a frame newer than
    the request; a snapshot is not a viewer, so nothing stays subscribed."""
    idle = wait_idle(rig.url)
    idle_since = time.time()
    bridge_status(rig.url, all_asleep, since=idle_since, timeout=IDLE_TIMEOUT + 10)
    for path, size in (("/snapshot.jpg", rig.pano_size), ("/snapshot/cam1.jpg", (640, 480))):
        asked = time.time()
        started = time.monotonic()
        response = requests.get(rig.url + path, timeout=rig.config.http.snapshot_timeout + 10)
        took = time.monotonic() - started
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "image/jpeg"
        assert jpeg_size(response.content) == size
        # never older than its request (X-Timestamp has microseconds; the clocks are the same)
        assert float(response.headers["X-Timestamp"]) >= asked - 1e-6, (response.headers["X-Timestamp"], asked)
        print(f"{path} from sleeping cameras in {took * 1000:.0f} ms")
    assert wait_idle(rig.url)["http"]["snapshots"] - idle["http"]["snapshots"] == 2


def test_fifty_clients_and_one_that_stops_reading(rig: Rig) -> None:
    """50 concurrent viewers all get (nearly) every frame; a viewer that stops reading slows nobody,
    the bridge holds no more for it than one part (its memory grows by less than half of what
    queueing the parts it was offered would take), and the stalled viewer, and only it, is dropped
    once one write has waited write_timeout, not before."""
    dropped_before = wait_idle(rig.url)["http"]["dropped"]
    n_clients = 50
    counts = [0] * n_clients
    part_sizes: list[int] = []
    result: dict[str, float] = {}

    async def read_part(content: aiohttp.StreamReader) -> bytes:
        head = await content.readuntil(b"\r\n\r\n")
        match = re.search(rb"Content-Length: (\d+)", head)
        assert match is not None and head.startswith(b"--frame\r\n")
        body = await content.readexactly(int(match.group(1)) + 2)
        assert body[:2] == b"\xff\xd8" and body[-4:] == b"\xff\xd9\r\n"
        return body

    async def main() -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_read=15)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:

            async def viewer(i: int) -> None:
                async with session.get(rig.url + "/stream") as response:
                    assert response.status == 200
                    while True:
                        part = await read_part(response.content)
                        counts[i] += 1
                        if i == 0:
                            part_sizes.append(len(part))

            async def status() -> dict[str, Any]:
                async with session.get(rig.url + "/status") as response:
                    data: dict[str, Any] = await response.json()
                    return data

            tasks = [asyncio.create_task(viewer(i)) for i in range(n_clients)]
            stalled = socket.socket()
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            try:
                stalled.connect(("127.0.0.1", int(rig.url.rsplit(":", 1)[1])))
                stalled.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                stalled_at = time.monotonic()
                queue = SendQueue(rig.port, stalled.getsockname()[1])
                watcher = asyncio.create_task(queue.watch())
                deadline = time.monotonic() + 20
                while min(counts) < 5 or (await status())["http"]["clients"] < n_clients + 1:
                    assert time.monotonic() < deadline, f"not every viewer got frames: {counts}"
                    await asyncio.sleep(0.1)
                await asyncio.sleep(1.0)  # let the stalled client's buffers fill
                before = (rss_kib(rig.bridge_pid), cpu_seconds(rig.bridge_pid), list(counts), await status())
                started = time.monotonic()
                await asyncio.sleep(6.0)
                elapsed = time.monotonic() - started
                after = (rss_kib(rig.bridge_pid), cpu_seconds(rig.bridge_pid), list(counts), await status())
                received = after[3]["stitcher"]["http"]["received"] - before[3]["stitcher"]["http"]["received"]
                got = [b - a for a, b in zip(before[2], after[2], strict=True)]
                result.update(
                    elapsed=elapsed,
                    received=received,
                    min_got=min(got),
                    rss_before=before[0],
                    rss_after=after[0],
                    cpu=(after[1] - before[1]) / elapsed,
                )
                # the stalled client is dropped once one write has waited write_timeout
                deadline = time.monotonic() + WRITE_TIMEOUT + 30
                while (dropped := (await status())["http"]["dropped"] - dropped_before) < 1:
                    assert time.monotonic() < deadline, "the stalled client was never dropped"
                    await asyncio.sleep(0.2)
                result["dropped_after"] = time.monotonic() - started
                result["dropped_since_stall"] = time.monotonic() - queue.last_change
                result["dropped_since_connect"] = time.monotonic() - stalled_at
                result["kernel_queued"] = queue.most
                result["dropped"] = dropped
                assert all(not t.done() for t in tasks), "a viewer failed"
                # dropped means closed: the stalled socket, read at last, ends (EOF or reset)
                stalled.settimeout(10)
                with contextlib.suppress(ConnectionError):
                    while stalled.recv(1 << 20):
                        pass
            finally:
                stalled.close()
                watcher.cancel()
                for t in [*tasks, watcher]:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    print(
        f"\n{n_clients} viewers + 1 stalled for {result['elapsed']:.1f} s:"
        f" bridge received {result['received']} panoramas,"
        f" slowest viewer got {result['min_got']}; bridge CPU {result['cpu'] * 100:.0f} % of a core,"
        f" RSS {result['rss_before'] / 1024:.1f} -> {result['rss_after'] / 1024:.1f} MiB;"
        f" stalled client dropped {result['dropped_after']:.1f} s into the window,"
        f" {result['dropped_since_stall']:.1f} s after its send queue stopped at {result['kernel_queued']} bytes"
    )
    assert result["received"] >= FPS * result["elapsed"] * 0.5
    assert result["min_got"] >= result["received"] * 0.7, "a viewer was slowed down"
    # queueing every part offered to the stalled viewer during the window would take this much
    queued_kib = result["received"] * np.mean(part_sizes) / 1024
    grown_kib = result["rss_after"] - result["rss_before"]
    assert grown_kib < min(queued_kib / 2, 8 * 1024), f"the bridge grew {grown_kib} KiB (queueing: {queued_kib:.0f})"
    assert result["dropped"] == 1, f"{result['dropped']} viewers dropped: only the stalled one should be"
    # no write to the stalled viewer can have waited before it connected: the drop comes at least
    # write_timeout after that (when its send queue stopped growing is printed: on a loaded
    # machine /proc is read too late to bound the drop by it)
    assert result["dropped_since_connect"] >= WRITE_TIMEOUT, result
    wait_idle(rig.url)


# ---------------------------------------------------------------------------------------------
# other readers


def test_opencv_videocapture_reads_the_stream(rig: Rig) -> None:
    """cv2.VideoCapture(url) (FFmpeg backend) decodes panorama frames from /stream."""
    capture = cv2.VideoCapture(rig.url + "/stream", cv2.CAP_FFMPEG)
    try:
        assert capture.isOpened()
        frames = []
        for _ in range(5):
            ok, frame = capture.read()
            assert ok
            frames.append(frame)
    finally:
        capture.release()
    width, height = rig.pano_size
    assert all(f.shape == (height, width, 3) for f in frames)


def test_ffmpeg_reads_the_stream(rig: Rig, tmp_path: Path) -> None:
    """ffmpeg -i URL reads /stream as MJPEG and writes frames of the panorama's size."""
    ffmpeg = shutil.which("ffmpeg")
    needs(ffmpeg is not None, "needs the ffmpeg command (Debian package ffmpeg)")
    assert ffmpeg is not None
    out = tmp_path / "frame%d.jpg"
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", rig.url + "/stream"]
    done = subprocess.run([*cmd, "-frames:v", "3", "-c", "copy", str(out)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    files = sorted(tmp_path.glob("frame*.jpg"))
    assert len(files) == 3
    assert all(jpeg_size(f.read_bytes()) == rig.pano_size for f in files)


def test_the_original_readme_requests_loop(rig: Rig) -> None:
    """The client loop from the original README decodes whole panorama frames from /stream."""
    url = rig.url + "/stream"
    frames = []
    r = requests.get(url, stream=True, timeout=(5, 15))
    try:
        assert r.status_code == 200
        bytes_ = b""
        for chunk in r.iter_content(chunk_size=1024):
            bytes_ += chunk
            a = bytes_.find(b"\xff\xd8")
            b = bytes_.find(b"\xff\xd9")
            if a != -1 and b != -1:
                jpg = bytes_[a : b + 2]
                bytes_ = bytes_[b + 2 :]
                frame = cv2.imdecode(np.frombuffer(jpg, dtype=np.uint8), cv2.IMREAD_COLOR)
                frames.append(frame)
                if len(frames) == 5:
                    break
    finally:
        r.close()
    width, height = rig.pano_size
    assert all(f is not None and f.shape == (height, width, 3) for f in frames)


# ---------------------------------------------------------------------------------------------
# errors and limits (a bridge with nothing upstream)


def test_unknown_camera_is_404(lonely: tuple[Config, str]) -> None:
    _, url = lonely
    for path in ("/stream/nope", "/snapshot/nope.jpg", "/stream/cam0/x", "/nothing", "/stream/pano"):
        response = requests.get(url + path, timeout=5)
        assert response.status_code == 404, path
        assert response.text.count("\n") <= 1


@pytest.mark.parametrize(
    "query", ["fps=abc", "fps=0", "fps=-3", "fps=nan", "fps=inf", "fps=1e9", "fps=1&fps=2", "fps="]
)
def test_bad_query_is_400_with_a_reason(lonely: tuple[Config, str], query: str) -> None:
    _, url = lonely
    for path in ("/stream", "/stream/cam1"):
        response = requests.get(f"{url}{path}?{query}", timeout=5)
        assert response.status_code == 400
        assert response.text.startswith("400: fps ") and response.text.count("\n") == 1


def test_max_clients_is_503_beyond_the_limit(lonely: tuple[Config, str]) -> None:
    """With max_clients = 2, a third viewer gets 503 with Retry-After; a freed slot is reusable."""
    _, url = lonely
    wait_idle(url)
    first, second = open_stream(url), open_stream(url, "/stream/cam0")
    try:
        # keep the readers: dropping one closes its generator, and urllib3 then closes the connection
        readers = [PartReader(first), PartReader(second)]
        for reader in readers:
            headers, _ = reader.next_part()  # the "waking" card, at once
            assert headers["x-zmqcam-state"] == "waking"
        assert get_status(url)["http"]["clients"] == 2
        for path in ("/stream", "/stream/cam1", "/snapshot.jpg", "/stream.mp4"):
            with requests.get(url + path, timeout=5, stream=True) as third:
                assert third.status_code == 503, path
                assert third.headers["Retry-After"].isdigit()
        assert get_status(url)["http"]["rejected"] >= 4
    finally:
        first.close()
        second.close()
    wait_idle(url)
    with open_stream(url) as again:
        assert again.status_code == 200


def test_snapshot_without_a_stitcher_is_503_after_the_timeout(lonely: tuple[Config, str]) -> None:
    config, url = lonely
    for path in ("/snapshot.jpg", "/snapshot/cam0.jpg"):
        started = time.monotonic()
        response = requests.get(url + path, timeout=10)
        took = time.monotonic() - started
        assert response.status_code == 503
        assert response.headers["Retry-After"].isdigit()
        # waits the whole timeout, and then answers (bounded; how much later is load, not behaviour)
        assert config.http.snapshot_timeout <= took < config.http.snapshot_timeout + 8
    wait_idle(url)
    # a bridge that just started shows what it has not heard from yet as unknown: wait for down
    status = wait_for(
        lambda: (s := get_status(url)) and s["stitcher"]["state"] == "down" and s, 10, message="nothing upstream"
    )
    assert status["http"]["snapshot_timeouts"] >= 2
    assert status["stitcher"]["state"] == "down"
    assert all(c["state"] == "no signal" and c["grabber_state"] == "down" for c in status["cameras"].values())


def test_stream_mp4_without_a_stitcher_is_503_after_the_timeout(lonely: tuple[Config, str]) -> None:
    """With no H.264 upstream, /stream.mp4 answers 503 with Retry-After once snapshot_timeout plus one
    keyframe interval passed without a keyframe (its headers need the stream's codec), and counts it."""
    _config, url = lonely
    wait_idle(url)
    response = requests.get(url + "/stream.mp4", timeout=15)
    assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
    assert response.text.startswith("503: no H.264 keyframe from pano within ")
    status = wait_idle(url)
    assert status["http"]["mp4"]["timeouts"] >= 1 and status["http"]["mp4"]["clients"] == 0


def test_a_fresh_bridge_shows_unknown_until_it_can_tell(make_config: Callable[..., Config]) -> None:
    """A bridge that has heard nothing yet shows the cameras and the stitcher as "unknown" (not "no
    signal": it just started, and they publish within a second), and "no signal" / "down" once it has
    listened STATUS_DOWN_AFTER seconds without a word from them. Guards the restarted bridge that
    showed every camera as "no signal" until the first status arrived."""
    config = make_config(cameras=1, http={"port": 0})

    async def first_and_later() -> tuple[dict[str, Any], dict[str, Any]]:
        bridge = Bridge(config)
        try:
            first = bridge.status()
            await asyncio.sleep(STATUS_DOWN_AFTER + 0.2)
            return first, bridge.status()
        finally:
            bridge.close()

    first, later = asyncio.run(first_and_later())
    assert first["cameras"]["cam0"]["state"] == "unknown" and first["cameras"]["cam0"]["grabber_state"] == "unknown"
    assert first["stitcher"]["state"] == "unknown"
    assert later["cameras"]["cam0"]["state"] == "no signal" and later["cameras"]["cam0"]["grabber_state"] == "down"
    assert later["stitcher"]["state"] == "down"


def test_a_viewer_with_nothing_upstream_gets_the_card_at_once(lonely: tuple[Config, str]) -> None:
    """Nothing runs upstream: the viewer still gets headers and a panorama-sized "waking" card, at
    once: before the keepalive would have sent it (a card sent only by the keepalive comes a whole
    keepalive interval after the headers, as long as between two later cards)."""
    config, url = lonely
    wait_idle(url)
    started = time.monotonic()
    with open_stream(url) as response:
        assert response.headers["X-Zmqcam-State"] == "waking"
        reader = PartReader(response)
        headers, body = reader.next_part()
        first = time.monotonic() - started
        reader.next_part()
        interval = time.monotonic() - started - first
    assert headers["x-zmqcam-state"] == "waking"
    assert jpeg_size(body) == config.pano_size
    assert first < interval / 2, f"the card came {first:.2f} s after the request, the keepalive {interval:.2f} s"


def test_a_viewer_with_nothing_upstream_is_sent_the_card_every_keepalive(lonely: tuple[Config, str]) -> None:
    """With no frames at all, a viewer is sent the card again about every 2 s (the keepalive):
    players keep the connection and the bridge notices viewers that left. Guards the channel's
    keepalive timer, which replaced a per-client wait_for."""
    _, url = lonely
    wait_idle(url)
    with open_stream(url) as response:
        reader = PartReader(response)
        reader.next_part()
        arrivals = []
        for _ in range(2):
            headers, _ = reader.next_part()
            assert headers["x-zmqcam-state"] == "waking"
            arrivals.append(time.monotonic())
    interval = arrivals[1] - arrivals[0]
    assert 1.0 < interval < 5.0, f"the card was repeated after {interval:.1f} s"


def raw_request(url: str, data: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(data)
        reply = b""
        while b"\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def test_bad_http_requests_are_counted_and_survived(lonely: tuple[Config, str]) -> None:
    """Garbage, malformed headers, bad escapes and odd methods get 4xx, never 500, and are counted."""
    _, url = lonely
    before = get_status(url)["http"]["bad_requests"]
    garbage = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64) + b"\r\n\r\n",  # a TLS hello
        b"GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /stream HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 20000 + b"\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    ]
    for data in garbage:
        reply = raw_request(url, data)
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", reply), reply[:80]
    odd = {
        "/stream?fps=%ff": 400,
        "/stream/%00": 404,
        "/snapshot/..%2f..%2fetc.jpg": 404,
        "/stream/" + "x" * 300: 404,
        "/status?x=%zz": 200,  # /status takes no query: an unknown one is ignored
    }
    for path, code in odd.items():
        assert requests.get(url + path, timeout=5).status_code == code, path
    for method in ("POST", "PUT", "DELETE", "HEAD"):
        assert requests.request(method, url + "/stream", timeout=5).status_code == 405
    status = get_status(url)
    assert status["http"]["bad_requests"] >= before + len(garbage) - 1
    assert "500" not in status["http"]["responses"]


# ---------------------------------------------------------------------------------------------
# access control and shutdown


def test_access_control_by_token_or_basic_credentials(make_config: Callable[..., Config], children: Children) -> None:
    """With a token and basic credentials configured, anything else gets 401 with WWW-Authenticate."""
    config = make_config(
        cameras=1, http={"port": 0, "token": "s3cret-token", "basic_user": "ops", "basic_password": "pa:ss w0rd"}
    )
    _, url = start_bridge(children, config)

    def basic(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    denied = [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer s3cret-token-and-more"},
        basic("ops", "wrong"),
        basic("nobody", "pa:ss w0rd"),
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
        {"Authorization": "Digest whatever"},
    ]
    for headers in denied:
        for path in ("/status", "/", "/stream", "/snapshot/cam0.jpg", "/stream.mp4"):
            response = requests.get(url + path, headers=headers, timeout=5)
            assert response.status_code == 401, (path, headers)
            challenge = response.headers["WWW-Authenticate"]
            assert "Bearer" in challenge and "Basic" in challenge
    assert requests.get(url + "/status?token=wrong", timeout=5).status_code == 401
    allowed = [
        {"Authorization": "Bearer s3cret-token"},
        basic("ops", "pa:ss w0rd"),
    ]
    for headers in allowed:
        assert requests.get(url + "/status", headers=headers, timeout=5).status_code == 200
    assert requests.get(url + "/status?token=s3cret-token", timeout=5).status_code == 200
    unauthorized = len(denied) * 5 + 1  # every denied request above, counted
    assert requests.get(url + "/status", auth=("ops", "pa:ss w0rd"), timeout=5).json()["http"]["unauthorized"] == (
        unauthorized
    )


def test_secrets_are_compared_in_constant_time(
    make_config: Callable[..., Config], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every comparison of an offered token, user or password with the configured one goes through
    ``hmac.compare_digest`` (constant time), both of basic's even when the user is wrong, so timing
    tells an attacker nothing. Guards against a plain ``==``, whose time grows with the matching
    prefix."""
    from aiohttp.test_utils import make_mocked_request

    from zmqcam.bridge import auth

    config = make_config(cameras=1, http={"token": "s3cret-token", "basic_user": "ops", "basic_password": "pa:ss"})
    compared: list[tuple[bytes, bytes]] = []
    constant_time = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return constant_time(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    basic = "Basic " + base64.b64encode(b"nobody:pa:ss").decode()
    cases = [
        ({"Authorization": "Bearer s3cret-tokeX"}, "/status", False, [(b"s3cret-tokeX", b"s3cret-token")]),
        ({}, "/status?token=s3cret-token", True, [(b"s3cret-token", b"s3cret-token")]),
        ({"Authorization": basic}, "/status", False, [(b"nobody", b"ops"), (b"pa:ss", b"pa:ss")]),
    ]
    for headers, path, allowed, expected in cases:
        compared.clear()
        assert auth.authorized(config.http, make_mocked_request("GET", path, headers=headers)) is allowed
        assert compared == expected, (path, headers)


def test_status_command_reads_a_bridge_behind_basic_auth(
    make_config: Callable[..., Config], children: Children
) -> None:
    """`zmqcam-daemon status` authenticates to the bridge with whatever the config sets: basic
    credentials alone too (it used to send only a token, and showed no HTTP part then)."""
    from zmqcam.cli.status import gather_status

    config = make_config(cameras=1, http={"port": 0, "basic_user": "ops", "basic_password": "pa:ss w0rd"})
    _, url = start_bridge(children, config)
    assert requests.get(url + "/status", timeout=5).status_code == 401
    http = gather_status(config)["http"]
    assert http is not None and http["requests"] >= 2 and http["unauthorized"] == 1


def test_sigterm_stops_the_bridge_cleanly_with_a_viewer_connected(
    make_config: Callable[..., Config], children: Children
) -> None:
    """SIGTERM ends open streams and the process exits 0 promptly, removing its announce file."""
    config = make_config(cameras=1, http={"port": 0})
    proc, url = start_bridge(children, config)
    with open_stream(url) as response:
        reader = PartReader(response)
        reader.next_part()
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(8)
        assert proc.exitcode == 0
        with pytest.raises((StreamEnded, requests.exceptions.RequestException)):
            for _ in range(100):
                reader.next_part()
    assert read_announce(config.run_dir) is None


# ---------------------------------------------------------------------------------------------
# TLS


def self_signed_cert(directory: Path, name: str = "") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made with the openssl CLI
    (.ci/run installs it)."""
    openssl = shutil.which("openssl")
    needs(openssl is not None, "needs the openssl command to make a test certificate (Debian package openssl)")
    assert openssl is not None
    cert, key = directory / f"cert{name}.pem", directory / f"key{name}.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def test_https_stream_and_status_for_a_verifying_client(
    make_config: Callable[..., Config], children: Children, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """With http.tls_cert and tls_key the bridge serves https: a client that verifies the
    certificate reads /stream parts and /status, and `zmqcam-daemon status` reads /status over
    https; plain http to the TLS port fails at once, a TLS client that never says hello is closed
    after the request-head deadline, and the bridge survives both without a traceback."""
    cert, key = self_signed_cert(tmp_path)
    config = make_config(cameras=1, http={"port": 0, "tls_cert": str(cert), "tls_key": str(key)})
    _, plain_url = start_bridge(children, config, head_timeout=1.0)
    url = plain_url.replace("http://", "https://")
    assert read_announce(config.run_dir)["scheme"] == "https"  # type: ignore[index]
    with requests.get(url + "/stream", stream=True, timeout=(5, 15), verify=str(cert)) as response:
        headers, body = PartReader(response).next_part()
    assert headers["x-zmqcam-state"] == "waking" and jpeg_size(body) == config.pano_size
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url + "/status", timeout=5)  # the system CAs do not know a self-signed cert

    started = time.monotonic()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(plain_url + "/status", timeout=5)
    assert time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", int(plain_url.rsplit(":", 1)[1])), timeout=10) as silent:
        started = time.monotonic()
        assert silent.recv(100) == b""  # closed by the bridge, not by our timeout
        assert time.monotonic() - started < 6

    status = requests.get(url + "/status", timeout=5, verify=str(cert)).json()
    assert status["http"]["clients"] == 0 and "500" not in status["http"]["responses"]
    from zmqcam.cli.status import gather_status

    assert gather_status(config)["http"]["requests"] >= 2
    assert "Traceback" not in capfd.readouterr().err
    from zmqcam.supervisor.supervisor import where_to_look

    assert where_to_look(config)[0].startswith(f"zmqcam: panorama at https://127.0.0.1:{config.http.port}/stream")


def test_tls_config_problems_are_one_line_each(tmp_path: Path) -> None:
    """tls_cert / tls_key: relative paths are relative to the config file; both or neither; a
    missing, unreadable, non-PEM or mismatched file is one config line naming file, key and value."""
    cert, key = self_signed_cert(tmp_path)
    other_cert, other_key = self_signed_cert(tmp_path, "-other")
    (tmp_path / "junk.pem").write_text("not a certificate\n")

    def load(http: str) -> Config:
        path = tmp_path / "rig.toml"
        path.write_text(f'[[camera]]\nname = "cam0"\n\n[http]\n{http}\n')
        return load_config(path)

    def problems(http: str) -> list[str]:
        with pytest.raises(ConfigError) as caught:
            load(http)
        return caught.value.lines

    config = load('tls_cert = "cert.pem"\ntls_key = "key.pem"')  # relative to rig.toml, not to the cwd
    assert (config.http.tls_cert, config.http.tls_key) == (str(cert), str(key))
    rig = str(tmp_path / "rig.toml")
    assert problems('tls_cert = "cert.pem"') == [f"{rig}: http.tls_cert: 'cert.pem': tls_cert and tls_key go together"]
    assert problems('tls_key = "key.pem"') == [f"{rig}: http.tls_cert: None: tls_cert and tls_key go together"]
    assert problems('tls_cert = "nope.pem"\ntls_key = "key.pem"') == [
        f"{rig}: http.tls_cert: 'nope.pem': cannot read: No such file or directory"
    ]
    assert problems('tls_cert = "junk.pem"\ntls_key = "junk.pem"') == [
        f"{rig}: http.tls_cert: 'junk.pem': not a PEM certificate",
        f"{rig}: http.tls_key: 'junk.pem': not a PEM private key",
    ]
    assert problems(f'tls_cert = "{cert.name}"\ntls_key = "{other_key.name}"') == [
        f"{rig}: http.tls_cert: 'cert.pem': does not match tls_key"
    ]
    assert other_cert.exists()
