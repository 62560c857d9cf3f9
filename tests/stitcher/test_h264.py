"""``pano h264`` from the real stitcher process on four synthetic grabbers: decoded back to the
panorama it was made from, and made only while someone subscribes to it."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from tests.helpers import Children, bus_status, psnr, wait_for
from tests.helpers.bridge import build_config
from zmqcam import Subscriber
from zmqcam.bus import protocol
from zmqcam.bus.status import collect_status
from zmqcam.config import Config
from zmqcam.grabber import run_grabber
from zmqcam.stitcher import run_stitcher
from zmqcam.video import H264Decoder

#: the original rig's four cameras: a 2347x250 panorama, odd width as the encoder meets it
CAMERAS = 4
FPS = 10


@pytest.fixture(scope="module")
def rig() -> Iterator[Config]:
    run_dir = tempfile.mkdtemp(prefix="zc-", dir="/tmp")
    config = build_config(run_dir, cameras=CAMERAS, http={"enabled": False})
    config = config.model_copy(update={"camera": [cam.model_copy(update={"fps": float(FPS)}) for cam in config.camera]})
    kids = Children()
    try:
        for cam in config.camera:
            kids.start(run_grabber, config, cam.name)
        kids.start(run_stitcher, config)
        wait_for(lambda: len(collect_status(config, timeout=2.0)) == CAMERAS + 1, 30, message="rig status")
        yield config
    finally:
        kids.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


def test_pano_h264_decodes_to_the_raw_panoramas_of_the_same_seq(rig: Config) -> None:
    """A Subscriber of pano h264 gets access units in order from a keyframe on (SPS/PPS in it), with
    the header fields consumers need; decoded with H264Decoder they match the pano raw panoramas of
    the same seq and capture time (PSNR > 30 dB), the even padding cropped off."""
    width, height = rig.pano_size
    assert (width, height) == (2347, 250)
    decoder = H264Decoder(size=(width, height))
    raw: dict[int, tuple[int, np.ndarray]] = {}
    decoded: dict[int, tuple[int, np.ndarray]] = {}
    units: list[Any] = []
    with Subscriber("pano", kind="h264", config=rig) as h264, Subscriber("pano", kind="raw", config=rig) as pano:
        deadline = time.monotonic() + 30
        while len(units) < 3 * FPS and time.monotonic() < deadline:
            ok, frame = pano.read(timeout=0)
            if ok and frame is not None:
                raw[frame.seq] = (frame.capture_ns, frame.image.copy())
            ok, unit = h264.read(timeout=0.05)
            if not ok or unit is None:
                continue
            units.append(unit)
            image = decoder.decode(bytes(unit.payload), unit.keyframe)
            assert image is not None, f"unit {len(units)} (seq {unit.seq}) decoded to nothing"
            decoded[unit.seq] = (unit.capture_ns, image)
    assert len(units) == 3 * FPS, f"{len(units)} access units in 30 s"
    first = units[0]
    assert first.keyframe and first.extra["key"] is True, "a subscriber starts at a keyframe"
    assert (
        first.extra["coded_w"] == 2348 and first.extra["coded_h"] == 250 and (first.width, first.height) == (2347, 250)
    )
    assert first.extra["fps"] == FPS and first.extra["codec"].startswith("avc1.")
    assert [u.extra["au"] for u in units] == list(range(first.extra["au"], first.extra["au"] + len(units)))
    keys = [u.seq for u in units if u.keyframe]
    assert len(keys) >= 2, "keyint is 1 s: a keyframe every 10 panoramas"
    assert all(u.extra["gop"] == max(k for k in keys if k <= u.seq) for u in units)
    both = sorted(set(raw) & set(decoded))
    assert len(both) >= 5, f"only {len(both)} panoramas seen both raw and decoded"
    for seq in both:
        assert raw[seq][0] == decoded[seq][0], f"seq {seq}: capture times differ"
        quality = psnr(decoded[seq][1], raw[seq][1])
        assert quality > 30, f"seq {seq}: {quality:.1f} dB"


def test_nobody_on_h264_means_no_encoder_while_jpeg_viewers_watch(rig: Config) -> None:
    """With pano jpeg watched and pano h264 not, no encoder exists and the H.264 counters stay flat
    while panoramas are made and JPEG-encoded."""

    def jpeg_only(s: dict[str, dict[str, Any]]) -> None:
        pano = s["pano"]
        assert pano["subscribers"].get("jpeg") == 1 and pano["subscribers"].get("h264") == 0, pano
        assert pano["upstream"] and not pano["h264_encoding"], pano

    with Subscriber("pano", kind="jpeg", config=rig) as viewer:
        assert viewer.read(timeout=15)[0], "no JPEG panorama"
        before = bus_status(rig, jpeg_only, streams=["pano"])["pano"]

        def more_panoramas(s: dict[str, dict[str, Any]]) -> None:
            jpeg_only(s)
            assert s["pano"]["jpeg_encoded"] >= before["jpeg_encoded"] + 2 * FPS, s["pano"]

        after = bus_status(rig, more_panoramas, streams=["pano"], timeout=30)["pano"]
    for counter in ("h264_encoders", "h264_offered", "h264_encoded"):
        assert after[counter] == before[counter], (counter, before[counter], after[counter])
    assert after["h264_encode_seconds"] == before["h264_encode_seconds"]


def test_an_h264_subscriber_gets_every_unit_in_order_and_skips_a_gap_to_the_next_keyframe(
    ctx: zmq.Context[Any], run_dir: Path
) -> None:
    """Subscriber(kind="h264") returns access units in order, from a keyframe on; a unit missing on
    the bus (a gap in x.au) makes it skip to the next keyframe, counting what it dropped."""
    endpoint = f"ipc://{run_dir}/h264.sock"
    # a deep queue: the bus drops nothing here, so every gap is one the test made
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 100)
    pub.bind(endpoint)
    try:
        with Subscriber("pano", kind="h264", endpoint=endpoint, context=ctx) as sub:
            wait_for(lambda: pub.poll(100) and pub.recv(), 10, message="the subscription")
            sent = [(1, False), (2, True), (3, False), (5, False), (6, True), (7, False)]  # 4 lost
            for number, key in sent:
                extra = {"key": key, "coded_w": 4, "coded_h": 2, "au": number}
                protocol.send_frame(pub, "pano", protocol.H264, number, number, b"\x00\x00\x00\x01\x65", 3, 2, extra)
            got = []
            while len(got) < 4:
                ok, unit = sub.read(timeout=5)
                assert ok and unit is not None, f"got only {got}"
                got.append(unit.extra["au"])
            assert got == [2, 3, 6, 7], "from the first keyframe, over the gap to the next one"
            assert sub.skipped == 2  # unit 1 (before the first keyframe) and unit 5 (after the gap)
    finally:
        pub.close(linger=0)
