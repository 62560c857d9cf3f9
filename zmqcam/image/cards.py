"""The cards shown where a frame is missing: NO SIGNAL in a panorama slot, "waiting for frames" on
a bridge stream. Each is rendered once per size and reused, never per frame.
"""

from __future__ import annotations

import cv2
import numpy as np
import simplejpeg

#: BGR of the NO SIGNAL card's background
NO_SIGNAL_COLOR = (48, 48, 48)


def no_signal_card(width: int, height: int, name: str) -> np.ndarray:
    """A dark grey ``height`` x ``width`` BGR card reading "NO SIGNAL" and the camera name, centred."""
    card = np.empty((height, width, 3), np.uint8)
    card[:] = NO_SIGNAL_COLOR
    font = cv2.FONT_HERSHEY_SIMPLEX
    lines = [("NO SIGNAL", (220, 220, 220), 0.22), (name, (160, 160, 160), 0.14)]
    # each line gets a font scale that fits ~85% of the width and its share of the height
    rendered = []
    for text, color, height_share in lines:
        (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
        scale = max(0.3, min(0.85 * width / max(tw, 1), height_share * height / max(th, 1)))
        thickness = max(1, round(scale * 2))
        (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
        rendered.append((text, color, scale, thickness, tw, th, base))
    gap = max(4, height // 20)
    total = sum(th + base for *_, th, base in rendered) + gap
    y = (height - total) // 2
    for text, color, scale, thickness, tw, th, base in rendered:
        y += th
        cv2.putText(card, text, ((width - tw) // 2, y), font, scale, color, thickness, cv2.LINE_AA)
        y += base + gap
    return card


def waiting_card(width: int, height: int, title: str, subtitle: str) -> bytes:
    """A plain JPEG card of the stream's own size (so players see no size change), made once."""
    image = np.full((height, width, 3), (48, 40, 36), dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for text, rel_y, weight in ((title, 0.45, 1.0), (subtitle, 0.7, 0.55)):
        (tw, th), _ = cv2.getTextSize(text, font, 1.0, 2)
        scale = max(0.3, min(weight * height / 5 / th, weight * 0.9 * width / tw))
        thickness = max(1, round(scale * 1.6))
        (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
        origin = ((width - tw) // 2, int(height * rel_y) + th // 2)
        cv2.putText(image, text, origin, font, scale, (200, 220, 235), thickness, cv2.LINE_AA)
    return simplejpeg.encode_jpeg(image, quality=75, colorspace="BGR", colorsubsampling="420")
