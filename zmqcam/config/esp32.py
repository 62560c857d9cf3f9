"""The ESP32-CAM's own words: the CameraWebServer firmware's sensor settings (``/control?var=&val=``),
its frame sizes by name, and how a camera's ``controls`` and ``warmup`` keys read.

Defined once here, for the config (validation), the HTTP sources (applying the settings) and the fake
ESP32-CAM (which answers as the firmware does). Names and numbers are the firmware's: ``cmd_handler``
in the CameraWebServer example's ``app_httpd.cpp`` and ``framesize_t`` in esp32-camera's ``sensor.h``.
"""

from __future__ import annotations

import re
from typing import NamedTuple

#: esp32-camera's ``framesize_t``: name -> (index sent as ``val``, width, height). ``/control`` and
#: ``/status`` speak the index; people say "VGA".
FRAMESIZES: dict[str, tuple[int, int, int]] = {
    "96X96": (0, 96, 96),
    "QQVGA": (1, 160, 120),
    "QCIF": (2, 176, 144),
    "HQVGA": (3, 240, 176),
    "240X240": (4, 240, 240),
    "QVGA": (5, 320, 240),
    "CIF": (6, 400, 296),
    "HVGA": (7, 480, 320),
    "VGA": (8, 640, 480),
    "SVGA": (9, 800, 600),
    "XGA": (10, 1024, 768),
    "HD": (11, 1280, 720),
    "SXGA": (12, 1280, 1024),
    "UXGA": (13, 1600, 1200),
    "FHD": (14, 1920, 1080),
    "P_HD": (15, 720, 1280),
    "P_3MP": (16, 864, 1536),
    "QXGA": (17, 2048, 1536),
    "QHD": (18, 2560, 1440),
    "WQXGA": (19, 2560, 1600),
    "P_FHD": (20, 1080, 1920),
    "QSXGA": (21, 2560, 1920),
}
#: framesize index -> (width, height)
FRAMESIZE_PIXELS: dict[int, tuple[int, int]] = {index: (w, h) for index, w, h in FRAMESIZES.values()}
FRAMESIZE_NAMES: dict[int, str] = {index: name for name, (index, _, _) in FRAMESIZES.items()}

#: the variables the stock firmware's ``cmd_handler`` knows, in its order (``led_intensity`` only on
#: boards built with the LED illuminator; any other name is answered HTTP 500)
CONTROL_VARIABLES = (
    "framesize",
    "quality",
    "contrast",
    "brightness",
    "saturation",
    "gainceiling",
    "colorbar",
    "awb",
    "agc",
    "aec",
    "hmirror",
    "vflip",
    "awb_gain",
    "agc_gain",
    "aec_value",
    "aec2",
    "dcw",
    "bpc",
    "wpc",
    "raw_gma",
    "lenc",
    "special_effect",
    "wb_mode",
    "ae_level",
    "led_intensity",
)
FRAMESIZE = "framesize"
#: a variable name as the firmware reads it (``char variable[32]``), safe in a query string
CONTROL_NAME_PATTERN = re.compile(r"^[a-z0-9_]{1,31}$")

#: the warm-up of an ESP32 camera when its config names none: its first frames after a (re)connect are
#: stale frame buffers or still dark/green while auto exposure settles
DEFAULT_ESP32_WARMUP = 0.5
#: the kinds that reach an ESP32-CAM (its firmware's HTTP server): controls apply, warm-up defaults on
ESP32_KINDS = ("snapshot", "mjpeg")
_WARMUP_FRAMES = re.compile(r"^\s*(\d{1,4})\s*frames?\s*$", re.IGNORECASE)
_WARMUP_SECONDS = re.compile(r"^\s*(\d{1,3}(?:\.\d*)?|\.\d+)\s*s\s*$", re.IGNORECASE)
#: the longest warm-up accepted, seconds (a longer one is a typo, not a sensor)
MAX_WARMUP_SECONDS = 60.0


class Warmup(NamedTuple):
    """How long a camera's frames are held back after each (re)connect: ``seconds`` or ``frames``."""

    seconds: float = 0.0
    frames: int = 0

    @property
    def none(self) -> bool:
        return self.seconds <= 0 and self.frames <= 0

    def describe(self) -> str:
        if self.frames:
            return f"{self.frames} frame{'s' if self.frames != 1 else ''}"
        return f"{self.seconds:g} s"


def parse_warmup(value: object) -> Warmup:
    """``0.5`` or ``"0.5 s"`` (seconds) or ``"5 frames"``; ValueError with the rule otherwise."""
    rule = 'must be seconds (0.5 or "0.5 s") or a frame count ("5 frames")'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif not isinstance(value, str):
        raise ValueError(rule)
    else:
        text = value
        frames = _WARMUP_FRAMES.match(text)
        if frames is not None:
            return Warmup(frames=int(frames.group(1)))
        match = _WARMUP_SECONDS.match(text)
        if match is None:
            raise ValueError(rule)
        seconds = float(match.group(1))
    if not 0 <= seconds <= MAX_WARMUP_SECONDS:  # NaN fails this too
        raise ValueError(f"must be between 0 and {MAX_WARMUP_SECONDS:g} seconds")
    return Warmup(seconds=seconds)


def control_value(name: str, value: object) -> int:
    """The integer ``/control`` takes for ``name = value``: a framesize by name becomes its index.
    ValueError with the rule for a value the firmware cannot take."""
    if isinstance(value, str):
        if name != FRAMESIZE:
            raise ValueError("must be a whole number (only framesize also takes a name)")
        entry = FRAMESIZES.get(value.strip().upper())
        if entry is None:
            raise ValueError(f"not a frame size ({', '.join(FRAMESIZES)})")
        return entry[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a whole number")
    if not -32768 <= value <= 65535:  # the firmware keeps them in int8..uint16 fields
        raise ValueError("out of the firmware's range")
    if name == FRAMESIZE and value not in FRAMESIZE_PIXELS:
        raise ValueError(f"not a framesize index (0 to {max(FRAMESIZE_PIXELS)})")
    return value


def describe_control(name: str, value: int) -> str:
    """``framesize=VGA``, ``quality=12``: how status shows an applied control."""
    if name == FRAMESIZE and value in FRAMESIZE_NAMES:
        return f"{name}={FRAMESIZE_NAMES[value]}"
    return f"{name}={value}"
