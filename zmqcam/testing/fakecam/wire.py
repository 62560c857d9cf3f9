"""The fake ESP32-CAM's wire format: the CameraWebServer firmware's bytes (the multipart stream's
boundary and part head, status lines, chunked encoding, the sensor's frame sizes and control
variables), and the socket plumbing both of its ports share."""

from __future__ import annotations

import contextlib
import socket

from zmqcam.config.esp32 import CONTROL_VARIABLES, FRAMESIZE_PIXELS

#: the firmware's PART_BOUNDARY
BOUNDARY = "123456789000000000000987654321"
STREAM_CONTENT_TYPE = "multipart/x-mixed-replace;boundary=" + BOUNDARY
STREAM_BOUNDARY = b"\r\n--" + BOUNDARY.encode() + b"\r\n"
STREAM_PART = "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}\r\n\r\n"

#: esp32-camera framesize_t -> (width, height), and the firmware's control variables (one list, the
#: library's: zmqcam.config.esp32)
FRAMESIZES = FRAMESIZE_PIXELS
CONTROL_VARS = CONTROL_VARIABLES
#: what the firmware's status_handler reports, in its order: every setting but ``vflip`` (which
#: it does not report), plus ``sharpness`` (which cmd_handler cannot set) and ``led_intensity`` (-1
#: on a board without the LED illuminator)
STATUS_KEYS = (
    "framesize",
    "quality",
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
    "special_effect",
    "wb_mode",
    "awb",
    "awb_gain",
    "aec",
    "aec2",
    "ae_level",
    "aec_value",
    "agc",
    "agc_gain",
    "gainceiling",
    "bpc",
    "wpc",
    "raw_gma",
    "lenc",
    "hmirror",
    "dcw",
    "colorbar",
    "led_intensity",
)

POLL = 0.05  # seconds between checks of the stop flag in blocking loops
SEND_TIMEOUT = 5.0  # esp_http_server's send_wait_timeout
IDLE_TIMEOUT = 30.0  # close an idle keep-alive connection after this
MAX_REQUEST = 8192


def status_line(code: int) -> str:
    reasons = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 400: "Bad Request"}
    return f"HTTP/1.1 {code} {reasons.get(code, 'Error')}\r\n"


class Gone(Exception):
    """The client left (or the fake is stopping)."""


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    return sock


def close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def framesize_index(size: tuple[int, int]) -> int:
    """The esp32-camera ``framesize_t`` index of a size (VGA, 8, for sizes it does not have)."""
    for index, wh in FRAMESIZES.items():
        if wh == tuple(size):
            return index
    return 8
