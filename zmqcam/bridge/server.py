"""The HTTP bridge process: MJPEG and snapshots for people, status for everyone.

Endpoints::

    GET /                        a self-contained page: live panorama, each camera, status table
    GET /stream                  the panorama, multipart/x-mixed-replace (optional ?fps=N cap)
    GET /stream/<camera>         one camera's own JPEGs, forwarded untouched
    GET /stream.mp4              the panorama as H.264 in fragmented MP4 (``pano h264``, muxed once)
    GET /snapshot.jpg            the newest panorama (wakes sleeping cameras, waits snapshot_timeout)
    GET /snapshot/<camera>.jpg   the newest frame of one camera
                                 (both: ?width=&height=&quality= re-encode it, once per frame and size)
    GET /status                  JSON: cameras, stitcher, HTTP counters, the bridge's subscriptions,
                                 the daemon's processes (state, restarts, watchdog hangs), the
                                 publish targets (state, connects, failures, sent, last_error)
    GET /metrics                 Prometheus (zmqcam.bridge.metrics)

Every frame arrives JPEG-encoded from upstream and is wrapped into a multipart part once, and every
H.264 access unit is muxed into an fMP4 fragment once (``zmqcam.bridge.hub``); per client the bridge
only writes bytes. Each streaming client has its own
writer (the aiohttp handler task): it writes the newest part, waits until the kernel took all of it,
then takes whatever is newest by then, so a slow client skips frames instead of queueing them, and a
client whose write stalls for ``write_timeout`` seconds is dropped. Per client the bridge therefore
holds at most one part in its buffer, whatever the clients do.

Per frame and client the writer does as little as it can: it waits on the channel's event (woken by
a new frame, the channel's keepalive or shutdown) and writes; the stall check is one timer per
client that looks at the write in progress, not an ``asyncio.wait_for`` per write. How the bridge
listens (TLS, the connection cap, the request-head deadline) is ``zmqcam.bridge.listener``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import math
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NamedTuple

import zmq.asyncio
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from zmqcam.bridge import auth, report
from zmqcam.bridge.hub import BOUNDARY, KEEPALIVE, OPENING, WAKING, Channel, Hub, Mp4Channel, Part, make_part
from zmqcam.bridge.listener import (
    HEAD_TIMEOUT,
    KEEPALIVE_TIMEOUT,
    SPARE_CONNECTIONS,
    GuardedSite,
    server_ssl_context,
)
from zmqcam.bridge.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from zmqcam.bridge.metrics import METRICS_PATH, Metrics
from zmqcam.bridge.page import render_page
from zmqcam.bus.status import LIVE
from zmqcam.config import Config
from zmqcam.errors import StartError
from zmqcam.files import write_atomic
from zmqcam.image.cards import waiting_card
from zmqcam.image.resize import MAX_SIDE, resized_jpeg
from zmqcam.names import ANNOUNCE_FILE, BRIDGE, MP4_VIEWERS, PANO
from zmqcam.process import HEARTBEAT_INTERVAL, Heartbeat, run_child, stop_requested

log = logging.getLogger(__name__)

#: the kernel send buffer of a /stream.mp4 viewer (Linux doubles it): about half a second of video at
#: the default quality, so a slow viewer is seen to lag, and skipped, within a second or so
MP4_SEND_BUFFER = 64 * 1024
#: a client whose single write (one frame) takes longer than this is disconnected
WRITE_TIMEOUT = 10.0
MAX_FPS = 240.0
MIN_FPS = 0.01
RETRY_AFTER = "2"
_DECIMAL = re.compile(r"[+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?", re.ASCII)

_NO_CACHE = {
    "Cache-Control": "no-store, no-cache, must-revalidate, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


class _QuietBadRequests(logging.Filter):
    """aiohttp logs every unparsable request as an error with a traceback; for a server facing a
    LAN (scanners, TLS probes, broken clients) that is noise: keep one debug line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log.debug("bad request: %s", str(exc).strip().splitlines()[0][:200])
            return False
        return True


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class _StallWatch:
    """Drops a streaming client whose single write has taken over ``timeout`` seconds.

    One timer per client, re-armed lazily: a write only records when it started (and clears that
    when done); the timer, firing about once per ``timeout``, checks the write in progress."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float, on_stall: Callable[[], None]) -> None:
        self._loop = loop
        self._timeout = timeout
        self._on_stall = on_stall
        #: loop time the write in progress started; None between writes
        self.writing_since: float | None = None
        self._timer = loop.call_later(timeout, self._check)

    def _check(self) -> None:
        since = self.writing_since
        now = self._loop.time()
        if since is not None and now - since >= self._timeout - 0.001:
            self._on_stall()
            return
        self._timer = self._loop.call_at((since if since is not None else now) + self._timeout, self._check)

    def cancel(self) -> None:
        self._timer.cancel()


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"400: {reason}\n")


class SnapshotOptions(NamedTuple):
    """``/snapshot.jpg?width=&height=&quality=``; None: as made."""

    width: int | None = None
    height: int | None = None
    quality: int | None = None


NO_OPTIONS = SnapshotOptions()
#: query key -> its largest value (the smallest is 1)
SNAPSHOT_OPTIONS = {"width": MAX_SIDE, "height": MAX_SIDE, "quality": 100}
#: resized snapshots kept (frame and options -> JPEG), newest first out last
RESIZED_CACHE = 32
_WHOLE = re.compile(r"[0-9]{1,6}", re.ASCII)


def _snapshot_options(request: web.Request) -> SnapshotOptions:
    values: dict[str, int] = {}
    for key, top in SNAPSHOT_OPTIONS.items():
        given = request.query.getall(key, [])
        if not given:
            continue
        if len(given) > 1:
            raise _bad_request(f"{key} is given more than once")
        if not _WHOLE.fullmatch(given[0]) or not 1 <= int(given[0]) <= top:
            raise _bad_request(f"{key} must be a whole number from 1 to {top}, got {given[0][:40]!r}")
        values[key] = int(given[0])
    return SnapshotOptions(**values)


class Bridge:
    """The aiohttp application and everything it serves from. Create inside a running event loop."""

    def __init__(
        self,
        config: Config,
        *,
        ctx: zmq.asyncio.Context | None = None,
        write_timeout: float = WRITE_TIMEOUT,
        keepalive: float = KEEPALIVE,
        head_timeout: float = HEAD_TIMEOUT,
    ) -> None:
        self.config = config
        self.http = config.http
        self.write_timeout = write_timeout
        self.head_timeout = head_timeout
        self.camera_names = [cam.name for cam in config.camera]
        #: the process shell's context, or one of its own (terminated in ``close``)
        self._own_ctx = ctx is None
        self.ctx = zmq.asyncio.Context() if ctx is None else ctx
        self.hub = Hub(config, self.ctx, self._make_card)
        for channel in self.hub.channels.values():
            channel.keepalive = keepalive
        self.page = render_page(config).encode()
        self.clients = 0
        self.viewers: collections.Counter[str] = collections.Counter()
        self.counters = {
            "requests": 0,
            "unauthorized": 0,
            "rejected": 0,
            "dropped": 0,
            "frames_sent": 0,
            "frames_skipped": 0,
            "snapshots": 0,
            "snapshot_timeouts": 0,
            "head_timeouts": 0,
            "refused_connections": 0,
            "snapshots_resized": 0,
        }
        self._resized_cache: collections.OrderedDict[tuple[str, int, int, SnapshotOptions], bytes] = (
            collections.OrderedDict()
        )
        self.responses: collections.Counter[int] = collections.Counter()
        self.port: int | None = None
        self.site: GuardedSite | None = None
        self.closing = asyncio.Event()
        #: fps-capped writers pausing between frames; resolved at once on shutdown
        self._pauses: set[asyncio.Future[None]] = set()
        self._started = time.monotonic()
        self.processes = report.ProcessTable(config.run_dir)
        self.metrics = Metrics(self)
        self.app = self._make_app()

    def _make_card(self, stream: str) -> Part:
        if stream == PANO:
            width, height = self.config.pano_size
            title, subtitle = "panorama: waiting for frames", "the cameras are waking up"
        else:
            width, height = self.config.camera_named(stream).size
            title, subtitle = f"{stream}: waiting for frames", "the camera is waking up"
        jpeg = waiting_card(width, height, title, subtitle)
        return make_part(jpeg, 0, time.time_ns(), width, height, WAKING)

    # -- the application

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        add = app.router.add_get
        add("/", self.index)
        add("/status", self.status_handler)
        add("/stream", self.stream_pano, allow_head=False)
        add("/stream.mp4", self.stream_mp4, allow_head=False)
        add("/stream/{name}", self.stream_camera, allow_head=False)
        add("/snapshot.jpg", self.snapshot_pano, allow_head=False)
        add("/snapshot/{name}.jpg", self.snapshot_camera, allow_head=False)
        add(METRICS_PATH, self.metrics_handler)
        app.on_shutdown.append(self._on_shutdown)
        return app

    def access_log_class(self) -> type[AbstractAccessLogger]:
        bridge = self

        class CountingAccessLogger(AbstractAccessLogger):
            """Counts every response by status, including the 400s aiohttp itself sends for requests it
            cannot parse (no handler or middleware sees those)."""

            def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
                bridge.responses[response.status] += 1
                if self.logger.isEnabledFor(logging.DEBUG):
                    self.logger.debug(
                        "%s %s %s %d %.3fs", request.remote, request.method, request.path_qs, response.status, time
                    )

        return CountingAccessLogger

    async def _on_shutdown(self, app: web.Application) -> None:
        self._close_streams()

    def _close_streams(self) -> None:
        self.closing.set()
        self.hub.wake_all()
        for waiter in self._pauses:
            _resolve(waiter)

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.counters["requests"] += 1
        if self.site is not None:
            self.site.request_started(request.protocol)
        if request.version < (1, 0):
            # aiohttp takes a request line without a version for HTTP/0.9 and would serve it
            return web.Response(status=400, text="400: HTTP/1.0 or HTTP/1.1 requests only\n")
        metrics = request.path == METRICS_PATH
        allowed = auth.metrics_authorized(self.http, request) if metrics else auth.authorized(self.http, request)
        if not allowed:
            self.counters["unauthorized"] += 1
            return web.Response(
                status=401,
                text="401: authentication required\n",
                headers={"WWW-Authenticate": auth.challenge(self.http, metrics=metrics)},
            )
        response: web.StreamResponse = await handler(request)
        return response

    def _pano_channel(self) -> Channel:
        if PANO not in self.hub.channels:
            raise web.HTTPNotFound(text="404: stitching is disabled in the config\n")
        return self.hub.channels[PANO]

    def _camera_channel(self, name: str) -> Channel:
        if name not in self.camera_names:
            known = ", ".join(self.camera_names)
            raise web.HTTPNotFound(text=f"404: no camera named {name[:40]!r} (cameras: {known})\n")
        return self.hub.channels[name]

    def _admit(self) -> None:
        if self.clients >= self.http.max_clients:
            self.counters["rejected"] += 1
            raise web.HTTPServiceUnavailable(
                text=f"503: too many clients (max_clients = {self.http.max_clients})\n",
                headers={"Retry-After": RETRY_AFTER},
            )

    @staticmethod
    def _parse_fps(request: web.Request) -> float | None:
        values = request.query.getall("fps", [])
        if not values:
            return None
        if len(values) > 1:
            raise _bad_request("fps is given more than once")
        # plain ASCII decimals only: float() also takes "1_0", " 5 " and non-ASCII digits
        if not _DECIMAL.fullmatch(values[0]):
            raise _bad_request(f"fps must be a number, got {values[0][:40]!r}")
        fps = float(values[0])
        if not (math.isfinite(fps) and MIN_FPS <= fps <= MAX_FPS):
            raise _bad_request(f"fps must be between {MIN_FPS:g} and {MAX_FPS:g}, got {values[0][:40]!r}")
        return fps

    # -- handlers

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(body=self.page, content_type="text/html", charset="utf-8", headers=_NO_CACHE)

    async def status_handler(self, request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(self.status()), content_type="application/json", headers=_NO_CACHE)

    async def metrics_handler(self, request: web.Request) -> web.Response:
        return web.Response(body=self.metrics.exposition(), headers={"Content-Type": METRICS_CONTENT_TYPE, **_NO_CACHE})

    async def stream_pano(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, self._pano_channel())

    async def stream_camera(self, request: web.Request) -> web.StreamResponse:
        return await self._stream(request, self._camera_channel(request.match_info["name"]))

    async def snapshot_pano(self, request: web.Request) -> web.Response:
        options = _snapshot_options(request)
        return await self._snapshot(self._pano_channel(), options)

    async def snapshot_camera(self, request: web.Request) -> web.Response:
        options = _snapshot_options(request)
        return await self._snapshot(self._camera_channel(request.match_info["name"]), options)

    async def _stream(self, request: web.Request, channel: Channel) -> web.StreamResponse:
        resize = [key for key in SNAPSHOT_OPTIONS if key in request.query]
        if resize:
            # a stream forwards each JPEG as it was made, to every viewer: never re-encoded per viewer
            raise _bad_request(f"{resize[0]}: streams are never resized (only /snapshot.jpg takes it)")
        fps = self._parse_fps(request)
        self._admit()
        response = web.StreamResponse(
            headers={
                "Content-Type": f"multipart/x-mixed-replace;boundary={BOUNDARY}",
                "X-Zmqcam-State": channel.state,
                "X-Accel-Buffering": "no",  # a reverse proxy must not buffer a live stream
                **_NO_CACHE,
            }
        )
        response.force_close()
        self.clients += 1
        self.viewers[channel.stream] += 1
        channel.acquire()
        transport = request.transport
        watch = _StallWatch(asyncio.get_running_loop(), self.write_timeout, lambda: self._drop(request))
        try:
            await response.prepare(request)
            if transport is not None:
                # a write counts as done once the kernel took all of it: the next frame is chosen
                # only then, so the newest frame wins and nothing piles up in our buffer
                transport.set_write_buffer_limits(high=0)
            await self._write(request, response, OPENING, watch)
            await self._serve_frames(request, response, channel, fps, watch)
        except ConnectionError:
            pass  # the client left, or was dropped for stalling (see _drop)
        finally:
            watch.cancel()
            channel.release()
            self.viewers[channel.stream] -= 1
            self.clients -= 1
        return response

    async def stream_mp4(self, request: web.Request) -> web.StreamResponse:
        """The panorama as fragmented MP4 (``zmqcam.bridge.hub.Mp4Channel``). The response starts at
        the first keyframe after the cameras woke (its headers need the init segment's codec), at most
        ``snapshot_timeout`` plus one keyframe interval later, else 503. Then the viewer gets the
        init segment and the GOP in progress, and from then on, whenever its previous write finished,
        every fragment since; one that fell a whole GOP behind skips to the newest keyframe. Same
        limits as /stream: max_clients, auth, TLS, the stalled-write drop."""
        channel = self.hub.mp4
        if channel is None:
            raise web.HTTPNotFound(text="404: stitching is disabled in the config\n")
        self._admit()
        self.clients += 1
        self.viewers[MP4_VIEWERS] += 1
        channel.acquire()  # wakes sleeping cameras, as any viewer does
        loop = asyncio.get_running_loop()
        watch = _StallWatch(loop, self.write_timeout, lambda: self._drop(request))
        response = web.StreamResponse(headers={"X-Accel-Buffering": "no", **_NO_CACHE})
        try:
            timeout = self.http.snapshot_timeout + self.config.stitch.h264.keyint
            deadline = loop.time() + timeout
            while not channel.ready() and not self.closing.is_set() and loop.time() < deadline:
                await channel.wait_newer(channel.gen, deadline - loop.time())
            if not channel.ready():
                channel.timeouts += 1
                raise web.HTTPServiceUnavailable(
                    text=f"503: no H.264 keyframe from {PANO} within {timeout:g} s\n",
                    headers={"Retry-After": RETRY_AFTER},
                )
            response.headers["Content-Type"] = f'video/mp4; codecs="{channel.codec}"'
            # mse_player.js: media time 0 was captured then (capture -> display latency)
            response.headers["X-Capture-Origin-Ns"] = str(channel.origin_ns)
            response.force_close()
            await response.prepare(request)
            transport = request.transport
            if transport is not None:
                transport.set_write_buffer_limits(high=0)  # as /stream: done = in the kernel
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    # a bounded kernel queue: autotuned, it grows to 4 MB, half a minute of video
                    # that a slow viewer would watch late before the bridge even notices it lags
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, MP4_SEND_BUFFER)
            await self._serve_fragments(request, response, channel, watch)
        except ConnectionError:
            pass
        finally:
            watch.cancel()
            channel.release()
            self.viewers[MP4_VIEWERS] -= 1
            self.clients -= 1
        return response

    async def _serve_fragments(
        self, request: web.Request, response: web.StreamResponse, channel: Mp4Channel, watch: _StallWatch
    ) -> None:
        epoch = channel.epoch
        cursor: int | None = None
        while not self.closing.is_set() and channel.epoch == epoch:
            gen = channel.gen
            chunks, cursor = channel.live.since(cursor)
            if chunks:
                data = b"".join(chunks)
                watch.writing_since = asyncio.get_running_loop().time()
                await response.write(data)
                await request.writer.drain()
                watch.writing_since = None
                channel.sent += len(chunks)
                channel.sent_bytes += len(data)
            await channel.wait_newer(gen)

    def _drop(self, request: web.Request) -> None:
        self.counters["dropped"] += 1
        log.info("dropping client %s: one write took over %g s", request.remote, self.write_timeout)
        if request.transport is not None:
            # the handler is cancelled (handler_cancellation) or its write fails: it cleans up
            request.transport.abort()

    async def _serve_frames(
        self,
        request: web.Request,
        response: web.StreamResponse,
        channel: Channel,
        fps: float | None,
        watch: _StallWatch,
    ) -> None:
        loop = asyncio.get_running_loop()
        part = channel.fresh() or channel.card
        gen = channel.gen
        await self._write(request, response, part.chunk, watch)
        channel.sent += 1
        channel.sent_bytes += len(part.chunk)
        sent_at = loop.time()
        while not self.closing.is_set():
            if fps is not None:
                delay = sent_at + 1.0 / fps - loop.time()
                if delay > 0 and await self._pause(delay):
                    return
            if await channel.wait_newer(gen):
                if self.closing.is_set():
                    return
                skipped = channel.gen - gen - 1
                if skipped > 0:
                    channel.skipped += skipped
                    self.counters["frames_skipped"] += skipped
                gen = channel.gen
                part = channel.latest or channel.card
            else:
                # nothing new (a keepalive): repeat the newest frame while it is recent, else the card
                if self.closing.is_set():
                    return
                part = channel.recent() or channel.card
            await self._write(request, response, part.chunk, watch)
            channel.sent += 1
            channel.sent_bytes += len(part.chunk)
            sent_at = loop.time()

    async def _pause(self, seconds: float) -> bool:
        """Sleep ``seconds`` (an fps cap); True when the bridge started closing meanwhile."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(seconds, _resolve, waiter)
        self._pauses.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._pauses.discard(waiter)
        return self.closing.is_set()

    async def _write(self, request: web.Request, response: web.StreamResponse, data: bytes, watch: _StallWatch) -> None:
        watch.writing_since = asyncio.get_running_loop().time()
        await response.write(data)
        await request.writer.drain()
        watch.writing_since = None
        if data is not OPENING:
            self.counters["frames_sent"] += 1

    async def _snapshot(self, channel: Channel, options: SnapshotOptions) -> web.Response:
        """The newest frame, meaning the first one made from camera frames captured after this request
        arrived: with live cameras that takes a frame interval or two, with sleeping ones as long as
        they take to wake (at most ``snapshot_timeout``, else 503). A frame cached before the request
        is never served: it may show a moment, or a camera state, that is long gone."""
        self.counters["snapshots"] += 1
        asked_ns = time.time_ns()
        self._admit()
        timeout = self.http.snapshot_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        part: Part | None = None
        arrived: Part | None = None  # the newest frame that arrived after the request
        self.clients += 1
        channel.acquire()  # wakes sleeping cameras
        try:
            gen = channel.gen
            while not self.closing.is_set():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                if await channel.wait_newer(gen, remaining):
                    gen = channel.gen
                    arrived = channel.latest
                    if arrived is not None and arrived.oldest_capture_ns >= asked_ns:
                        part = arrived
                        break
        finally:
            channel.release()
            self.clients -= 1
        if part is None and arrived is not None:
            # frames came after the request but claim earlier capture times: the clock of the host
            # that captured them is behind ours (README: run NTP on every host of a split rig). The
            # newest arrival is still newer than the request.
            part = arrived
        if part is None:
            self.counters["snapshot_timeouts"] += 1
            raise web.HTTPServiceUnavailable(
                text=f"503: no frame from {channel.stream} within {timeout:g} s\n",
                headers={"Retry-After": RETRY_AFTER},
            )
        body = part.jpeg if options == NO_OPTIONS else await self._resized(channel, part, options)
        channel.sent_bytes += len(body)
        return web.Response(
            body=body,
            content_type="image/jpeg",
            headers={
                "X-Timestamp": f"{part.capture_ns / 1e9:.6f}",
                "X-Zmqcam-Seq": str(part.seq),
                "X-Zmqcam-State": LIVE,
                **_NO_CACHE,
            },
        )

    async def _resized(self, channel: Channel, part: Part, options: SnapshotOptions) -> bytes:
        """The snapshot at the size and quality asked for: encoded once per frame and options (a
        bounded cache, newest kept), off the event loop so that streams do not wait for it."""
        key = (channel.stream, part.seq, part.capture_ns, options)
        cached = self._resized_cache.get(key)
        if cached is not None:
            self._resized_cache.move_to_end(key)
            return cached
        loop = asyncio.get_running_loop()
        jpeg = await loop.run_in_executor(None, resized_jpeg, part.jpeg, *options)
        self.counters["snapshots_resized"] += 1
        self._resized_cache[key] = jpeg
        while len(self._resized_cache) > RESIZED_CACHE:
            self._resized_cache.popitem(last=False)
        return jpeg

    # -- status

    def status(self) -> dict[str, Any]:
        processes = self.processes.read()
        return {
            "version": 1,
            "time": round(time.time(), 3),
            "cameras": {name: report.camera_status(self.hub, name, self.viewers) for name in self.camera_names},
            "stitcher": report.stitcher_status(self.hub, self.viewers),
            "http": self._http_status(),
            "subscriptions": self.hub.subscriptions(),
            "processes": processes,
            "publish": report.publish_status(processes),
        }

    def _http_status(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "max_clients": self.http.max_clients,
            "streams": {ch: n for ch, n in self.viewers.items() if n},
            **self.counters,
            "bad_requests": self.responses[400],
            "responses": {str(code): n for code, n in sorted(self.responses.items())},
            "malformed": self.hub.malformed + sum(ch.malformed for ch in self.hub.all_channels()),
            "write_timeout": self.write_timeout,
            "mp4": self._mp4_status(),
            "uptime": round(time.monotonic() - self._started, 1),
        }

    def _mp4_status(self) -> dict[str, Any]:
        channel = self.hub.mp4
        if channel is None:
            return {"enabled": False}
        return {
            "enabled": True,
            "clients": self.viewers.get(MP4_VIEWERS, 0),
            "subscribed": channel.users > 0,
            "codec": channel.codec or None,
            "received": channel.received,
            "fragments": channel.fragments,
            "fragments_sent": channel.sent,
            "sent_bytes": channel.sent_bytes,
            "skips": channel.skips,
            "gaps": channel.gaps,
            "malformed": channel.malformed,
            "timeouts": channel.timeouts,
        }

    # -- running

    @property
    def scheme(self) -> str:
        return "https" if self.http.tls_cert is not None else "http"

    async def serve(self, stop: asyncio.Event) -> bool:
        """Listen until ``stop`` is set; StartError when the address cannot be bound."""
        self.hub.start()
        quiet = _QuietBadRequests()
        logging.getLogger("aiohttp.server").addFilter(quiet)
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log_class=self.access_log_class(),
            handler_cancellation=True,
            shutdown_timeout=2.0,
            keepalive_timeout=KEEPALIVE_TIMEOUT,
        )
        await runner.setup()
        try:
            try:
                tls = server_ssl_context(self.http)
            except OSError as exc:  # ssl.SSLError too; checked at config load, changed since?
                why = getattr(exc, "strerror", None) or exc
                raise StartError(f"cannot load http.tls_cert / http.tls_key: {why}") from None
            self.site = GuardedSite(
                runner,
                self.http.host,
                self.http.port,
                ssl_context=tls,
                max_connections=self.http.max_clients + SPARE_CONNECTIONS,
                head_timeout=self.head_timeout,
                counters=self.counters,
            )
            try:
                await self.site.start()
            except OSError as exc:
                raise StartError(f"cannot listen on {self.http.host}:{self.http.port}: {exc.strerror or exc}") from None
            self.port = runner.addresses[0][1]
            self._announce()
            if not auth.required(self.http) and self.http.host not in ("127.0.0.1", "::1", "localhost"):
                log.warning("serving %s without access control (set http.token or basic credentials)", self.http.host)
            log.info("serving %s://%s:%d/ (stream: /stream)", self.scheme, self.http.host, self.port)
            await stop.wait()
            return True
        finally:
            self._close_streams()
            await runner.cleanup()
            await self.hub.stop()
            self._unannounce()
            logging.getLogger("aiohttp.server").removeFilter(quiet)

    def _announce(self) -> None:
        run_dir = self.config.run_dir
        info = {"pid": os.getpid(), "host": self.http.host, "port": self.port, "scheme": self.scheme}
        try:
            run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_atomic(run_dir / ANNOUNCE_FILE, json.dumps(info))
        except OSError as exc:
            log.warning("cannot write %s: %s", run_dir / ANNOUNCE_FILE, exc)

    def _unannounce(self) -> None:
        path = self.config.run_dir / ANNOUNCE_FILE
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def close(self) -> None:
        self.hub.close()
        if self._own_ctx:
            self.ctx.term()


def read_announce(run_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Where a running bridge listens (``{"pid", "host", "port"}``), or None."""
    try:
        info = json.loads((Path(run_dir) / ANNOUNCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class BridgeProcess:
    """The bridge as the process shell runs it: an event loop serving a ``Bridge`` until SIGTERM/SIGINT.
    The heartbeat is a timer of that event loop, so it stops when the loop is stuck."""

    def __init__(self, config: Config, ctx: zmq.asyncio.Context, write_timeout: float, head_timeout: float) -> None:
        self.config = config
        self.ctx = ctx
        self.write_timeout = write_timeout
        self.head_timeout = head_timeout

    def run(self, heartbeat: Heartbeat | None = None) -> None:
        asyncio.run(self._main(heartbeat or Heartbeat()))

    async def _main(self, heartbeat: Heartbeat) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if stop_requested():  # the signal came before the loop took the signals over
            stop.set()

        timer: asyncio.TimerHandle | None = None

        def pulse() -> None:
            nonlocal timer
            heartbeat.beat(time.monotonic())
            timer = loop.call_later(HEARTBEAT_INTERVAL, pulse)

        # built in the loop, beating from then on: until the first beat the supervisor's start
        # grace covers the set-up (the waiting cards of a large panorama take a while)
        bridge = Bridge(self.config, ctx=self.ctx, write_timeout=self.write_timeout, head_timeout=self.head_timeout)
        pulse()
        try:
            await bridge.serve(stop)
        finally:
            if timer is not None:
                timer.cancel()
            bridge.close()

    def close(self) -> None:
        pass  # the Bridge closed its sockets when the event loop ended

    def can_term(self) -> bool:
        return True


def run_bridge(
    config: Config,
    *,
    write_timeout: float = WRITE_TIMEOUT,
    head_timeout: float = HEAD_TIMEOUT,
    link: Connection | None = None,
) -> None:
    """Process entry point (``multiprocessing`` target): serve HTTP until SIGTERM/SIGINT."""
    run_child(
        BRIDGE,
        config,
        lambda ctx: BridgeProcess(config, ctx, write_timeout, head_timeout),
        context=zmq.asyncio.Context,
        link=link,
    )
