"""Exceptions raised by zmqcam.

ZmqcamError
├── ConfigError          a config file is invalid; ``.lines`` holds one message per problem
├── CalibrationError     a board or a rig calibration cannot be made; one line that says what to do
├── ProtocolError        a bus message is malformed (callers count it and drop it)
└── SourceError          a camera misbehaved; the grabber reconnects with backoff
    ├── SourceTimeout    connect or read took longer than its timeout
    ├── SourceBusy       the camera accepted us but serves someone else (ESP32: one client)
    ├── SourceEnded      a file or recording with loop = false played to its end (not a loss)
    └── CorruptFrame     one frame was bad; skip it, keep the connection
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
