"""Calibrating a rig from a printed board: frames in, the config's geometry out.

    result = calibrate_rig([{"cam0": [f0, f1, f2], "cam1": [...], ...}], ["cam0", "cam1", ...])
    # or in steps, checking after each placement whether the rig is linked yet:
    detections = detect_sets(frame_sets, names, board)
    coverage(detections, names, board).complete      # else .advice(): where to lay the board next
    result = calibrate_detections(detections, names, board)
    print("\\n".join(result.report_lines()))
    new_config = result.apply_to_config(config)       # or result.apply_to_data(toml_dict), result.toml_lines()
    png = render_calibration(new_config, result, frames)

The steps: ``detect`` (corners per camera and frame set), ``solve`` (homographies to one belt plane),
``frame`` (the panorama and each camera's rotate / perspective / crop / overlap). Every failure is a
``CalibrationError`` whose one line says which camera and what to do; nothing is written here, so a
failure leaves every file as it was.

Frame sets: each is one still scene (the belt stopped, one or several sheets lying on it) seen by
the cameras, camera name -> its frames (or one frame). One set where every camera sees a sheet and
every pair of neighbours shares a sheet is enough; otherwise give one set per pair of neighbours
(``--from`` several recordings, or ``--live`` moving the sheet between sets): a camera need not
appear in every set.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from zmqcam.calibration.board import BoardSpec
from zmqcam.calibration.detect import CameraDetection, SheetView, detect_camera
from zmqcam.calibration.frame import CameraGeometry, PanoramaFrame, Seam, choose_frame, rotation_matrix
from zmqcam.calibration.preview import render
from zmqcam.calibration.solve import RANSAC_PX, Observation, PlaneSolution, reject_outliers, solve_plane
from zmqcam.config import Config, from_dict
from zmqcam.config.toml import toml_value
from zmqcam.errors import CalibrationError, ConfigError

__all__ = [
    "CORNER_COLOR",
    "MAX_ERROR_PX",
    "MIN_CORNERS",
    "CameraCalibration",
    "Coverage",
    "RigCalibration",
    "calibrate_config",
    "calibrate_detections",
    "calibrate_rig",
    "coverage",
    "detect_sets",
    "render_calibration",
]

#: a camera's view of one sheet counts only with this many corners (a homography needs 4; RANSAC
#: needs a few more to tell a misread corner)
MIN_CORNERS = 6
#: root-mean-square reprojection error above which a camera's estimate is not trusted: far above the
#: ~0.1 px of a flat, still board, below what a moved board or a warped sheet gives
MAX_ERROR_PX = 2.0
#: the corners, drawn on each frame of the calibration PNG (BGR)
CORNER_COLOR = (0, 200, 255)
#: the panorama's limits (the config's perspective.width / height)
_MAX_PIXELS = 16384
#: the corners of one view must spread at least this many squares across their narrowest direction
_MIN_SPREAD_SQUARES = 0.3
#: misread corners (RANSAC outliers) a camera may have: a few, or a small share of what it sees;
#: more means the board or the camera does not fit the flat-board model
_MAX_MISREAD = 2
_MAX_MISREAD_SHARE = 0.1
_INCONSISTENT = (
    "the board moved during the frames, is not flat, or the lens distorts; keep the belt still and the board flat"
)

Frames = Sequence[np.ndarray | None] | np.ndarray | None


@dataclass(frozen=True)
class CameraCalibration:
    """One camera's result: its geometry in the config's vocabulary and what it was found from."""

    geometry: CameraGeometry
    #: markers and corners found, summed over the frame sets; frames looked at
    markers: int
    corners: int
    frames: int
    #: root-mean-square reprojection error: camera pixels, and the same on the belt in mm
    error_px: float
    error_mm: float
    #: corners dropped as misread (RANSAC outliers)
    outliers: int
    #: camera pixels per mm of belt at the frame's centre
    native_px_per_mm: float
    #: 3x3: camera pixels (unrotated, configured size) -> plane mm
    plane_from_camera: np.ndarray

    @property
    def name(self) -> str:
        return self.geometry.name


@dataclass(frozen=True)
class RigCalibration:
    """Everything a calibration found; the cameras left to right."""

    board: BoardSpec
    cameras: tuple[CameraCalibration, ...]
    seams: tuple[Seam, ...]
    px_per_mm: float
    #: (width, height) of the panorama in pixels
    size: tuple[int, int]
    #: 3x3: plane mm (the reference sheet's board frame) -> panorama pixels
    pano_from_plane: np.ndarray
    #: (frame set, sheet) of the reference placement, and every placement's board mm -> plane mm
    reference: tuple[int, int]
    plane_from_board: Mapping[tuple[int, int], np.ndarray]
    #: how the belt direction was found: "cameras" or "board"
    belt_axis: str
    #: per frame set: camera name -> what it detected (pixels of the frames as given)
    detections: tuple[Mapping[str, CameraDetection], ...]

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.cameras)

    def camera(self, name: str) -> CameraCalibration:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)

    def clearest_sets(self) -> dict[str, int]:
        """Per camera, the frame set in which it saw the most corners (the first such set): the
        frames a calibration image shows for a rig calibrated from several placements."""
        return {
            cam.name: max(
                range(len(self.detections)),
                key=lambda f: (self.detections[f][cam.name].corners if cam.name in self.detections[f] else -1, -f),
            )
            for cam in self.cameras
        }

    def pano_from_board(self, frame_set: int, sheet: int) -> np.ndarray:
        """3x3: board mm of a sheet as it lay in ``frame_set`` -> panorama pixels."""
        return self.pano_from_plane @ self.plane_from_board[(frame_set, sheet)]

    # -- in the config's terms -------------------------------------------------------------------

    def camera_table(self, name: str) -> dict[str, Any]:
        """The keys of camera ``name``'s ``[[camera]]`` table that the calibration sets."""
        geo = self.camera(name).geometry
        table: dict[str, Any] = {
            "rotate": geo.rotate,
            "perspective": {"src": [list(p) for p in geo.src], "width": geo.width, "height": geo.height},
            "crop": {"front": geo.front, "back": geo.back},
        }
        if geo.overlap is not None:
            table["overlap"] = geo.overlap
        return table

    def apply_to_data(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of a TOML-shaped config (as ``tomllib`` reads it) with the new geometry of every
        calibrated camera, and ``stitch.cameras`` set to the left-to-right order when the config's
        order differs. Everything else is kept. KeyError-free: a camera missing from ``data`` is a
        CalibrationError."""
        out = copy.deepcopy(dict(data))
        tables = {t.get("name"): t for t in out.get("camera", []) if isinstance(t, dict)}
        for name in self.order:
            if name not in tables:
                raise CalibrationError(f"{name}: not in the config; calibrate the cameras the config has")
            table = tables[name]
            table.pop("overlap", None)
            table.update(self.camera_table(name))
        stitch = out.get("stitch", {})
        listed = stitch.get("cameras") if isinstance(stitch, dict) else None
        stitched = [t.get("name") for t in out.get("camera", [])] if listed is None else list(listed)
        if stitched != list(self.order):
            out.setdefault("stitch", {})["cameras"] = list(self.order)
        return out

    def apply_to_config(self, config: Config) -> Config:
        """``config`` with the new geometry (validated as a config file is)."""
        data = config.model_dump(mode="json")
        try:
            return from_dict(self.apply_to_data(data), label="calibration")
        except ConfigError as exc:  # pragma: no cover - the frame is built within the config's rules
            raise CalibrationError(f"the calibrated geometry is not a valid config: {exc.lines[0]}") from None

    def toml_lines(self) -> str:
        """The TOML to paste: per camera the keys of its ``[[camera]]`` table, and the stitch order."""
        lines = []
        for cam in self.cameras:
            lines.append(f"# {cam.name}: paste into its [[camera]] table")
            lines += [f"{key} = {toml_value(value)}" for key, value in self.camera_table(cam.name).items()]
            lines.append("")
        lines.append("# [stitch], left to right")
        lines.append(f"cameras = {toml_value(list(self.order))}")
        return "\n".join(lines) + "\n"

    def report_lines(self) -> list[str]:
        """What the command prints: per camera what it saw, how well it fits, its overlaps; then the panorama."""
        out = []
        overlaps: dict[str, list[str]] = {c.name: [] for c in self.cameras}
        for seam in self.seams:
            text = f"{seam.overlap_mm:.0f} mm ({seam.overlap_px} px)"
            overlaps[seam.left].append(f"{seam.right} {text}")
            overlaps[seam.right].append(f"{seam.left} {text}")
        for cam in self.cameras:
            misread = f", {cam.outliers} misread corners dropped" if cam.outliers else ""
            shared = "; overlap with " + ", ".join(overlaps[cam.name]) if overlaps[cam.name] else ""
            out.append(
                f"{cam.name}: {cam.markers} markers, {cam.corners} corners in {cam.frames} frames{misread}; "
                f"reprojection error {cam.error_px:.2f} px ({cam.error_mm:.2f} mm){shared}"
            )
        axis = "the line of the cameras" if self.belt_axis == "cameras" else "the board's long side"
        out.append(
            f"panorama {self.size[0]}x{self.size[1]} px at {self.px_per_mm:g} px/mm "
            f"({self.size[0] / self.px_per_mm:.0f} x {self.size[1] / self.px_per_mm:.0f} mm of belt), "
            f"left to right {', '.join(self.order)}; belt direction from {axis}"
        )
        return out


# ---------------------------------------------------------------------------------------------


def _frames(value: Frames) -> list[np.ndarray | None]:
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return [value]
    return list(value)


def _where(name: str, names: Sequence[str]) -> str:
    """Where the board should go for camera ``name`` (config order gives its neighbours)."""
    i = list(names).index(name)
    if len(names) == 1:
        return f"lay the board in {name}'s view"
    other = names[1] if i == 0 else names[i - 1]
    a, b = (name, other) if i == 0 else (other, name)
    return f"lay the board where {a} and {b} overlap"


def _spread_mm(points: np.ndarray) -> float:
    """How far the points spread across their narrowest direction (standard deviation, mm)."""
    centred = points - points.mean(axis=0)
    return float(np.linalg.svd(centred, compute_uv=False)[-1] / math.sqrt(len(points)))


def _scaled(points: np.ndarray, frame_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Pixels of a ``frame_size`` frame in pixels of the configured ``size`` (as the stitcher rescales)."""
    if frame_size == size:
        return points
    return points * np.array([size[0] / frame_size[0], size[1] / frame_size[1]])


def _check_options(px_per_mm: float | None, height: int | None, max_error_px: float, min_corners: int) -> None:
    if min_corners < 4:  # a homography needs four points
        raise CalibrationError(f"min_corners {min_corners}: needs at least 4")
    if px_per_mm is not None and not (math.isfinite(px_per_mm) and 0.01 <= px_per_mm <= 100):
        raise CalibrationError(f"--px-per-mm {px_per_mm:g}: needs a number from 0.01 to 100")
    if height is not None and not 1 <= height <= _MAX_PIXELS:
        raise CalibrationError(f"--height {height}: needs a whole number of pixels from 1 to {_MAX_PIXELS}")
    if not (math.isfinite(max_error_px) and max_error_px > 0):
        raise CalibrationError(f"--max-error {max_error_px:g}: needs a positive number of pixels")


def calibrate_rig(
    frame_sets: Sequence[Mapping[str, Frames]],
    cameras: Sequence[str],
    board: BoardSpec | None = None,
    *,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    px_per_mm: float | None = None,
    height: int | None = None,
    belt_axis: Literal["cameras", "board"] = "cameras",
    min_corners: int = MIN_CORNERS,
    max_error_px: float = MAX_ERROR_PX,
) -> RigCalibration:
    """Calibrate ``cameras`` (names in the config's stitch order) from ``frame_sets`` (see the module
    docstring). ``sizes``: each camera's configured frame size, which the quads are expressed in
    (default: the size of its frames). ``px_per_mm`` and ``height`` (panorama pixels) override the
    automatic choices; ``belt_axis`` chooses how the belt direction is found (``zmqcam.calibration.frame``).
    Raises CalibrationError with one line saying what to change."""
    board = board or BoardSpec()
    _check_options(px_per_mm, height, max_error_px, min_corners)
    return calibrate_detections(
        detect_sets(frame_sets, cameras, board),
        cameras,
        board,
        sizes=sizes,
        px_per_mm=px_per_mm,
        height=height,
        belt_axis=belt_axis,
        min_corners=min_corners,
        max_error_px=max_error_px,
    )


def detect_sets(
    frame_sets: Sequence[Mapping[str, Frames]], cameras: Sequence[str], board: BoardSpec | None = None
) -> list[dict[str, CameraDetection]]:
    """The board corners each of ``cameras`` sees in each frame set (the first step of ``calibrate_rig``)."""
    board = board or BoardSpec()
    if not cameras:
        raise CalibrationError("no camera to calibrate")
    return [
        {name: detect_camera(name, _frames(fs.get(name)), board) for name in cameras if name in fs} for fs in frame_sets
    ]


def _usable(view: SheetView, board: BoardSpec, min_corners: int) -> bool:
    """Whether one camera's view of one sheet can go into the solution: enough corners, spread out."""
    return len(view.ids) >= max(3, min_corners) and _spread_mm(view.board_mm) >= _MIN_SPREAD_SQUARES * board.square_mm


@dataclass(frozen=True)
class Coverage:
    """Which cameras the placements seen so far link into one rig (``coverage``)."""

    #: the cameras in the config's order
    names: tuple[str, ...]
    #: cameras linked to each other through sheets both saw, each group in the config's order; a
    #: camera that sees no usable sheet is a group of its own
    groups: tuple[tuple[str, ...], ...]
    #: cameras with no usable view of any sheet yet
    unseen: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Every camera linked to every other: the rig can be solved (the solution may still find
        fault with what it was given)."""
        return len(self.groups) == 1

    def next_pair(self) -> tuple[str, str] | None:
        """The first neighbours (config order) not linked yet: where the board should lie next."""
        group = {name: k for k, members in enumerate(self.groups) for name in members}
        return next(((a, b) for a, b in itertools.pairwise(self.names) if group[a] != group[b]), None)

    def advice(self) -> str:
        """One line: what is linked and where to lay the board next ("" when complete)."""
        pair = self.next_pair()
        if pair is None:
            return ""
        linked = [", ".join(g) for g in self.groups if len(g) > 1]
        done = f" (linked so far: {'; '.join(linked)})" if linked else ""
        return f"lay the board where {pair[0]} and {pair[1]} overlap{done}"


def coverage(
    detections: Sequence[Mapping[str, CameraDetection]],
    cameras: Sequence[str],
    board: BoardSpec | None = None,
    min_corners: int = MIN_CORNERS,
) -> Coverage:
    """Which of ``cameras`` the detected placements link (a placement is one sheet in one frame set;
    two cameras are linked when both see it well enough to be solved from it)."""
    board = board or BoardSpec()
    names = list(cameras)
    parent = {name: name for name in names}

    def root(name: str) -> str:
        while parent[name] != name:
            name = parent[name]
        return name

    seen: set[str] = set()
    for per_set in detections:
        by_sheet: dict[int, list[str]] = {}
        for name, det in per_set.items():
            if name not in parent:
                continue
            for view in det.views:
                if _usable(view, board, min_corners):
                    by_sheet.setdefault(view.sheet, []).append(name)
                    seen.add(name)
        for members in by_sheet.values():
            for other in members[1:]:
                parent[root(other)] = root(members[0])
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(root(name), []).append(name)
    return Coverage(tuple(names), tuple(tuple(g) for g in groups.values()), tuple(n for n in names if n not in seen))


def calibrate_detections(
    detections: Sequence[Mapping[str, CameraDetection]],
    cameras: Sequence[str],
    board: BoardSpec | None = None,
    *,
    sizes: Mapping[str, tuple[int, int]] | None = None,
    px_per_mm: float | None = None,
    height: int | None = None,
    belt_axis: Literal["cameras", "board"] = "cameras",
    min_corners: int = MIN_CORNERS,
    max_error_px: float = MAX_ERROR_PX,
) -> RigCalibration:
    """``calibrate_rig`` from what ``detect_sets`` found (the same options, the same errors)."""
    board = board or BoardSpec()
    names = list(cameras)
    if not names:
        raise CalibrationError("no camera to calibrate")
    _check_options(px_per_mm, height, max_error_px, min_corners)

    frame_size: dict[str, tuple[int, int]] = {}
    for per_set in detections:
        for name, det in per_set.items():
            if det.frames:
                frame_size.setdefault(name, det.frame_size)
    size_of: dict[str, tuple[int, int] | None] = {
        name: (int(sizes[name][0]), int(sizes[name][1])) if sizes and name in sizes else frame_size.get(name)
        for name in names
    }

    # observations: one per camera and placement (frame set, sheet) with enough corners, spread out
    placements: dict[tuple[int, int], int] = {}
    observations: list[Observation] = []
    best: dict[str, tuple[int, int, bool]] = {name: (0, 0, False) for name in names}  # corners, markers, flat
    for f, per_set in enumerate(detections):
        for name, det in per_set.items():
            if not det.frames:
                continue
            size = size_of[name]
            assert size is not None
            for view in det.views:
                spread_ok = _usable(view, board, 3)
                corners, markers, _ = best[name]
                if len(view.ids) > corners or (len(view.ids) == corners and view.markers > markers):
                    best[name] = (len(view.ids), view.markers, not spread_ok)
                if len(view.ids) < min_corners or not spread_ok:
                    continue
                p = placements.setdefault((f, view.sheet), len(placements))
                image_px = _scaled(view.image_px, det.frame_size, size)
                observations.append(Observation(names.index(name), p, image_px, view.board_mm))
    for name in names:
        if name not in frame_size:
            raise CalibrationError(f"{name}: no frame to calibrate from (is the camera delivering frames?)")
        if not any(o.camera == names.index(name) for o in observations):
            corners, markers, flat = best[name]
            if markers == 0:
                raise CalibrationError(f"{name} sees no board (0 markers): {_where(name, names)}")
            more = f"{_where(name, names)}, with more of it in {name}'s view"
            if flat and corners >= min_corners:
                raise CalibrationError(f"{name} sees {corners} corners, all along one line: {more}")
            plural = "" if corners == 1 else "s"
            raise CalibrationError(f"{name} sees {corners} corner{plural} (need >= {min_corners}): {more}")

    sizes_list: list[tuple[int, int]] = []
    for name in names:
        size = size_of[name]
        assert size is not None
        sizes_list.append((int(size[0]), int(size[1])))
    observations, outliers = reject_outliers(observations, len(names))
    for i, name in enumerate(names):
        total = sum(len(o.board_mm) for o in observations if o.camera == i) + outliers[i]
        if outliers[i] > max(_MAX_MISREAD, _MAX_MISREAD_SHARE * total):
            raise CalibrationError(
                f"{name}: {outliers[i]} of {total} corners do not fit one flat board within {RANSAC_PX:g} px: "
                f"{_INCONSISTENT}"
            )
    solution, linked = solve_plane(observations, sizes_list, len(placements))
    if solution is None:
        raise CalibrationError(_unlinked_message(names, linked))
    for i, name in enumerate(names):
        if solution.error_px[i] > max_error_px:
            raise CalibrationError(
                f"{name}: reprojection error {solution.error_px[i]:.1f} px (limit {max_error_px:g} px): {_INCONSISTENT}"
            )
    frame = choose_frame(
        names, sizes_list, solution.plane_from_camera, px_per_mm=px_per_mm, height=height, belt_axis=belt_axis
    )
    too_big = [g for g in frame.cameras if g.width > _MAX_PIXELS or g.height > _MAX_PIXELS]
    if too_big:
        raise CalibrationError(
            f"{too_big[0].name}'s part of the panorama is {too_big[0].width}x{too_big[0].height} px, more than "
            f"{_MAX_PIXELS}: ask for a smaller --px-per-mm"
        )
    return _result(board, names, detections, solution, frame, placements, outliers)


def _unlinked_message(names: Sequence[str], linked: Sequence[int]) -> str:
    inside = [names[i] for i in linked]
    outside = [n for n in names if n not in inside]
    first, second = (inside, outside) if names[0] in inside else (outside, inside)
    # the neighbours (config order) across the cut: where a shared sheet would link them
    a, b = next((a, b) for a, b in itertools.pairwise(names) if (a in inside) != (b in inside))
    return (
        f"{', '.join(first)} and {', '.join(second)} are not linked by any board seen by both: "
        f"lay the board where {a} and {b} overlap"
    )


def _result(
    board: BoardSpec,
    names: Sequence[str],
    detections: Sequence[Mapping[str, CameraDetection]],
    solution: PlaneSolution,
    frame: PanoramaFrame,
    placements: Mapping[tuple[int, int], int],
    outliers: Sequence[int],
) -> RigCalibration:
    cams = []
    for k, geo in enumerate(frame.cameras):
        i = names.index(geo.name)
        seen = [per_set[geo.name] for per_set in detections if geo.name in per_set]
        cams.append(
            CameraCalibration(
                geo,
                sum(d.markers for d in seen),
                sum(d.corners for d in seen),
                sum(d.frames for d in seen),
                solution.error_px[i],
                solution.error_mm[i],
                outliers[i],
                frame.native_px_per_mm[k],
                solution.plane_from_camera[i],
            )
        )
    by_index = {index: key for key, index in placements.items()}
    return RigCalibration(
        board,
        tuple(cams),
        frame.seams,
        frame.px_per_mm,
        frame.size,
        frame.pano_from_plane,
        by_index[solution.reference],
        {key: solution.plane_from_board[index] for key, index in placements.items()},
        frame.belt_axis,
        tuple(detections),
    )


def calibrate_config(
    config: Config, frame_sets: Sequence[Mapping[str, Frames]], board: BoardSpec | None = None, **options: Any
) -> RigCalibration:
    """``calibrate_rig`` for the stitched cameras of ``config``, with their configured sizes."""
    stitched = config.stitched_cameras
    sizes = {c.name: (int(c.size[0]), int(c.size[1])) for c in stitched}
    return calibrate_rig(frame_sets, [c.name for c in stitched], board, sizes=sizes, **options)


# ---------------------------------------------------------------------------------------------
# the calibration PNG


def render_calibration(
    config: Config,
    result: RigCalibration,
    frames: Mapping[str, np.ndarray | None],
    frame_set: int = 0,
    frame_sets: Mapping[str, int] | None = None,
) -> np.ndarray:
    """The calibration image (``zmqcam.calibration.preview.render``: each frame with its quad and crop, the
    panorama under them) for ``config`` with the new geometry, with the corners detected in
    ``frame_set`` drawn on the frames of that set (``frames``: camera name -> frame) and each
    camera's corner count and error written in its panel. ``frame_sets`` (camera name -> set) says
    which set each camera's frame comes from where they differ (``RigCalibration.clearest_sets``)."""
    image, layout = render(config, frames)
    for name, x, y, _, h in layout.panels:
        chosen = (frame_sets or {}).get(name, frame_set)
        det = result.detections[chosen].get(name) if chosen < len(result.detections) else None
        frame = frames.get(name)
        if det is None or frame is None or name not in result.order:
            continue
        cam = config.camera_named(name)
        size = (int(frame.shape[1]), int(frame.shape[0]))
        to_panel = np.array([[1.0, 0, x], [0, 1.0, y], [0, 0, 1.0]]) @ rotation_matrix(cam.rotate, size)
        for view in det.views:
            pts = cv2.perspectiveTransform(view.image_px.reshape(-1, 1, 2), to_panel).reshape(-1, 2)
            for px, py in pts:
                cv2.circle(image, (round(px * 16), round(py * 16)), 4 * 16, CORNER_COLOR, 2, cv2.LINE_AA, 4)
        fit = result.camera(name)
        text = f"{det.corners} corners, error {fit.error_px:.2f} px"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        cv2.rectangle(image, (x + 2, y + h - th - base - 6), (x + tw + 8, y + h - 2), (0, 0, 0), -1)
        cv2.putText(image, text, (x + 5, y + h - base - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.5, CORNER_COLOR, 1, cv2.LINE_AA)
    return image
