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

Solved gains (solved again at most every ``SOLVE_INTERVAL``) are a target, never applied at once:
the applied gains follow it by a first-order low pass of ``TIME_CONSTANT`` seconds (a light change
is followed within seconds, and a step is followed monotonically: measurements are taken before any
gain, so the gains never feed back into what they are computed from, and nothing can oscillate). A
camera's scale is changed only when one of its gains has moved by ``GAIN_STEP`` since, so
measurement noise never shows as flicker. The per-frame cost is one ``cv2.transform`` per slot with
a diagonal 3x3 matrix: OpenCV's SIMD per-channel scale, about twice as fast as a 3-channel
``cv2.LUT`` over the same pixels (0.5 against 0.9 ms for the original geometry's panorama on one
AVX-512 core), rounding to the nearest level as the table would.

Pure numpy/OpenCV, no sockets; the time is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "GAIN_RANGE",
    "GAIN_STEP",
    "SIGMA_GAIN",
    "SIGMA_LEVELS",
    "SOLVE_INTERVAL",
    "TIME_CONSTANT",
    "GainCompensator",
    "solve_gains",
]

#: a mismatch of this many grey levels between neighbours weighs as much as ...
SIGMA_LEVELS = 2.0
#: ... a gain this far from 1 (the prior): neighbours end up agreeing within a level or two
SIGMA_GAIN = 0.1
#: seconds for the applied gains to cover 63 % of the way to a new target (95 % in three)
TIME_CONSTANT = 0.7
#: no gain goes beyond this: a camera looking at black or at a blown-out overlap must not explode
GAIN_RANGE = (0.5, 2.0)
#: a camera's applied scale changes when a gain has moved this much (half a level at mid grey)
GAIN_STEP = 1 / 256
#: the gains' target is solved again at most this often (seconds): the smoothing above is what
#: follows a change, and solving every panorama cost as much as applying the gains
SOLVE_INTERVAL = 0.1
#: a step in time longer than this (a pause, nobody watching) counts as this long
_MAX_STEP = 1.0


def solve_gains(count: int, seams: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Gains (``count`` x 3, B G R) from ``seams``: (k, left camera's mean, right camera's mean) for the
    seam between cameras k and k+1, means per channel in grey levels. Cameras no seam reaches get 1."""
    alpha = 1.0 / SIGMA_LEVELS**2
    beta = 1.0 / SIGMA_GAIN**2
    # the normal equations, one system per channel (solved together: this runs every panorama)
    a = np.broadcast_to(np.eye(count) * beta, (3, count, count)).copy()
    b = np.full((3, count, 1), beta)
    for k, left, right in seams:
        m = np.asarray(left, np.float64)[:3]
        n = np.asarray(right, np.float64)[:3]
        # d/dg of (g_k m - g_{k+1} n)^2: the pair term's share of the normal equations
        a[:, k, k] += alpha * m * m
        a[:, k + 1, k + 1] += alpha * n * n
        a[:, k, k + 1] -= alpha * m * n
        a[:, k + 1, k] -= alpha * m * n
    gains = np.linalg.solve(a, b)[:, :, 0].T
    return np.clip(gains, *GAIN_RANGE)


class GainCompensator:
    """The gains of ``count`` cameras (left to right), smoothed over time, and the scales applied."""

    def __init__(self, count: int, time_constant: float = TIME_CONSTANT) -> None:
        self.count = count
        self.time_constant = time_constant
        #: applied gains, ``count`` x 3 (B, G, R)
        self.gains = np.ones((count, 3))
        #: the newest overlap means per seam k: (left camera's, right camera's), kept while a camera
        #: of the seam is missing, so that the others' gains hold rather than drift to 1
        self._means: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._updated: float | None = None
        self._target: np.ndarray | None = None
        self._solved_at = 0.0
        #: per camera, the diagonal matrix ``apply`` scales with (None: gains of 1, nothing to do)
        self._scaled_gains = np.ones((count, 3))
        self._scales: list[np.ndarray | None] = [None] * count

    def observe(self, seam: int, left: Sequence[float], right: Sequence[float]) -> None:
        """The overlap of seam ``seam`` (between cameras seam and seam+1) as each camera sees it:
        per channel means in grey levels, before any gain."""
        self._means[seam] = (np.asarray(left, np.float64)[:3], np.asarray(right, np.float64)[:3])

    def update(self, now: float) -> None:
        """Move the applied gains toward the solution for the latest means (``now``: seconds, any
        monotonic clock)."""
        if not self._means:
            return
        if self._target is None or not 0 <= now - self._solved_at < SOLVE_INTERVAL:
            self._target = solve_gains(self.count, [(k, m, n) for k, (m, n) in sorted(self._means.items())])
            self._solved_at = now
        target = self._target
        # the very first solution is applied at once: there is no earlier picture to be smooth with
        share = 1.0
        if self._updated is not None:
            dt = min(max(now - self._updated, 0.0), _MAX_STEP)
            share = 1.0 - math.exp(-dt / self.time_constant)
        self._updated = now
        self.gains += share * (target - self.gains)
        for i in range(self.count):
            if np.abs(self.gains[i] - self._scaled_gains[i]).max() >= GAIN_STEP:
                self._scaled_gains[i] = self.gains[i]
                self._scales[i] = np.diag(self.gains[i]).astype(np.float32)

    def apply(self, index: int, image: np.ndarray) -> None:
        """Camera ``index``'s gains applied to ``image`` (BGR uint8, any view) in place."""
        scale = self._scales[index]
        if scale is not None:
            # saturating, rounded to the nearest level, in place (OpenCV writes into the view)
            cv2.transform(image, scale, dst=image)

    def status(self) -> list[list[float]]:
        """The applied gains per camera, [B, G, R], rounded for display."""
        return [[round(float(g), 3) for g in row] for row in self.gains]
