"""The HTTP bridge under bad input and slow clients: malformed requests, huge heads, path traversal,
unknown cameras, bad query values, slowloris and connection floods. Every one gets a 4xx (never a
500), is counted in /status, and a normal viewer keeps getting live frames throughout.

One bridge process for the module, fed live panoramas by a real ZeroMQ publisher; its request-head
deadline is 2 s (10 s by default) so that the slow-client tests finish quickly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import wait_for
from tests.helpers.httpbridge import FedBridge, Viewer, fed_bridge, http_status_code, raw_exchange, status_http
from zmqcam.bridge.listener import SPARE_CONNECTIONS

HEAD_TIMEOUT = 2.0
MAX_CLIENTS = 20
FPS = 15


@pytest.fixture(scope="module")
def bridge() -> Iterator[FedBridge]:
    with fed_bridge(FPS, http={"max_clients": MAX_CLIENTS}, head_timeout=HEAD_TIMEOUT) as fed:
        yield fed


@pytest.fixture
def viewer(bridge: FedBridge) -> Iterator[Viewer]:
    """A normal viewer reading /stream for the whole test; the test checks it at the end."""
    watcher = Viewer(bridge.url)
    wait_for(lambda: watcher.frames >= 2, 10, message="the normal viewer's first live frames")
    yield watcher
    watcher.close()


def request(path: bytes, *headers: bytes, method: bytes = b"GET") -> bytes:
    return b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (method, path, b"".join(h + b"\r\n" for h in headers))


def assert_4xx_and_counted(bridge: FedBridge, cases: dict[str, bytes], allowed: set[int] | None = None) -> None:
    before = status_http(bridge.url)["responses"]
    for name, data in cases.items():
        reply = raw_exchange(bridge.port, data)
        status = http_status_code(reply)
        assert status is not None and 400 <= status < 500, f"{name}: {reply[:100]!r}"
        assert allowed is None or status in allowed, f"{name}: {reply[:100]!r}"
        assert b"root:" not in reply and b"Traceback" not in reply, name
    after = status_http(bridge.url)["responses"]
    counted = sum(n - before.get(code, 0) for code, n in after.items() if code.startswith("4"))
    assert counted >= len(cases), f"only {counted} of {len(cases)} 4xx responses counted: {after}"
    assert "500" not in after


MALFORMED = {
    "TLS hello on the plain port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64) + b"\r\n\r\n",
    "binary garbage": bytes(range(1, 256)) + b"\r\n\r\n",
    "no method": b" / HTTP/1.1\r\nHost: x\r\n\r\n",
    "no version (HTTP/0.9)": b"GET /status\r\n\r\n",
    "unknown version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "NUL in the request line": b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "control byte in the method": b"G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "10 KB method": b"A" * 10000 + b" / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare LF line ends": b"GET /status HTTP/1.1\nHost: x\n\n",
    "non-ASCII path": "GET /stream/caméra HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "header without a colon": request(b"/", b"no colon here"),
    "space in a header name": request(b"/", b"Bad Name: y"),
    "obsolete line folding": request(b"/", b"X-A: a", b" folded"),
    "two Host headers": request(b"/status", b"Host: y"),
    "negative Content-Length": request(b"/status", b"Content-Length: -5"),
    "Content-Length with chunked": request(b"/status", b"Content-Length: 4", b"Transfer-Encoding: chunked")
    + b"0\r\n\r\n",
    "bad chunk size": request(b"/status", b"Transfer-Encoding: chunked", method=b"POST") + b"zz\r\n\r\n",
    "unknown transfer coding": request(b"/status", b"Transfer-Encoding: gzip, chunked, x", method=b"POST"),
    "100 KB URL": request(b"/" + b"a" * 100_000),
    "100 KB query": request(b"/stream?fps=" + b"9" * 100_000),
    "100 KB header": request(b"/", b"X-Big: " + b"b" * 100_000),
    "500 headers": request(b"/", *(b"X-%d: y" % i for i in range(500))),
    "1 MB of header lines": request(b"/", *(b"X-Big-%d: %s" % (i, b"c" * 8000) for i in range(128))),
}


def test_malformed_requests_get_400_and_are_counted(bridge: FedBridge, viewer: Viewer) -> None:
    """Malformed request lines and headers, smuggling attempts and oversized heads (URL, header,
    header count) get a 4xx on their own connection, are counted in /status, and never disturb a
    viewer; guards against the parser's exceptions turning into 500s, tracebacks or a dead bridge."""
    assert_4xx_and_counted(bridge, MALFORMED)
    viewer.check()
    assert viewer.longest_gap < 2.0, f"the viewer stalled for {viewer.longest_gap:.1f} s"


TRAVERSALS = [
    b"/stream/../../etc/passwd",
    b"/../../../../etc/passwd",
    b"/stream/%2e%2e/%2e%2e/etc/passwd",
    b"/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    b"/stream/%252e%252e/etc/passwd",
    b"/stream/%c0%ae%c0%ae/etc/passwd",
    b"/stream/..%5c..%5cwindows%5cwin.ini",
    b"/stream/cam0%2f..%2f..%2fetc%2fpasswd",
    b"/snapshot/..%2f.jpg",
    b"/snapshot/%2e%2e.jpg",
    b"/snapshot/..%2f..%2fetc%2fpasswd.jpg",
    b"//etc/passwd",
    b"http://evil.example/etc/passwd",
    b"/stream/%00",
]


def test_path_traversal_attempts_are_404(bridge: FedBridge, viewer: Viewer) -> None:
    """Dot segments, encoded and double-encoded, backslashes and absolute URIs never reach a file:
    404 with a one-line body. The bridge serves no files at all; this guards against adding a route
    (static assets, recordings) that would let one through."""
    assert_4xx_and_counted(bridge, {path.decode(): request(path) for path in TRAVERSALS}, allowed={400, 404})
    viewer.check()


UNKNOWN = ["/stream/nope", "/stream/CAM0", "/stream/cam0x", "/stream/" + "x" * 5000, "/snapshot/nope.jpg",
           "/snapshot/cam0.png", "/stream/cam0/", "/stream/cam0/extra", "/stream/pano", "/status/x",
           "/index.html"]  # fmt: skip


def test_unknown_cameras_and_paths_are_404(bridge: FedBridge, viewer: Viewer) -> None:
    """Unknown cameras and paths: 404 with one short line naming the problem (the camera list at
    most), whatever the name's length."""
    for path in UNKNOWN:
        response = requests.get(bridge.url + path, timeout=5)
        assert response.status_code == 404, path
        assert response.text.count("\n") <= 1 and len(response.text) < 300, response.text[:300]
    viewer.check()


BAD_FPS = ["nan", "NaN", "inf", "-inf", "infinity", "-1", "0", "1e-9", "241", "1e999", "-1e999", "1e308",
           "abc", "", " ", "0x10", "1/2", "%00", "%ff", "5%00", "1,5", "٣", "1_0", "+-1", "1e", ".",
           "1..2"]  # fmt: skip


@pytest.mark.parametrize("path", ["/stream", "/stream/cam0"])
def test_bad_fps_values_are_400_with_a_reason(bridge: FedBridge, viewer: Viewer, path: str) -> None:
    """Every ?fps= that is not a finite number in [0.01, 240] (NaN, infinities, overflow, negative,
    zero, hex, encoded NUL, non-ASCII digits) or comes twice gets 400 with a one-line reason
    naming fps, and is counted; no client slot is taken."""
    queries = [f"fps={value}" for value in BAD_FPS] + ["fps=1&fps=2", "fps=5&fps=5", "fps=1&fps=nan"]
    before = status_http(bridge.url)
    for query in queries:
        with requests.get(f"{bridge.url}{path}?{query}", timeout=5, stream=True) as response:
            assert response.status_code == 400, query
            assert response.text.startswith("400: fps ") and response.text.count("\n") == 1, (query, response.text)
    after = status_http(bridge.url)
    assert after["responses"]["400"] - before["responses"].get("400", 0) >= len(queries)
    assert after["clients"] == 1  # the viewer only
    viewer.check()


_PATH_ALPHABET = st.sampled_from(["/", ".", "..", "%", "%2e", "%2f", "%00", "%ff", "\\", "?", "&", "=", "#", ";",
                                  "fps", "token", "stream", "snapshot", "cam0", "cam1", "pano", ".jpg", "status",
                                  "a", "0", "-1", "nan", "1e999", "+", "~", "@", ":"])  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(st.lists(_PATH_ALPHABET, max_size=12).map("".join))
def test_any_path_and_query_is_answered_without_a_server_error(bridge: FedBridge, tail: str) -> None:
    """Property: any request target built from path and query fragments gets a response below 500
    (streams are cut after their head), so no combination of segments, escapes and query values
    reaches an unhandled exception."""
    target = ("/" + tail).encode()
    for prefix in (b"", b"/stream", b"/snapshot"):
        reply = raw_exchange(bridge.port, request(prefix + target, b"Connection: close"))
        status = http_status_code(reply)
        assert status is not None and status < 500, (prefix + target, reply[:120])


def test_no_server_error_was_ever_counted(bridge: FedBridge) -> None:
    """After everything above (run in order in this module), /status has counted no 500."""
    assert "500" not in status_http(bridge.url)["responses"]


# ---------------------------------------------------------------------------------------------
# slow clients and floods


async def _slow_client(port: int, head: bytes, interval: float, limit: float) -> float | None:
    """Send ``head`` one byte per ``interval`` s; return when the server closed the connection
    (seconds after connecting), or None if it was still open after ``limit`` s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:

        async def dribble() -> None:
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(interval)

        sender = asyncio.create_task(dribble())
        try:
            await asyncio.wait_for(reader.read(), limit)  # b"" or a reply, then EOF
        except asyncio.TimeoutError:
            return None
        except ConnectionError:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return time.monotonic() - started
    finally:
        writer.close()


def test_slowloris_clients_are_closed_after_the_head_deadline_and_starve_nobody(
    bridge: FedBridge, viewer: Viewer
) -> None:
    """50 clients sending their request head a byte a second are closed once the request-head
    deadline passes, while a normal client meanwhile gets /status and a new /stream at once.
    Guards against slowloris: aiohttp alone would hold such connections open indefinitely."""
    n_slow = 50
    head = request(b"/status", b"User-Agent: " + b"s" * 200)
    before = status_http(bridge.url)["head_timeouts"]
    result: dict[str, Any] = {}

    async def main() -> None:
        slow = [asyncio.create_task(_slow_client(bridge.port, head, 1.0, HEAD_TIMEOUT + 8)) for _ in range(n_slow)]
        await asyncio.sleep(0.5)  # every slow client is connected and dribbling
        started = time.monotonic()
        status = await asyncio.to_thread(status_http, bridge.url)
        result["status_after"] = time.monotonic() - started
        result["open_while_slow"] = status["clients"]

        def first_stream_part() -> float:
            began = time.monotonic()
            with requests.get(bridge.url + "/stream", stream=True, timeout=(5, 5)) as response:
                assert response.status_code == 200
                next(response.iter_content(chunk_size=1024))
            return time.monotonic() - began

        result["stream_after"] = await asyncio.to_thread(first_stream_part)
        result["closed_after"] = await asyncio.gather(*slow)

    asyncio.run(main())
    closed_after = result["closed_after"]
    assert all(t is not None for t in closed_after), f"{closed_after.count(None)} slow clients were never closed"
    assert min(closed_after) >= HEAD_TIMEOUT * 0.9, "a slow client was closed before its deadline"
    assert max(closed_after) < HEAD_TIMEOUT + 5, f"slow clients held for up to {max(closed_after):.1f} s"
    assert result["status_after"] < 2.0 and result["stream_after"] < 2.0, result
    print(
        f"\n{n_slow} slowloris clients closed {min(closed_after):.1f}-{max(closed_after):.1f} s after connecting;"
        f" meanwhile /status took {result['status_after'] * 1000:.0f} ms,"
        f" a new /stream's first bytes {result['stream_after'] * 1000:.0f} ms"
    )
    assert status_http(bridge.url)["head_timeouts"] - before >= n_slow
    viewer.check()
    assert viewer.longest_gap < 2.0, f"the viewer stalled for {viewer.longest_gap:.1f} s"


def test_connections_beyond_the_cap_get_503_and_the_viewers_keep_streaming(bridge: FedBridge, viewer: Viewer) -> None:
    """A flood of idle connections fills at most max_clients + SPARE_CONNECTIONS: the rest are
    answered 503 at once and closed, the viewer already streaming is not disturbed, and once the
    head deadline has closed the idle ones, new clients are served again."""
    cap = MAX_CLIENTS + SPARE_CONNECTIONS
    flood = cap + 30
    before = status_http(bridge.url)["refused_connections"]
    result: dict[str, Any] = {}

    async def main() -> None:
        async def idle() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
            try:
                return await asyncio.wait_for(reader.read(), HEAD_TIMEOUT + 8)
            except (ConnectionError, asyncio.TimeoutError):
                return b""
            finally:
                writer.close()

        tasks = []
        for _ in range(flood):
            tasks.append(asyncio.create_task(idle()))
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.5)
        result["refused_meanwhile"] = (await asyncio.to_thread(status_http_or_none, bridge.url)) is None
        replies = await asyncio.gather(*tasks)
        result["refused"] = sum(reply.startswith(b"HTTP/1.1 503 ") for reply in replies)

    asyncio.run(main())
    # the viewer's connection counts too: at least flood + 1 - cap connections are refused
    assert result["refused"] >= flood + 1 - cap, result
    assert result["refused_meanwhile"], "a new client got in while the cap was reached"
    after = wait_for(lambda: status_http_or_none(bridge.url), 5, message="the bridge to accept again")
    assert after["refused_connections"] - before >= result["refused"]
    viewer.check()
    assert viewer.longest_gap < 2.0, f"the viewer stalled for {viewer.longest_gap:.1f} s"


def status_http_or_none(url: str) -> dict[str, Any] | None:
    try:
        response = requests.get(url + "/status", timeout=3)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    http: dict[str, Any] = response.json()["http"]
    return http
