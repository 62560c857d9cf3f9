"""H.264 to people and players: ``/stream.mp4`` of a real rig (two synthetic cameras, the stitcher,
the bridge, one set for the module) read by ffprobe, ffmpeg and plain HTTP clients."""

from __future__ import annotations

import io
import itertools
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import Children, bridge_status, needs, wait_for
from tests.helpers.bridge import FPS, build_config, get_status, start_bridge
from zmqcam.config import Config
from zmqcam.grabber import run_grabber
from zmqcam.stitcher import run_stitcher
from zmqcam.video.h264 import coded_size


@dataclass
class Rig:
    config: Config
    url: str

    @property
    def coded(self) -> tuple[int, int]:
        return coded_size(*self.config.pano_size)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    run_dir = tempfile.mkdtemp(prefix="zc-", dir="/tmp")
    config = build_config(run_dir, http={"port": 0, "max_clients": 20})
    kids = Children()
    try:
        for cam in config.camera:
            kids.start(run_grabber, config, cam.name)
        kids.start(run_stitcher, config)
        _, url = start_bridge(kids, config)
        wait_for(
            lambda: all(c["status_age"] is not None for c in get_status(url)["cameras"].values()),
            30,
            interval=0.2,
            message="grabber status via the bridge",
        )
        yield Rig(config, url)
    finally:
        kids.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


def ffmpeg_tools() -> None:
    needs(bool(shutil.which("ffmpeg") and shutil.which("ffprobe")), "needs ffmpeg and ffprobe (Debian package ffmpeg)")


def idle(url: str) -> dict[str, Any]:
    """Wait until earlier tests' viewers are gone and the bridge subscribes nothing."""
    return wait_for(
        lambda: (s := get_status(url)) and s["http"]["clients"] == 0 and not s["subscriptions"] and s,
        15,
        interval=0.1,
        message="the bridge to be idle",
    )


@dataclass
class Mp4Viewer:
    """A plain HTTP client reading /stream.mp4 in a thread, counting bytes and moof boxes."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    received: bytearray = field(default_factory=bytearray)
    errors: list[BaseException] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Mp4Viewer:
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        try:
            with requests.get(self.url + "/stream.mp4", stream=True, timeout=20) as r:
                assert r.status_code == 200, r.text
                self.headers = dict(r.headers)
                for chunk in r.iter_content(chunk_size=65536):
                    self.received += chunk
                    if self._stop.is_set():
                        return
        except BaseException as exc:
            self.errors.append(exc)

    def fragments(self) -> int:
        return bytes(self.received).count(b"moof")

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(25)
        assert not self.errors, self.errors


def test_a_stream_mp4_viewer_wakes_the_cameras_and_gets_init_and_fragments(rig: Rig) -> None:
    """With the cameras asleep, a /stream.mp4 viewer wakes them (the bridge subscribes pano h264, the
    stitcher its cameras); the response says its codec and capture origin and starts with the init
    segment (ftyp, moov) followed by fragments; when it leaves, the bridge lets go."""
    idle(rig.url)
    wait_for(
        lambda: all(c["state"] == "asleep" for c in get_status(rig.url)["cameras"].values()),
        15,
        interval=0.2,
        message="the cameras to sleep",
    )
    since = time.time()
    with Mp4Viewer(rig.url) as viewer:
        wait_for(lambda: viewer.fragments() >= 10 or viewer.errors, 30, interval=0.1, message="10 fragments")

        def awake(status: dict[str, Any]) -> None:
            assert all(c["state"] == "live" for c in status["cameras"].values()), status["cameras"]
            assert "pano h264" in status["subscriptions"], status["subscriptions"]
            assert status["http"]["mp4"]["clients"] == 1 and status["http"]["mp4"]["subscribed"], status["http"]["mp4"]
            assert status["stitcher"]["h264_encoding"], status["stitcher"]

        bridge_status(rig.url, awake, since)
    data = bytes(viewer.received)
    assert data[4:8] == b"ftyp" and b"moov" in data[: data.find(b"moof")], "init segment first"
    content_type = viewer.headers["Content-Type"]
    assert content_type.startswith('video/mp4; codecs="avc1.') and content_type.endswith('"'), content_type
    origin = int(viewer.headers["X-Capture-Origin-Ns"])
    assert abs(origin / 1e9 - since) < 30, "the capture time of media time 0"
    status = idle(rig.url)
    assert status["http"]["mp4"]["fragments_sent"] >= 10
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in requests.get(rig.url + "/metrics", timeout=5).text.splitlines()
        if line.startswith("zmqcam_")
    }
    assert metrics["zmqcam_http_mp4_fragments_sent_total"] >= 10 and metrics["zmqcam_http_mp4_clients"] == 0
    assert metrics["zmqcam_stitcher_h264_encoded_total"] >= 10


def test_ffprobe_sees_h264_at_the_coded_size_with_frames_advancing(rig: Rig) -> None:
    """ffprobe reads /stream.mp4 as a player would: one H.264 video stream of the panorama's coded
    size (its odd width padded to even), and frame timestamps that advance."""
    ffmpeg_tools()
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-read_intervals", "%+#20", "-show_frames",
         "-show_entries", "stream=codec_name,width,height:frame=best_effort_timestamp_time,key_frame",
         "-of", "json", rig.url + "/stream.mp4"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    probe = json.loads(result.stdout)
    stream = probe["streams"][0]
    assert stream["codec_name"] == "h264"
    assert (stream["width"], stream["height"]) == rig.coded
    times = [float(f["best_effort_timestamp_time"]) for f in probe["frames"]]
    assert len(times) >= 15, probe["frames"]
    assert all(b > a for a, b in itertools.pairwise(times)), times
    assert probe["frames"][0]["key_frame"] == 1, "the stream starts at a keyframe"


def test_ffmpeg_records_two_seconds_of_it(rig: Rig, tmp_path: Path) -> None:
    """``ffmpeg -i URL -t 2 out.mp4`` records the stream; the file holds about two seconds of H.264."""
    ffmpeg_tools()
    out = tmp_path / "out.mp4"
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", rig.url + "/stream.mp4", "-t", "2", "-c", "copy", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames:format=duration", "-of", "json", str(out)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    info = json.loads(probe.stdout)
    stream = info["streams"][0]
    assert stream["codec_name"] == "h264" and (stream["width"], stream["height"]) == rig.coded
    assert 1.5 <= float(info["format"]["duration"]) <= 2.5, info
    assert int(stream["nb_read_frames"]) >= 15, info


def test_two_viewers_get_it_encoded_once(rig: Rig) -> None:
    """Two /stream.mp4 viewers: the stitcher encodes each panorama once (H.264 encodes grow no faster
    than panoramas), and each viewer gets every fragment."""
    idle(rig.url)
    with Mp4Viewer(rig.url) as a, Mp4Viewer(rig.url) as b:
        wait_for(lambda: min(a.fragments(), b.fragments()) >= 5, 30, interval=0.1, message="both viewers served")
        since = time.time()

        def two_viewers(status: dict[str, Any]) -> None:
            assert status["http"]["mp4"]["clients"] == 2 and status["stitcher"]["h264_encoding"], status["http"]["mp4"]

        first = bridge_status(rig.url, two_viewers, since)
        start_a, start_b = a.fragments(), b.fragments()

        def later(status: dict[str, Any]) -> None:
            two_viewers(status)
            assert status["stitcher"]["panoramas"] >= first["stitcher"]["panoramas"] + 15

        last = bridge_status(rig.url, later, time.time(), timeout=30)
        got_a, got_b = a.fragments() - start_a, b.fragments() - start_b
    made = last["stitcher"]["panoramas"] - first["stitcher"]["panoramas"]
    encoded = last["stitcher"]["h264_encoded"] - first["stitcher"]["h264_encoded"]
    assert 0 < encoded <= made + 1, f"{encoded} encodes for {made} panoramas and two viewers"
    assert got_a >= made // 2 and got_b >= made // 2, (got_a, got_b, made)
    sent = last["http"]["mp4"]["fragments_sent"] - first["http"]["mp4"]["fragments_sent"]
    assert sent >= 2 * (encoded - 2), "both viewers were sent the fragments"


def mp4_boxes(data: bytes) -> Iterator[tuple[str, bytes]]:
    """The top-level boxes of an MP4 byte stream (the last one may be cut off: not yielded)."""
    at = 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        if size < 8 or at + size > len(data):
            return
        yield data[at + 4 : at + 8].decode("latin-1"), data[at : at + size]
        at += size


def test_a_slow_viewer_skips_to_the_next_keyframe_and_its_stream_still_decodes(rig: Rig) -> None:
    """A viewer that stops reading (a tiny receive buffer, so the kernel cannot hide it) is moved on
    to the newest keyframe rather than queued: the fragment numbers it gets jump, the bridge counts
    the skip, and everything it received still decodes without an error."""
    import av

    idle(rig.url)
    skips_before = get_status(rig.url)["http"]["mp4"]["skips"]
    host, port = rig.url.rsplit("/", 1)[-1].split(":")
    data = bytearray()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect((host, int(port)))
        sock.sendall(b"GET /stream.mp4 HTTP/1.0\r\n\r\n")  # 1.0: the body unchunked
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
        data = bytearray(body)
        # stop reading until the bridge's write to us is stuck (nothing more sent) while the stream
        # moves on by more than a GOP (keyint 1 s)
        sent = [get_status(rig.url)["http"]["mp4"]["fragments_sent"]]

        def stuck() -> bool:
            sent.append(get_status(rig.url)["http"]["mp4"]["fragments_sent"])
            return len(sent) > 5 and sent[-1] == sent[-6]

        wait_for(stuck, 30, interval=0.2, message="the bridge's write to the stalled viewer to block")
        muxed = get_status(rig.url)["http"]["mp4"]["fragments"]
        wait_for(lambda: get_status(rig.url)["http"]["mp4"]["fragments"] > muxed + 2 * FPS, 15, interval=0.2)
        # read again: the write in progress ends, and the viewer is moved on to the newest keyframe
        deadline = time.monotonic() + 20
        while get_status(rig.url)["http"]["mp4"]["skips"] == skips_before:
            assert time.monotonic() < deadline, "the stalled viewer was not skipped ahead"
            data += sock.recv(65536)

        def numbers() -> list[int]:
            """mfhd's sequence numbers: the muxer's fragment count, +1 per fragment; a skip leaves a gap."""
            return [int.from_bytes(box[20:24], "big") for name, box in mp4_boxes(bytes(data)) if name == "moof"]

        while not any(b > a + 1 for a, b in zip(numbers(), numbers()[1:], strict=False)):
            assert time.monotonic() < deadline, f"no jump in the fragments received: {numbers()}"
            data += sock.recv(65536)
    boxes = list(mp4_boxes(bytes(data)))
    assert [name for name, _ in boxes[:2]] == ["ftyp", "moov"]
    whole = b"".join(box for _, box in boxes)
    with av.open(io.BytesIO(whole), "r") as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= len(numbers()) - 1, (frames, len(numbers()))


def page_state(driver: Any) -> dict[str, Any]:
    state: dict[str, Any] = driver.execute_script(
        "const v = document.getElementById('pano-video'), i = document.getElementById('pano'),"
        " b = document.getElementById('mode');"
        "return {mode: window.zmqcamPlayer ? window.zmqcamPlayer.state.mode : '', t: v.currentTime,"
        " vw: v.videoWidth, vh: v.videoHeight, iw: i.naturalWidth, ih: i.naturalHeight, button: b.textContent,"
        " videoShown: v.style.display !== 'none', imgShown: i.style.display !== 'none'};"
    )
    return state


def test_the_page_plays_h264_through_mse_and_its_switch_shows_mjpeg(rig: Rig, browser: Any) -> None:
    """The page at / plays the panorama as H.264 through MSE (currentTime advances, videoWidth is the
    coded width) and says so on its switch; clicking the switch shows the MJPEG stream instead (the
    <img> gets panorama-sized frames) and says MJPEG."""
    browser.get(rig.url + "/")
    playing = wait_for(lambda: (s := page_state(browser))["mode"] == "mse" and s["vw"] > 0 and s, 30, 0.1,
                       "the page to play H.264 with MSE")  # fmt: skip
    assert (playing["vw"], playing["vh"]) == rig.coded
    assert playing["button"] == "H.264 (MSE)" and playing["videoShown"] and not playing["imgShown"]
    wait_for(lambda: page_state(browser)["t"] > playing["t"] + 1.0, 20, 0.1, "currentTime to advance")

    browser.find_element("id", "mode").click()
    shown = wait_for(lambda: (s := page_state(browser))["mode"] == "mjpeg" and s["iw"] > 0 and s, 20, 0.1,
                     "the switch to show MJPEG")  # fmt: skip
    assert (shown["iw"], shown["ih"]) == rig.config.pano_size
    assert shown["button"] == "MJPEG" and shown["imgShown"] and not shown["videoShown"]
    assert "mode=mjpeg" in browser.current_url, "a reload keeps the choice"


def test_the_page_falls_back_to_mjpeg_where_there_is_no_mse(rig: Rig, browser: Any) -> None:
    """In a browser without Media Source Extensions the page shows the MJPEG stream, and its switch
    says MJPEG."""
    browser.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument",
        {"source": "delete window.MediaSource; delete window.ManagedMediaSource;"},
    )
    browser.get(rig.url + "/")
    shown = wait_for(lambda: (s := page_state(browser))["mode"] == "mjpeg" and s["iw"] > 0 and s, 20, 0.1,
                     "the page to fall back to MJPEG")  # fmt: skip
    assert (shown["iw"], shown["ih"]) == rig.config.pano_size
    assert shown["button"] == "MJPEG"
    assert browser.execute_script("return window.zmqcamPlayer.state.error").startswith("this browser has no")
