"""The wire format of the frame bus: the only module that knows the bytes.

Every message is multipart ``[topic, header, payload]``:

- topic: ``b"<stream> <kind>\\x00"``, ASCII. The space and the NUL terminator make SUB prefix
  matching exact: a subscription to ``cam1 jpeg\\x00`` can never match ``cam10 jpeg\\x00``.
  Kinds: ``raw`` (BGR pixels), ``jpeg``, ``h264`` (one H.264 access unit per message) and
  ``status`` (JSON; never counts as demand for frames).
- header: UTF-8 JSON object, version ``v`` = 1: stream, kind, seq, capture time and publish time
  (ns since the epoch), width, height, and for the panorama which camera frames were used.
- payload: the pixels (``height*width*3`` bytes, BGR, C order) or the JPEG bytes, sent without a
  copy; or one H.264 access unit in Annex B (start codes, no B-frames); or a JSON object for status.
- ``h264`` headers also carry, in ``x``: ``key`` (true on a keyframe, which holds SPS, PPS and an
  IDR, so a consumer can start there), ``au`` (the unit's number in its encoder's stream: a gap
  means a unit was lost, see ``UnitGate``), ``coded_w``/``coded_h`` (the encoded size: H.264 4:2:0 needs
  even sides, ``w``/``h`` stay the picture's own size), ``fps`` (the nominal rate, for muxers) and
  ``codec`` (``avc1.PPCCLL``, for MSE and Content-Type); the stitcher adds ``gop`` (the seq of the
  keyframe a unit depends on) and ``au`` (the unit's number in its encoder's stream: a gap means a
  unit was lost, and a decoder must wait for the next keyframe). There is no pts on the wire:
  consumers stamp from ``t_cap``.

``decode`` validates everything and raises ``ProtocolError`` on any malformed message; callers count
it and carry on. Nothing is unpickled or evaluated.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simplejpeg
import zmq

from zmqcam.errors import ProtocolError
from zmqcam.names import STREAM_NAME_PATTERN

VERSION = 1
RAW = "raw"
JPEG = "jpeg"
H264 = "h264"
STATUS = "status"
FRAME_KINDS = (RAW, JPEG, H264)
KINDS = (RAW, JPEG, H264, STATUS)
#: what every access unit starts with (Annex B start code, three or four bytes)
_ANNEX_B_STARTS = (b"\x00\x00\x01", b"\x00\x00\x00\x01")

_STREAM_RE = re.compile(STREAM_NAME_PATTERN)
_MAX_HEADER = 64 * 1024
_MAX_SIDE = 16384
# below this size copying is cheaper than pyzmq's zero-copy bookkeeping
_ZERO_COPY_MIN = 64 * 1024


def topic(stream: str, kind: str) -> bytes:
    """The exact topic (and subscription prefix) of one stream's kind."""
    if not _STREAM_RE.match(stream) or kind not in KINDS:
        raise ValueError(f"bad stream or kind: {stream!r} {kind!r}")
    return f"{stream} {kind}\x00".encode("ascii")


def parse_topic(raw: bytes | memoryview) -> tuple[str, str]:
    """Split a topic into (stream, kind); raise ProtocolError when it is not one of ours."""
    try:
        text = bytes(raw).decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("topic is not ASCII") from None
    if not text.endswith("\x00") or text.count(" ") != 1:
        raise ProtocolError(f"malformed topic {text[:40]!r}")
    stream, kind = text[:-1].split(" ")
    if not _STREAM_RE.match(stream) or kind not in KINDS:
        raise ProtocolError(f"unknown topic {text[:40]!r}")
    return stream, kind


@dataclass(slots=True)
class Frame:
    """One received frame. ``image`` gives BGR pixels whatever the wire format was."""

    stream: str
    kind: str
    seq: int
    capture_ns: int
    publish_ns: int
    width: int
    height: int
    payload: bytes | memoryview
    extra: dict[str, Any] = field(default_factory=dict)
    _image: np.ndarray | None = None

    @property
    def image(self) -> np.ndarray:
        """BGR uint8 pixels, shape (height, width, 3). JPEG payloads are decoded on first use; an
        H.264 access unit needs the units before it (``zmqcam.video.H264Decoder``)."""
        if self.kind == H264:
            raise ValueError("an h264 frame has no picture of its own: decode the stream with zmqcam.video.H264Decoder")
        if self._image is None:
            if self.kind == RAW:
                arr = np.frombuffer(self.payload, dtype=np.uint8)
                self._image = arr.reshape(self.height, self.width, 3)
            else:
                self._image = simplejpeg.decode_jpeg(bytes(self.payload), colorspace="BGR")
        return self._image

    @property
    def jpeg(self) -> bytes:
        if self.kind != JPEG:
            raise ValueError("not a JPEG frame")
        return bytes(self.payload)

    @property
    def keyframe(self) -> bool:
        """Whether a consumer can start decoding here: every raw or JPEG frame, an h264 keyframe."""
        return self.kind != H264 or self.extra.get("key") is True

    @property
    def age(self) -> float:
        """Seconds since capture, by this host's clock."""
        return (time.time_ns() - self.capture_ns) / 1e9


def encode(
    stream: str,
    kind: str,
    seq: int,
    capture_ns: int,
    payload: Any,
    width: int,
    height: int,
    extra: dict[str, Any] | None = None,
    publish_ns: int | None = None,
) -> list[Any]:
    """Build the parts of one frame message. ``payload`` is a contiguous buffer (bytes or array)."""
    if kind not in FRAME_KINDS:
        raise ValueError(f"not a frame kind: {kind!r}")
    if isinstance(payload, np.ndarray) and not payload.flags.c_contiguous:
        payload = np.ascontiguousarray(payload)
    header: dict[str, Any] = {
        "v": VERSION,
        "stream": stream,
        "kind": kind,
        "seq": int(seq),
        "t_cap": int(capture_ns),
        "t_pub": int(publish_ns if publish_ns is not None else time.time_ns()),
        "w": int(width),
        "h": int(height),
    }
    if extra:
        header["x"] = extra
    return [topic(stream, kind), json.dumps(header, separators=(",", ":")).encode(), payload]


def send_frame(sock: zmq.Socket[Any], *args: Any, **kwargs: Any) -> None:
    """Encode and send one frame without blocking; a full queue drops it (latest-only bus)."""
    parts = encode(*args, **kwargs)
    payload = parts[2]
    size = payload.nbytes if isinstance(payload, np.ndarray) else len(payload)
    sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=size < _ZERO_COPY_MIN)


#: bytes a camera may leave after a JPEG's EOI (the esp32-camera driver's frame buffer did), and
#: at most how many: tolerated wherever a JPEG's end is checked
JPEG_PADDING = b"\x00\r\n \t"
JPEG_MAX_PADDING = 4096


def _int(header: dict[str, Any], key: str, low: int = 0, high: int = 2**63 - 1) -> int:
    value = header.get(key)
    if type(value) is not int or not low <= value <= high:
        raise ProtocolError(f"header field {key!r} is {value!r}")
    return value


def decode(parts: list[Any]) -> Frame:
    """Validate and decode a received frame message (``recv_multipart(copy=False)`` or bytes)."""
    if len(parts) != 3:
        raise ProtocolError(f"expected 3 parts, got {len(parts)}")
    raw_topic, raw_header, raw_payload = (p.buffer if isinstance(p, zmq.Frame) else p for p in parts)
    stream, kind = parse_topic(raw_topic)
    if kind not in FRAME_KINDS:
        raise ProtocolError(f"{kind!r} is not a frame topic")
    if len(raw_header) > _MAX_HEADER:
        raise ProtocolError("header too large")
    try:
        header = json.loads(bytes(raw_header))
    except (ValueError, RecursionError):
        raise ProtocolError("header is not JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    if header.get("v") != VERSION:
        raise ProtocolError(f"unsupported header version {header.get('v')!r}")
    if header.get("stream") != stream or header.get("kind") != kind:
        raise ProtocolError("header disagrees with topic")
    width = _int(header, "w", 1, _MAX_SIDE)
    height = _int(header, "h", 1, _MAX_SIDE)
    extra = header.get("x", {})
    if not isinstance(extra, dict):
        raise ProtocolError("header field 'x' is not an object")
    size = len(raw_payload)
    if kind == RAW:
        if size != width * height * 3:
            raise ProtocolError(f"raw payload is {size} bytes, header says {width}x{height}x3")
    elif kind == H264:
        _check_h264(extra, bytes(raw_payload[:4]), width, height)
    elif size < 4 or bytes(raw_payload[:2]) != b"\xff\xd8":
        raise ProtocolError("JPEG payload does not start with SOI")
    elif not bytes(raw_payload[-JPEG_MAX_PADDING:]).rstrip(JPEG_PADDING).endswith(b"\xff\xd9"):
        # a cut JPEG would reach every viewer as a broken picture
        raise ProtocolError("JPEG payload does not end with EOI")
    return Frame(
        stream=stream,
        kind=kind,
        seq=_int(header, "seq"),
        capture_ns=_int(header, "t_cap"),
        publish_ns=_int(header, "t_pub"),
        width=width,
        height=height,
        payload=raw_payload,
        extra=extra,
    )


def _check_h264(extra: dict[str, Any], head: bytes, width: int, height: int) -> None:
    if not head.startswith(_ANNEX_B_STARTS):
        raise ProtocolError("h264 payload does not start with an Annex B start code")
    if type(extra.get("key")) is not bool:
        raise ProtocolError(f"h264 header field 'x.key' is {extra.get('key')!r}")
    coded_w = _int(extra, "coded_w", 2, _MAX_SIDE)
    coded_h = _int(extra, "coded_h", 2, _MAX_SIDE)
    if coded_w % 2 or coded_h % 2 or coded_w < width or coded_h < height:
        raise ProtocolError(f"h264 coded size {coded_w}x{coded_h} does not hold the {width}x{height} picture")


class UnitGate:
    """Which ``h264`` access units of one stream a decoder, muxer or pusher can take: from a keyframe
    on, and after a unit lost on the way (a gap in ``x.au``, the unit's number in its encoder's
    stream) only from the next keyframe again: a decoder fed across a gap shows smeared pictures
    until then."""

    def __init__(self) -> None:
        self.gaps = 0  # units lost on the bus
        self.waited = 0  # units refused while waiting for a keyframe
        self._last: int | None = None
        self._seen = False
        self._want_key = True

    def restart(self) -> None:
        """Take nothing before the next keyframe (a consumer starting over, a dropped backlog)."""
        self._want_key = True

    def admit(self, frame: Frame) -> bool:
        number = frame.extra.get("au")
        follows = self._last is not None and number == self._last + 1
        if not follows and self._seen:
            self.gaps += 1
            self._want_key = True
        self._seen = True
        self._last = number if type(number) is int else None
        if self._want_key and not frame.keyframe:
            self.waited += 1
            return False
        self._want_key = False
        return True


def encode_status(stream: str, status: dict[str, Any]) -> list[bytes]:
    header = json.dumps({"v": VERSION, "stream": stream, "kind": STATUS, "t_pub": time.time_ns()}).encode()
    return [topic(stream, STATUS), header, json.dumps(status, separators=(",", ":")).encode()]


def decode_status(parts: list[Any]) -> tuple[str, dict[str, Any]]:
    """Decode a status message into (stream, status dict)."""
    if len(parts) != 3:
        raise ProtocolError(f"expected 3 parts, got {len(parts)}")
    raw = [bytes(p.buffer) if isinstance(p, zmq.Frame) else bytes(p) for p in parts]
    stream, kind = parse_topic(raw[0])
    if kind != STATUS:
        raise ProtocolError(f"{kind!r} is not a status topic")
    try:
        header = json.loads(raw[1])
        body = json.loads(raw[2])
    except (ValueError, RecursionError):
        raise ProtocolError("status is not JSON") from None
    if not isinstance(header, dict) or header.get("v") != VERSION or not isinstance(body, dict):
        raise ProtocolError("malformed status")
    return stream, body


def is_frame_topic(prefix: bytes) -> bool:
    """Whether a subscription prefix can match frame topics (status-only ones are not demand)."""
    return not prefix.endswith(b" status\x00")
