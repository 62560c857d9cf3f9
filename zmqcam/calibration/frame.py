"""The panorama frame, and each camera's part of it in the config's vocabulary.

Given each camera's homography to the belt plane (mm), this decides the panorama: a top-down,
metric view of the belt, then expresses each camera as ``rotate``, ``perspective`` (``src`` quad,
``width``, ``height``) and ``crop`` so that zmqcam's remap stitches exactly that view.

Decisions (all in the plane, mm, before pixels):

- **Belt direction** (the panorama's x axis): the line through the cameras' view centres (a least
  squares fit; two cameras: the line through both). Cameras over a conveyor are mounted along it, and
  this needs nothing from the user: the board may lie at any angle, in several placements. With one
  camera, or ``belt_axis="board"``, the reference sheet's long side is the direction instead (lay it
  along the belt). x runs from the first camera of the given order to the last; y is x turned 90
  degrees clockwise as seen from above, so the panorama is never mirrored.
- **Camera order** left to right: by where each view's centre lies along x.
- **Scale** ``px_per_mm``: given, or the median over the cameras of each camera's own resolution at
  its view centre (camera pixels per mm of belt), to 3 significant digits: the panorama keeps about
  the cameras' native resolution, the same scale everywhere.
- **Height**: a band across the belt that every camera covers over the whole slot it contributes,
  so no slot has black rows: each camera's warped image spans exactly the columns in which it sees
  the whole band, and the panorama's ends are where the end cameras stop seeing all of it. A taller
  band narrows those columns and so the neighbours' overlaps: the band is centred where every
  camera's view centre column meets, and made the tallest that leaves every pair of neighbours at
  least ``KEEP_OVERLAP`` (half) of the overlap they have along its centre line. A given height is
  centred the same way and must fit in the tallest band every camera sees.
- **Seams** in the middle of each neighbours' overlap (the columns both cover over the full band). Each
  camera's warped image (``perspective.width``) spans all the columns it fully covers, so it reaches
  past its crop by half the overlap on each side: the margin a feathered seam can blend across. The
  overlap in panorama pixels is ``camera[].overlap`` (the pixels shared with the next camera, equal to
  ``width - back`` plus the next camera's ``front``).
- **rotate**: the multiple of 90 degrees that turns the camera's frame closest to upright in the
  panorama (an upside-down camera gets 180), so the quad and the preview read naturally.

Coverage uses each frame shrunk by ``EDGE_PX`` on every side, so that no bilinear sample reaches past
the image edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from zmqcam.calibration.solve import transform
from zmqcam.errors import CalibrationError

__all__ = ["EDGE_PX", "CameraGeometry", "PanoramaFrame", "Seam", "choose_frame", "rotation_matrix"]

#: a camera's pixels this close to its frame's edge are not used
EDGE_PX = 1.0
#: the share of neighbours' overlap (along the band's centre line) a taller band may not eat into:
#: the seam keeps room to blend
KEEP_OVERLAP = 0.5
_BAND_BISECTIONS = 40
_ROTATIONS = (0, 90, 180, 270)
#: decimals kept of the quad's coordinates (1/1000 px: far below anything visible)
_SRC_DECIMALS = 3


@dataclass(frozen=True)
class CameraGeometry:
    """One camera in the config's vocabulary (see README, Configuration)."""

    name: str
    rotate: int
    #: the quad in pixels of the rotated frame: top-left, bottom-left, bottom-right, top-right
    src: tuple[tuple[float, float], ...]
    width: int
    height: int
    front: int
    back: int
    #: panorama pixels shared with the next camera (None for the last)
    overlap: int | None
    #: the first panorama column of this camera's warped image (its slot starts at offset + front)
    offset: int


@dataclass(frozen=True)
class Seam:
    left: str
    right: str
    #: the panorama column where ``right``'s slot starts
    column: int
    #: the columns both cameras cover over the full height: pixels (whole columns) and mm
    overlap_px: int
    overlap_mm: float


@dataclass(frozen=True)
class PanoramaFrame:
    #: camera names left to right
    order: tuple[str, ...]
    px_per_mm: float
    #: (width, height) in pixels
    size: tuple[int, int]
    #: 3x3: plane mm -> panorama pixels (a similarity: rotation, uniform scale, translation)
    pano_from_plane: np.ndarray
    #: per camera (pano order), each camera's own resolution at its view centre, px per mm
    native_px_per_mm: tuple[float, ...]
    cameras: tuple[CameraGeometry, ...]
    seams: tuple[Seam, ...]
    belt_axis: str


def rotation_matrix(rotate: int, frame_size: tuple[int, int]) -> np.ndarray:
    """3x3: unrotated frame pixels -> pixels of the frame rotated ``rotate`` degrees clockwise (the
    exact pixel-centre mapping of ``cv2.rotate``, as ``zmqcam.image.remap`` uses it)."""
    w, h = frame_size
    return {
        0: np.eye(3),
        90: np.array([[0.0, -1.0, h - 1.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
        180: np.array([[-1.0, 0.0, w - 1.0], [0.0, -1.0, h - 1.0], [0.0, 0.0, 1.0]]),
        270: np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, w - 1.0], [0.0, 0.0, 1.0]]),
    }[rotate]


def _footprint(plane_from_camera: np.ndarray, size: tuple[int, int], name: str) -> np.ndarray:
    """(4, 2): the usable frame's corners on the plane (a convex quad). CalibrationError if the frame
    reaches the horizon (a camera looking too far sideways to map onto the belt)."""
    w, h = size
    lo, hi_x, hi_y = EDGE_PX, w - 1 - EDGE_PX, h - 1 - EDGE_PX
    corners = np.array([[lo, lo], [hi_x, lo], [hi_x, hi_y], [lo, hi_y]])
    den = corners @ plane_from_camera[2, :2] + plane_from_camera[2, 2]
    if not (np.all(den > 0) or np.all(den < 0)):
        raise CalibrationError(f"{name} sees the horizon: aim it down at the belt")
    return transform(plane_from_camera, corners)


def _row_span(quad: np.ndarray, t: float) -> tuple[float, float] | None:
    """The s-interval where the horizontal line at ``t`` crosses the convex polygon ``quad`` ((s, t))."""
    xs = []
    n = len(quad)
    for i in range(n):
        (s0, t0), (s1, t1) = quad[i], quad[(i + 1) % n]
        if (t0 - t) * (t1 - t) <= 0 and t0 != t1:
            xs.append(s0 + (t - t0) * (s1 - s0) / (t1 - t0))
        elif t0 == t1 == t:
            xs += [s0, s1]
    return (min(xs), max(xs)) if xs else None


def _column_span(quad: np.ndarray, s: float) -> tuple[float, float] | None:
    """The t-interval where the vertical line at ``s`` crosses the convex polygon ``quad``."""
    span = _row_span(quad[:, ::-1], s)
    return span


def _full_columns(quad: np.ndarray, band: tuple[float, float]) -> tuple[float, float]:
    """The s-interval of the columns whose whole band [t0, t1] lies inside ``quad`` (convex: where both
    ends of the column are inside). Empty intervals come back with start > end."""
    top, bottom = _row_span(quad, band[0]), _row_span(quad, band[1])
    if top is None or bottom is None:
        return math.inf, -math.inf
    return max(top[0], bottom[0]), min(top[1], bottom[1])


def _band_at(quad: np.ndarray, s: float) -> tuple[float, float]:
    span = _column_span(quad, s)
    return span if span is not None else (math.inf, -math.inf)


def _direction(centres: np.ndarray, belt_axis: str) -> np.ndarray:
    """Unit vector of the belt direction in the plane (see the module docstring); x from the first
    given camera towards the last."""
    if belt_axis == "board" or len(centres) < 2:
        return np.array([1.0, 0.0])
    offsets = centres - centres.mean(axis=0)
    _, _, vt = np.linalg.svd(offsets)
    axis = vt[0]
    if axis @ (centres[-1] - centres[0]) < 0:
        axis = -axis
    return axis / np.linalg.norm(axis)


def _significant(value: float, digits: int = 3) -> float:
    return float(f"{value:.{digits}g}")


def _native_resolution(plane_from_camera: np.ndarray, size: tuple[int, int]) -> float:
    """Camera pixels per plane mm at the frame's centre (the square root of the local area ratio)."""
    w, h = size
    centre = np.array([[(w - 1) / 2, (h - 1) / 2]])
    d = 0.5
    around = np.array([[-d, 0.0], [d, 0.0], [0.0, -d], [0.0, d]]) + centre
    p = transform(plane_from_camera, around)
    jac = np.column_stack([(p[1] - p[0]) / (2 * d), (p[3] - p[2]) / (2 * d)])  # mm per px
    return 1.0 / math.sqrt(abs(np.linalg.det(jac)))


def choose_frame(
    names: Sequence[str],
    sizes: Sequence[tuple[int, int]],
    plane_from_camera: Sequence[np.ndarray],
    *,
    px_per_mm: float | None = None,
    height: int | None = None,
    belt_axis: Literal["cameras", "board"] = "cameras",
) -> PanoramaFrame:
    """The panorama frame for cameras ``names`` (given order: the config's; it fixes which end is
    left), each with its frame size and its homography camera pixels -> plane mm."""
    n = len(names)
    feet = [_footprint(h, size, name) for h, size, name in zip(plane_from_camera, sizes, names, strict=True)]
    centres = np.array(
        [
            transform(h, np.array([[(w - 1) / 2, (hh - 1) / 2]]))[0]
            for h, (w, hh) in zip(plane_from_camera, sizes, strict=True)
        ]
    )
    u = _direction(centres, belt_axis)
    v = np.array([-u[1], u[0]])
    to_st = np.array([[u[0], u[1], 0.0], [v[0], v[1], 0.0], [0.0, 0.0, 1.0]])
    order = sorted(range(n), key=lambda i: float(centres[i] @ u))
    quads = [transform(to_st, feet[i]) for i in order]
    mids = [float(centres[i] @ u) for i in order]
    native = [_native_resolution(plane_from_camera[i], sizes[i]) for i in order]
    scale = px_per_mm if px_per_mm is not None else _significant(float(np.median(native)))
    ordered_names = [names[i] for i in order]

    band = _settle_band(quads, mids, ordered_names)
    if height is not None:
        # rows 0 .. height-1 have their centres (height - 1) / scale mm apart
        want = (height - 1) / scale
        have = band[1] - band[0]
        if want > have + 1e-9:
            raise CalibrationError(
                f"height {height} px is more than the {_rows(have, scale)} px band every camera sees "
                f"at {scale:g} px per mm: ask for less, or a smaller px per mm"
            )
        centre = (band[0] + band[1]) / 2
        band = (centre - want / 2, centre + want / 2)
    spans = [_full_columns(q, band) for q in quads]
    seams_s = [(spans[k + 1][0] + spans[k][1]) / 2 for k in range(n - 1)]

    # pixels: column X = (s - s0) * scale with s0 where the first camera's full columns begin
    s0, t0 = spans[0][0], band[0]
    pano_from_st = np.array([[scale, 0.0, -s0 * scale], [0.0, scale, -t0 * scale], [0.0, 0.0, 1.0]])
    pano_from_plane = pano_from_st @ to_st
    rows = height if height is not None else _rows(band[1] - band[0], scale)
    offsets = [math.ceil((a - s0) * scale - 1e-9) for a, _ in spans]
    lasts = [math.floor((b - s0) * scale + 1e-9) for _, b in spans]
    seam_cols = [min(max(round((s - s0) * scale), offsets[k + 1]), lasts[k] + 1) for k, s in enumerate(seams_s)]
    cuts = [offsets[0], *seam_cols, lasts[-1] + 1]
    geometries = []
    for k, i in enumerate(order):
        width = lasts[k] - offsets[k] + 1
        front, back = cuts[k] - offsets[k], cuts[k + 1] - offsets[k]
        overlap = lasts[k] + 1 - offsets[k + 1] if k + 1 < n else None
        warped_from_camera = (
            np.array([[1.0, 0, -offsets[k]], [0, 1.0, 0], [0, 0, 1.0]]) @ pano_from_plane @ (plane_from_camera[i])
        )
        rotate = _upright(warped_from_camera, sizes[i])
        warped_from_rotated = warped_from_camera @ np.linalg.inv(rotation_matrix(rotate, sizes[i]))
        rect = np.array([[0.0, 0.0], [0.0, rows], [width, rows], [width, 0.0]])
        src = transform(np.linalg.inv(warped_from_rotated), rect)
        geometries.append(
            CameraGeometry(
                names[i],
                rotate,
                tuple((round(float(x), _SRC_DECIMALS), round(float(y), _SRC_DECIMALS)) for x, y in src),
                width,
                rows,
                front,
                back,
                overlap,
                offsets[k],
            )
        )
    seams = tuple(
        Seam(
            ordered_names[k],
            ordered_names[k + 1],
            seam_cols[k],
            lasts[k] + 1 - offsets[k + 1],
            spans[k][1] - spans[k + 1][0],
        )
        for k in range(n - 1)
    )
    return PanoramaFrame(
        tuple(ordered_names),
        scale,
        (cuts[-1] - cuts[0], rows),
        pano_from_plane,
        tuple(native),
        tuple(geometries),
        seams,
        "board" if belt_axis == "board" or n < 2 else "cameras",
    )


def _rows(band_mm: float, scale: float) -> int:
    """Whole panorama rows whose centres fit in a band ``band_mm`` tall."""
    return math.floor(band_mm * scale + 1e-9) + 1


def _upright(warped_from_camera: np.ndarray, size: tuple[int, int]) -> int:
    """The rotation (degrees clockwise) after which the frame's "up" at its centre points closest to
    the panorama's up."""
    best, best_cos = 0, -math.inf
    for rotate in _ROTATIONS:
        rot = rotation_matrix(rotate, size)
        w, h = (size[1], size[0]) if rotate in (90, 270) else size
        warped_from_rotated = warped_from_camera @ np.linalg.inv(rot)
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        a, b = transform(warped_from_rotated, np.array([centre, centre - [0.0, 1.0]]))
        up = (b - a) / np.linalg.norm(b - a)
        cos = float(up @ np.array([0.0, -1.0]))
        if cos > best_cos:
            best, best_cos = rotate, cos
    return best


def _settle_band(quads: Sequence[np.ndarray], mids: Sequence[float], names: Sequence[str]) -> tuple[float, float]:
    """The band (t0, t1) across the belt (see the module docstring): centred where every camera's
    view centre column meets, the tallest that leaves each pair of neighbours ``KEEP_OVERLAP`` of the
    overlap they have along that centre line. CalibrationError when neighbours leave a gap or the
    cameras share no band."""
    n = len(quads)
    bands = [_band_at(q, s) for q, s in zip(quads, mids, strict=True)]
    widest = (max(b[0] for b in bands), min(b[1] for b in bands))
    if widest[0] >= widest[1]:
        lines = ", ".join(f"{name} {lo:.0f} to {hi:.0f} mm" for name, (lo, hi) in zip(names, bands, strict=True))
        raise CalibrationError(f"the cameras' views share no band across the belt ({lines}): aim them at one line")
    centre = (widest[0] + widest[1]) / 2
    keep = []
    for k in range(n - 1):
        left, right = _row_span(quads[k], centre), _row_span(quads[k + 1], centre)
        assert left is not None and right is not None  # both cover the band's centre line
        if right[0] > left[1]:
            raise CalibrationError(
                f"{names[k]} and {names[k + 1]} do not overlap: a {right[0] - left[1]:.0f} mm gap on the belt "
                "between their views; aim them closer together (neighbours must share a strip of belt)"
            )
        keep.append(KEEP_OVERLAP * (left[1] - right[0]))

    def fits(half: float) -> bool:
        band = (centre - half, centre + half)
        spans = [_full_columns(q, band) for q in quads]
        if any(a > b for a, b in spans):
            return False
        return all(spans[k][1] - spans[k + 1][0] >= keep[k] for k in range(n - 1))

    low, high = 0.0, (widest[1] - widest[0]) / 2
    if fits(high):
        low = high
    for _ in range(_BAND_BISECTIONS):
        mid = (low + high) / 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return centre - low, centre + low
