"""The H.264 building blocks with real PyAV/libx264, a real aiohttp server and real ffprobe/ffmpeg."""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import free_port, needs, wait_for
from tests.helpers.media_server import RtspServer
from tests.helpers.video import PANO_SIZE, LiveVideoServer, live_server, psnr
from zmqcam.errors import VideoError
from zmqcam.sources.synthetic import render_scene
from zmqcam.video.fmp4 import Fragment, FragmentMuxer, LiveFragments, codec_string
from zmqcam.video.h264 import AccessUnit, EncoderSettings, H264Decoder, H264Encoder, is_keyframe
from zmqcam.video.mp4file import ORIGIN_KEY, Mp4Reader, Mp4Recorder
from zmqcam.video.push import PushWorker, push_format

T0_NS = 1_750_000_000_000_000_000


def encode_scene(n: int, settings: EncoderSettings, fps: float = 30.0) -> tuple[list[np.ndarray], list[AccessUnit]]:
    """``n`` panoramas of the moving synthetic scene and their access units, captured at ``fps``."""
    images, units = [], []
    with H264Encoder(*PANO_SIZE, settings) as encoder:
        for k in range(n):
            capture_ns = T0_NS + int(k * 1e9 / fps)
            image = render_scene(*PANO_SIZE, capture_ns / 1e9)
            images.append(image)
            units.append(encoder.encode(image, capture_ns))
    return images, units


def ffmpeg_tools() -> None:
    needs(bool(shutil.which("ffmpeg") and shutil.which("ffprobe")), "needs ffmpeg and ffprobe (Debian package ffmpeg)")


def test_a_decoder_starting_at_any_keyframe_gets_the_source_frames_back() -> None:
    """One access unit per frame; keyframes exactly every keyint frames, each carrying SPS+PPS; a
    decoder joining mid-stream waits for the next keyframe, then decodes frames of the source's odd
    size (the even padding cropped off) that match the source (PSNR > 30 dB at the defaults)."""
    images, units = encode_scene(35, EncoderSettings(keyint=15))
    assert len(units) == 35
    assert [k for k, au in enumerate(units) if au.keyframe] == [0, 15, 30]
    assert [k for k, au in enumerate(units) if is_keyframe(au.data)] == [0, 15, 30]
    assert [au.pts for au in units[:3]] == [0, 3000, 6000], "timestamps follow the capture times (90 kHz)"

    decoder = H264Decoder(size=PANO_SIZE)
    decoded = {k: decoder.decode(units[k].data, units[k].keyframe) for k in range(7, 35)}
    assert all(decoded[k] is None for k in range(7, 15)) and decoder.waiting == 8
    for k in range(15, 35):
        frame = decoded[k]
        assert frame is not None and frame.shape == (250, 2347, 3)
        assert psnr(frame, images[k]) > 30, f"frame {k}: {psnr(frame, images[k]):.1f} dB"
    # without the header's flag the NAL units tell keyframes apart
    late = H264Decoder(size=PANO_SIZE)
    assert late.decode(units[29].data) is None and late.decode(units[30].data) is not None


def test_bad_input_gets_one_line_errors_and_a_corrupt_unit_costs_only_its_gop() -> None:
    """Wrong frame sizes and settings are refused with one clear line; a corrupt access unit raises
    VideoError and the decoder resumes at the next keyframe."""
    with pytest.raises(VideoError, match="preset 'placebo'"):
        EncoderSettings(preset="placebo")
    with pytest.raises(VideoError, match="keyint 0"):
        EncoderSettings(keyint=0)
    with H264Encoder(*PANO_SIZE) as encoder, pytest.raises(VideoError, match=r"expected \(250, 2347, 3\) uint8"):
        encoder.encode(np.zeros((250, 2346, 3), np.uint8), T0_NS)

    _, units = encode_scene(12, EncoderSettings(keyint=6))
    decoder = H264Decoder(size=PANO_SIZE)
    assert decoder.decode(units[0].data, True) is not None
    with pytest.raises(VideoError, match="corrupt access unit"):
        decoder.decode(b"\x00\x00\x00\x01\x65" + b"\xff" * 64, False)
    assert decoder.decode(units[1].data, False) is None, "no smeared pictures after a corrupt unit"
    assert decoder.decode(units[6].data, True) is not None


def test_bitrate_mode_keeps_to_its_rate() -> None:
    """With ``bitrate`` the stream keeps near it (VBV), far below what CRF 18 spends on the same
    scene: the knob for a link of known size works."""
    fps = 30.0
    _, capped = encode_scene(60, EncoderSettings(bitrate=300_000, keyint=30, preset="ultrafast"), fps)
    _, crf18 = encode_scene(60, EncoderSettings(crf=18, keyint=30, preset="ultrafast"), fps)
    rate = sum(len(au.data) for au in capped) * 8 / (len(capped) / fps)
    assert 150_000 < rate < 450_000, f"{rate / 1000:.0f} kbit/s for a 300 kbit/s target"
    assert sum(len(au.data) for au in crf18) > 3 * sum(len(au.data) for au in capped)


def test_muxer_emits_one_fragment_per_unit_and_viewers_skip_to_the_latest_keyframe() -> None:
    """The init segment comes once (ftyp+moov, codec string from its avcC); every access unit
    becomes one moof+mdat (out when the next one is muxed); a viewer that falls a GOP behind is
    moved to the latest keyframe, never sent the backlog."""
    _, units = encode_scene(25, EncoderSettings(keyint=10))
    muxer = FragmentMuxer(2348, 250)
    assert muxer.add(units[1].data, False, units[1].capture_ns) == [] and muxer.dropped == 1
    live = LiveFragments()
    fragments: list[Fragment] = []
    for au in units:
        out = muxer.add(au.data, au.keyframe, au.capture_ns)
        live.init_segment = muxer.init_segment
        live.add(out)
        fragments += out
    fragments += muxer.close()
    assert muxer.init_segment is not None and muxer.init_segment[4:8] == b"ftyp"
    assert codec_string(muxer.init_segment).startswith("avc1.64")
    assert [f.seq for f in fragments] == list(range(25))
    assert all(f.data[4:8] == b"moof" for f in fragments)
    assert [f.keyframe for f in fragments] == [au.keyframe for au in units]

    # the muxer stopped after 25 units; `live` last saw 24 fragments (the 25th came from close)
    sent, cursor = live.join()
    assert sent[0] == muxer.init_segment and len(sent) == 1 + 4 and cursor == 24, "init + the GOP from unit 20"
    assert live.since(22) == ([fragments[22].data, fragments[23].data], 24), "a viewer catching up in its GOP"
    assert live.since(12) == ([f.data for f in fragments[20:24]], 24) and live.skips == 1, "behind: skip"
    assert live.since(24) == ([], 24)


@pytest.fixture
def server() -> Iterator[LiveVideoServer]:
    yield from live_server(fps=15.0, keyint=15)


def test_a_late_viewer_of_the_http_fmp4_stream_decodes_frames_of_the_right_size(server: LiveVideoServer) -> None:
    """A viewer joining a stream whose muxer started long before (its first fragment is not the
    muxer's first) gets init segment + GOP over a real HTTP response: ffprobe sees H.264 of the
    coded size, ffmpeg decodes frames of that size, starting at a timestamp > 0 (the muxer's
    timeline: the late joiner's start_time)."""
    ffmpeg_tools()
    server.wait_frames(40)  # > 2 GOPs: the viewer's first fragment is far from the muxer's first
    url = server.url + "/stream.mp4"
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "stream=codec_name,width,height,start_time",
         "-of", "default=nw=1", url],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    fields = dict(line.split("=", 1) for line in probe.stdout.split())
    assert fields["codec_name"] == "h264", probe
    assert (int(fields["width"]), int(fields["height"])) == server.encoder.coded_size == (2348, 250)
    assert float(fields["start_time"]) > 1.0, "a late joiner starts on the muxer's timeline"

    frames = 10
    w, h = server.encoder.coded_size
    decoded = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", url, "-frames:v", str(frames), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert decoded.returncode == 0, decoded.stderr[-2000:]
    assert len(decoded.stdout) == frames * w * h
    pictures = np.frombuffer(decoded.stdout, np.uint8).reshape(frames, h, w)
    assert pictures.std() > 20, "a picture, not a flat card"
    assert np.abs(pictures[0].astype(int) - pictures[-1].astype(int)).mean() > 0.5, "the scene moves"
    deadline = time.monotonic() + 10
    while server.viewers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.viewers == 0, "viewers that hung up are gone"


def test_push_reaches_an_rtsp_server_and_reconnects_after_it_comes_back(server: LiveVideoServer) -> None:
    """A PushWorker fed the live access units ANNOUNCEs/RECORDs to a real RTSP server (ffmpeg in
    listen mode), which decodes frames of the coded size; the server killed, the worker counts the
    failure and backs off without ever blocking ``offer``; a new server on the same port gets the
    stream again (a second connect, starting at a keyframe)."""
    ffmpeg_tools()
    port = free_port()
    size = server.encoder.coded_size
    receiver = RtspServer(port, "live")
    worker = PushWorker(receiver.url, *size, fps=server.fps, backoff=(0.2, 1.0))
    offer_ms: list[float] = []

    def offer(au: AccessUnit) -> None:
        t = time.perf_counter()
        worker.offer(au.data, au.keyframe, au.capture_ns)
        offer_ms.append((time.perf_counter() - t) * 1000)

    worker.start()
    server.listeners.append(offer)
    try:
        wait_for(lambda: receiver.frames >= 10, 20, message="the RTSP server to decode 10 frames")
        assert worker.stats()["state"] == "live" and worker.connects == 1
        receiver.kill()
        wait_for(lambda: worker.failures >= 1, 20, message="the worker to notice the server is gone")
        # the write that finds it gone: broken pipe or reset; every reconnect after: refused
        assert any(word in worker.last_error.lower() for word in ("broken pipe", "reset", "refused")), worker.last_error

        receiver = RtspServer(port, "live")
        wait_for(lambda: receiver.frames >= 10, 30, message="the new RTSP server to decode 10 frames")
        assert worker.connects >= 2 and worker.stats()["state"] == "live"
        assert max(offer_ms) < 50, f"offer blocked for {max(offer_ms):.0f} ms"
    finally:
        server.listeners.remove(offer)
        worker.stop()
        receiver.kill()


def test_push_to_an_rtmp_server_is_decoded_there(server: LiveVideoServer) -> None:
    """The same worker pushes to an RTMP URL (flv muxer) and a real RTMP server (ffmpeg -listen 1)
    decodes frames of the coded size."""
    ffmpeg_tools()
    w, h = server.encoder.coded_size
    url = f"rtmp://127.0.0.1:{free_port()}/live/key"
    receiver = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-listen", "1", "-i", url,
         "-frames:v", "10", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = PushWorker(url, w, h, fps=server.fps, backoff=(0.2, 1.0)).start()

    def offer(au: AccessUnit) -> None:
        worker.offer(au.data, au.keyframe, au.capture_ns)

    server.listeners.append(offer)
    try:
        out, _ = receiver.communicate(timeout=30)
        assert len(out) == 10 * w * h, f"{len(out) / (w * h):.1f} frames decoded"
        assert worker.connects >= 1
    finally:
        server.listeners.remove(offer)
        worker.stop()
        if receiver.poll() is None:
            receiver.kill()
            receiver.communicate()


def test_publish_urls_are_checked_up_front() -> None:
    """A URL that is neither rtsp:// nor rtmp:// is refused at once, with one line."""
    with pytest.raises(VideoError, match="must be rtsp://host"):
        PushWorker("http://example.invalid/live", 2348, 250)
    assert push_format("rtmp://127.0.0.1/live/key") == "flv"


def test_a_recording_reads_back_frame_by_frame_with_its_capture_times(tmp_path: Path) -> None:
    """Access units recorded to .mp4 (remuxed) read back as the source's frames (odd width restored,
    PSNR > 30 dB) with their irregular capture times to the tick; ffprobe sees H.264 and the
    capture origin in the metadata."""
    ffmpeg_tools()
    rng = np.random.default_rng(7)
    captures = list(T0_NS + np.cumsum(rng.integers(20_000_000, 60_000_000, 30)))  # 20-60 ms apart
    images, units = [], []
    with H264Encoder(*PANO_SIZE, EncoderSettings(keyint=10)) as encoder:
        for capture_ns in captures:
            images.append(render_scene(*PANO_SIZE, capture_ns / 1e9))
            units.append(encoder.encode(images[-1], int(capture_ns)))
        coded = encoder.coded_size
    path = tmp_path / "pano.mp4"
    with Mp4Recorder(path, PANO_SIZE, coded) as recorder:
        assert not recorder.write(units[3].data, False, units[3].capture_ns), "nothing before a keyframe"
        for au in units:
            recorder.write(au.data, au.keyframe, au.capture_ns)

    with Mp4Reader(path) as reader:
        assert reader.size == PANO_SIZE and reader.coded_size == coded and reader.origin_ns == captures[0]
        frames = list(reader.frames())
    assert len(frames) == len(units)
    for frame, image, capture_ns in zip(frames, images, captures, strict=True):
        assert abs(frame.capture_ns - capture_ns) <= 11_112, "capture time exact to one 90 kHz tick"
        assert frame.image.shape == (250, 2347, 3) and psnr(frame.image, image) > 30
    assert [f.keyframe for f in frames] == [au.keyframe for au in units]

    probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name:format_tags", "-of", "json",
                            str(path)], capture_output=True, text=True, timeout=30)  # fmt: skip
    info = json.loads(probe.stdout)
    assert info["streams"][0]["codec_name"] == "h264"
    assert info["format"]["tags"][ORIGIN_KEY] == str(captures[0])


RECORD_CHILD = """
import sys, time
from zmqcam.sources.synthetic import render_scene
from zmqcam.video.h264 import EncoderSettings, H264Encoder
from zmqcam.video.mp4file import Mp4Recorder
encoder = H264Encoder(2347, 250, EncoderSettings(keyint=10, preset="ultrafast"))
recorder = Mp4Recorder(sys.argv[1], (2347, 250), encoder.coded_size)
for n in range(10_000):
    capture_ns = time.time_ns()
    au = encoder.encode(render_scene(2347, 250, capture_ns / 1e9), capture_ns)
    recorder.write(au.data, au.keyframe, au.capture_ns)
    print(n + 1, flush=True)
    time.sleep(0.02)
"""


def test_a_recorder_killed_mid_recording_leaves_a_readable_file(tmp_path: Path) -> None:
    """SIGKILL a recording process: the file it leaves (no trailer, no index) reads back up to
    the frame before the one in flight, capture times increasing."""
    path = tmp_path / "killed.mp4"
    child = subprocess.Popen([sys.executable, "-c", RECORD_CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        written = 0
        for line in child.stdout:
            written = int(line)
            if written >= 25:
                break
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(5)
        if child.stdout is not None:
            child.stdout.close()
    with Mp4Reader(path) as reader:
        frames = list(reader.frames())
    assert len(frames) >= written - 1, f"{len(frames)} frames readable of {written} written"
    assert all(b.capture_ns > a.capture_ns for a, b in itertools.pairwise(frames))
    assert frames[0].image.shape == (250, 2347, 3)
