"""The stitcher: one process, camera frames in, one panorama out (``zmqcam.stitcher.stitcher``)."""

from zmqcam.stitcher.stitcher import Stitcher, run_stitcher

__all__ = ["Stitcher", "run_stitcher"]
