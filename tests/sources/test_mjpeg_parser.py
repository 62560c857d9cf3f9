"""The MJPEG multipart parser, the chunked decoder and the JPEG check, on bytes alone (no sockets)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import simplejpeg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zmqcam.errors import CorruptFrame, SourceError
from zmqcam.sources._common import CameraClock, ChunkedDecoder, is_jpeg, jpeg_size, parse_x_timestamp
from zmqcam.sources.mjpeg import ESP32_BOUNDARY, MultipartParser, boundary_from_content_type

pytestmark = pytest.mark.timeout(60)


def make_jpeg(seed: int, width: int = 64, height: int = 48) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return simplejpeg.encode_jpeg(img, quality=70, colorspace="BGR")


JPEGS = [make_jpeg(i, 64 + 16 * (i % 3), 48) for i in range(4)]


def part_head(i: int, jpeg: bytes) -> bytes:
    return (
        f"Content-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\nX-Timestamp: {i}.{i * 1000:06d}\r\n\r\n".encode()
    )


def esp32_body(jpegs: list[bytes]) -> bytes:
    """The multipart body exactly as app_httpd.cpp's stream_handler writes it (before chunking)."""
    out = b""
    for i, jpeg in enumerate(jpegs):
        out += b"\r\n--" + ESP32_BOUNDARY.encode() + b"\r\n"
        out += part_head(i, jpeg)
        out += jpeg
    return out


def esp32_chunks(jpegs: list[bytes]) -> bytes:
    """The same, chunk-encoded as esp_http_server's httpd_resp_send_chunk sends it (3 chunks per frame)."""
    out = b""
    for i, jpeg in enumerate(jpegs):
        for piece in (
            b"\r\n--" + ESP32_BOUNDARY.encode() + b"\r\n",
            part_head(i, jpeg),
            jpeg,
        ):
            out += f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    return out


def variant_body(jpegs: list[bytes], *, dashes: bool = True, length: bool = True, eol: bytes = b"\r\n") -> bytes:
    """Common non-ESP32 variants: boundary after each part, optional '--', optional Content-Length."""
    out = b""
    delim = (b"--" if dashes else b"") + b"frame" + eol
    for jpeg in jpegs:
        out += delim + b"Content-Type: image/jpeg" + eol
        if length:
            out += f"Content-Length: {len(jpeg)}".encode() + eol
        out += eol + jpeg + eol
    return out + delim


def feed_all(parser: MultipartParser, data: bytes, cuts: list[int] | None = None) -> list[bytes]:
    cuts = sorted(set(cuts or []))
    out = []
    prev = 0
    for cut in [*cuts, len(data)]:
        out += [jpeg for _, jpeg in parser.feed(data[prev:cut])]
        prev = cut
    return out


def test_exact_esp32_format_through_chunked_decoding() -> None:
    """Guards the firmware's wire format: chunked, boundary before each part, no closing boundary,
    X-Timestamp; JPEGs come out byte for byte with their part headers."""
    decoder = ChunkedDecoder()
    parser = MultipartParser(boundary_from_content_type("multipart/x-mixed-replace;boundary=" + ESP32_BOUNDARY))
    parts = parser.feed(decoder.feed(esp32_chunks(JPEGS)))
    assert [jpeg for _, jpeg in parts] == JPEGS
    assert parts[2][0]["content-type"] == "image/jpeg"
    assert parts[2][0]["x-timestamp"] == "2.002000"
    assert parser.pop_errors() == [] and parser.corrupt == 0 and parser.garbage_bytes == 0


def test_frame_is_delivered_when_its_content_length_is_complete() -> None:
    """Guards latency: the firmware sends the next boundary only with the next frame, so a part
    must be published as soon as its Content-Length bytes are in, not one frame later."""
    parser = MultipartParser(ESP32_BOUNDARY)
    body = esp32_body(JPEGS[:1])
    assert [jpeg for _, jpeg in parser.feed(body)] == JPEGS[:1]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ('multipart/x-mixed-replace; boundary="frame"', variant_body(JPEGS)),
        ("multipart/x-mixed-replace; boundary=--frame", variant_body(JPEGS)),
        ("multipart/x-mixed-replace; boundary=frame", variant_body(JPEGS, dashes=False)),
        ("multipart/x-mixed-replace; boundary=frame", variant_body(JPEGS, length=False)),
        ("multipart/x-mixed-replace; boundary=frame", variant_body(JPEGS, length=False, dashes=False)),
        ("multipart/x-mixed-replace; boundary=frame", variant_body(JPEGS, eol=b"\n")),
        ("multipart/x-mixed-replace; boundary=frame", variant_body(JPEGS, eol=b"\n", length=False)),
        ("multipart/x-mixed-replace", variant_body(JPEGS)),  # no boundary parameter: found in the stream
    ],
    ids=[
        "quoted",
        "declared-with-dashes",
        "no-dashes",
        "no-length",
        "no-length-no-dashes",
        "lf",
        "lf-no-length",
        "auto",
    ],
)
def test_common_variants(content_type: str, body: bytes) -> None:
    """Guards compatibility with non-ESP32 MJPEG servers (quoted boundary, with or without '--',
    parts without Content-Length, bare LF line ends, undeclared boundary)."""
    parser = MultipartParser(boundary_from_content_type(content_type))
    assert feed_all(parser, body) == JPEGS
    assert parser.pop_errors() == []


def test_parts_without_any_headers() -> None:
    """Guards servers that put the JPEG right after the boundary line, with no part headers."""
    body = b"".join(b"--frame\r\n" + jpeg + b"\r\n" for jpeg in JPEGS) + b"--frame\r\n"
    parser = MultipartParser("frame")
    assert feed_all(parser, body) == JPEGS


STREAMS = {
    "esp32": (ESP32_BOUNDARY, esp32_body(JPEGS)),
    "quoted": ('"frame"', variant_body(JPEGS)),
    "no-length": ("frame", variant_body(JPEGS, length=False)),
    "no-dashes": ("frame", variant_body(JPEGS, dashes=False)),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(STREAMS)), data=st.data())
def test_any_split_yields_the_same_jpegs(name: str, data: st.DataObject) -> None:
    """Guards incremental parsing: however the stream is cut into reads (a boundary, a header
    or a JPEG split anywhere), the same JPEGs come out, in order, untouched."""
    boundary, body = STREAMS[name]
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=40))
    parser = MultipartParser(boundary)
    assert feed_all(parser, body, cuts) == JPEGS
    assert parser.pop_errors() == []


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_chunked_then_parsed_any_split(data: st.DataObject) -> None:
    """Guards chunk decoding of the firmware stream under any read boundaries (chunk size lines
    and CRLFs split across reads)."""
    raw = esp32_chunks(JPEGS)
    cuts = sorted(set(data.draw(st.lists(st.integers(0, len(raw)), max_size=60))))
    decoder = ChunkedDecoder()
    parser = MultipartParser(ESP32_BOUNDARY)
    got = []
    prev = 0
    for cut in [*cuts, len(raw)]:
        got += [jpeg for _, jpeg in parser.feed(decoder.feed(raw[prev:cut]))]
        prev = cut
    assert got == JPEGS


def test_garbage_between_parts_is_skipped() -> None:
    """Guards resync: junk between parts (a proxy's noise, a half-written part) loses no frame."""
    body = esp32_body(JPEGS[:2])
    junk = b"\x00garbage\xff\xd8 not a part\r\n"
    body = body.replace(b"\r\n--" + ESP32_BOUNDARY.encode(), junk + b"\r\n--" + ESP32_BOUNDARY.encode())
    parser = MultipartParser(ESP32_BOUNDARY)
    assert feed_all(parser, junk + body) == JPEGS[:2]
    assert parser.garbage_bytes > 0


@pytest.mark.parametrize("delta", [+500, -500, +10_000_000])
def test_wrong_content_length_resyncs(delta: int) -> None:
    """Guards resync on a lying Content-Length (too long, too short, absurd): the part is
    recovered from the next boundary and no following frame is lost."""
    bad = JPEGS[1]
    body = esp32_body(JPEGS)
    body = body.replace(f"Content-Length: {len(bad)}".encode(), f"Content-Length: {len(bad) + delta}".encode(), 1)
    parser = MultipartParser(ESP32_BOUNDARY)
    got = feed_all(parser, body + b"\r\n--" + ESP32_BOUNDARY.encode() + b"\r\n")
    assert got == JPEGS
    assert parser.length_mismatches == 1
    assert parser.pop_errors() == []


def test_truncated_and_corrupt_parts_are_reported_and_skipped() -> None:
    """Guards CorruptFrame: a truncated JPEG (with a Content-Length to match) and one with a
    scrambled header are dropped with an error each; the frames around them come through."""
    truncated = JPEGS[1][: len(JPEGS[1]) // 2]
    scrambled = JPEGS[2][:2] + bytes(200) + JPEGS[2][202:]
    parser = MultipartParser(ESP32_BOUNDARY)
    got = feed_all(parser, esp32_body([JPEGS[0], truncated, scrambled, JPEGS[3], JPEGS[0]]))
    assert got == [JPEGS[0], JPEGS[3], JPEGS[0]]
    errors = parser.pop_errors()
    assert len(errors) == 2 and parser.corrupt == 2
    assert "truncated" in errors[0]


def test_oversized_part_is_dropped_with_bounded_memory() -> None:
    """Guards memory: a part larger than max_part without a boundary is dropped, the buffer
    never grows past about max_part, and the stream resyncs on the next boundary."""
    parser = MultipartParser("frame", max_part=100_000)
    parser.feed(b"--frame\r\nContent-Type: image/jpeg\r\n\r\n")
    high = 0
    for _ in range(50):
        parser.feed(b"\xab" * 10_000)
        high = max(high, parser.buffered)
    assert high <= 110_000
    assert parser.pop_errors()
    assert feed_all(parser, variant_body(JPEGS[:2])) == JPEGS[:2]


def test_garbage_stream_without_boundary_is_bounded() -> None:
    """Guards memory on a stream that is not multipart at all: bounded, errors reported."""
    parser = MultipartParser(ESP32_BOUNDARY, max_part=50_000)
    for i in range(100):
        assert parser.feed(bytes([i % 256]) * 10_000) == []
        assert parser.buffered < 1000
    assert parser.corrupt >= 1


def test_huge_headers_are_dropped() -> None:
    """Guards memory on a part whose headers never end."""
    parser = MultipartParser("frame", max_headers=1000)
    parser.feed(b"--frame\r\n" + b"X-Junk: " + b"a" * 5000)
    assert parser.pop_errors()
    assert feed_all(parser, b"\r\n" + variant_body(JPEGS[:1])) == JPEGS[:1]


def test_chunked_decoder_rejects_bad_framing() -> None:
    """Guards against treating a broken chunked stream as data."""
    with pytest.raises(SourceError):
        ChunkedDecoder().feed(b"zz\r\nhello\r\n")
    with pytest.raises(SourceError):
        ChunkedDecoder().feed(b"5\r\nhelloXX")
    decoder = ChunkedDecoder()
    assert decoder.feed(b"5;ext=1\r\nhello\r\n0\r\n\r\n") == b"hello"
    assert decoder.done


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("multipart/x-mixed-replace;boundary=123456789000000000000987654321", ESP32_BOUNDARY),
        ('multipart/x-mixed-replace; boundary="my frame"', "my frame"),
        ("multipart/x-mixed-replace; charset=x; boundary=--abc; foo=bar", "--abc"),
        ("multipart/x-mixed-replace", None),
    ],
)
def test_boundary_from_content_type(content_type: str, expected: str | None) -> None:
    """Guards boundary extraction: no space after ';' (ESP32), quoted, among other parameters."""
    assert boundary_from_content_type(content_type) == expected


def test_jpeg_check() -> None:
    """Guards the JPEG validation used before publishing: size from SOF, truncation, scrambling,
    and padding after EOI (older esp32-camera drivers) tolerated."""
    jpeg = make_jpeg(7, 80, 60)
    assert jpeg_size(jpeg) == (80, 60)
    assert jpeg_size(jpeg + b"\x00" * 100) == (80, 60)
    assert not is_jpeg(jpeg[:-10])
    assert not is_jpeg(b"")
    assert not is_jpeg(b"<html>not found</html>")
    with pytest.raises(CorruptFrame):
        jpeg_size(jpeg[:2] + b"\x00" * 50 + jpeg[52:])


def test_camera_clock_keeps_camera_spacing() -> None:
    """Guards capture_ns from X-Timestamp: camera uptime is mapped onto the epoch, network jitter
    removed, never later than arrival, and a camera reboot (clock jumps back) restarts it."""
    assert parse_x_timestamp("12.000345") == 12_000_345_000
    assert parse_x_timestamp("garbage") is None
    clock = CameraClock()
    base = 1_700_000_000_000_000_000
    jitter = [5, 1, 9, 2, 7, 3]
    out = []
    for i, j in enumerate(jitter):
        cam = 100_000_000_000 + i * 50_000_000
        arrival = base + i * 50_000_000 + j * 1_000_000
        ns = clock.capture_ns(cam, arrival)
        assert ns <= arrival
        out.append(ns)
    # after the fastest arrival (jitter 1 ms) the spacing is the camera's 50 ms, give or take the
    # 100 ppm drift allowance (5 us), where the arrivals jitter by up to 8 ms
    spacing = [b - a for a, b in itertools.pairwise(out[1:])]
    assert all(abs(s - 50_000_000) <= 10_000 for s in spacing), spacing
    # reboot: camera time goes back to ~0; capture_ns follows arrival again
    arrival = base + 10 * 50_000_000
    assert clock.capture_ns(1_000_000, arrival) == arrival
    assert clock.capture_ns(None, arrival + 5) == arrival + 5
