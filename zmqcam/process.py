"""The one shell every zmqcam child process runs in: the grabbers, the stitcher, the bridge and the
publish targets.

``run_child`` does, in this order, what each child needs around its work:

1. names the process (``ps`` shows ``zmqcam:grabber:cam0``), logs to stderr, handles SIGTERM/SIGINT
   (see "Stopping" below) and asks Linux to stop it when the supervisor dies (pdeathsig);
2. makes the child's ZeroMQ context (sockets belong to the process that uses them) and, for a
   child that publishes, starts the CURVE authenticator before any socket binds;
3. builds the worker, a class a test can also run in-process, and runs it until it is asked to
   stop, handing it the heartbeat its main loop sends (see below);
4. closes the worker, stops the authenticator and terminates the context.

A start-up failure the user can cause (a key file that vanished after the config loaded, a port
taken meanwhile, a TLS file that became unreadable) is a ``StartError`` or ``ConfigError``, or a
ZeroMQ/OS error while the worker is built: it becomes one line, without a traceback, reported to
the supervisor over the child's ``Link`` (the supervisor logs it and shows it as the child's
``error`` in ``zmqcam-daemon status``), and the child exits with ``EXIT_START_FAILED``. A bug still
crashes with its traceback, and the supervisor restarts the child either way.

The ``Link`` is the child's one line to its supervisor, a one-way pipe: it carries "started" (the
worker is built), the start-up error, and the child's heartbeat, with what a child that has no
status topic of its own reports about its work (``REPORT``). The ``Heartbeat`` is sent from the
worker's own main loop (the grabber's and the stitcher's poll loops, the bridge's event loop), never
from a side thread, so that it proves the loop makes progress: a loop that is stuck stops beating.
About once a second it says "alive", or "unhealthy" with a reason when the loop runs but the
worker's own check finds its work stuck (a camera read far beyond its timeout, a stitcher with
frames but no panorama). The supervisor's watchdog (``daemon.watchdog``) restarts a child whose
heartbeat stops or stays unhealthy. The child's end of the pipe is non-blocking: a supervisor that
stopped reading (hung or stopped itself) costs a child a dropped beat, never a stuck loop.

Stopping: while the child starts, SIGTERM/SIGINT raise ``Shutdown`` so that start-up unwinds at once.
Once the worker's loop runs, they only set ``stop_requested`` and make ``stop_fd`` readable (the
loops poll it), and the loop ends by itself: an exception raised wherever the main thread is can land
inside a C-level destructor (pyzmq freeing a message, for every frame), where Python cannot
propagate it; it printed a traceback and the child ran on until the supervisor killed it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any, Protocol

import zmq

from zmqcam.bus import curve
from zmqcam.config import Config
from zmqcam.errors import ConfigError, StartError
from zmqcam.names import process_title

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s: %(message)s"
#: a child's exit status when it could not start for a reason it reported (sysexits' EX_CONFIG)
EXIT_START_FAILED = 78


class Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT while the child starts, so start-up unwinds at once."""


class Worker(Protocol):
    """What a child process runs: built by ``run_child``'s ``start``, run until asked to stop."""

    def run(self, heartbeat: Heartbeat | None = None) -> None:
        """Work until ``stop_requested()`` (poll ``stop_fd()`` to notice at once), calling
        ``heartbeat.beat`` from the main loop (see the module docstring); None: no supervisor listens."""

    def close(self) -> None:
        """Release everything the worker holds (sockets, threads). Idempotent."""

    def can_term(self) -> bool:
        """Whether every socket of the context is closed, so that terminating it cannot block."""


#: a message on a Link is a small JSON object; anything longer is not one of ours
MAX_LINK_MESSAGE = 4096
#: a worker beats at most this often (its loop wakes at least this often anyway, for its status);
#: ``daemon.watchdog`` is at least three beats (``zmqcam.config.models.MIN_WATCHDOG``)
HEARTBEAT_INTERVAL = 1.0
#: the keys of a heartbeat on a Link
ALIVE = "alive"
UNHEALTHY = "unhealthy"
#: what a child that publishes no status of its own on the bus (a publish target: it only
#: subscribes) tells about its work, a small JSON object sent with its heartbeat; the supervisor
#: puts it into its process table (``daemon.json``), where ``zmqcam-daemon status`` and the bridge's
#: ``/status`` read it. Dropped from a heartbeat that would not fit in ``MAX_LINK_MESSAGE``
REPORT = "report"


class Link:
    """The child's end of its line to the supervisor (None when it runs without one, as in tests).
    Messages are small JSON objects, sent as bytes (never pickled); the supervisor reads them with
    ``read_link``."""

    def __init__(self, conn: Connection | None) -> None:
        self._conn = conn
        if conn is not None:
            # a message this small is written whole or not at all (POSIX: up to PIPE_BUF bytes), so
            # a full pipe (a supervisor that stopped reading) drops it instead of blocking the loop
            os.set_blocking(conn.fileno(), False)

    def _send(self, message: dict[str, Any]) -> bool:
        if self._conn is None:
            return False
        data = json.dumps(message).encode()
        if len(data) > MAX_LINK_MESSAGE and REPORT in message:
            # a cut message is no message at all: the heartbeat matters more than the report
            data = json.dumps({k: v for k, v in message.items() if k != REPORT}).encode()
        try:
            self._conn.send_bytes(data[:MAX_LINK_MESSAGE])
        except OSError:  # the supervisor is gone (pdeathsig stops this process anyway) or not reading
            return False
        return True

    def started(self) -> bool:
        """Tell the supervisor the worker is built: a start-up error it showed is over."""
        return self._send({"started": True})

    def start_failed(self, reason: str) -> bool:
        """Tell the supervisor why this child cannot start; False when nobody listens."""
        return self._send({"error": reason[: MAX_LINK_MESSAGE // 2]})

    def alive(self, report: dict[str, Any] | None = None) -> bool:
        """One heartbeat: the worker's loop runs and its work goes on. ``report``: see ``REPORT``."""
        return self._send({ALIVE: True} | ({REPORT: report} if report is not None else {}))

    def unhealthy(self, reason: str, report: dict[str, Any] | None = None) -> bool:
        """One heartbeat of a loop that runs while its work is stuck; the supervisor counts it as
        no heartbeat at all and, once that has lasted ``daemon.watchdog``, logs ``reason``."""
        message = {UNHEALTHY: reason[: MAX_LINK_MESSAGE // 4]}
        return self._send(message | ({REPORT: report} if report is not None else {}))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Heartbeat:
    """A worker's heartbeat, called from its main loop as often as the loop likes: at most once per
    ``interval`` it asks ``health`` (None: healthy, else why not) and sends the answer over the
    Link. Costs one clock comparison per call in between; without a Link (a test) it does nothing."""

    def __init__(self, link: Link | None = None, interval: float = HEARTBEAT_INTERVAL) -> None:
        self._link = link
        self._interval = interval
        self._next = 0.0

    def beat(
        self,
        now: float,
        health: Callable[[float], str | None] | None = None,
        report: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        if now < self._next or self._link is None:
            return
        # a loop woken by a timer of exactly the interval (its status, the bridge's pulse) may run a
        # hair early: such a wake-up still beats
        self._next = now + self._interval * 0.95
        problem = health(now) if health is not None else None
        told = report() if report is not None else None
        if problem is None:
            self._link.alive(told)
        else:
            self._link.unhealthy(problem, told)


def read_link(conn: Connection) -> Iterator[dict[str, Any]]:
    """The messages waiting on the supervisor's end of a Link, without blocking. EOFError once the
    child closed its end (it exited); a message that is not a JSON object is skipped."""
    while conn.poll():
        try:
            message = json.loads(conn.recv_bytes(MAX_LINK_MESSAGE))
        except (ValueError, OSError):  # OSError: longer than any message of ours
            continue
        if isinstance(message, dict):
            yield message


#: what a user can cause while a child starts (see the module docstring); anything else is a bug
_START_PROBLEMS = (StartError, ConfigError, zmq.ZMQError, OSError)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return "; ".join(exc.lines)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def run_child(
    name: str,
    config: Config,
    start: Callable[[Any], Worker],
    *,
    context: Callable[[], Any] | None = zmq.Context,
    publishes: bool = False,
    link: Connection | None = None,
) -> None:
    """Run one child process: ``start(ctx)`` builds its worker on a fresh ZeroMQ context (``context``,
    e.g. ``zmq.asyncio.Context`` for the bridge), which ``run`` then runs until SIGTERM/SIGINT. With
    ``publishes``, the CURVE authenticator runs first. See the module docstring for failures."""
    global _looping
    setup_child(process_title(name), config.daemon.log_level)
    reporter = Link(link)
    ctx = context() if context is not None else None
    auth = None
    worker: Worker | None = None
    failed: str | None = None
    try:
        try:
            if publishes and ctx is not None:
                # before the publisher binds: with CURVE, only authorized keys may subscribe over tcp
                auth = curve.start_authenticator(ctx, curve.server_keys(config))
            worker = start(ctx)
        except _START_PROBLEMS as exc:
            failed = _reason(exc)
        else:
            reporter.started()
            _looping = True
            try:
                if not stop_requested():  # asked to stop while it started
                    worker.run(Heartbeat(reporter if link is not None else None))
            except (StartError, ConfigError) as exc:  # a worker that binds as it runs (the bridge)
                failed = _reason(exc)
    except Shutdown:
        pass
    finally:
        if worker is not None:
            worker.close()
        curve.stop_authenticator(auth)
        if ctx is not None:
            if worker is None:
                ctx.destroy(linger=0)  # a half-built worker may have left sockets open
            elif worker.can_term():
                # else a thread stuck in a camera read still holds its socket: exit without term()
                ctx.term()
    if failed is not None:
        if not reporter.start_failed(failed):
            log.error("cannot start: %s", failed)
        reporter.close()
        sys.exit(EXIT_START_FAILED)
    reporter.close()


#: set by the first SIGTERM/SIGINT; see ``stop_requested``
_stop = threading.Event()
#: a pipe whose read end becomes readable on that signal, for the workers' pollers (``stop_fd``)
_wake: tuple[int, int] | None = None
#: whether the worker's own loop runs (``run_child`` sets it); before, a stop signal raises Shutdown
_looping = False


def stop_requested() -> bool:
    """Whether this child was asked to stop (SIGTERM/SIGINT). The workers' loops check it on every
    pass and register ``stop_fd`` in their pollers, so they end at once and by themselves."""
    return _stop.is_set()


def stop_fd() -> int | None:
    """A file descriptor that becomes readable when the child is asked to stop (None outside a child
    process set up by ``setup_child``), for a worker's poller."""
    return None if _wake is None else _wake[0]


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    # one stop request is enough: Ctrl-C reaches the whole process group and the supervisor then
    # sends SIGTERM too, which must not interrupt the clean-up the first one started
    # (a Python no-op, not SIG_IGN: a signal already pending would then raise OSError)
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
    _stop.set()
    if _wake is not None:
        with contextlib.suppress(OSError):
            os.write(_wake[1], b"\0")
    if not _looping:
        # still starting (imports, tables, binding): unwind at once. Once the worker's loop runs, it
        # stops by itself instead: an exception raised wherever the main thread is can land inside a
        # C-level destructor (pyzmq freeing a message), where Python cannot propagate it and prints
        # "Exception ignored ... Shutdown" with a traceback while the child runs on
        raise Shutdown(signal.Signals(signum).name)


def _ignore(signum: int, frame: FrameType | None) -> None:
    pass


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies, so a SIGKILLed supervisor leaves
    no orphan holding cameras and sockets. A no-op where prctl is unavailable."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def setup_child(title: str, log_level: str) -> None:
    """Name the process (``ps`` shows ``zmqcam:grabber:cam0``), log to stderr, stop on signals."""
    name_process(title)
    setup_logging(log_level)
    global _wake
    if _wake is None:
        _wake = os.pipe()
        for fd in _wake:
            os.set_blocking(fd, False)
    signal.signal(signal.SIGTERM, _on_stop_signal)
    signal.signal(signal.SIGINT, _on_stop_signal)
    # the supervisor reloads on SIGHUP; a child that receives it (same process group) ignores it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    die_with_parent()


def name_process(title: str) -> None:
    """The title ``ps``/``top`` show and the name log lines carry."""
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except ImportError:  # pragma: no cover - setproctitle is a dependency; titles are cosmetic
        pass
    multiprocessing.current_process().name = title


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, format=LOG_FORMAT, level=level.upper(), force=True)
