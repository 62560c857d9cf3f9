"""Exposure: per camera and channel gains that make neighbouring cameras agree where they overlap.

ESP32 cameras each run their own auto exposure and white balance, so the same belt comes out a little
brighter or bluer in one camera than in its neighbour, a step at every seam. Each panorama, the mean
colour of each seam's overlap as each of its two cameras sees it (before any gain) is measured; the
gains are the least-squares solution that makes neighbours agree, with a prior pulling every gain to 1
(OpenCV's ``detail::GainCompensator``, per channel): without the prior, any common factor of all the
gains would fit equally well.

For each channel, with ``m[k]`` the left camera's and ``n[k]`` the right camera's mean in seam k
(between cameras k and k+1), minimise::

    sum_k ((g[k] * m[k] - g[k+1] * n[k]) / SIGMA_LEVELS) ** 2  +  sum_i ((g[i] - 1) / SIGMA_GAIN) ** 2

Solved gains are a target, never applied at once: the applied gains follow it by a first-order low
pass of ``TIME_CONSTANT`` seconds (a light change is followed within seconds, and a step is followed
monotonically: measurements are taken before any gain, so the gains never feed back into what they are
computed from, and nothing can oscillate). A camera's lookup table is rebuilt only when one of its
gains has moved by ``LUT_STEP`` since the last build, so measurement noise never shows as flicker and
the per-frame cost stays one ``cv2.LUT`` per slot.

Pure numpy/OpenCV, no sockets; the time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = ["GAIN_RANGE", "LUT_STEP", "SIGMA_GAIN", "SIGMA_LEVELS", "TIME_CONSTANT", "GainCompensator", "solve_gains"]

#: a mismatch of this many grey levels between neighbours weighs as much as ...
SIGMA_LEVELS = 2.0
#: ... a gain this far from 1 (the prior): neighbours end up agreeing within a level or two
SIGMA_GAIN = 0.1
#: seconds for the applied gains to cover 63 % of the way to a new target (95 % in three)
TIME_CONSTANT = 0.7
#: no gain goes beyond this: a camera looking at black or at a blown-out overlap must not explode
GAIN_RANGE = (0.5, 2.0)
#: a lookup table is rebuilt when a gain has moved this much (half a level at mid grey)
LUT_STEP = 1 / 256
#: a step in time longer than this (a pause, nobody watching) counts as this long
_MAX_STEP = 1.0


def solve_gains(count: int, seams: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Gains (``count`` x 3, B G R) from ``seams``: (k, left camera's mean, right camera's mean) for the
    seam between cameras k and k+1, means per channel in grey levels. Cameras no seam reaches get 1."""
    alpha = 1.0 / SIGMA_LEVELS**2
    beta = 1.0 / SIGMA_GAIN**2
    gains = np.ones((count, 3))
    for c in range(3):
        a = np.eye(count) * beta
        b = np.full(count, beta)
        for k, left, right in seams:
            m, n = float(left[c]), float(right[c])
            # d/dg of (g_k m - g_{k+1} n)^2: the normal equations of the pair term
            a[k, k] += alpha * m * m
            a[k + 1, k + 1] += alpha * n * n
            a[k, k + 1] -= alpha * m * n
            a[k + 1, k] -= alpha * m * n
        gains[:, c] = np.linalg.solve(a, b)
    return np.clip(gains, *GAIN_RANGE)


class GainCompensator:
    """The gains of ``count`` cameras (left to right), smoothed over time, and their lookup tables."""

    def __init__(self, count: int, time_constant: float = TIME_CONSTANT) -> None:
        self.count = count
        self.time_constant = time_constant
        #: applied gains, ``count`` x 3 (B, G, R)
        self.gains = np.ones((count, 3))
        #: the newest overlap means per seam k: (left camera's, right camera's), kept while a camera
        #: of the seam is missing, so that the others' gains hold rather than drift to 1
        self._means: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._updated: float | None = None
        self._lut_gains = np.ones((count, 3))
        self._luts: list[np.ndarray | None] = [None] * count

    def observe(self, seam: int, left: Sequence[float], right: Sequence[float]) -> None:
        """The overlap of seam ``seam`` (between cameras seam and seam+1) as each camera sees it:
        per channel means in grey levels, before any gain."""
        self._means[seam] = (np.asarray(left, np.float64)[:3], np.asarray(right, np.float64)[:3])

    def update(self, now: float) -> None:
        """Move the applied gains toward the solution for the latest means (``now``: seconds, any
        monotonic clock)."""
        if not self._means:
            return
        target = solve_gains(self.count, [(k, m, n) for k, (m, n) in sorted(self._means.items())])
        # the very first solution is applied at once: there is no earlier picture to be smooth with
        share = 1.0
        if self._updated is not None:
            dt = min(max(now - self._updated, 0.0), _MAX_STEP)
            share = 1.0 - math.exp(-dt / self.time_constant)
        self._updated = now
        self.gains += share * (target - self.gains)
        for i in range(self.count):
            if np.abs(self.gains[i] - self._lut_gains[i]).max() >= LUT_STEP:
                self._build_lut(i)

    def _build_lut(self, index: int) -> None:
        gains = self.gains[index].copy()
        self._lut_gains[index] = gains
        levels = np.arange(256, dtype=np.float64)[:, None] * gains[None, :]
        self._luts[index] = np.clip(levels + 0.5, 0, 255).astype(np.uint8).reshape(256, 1, 3)

    def apply(self, index: int, image: np.ndarray) -> None:
        """Camera ``index``'s gains applied to ``image`` (BGR uint8, any view) in place."""
        lut = self._luts[index]
        if lut is not None:
            cv2.LUT(image, lut, dst=image)

    def status(self) -> list[list[float]]:
        """The applied gains per camera, [B, G, R], rounded for display."""
        return [[round(float(g), 3) for g in row] for row in self.gains]
