"""The thin shell every zmqcam child process shares: title, logging and stop signals."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(processName)s: %(message)s"


class Shutdown(BaseException):  # noqa: N818 - a control-flow signal, like SystemExit
    """Raised in the main thread by SIGTERM/SIGINT so blocking calls unwind promptly."""


def _raise_shutdown(signum: int, frame: FrameType | None) -> None:
    raise Shutdown(signal.Signals(signum).name)


def setup_child(title: str, log_level: str) -> None:
    """Name the process (``ps`` shows ``zmqcam:grabber:cam0``), log to stderr, stop on signals."""
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except ImportError:  # pragma: no cover - setproctitle is a dependency; titles are cosmetic
        pass
    import multiprocessing

    multiprocessing.current_process().name = title
    setup_logging(log_level)
    signal.signal(signal.SIGTERM, _raise_shutdown)
    signal.signal(signal.SIGINT, _raise_shutdown)
    # the supervisor reloads on SIGHUP; a child that receives it (same process group) ignores it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, format=LOG_FORMAT, level=level.upper(), force=True)
