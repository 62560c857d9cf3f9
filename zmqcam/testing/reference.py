"""Reference implementations the tests and benchmarks measure zmqcam against; not used by zmqcam.

``original_pipeline`` is the original system's stitcher (rotate, ``warpPerspective`` with a matrix
per frame, crop, ``hconcat``): ``zmqcam.image.remap.PanoramaComposer`` must match it within a small,
tested tolerance (README, "How it works"), and ``scripts/bench.py`` times both.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from zmqcam.config import CameraConfig
from zmqcam.image.remap import CV2_ROTATE

__all__ = ["original_pipeline"]


def original_pipeline(frames: Sequence[np.ndarray], cameras: Sequence[CameraConfig]) -> np.ndarray:
    """The original stitcher, verbatim: the reference ``PanoramaComposer`` is tested against.

    Rotate, warpPerspective with a per-frame matrix, crop, hconcat. Frames must be present and of the
    configured sizes (the original knew nothing else).
    """
    slices = []
    for frame, cam in zip(frames, cameras, strict=True):
        img = frame
        if cam.rotate:
            img = cv2.rotate(img, CV2_ROTATE[cam.rotate])
        geo = cam.geometry
        m = cv2.getPerspectiveTransform(
            np.asarray(geo.src, dtype=np.float32),
            np.asarray([(0, 0), (0, geo.height), (geo.width, geo.height), (geo.width, 0)], dtype=np.float32),
        )
        dst = cv2.warpPerspective(img, m, (geo.width, geo.height))
        front, back = cam.crop_range
        slices.append(dst[:, front:back])
    return cv2.hconcat(slices)
