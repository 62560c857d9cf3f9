"""The HTTP bridge's resources come back: after 1000 /stream connect/disconnect cycles and after 200
viewers that connect and never read, the bridge process has the open fds, threads and (within a
margin) the memory it had before, and /status shows no client.

One bridge process fed live 40 KB panoramas at 30 fps by a real ZeroMQ publisher; write_timeout is
2 s (10 s by default) so that the viewers that never read are dropped quickly.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.helpers.httpbridge import FedBridge, Viewer, fed_bridge, proc_resources, status_http

WRITE_TIMEOUT = 2.0
#: connect/disconnect cycles, and the memory each may leave behind at most: Python keeps some
#: (allocator arenas, aiohttp's per-connection caches; about 0.5 KiB a cycle measured), while a
#: leaked socket buffer or part (4 KiB and up) per cycle exceeds the margin
CYCLES = 1000
CYCLE_MARGIN_KIB = 4
#: after 200 stalled viewers: less than a part (40 KB) left per viewer (about 5 MiB in all measured)
STALLED_MARGIN_KIB = 12 * 1024
#: what one stalled viewer may cost while it is held: the one part in its buffer, and its
#: connection's own structures (about 10 KiB measured)
PER_STALLED_VIEWER_KIB = 40 + 24


@pytest.fixture(scope="module")
def bridge() -> Iterator[FedBridge]:
    with fed_bridge(30, http={"max_clients": 300}, write_timeout=WRITE_TIMEOUT) as fed:
        yield fed


def settled(bridge: FedBridge) -> dict[str, int]:
    """The bridge's resources once it has no client and no subscription left."""
    wait_for(
        lambda: (s := status_http(bridge.url))["clients"] == 0 and not s["streams"],
        15,
        interval=0.1,
        message="the bridge to have no client",
    )
    return proc_resources(bridge.pid)


def assert_back_to(bridge: FedBridge, baseline: dict[str, int], margin_kib: int) -> dict[str, int]:
    settled(bridge)
    # the kernel may take a moment to hand back the last sockets: poll, bounded
    after = wait_for(
        lambda: (r := proc_resources(bridge.pid))["fds"] <= baseline["fds"] and r,
        10,
        interval=0.1,
        message=f"the bridge's fds to return to {baseline['fds']} (now {proc_resources(bridge.pid)['fds']})",
    )
    assert after["threads"] == baseline["threads"], (baseline, after)
    assert after["rss_kib"] - baseline["rss_kib"] < margin_kib, (baseline, after)
    return after


async def _cycles(port: int, count: int, concurrency: int) -> int:
    """``count`` viewers that connect, read the head of the first frame, and leave (alternately with
    a FIN and an RST); returns how many got their first frame."""
    served = 0

    async def one(k: int) -> None:
        nonlocal served
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"X-Zmqcam-Seq: "), 10)
            served += 1
        finally:
            if k % 2:
                writer.transport.abort()
            else:
                writer.close()

    async def worker(first: int) -> None:
        for k in range(first, count, concurrency):
            await one(k)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return served


def test_a_thousand_connect_disconnect_cycles_leave_nothing_behind(bridge: FedBridge) -> None:
    """1000 /stream viewers that come and go (half closing, half resetting the connection): each
    is served, and afterwards the bridge has its baseline fds and threads, about its baseline
    memory, and 0 clients. Guards against per-connection leaks (sockets, timers, channel users)."""
    asyncio.run(_cycles(bridge.port, 50, 10))  # warm-up: lazily built caches and buffers
    baseline = settled(bridge)
    started = time.monotonic()
    served = asyncio.run(_cycles(bridge.port, CYCLES, 20))
    took = time.monotonic() - started
    assert served == CYCLES
    after = assert_back_to(bridge, baseline, CYCLES * CYCLE_MARGIN_KIB)
    status = status_http(bridge.url)
    assert status["clients"] == 0 and "500" not in status["responses"]
    print(f"\n{CYCLES} cycles in {took:.1f} s; bridge before {baseline}, after {after}")


@pytest.mark.slow
def test_two_hundred_viewers_that_never_read_are_dropped_and_leave_nothing_behind(bridge: FedBridge) -> None:
    """200 viewers that connect to /stream and never read: each is dropped once a write stalls for
    write_timeout, a normal viewer keeps its frames meanwhile, and afterwards the bridge has its
    baseline fds and threads, about its baseline memory, and 0 clients."""
    baseline = settled(bridge)
    before = status_http(bridge.url)["dropped"]
    n_stalled = 200
    sockets: list[socket.socket] = []
    viewer = Viewer(bridge.url)
    try:
        for _ in range(n_stalled):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a frame
            sock.connect(("127.0.0.1", bridge.port))
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sockets.append(sock)
        wait_for(lambda: status_http(bridge.url)["clients"] == n_stalled + 1, 10, message="every viewer admitted")
        peak = proc_resources(bridge.pid)
        started = time.monotonic()

        def all_dropped() -> dict[str, Any] | None:
            # the most memory the bridge held while the stalled viewers were there
            now = proc_resources(bridge.pid)
            peak.update(rss_kib=max(peak["rss_kib"], now["rss_kib"]), fds=max(peak["fds"], now["fds"]))
            s = status_http(bridge.url)
            return s if s["dropped"] - before >= n_stalled else None

        status: dict[str, Any] = wait_for(
            all_dropped, WRITE_TIMEOUT + 20, interval=0.2, message="every stalled viewer to be dropped"
        )
        dropped_after = time.monotonic() - started
        assert status["clients"] == 1  # the normal viewer
        assert status["dropped"] - before == n_stalled, "the normal viewer was dropped too"
        viewer.check(more=30)
    finally:
        viewer.close()
        for sock in sockets:
            sock.close()
    after = assert_back_to(bridge, baseline, STALLED_MARGIN_KIB)
    # held, each stalled viewer cost at most one part and its connection: nothing queued for it
    # (queueing the frames offered for write_timeout would take 30 fps x 2 s x 40 KB each)
    assert peak["rss_kib"] - baseline["rss_kib"] < n_stalled * PER_STALLED_VIEWER_KIB, (baseline, peak)
    print(
        f"\n{n_stalled} stalled viewers dropped within {dropped_after:.1f} s;"
        f" bridge before {baseline}, with them {peak}, after {after}"
    )
