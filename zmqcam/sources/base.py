"""The interface every camera source implements.

A source is driven by one thread of the grabber (``zmqcam.grabber``): ``open`` then ``read``
repeatedly, then ``close``. Reconnecting, backoff, pacing (``fps`` cap) and counting live in the
grabber, so a source only speaks its protocol. ``close`` may be called from another thread to abort
a blocking ``read`` at shutdown; it must be idempotent and must really release the camera (close the
TCP socket), because an ESP32-CAM serves a single client.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig


@dataclass(slots=True)
class SourceFrame:
    """One frame as a source delivers it: JPEG bytes (forwarded untouched) or BGR pixels."""

    data: bytes | np.ndarray
    is_jpeg: bool
    capture_ns: int
    width: int = 0  # 0 when unknown (a JPEG not yet decoded)
    height: int = 0

    @classmethod
    def jpeg(cls, data: bytes, capture_ns: int | None = None) -> SourceFrame:
        return cls(data, True, capture_ns if capture_ns is not None else time.time_ns())

    @classmethod
    def raw(cls, image: np.ndarray, capture_ns: int | None = None) -> SourceFrame:
        h, w = image.shape[:2]
        return cls(image, False, capture_ns if capture_ns is not None else time.time_ns(), w, h)


class Source(ABC):
    """A camera connection. Raise ``zmqcam.errors.SourceError`` subclasses on failure."""

    #: the ``kind`` a camera config names to select this source
    kind: ClassVar[str]
    #: True when the source paces itself (e.g. a synthetic camera or a file at its frame rate);
    #: False when it delivers frames as fast as the camera sends them.
    self_paced: ClassVar[bool] = False
    #: True when each read asks the camera for a frame (HTTP snapshots): the grabber then waits
    #: for the fps cap before reading instead of dropping frames that arrive early.
    polled: ClassVar[bool] = False
    #: True when a read returns within the read timeout (a self-paced source: plus one frame
    #: interval), so that a read lasting far longer is stuck and the grabber reports it to the
    #: watchdog. False for a source that may wait longer on purpose (a replay waits out recorded gaps).
    read_bounded: ClassVar[bool] = True

    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera

    @abstractmethod
    def open(self, timeout: float) -> None:
        """Connect to the camera. Raise SourceTimeout, SourceBusy or SourceError."""

    @abstractmethod
    def read(self, timeout: float) -> SourceFrame:
        """Return the next frame. Raise SourceTimeout, CorruptFrame, SourceEnded or SourceError."""

    @abstractmethod
    def close(self) -> None:
        """Release the camera. Idempotent; safe to call from another thread."""

    def describe(self) -> str:
        """A short, credential-free description for logs."""
        return self.kind
