"""Comparing pictures: how close (PSNR) and how far displaced (phase correlation)."""

from __future__ import annotations

import math

import cv2
import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of ``b`` against ``a`` (8-bit images of one shape), dB."""
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * math.log10(255.0**2 / max(mse, 1e-12))


def shift_px(reference: np.ndarray, moved: np.ndarray) -> float:
    """How far ``moved`` is displaced from ``reference`` (sub-pixel phase correlation, windowed)."""
    a = cv2.cvtColor(reference, cv2.COLOR_BGR2GRAY).astype(np.float32)
    b = cv2.cvtColor(moved, cv2.COLOR_BGR2GRAY).astype(np.float32)
    window = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    return math.hypot(dx, dy)
