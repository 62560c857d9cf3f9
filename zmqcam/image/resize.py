"""A JPEG at another size or quality, for ``/snapshot.jpg?width=&height=&quality=``: decode, resize
(area averaging when shrinking, which keeps thin lines readable), encode. Pure: bytes in, bytes out."""

from __future__ import annotations

import cv2
import simplejpeg

#: the largest side a resized snapshot may have (bounds the work one request can ask for)
MAX_SIDE = 4096
#: the JPEG quality of a resized snapshot when the request names none
DEFAULT_QUALITY = 80


def target_size(size: tuple[int, int], width: int | None, height: int | None) -> tuple[int, int]:
    """The output size: both given, exactly that; one given, the other follows the aspect ratio."""
    w, h = size
    if width is not None and height is not None:
        return width, height
    if width is not None:
        return width, max(1, round(h * width / w))
    if height is not None:
        return max(1, round(w * height / h)), height
    return w, h


def resized_jpeg(jpeg: bytes, width: int | None, height: int | None, quality: int | None) -> bytes:
    """``jpeg`` re-encoded at ``width`` x ``height`` (see ``target_size``) and ``quality``."""
    image = simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
    h, w = image.shape[:2]
    out_w, out_h = target_size((w, h), width, height)
    if (out_w, out_h) != (w, h):
        shrinking = out_w * out_h < w * h
        image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    q = DEFAULT_QUALITY if quality is None else quality
    return simplejpeg.encode_jpeg(image, quality=q, colorspace="BGR", colorsubsampling="420")
