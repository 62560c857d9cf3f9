"""Fuzzing the wire format: random and mangled messages raise ProtocolError, never anything else,
and a publisher's subscribers survive garbage injected on the bus."""

from __future__ import annotations

import json
from typing import Any

import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from zmqcam import Subscriber
from zmqcam.bus import protocol
from zmqcam.errors import ProtocolError

_GOOD = [bytes(p) for p in protocol.encode("cam0", protocol.RAW, 1, 2, b"\x01" * 12, 2, 2)]


def _decodes_or_protocol_error(parts: list[bytes]) -> None:
    try:
        frame = protocol.decode(parts)
    except ProtocolError:
        return
    # whatever decodes is self-consistent
    assert frame.kind in protocol.FRAME_KINDS and frame.width > 0 and frame.height > 0
    if frame.kind == protocol.RAW:
        assert frame.image.shape == (frame.height, frame.width, 3)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=5))
def test_random_multipart(parts: list[bytes]) -> None:
    """Arbitrary multipart messages never raise anything but ProtocolError."""
    _decodes_or_protocol_error(parts)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 2), st.integers(0, 200), st.binary(min_size=1, max_size=8))
def test_mangled_valid_message(part: int, position: int, junk: bytes) -> None:
    """A valid message with bytes overwritten or truncated anywhere: ProtocolError or consistent."""
    parts = list(_GOOD)
    data = bytearray(parts[part])
    pos = min(position, len(data))
    data[pos : pos + len(junk)] = junk
    parts[part] = bytes(data)
    _decodes_or_protocol_error(parts)
    parts[part] = bytes(data[:pos])
    _decodes_or_protocol_error(parts)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["v", "stream", "kind", "seq", "t_cap", "t_pub", "w", "h", "x"]),
        st.none() | st.booleans() | st.integers(-5, 2**65) | st.floats() | st.text(max_size=5),
    )
)
def test_header_fields_of_any_type(fields: dict[str, Any]) -> None:
    """Header fields of every wrong type or range are rejected, not trusted."""
    header = json.loads(_GOOD[1]) | fields
    _decodes_or_protocol_error([_GOOD[0], json.dumps(header).encode(), _GOOD[2]])


def test_subscriber_survives_garbage_on_the_bus(ctx: zmq.Context[Any], run_dir: Any) -> None:
    """Malformed messages injected on a publisher are counted and dropped; good frames still arrive."""
    endpoint = f"ipc://{run_dir}/fuzz.sock"
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(endpoint)
    with Subscriber("cam0", endpoint=endpoint) as sub:
        assert pub.poll(5000)
        pub.recv()  # the subscription
        topic = protocol.topic("cam0", protocol.RAW)
        garbage = [[topic], [topic, b"{}", b""], [topic, b"\xff", b"x"], [topic, _GOOD[1], b"short"], [topic] * 4]
        for parts in garbage:
            pub.send_multipart(parts)
        pub.send_multipart(_GOOD)
        ok, frame = sub.read(timeout=5)
        assert ok and frame is not None and frame.seq == 1
        assert sub.malformed == len(garbage)
    pub.close()
