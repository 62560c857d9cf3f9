"""The thin shell every zmqcam child process shares: title, logging and stop signals."""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from types import FrameType

_PR_SET_PDEATHSIG = 1
LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s: %(message)s"


class Shutdown(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT so blocking calls unwind promptly."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    # one stop request is enough: Ctrl-C reaches the whole process group and the supervisor then
    # sends SIGTERM too, which must not interrupt the clean-up the first one started
    # (a Python no-op, not SIG_IGN: a signal already pending would then raise OSError)
    signal.signal(signal.SIGTERM, _ignore)
    signal.signal(signal.SIGINT, _ignore)
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
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGINT, _raise_shutdown)
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
