"""The wire format: round trips over real sockets, prefix safety, every malformed case."""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pytest
import simplejpeg
import zmq

from zmqcam.bus import protocol, sockets
from zmqcam.errors import ProtocolError


def _pair(ctx: zmq.Context[Any], run_dir: Any, topics: list[bytes]) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    endpoint = f"ipc://{run_dir}/t.sock"
    pub = sockets.make_publisher(ctx, [endpoint])
    sub = sockets.make_subscriber(ctx, [endpoint], topics)
    for _ in topics:  # the subscription has reached the publisher once XPUB reports it
        assert pub.poll(5000), "subscription never arrived"
        pub.recv()
    return pub, sub


def test_raw_frame_round_trip_over_ipc(ctx: zmq.Context[Any], run_dir: Any) -> None:
    """A BGR frame arrives with identical pixels and every header field intact."""
    pub, sub = _pair(ctx, run_dir, [protocol.topic("cam0", protocol.RAW)])
    image = np.random.default_rng(1).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cap = time.time_ns()
    protocol.send_frame(pub, "cam0", protocol.RAW, 7, cap, image, 640, 480, {"note": "x"})
    assert sub.poll(5000)
    frame = protocol.decode(sub.recv_multipart(copy=False))
    assert (frame.stream, frame.kind, frame.seq, frame.capture_ns) == ("cam0", "raw", 7, cap)
    assert (frame.width, frame.height) == (640, 480)
    assert frame.publish_ns >= cap
    assert frame.extra == {"note": "x"}
    assert np.array_equal(frame.image, image)
    pub.close()
    sub.close()


def test_non_contiguous_arrays_are_sent_correctly(ctx: zmq.Context[Any], run_dir: Any) -> None:
    """A column slice (not C-contiguous) is made contiguous rather than sent scrambled."""
    pub, sub = _pair(ctx, run_dir, [protocol.topic("pano", protocol.RAW)])
    big = np.arange(100 * 300 * 3, dtype=np.uint32).astype(np.uint8).reshape(100, 300, 3)
    view = big[:, 50:250]
    protocol.send_frame(pub, "pano", protocol.RAW, 1, 1, view, 200, 100)
    assert sub.poll(5000)
    assert np.array_equal(protocol.decode(sub.recv_multipart()).image, view)
    pub.close()
    sub.close()


def test_jpeg_frame_round_trip_keeps_bytes(ctx: zmq.Context[Any], run_dir: Any) -> None:
    """JPEG payloads are forwarded byte for byte and decode on demand."""
    pub, sub = _pair(ctx, run_dir, [protocol.topic("cam1", protocol.JPEG)])
    image = np.full((48, 64, 3), 120, np.uint8)
    jpeg = simplejpeg.encode_jpeg(image, colorspace="BGR")
    protocol.send_frame(pub, "cam1", protocol.JPEG, 3, 5, jpeg, 64, 48)
    assert sub.poll(5000)
    frame = protocol.decode(sub.recv_multipart(copy=False))
    assert frame.jpeg == jpeg
    assert frame.image.shape == (48, 64, 3)
    pub.close()
    sub.close()


def test_topic_prefix_cannot_confuse_cam1_with_cam10(ctx: zmq.Context[Any], run_dir: Any) -> None:
    """A subscriber to cam1 never receives cam10's frames (the terminator makes prefixes exact)."""
    pub, sub = _pair(ctx, run_dir, [protocol.topic("cam1", protocol.JPEG)])
    jpeg = simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8), colorspace="BGR")
    for seq, stream in enumerate(["cam10", "cam1", "cam100", "cam1"]):
        protocol.send_frame(pub, stream, protocol.JPEG, seq, 0, jpeg, 8, 8)
    got = []
    while sub.poll(300):
        got.append(protocol.decode(sub.recv_multipart()))
    assert [(f.stream, f.seq) for f in got] == [("cam1", 1), ("cam1", 3)]
    assert not protocol.topic("cam10", "jpeg").startswith(protocol.topic("cam1", "jpeg"))
    assert not protocol.topic("cam10", "raw").startswith(b"cam1 ")
    pub.close()
    sub.close()


def _good_parts() -> list[bytes]:
    return [bytes(p) for p in protocol.encode("cam0", protocol.RAW, 1, 2, b"\x00" * 12, 2, 2)]


def _with_header(**changes: Any) -> list[bytes]:
    parts = _good_parts()
    header = json.loads(parts[1])
    for key, value in changes.items():
        if value is _DROP:
            header.pop(key)
        else:
            header[key] = value
    parts[1] = json.dumps(header).encode()
    return parts


_DROP = object()


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ([b"cam0 raw\x00", b"{}"], "expected 3 parts"),
        ([*_good_parts(), b"extra"], "expected 3 parts"),
        ([b"cam0 raw", *_good_parts()[1:]], "malformed topic"),
        ([b"cam0 video\x00", *_good_parts()[1:]], "unknown topic"),
        ([b"CAM0 raw\x00", *_good_parts()[1:]], "unknown topic"),
        ([b"\xff\xfe raw\x00", *_good_parts()[1:]], "not ASCII"),
        ([b"cam0 status\x00", *_good_parts()[1:]], "not a frame topic"),
        ([_good_parts()[0], b"not json", _good_parts()[2]], "not JSON"),
        ([_good_parts()[0], b"[1, 2]", _good_parts()[2]], "not a JSON object"),
        ([_good_parts()[0], b"{" * 100000, _good_parts()[2]], "header too large"),
        (_with_header(v=2), "unsupported header version 2"),
        (_with_header(v=_DROP), "unsupported header version None"),
        (_with_header(stream="cam1"), "disagrees with topic"),
        (_with_header(w=0), "'w' is 0"),
        (_with_header(h="2"), "'h' is '2'"),
        (_with_header(seq=-1), "'seq' is -1"),
        (_with_header(seq=True), "'seq' is True"),
        (_with_header(t_cap=1.5), "'t_cap' is 1.5"),
        (_with_header(x=[1]), "'x' is not an object"),
        ([*_good_parts()[:2], b"\x00" * 11], "raw payload is 11 bytes, header says 2x2x3"),
        (_with_header(w=4), "raw payload is 12 bytes, header says 4x2x3"),
    ],
)
def test_malformed_messages_raise_protocol_error(parts: list[bytes], reason: str) -> None:
    """Every malformed message raises one ProtocolError naming what is wrong; nothing else escapes."""
    with pytest.raises(ProtocolError, match=reason.replace("(", r"\(").replace("[", r"\[")):
        protocol.decode(parts)


def test_jpeg_payload_must_look_like_jpeg() -> None:
    """A JPEG topic whose payload is not a JPEG is rejected before anyone tries to decode it."""
    parts = [bytes(p) for p in protocol.encode("cam0", protocol.JPEG, 1, 2, b"GIF89a....", 2, 2)]
    with pytest.raises(ProtocolError, match="SOI"):
        protocol.decode(parts)


def test_a_cut_jpeg_is_rejected_and_padding_after_eoi_is_not() -> None:
    """A JPEG payload cut short (no EOI at its end) is rejected: the bridge forwarded such a message
    from a broken peer to every viewer as a broken picture. Padding after EOI, as the esp32-camera
    driver leaves it, is the camera's own JPEG and passes."""
    jpeg = simplejpeg.encode_jpeg(np.full((16, 16, 3), 90, np.uint8), colorspace="BGR")
    for payload in (jpeg[: len(jpeg) // 3], jpeg[:-1], jpeg + b"\xff" + b"\x00" * 10, jpeg + b"\x00" * 5000):
        parts = [bytes(p) for p in protocol.encode("cam0", protocol.JPEG, 1, 2, payload, 16, 16)]
        with pytest.raises(ProtocolError, match="EOI"):
            protocol.decode(parts)
    for payload in (jpeg, jpeg + b"\x00" * 100, jpeg + b"\r\n"):
        parts = [bytes(p) for p in protocol.encode("cam0", protocol.JPEG, 1, 2, payload, 16, 16)]
        assert bytes(protocol.decode(parts).payload) == payload


def test_status_round_trip_and_status_is_not_demand() -> None:
    """Status messages decode to dicts; a status-only subscription is not demand for frames."""
    parts = protocol.encode_status("cam0", {"state": "live", "fps": 30.0})
    assert protocol.decode_status(parts) == ("cam0", {"state": "live", "fps": 30.0})
    with pytest.raises(ProtocolError):
        protocol.decode_status([parts[0], parts[1], b"nope"])
    demand = sockets.Demand()
    demand.feed(b"\x01" + protocol.topic("cam0", protocol.STATUS))
    assert not demand.wants_frames("cam0")
    demand.feed(b"\x01cam0 ")
    assert demand.wants_frames("cam0")
    demand.feed(b"\x00cam0 ")
    assert not demand.wants_frames("cam0")
    demand.feed(b"garbage")
    assert demand.malformed == 1


def test_zero_copy_send_of_large_frames(ctx: zmq.Context[Any], run_dir: Any) -> None:
    """Frames above the zero-copy threshold are sent from the array's own buffer, intact."""
    pub, sub = _pair(ctx, run_dir, [protocol.topic("pano", protocol.RAW)])
    image = np.random.default_rng(2).integers(0, 256, (250, 2347, 3), dtype=np.uint8)
    protocol.send_frame(pub, "pano", protocol.RAW, 1, 1, image, 2347, 250)
    assert sub.poll(5000)
    assert np.array_equal(protocol.decode(sub.recv_multipart(copy=False)).image, image)
    pub.close()
    sub.close()


def test_h264_access_units_round_trip_and_bad_ones_are_rejected() -> None:
    """An h264 message carries one real access unit (encoded here by libx264) and says whether a
    consumer can start there; a payload without a start code, a missing keyframe flag or a coded size
    that cannot hold the picture is refused before any decoder sees it."""
    from zmqcam.video import EncoderSettings, H264Decoder, H264Encoder

    encoder = H264Encoder(33, 20, EncoderSettings(keyint=4, fps=10))
    picture = np.zeros((20, 33, 3), np.uint8)
    picture[:, :16] = (200, 40, 10)
    decoder = H264Decoder(size=(33, 20))
    keys = []
    for seq in range(6):
        unit = encoder.encode(picture, capture_ns=seq * 100_000_000)
        extra = {"key": unit.keyframe, "coded_w": 34, "coded_h": 20, "fps": 10, "codec": "avc1.64000a"}
        parts = [bytes(p) for p in protocol.encode("pano", protocol.H264, seq, seq, unit.data, 33, 20, extra)]
        frame = protocol.decode(parts)
        assert bytes(frame.payload) == unit.data and frame.keyframe == unit.keyframe
        keys.append(frame.keyframe)
        decoded = decoder.decode(bytes(frame.payload))
        assert decoded is not None and decoded.shape == (20, 33, 3)
        with pytest.raises(ValueError, match="H264Decoder"):
            _ = frame.image
    assert keys == [True, False, False, False, True, False]
    good = {"key": True, "coded_w": 34, "coded_h": 20}
    for payload, extra, reason in (
        (b"\xff\xd8not h264", good, "start code"),
        (b"\x00\x00\x00\x01\x67", {"coded_w": 34, "coded_h": 20}, "x.key"),
        (b"\x00\x00\x01\x67", {**good, "coded_w": 32}, "coded size"),
        (b"\x00\x00\x01\x67", {**good, "coded_h": 21}, "coded size"),
    ):
        parts = [bytes(p) for p in protocol.encode("pano", protocol.H264, 1, 2, payload, 33, 20, extra)]
        with pytest.raises(ProtocolError, match=reason):
            protocol.decode(parts)


def test_unit_gate_starts_at_a_keyframe_and_waits_for_the_next_after_a_lost_unit() -> None:
    """Every h264 consumer (Subscriber, /stream.mp4, record --h264, publish targets) takes units
    through one gate: nothing before the first keyframe, and after a unit lost on the bus nothing
    until the next keyframe (a decoder fed across the gap would show smeared pictures)."""

    def unit(au: int, key: bool) -> protocol.Frame:
        extra = {"key": key, "au": au, "coded_w": 2, "coded_h": 2}
        return protocol.decode(
            [bytes(p) for p in protocol.encode("pano", protocol.H264, au, au, b"\0\0\1\x65", 2, 2, extra)]
        )

    gate = protocol.UnitGate()
    stream = [(0, False), (1, True), (2, False), (4, False), (5, False), (6, True), (7, False)]
    admitted = [au for au, key in stream if gate.admit(unit(au, key))]
    assert admitted == [1, 2, 6, 7]
    assert (gate.gaps, gate.waited) == (1, 3)
    gate.restart()  # a consumer dropping its backlog
    assert not gate.admit(unit(8, False)) and gate.admit(unit(9, True))
