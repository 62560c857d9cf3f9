"""The calibration preview: one image that shows what a config's geometry numbers do.

Top row: each camera's frame, rotated as configured (the quad is in rotated pixels), with

- the perspective quad ``src`` in green, each corner labelled with its numbers from the config (on a
  frame that is not the configured ``size`` the quad is rescaled to it, as the stitcher does);
- the crop: red lines where columns ``front`` and ``back`` of the warped image fall in the frame,
  and everything outside the part that reaches the panorama dimmed.

Under them, the panorama those frames stitch into, with each camera's slot named above it; its
pixels are exactly what the stitcher would publish. Stitched cameras come first, in stitch order,
then any others. A camera without a frame gets its NO SIGNAL card with the quad still drawn.

Pure image work on frames given to it (``render``), or read from a recording
(``frames_from_recording``). ``zmqcam-daemon calibrate`` (``zmqcam.cli.calibrate``) writes it as a PNG.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
import simplejpeg

from zmqcam.config import CameraConfig, Config
from zmqcam.image.cards import no_signal_card
from zmqcam.image.remap import CV2_ROTATE, PanoramaComposer, homography, rotated_size, scaled_quad
from zmqcam.recording.format import Recording

__all__ = [
    "CROP_COLOR",
    "DIM",
    "GAP",
    "LABEL_HEIGHT",
    "QUAD_COLOR",
    "Layout",
    "decode_frame",
    "frames_from_recording",
    "quad_in_frame",
    "render",
]

#: pixels between the panels, and above each panel for its label
GAP = 8
LABEL_HEIGHT = 22
BACKGROUND = (32, 32, 32)
QUAD_COLOR = (0, 255, 0)  # BGR
CROP_COLOR = (0, 0, 255)
TEXT_COLOR = (235, 235, 235)
#: brightness of the frame outside the region that reaches the panorama
DIM = 0.35
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_SHIFT = 4  # drawing with 1/16 pixel precision


@dataclass(frozen=True)
class Layout:
    """Where everything is in the image: per camera (name, x, y, width, height) of its rotated frame."""

    panels: tuple[tuple[str, int, int, int, int], ...]
    pano_origin: tuple[int, int]
    pano_size: tuple[int, int]
    size: tuple[int, int]  # (width, height) of the whole image


def camera_order(config: Config) -> list[CameraConfig]:
    """The stitched cameras in stitch order, then the others."""
    stitched = config.stitched_cameras
    return stitched + [c for c in config.camera if c not in stitched]


def _frame_size(cam: CameraConfig, frame: np.ndarray | None) -> tuple[int, int]:
    """(width, height) of the unrotated frame: the actual one, else the configured size."""
    if frame is None:
        return int(cam.size[0]), int(cam.size[1])
    return int(frame.shape[1]), int(frame.shape[0])


def make_layout(config: Config, frames: Mapping[str, np.ndarray | None]) -> Layout:
    panels = []
    x = 0
    for cam in camera_order(config):
        w, h = rotated_size(_frame_size(cam, frames.get(cam.name)), cam.rotate)
        panels.append((cam.name, x, LABEL_HEIGHT, w, h))
        x += w + GAP
    row_height = max(p[4] for p in panels)
    pano_w, pano_h = config.pano_size
    pano_origin = (0, LABEL_HEIGHT + row_height + GAP + LABEL_HEIGHT)
    width = max(x - GAP, pano_w)
    return Layout(tuple(panels), pano_origin, (pano_w, pano_h), (width, pano_origin[1] + pano_h))


def quad_in_frame(cam: CameraConfig, frame_size: tuple[int, int]) -> np.ndarray:
    """The perspective quad (4x2, TL BL BR TR) in pixels of the rotated frame of ``frame_size``
    (unrotated (width, height)): the configured ``src``, rescaled when the frame is not ``size``."""
    expected = (int(cam.size[0]), int(cam.size[1]))
    src = (
        cam.geometry.src if frame_size == expected else scaled_quad(cam.geometry.src, cam.rotate, expected, frame_size)
    )
    return np.asarray(src, dtype=np.float64).reshape(4, 2)


def kept_region(cam: CameraConfig, quad: np.ndarray) -> np.ndarray:
    """The part of the rotated frame that reaches the panorama (4x2: front-top, front-bottom,
    back-bottom, back-top): the crop columns [front, back) of the warped image, mapped back."""
    geo = cam.geometry
    front, back = cam.crop_range
    inverse = np.linalg.inv(homography(quad.tolist(), geo.width, geo.height))
    corners = np.array([[front, 0], [front, geo.height], [back, geo.height], [back, 0]], dtype=np.float64)
    return cv2.perspectiveTransform(corners.reshape(-1, 1, 2), inverse).reshape(4, 2)


def _fixed(points: np.ndarray) -> np.ndarray:
    """Points for cv2 drawing with ``_SHIFT`` fractional bits, clipped far outside any image."""
    return np.round(np.clip(points, -1e5, 1e5) * (1 << _SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def annotate(cam: CameraConfig, frame: np.ndarray | None) -> np.ndarray:
    """The camera's rotated frame (or NO SIGNAL card) with its quad and crop drawn over it."""
    size = _frame_size(cam, frame)
    if frame is None:
        panel = no_signal_card(*rotated_size(size, cam.rotate), cam.name)
    else:
        panel = cv2.rotate(frame, CV2_ROTATE[cam.rotate]) if cam.rotate else frame.copy()
    quad = quad_in_frame(cam, size)
    kept = kept_region(cam, quad)
    mask = np.zeros(panel.shape[:2], np.uint8)
    cv2.fillPoly(mask, [_fixed(kept)], 255, cv2.LINE_8, _SHIFT)
    dimmed = (panel * DIM).astype(np.uint8)
    panel = np.where(mask[:, :, None] > 0, panel, dimmed)
    for a, b in ((0, 1), (2, 3)):  # the front and back columns
        cv2.polylines(panel, [_fixed(kept[[a, b]])], False, CROP_COLOR, 2, cv2.LINE_8, _SHIFT)
    cv2.polylines(panel, [_fixed(quad)], True, QUAD_COLOR, 2, cv2.LINE_8, _SHIFT)
    centre = quad.mean(axis=0)
    # the labels give the config's numbers, also where the frame is not the configured size
    for (x, y), (cx, cy) in zip(quad, cam.geometry.src, strict=True):
        cv2.circle(panel, (round(x), round(y)), 4, QUAD_COLOR, -1)
        _corner_label(panel, f"{cx:g},{cy:g}", (x, y), centre)
    return panel


def _corner_label(panel: np.ndarray, text: str, corner: tuple[float, float], centre: np.ndarray) -> None:
    """``text`` beside a quad corner, towards the quad's centre, kept inside the panel."""
    (tw, th), base = cv2.getTextSize(text, _FONT, 0.45, 1)
    h, w = panel.shape[:2]
    x = corner[0] + (8 if centre[0] >= corner[0] else -8 - tw)
    y = corner[1] + (8 + th if centre[1] >= corner[1] else -8)
    x = int(min(max(x, 2), w - tw - 2))
    y = int(min(max(y, th + 2), h - base - 2))
    cv2.rectangle(panel, (x - 2, y - th - 2), (x + tw + 2, y + base), (0, 0, 0), -1)
    cv2.putText(panel, text, (x, y), _FONT, 0.45, QUAD_COLOR, 1, cv2.LINE_AA)


def _label(canvas: np.ndarray, text: str, x: int, y: int, width: int) -> None:
    """``text`` in the label bar whose top-left is (x, y), shortened to fit ``width``."""
    while len(text) > 1 and cv2.getTextSize(text, _FONT, 0.5, 1)[0][0] > width - 8:
        text = text[:-2] + "~"  # Hershey fonts have no ellipsis
    cv2.putText(canvas, text, (x + 4, y + LABEL_HEIGHT - 7), _FONT, 0.5, TEXT_COLOR, 1, cv2.LINE_AA)


def render(config: Config, frames: Mapping[str, np.ndarray | None]) -> tuple[np.ndarray, Layout]:
    """The calibration image for ``frames`` (camera name -> unrotated BGR frame; missing or None: no
    frame), and where its parts are."""
    layout = make_layout(config, frames)
    width, height = layout.size
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = BACKGROUND
    for cam, (name, x, y, w, h) in zip(camera_order(config), layout.panels, strict=True):
        frame = frames.get(name)
        canvas[y : y + h, x : x + w] = annotate(cam, frame)
        front, back = cam.crop_range
        state = "" if frame is not None else "  NO FRAME"
        _label(canvas, f"{name}  rotate {cam.rotate}  crop {front}-{back}{state}", x, y - LABEL_HEIGHT, w)
    stitched = config.stitched_cameras
    composer = PanoramaComposer(stitched)
    pano = composer.compose([frames.get(c.name) for c in stitched])
    px, py = layout.pano_origin
    pw, ph = layout.pano_size
    canvas[py : py + ph, px : px + pw] = pano
    label_y = py - LABEL_HEIGHT
    for slot in composer.slots:
        cv2.line(canvas, (px + slot.x0, label_y + 2), (px + slot.x0, py - 1), TEXT_COLOR, 1)
        _label(
            canvas,
            slot.name if slot.x0 else f"panorama {pw}x{ph}: {slot.name}",
            px + slot.x0,
            label_y,
            slot.x1 - slot.x0,
        )
    return canvas, layout


def frames_from_recording(config: Config, path: str, at: float) -> dict[str, np.ndarray | None]:
    """Each camera's frame ``at`` seconds into the recording (the one captured nearest that moment)."""
    recording = Recording(path)
    span = recording.span()
    frames: dict[str, np.ndarray | None] = {}
    for cam in config.camera:
        frames[cam.name] = None
        if cam.name not in recording.names or span is None:
            continue
        with recording.track(cam.name) as track:
            if not track.entries:
                continue
            frames[cam.name] = track.picture(track.nearest(span.first_ns + int(at * 1e9)))
    return frames


def decode_frame(jpeg: bytes) -> np.ndarray | None:
    """A JPEG as BGR pixels; None when it does not decode (shown as NO SIGNAL)."""
    try:
        return simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
    except (ValueError, RuntimeError):
        return None
