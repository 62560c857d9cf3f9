"""A live H.264 source and a real aiohttp server for the video tests: frames of the synthetic scene are
rendered, encoded and fMP4-muxed at their capture time in a thread, and served to any number of
viewers as the bridge will: init segment + the GOP in progress, then every new fragment, a viewer that
fell behind skipping to the latest keyframe. Also serves the MSE page and an MJPEG stream (the page's
fallback)."""

from __future__ import annotations

import asyncio
import importlib.resources
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import simplejpeg
from aiohttp import web

from zmqcam.sources.synthetic import render_scene
from zmqcam.video.fmp4 import FragmentMuxer, LiveFragments, codec_string
from zmqcam.video.h264 import AccessUnit, EncoderSettings, H264Encoder

#: the original panorama's geometry: odd width, as the encoder meets it
PANO_SIZE = (2347, 250)
PLAYER_JS = importlib.resources.files("zmqcam.video") / "mse_player.js"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>zmqcam video test</title></head>
<body>
<p>mode: <span id="mode">?</span> latency: <span id="latency">?</span></p>
<video id="video" muted autoplay playsinline style="width:100%"></video>
<img id="mjpeg" alt="" style="width:100%;display:none">
<script>
{{js}}
window.player = ZmqcamPlayer.start({
  video: document.getElementById("video"), img: document.getElementById("mjpeg"),
  mp4: "{{mp4}}", mjpeg: "/stream",
  onmode: (m) => { document.getElementById("mode").textContent = m; },
  onlatency: (s) => { document.getElementById("latency").textContent = (s * 1000).toFixed(0) + " ms"; },
});
</script></body></html>
"""


class LiveVideoServer:
    """Encodes the synthetic scene at ``fps`` in a thread and serves it on 127.0.0.1 (random port)."""

    def __init__(self, fps: float = 15.0, keyint: int = 15, size: tuple[int, int] = PANO_SIZE) -> None:
        self.fps = fps
        self.size = size
        self.settings = EncoderSettings(keyint=keyint, fps=fps)
        self.encoder = H264Encoder(*size, self.settings)
        self.muxer = FragmentMuxer(*self.encoder.coded_size, fps=fps)
        self.live = LiveFragments()
        self.units: list[AccessUnit] = []  # every access unit made, for tests that reuse them
        self.listeners: list[Callable[[AccessUnit], None]] = []  # called in the producer thread
        self.origin_ns: int | None = None
        self.viewers = 0
        self.errors: list[BaseException] = []
        self._latest_jpeg = b""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._threads: list[threading.Thread] = []

    # -- the producer -------------------------------------------------------------------------
    def _produce(self) -> None:
        period = 1.0 / self.fps
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                capture_ns = time.time_ns()
                image = render_scene(*self.size, capture_ns / 1e9)
                au = self.encoder.encode(image, capture_ns)
                fragments = self.muxer.add(au.data, au.keyframe, au.capture_ns)
                jpeg = simplejpeg.encode_jpeg(image, quality=80, colorspace="BGR", colorsubsampling="420")
                with self._lock:
                    self.units.append(au)
                    self.origin_ns = self.muxer.timeline.origin_ns
                    self.live.init_segment = self.muxer.init_segment
                    self.live.add(fragments)
                    self._latest_jpeg = jpeg
                self._loop.call_soon_threadsafe(self._notify)
                for listener in self.listeners:
                    listener(au)
                next_at += period
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # reported by the test at teardown
            self.errors.append(exc)

    def _notify(self) -> None:
        async def wake() -> None:
            assert self._changed is not None
            async with self._changed:
                self._changed.notify_all()

        self._loop.create_task(wake())

    def wait_frames(self, n: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.units) < n:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"only {len(self.units)} of {n} frames made"
            time.sleep(0.02)

    # -- the server ---------------------------------------------------------------------------
    async def _page(self, request: web.Request) -> web.Response:
        mp4 = request.query.get("mp4", "/stream.mp4")
        page = PAGE.replace("{{js}}", PLAYER_JS.read_text()).replace("{{mp4}}", mp4)
        return web.Response(text=page, content_type="text/html")

    async def _stream_mp4(self, request: web.Request) -> web.StreamResponse:
        assert self._changed is not None
        async with self._changed:
            await self._changed.wait_for(lambda: self.live.init_segment is not None and bool(self.live.gop))
        with self._lock:
            codec = codec_string(self.live.init_segment or b"")
            origin = self.origin_ns
        # an unsupported codec string, to see the page fall back to MJPEG
        if request.query.get("codec"):
            codec = request.query["codec"]
        resp = web.StreamResponse(
            headers={
                "Content-Type": f'video/mp4; codecs="{codec}"',
                "Cache-Control": "no-store",
                "X-Capture-Origin-Ns": str(origin),
            }
        )
        await resp.prepare(request)
        cursor: int | None = None
        self.viewers += 1
        try:
            while not self._stop.is_set():
                with self._lock:
                    chunks, cursor = self.live.since(cursor)
                for chunk in chunks:
                    await resp.write(chunk)
                await self._wait_past(cursor)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.viewers -= 1
        return resp

    async def _wait_past(self, cursor: int | None) -> None:
        """Until a fragment after ``cursor`` is there (or the server stops)."""
        assert self._changed is not None
        async with self._changed:
            await self._changed.wait_for(lambda: self.live.next_seq != cursor or self._stop.is_set())

    async def _stream_mjpeg(self, request: web.Request) -> web.StreamResponse:
        assert self._changed is not None
        resp = web.StreamResponse(headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"})
        await resp.prepare(request)
        try:
            while not self._stop.is_set():
                async with self._changed:
                    await self._changed.wait()
                jpeg = self._latest_jpeg
                head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode()
                await resp.write(head + jpeg + b"\r\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return resp

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._changed = asyncio.Condition()
            app = web.Application()
            app.router.add_get("/", self._page)
            app.router.add_get("/stream.mp4", self._stream_mp4)
            app.router.add_get("/stream", self._stream_mjpeg)
            self._runner = web.AppRunner(app, shutdown_timeout=1.0)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        self._loop.run_until_complete(start())
        ready.set()
        self._loop.run_forever()
        assert self._runner is not None
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveVideoServer:
        ready = threading.Event()
        server = threading.Thread(target=self._serve, args=(ready,), name="video-server", daemon=True)
        server.start()
        assert ready.wait(10), "the test server did not start"
        producer = threading.Thread(target=self._produce, name="video-producer", daemon=True)
        producer.start()
        self._threads = [producer, server]
        return self

    def stop(self) -> None:
        self._stop.set()
        self._threads[0].join(5)
        self._loop.call_soon_threadsafe(self._notify)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._threads[1].join(5)
        self.encoder.close()
        assert not self.errors, self.errors


def live_server(**kwargs: Any) -> Iterator[LiveVideoServer]:
    server = LiveVideoServer(**kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)
