"""The test scene's rig as a config: each camera's true geometry (from the scene's known homographies,
through the same panorama frame ``calibrate --auto`` chooses), with the overlaps a calibration writes.
Seams, gains and synchronized capture are tested on it without running a calibration first."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from zmqcam.calibration.frame import choose_frame
from zmqcam.config import default_config_dict
from zmqcam.testing.scene import Scene, SceneCamera

__all__ = ["neutral", "scene_camera_tables", "scene_config_dict"]


def scene_camera_tables(cameras: Sequence[SceneCamera]) -> list[dict[str, Any]]:
    """One ``[[camera]]`` table per scene camera (left to right): name, size, rotate, perspective, crop
    and overlap of its true geometry; sources are left to the caller."""
    frame = choose_frame(
        [c.name for c in cameras], [c.size for c in cameras], [np.linalg.inv(c.homography) for c in cameras]
    )
    tables = []
    for geo in frame.cameras:
        size = next(c.size for c in cameras if c.name == geo.name)
        table: dict[str, Any] = {
            "name": geo.name,
            "size": list(size),
            "rotate": geo.rotate,
            "perspective": {"src": [list(p) for p in geo.src], "width": geo.width, "height": geo.height},
            "crop": {"front": geo.front, "back": geo.back},
        }
        if geo.overlap is not None:
            table["overlap"] = geo.overlap
        tables.append(table)
    return tables


def scene_config_dict(cameras: Sequence[SceneCamera], run_dir: str | None = None) -> dict[str, Any]:
    """A whole config (synthetic sources) with the scene cameras' true geometry."""
    data = default_config_dict(run_dir)
    data["camera"] = scene_camera_tables(cameras)
    return data


def neutral(scene: Scene) -> Scene:
    """The same scene seen by cameras with gain 1 and no colour cast: what the belt really looks like
    in each camera, the reference each camera's gain is measured against."""
    return replace(scene, cameras=[replace(c, gain=1.0, cast=(1.0, 1.0, 1.0)) for c in scene.cameras])
