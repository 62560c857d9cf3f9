"""HTTP viewers for scripts/bench.py, run as a separate process: raw asyncio socket readers.

    python scripts/bench_viewers.py --port P --clients N --duration D [--warmup W] [--latency] [--path /stream.mp4]
    python scripts/bench_viewers.py --port P --cycles K [--concurrency C]

Prints one JSON line. Each reader sends ``GET <path> HTTP/1.0`` (so neither server chunks the
body). ``/stream`` (MJPEG): the reader scans the multipart body for ``X-Timestamp:`` lines; a part
whose timestamp differs from the previous one is a new frame; with --latency, the time from that
capture time to the moment the part's headers arrived is recorded (the part is one write on
loopback, so its JPEG follows at once). A ``--path`` ending in ``.mp4`` (fragmented MP4): the body is
walked box by box (``bench_fmp4``), one fragment (moof + mdat) per frame; with --latency, the time
from the fragment's capture time (the response's ``X-Capture-Origin-Ns`` + the fragment's ``tfdt``)
to the moment its last byte arrived is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from bench_fmp4 import Fragments

from zmqcam.video.timeline import NS_PER_SECOND, TIME_BASE

MARK = b"X-Timestamp: "
ORIGIN = b"x-capture-origin-ns:"
HEADER_END = b"\r\n\r\n"
MAX_HEADER = 16384  # an HTTP response header longer than this is not the bridge's


class Reader(asyncio.Protocol):
    def __init__(self, path: str, latency: bool, first: asyncio.Future[float] | None = None) -> None:
        self.path = path
        self.latency = latency
        self.first = first
        self.tail = b""
        self.last_ts = b""
        self.counting = False
        self.frames = 0
        self.lat: list[float] = []
        self.parts = 0
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.mp4 = Fragments() if path.endswith(".mp4") else None
        self.header: bytes | None = None  # the HTTP response header, once whole (mp4 only)
        self.origin_ns: int | None = None  # X-Capture-Origin-Ns: capture time of media time 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(f"GET {self.path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())

    def _ts(self, value: bytes) -> None:
        self._part()
        if value != self.last_ts:
            self.last_ts = value
            if self.counting:
                self.frames += 1
                if self.latency:
                    with contextlib.suppress(ValueError):
                        self.lat.append((time.time() - float(value)) * 1000)

    def _part(self) -> None:
        """A part (MJPEG) or a fragment (fMP4) arrived."""
        self.parts += 1
        if self.first is not None and not self.first.done():
            self.first.set_result(time.monotonic())

    def _mp4(self, data: bytes, now_ns: int) -> None:
        assert self.mp4 is not None
        if self.header is None:
            self.tail += data
            end = self.tail.find(HEADER_END)
            if end < 0:
                if len(self.tail) > MAX_HEADER and self.transport is not None:
                    self.transport.abort()
                return
            self.header, data, self.tail = self.tail[:end], self.tail[end + len(HEADER_END) :], b""
            for line in self.header.lower().split(b"\r\n"):
                if line.startswith(ORIGIN):
                    with contextlib.suppress(ValueError):
                        self.origin_ns = int(line[len(ORIGIN) :])
        for decode_time in self.mp4.feed(data):
            self._part()
            if not self.counting:
                continue
            self.frames += 1
            if self.latency and self.origin_ns is not None:
                capture_ns = self.origin_ns + decode_time * TIME_BASE.numerator * NS_PER_SECOND // TIME_BASE.denominator
                self.lat.append((now_ns - capture_ns) / 1e6)

    def data_received(self, data: bytes) -> None:
        if self.mp4 is not None:
            self._mp4(data, time.time_ns())  # the moment these bytes arrived
            return
        start = 0
        if self.tail:
            win = self.tail + data[:96]
            i = win.find(MARK)
            if 0 <= i < len(self.tail):
                j = win.find(b"\r\n", i)
                if j >= 0:
                    self._ts(win[i + len(MARK) : j])
                    start = j - len(self.tail)
        pos = max(start, 0)
        while True:
            i = data.find(MARK, pos)
            if i < 0:
                break
            j = data.find(b"\r\n", i)
            if j < 0:
                self.tail = data[i:]
                return
            self._ts(data[i + len(MARK) : j])
            pos = j
        self.tail = data[max(pos, len(data) - 16) :]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def viewers(port: int, path: str, clients: int, duration: float, warmup: float, latency: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    readers: list[Reader] = []
    failed = 0
    for k in range(clients):
        try:
            _, proto = await loop.create_connection(lambda: Reader(path, latency), "127.0.0.1", port)
            readers.append(proto)
        except OSError:
            failed += 1
        if k % 50 == 49:
            await asyncio.sleep(0.01)
    await asyncio.sleep(warmup)
    for r in readers:
        r.counting = True
    print("COUNTING", flush=True)
    t0 = time.monotonic()
    await asyncio.sleep(duration)
    elapsed = time.monotonic() - t0
    for r in readers:
        r.counting = False
    fps = [r.frames / elapsed for r in readers]
    lat = [x for r in readers for x in r.lat]
    dropped = sum(1 for r in readers if r.closed.done())
    for r in readers:
        if r.transport is not None:
            r.transport.abort()
    fps.extend([0.0] * failed)
    return {
        "clients": clients,
        "failed": failed,
        "closed_early": dropped,
        "elapsed": elapsed,
        "fps": fps,
        "latency_ms": lat,
    }


async def cycles(port: int, path: str, count: int, concurrency: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    done = 0
    errors = 0
    times: list[float] = []

    async def one() -> None:
        nonlocal done, errors
        first: asyncio.Future[float] = loop.create_future()
        t = time.monotonic()
        try:
            transport, _ = await loop.create_connection(lambda: Reader(path, False, first), "127.0.0.1", port)
        except OSError:
            errors += 1
            return
        try:
            t1 = await asyncio.wait_for(first, 5.0)
            times.append((t1 - t) * 1000)
        except asyncio.TimeoutError:
            errors += 1
        transport.abort()
        done += 1

    async def worker(n: int) -> None:
        for _ in range(n):
            await one()

    per = [count // concurrency + (1 if k < count % concurrency else 0) for k in range(concurrency)]
    await asyncio.gather(*(worker(n) for n in per))
    return {"cycles": done, "errors": errors, "first_part_ms": times}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/stream")
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--latency", action="store_true")
    ap.add_argument("--cycles", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=10)
    a = ap.parse_args()
    if a.cycles:
        out = asyncio.run(cycles(a.port, a.path, a.cycles, a.concurrency))
    else:
        out = asyncio.run(viewers(a.port, a.path, a.clients, a.duration, a.warmup, a.latency))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
