"""How the bridge listens: optional TLS, a cap on open connections, a deadline for request heads.

aiohttp bounds a request head in size (8190-byte lines, 128 headers) but not in time: a client that
sends its head a byte a second (slowloris) keeps its connection. aiohttp's only timer there is
``keepalive_timeout`` (3630 s by default), armed after each response (and, from 3.14 on, at connect
too); bytes arriving do not reset it, so on a kept-alive connection it bounds a slow next request,
but not a first one in older aiohttp. So the bridge listens through ``GuardedSite``, which gives
every accepted connection ``head_timeout`` seconds to deliver its first request head (the TLS
handshake included) and closes it otherwise, and sets ``keepalive_timeout`` short for the requests
after. It also caps the open connections at ``max_connections``: one beyond the cap is answered 503
at once and closed, without reaching aiohttp, so floods cannot exhaust the process's file
descriptors or starve the viewers already served.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import resource
import ssl
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from zmqcam.config import HttpConfig

log = logging.getLogger(__name__)

#: seconds from accept to a complete first request head (TLS handshake included)
HEAD_TIMEOUT = 10.0
#: seconds a kept-alive connection may sit idle (or send its next request head) after a response
KEEPALIVE_TIMEOUT = 15.0
#: open connections beyond the max_clients streaming viewers: page loads, status polls, snapshots
SPARE_CONNECTIONS = 100
#: file descriptors the bridge needs besides its connections (ZeroMQ sockets and its own)
_OTHER_FDS = 64

_REFUSAL_BODY = b"503: too many open connections\n"
_REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 2\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n"
    b"\r\n%s" % (len(_REFUSAL_BODY), _REFUSAL_BODY)
)


def server_ssl_context(http: HttpConfig) -> ssl.SSLContext | None:
    """The TLS context of ``http.tls_cert``/``tls_key`` (None: plain http). The files were checked
    when the config was loaded; the stdlib's server defaults are modern (TLS 1.2+, no weak ciphers,
    no compression or renegotiation), and TLS 1.2 is made the floor whatever the OpenSSL build says."""
    if http.tls_cert is None or http.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(http.tls_cert, http.tls_key)
    return context


def local_client_ssl_context(http: HttpConfig) -> ssl.SSLContext | None:
    """For this host's own tools (``zmqcam-daemon status``) talking to the bridge over loopback:
    trust exactly the configured certificate (it is often self-signed), not the host name, since the
    tools connect to 127.0.0.1 whatever name the certificate carries."""
    if http.tls_cert is None:
        return None
    context = ssl.create_default_context(cafile=http.tls_cert)
    context.check_hostname = False
    # the configured certificate itself is the trust anchor even when a real CA issued it
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context


def fit_fd_limit(max_connections: int) -> None:
    """Raise this process's soft open-files limit to fit ``max_connections`` (the soft limit is often
    1024 while the hard one is far higher): past it every accept fails and asyncio logs each one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _OTHER_FDS
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        log.warning("%d connections need %d open files, but the limit is %d (ulimit -Hn)", max_connections, wanted, new)


class _Refuse(asyncio.Protocol):
    """A connection beyond the cap: one 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_REFUSAL)
        transport.close()


class GuardedSite(web.BaseSite):
    """A TCP site like ``web.TCPSite`` whose protocol factory enforces the connection cap and the
    request-head deadline. The bridge's middleware reports each request with ``request_started``."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        ssl_context: ssl.SSLContext | None,
        max_connections: int,
        head_timeout: float,
        counters: collections.Counter[str] | dict[str, Any],
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=512)
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.head_timeout = head_timeout
        self.counters = counters
        #: connections that have not finished their first request head, with their deadline timer
        self._awaiting_head: dict[RequestHandler, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def name(self) -> str:
        return f"{'https' if self._ssl_context else 'http'}://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        self._loop = asyncio.get_running_loop()
        fit_fd_limit(self.max_connections)
        self._server = await self._loop.create_server(
            self._accept,
            self.host,
            self.port,
            ssl=self._ssl_context,
            ssl_handshake_timeout=self.head_timeout if self._ssl_context else None,
            backlog=self._backlog,
            reuse_address=True,
        )
        # a connection closed before a request of it started (a malformed head answered 400, a
        # client that left) awaits no head any more: forget it when aiohttp learns it is lost, or,
        # its transport gone, it would count as a TLS handshake in progress against the cap until
        # its deadline, and a burst of bad requests would get every client refused meanwhile
        server = self._runner.server
        assert server is not None
        lost = server.connection_lost

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            self._head_done(handler)
            lost(handler, exc)

        server.connection_lost = connection_lost  # type: ignore[method-assign]

    def open_connections(self) -> int:
        server = self._runner.server
        assert server is not None
        # aiohttp registers a connection once it is made, after any TLS handshake: count the
        # handshakes in progress too (handlers without a transport yet)
        handshaking = sum(1 for handler in self._awaiting_head if handler.transport is None)
        return len(server.connections) + handshaking

    def _accept(self) -> asyncio.BaseProtocol:
        server = self._runner.server
        assert server is not None and self._loop is not None
        if self.open_connections() >= self.max_connections:
            self.counters["refused_connections"] += 1
            return _Refuse()
        handler = server()
        self._awaiting_head[handler] = self._loop.call_later(self.head_timeout, self._head_overdue, handler)
        return handler

    def request_started(self, handler: RequestHandler) -> None:
        self._head_done(handler)

    def _head_done(self, handler: RequestHandler) -> None:
        """``handler`` awaits no request head any more (one started, or the connection is gone)."""
        timer = self._awaiting_head.pop(handler, None)
        if timer is not None:
            timer.cancel()

    def _head_overdue(self, handler: RequestHandler) -> None:
        self._awaiting_head.pop(handler, None)
        transport = handler.transport
        if transport is not None and not transport.is_closing():
            self.counters["head_timeouts"] += 1
            log.debug("closing a connection that sent no complete request within %g s", self.head_timeout)
            transport.close()

    async def stop(self) -> None:
        for timer in self._awaiting_head.values():
            timer.cancel()
        self._awaiting_head.clear()
        await super().stop()
