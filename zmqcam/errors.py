"""Exceptions raised by zmqcam: the whole tree, so that a caller can tell a user's mistake from a bug.

ZmqcamError
├── ConfigError          a config file is invalid; ``.lines`` holds one message per problem
├── CalibrationError     a board or a rig calibration cannot be made; one line that says what to do
├── ProtocolError        a bus message is malformed (callers count it and drop it)
├── VideoError           an H.264 piece got something it cannot use (a frame, an access unit, a URL)
│   └── PushError        a push to a media server failed (refused, lost); the target reconnects with backoff
├── SourceError          a camera misbehaved; the grabber reconnects with backoff
│   ├── SourceTimeout    connect or read took longer than its timeout
│   ├── SourceBusy       the camera accepted us but serves someone else (ESP32: one client)
│   ├── SourceEnded      a file or recording with loop = false played to its end (not a loss)
│   └── CorruptFrame     one frame was bad; skip it, keep the connection
├── StartError           something the user can fix keeps the daemon (or one of its processes) from starting
├── RecordingError       a recording is missing or unreadable
└── UsageError           a command-line mistake: one line on stderr, exit 1
    └── NotRunning       the command needs a running daemon and there is none: exit 3

Every one of them is a user's mistake or a camera's, never a bug: the CLI prints them as one line
(``zmqcam.cli.main.dispatch``), a child process logs them as one line and reports them to the
supervisor (``zmqcam.process``), and nobody sees a traceback for them.
"""

from __future__ import annotations


class ZmqcamError(Exception):
    """Base class of every error zmqcam raises on purpose."""


class ConfigError(ZmqcamError):
    """An invalid configuration. ``lines`` holds one human-readable line per problem."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class CalibrationError(ZmqcamError):
    """A board spec is invalid, or a rig cannot be calibrated from the frames given (a camera sees too
    little of the board, neighbours do not overlap, the estimates disagree). The message is one line
    that says what to change."""


class VideoError(ZmqcamError):
    """An H.264 piece was given something it cannot use (bad frame, bad access unit, bad URL)."""


class PushError(VideoError):
    """A push connection failed (refused, lost, timed out); reconnect with backoff."""


class ProtocolError(ZmqcamError):
    """A malformed bus message."""


class SourceError(ZmqcamError):
    """A camera source failed; the connection is considered lost."""


class SourceTimeout(SourceError):
    """Connecting to, or reading from, a camera timed out."""


class SourceBusy(SourceError):
    """The camera accepted the connection but serves another client."""


class SourceEnded(SourceError):
    """A file or recording with ``loop = false`` played to its end. Not a lost camera: the grabber
    reports the camera "ended" instead of reconnecting (which would replay it after a backoff)."""


class CorruptFrame(SourceError):
    """One frame was unusable (bad JPEG, wrong length); the connection stays up."""


class StartError(ZmqcamError):
    """A problem the user can fix that prevents the daemon, or one of its processes, from starting
    (a port in use, a run_dir owned by someone else, a key file that vanished); one line."""


class RecordingError(ZmqcamError):
    """A recording is missing or unreadable."""


class UsageError(ZmqcamError):
    """A command-line mistake; the command prints it as one line and exits 1."""


class NotRunning(UsageError):
    """The command needs a running daemon and none holds the run_dir; exit 3 (LSB "not running")."""
