"""Seams: the bands where neighbouring slots meet, and feathering them.

Camera k's slot ends at the seam column where camera k+1's begins. Where their warped images overlap
(``camera[].overlap``: the columns camera k's warped image has past its crop plus camera k+1's crop
front), both cameras have pixels of the same belt, so the seam can be a band instead of a cut: across
``SeamBand`` columns [x0, x1) around the seam, the panorama is a weighted mean of both cameras' pixels,
camera k's weight falling linearly from 1 to 0 left to right.

The band is as wide as ``stitch.feather_px`` but no wider than the overlap, centred on the seam as far
as the margins on each side allow. Only the bands are blended: each camera's slot is remapped exactly
as with a cut, each band once more from each of its two cameras (a few thousand pixels), and the
blend is integer arithmetic with weights precomputed at start (``WEIGHT_BITS`` fixed point, in
uint16: 255 * 256 + rounding still fits), written over the band's columns of the panorama.

Pure numpy, no sockets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from zmqcam.config.models import CameraConfig, Slot

__all__ = ["DEFAULT_FEATHER_PX", "WEIGHT_BITS", "Feather", "SeamBand", "feather_weights", "seam_bands"]

#: the default ``stitch.feather_px``
DEFAULT_FEATHER_PX = 32
#: weights are fractions of 2 ** WEIGHT_BITS
WEIGHT_BITS = 8
_ONE = 1 << WEIGHT_BITS


@dataclass(frozen=True, slots=True)
class SeamBand:
    """The band of seam ``left`` (between cameras ``left`` and ``left + 1``): panorama columns [x0, x1),
    the right camera's slot starting at ``seam``."""

    left: int
    x0: int
    seam: int
    x1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def columns(self, camera: CameraConfig, right: bool) -> tuple[int, int]:
        """The columns [first, end) of ``camera``'s warped image that fall on the band: the left
        camera's past its crop back, the right camera's before its crop front."""
        front, back = camera.crop_range
        edge = front if right else back
        return edge - (self.seam - self.x0), edge + (self.x1 - self.seam)


def seam_bands(
    cameras: Sequence[CameraConfig], slots: Sequence[Slot], width_px: int, margins: bool = False
) -> list[SeamBand]:
    """The band of every seam that has an overlap: ``width_px`` wide at most, no wider than the
    overlap, centred on the seam as far as each side's margin allows. The overlap is camera k's
    ``overlap``; with ``margins`` and no overlap known anywhere in the rig (a hand-written config that
    asked for feathering), all the columns the warped images have beyond their crops. A seam without
    overlap (or with less than 2 columns) stays a cut and has no band."""
    known = any(c.overlap is not None for c in cameras)
    bands = []
    for k in range(len(cameras) - 1):
        cam, nxt = cameras[k], cameras[k + 1]
        right_margin = cam.geometry.width - cam.crop_range[1]  # camera k's columns past the seam
        left_margin = nxt.crop_range[0]  # camera k+1's columns before the seam
        overlap = right_margin + left_margin if margins and not known else (cam.overlap or 0)
        usable = min(width_px, overlap, right_margin + left_margin)
        before = min(usable // 2, left_margin)
        after = min(usable - before, right_margin)
        before = min(usable - after, left_margin)
        if before + after < 2:
            continue
        seam = slots[k].x1
        bands.append(SeamBand(k, seam - before, seam, seam + after))
    return bands


def feather_weights(width: int) -> np.ndarray:
    """The left camera's weights across a band ``width`` columns wide (the right camera's is
    ``2 ** WEIGHT_BITS`` minus it): linear from nearly 1 to nearly 0 at the column centres, uint16,
    shaped (1, width, 1) to broadcast over rows and channels."""
    centres = (np.arange(width, dtype=np.float64) + 0.5) / width
    weights = np.rint((1.0 - centres) * _ONE).astype(np.uint16)
    return weights.reshape(1, width, 1)


class Feather:
    """The buffers of one band: both cameras' pixels of it, and the fixed-point blend."""

    def __init__(self, band: SeamBand, height: int) -> None:
        self.band = band
        shape = (height, band.width, 3)
        #: the left and the right camera's pixels of the band (remapped into these each frame)
        self.left = np.zeros(shape, np.uint8)
        self.right = np.zeros(shape, np.uint8)
        self._weight_left = feather_weights(band.width)
        self._weight_right = (_ONE - self._weight_left).astype(np.uint16)
        self._acc = np.zeros(shape, np.uint16)
        self._tmp = np.zeros(shape, np.uint16)

    def blend(self, out: np.ndarray) -> np.ndarray:
        """Write the blend of ``left`` and ``right`` into ``out`` (the band's columns of the panorama)."""
        acc, tmp = self._acc, self._tmp
        np.multiply(self.left, self._weight_left, out=acc)
        np.multiply(self.right, self._weight_right, out=tmp)
        acc += tmp
        acc += _ONE // 2  # round to nearest
        acc >>= WEIGHT_BITS
        np.copyto(out, acc, casting="unsafe")
        return out
