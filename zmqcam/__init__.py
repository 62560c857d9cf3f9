"""zmqcam: a camera frame bus for rigs of cheap IP cameras.

Grab each camera once, stitch once, serve many: programs over ZeroMQ (``Subscriber``), people over
MJPEG/HTTP. See README.md.
"""

from zmqcam.bus.protocol import Frame
from zmqcam.client import Camera, Subscriber
from zmqcam.config import CameraConfig, Config, default_config, load_config
from zmqcam.errors import (
    CalibrationError,
    ConfigError,
    CorruptFrame,
    NotRunning,
    ProtocolError,
    PushError,
    RecordingError,
    SourceBusy,
    SourceEnded,
    SourceError,
    SourceTimeout,
    StartError,
    UsageError,
    VideoError,
    ZmqcamError,
)

__version__ = "0.1.0"

__all__ = [
    "CalibrationError",
    "Camera",
    "CameraConfig",
    "Config",
    "ConfigError",
    "CorruptFrame",
    "Frame",
    "NotRunning",
    "ProtocolError",
    "PushError",
    "RecordingError",
    "SourceBusy",
    "SourceEnded",
    "SourceError",
    "SourceTimeout",
    "StartError",
    "Subscriber",
    "UsageError",
    "VideoError",
    "ZmqcamError",
    "__version__",
    "default_config",
    "load_config",
]
