"""A synthetic camera: a virtual camera looking at a moving synthetic scene.

The scene is one infinite plane in *panorama coordinates*: scene pixel (x, y) is what the stitched
panorama shows at column x, row y (the panorama is rows 0 .. height-1 of it). Each camera sees it
through the inverse of its configured rotation and perspective (``zmqcam.image.remap.camera_view_map``),
so stitching the synthetic cameras' frames with their own config reconstructs the scene: the
built-in default config shows a working panorama with no hardware at all, and tests can compare the
panorama with the ground truth ``render_scene``.

A camera only knows its own config, not where its slot starts in the panorama, so the constructor
takes ``scene_offset`` (the slot's x0; ``scene_offsets(config)`` computes them for a rig).

Scene content is a pure function of (x, y, t): smooth gradients and a soft texture, static landmarks
and a scale of scene x positions (rendered once per window and cached), and moving things drawn per
frame: cars in two lanes, bouncing balls and a big clock (HH:MM:SS.cc) repeated every
``CLOCK_PERIOD`` pixels so every camera sees one. The camera name and its frame counter are an
on-screen display drawn on the *camera frame*, like a real IP camera's overlay, in a corner that the
panorama does not use when the geometry leaves one free (it does for the original deployment).

Per frame cost: copy the cached background of the camera's window, draw the moving things that
intersect it, one fixed-point ``cv2.remap`` to the frame size and the overlay: about 1-2 ms at
640x480.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import cv2
import numpy as np

from zmqcam.config.models import panorama_slots
from zmqcam.errors import SourceError
from zmqcam.image.remap import camera_view_map
from zmqcam.sources.base import Source, SourceFrame

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig, Config

__all__ = ["CLOCK_PERIOD", "SCENE_PERIOD", "SyntheticSource", "render_scene", "scene_offsets"]

#: moving things wrap around every SCENE_PERIOD scene pixels
SCENE_PERIOD = 3000
#: the clock is repeated every CLOCK_PERIOD scene pixels
CLOCK_PERIOD = 480
#: what a camera sees where its view leaves the rendered part of the scene (far above / below)
FOG = (150, 140, 130)

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SHIFT = 4  # sub-pixel bits for the moving shapes
_ONE = 1 << _SHIFT
_BLUR_MARGIN = 8  # the background is blurred; render it this much larger so windows agree at their edges


def scene_offsets(config: Config) -> dict[str, int]:
    """Each stitched camera's slot x0 in the panorama (= its ``scene_offset``), by camera name."""
    return {slot.name: slot.x0 for slot in panorama_slots(config.stitched_cameras)}


# ---------------------------------------------------------------------------------------------
# the scene


def _hash01(i: int, salt: int) -> float:
    """A deterministic pseudo-random number in [0, 1) for integer i."""
    h = (i * 2654435761 + salt * 40503 + 12345) & 0xFFFFFFFF
    h ^= h >> 15
    h = (h * 2246822519) & 0xFFFFFFFF
    h ^= h >> 13
    return h / 2**32


def _background_uncached(width: int, height: int, x_offset: int, y_offset: int) -> np.ndarray:
    m = _BLUR_MARGIN
    x = np.arange(x_offset - m, x_offset + width + m, dtype=np.float32)[None, :]
    y = np.arange(y_offset - m, y_offset + height + m, dtype=np.float32)[:, None]
    tau = np.float32(2 * math.pi)
    # slow colour gradients plus a soft, mid-frequency texture (periods of tens of pixels)
    texture = 14 * np.sin(x * (tau / 37) + 2.0 * np.sin(y * (tau / 53))) * np.cos(y * (tau / 29) - x * (tau / 211))
    b = 115 + 55 * np.sin(x * (tau / 1100) + 0.5) + 30 * np.cos(y * (tau / 420)) + texture
    g = 105 + 45 * np.sin(x * (tau / 730) + 1.7) + 35 * np.sin(y * (tau / 310) + 0.3) - 0.6 * texture
    r = 125 + 60 * np.cos(x * (tau / 1530) - 0.8) + 25 * np.sin(y * (tau / 510) + 1.1) + 0.4 * texture
    canvas = np.empty((height + 2 * m, width + 2 * m, 3), np.uint8)
    for c, plane in enumerate((b, g, r)):
        canvas[:, :, c] = np.clip(np.broadcast_to(plane, canvas.shape[:2]), 0, 255)
    ox, oy = x_offset - m, y_offset - m  # canvas origin in scene coordinates
    # static landmarks, one every 160 px, at deterministic places and colours
    for k in range((x_offset - m - 120) // 160, (x_offset + width + m + 120) // 160 + 1):
        for row in range((y_offset - m - 120) // 300, (y_offset + height + m + 120) // 300 + 1):
            cx = k * 160 + int(_hash01(k, row) * 100)
            cy = row * 300 + 20 + int(_hash01(k, row + 7) * 110)
            color = tuple(int(40 + 200 * _hash01(k, row * 3 + c + 11)) for c in range(3))
            size = 22 + int(_hash01(k, row + 3) * 30)
            kind = int(_hash01(k, row + 5) * 4)
            p = (cx - ox, cy - oy)
            if kind == 0:
                cv2.circle(canvas, p, size, color, -1, cv2.LINE_AA)
            elif kind == 1:
                cv2.rectangle(canvas, (p[0] - size, p[1] - size // 2), (p[0] + size, p[1] + size // 2), color, -1)
            elif kind == 2:
                tri = np.array([(p[0], p[1] - size), (p[0] - size, p[1] + size), (p[0] + size, p[1] + size)])
                cv2.fillConvexPoly(canvas, tri, color, cv2.LINE_AA)
            else:
                cv2.ellipse(canvas, p, (size, size // 2), 30, 0, 360, color, 4, cv2.LINE_AA)
    # a scale of scene x positions along the top of the panorama band: ticks every 50 px, labels every 250
    if oy <= 40 and oy + canvas.shape[0] >= 0:
        for k in range((x_offset - m) // 50 - 1, (x_offset + width + m) // 50 + 2):
            sx = k * 50 - ox
            cv2.line(canvas, (sx, -oy), (sx, (18 if k % 5 == 0 else 9) - oy), (245, 245, 245), 2, cv2.LINE_AA)
            if k % 5 == 0:
                cv2.putText(canvas, str(k * 50), (sx + 4, 34 - oy), _FONT, 0.6, (250, 250, 250), 2, cv2.LINE_AA)
    # soften everything a little, as a lens would: keeps the scene meaningful to compare after resampling
    soft = cv2.GaussianBlur(canvas, (7, 7), 1.2)
    out = np.ascontiguousarray(soft[m : m + height, m : m + width])
    out.flags.writeable = False
    return out


_background = functools.lru_cache(maxsize=16)(_background_uncached)


def _clock_text(t: float) -> str:
    lt = time.localtime(t)
    return f"{lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d}.{int((t % 1) * 100):02d}"


def _wrapped(x: float, lo: int, hi: int, reach: int) -> list[float]:
    """Every position x + k * SCENE_PERIOD that a thing of half-width ``reach`` there makes visible in
    the columns [lo, hi)."""
    first = math.floor((lo - reach - x) / SCENE_PERIOD)
    last = math.floor((hi + reach - x) / SCENE_PERIOD)
    return [x + k * SCENE_PERIOD for k in range(first, last + 1)]


def _fixed(v: float, offset: int) -> int:
    """A scene coordinate as a sub-pixel (``_SHIFT`` bits) coordinate of a window starting at ``offset``,
    rounded in scene coordinates first so every window places a shape at the same sub-pixel position."""
    return round(v * _ONE) - offset * _ONE


# lanes of cars: (y of the car's centre line, speed in px/s, [(phase, colour), ...])
_LANES = (
    (178, 90.0, [(0, (40, 40, 200)), (900, (200, 120, 30)), (1900, (30, 170, 60))]),
    (222, -55.0, [(300, (20, 200, 220)), (1400, (180, 40, 160)), (2300, (220, 220, 220))]),
)
# bouncing balls: (phase, horizontal speed px/s, bounce period s, radius, colour)
_BALLS = ((0, 150.0, 1.7, 16, (0, 140, 255)), (1500, -110.0, 2.3, 12, (255, 80, 80)))


def _draw_moving(img: np.ndarray, t: float, x_offset: int, y_offset: int) -> None:
    h, w = img.shape[:2]
    lo, hi = x_offset, x_offset + w
    if y_offset < 260 and y_offset + h > 150:
        for lane_y, speed, cars in _LANES:
            for phase, color in cars:
                for cx in _wrapped((phase + speed * t) % SCENE_PERIOD, lo, hi, 60):
                    body = np.array(
                        [
                            (_fixed(cx - 48, x_offset), _fixed(lane_y - 8, y_offset)),
                            (_fixed(cx - 36, x_offset), _fixed(lane_y - 20, y_offset)),
                            (_fixed(cx + 30, x_offset), _fixed(lane_y - 20, y_offset)),
                            (_fixed(cx + 48, x_offset), _fixed(lane_y - 6, y_offset)),
                            (_fixed(cx + 48, x_offset), _fixed(lane_y + 10, y_offset)),
                            (_fixed(cx - 48, x_offset), _fixed(lane_y + 10, y_offset)),
                        ],
                        np.int32,
                    )
                    cv2.fillConvexPoly(img, body, color, cv2.LINE_AA, _SHIFT)
                    window = np.array(
                        [
                            (_fixed(cx - 30, x_offset), _fixed(lane_y - 8, y_offset)),
                            (_fixed(cx - 24, x_offset), _fixed(lane_y - 16, y_offset)),
                            (_fixed(cx + 24, x_offset), _fixed(lane_y - 16, y_offset)),
                            (_fixed(cx + 32, x_offset), _fixed(lane_y - 8, y_offset)),
                        ],
                        np.int32,
                    )
                    cv2.fillConvexPoly(img, window, (230, 210, 170), cv2.LINE_AA, _SHIFT)
                    for wx in (cx - 28, cx + 28):
                        centre = (_fixed(wx, x_offset), _fixed(lane_y + 10, y_offset))
                        cv2.circle(img, centre, 9 * _ONE, (30, 30, 30), -1, cv2.LINE_AA, _SHIFT)
    if y_offset < 160 and y_offset + h > 20:
        for phase, speed, period, radius, color in _BALLS:
            by = 140 - 100 * abs(math.sin(math.pi * ((t / period) % 1.0)))
            for bx in _wrapped((phase + speed * t) % SCENE_PERIOD, lo, hi, radius + 2):
                centre = (_fixed(bx, x_offset), _fixed(by, y_offset))
                cv2.circle(img, centre, radius * _ONE, color, -1, cv2.LINE_AA, _SHIFT)
    # the clock, big, every CLOCK_PERIOD pixels; its baseline at scene y = 118
    if y_offset < 135 and y_offset + h > 60:
        text = _clock_text(t)
        for k in range((lo - 400) // CLOCK_PERIOD, hi // CLOCK_PERIOD + 1):
            org = (k * CLOCK_PERIOD + 60 - x_offset, 118 - y_offset)
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_DUPLEX, 1.5, (20, 20, 20), 7, cv2.LINE_AA)
            cv2.putText(img, text, org, cv2.FONT_HERSHEY_DUPLEX, 1.5, (255, 255, 255), 3, cv2.LINE_AA)


def _render_into(img: np.ndarray, t: float, x_offset: int, y_offset: int) -> np.ndarray:
    h, w = img.shape[:2]
    np.copyto(img, _background(w, h, x_offset, y_offset))
    _draw_moving(img, t, x_offset, y_offset)
    return img


def render_scene(width: int, height: int, t: float, x_offset: int = 0, y_offset: int = 0) -> np.ndarray:
    """The scene at time ``t`` (seconds since the epoch) in the window of scene columns
    [x_offset, x_offset + width) and rows [y_offset, y_offset + height), as BGR uint8.

    Pure: the same arguments give the same pixels, and overlapping windows agree where they overlap
    (but for a few anti-aliased edge pixels of a shape that one window clips at its border).
    ``render_scene(*config.pano_size, t)`` is the ground truth a stitched panorama approximates.
    """
    img = np.empty((int(height), int(width), 3), np.uint8)
    return _render_into(img, float(t), int(x_offset), int(y_offset))


# ---------------------------------------------------------------------------------------------
# the source


class _View:
    """What a camera precomputes at open: its scene window, the window -> frame map, the OSD place."""

    def __init__(self, camera: CameraConfig, scene_offset: int) -> None:
        fw, fh = int(camera.size[0]), int(camera.size[1])
        mapx, mapy = camera_view_map(camera, (fw, fh), scene_offset)
        geo = camera.geometry
        front, back = camera.crop_range
        base = scene_offset - front  # scene x of the warped image's column 0
        # render no more than the warped image plus its own size around it; beyond that: fog
        xlo, xhi = base - geo.width, base + 2 * geo.width
        ylo, yhi = -2 * geo.height, 3 * geo.height
        valid = (mapx >= xlo) & (mapx <= xhi) & (mapy >= ylo) & (mapy <= yhi)
        if valid.any():
            x0 = math.floor(float(mapx[valid].min())) - 1
            x1 = math.ceil(float(mapx[valid].max())) + 2
            y0 = math.floor(float(mapy[valid].min())) - 1
            y1 = math.ceil(float(mapy[valid].max())) + 2
        else:  # the camera sees nothing of the scene plane
            x0, x1, y0, y1 = base, base + 1, 0, 1
        self.origin = (x0, y0)
        self.window = np.empty((y1 - y0, x1 - x0, 3), np.uint8)
        wx = np.where(valid, mapx - x0, -100).astype(np.float32)
        wy = np.where(valid, mapy - y0, -100).astype(np.float32)
        self.map1, self.map2 = cv2.convertMaps(wx, wy, cv2.CV_16SC2)
        # frame pixels the panorama uses: the OSD goes in a corner clear of them, when there is one
        used = (mapx >= scene_offset - 2) & (mapx < scene_offset + back - front + 2)
        used &= (mapy >= -2) & (mapy < geo.height + 2)
        self.osd_scale = max(0.4, min(1.0, fw / 1100))
        (tw, th), base_line = cv2.getTextSize(f"{camera.name}  #000000  00:00:00", _FONT, self.osd_scale, 1)
        box_w, box_h = tw + 10, th + base_line + 8
        corners = [(4, 4), (4, fh - 4 - box_h), (fw - 4 - box_w, 4), (fw - 4 - box_w, fh - 4 - box_h)]
        self.osd_box = (4, 4, box_w, box_h)
        for cx, cy in corners:
            if cx >= 0 and cy >= 0 and not used[cy : cy + box_h, cx : cx + box_w].any():
                self.osd_box = (cx, cy, box_w, box_h)
                break
        self.osd_text_dy = th + 4


class SyntheticSource(Source):
    """A virtual camera of the synthetic scene, delivering raw BGR frames at exactly ``camera.fps``.

    ``scene_offset`` is the camera's slot x0 in the panorama (``scene_offsets(config)``); ``clock`` gives
    the scene time (seconds since the epoch) of each frame, injectable for tests. ``render(t)`` renders
    the frame the camera sees at scene time ``t``, without pacing.

    Pacing: ``read`` sleeps until the next frame is due (on a monotonic schedule of 1/fps; after a stall
    it starts over rather than bursting to catch up) and never raises ``SourceTimeout``: a synthetic
    camera is never late, so a wait longer than ``timeout`` (an fps below 1/timeout) is simply waited
    out. The wait is interruptible: ``close`` from another thread ends it at once with ``SourceError``.
    """

    kind = "synthetic"
    self_paced = True

    def __init__(self, camera: CameraConfig, *, scene_offset: int = 0, clock: Callable[[], float] = time.time) -> None:
        super().__init__(camera)
        self.scene_offset = int(scene_offset)
        self._clock = clock
        self._closed = threading.Event()
        self._closed.set()
        self._view: _View | None = None
        self._next_due: float | None = None
        self.frames = 0  # frames delivered since open

    def describe(self) -> str:
        w, h = self.camera.size
        return f"synthetic {w}x{h}@{self.camera.fps:g}fps (scene x {self.scene_offset})"

    def _prepared(self) -> _View:
        if self._view is None:
            self._view = _View(self.camera, self.scene_offset)
        return self._view

    def open(self, timeout: float) -> None:
        view = self._prepared()
        # warm the background cache so the first frame is as cheap as the others
        _background(view.window.shape[1], view.window.shape[0], *view.origin)
        self.frames = 0
        self._next_due = None
        self._closed.clear()

    def render(self, t: float) -> np.ndarray:
        """The frame (size[1] x size[0] x 3 BGR uint8, a new array) the camera sees at scene time ``t``."""
        view = self._prepared()
        x0, y0 = view.origin
        _render_into(view.window, t, x0, y0)
        frame = cv2.remap(view.window, view.map1, view.map2, cv2.INTER_LINEAR, borderValue=FOG)
        bx, by, bw, bh = view.osd_box
        cv2.rectangle(frame, (bx, by), (bx + bw - 1, by + bh - 1), (0, 0, 0), -1)
        lt = time.localtime(t)
        text = f"{self.camera.name}  #{self.frames:06d}  {lt.tm_hour:02d}:{lt.tm_min:02d}:{lt.tm_sec:02d}"
        cv2.putText(
            frame, text, (bx + 5, by + view.osd_text_dy), _FONT, view.osd_scale, (255, 255, 255), 1, cv2.LINE_AA
        )
        return frame

    def read(self, timeout: float) -> SourceFrame:
        if self._closed.is_set():
            raise SourceError("synthetic camera is closed")
        interval = 1.0 / self.camera.fps
        now = time.monotonic()
        if self._next_due is None or now - self._next_due > interval:
            self._next_due = now  # first frame, or we stalled: start the schedule over, do not burst
        delay = self._next_due - now
        if delay > 0 and self._closed.wait(delay):
            raise SourceError("synthetic camera closed while waiting for the next frame")
        self._next_due += interval
        capture_ns = time.time_ns()
        image = self.render(self._clock())
        self.frames += 1
        return SourceFrame.raw(image, capture_ns)

    def close(self) -> None:
        self._closed.set()
