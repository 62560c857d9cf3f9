"""Camera sources, one module per protocol, all behind ``zmqcam.sources.base.Source``."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from zmqcam.sources.base import Source, SourceFrame

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig, Config

__all__ = ["Source", "SourceFrame", "create_source", "rig_arguments"]

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


def rig_arguments(config: Config, camera: CameraConfig) -> dict[str, Any]:
    """Extra constructor arguments a camera's source needs from the whole rig's config (the
    synthetic camera draws its part of one scene, so it needs its slot's offset)."""
    if camera.source_kind == "synthetic":
        from zmqcam.sources.synthetic import scene_offsets

        return {"scene_offset": scene_offsets(config).get(camera.name, 0)}
    return {}
