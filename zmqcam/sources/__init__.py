"""Camera sources, one module per protocol, all behind ``zmqcam.sources.base.Source``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zmqcam.sources.base import Source, SourceFrame

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig

__all__ = ["Source", "SourceFrame", "create_source"]

# kind -> "module:class"; imported lazily so a grabber loads only the protocol it speaks
_REGISTRY = {
    "synthetic": "zmqcam.sources.synthetic:SyntheticSource",
    "snapshot": "zmqcam.sources.snapshot:SnapshotSource",
    "mjpeg": "zmqcam.sources.mjpeg:MjpegSource",
    "rtsp": "zmqcam.sources.rtsp:RtspSource",
    "device": "zmqcam.sources.device:DeviceSource",
    "file": "zmqcam.sources.file:FileSource",
    "replay": "zmqcam.sources.replay:ReplaySource",
}


def create_source(camera: CameraConfig, **kwargs: Any) -> Source:
    """The source for a camera, chosen by its explicit ``kind`` or inferred from ``source``."""
    module_name, _, class_name = _REGISTRY[camera.source_kind].partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    source: Source = cls(camera, **kwargs)
    return source
