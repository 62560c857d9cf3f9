"""The HTTP bridge under bad input and slow clients: malformed requests, huge heads, path traversal,
unknown cameras, bad query values, slowloris and connection floods. Every one gets a 4xx (never a
500), is counted in /status, and a normal viewer keeps getting live frames throughout.

One bridge process for the module, fed live panoramas by a real ZeroMQ publisher; its request-head
deadline is 2 s (10 s by default) so that the slow-client tests finish quickly.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import ROOT, eventually, wait_for
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


def answered_while_the_viewer_streams(
    bridge: FedBridge, viewer: Viewer, cases: dict[str, bytes], allowed: set[int] | None = None
) -> None:
    """Send every bad request of ``cases`` on its own connection, round after round, until the
    viewer has received new live frames meanwhile (a deadline fails the test): each gets a 4xx
    (``allowed`` ones, if given) and no file content or traceback, /status counts exactly as many
    more 4xx responses as were sent, and never a 500. The rounds end only once the viewer got
    frames while they were being answered, so this cannot pass on a viewer that was starved, nor
    fail because the bad requests were answered faster than a frame interval."""
    before = status_http(bridge.url)["responses"]
    frames = viewer.frames
    sent = 0
    deadline = time.monotonic() + 20
    while viewer.frames < frames + 2:
        assert time.monotonic() < deadline, f"the viewer got no new frame in 20 s of {sent} bad requests"
        for name, data in cases.items():
            reply = raw_exchange(bridge.port, data)
            status = http_status_code(reply)
            assert status is not None and 400 <= status < 500, f"{name}: {reply[:100]!r}"
            assert allowed is None or status in allowed, f"{name}: {reply[:100]!r}"
            assert b"root:" not in reply and b"Traceback" not in reply, name
            sent += 1

    def counted(http: dict[str, Any]) -> None:
        grown = sum(n - before.get(code, 0) for code, n in http["responses"].items() if code.startswith("4"))
        assert grown == sent, f"{grown} of {sent} 4xx responses counted"
        assert "500" not in http["responses"], http["responses"]

    eventually(lambda: status_http(bridge.url), counted, 10)


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
    answered_while_the_viewer_streams(bridge, viewer, MALFORMED)
    viewer.check()


def test_bad_requests_answered_and_closed_hold_no_connection_slot(bridge: FedBridge, viewer: Viewer) -> None:
    """More bad requests in a row than the bridge takes connections (max_clients +
    SPARE_CONNECTIONS), each answered and closed at once: every one gets its 4xx, none a 503, and
    the viewer streams on. Guards against a connection closed before its first request counting
    against the cap until its head deadline: a burst of bad requests then got every client
    refused for that long."""
    burst = MAX_CLIENTS + SPARE_CONNECTIONS + 10
    before = status_http(bridge.url)["refused_connections"]
    bad = MALFORMED["header without a colon"]
    codes = [http_status_code(raw_exchange(bridge.port, bad)) for _ in range(burst)]
    assert all(code is not None and 400 <= code < 500 for code in codes), sorted(set(map(str, codes)))
    assert status_http(bridge.url)["refused_connections"] == before
    viewer.check()


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
    cases = {path.decode(): request(path) for path in TRAVERSALS}
    answered_while_the_viewer_streams(bridge, viewer, cases, allowed={400, 404})
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


def test_every_kind_of_bad_request_is_a_counted_4xx_and_never_a_500(bridge: FedBridge) -> None:
    """Every bad request of this module, sent here one after another on the same bridge (so the
    test stands alone): each gets a 4xx, /status counts exactly that many more 4xx responses, and
    no 500 was ever counted."""
    cases = [
        *MALFORMED.values(),
        *(request(path) for path in TRAVERSALS),
        *(request(path.encode(), b"Connection: close") for path in UNKNOWN),
        *(request(f"/stream?fps={value}".encode(), b"Connection: close") for value in BAD_FPS if "%" not in value),
    ]
    before = status_http(bridge.url)["responses"]
    codes = [http_status_code(raw_exchange(bridge.port, data)) for data in cases]
    assert all(code is not None and 400 <= code < 500 for code in codes), codes

    def counted(http: dict[str, Any]) -> None:
        grown = sum(n - before.get(code, 0) for code, n in http["responses"].items() if code.startswith("4"))
        assert grown == len(cases), f"{grown} of {len(cases)} 4xx responses counted"
        assert "500" not in http["responses"], http["responses"]

    eventually(lambda: status_http(bridge.url), counted, 10)


# ---------------------------------------------------------------------------------------------
# slow clients and floods


async def _slow_client(
    port: int, head: bytes, interval: float, limit: float, connected: asyncio.Queue[None]
) -> tuple[float, float | None]:
    """Send ``head`` one byte per ``interval`` s (saying so on ``connected`` once connected); return
    when it connected and when the server closed the connection (``time.monotonic()``), None for the
    latter if it was still open after ``limit`` s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    connected.put_nowait(None)
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
            return started, None
        except ConnectionError:
            pass
        finally:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        return started, time.monotonic()
    finally:
        writer.close()


def test_slowloris_clients_are_closed_after_the_head_deadline_and_starve_nobody(
    bridge: FedBridge, viewer: Viewer
) -> None:
    """50 clients sending their request head a byte a second are closed once the request-head
    deadline passes, while meanwhile the viewer keeps getting frames and a normal client gets
    /status and a new /stream. Guards against slowloris: aiohttp alone would hold such
    connections open indefinitely."""
    n_slow = 50
    head = request(b"/status", b"User-Agent: " + b"s" * 200)
    before = status_http(bridge.url)["head_timeouts"]
    result: dict[str, Any] = {}

    async def main() -> None:
        connected: asyncio.Queue[None] = asyncio.Queue()
        started = time.monotonic()
        slow = [
            asyncio.create_task(_slow_client(bridge.port, head, 1.0, HEAD_TIMEOUT + 20, connected))
            for _ in range(n_slow)
        ]
        for _ in range(n_slow):  # every slow client is connected (and dribbling) from here on
            await connected.get()
        result["connected"] = time.monotonic()
        # the viewer is served while they are connected: wait (with a deadline) for its next frames
        await asyncio.to_thread(viewer.check, 2)
        result["viewer_served"] = time.monotonic()
        await asyncio.to_thread(status_http, bridge.url)
        result["status_answered"] = time.monotonic()

        def first_stream_part() -> float:
            with requests.get(bridge.url + "/stream", stream=True, timeout=(5, 5)) as response:
                assert response.status_code == 200
                next(response.iter_content(chunk_size=1024))
            return time.monotonic()

        result["stream_served"] = await asyncio.to_thread(first_stream_part)
        result["slow"] = await asyncio.gather(*slow)
        result["started"] = started

    asyncio.run(main())
    never = sum(closed is None for _, closed in result["slow"])
    assert never == 0, f"{never} slow clients were never closed"
    closed = [t for _, t in result["slow"]]
    assert min(t - since for since, t in result["slow"]) >= HEAD_TIMEOUT * 0.9, (
        "a slow client closed before its deadline"
    )
    print(
        f"\n{n_slow} slowloris clients closed {min(closed) - result['started']:.1f}-"
        f"{max(closed) - result['started']:.1f} s after the first connected; meanwhile the viewer's next frames"
        f" came {(result['viewer_served'] - result['connected']) * 1000:.0f} ms after they were connected,"
        f" /status {(result['status_answered'] - result['viewer_served']) * 1000:.0f} ms later,"
        f" a new /stream's first bytes {(result['stream_served'] - result['status_answered']) * 1000:.0f} ms later"
    )
    # starving nobody is an order: the viewer got new frames, /status was answered and a new
    # /stream served while every slow client was still connected (before the first was closed)
    assert result["viewer_served"] < result["status_answered"] < result["stream_served"] < min(closed), result
    assert status_http(bridge.url)["head_timeouts"] - before == n_slow
    viewer.check()


def test_the_deadlines_by_default_are_the_promised_ones() -> None:
    """README promises a request head within 10 s, a kept-alive connection idle 15 s, and a
    stalled viewer dropped after 10 s; the tests run shorter deadlines, so this pins the defaults
    the daemon runs with: the constants, the bridge's and its process's defaults, and README."""
    from zmqcam.bridge import Bridge, run_bridge
    from zmqcam.bridge.listener import HEAD_TIMEOUT as DEFAULT_HEAD_TIMEOUT
    from zmqcam.bridge.listener import KEEPALIVE_TIMEOUT
    from zmqcam.bridge.server import WRITE_TIMEOUT

    assert (DEFAULT_HEAD_TIMEOUT, KEEPALIVE_TIMEOUT, WRITE_TIMEOUT) == (10.0, 15.0, 10.0)
    for factory in (Bridge, run_bridge):
        parameters = inspect.signature(factory).parameters
        assert parameters["head_timeout"].default == DEFAULT_HEAD_TIMEOUT, factory
        assert parameters["write_timeout"].default == WRITE_TIMEOUT, factory
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"complete its first request head (TLS handshake included) within {DEFAULT_HEAD_TIMEOUT:g} s" in readme
    assert f"a kept-alive one may idle {KEEPALIVE_TIMEOUT:g} s between requests" in readme
    assert f"a viewer whose single write stalls for {WRITE_TIMEOUT:g} s is dropped" in readme
    assert f"slowloris clients are closed after {DEFAULT_HEAD_TIMEOUT:g} s" in readme


def test_connections_beyond_the_cap_get_503_and_the_viewers_keep_streaming(bridge: FedBridge, viewer: Viewer) -> None:
    """A flood of idle connections fills exactly max_clients + SPARE_CONNECTIONS: every one beyond
    is answered 503 at once and closed, the others are held until the head deadline closes them
    (none is left hanging), the viewer already streaming is not disturbed, and once the idle ones
    are closed, new clients are served again."""
    cap = MAX_CLIENTS + SPARE_CONNECTIONS
    flood = cap + 30
    before = status_http(bridge.url)["refused_connections"]
    time.sleep(0.5)  # the connection of that status request is closed on the bridge's side too
    result: dict[str, Any] = {}

    async def main() -> None:
        async def idle() -> tuple[bytes | None, float]:
            """What the bridge sent before closing (b"" for a close at the head deadline), None if
            it neither answered nor closed within the deadline and then some; and when."""
            reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
            try:
                return await asyncio.wait_for(reader.read(), HEAD_TIMEOUT + 20), time.monotonic()
            except ConnectionError:
                return b"", time.monotonic()
            except asyncio.TimeoutError:
                return None, time.monotonic()
            finally:
                writer.close()

        tasks = []
        for _ in range(flood):
            tasks.append(asyncio.create_task(idle()))
            await asyncio.sleep(0.002)
        await asyncio.sleep(0.5)
        result["meanwhile"] = await asyncio.to_thread(raw_exchange, bridge.port, request(b"/status"))
        # the viewer is served while the cap is reached: wait (with a deadline) for its next frames
        await asyncio.to_thread(viewer.check, 2)
        result["viewer_served"] = time.monotonic()
        ends = await asyncio.gather(*tasks)
        replies = [reply for reply, _ in ends]
        result["first_held_closed"] = min((at for reply, at in ends if reply == b""), default=float("inf"))
        result["refused"] = sum(http_status_code(reply) == 503 for reply in replies if reply is not None)
        result["held"] = sum(reply == b"" for reply in replies)
        result["hanging"] = sum(reply is None for reply in replies)

    asyncio.run(main())
    # the viewer's connection counts too: exactly cap - 1 of the flood get in, the rest get 503
    assert result["hanging"] == 0, result
    assert (result["held"], result["refused"]) == (cap - 1, flood + 1 - cap), result
    assert http_status_code(result["meanwhile"]) == 503, result["meanwhile"][:100]
    # an order: the viewer got new frames before the first held connection was closed
    assert result["viewer_served"] < result["first_held_closed"], "the viewer got no frame while the cap was reached"
    after = wait_for(lambda: status_http_or_none(bridge.url), 10, message="the bridge to accept again")
    # the refused ones: the flood's, and the status request made meanwhile
    assert after["refused_connections"] - before == result["refused"] + 1
    viewer.check()


def status_http_or_none(url: str) -> dict[str, Any] | None:
    try:
        response = requests.get(url + "/status", timeout=3)
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    http: dict[str, Any] = response.json()["http"]
    return http
