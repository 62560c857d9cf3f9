"""Finding the board's corners in a camera's frames.

Per frame: the ArUco markers of the board's dictionary are found once (``cv2.aruco.ArucoDetector``),
grouped by sheet (sheet k holds ids ``k * markers ..``, see ``zmqcam.calibration.board``), and each
sheet's chessboard corners are interpolated from its markers and refined to a fraction of a pixel
(``cv2.aruco.CharucoDetector.detectBoard``, which runs ``cornerSubPix`` on the image).

Several frames of the same still scene: each corner's position is averaged over the frames that found
it (after dropping positions more than ``_OUTLIER_PX`` from the corner's median), which averages the
sensor noise and JPEG ringing down; a corner found in fewer than half of the frames (a flicker at the
edge of the view) is dropped. Averaging beats keeping the sharpest frame here: the board lies still,
so every frame is equally sharp and only the noise differs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from zmqcam.calibration.board import BoardSpec
from zmqcam.errors import CalibrationError

__all__ = ["CameraDetection", "SheetView", "detect_camera"]

#: a corner's position in one frame further than this from its median over the frames is dropped
_OUTLIER_PX = 1.0


@dataclass(frozen=True)
class SheetView:
    """One sheet's corners as one camera sees them (positions averaged over the frames)."""

    sheet: int
    #: (n,) the chessboard corner ids (``BoardSpec.corner_mm`` rows)
    ids: np.ndarray
    #: (n, 2) float64: where each corner is in the camera's unrotated frame, pixels
    image_px: np.ndarray
    #: (n, 2) float64: where each corner is on the board, mm
    board_mm: np.ndarray
    #: markers of this sheet found (the most in any one frame)
    markers: int


@dataclass(frozen=True)
class CameraDetection:
    """What one camera saw of the boards in one set of frames of a still scene."""

    camera: str
    #: (width, height) of the frames (unrotated)
    frame_size: tuple[int, int]
    #: how many frames were looked at
    frames: int
    views: tuple[SheetView, ...]

    @property
    def markers(self) -> int:
        return sum(v.markers for v in self.views)

    @property
    def corners(self) -> int:
        return sum(len(v.ids) for v in self.views)


@lru_cache(maxsize=8)
def _marker_detector(dictionary: str) -> cv2.aruco.ArucoDetector:
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    return cv2.aruco.ArucoDetector(BoardSpec(dictionary=dictionary).cv_dictionary, params)


@lru_cache(maxsize=64)
def _corner_detector(spec: BoardSpec) -> cv2.aruco.CharucoDetector:
    return cv2.aruco.CharucoDetector(spec.cv_board)


def _grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY)
    raise CalibrationError(f"unsupported frame shape {frame.shape}: need a BGR or greyscale image")


def _detect_frame(grey: np.ndarray, spec: BoardSpec) -> dict[int, tuple[dict[int, np.ndarray], int]]:
    """sheet -> ({corner id: (x, y)}, markers found) for one frame."""
    marker_corners, marker_ids, _ = _marker_detector(spec.dictionary).detectMarkers(grey)
    if marker_ids is None or not len(marker_ids):
        return {}
    ids = marker_ids.ravel()
    out = {}
    for sheet in sorted(set((ids // spec.markers).tolist())):
        if sheet >= spec.sheets:
            continue  # a marker of the dictionary beyond the last whole sheet: not one of ours
        mine = np.flatnonzero(ids // spec.markers == sheet)
        corners, corner_ids, _, _ = _corner_detector(spec.for_sheet(sheet)).detectBoard(
            grey, markerCorners=tuple(marker_corners[int(i)] for i in mine), markerIds=marker_ids[mine]
        )
        found: dict[int, np.ndarray] = {}
        if corner_ids is not None:
            for cid, xy in zip(corner_ids.ravel(), corners.reshape(-1, 2), strict=True):
                found[int(cid)] = xy.astype(np.float64)
        out[sheet] = (found, len(mine))
    return out


def detect_camera(camera: str, frames: Iterable[np.ndarray | None], spec: BoardSpec) -> CameraDetection:
    """The board corners camera ``camera`` sees in ``frames`` (BGR or greyscale frames of one still
    scene; None entries, missing frames, are skipped). All frames must have the same size."""
    positions: dict[tuple[int, int], list[np.ndarray]] = defaultdict(list)
    markers: dict[int, int] = defaultdict(int)
    size: tuple[int, int] | None = None
    count = 0
    for frame in frames:
        if frame is None:
            continue
        grey = _grey(frame)
        frame_size = (int(grey.shape[1]), int(grey.shape[0]))
        if size is not None and frame_size != size:
            raise CalibrationError(
                f"{camera}: frames of different sizes ({size[0]}x{size[1]} and {frame_size[0]}x{frame_size[1]})"
            )
        size = frame_size
        count += 1
        for sheet, (found, found_markers) in _detect_frame(grey, spec).items():
            markers[sheet] = max(markers[sheet], found_markers)
            for cid, xy in found.items():
                positions[(sheet, cid)].append(xy)
    views = []
    for sheet in sorted(markers):
        ids, points = [], []
        for (s, cid), seen in sorted(positions.items()):
            if s != sheet or 2 * len(seen) < count:
                continue
            stack = np.asarray(seen)
            median = np.median(stack, axis=0)
            close = stack[np.linalg.norm(stack - median, axis=1) <= _OUTLIER_PX]
            ids.append(cid)
            points.append(close.mean(axis=0) if len(close) else median)
        id_array = np.asarray(ids, dtype=np.int32)
        board_mm = spec.corner_mm[id_array] if len(ids) else np.zeros((0, 2))
        image_px = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        views.append(SheetView(sheet, id_array, image_px, board_mm, markers[sheet]))
    return CameraDetection(camera, size or (0, 0), count, tuple(views))
