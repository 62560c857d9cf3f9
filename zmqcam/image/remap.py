"""Stitching as one remap per camera (README, "How it works": "Stitching is one `cv2.remap` per camera").

The original pipeline, per camera::

    img = cv2.rotate(img, rotate)                       # 0 / 90 (clockwise) / 180 / 270 (= 90 counter-clockwise)
    M = cv2.getPerspectiveTransform(src, [(0, 0), (0, h), (w, h), (w, 0)])
    dst = cv2.warpPerspective(img, M, (w, h))           # INTER_LINEAR, BORDER_CONSTANT black
    slice = dst[:, front:back]

and then ``cv2.hconcat`` of every slice. Rotation, homography and crop compose into a single inverse
map from each pixel of the camera's panorama slice to a pixel of the *unrotated* camera frame, so a
frame becomes its slice with one ``cv2.remap`` written straight into the preallocated panorama.

Conventions: pixel centres are at integer coordinates (as in every OpenCV warp), ``rotate`` is in
degrees *clockwise* (``cv2.ROTATE_90_CLOCKWISE`` for 90, ``cv2.ROTATE_90_COUNTERCLOCKWISE`` for 270),
and the perspective quad ``src`` is given in pixels of the rotated frame of the configured ``size``,
corners top-left, bottom-left, bottom-right, top-right.

Everything here is pure numpy/OpenCV: no sockets, no threads.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from zmqcam.config.models import CameraConfig, Slot, panorama_slots
from zmqcam.image.blend import DEFAULT_FEATHER_PX, Feather, seam_bands
from zmqcam.image.cards import no_signal_card
from zmqcam.image.exposure import GainCompensator

__all__ = [
    "CV2_ROTATE",
    "PanoramaComposer",
    "Slot",
    "SlotMap",
    "build_slot_map",
    "camera_view_map",
    "homography",
    "rotated_size",
    "scaled_quad",
    "slot_map_for",
]

log = logging.getLogger(__name__)

#: ``rotate`` (degrees clockwise) -> the ``cv2.rotate`` code that turns a frame that way
CV2_ROTATE = {
    90: cv2.ROTATE_90_CLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_COUNTERCLOCKWISE,
}

# maps kept per slot: the configured size plus the most recent other sizes
_MAX_MAPS_PER_SLOT = 4

#: with gains but no overlap known, a seam's neighbours are compared on this many columns each side
GAIN_STRIP_PX = 4

# coordinates are clipped to this before the int16 fixed-point conversion; anything beyond the frame
# by more than a pixel samples only the (black) border, so the exact value does not matter
_FAR = 30000.0


def _check_rotate(rotate: int) -> None:
    if rotate not in (0, 90, 180, 270):
        raise ValueError(f"rotate must be 0, 90, 180 or 270 (degrees clockwise), got {rotate!r}")


def rotated_size(frame_size: tuple[int, int], rotate: int) -> tuple[int, int]:
    """(width, height) of a ``frame_size`` frame after rotating it ``rotate`` degrees clockwise."""
    _check_rotate(rotate)
    w, h = frame_size
    return (h, w) if rotate in (90, 270) else (w, h)


def homography(src: Sequence[Sequence[float]], width: int, height: int) -> np.ndarray:
    """The original's perspective matrix: the quad ``src`` (TL, BL, BR, TR) -> the ``width`` x ``height``
    rectangle, exactly as the original computed it (``cv2.getPerspectiveTransform`` on float32)."""
    quad = np.asarray(src, dtype=np.float32).reshape(4, 2)
    rect = np.array([(0, 0), (0, height), (width, height), (width, 0)], dtype=np.float32)
    return np.asarray(cv2.getPerspectiveTransform(quad, rect), dtype=np.float64)


def scaled_quad(
    src: Sequence[Sequence[float]], rotate: int, expected: tuple[int, int], actual: tuple[int, int]
) -> list[list[float]]:
    """The quad ``src`` (pixels of the rotated ``expected``-size frame) rescaled for an ``actual``-size
    frame (both sizes unrotated (width, height)): the same scene region in the new resolution."""
    ew, eh = rotated_size(expected, rotate)
    aw, ah = rotated_size(actual, rotate)
    sx, sy = aw / ew, ah / eh
    return [[float(x) * sx, float(y) * sy] for x, y in src]


def _unrotate(u: np.ndarray, v: np.ndarray, rotate: int, frame_size: tuple[int, int]):
    """Coordinates (u, v) in the rotated frame -> (x, y) in the original ``frame_size`` frame.

    Exact inverses of cv2.rotate on pixel centres: ROTATE_90_CLOCKWISE is dst(u, v) = src(v, H-1-u),
    ROTATE_180 is dst(u, v) = src(W-1-u, H-1-v), ROTATE_90_COUNTERCLOCKWISE is dst(u, v) = src(W-1-v, u).
    """
    w, h = frame_size
    if rotate == 0:
        return u, v
    if rotate == 90:
        return v, (h - 1) - u
    if rotate == 180:
        return (w - 1) - u, (h - 1) - v
    return (w - 1) - v, u  # 270


def _rotate_forward(x: np.ndarray, y: np.ndarray, rotate: int, frame_size: tuple[int, int]):
    """Coordinates (x, y) in the original ``frame_size`` frame -> (u, v) in the rotated frame."""
    w, h = frame_size
    if rotate == 0:
        return x, y
    if rotate == 90:
        return (h - 1) - y, x
    if rotate == 180:
        return (w - 1) - x, (h - 1) - y
    return y, (w - 1) - x  # 270


@dataclass(frozen=True, slots=True)
class SlotMap:
    """The fixed-point inverse map of one camera's panorama slice, for frames of ``frame_size``.

    ``map1`` (CV_16SC2, integer source coordinates) and ``map2`` (CV_16UC1, 1/32 pixel fractions) come
    from ``cv2.convertMaps``: the same fixed-point arithmetic ``cv2.warpPerspective`` uses.
    """

    map1: np.ndarray
    map2: np.ndarray
    #: the (width, height) of the unrotated camera frames this map reads
    frame_size: tuple[int, int]

    @property
    def out_size(self) -> tuple[int, int]:
        """(width, height) of the slice this map produces."""
        h, w = self.map1.shape[:2]
        return w, h

    def apply(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Remap ``frame`` into ``out`` (a height x (back-front) x 3 uint8 array, typically the view
        ``pano[:, x0:x1]``) and return ``out``.

        ``cv2.remap(..., dst=view)`` writes into the view in place, even though a column slice of the
        panorama is not contiguous (its rows are strided): OpenCV wraps the numpy view as a Mat with a
        row step, and a Mat of the right size and type is used as is. Measured with OpenCV 5.0: no
        reallocation, no copy, and it is as fast as remapping into a contiguous buffer. OpenCV would
        silently return a *new* array if ``out`` had the wrong shape or dtype, so that case is
        detected and copied rather than lost.
        """
        result = cv2.remap(frame, self.map1, self.map2, cv2.INTER_LINEAR, dst=out, borderMode=cv2.BORDER_CONSTANT)
        if result is not out:  # pragma: no cover - only with a mis-shaped ``out``
            np.copyto(out, result.reshape(out.shape))
        return out


def build_slot_map(
    rotate: int,
    src: Sequence[Sequence[float]],
    width: int,
    height: int,
    front: int,
    back: int,
    frame_size: tuple[int, int],
) -> SlotMap:
    """Compose rotation, perspective and crop into one inverse map.

    For each pixel (j, i) of the camera's panorama slice (``height`` x ``back - front``) the map holds
    the coordinates in the unrotated camera frame (``frame_size`` = (width, height)) that the original
    pipeline would sample: warped (front + j, i) -> inverse homography -> rotated frame (u, v) ->
    inverse rotation -> original frame (x, y). Computed in float64, stored in OpenCV's fixed point.
    """
    _check_rotate(rotate)
    if not 0 <= front < back:
        raise ValueError(f"need 0 <= front < back, got front={front}, back={back}")
    m_inv = np.linalg.inv(homography(src, width, height))
    xs = np.arange(front, back, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)[:, None]
    den = m_inv[2, 0] * xs + m_inv[2, 1] * ys + m_inv[2, 2]
    # a zero denominator is the horizon line of the homography: never inside a convex quad's image,
    # but keep it finite and outside the frame rather than dividing by zero
    far = np.abs(den) < 1e-12
    den = np.where(far, 1.0, den)
    u = (m_inv[0, 0] * xs + m_inv[0, 1] * ys + m_inv[0, 2]) / den
    v = (m_inv[1, 0] * xs + m_inv[1, 1] * ys + m_inv[1, 2]) / den
    x, y = _unrotate(u, v, rotate, frame_size)
    x = np.where(far, -_FAR, np.clip(x, -_FAR, _FAR)).astype(np.float32)
    y = np.where(far, -_FAR, np.clip(y, -_FAR, _FAR)).astype(np.float32)
    map1, map2 = cv2.convertMaps(x, y, cv2.CV_16SC2)
    return SlotMap(map1, map2, (int(frame_size[0]), int(frame_size[1])))


def slot_map_for(
    camera: CameraConfig, frame_size: tuple[int, int] | None = None, columns: tuple[int, int] | None = None
) -> SlotMap:
    """``build_slot_map`` for a camera config. ``frame_size`` (unrotated (width, height)) defaults to the
    configured ``size``; for any other size the quad is rescaled (it is in pixels of ``size``).
    ``columns`` [first, end) of the warped image default to the crop (a seam band reads others)."""
    expected = (int(camera.size[0]), int(camera.size[1]))
    actual = expected if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
    geo = camera.geometry
    src = geo.src if actual == expected else scaled_quad(geo.src, camera.rotate, expected, actual)
    front, back = camera.crop_range if columns is None else columns
    return build_slot_map(camera.rotate, src, geo.width, geo.height, front, back, actual)


def camera_view_map(
    camera: CameraConfig, frame_size: tuple[int, int] | None = None, slot_x0: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The forward map of a (synthetic) camera: for every pixel of its unrotated frame, the panorama /
    scene coordinate it sees. ``cv2.remap(scene, mapx, mapy, cv2.INTER_LINEAR)`` then renders what the
    camera would see, and stitching such frames reconstructs the scene.

    pixel (x, y) -> rotate -> (u, v) -> homography -> warped (X, Y) -> scene (slot_x0 + X - front, Y).
    Pixels on or behind the homography's horizon (they see nothing of the scene plane) get -1e6.
    Returns float32 (mapx, mapy) of shape (frame height, frame width).
    """
    expected = (int(camera.size[0]), int(camera.size[1]))
    actual = expected if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
    geo = camera.geometry
    src = geo.src if actual == expected else scaled_quad(geo.src, camera.rotate, expected, actual)
    m = homography(src, geo.width, geo.height)
    fw, fh = actual
    x = np.arange(fw, dtype=np.float64)
    y = np.arange(fh, dtype=np.float64)[:, None]
    u, v = _rotate_forward(x, y, camera.rotate, actual)
    u, v = np.broadcast_to(u, (fh, fw)), np.broadcast_to(v, (fh, fw))
    den = m[2, 0] * u + m[2, 1] * v + m[2, 2]
    # the quad's interior has den > 0 (it maps onto the rectangle); den <= 0 is beyond the horizon
    behind = den <= 1e-9
    den = np.where(behind, 1.0, den)
    front = camera.crop_range[0]
    sx = (m[0, 0] * u + m[0, 1] * v + m[0, 2]) / den + (slot_x0 - front)
    sy = (m[1, 0] * u + m[1, 1] * v + m[1, 2]) / den
    mapx = np.where(behind, -1e6, np.clip(sx, -1e6, 1e6)).astype(np.float32)
    mapy = np.where(behind, -1e6, np.clip(sy, -1e6, 1e6)).astype(np.float32)
    return mapx, mapy


def _keep(maps: dict[tuple[int, int], SlotMap], frame_size: tuple[int, int], smap: SlotMap) -> SlotMap:
    """``smap`` cached in ``maps`` (one slot's or band's maps by frame size), which stays bounded: a
    camera cycling through sizes must not grow memory, so the oldest extra size is forgotten (dicts
    keep insertion order; the first map, the configured size's as a rule, stays)."""
    if len(maps) >= _MAX_MAPS_PER_SLOT:
        del maps[list(maps)[1]]
    maps[frame_size] = smap
    return smap


class PanoramaComposer:
    """Stitch frames of the given cameras, left to right, into one preallocated panorama.

    Maps for the configured ``size`` of each camera are built here; a frame of another size (the
    camera switched resolution) gets its own map built on first sight (logged once per camera and
    size) and kept (a few sizes per camera). ``compose`` never raises on frame content: a missing or
    unusable frame shows the slot's NO SIGNAL card.

    ``compose`` returns the *same* buffer every time, overwritten in place: callers must copy it, or
    be done with it (e.g. have JPEG-encoded it), before the next ``compose``.

    ``seam`` "feather" blends each seam with an overlap across a band (``zmqcam.image.blend``);
    ``exposure`` "gain" applies per camera gains estimated from the overlaps (``zmqcam.image.exposure``;
    with no overlap known, from ``GAIN_STRIP_PX`` columns each side of each seam). With "cut" and
    "off" the panorama is exactly the remapped slots, as it always was.
    """

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        *,
        seam: str = "cut",
        feather_px: int = DEFAULT_FEATHER_PX,
        exposure: str = "off",
    ) -> None:
        if not cameras:
            raise ValueError("a panorama needs at least one camera")
        self.cameras = list(cameras)
        height = self.cameras[0].geometry.height
        for cam in self.cameras:
            if cam.geometry.height != height:
                raise ValueError(
                    f"all stitched cameras need the same height ({self.cameras[0].name} has {height}, "
                    f"{cam.name} has {cam.geometry.height})"
                )
        self.slots: tuple[Slot, ...] = panorama_slots(self.cameras)
        x = self.slots[-1].x1
        #: (width, height) of the panorama
        self.size = (x, height)
        self._pano = np.zeros((height, x, 3), np.uint8)
        self._views = [self._pano[:, s.x0 : s.x1] for s in self.slots]
        # per slot: frame size (w, h) -> map; the configured size is built now
        self._maps: list[dict[tuple[int, int], SlotMap]] = [
            {(int(c.size[0]), int(c.size[1])): slot_map_for(c)} for c in self.cameras
        ]
        self._cards: list[np.ndarray | None] = [None] * len(self.slots)
        self._warned: set[tuple[int, str]] = set()
        self._seen_sizes: set[tuple[int, tuple[int, int]]] = set()
        self.feather = seam == "feather"
        #: the gains, None with exposure "off"
        self.gains = GainCompensator(len(self.cameras)) if exposure == "gain" else None
        bands = (
            seam_bands(self.cameras, self.slots, feather_px, margins=self.feather) if self.feather or self.gains else []
        )
        self._bands = [Feather(b, height) for b in bands]
        # per band and side (0 left camera, 1 right): frame size -> map of the band's columns
        self._band_maps: list[tuple[dict[tuple[int, int], SlotMap], ...]] = [({}, {}) for _ in bands]

    @property
    def panorama(self) -> np.ndarray:
        """The shared output buffer (what ``compose`` returns)."""
        return self._pano

    def card(self, index: int) -> np.ndarray:
        """The NO SIGNAL card of slot ``index`` (rendered once, cached)."""
        card = self._cards[index]
        if card is None:
            slot = self.slots[index]
            card = no_signal_card(slot.x1 - slot.x0, self.size[1], slot.name)
            card.flags.writeable = False
            self._cards[index] = card
        return card

    def slot_map(self, index: int, frame_size: tuple[int, int]) -> SlotMap:
        """The map of slot ``index`` for frames of ``frame_size`` (built and cached on first use)."""
        maps = self._maps[index]
        smap = maps.get(frame_size)
        if smap is None:
            cam = self.cameras[index]
            if (index, frame_size) not in self._seen_sizes:
                self._seen_sizes.add((index, frame_size))
                log.warning(
                    "camera %s: frame size %dx%d differs from the configured %dx%d; rescaling its geometry",
                    cam.name,
                    frame_size[0],
                    frame_size[1],
                    cam.size[0],
                    cam.size[1],
                )
            smap = _keep(maps, frame_size, slot_map_for(cam, frame_size))
        return smap

    def compose(self, frames: Sequence[np.ndarray | None], now: float | None = None) -> np.ndarray:
        """Remap each camera's frame (BGR uint8, any size; None when missing) into its slot and return
        the panorama buffer (shared: see the class docstring). ``now`` (seconds, monotonic; default
        the clock) paces the gains' smoothing."""
        if len(frames) != len(self.slots):
            raise ValueError(f"expected {len(self.slots)} frames (one per stitched camera), got {len(frames)}")
        usable: list[np.ndarray | None] = [None] * len(self.slots)
        for i, frame in enumerate(frames):
            view = self._views[i]
            image = None if frame is None else self._usable(i, frame)
            if image is None:
                np.copyto(view, self.card(i))
                continue
            h, w = image.shape[:2]
            self.slot_map(i, (w, h)).apply(image, view)
            usable[i] = image
        if self._bands or self.gains is not None:
            self._finish_seams(usable, time.monotonic() if now is None else now)
        return self._pano

    def _band_map(self, index: int, right: bool, frame_size: tuple[int, int]) -> SlotMap:
        feather = self._bands[index]
        camera = feather.band.left + int(right)
        maps = self._band_maps[index][int(right)]
        smap = maps.get(frame_size)
        if smap is None:
            columns = feather.band.columns(self.cameras[camera], right)
            smap = _keep(maps, frame_size, slot_map_for(self.cameras[camera], frame_size, columns))
        return smap

    def _finish_seams(self, images: list[np.ndarray | None], now: float) -> None:
        """Seams and gains, after every slot has its camera's remapped pixels: each band remapped
        from both its cameras, the overlaps measured (before any gain), the gains updated and
        applied, then the bands blended over the cut. A seam next to a missing camera stays a cut."""
        gains = self.gains
        blended = []
        for k, feather in enumerate(self._bands):
            band = feather.band
            left, right = images[band.left], images[band.left + 1]
            if left is None or right is None:
                continue
            self._band_map(k, False, (left.shape[1], left.shape[0])).apply(left, feather.left)
            self._band_map(k, True, (right.shape[1], right.shape[0])).apply(right, feather.right)
            blended.append(feather)
            if gains is not None:
                gains.observe(band.left, cv2.mean(feather.left), cv2.mean(feather.right))
        if gains is not None:
            if not self._bands:
                self._observe_strips(gains, images)
            gains.update(now)
            for i, image in enumerate(images):
                if image is not None:
                    gains.apply(i, self._views[i])
            for feather in blended:
                gains.apply(feather.band.left, feather.left)
                gains.apply(feather.band.left + 1, feather.right)
        if self.feather:
            for feather in blended:
                feather.blend(self._pano[:, feather.band.x0 : feather.band.x1])

    def _observe_strips(self, gains: GainCompensator, images: list[np.ndarray | None]) -> None:
        """No overlap known: compare the columns on each side of each seam (neighbouring belt, if not
        the same), as asked for with ``stitch.exposure = "gain"``."""
        for k in range(len(self.slots) - 1):
            if images[k] is None or images[k + 1] is None:
                continue
            seam = self.slots[k].x1
            strip = min(GAIN_STRIP_PX, seam - self.slots[k].x0, self.slots[k + 1].x1 - seam)
            left = cv2.mean(self._pano[:, seam - strip : seam])
            right = cv2.mean(self._pano[:, seam : seam + strip])
            gains.observe(k, left, right)

    def _usable(self, index: int, frame: np.ndarray) -> np.ndarray | None:
        """``frame`` as 3-channel uint8 BGR, or None (logged once per kind of problem) if unusable."""
        problem = None
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            problem = f"unsupported frame type {getattr(frame, 'dtype', type(frame).__name__)}"
        elif frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.ndim == 3 and frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        elif frame.ndim != 3 or frame.shape[2] != 3:
            problem = f"unsupported frame shape {frame.shape}"
        if problem is None and (frame.shape[0] == 0 or frame.shape[1] == 0):
            problem = "empty frame"
        if problem is None:
            return frame
        key = (index, problem)
        if key not in self._warned:
            self._warned.add(key)
            log.warning("camera %s: %s; showing NO SIGNAL", self.slots[index].name, problem)
        return None
