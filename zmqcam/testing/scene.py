"""A conveyor belt seen by a rig of cameras, rendered from known geometry: the calibration test scene.

The belt is a plane with millimetre coordinates: x along the belt (0 .. ``BELT_MM[0]``), y across it
(0 .. ``BELT_MM[1]``, "down" in a top-down view), seen from above. Its texture is deterministic and
busy at every scale from centimetres to a millimetre (smooth colour fields, shapes with sharp edges),
so that a panorama one pixel off shows in its PSNR. ChArUco sheets (``BoardPlacement``) lie on it at
known positions.

Each ``SceneCamera`` is a pinhole camera at a known position and orientation over the belt, so the
belt plane maps to its pixels by a known homography (``SceneCamera.homography``). A frame is what
that camera sees: the belt rendered through the homography (supersampled 2x and area-averaged, as a
sensor integrates light), then the camera's own gain and colour cast, sensor noise and JPEG.

``Scene.topdown`` renders the belt top-down through any similarity (or homography) belt mm -> image
pixels: the ground truth a calibrated panorama is compared with. ``Scene.photometric`` applies one
camera's gain and colour cast to such a render, so a slot of the panorama can be compared with what
that camera makes of the truth.

    scene = Scene(default_cameras(), [BoardPlacement(BoardSpec(), 300, 160)])
    frames = scene.frames()                     # camera name -> BGR frame (decoded JPEG)
    jpegs = scene.jpegs()                       # camera name -> JPEG bytes, e.g. for a fake ESP32-CAM
    truth = scene.topdown(pano_from_belt, (2000, 300))

Conventions match zmqcam's remap: pixel centres at integer coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
import simplejpeg

from zmqcam.calibration.board import MARGIN_MM, BoardSpec, board_image

__all__ = [
    "BELT_MM",
    "BoardPlacement",
    "Scene",
    "SceneCamera",
    "chain_placements",
    "default_cameras",
    "default_sheets",
    "similarity",
]

#: (length along the belt, width across it) in mm
BELT_MM = (1500.0, 400.0)
#: resolution of the belt texture; finer than any camera here sees (about 2 px per mm)
TEXTURE_PX_PER_MM = 4.0
#: what a camera sees beyond the belt
FLOOR_BGR = (40, 40, 40)
#: printed paper and toner, not the ideal 255 and 0: the brightest camera must not clip
PAPER = 205
INK = 30
#: camera frames and top-down renders are rendered this many times finer, then area-averaged
_SUPERSAMPLE = 2
#: boards are drawn into the texture this many times finer than the texture, then area-averaged
_BOARD_SUPERSAMPLE = 4


def similarity(angle_deg: float, tx: float, ty: float, scale: float = 1.0) -> np.ndarray:
    """3x3: rotate by ``angle_deg`` (clockwise on screen, as y points down), scale, then translate."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    return np.array([[c, -s, tx], [s, c, ty], [0.0, 0.0, 1.0]])


def _supersampled(h: np.ndarray) -> np.ndarray:
    """``h`` (-> pixels) followed by the map to the pixels of a ``_SUPERSAMPLE`` times finer image whose
    area average is the original: fine pixel centres k*S .. k*S+S-1 average to coarse centre k."""
    s = float(_SUPERSAMPLE)
    return np.array([[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2], [0.0, 0.0, 1.0]]) @ h


@dataclass(frozen=True)
class BoardPlacement:
    """A printed sheet lying on the belt: the board's centre at (x_mm, y_mm), turned ``angle_deg``."""

    spec: BoardSpec
    x_mm: float
    y_mm: float
    angle_deg: float = 0.0

    @property
    def belt_from_board(self) -> np.ndarray:
        """3x3: board mm (see ``zmqcam.calibration.board``) -> belt mm."""
        w, h = self.spec.size_mm
        to_centre = np.array([[1.0, 0.0, -w / 2], [0.0, 1.0, -h / 2], [0.0, 0.0, 1.0]])
        return similarity(self.angle_deg, self.x_mm, self.y_mm) @ to_centre


@dataclass(frozen=True)
class SceneCamera:
    """A pinhole camera over the belt (no lens distortion), at (x_mm, y_mm), ``height_mm`` above it.

    Looking straight down with every angle 0, its image x runs along the belt and its y across it.
    ``yaw_deg`` turns it about its optical axis (180: mounted upside down); ``tilt_along_deg`` and
    ``tilt_across_deg`` tip it to look along or across the belt (trapezoid views).
    """

    name: str
    x_mm: float
    y_mm: float
    height_mm: float
    yaw_deg: float = 0.0
    tilt_along_deg: float = 0.0
    tilt_across_deg: float = 0.0
    focal_px: float = 470.0
    size: tuple[int, int] = (640, 480)
    gain: float = 1.0
    #: per channel (B, G, R) factors: the camera's white balance error
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0)
    #: sensor noise, standard deviation in grey levels
    noise: float = 2.0
    jpeg_quality: int = 82

    @property
    def homography(self) -> np.ndarray:
        """3x3: belt mm (z = 0) -> camera pixels (normalised so that [2, 2] is 1)."""
        yaw, along, across = (math.radians(v) for v in (self.yaw_deg, self.tilt_along_deg, self.tilt_across_deg))
        rz = np.array([[math.cos(yaw), -math.sin(yaw), 0], [math.sin(yaw), math.cos(yaw), 0], [0, 0, 1]])
        ry = np.array([[math.cos(along), 0, math.sin(along)], [0, 1, 0], [-math.sin(along), 0, math.cos(along)]])
        rx = np.array([[1, 0, 0], [0, math.cos(across), -math.sin(across)], [0, math.sin(across), math.cos(across)]])
        # world: x along, y across, z down into the belt; the camera's axes: x right, y down, z forward
        r = rx @ ry @ rz
        centre = np.array([self.x_mm, self.y_mm, -self.height_mm])
        w, h = self.size
        k = np.array([[self.focal_px, 0, (w - 1) / 2], [0, self.focal_px, (h - 1) / 2], [0, 0, 1]])
        m = k @ np.column_stack([r[:, 0], r[:, 1], -r @ centre])
        return m / m[2, 2]


def default_cameras() -> list[SceneCamera]:
    """Four 640x480 cameras over the belt, as the original deployment: neighbours overlapping by a few
    centimetres, cam1 mounted upside down, each a little tilted, each with its own gain and cast."""
    return [
        SceneCamera("cam0", 320, 202, 262, 2.0, -3.0, 7.0, gain=1.08, cast=(0.94, 1.0, 1.06)),
        SceneCamera("cam1", 605, 192, 270, 181.5, 4.0, -6.0, gain=0.86, cast=(1.08, 1.0, 0.93)),
        SceneCamera("cam2", 890, 206, 255, -2.5, 2.0, 9.0, gain=1.0, cast=(1.0, 1.0, 1.0)),
        SceneCamera("cam3", 1175, 196, 266, 1.5, 3.0, -3.0, gain=1.12, cast=(0.92, 1.0, 1.04)),
    ]


#: how each sheet lies askew, in turn (degrees)
_ASKEW = (0.8, -1.2, 0.4, -0.6)


def default_sheets(cameras: Sequence[SceneCamera] | None = None, spec: BoardSpec | None = None) -> list[BoardPlacement]:
    """Sheets end to end along the rig, as a user covers a long rig: one across each pair of
    neighbours' overlap and one at each end, each with its own markers and laid a little askew. Every
    camera sees most of its view covered by two sheets, no sheet is seen by more than two cameras,
    and one set of frames calibrates the whole rig. With the default cameras (285 mm apart) the
    272 mm boards lie 13 mm apart, their paper margins overlapping."""
    cameras = default_cameras() if cameras is None else cameras
    spec = spec or BoardSpec()
    xs = [c.x_mm for c in cameras]
    ys = [c.y_mm for c in cameras]
    step = (xs[-1] - xs[0]) / max(1, len(xs) - 1) if len(xs) > 1 else spec.size_mm[0] + 13.0
    centres = [(xs[0] - step / 2, ys[0])]
    centres += [((a + b) / 2, (c + d) / 2) for a, b, c, d in zip(xs, xs[1:], ys, ys[1:], strict=False)]
    centres.append((xs[-1] + step / 2, ys[-1]))
    return [BoardPlacement(spec.for_sheet(k), x, y, _ASKEW[k % len(_ASKEW)]) for k, (x, y) in enumerate(centres)]


def chain_placements(
    cameras: Sequence[SceneCamera] | None = None, spec: BoardSpec | None = None
) -> list[list[BoardPlacement]]:
    """One placement per pair of neighbours, as a user with one sheet does it: the same sheet laid
    across one overlap after the other. Returns the boards of each placement (one frame set each)."""
    across = default_sheets(cameras, spec)[1:-1]
    return [[replace(p, spec=p.spec.for_sheet(0))] for p in across]


@lru_cache(maxsize=2)
def _belt_texture(seed: int) -> np.ndarray:
    """The belt without boards (BGR uint8 at ``TEXTURE_PX_PER_MM``), read-only, cached."""
    rng = np.random.default_rng(seed)
    width, height = round(BELT_MM[0] * TEXTURE_PX_PER_MM), round(BELT_MM[1] * TEXTURE_PX_PER_MM)
    # smooth colour fields from 80 mm down to 2.5 mm, made at 1 px per mm (fast), then upsampled
    coarse_size = (round(BELT_MM[0]), round(BELT_MM[1]))
    coarse = np.zeros((coarse_size[1], coarse_size[0], 3), np.float32)
    coarse[:] = (110, 118, 112)
    for scale_mm, amplitude in ((80.0, 28.0), (25.0, 20.0), (6.0, 14.0), (2.5, 12.0)):
        cells = (max(2, round(BELT_MM[1] / scale_mm)), max(2, round(BELT_MM[0] / scale_mm)))
        field_ = rng.normal(0.0, amplitude, (*cells, 3)).astype(np.float32)
        coarse += cv2.resize(field_, coarse_size, interpolation=cv2.INTER_CUBIC)
    texture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    image = np.clip(texture, 0, 255).astype(np.uint8)
    # shapes with sharp edges: what a seam off by a pixel breaks visibly
    px = TEXTURE_PX_PER_MM
    shift = 4  # sub-pixel drawing: 1/16 px
    one = 1 << shift
    area = BELT_MM[0] * BELT_MM[1]
    for _ in range(int(area / 250)):
        color = tuple(int(c) for c in rng.integers(20, 200, 3))
        x, y = rng.uniform(0, BELT_MM[0]), rng.uniform(0, BELT_MM[1])
        size = rng.uniform(1.5, 10.0)
        kind = rng.integers(0, 3)
        centre = (round(x * px * one), round(y * px * one))
        if kind == 0:
            cv2.circle(image, centre, round(size * px * one), color, -1, cv2.LINE_AA, shift)
        elif kind == 1:
            angle = rng.uniform(0, 360)
            box = cv2.boxPoints(((x * px, y * px), (size * px, rng.uniform(0.3, 1.0) * size * px), angle))
            cv2.fillPoly(image, [np.round(box * one).astype(np.int32)], color, cv2.LINE_AA, shift)
        else:
            dx, dy = rng.normal(0, 3 * size, 2)
            end = (round((x + dx) * px * one), round((y + dy) * px * one))
            cv2.line(image, centre, end, color, max(1, round(rng.uniform(0.4, 1.5) * px)), cv2.LINE_AA, shift)
    image.flags.writeable = False
    return image


def _draw_board(texture: np.ndarray, placement: BoardPlacement) -> None:
    """Lay the printed sheet (board and white margin) on ``texture``, antialiased."""
    spec = placement.spec
    fine = TEXTURE_PX_PER_MM * _BOARD_SUPERSAMPLE
    board = board_image(spec, fine)
    bh, bw = board.shape
    margin = round(MARGIN_MM * fine)
    sheet = np.full((bh + 2 * margin, bw + 2 * margin), 255, np.uint8)
    sheet[margin : margin + bh, margin : margin + bw] = board
    sheet = (INK + sheet.astype(np.float32) * ((PAPER - INK) / 255.0)).astype(np.float32)
    # sheet pixel -> board mm -> belt mm -> fine texture pixel
    board_from_sheet = np.array(
        [[1 / fine, 0, -MARGIN_MM + 0.5 / fine], [0, 1 / fine, -MARGIN_MM + 0.5 / fine], [0, 0, 1]]
    )
    fine_from_belt = np.array([[fine, 0, -0.5], [0, fine, -0.5], [0, 0, 1]])
    m = fine_from_belt @ placement.belt_from_board @ board_from_sheet
    corners = np.array([[0, 0], [sheet.shape[1], 0], [sheet.shape[1], sheet.shape[0]], [0, sheet.shape[0]]], np.float64)
    mapped = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), m).reshape(-1, 2) / _BOARD_SUPERSAMPLE
    th, tw = texture.shape[:2]
    x0, y0 = (max(0, int(v) - 2) for v in mapped.min(axis=0))
    x1, y1 = min(tw, int(mapped[:, 0].max()) + 3), min(th, int(mapped[:, 1].max()) + 3)
    if x0 >= x1 or y0 >= y1:
        return
    s = _BOARD_SUPERSAMPLE
    shift = np.array([[1, 0, -x0 * s], [0, 1, -y0 * s], [0, 0, 1]], np.float64)
    size = ((x1 - x0) * s, (y1 - y0) * s)
    warped = cv2.warpAffine(sheet, (shift @ m)[:2], size, flags=cv2.INTER_LINEAR, borderValue=-1.0)
    coverage = cv2.resize((warped >= 0).astype(np.float32), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    value = cv2.resize(np.maximum(warped, 0), (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    region = texture[y0:y1, x0:x1].astype(np.float32)
    # paper is grey: the same value in every channel; where the sheet covers part of a pixel, mix
    ink = value / np.maximum(coverage, 1e-6)
    mixed = region * (1 - coverage[..., None]) + (ink * coverage)[..., None]
    texture[y0:y1, x0:x1] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Scene:
    """The belt with ``boards`` on it, seen by ``cameras``. ``seed`` fixes the texture and the noise."""

    cameras: Sequence[SceneCamera] = field(default_factory=default_cameras)
    boards: Sequence[BoardPlacement] = ()
    seed: int = 15

    def __post_init__(self) -> None:
        texture = _belt_texture(self.seed).copy()
        for placement in self.boards:
            _draw_board(texture, placement)
        texture.flags.writeable = False
        self.texture = texture
        px = TEXTURE_PX_PER_MM
        #: 3x3: texture pixel -> belt mm (pixel centres at integers)
        self.belt_from_texture = np.array([[1 / px, 0, 0.5 / px], [0, 1 / px, 0.5 / px], [0, 0, 1.0]])

    def camera(self, name: str) -> SceneCamera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(name)

    def _render(self, image_from_belt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The belt through ``image_from_belt`` into a ``size`` image, supersampled and area-averaged."""
        s = _SUPERSAMPLE
        m = _supersampled(image_from_belt) @ self.belt_from_texture
        fine = cv2.warpPerspective(
            self.texture, m, (size[0] * s, size[1] * s), flags=cv2.INTER_LINEAR, borderValue=FLOOR_BGR
        )
        return cv2.resize(fine, size, interpolation=cv2.INTER_AREA)

    def clean_view(self, name: str) -> np.ndarray:
        """What camera ``name`` sees, before gain, cast, noise and JPEG."""
        cam = self.camera(name)
        return self._render(cam.homography, cam.size)

    def photometric(self, name: str, image: np.ndarray) -> np.ndarray:
        """``image`` with camera ``name``'s gain and colour cast (no noise): how it renders the truth."""
        cam = self.camera(name)
        factors = np.asarray(cam.cast, np.float32) * cam.gain
        return np.clip(image.astype(np.float32) * factors + 0.5, 0, 255).astype(np.uint8)

    def jpeg(self, name: str, frame: int = 0) -> bytes:
        """Frame number ``frame`` of camera ``name`` as the camera sends it: its gain and cast, fresh
        sensor noise (different for every frame number, the same for the same number) and JPEG."""
        cam = self.camera(name)
        index = [c.name for c in self.cameras].index(name)
        rng = np.random.default_rng((self.seed, index, frame))
        factors = np.asarray(cam.cast, np.float32) * cam.gain
        image = self.clean_view(name).astype(np.float32) * factors
        image += np.asarray(rng.normal(0.0, cam.noise, image.shape), np.float32)
        pixels = np.clip(image + 0.5, 0, 255).astype(np.uint8)
        return simplejpeg.encode_jpeg(pixels, quality=cam.jpeg_quality, colorspace="BGR", colorsubsampling="420")

    def frame(self, name: str, frame: int = 0) -> np.ndarray:
        """``jpeg(name, frame)`` decoded (BGR)."""
        return simplejpeg.decode_jpeg(self.jpeg(name, frame), colorspace="BGR")

    def jpegs(self, frame: int = 0) -> dict[str, bytes]:
        """Camera name -> JPEG bytes of frame number ``frame``."""
        return {cam.name: self.jpeg(cam.name, frame) for cam in self.cameras}

    def frames(self, frame: int = 0) -> dict[str, np.ndarray]:
        """Camera name -> BGR frame number ``frame``."""
        return {cam.name: self.frame(cam.name, frame) for cam in self.cameras}

    def topdown(self, image_from_belt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """The ground truth: the belt seen from straight above through ``image_from_belt`` (3x3, belt mm
        -> pixels of a ``size`` = (width, height) image), no camera in between."""
        return self._render(np.asarray(image_from_belt, np.float64), size)
