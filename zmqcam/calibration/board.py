"""The printable ChArUco board: its spec, the flags that name it, and the sheet to print.

A ChArUco board is a chessboard whose white squares hold ArUco markers: the markers say which
chessboard corner is which, so a camera that sees only part of the board still knows where each
corner it sees lies on the board, in millimetres. Corners are the chessboard's inner corners (where
two black squares touch), found to a fraction of a pixel.

Several sheets side by side (rigs longer than one sheet) each carry their own markers: sheet k of a
spec holds marker ids ``k * markers .. (k + 1) * markers - 1``, so ``--first-id`` must be a multiple
of the markers on one board. That way the calibration finds every sheet from the ids it sees and
needs no ``--first-id`` itself, and the sheets never share a marker.

Board frame: millimetres on the sheet, origin at the board's top-left outer corner, x along the
``cols`` squares, y along the ``rows`` (down), as printed.

    spec = parse_board_spec(squares="16x4", square_mm="17")
    write_sheet(spec, "board.pdf", dpi=300)        # or .png (with its DPI recorded in the file)
    spec.calibrate_flags()                         # what calibrate --auto needs: [] for the defaults
"""

from __future__ import annotations

import math
import os
import struct
import zlib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from zmqcam.errors import CalibrationError
from zmqcam.files import write_atomic

__all__ = [
    "DEFAULT_DICTIONARY",
    "DEFAULT_DPI",
    "DEFAULT_MARKER_RATIO",
    "DEFAULT_SQUARES",
    "DEFAULT_SQUARE_MM",
    "DICTIONARIES",
    "MARGIN_MM",
    "BoardSpec",
    "board_image",
    "encode_pdf",
    "encode_png",
    "parse_board_spec",
    "parse_dpi",
    "sheet_image",
    "sheet_size_mm",
    "write_sheet",
]

#: a long strip, as a conveyor wants; 16 x 17 mm = 272 mm fits an A4 sheet in landscape with margins
DEFAULT_SQUARES = (16, 4)
DEFAULT_SQUARE_MM = 17.0
#: marker side / square side: big cells for low-resolution cameras, yet a white border around each
DEFAULT_MARKER_RATIO = 0.75
#: 4x4 bits: the biggest cells for a given marker size (what 640x480 cameras need). 250 ids are 7
#: sheets of the default board (1.9 m of board); OpenCV's marker identification time grows with the
#: dictionary (measured on a busy 640x480 frame: 4x4_250 0.1 s, 4x4_1000 0.4 s)
DEFAULT_DICTIONARY = "4x4_250"
DEFAULT_DPI = 300
#: white paper around the board on the sheet (ArUco needs a quiet zone, printers need a margin)
MARGIN_MM = 10.0
#: the caption under the board: height of a capital letter, and of a line
_CAPTION_CAP_MM = 2.2
_CAPTION_LINE_MM = 4.4
_CAPTION_LINES = 3
_MIN_SQUARES = 3  # the inner corners must span two rows and two columns, or no homography is defined
_MAX_SQUARES = 100
_MARKER_RATIO_RANGE = (0.3, 0.95)
_DPI_RANGE = (72, 2400)
_MM_PER_INCH = 25.4
_POINTS_PER_INCH = 72.0
#: PDF page sizes tried in order (mm, portrait): the smallest standard sheet the board fits on
_PAGES_MM = (("A4", (210.0, 297.0)), ("A3", (297.0, 420.0)))

#: dictionary name (as ``--dict`` takes it) -> OpenCV's predefined dictionary constant
DICTIONARIES: dict[str, int] = {
    name[len("DICT_") :].lower(): getattr(cv2.aruco, name)
    for name in dir(cv2.aruco)
    if name.startswith("DICT_") and name == name.upper()
}


@dataclass(frozen=True)
class BoardSpec:
    """One printed ChArUco board. Constructing it validates it (CalibrationError naming the flag)."""

    cols: int = DEFAULT_SQUARES[0]
    rows: int = DEFAULT_SQUARES[1]
    square_mm: float = DEFAULT_SQUARE_MM
    marker_ratio: float = DEFAULT_MARKER_RATIO
    dictionary: str = DEFAULT_DICTIONARY
    #: the first marker id on this sheet: a multiple of ``markers``
    first_id: int = 0

    def __post_init__(self) -> None:
        squares = f"{self.cols}x{self.rows}"
        if not (_MIN_SQUARES <= self.cols <= _MAX_SQUARES and _MIN_SQUARES <= self.rows <= _MAX_SQUARES):
            raise CalibrationError(
                f"--squares {squares}: needs {_MIN_SQUARES} to {_MAX_SQUARES} squares each way "
                "(the inner corners must span two rows)"
            )
        if not (math.isfinite(self.square_mm) and 1.0 <= self.square_mm <= 1000.0):
            raise CalibrationError(f"--square-mm {self.square_mm:g}: must be between 1 and 1000 mm")
        low, high = _MARKER_RATIO_RANGE
        if not (math.isfinite(self.marker_ratio) and low <= self.marker_ratio <= high):
            raise CalibrationError(
                f"--marker-mm {self.marker_mm:g}: must be {low:.0%} to {high:.0%} of the square "
                f"({self.square_mm * low:g} to {self.square_mm * high:g} mm)"
            )
        if self.dictionary not in DICTIONARIES:
            raise CalibrationError(f"--dict {self.dictionary}: unknown; use one of {', '.join(sorted(DICTIONARIES))}")
        capacity = self.dictionary_size
        if self.markers > capacity:
            raise CalibrationError(
                f"--squares {squares}: needs {self.markers} markers, the {self.dictionary} dictionary has {capacity}"
            )
        if self.first_id < 0 or self.first_id % self.markers:
            raise CalibrationError(
                f"--first-id {self.first_id}: must be a multiple of {self.markers} (the markers on one {squares} "
                f"board): 0, {self.markers}, {2 * self.markers}, ..."
            )
        if self.first_id + self.markers > capacity:
            last = (capacity // self.markers - 1) * self.markers
            raise CalibrationError(
                f"--first-id {self.first_id}: the {self.dictionary} dictionary has {capacity} markers; "
                f"the last {squares} sheet starts at {last}"
            )

    # -- what the board is ---------------------------------------------------------------------

    @property
    def markers(self) -> int:
        """Markers on one board (one per white square)."""
        return (self.cols * self.rows) // 2

    @property
    def corners(self) -> int:
        """Inner chessboard corners on one board: what the calibration measures."""
        return (self.cols - 1) * (self.rows - 1)

    @property
    def marker_mm(self) -> float:
        return self.square_mm * self.marker_ratio

    @property
    def size_mm(self) -> tuple[float, float]:
        """(width, height) of the board itself, outer edge to outer edge, in mm."""
        return self.cols * self.square_mm, self.rows * self.square_mm

    @property
    def sheet(self) -> int:
        """Which sheet of this spec this board is (0 for ``first_id`` 0)."""
        return self.first_id // self.markers

    @property
    def dictionary_size(self) -> int:
        return int(cv2.aruco.getPredefinedDictionary(DICTIONARIES[self.dictionary]).bytesList.shape[0])

    @property
    def sheets(self) -> int:
        """How many disjoint sheets of this spec the dictionary has room for."""
        return self.dictionary_size // self.markers

    def for_sheet(self, sheet: int) -> BoardSpec:
        """The same board with the markers of sheet ``sheet``."""
        return replace(self, first_id=sheet * self.markers)

    def describe(self) -> str:
        """One line: what is printed on this sheet."""
        last = self.first_id + self.markers - 1
        return (
            f"ChArUco {self.cols}x{self.rows} squares of {self.square_mm:g} mm, markers {self.marker_mm:g} mm, "
            f"dictionary {self.dictionary}, marker ids {self.first_id}-{last} (sheet {self.sheet + 1})"
        )

    # -- the flags that name it ----------------------------------------------------------------

    def calibrate_flags(self) -> list[str]:
        """The board flags ``calibrate --auto`` needs for this board: those that differ from the
        defaults. ``--first-id`` is never needed: the calibration tells sheets apart by their ids."""
        flags = []
        if (self.cols, self.rows) != DEFAULT_SQUARES:
            flags += ["--squares", f"{self.cols}x{self.rows}"]
        if self.square_mm != DEFAULT_SQUARE_MM:
            flags += ["--square-mm", f"{self.square_mm:g}"]
        if not math.isclose(self.marker_ratio, DEFAULT_MARKER_RATIO, abs_tol=1e-9):
            flags += ["--marker-mm", f"{self.marker_mm:g}"]
        if self.dictionary != DEFAULT_DICTIONARY:
            flags += ["--dict", self.dictionary]
        return flags

    def board_flags(self) -> list[str]:
        """The flags of the ``board`` command that print this very sheet again."""
        flags = self.calibrate_flags()
        if self.first_id:
            flags += ["--first-id", str(self.first_id)]
        return flags

    # -- OpenCV ----------------------------------------------------------------------------------

    @cached_property
    def cv_dictionary(self) -> cv2.aruco.Dictionary:
        return cv2.aruco.getPredefinedDictionary(DICTIONARIES[self.dictionary])

    @cached_property
    def cv_board(self) -> cv2.aruco.CharucoBoard:
        """OpenCV's board, in millimetres, with this sheet's marker ids."""
        ids = np.arange(self.first_id, self.first_id + self.markers, dtype=np.int32)
        return cv2.aruco.CharucoBoard(
            (self.cols, self.rows), float(self.square_mm), float(self.marker_mm), self.cv_dictionary, ids
        )

    @cached_property
    def corner_mm(self) -> np.ndarray:
        """(corners, 2) float64: each inner corner's position on the board (mm), indexed by its id."""
        return np.asarray(self.cv_board.getChessboardCorners(), dtype=np.float64)[:, :2]


def _positive_number(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CalibrationError(f"{flag} {text}: not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise CalibrationError(f"{flag} {text}: must be a positive number")
    return value


def parse_board_spec(
    squares: str | None = None,
    square_mm: str | None = None,
    marker_mm: str | None = None,
    dictionary: str | None = None,
    first_id: str | None = None,
) -> BoardSpec:
    """The board named by the CLI's strings (``--squares 16x4 --square-mm 17 --marker-mm 12.75
    --dict 4x4_250 --first-id 0``; None: the default). CalibrationError names the bad flag."""
    cols, rows = DEFAULT_SQUARES
    if squares is not None:
        parts = squares.lower().replace(" ", "").split("x")
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise CalibrationError(f"--squares {squares}: needs COLSxROWS, e.g. 16x4")
        cols, rows = int(parts[0]), int(parts[1])
    square = DEFAULT_SQUARE_MM if square_mm is None else _positive_number(square_mm, "--square-mm")
    ratio = DEFAULT_MARKER_RATIO if marker_mm is None else _positive_number(marker_mm, "--marker-mm") / square
    name = DEFAULT_DICTIONARY
    if dictionary is not None:
        name = dictionary.strip().lower().removeprefix("dict_")
    first = 0
    if first_id is not None:
        if not first_id.strip().isdigit():
            raise CalibrationError(f"--first-id {first_id}: needs a whole number >= 0")
        first = int(first_id)
    return BoardSpec(cols, rows, square, ratio, name, first)


def parse_dpi(text: str | None) -> int:
    """``--dpi`` (None: the default): printer dots per inch, a whole number in a sane range."""
    if text is None:
        return DEFAULT_DPI
    low, high = _DPI_RANGE
    if not text.strip().isdigit() or not low <= int(text) <= high:
        raise CalibrationError(f"--dpi {text}: needs a whole number from {low} to {high}")
    return int(text)


# ---------------------------------------------------------------------------------------------
# the sheet


def sheet_size_mm(spec: BoardSpec) -> tuple[float, float]:
    """(width, height) of the printed sheet: the board, its white margin and the caption below it."""
    width, height = spec.size_mm
    return width + 2 * MARGIN_MM, height + 2 * MARGIN_MM + _CAPTION_LINES * _CAPTION_LINE_MM


def _caption(spec: BoardSpec) -> list[str]:
    width, height = spec.size_mm
    flags = spec.calibrate_flags()
    run = "zmqcam-daemon calibrate --auto " + (" ".join(flags) if flags else "(no board flags needed)")
    return [
        f"zmqcam {spec.describe()}",
        f"Print at actual size (100 %): the board must measure {width:g} x {height:g} mm edge to edge.",
        run,
    ]


def board_image(spec: BoardSpec, px_per_mm: float) -> np.ndarray:
    """The board alone (greyscale uint8), edge to edge, at exactly ``px_per_mm``. OpenCV draws whole
    pixels per square, so the board is drawn with the next whole number of pixels per square and
    scaled down by area: every edge lands where the spec puts it (to a fraction of a pixel), instead
    of the rounding adding up along the board."""
    board_w, board_h = spec.size_mm
    size = (round(board_w * px_per_mm), round(board_h * px_per_mm))
    per_square = math.ceil(spec.square_mm * px_per_mm)
    drawn = spec.cv_board.generateImage((spec.cols * per_square, spec.rows * per_square), marginSize=0, borderBits=1)
    if drawn.shape[1] == size[0] and drawn.shape[0] == size[1]:
        return drawn
    return cv2.resize(drawn, size, interpolation=cv2.INTER_AREA)


def sheet_image(spec: BoardSpec, dpi: int = DEFAULT_DPI) -> np.ndarray:
    """The sheet to print (greyscale uint8) at ``dpi``: the board at its exact physical size in a
    white margin, and under it a caption that names the board and the calibrate flags it needs."""
    px_per_mm = dpi / _MM_PER_INCH
    sheet_w, sheet_h = sheet_size_mm(spec)
    image = np.full((round(sheet_h * px_per_mm), round(sheet_w * px_per_mm)), 255, np.uint8)
    board = board_image(spec, px_per_mm)
    bh, bw = board.shape
    x0 = y0 = round(MARGIN_MM * px_per_mm)
    image[y0 : y0 + bh, x0 : x0 + bw] = board
    font = cv2.FONT_HERSHEY_SIMPLEX
    (_, cap_px), _ = cv2.getTextSize("H", font, 1.0, 1)
    scale = _CAPTION_CAP_MM * px_per_mm / cap_px
    thickness = max(1, round(scale * 1.5))
    for i, line in enumerate(_caption(spec)):
        baseline = y0 + bh + MARGIN_MM * 0.6 * px_per_mm + (i + 0.6) * _CAPTION_LINE_MM * px_per_mm
        cv2.putText(image, line, (x0, round(baseline)), font, scale, 0, thickness, cv2.LINE_AA)
    return image


def encode_png(image: np.ndarray, dpi: int) -> bytes:
    """``image`` as PNG with its resolution recorded (a pHYs chunk), so that printing it at its own
    resolution prints the board at its physical size."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - imencode fails only on unsupported arrays
        raise CalibrationError("cannot encode the board as PNG")
    data = buf.tobytes()
    px_per_metre = round(dpi / _MM_PER_INCH * 1000)
    body = b"pHYs" + struct.pack(">IIB", px_per_metre, px_per_metre, 1)
    chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body))
    ihdr_end = 8 + 4 + 4 + 13 + 4  # signature, then IHDR: length, type, 13 bytes of data, CRC
    return data[:ihdr_end] + chunk + data[ihdr_end:]


def _page_for(width_pt: float, height_pt: float) -> tuple[float, float]:
    """(width, height) in points of the smallest standard page that holds an image of this size."""
    for _, (short, long) in _PAGES_MM:
        for pw, ph in ((long, short), (short, long)):
            page = (pw / _MM_PER_INCH * _POINTS_PER_INCH, ph / _MM_PER_INCH * _POINTS_PER_INCH)
            if width_pt <= page[0] and height_pt <= page[1]:
                return page
    return width_pt, height_pt


def encode_pdf(image: np.ndarray, dpi: int) -> bytes:
    """``image`` (greyscale) as a one-page PDF that prints it at its physical size: the page is the
    smallest of A4 and A3 (either orientation) it fits on, else exactly its size; the image centred."""
    h, w = image.shape[:2]
    width_pt, height_pt = w / dpi * _POINTS_PER_INCH, h / dpi * _POINTS_PER_INCH
    page_pt = _page_for(width_pt, height_pt)
    x0, y0 = (page_pt[0] - width_pt) / 2, (page_pt[1] - height_pt) / 2
    pixels = zlib.compress(np.ascontiguousarray(image, dtype=np.uint8).tobytes(), 9)
    content = f"q {width_pt:.3f} 0 0 {height_pt:.3f} {x0:.3f} {y0:.3f} cm /Board Do Q".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {page_pt[0]:.3f} {page_pt[1]:.3f}] "
        "/Resources << /XObject << /Board 4 0 R >> >> /Contents 5 0 R >>".encode(),
        f"<< /Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray "
        f"/BitsPerComponent 8 /Filter /FlateDecode /Length {len(pixels)} >>\nstream\n".encode()
        + pixels
        + b"\nendstream",
        f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def write_sheet(spec: BoardSpec, path: str | os.PathLike[str], dpi: int = DEFAULT_DPI) -> tuple[float, float]:
    """Write the sheet to ``path`` (``.png`` or ``.pdf``) and return its size in mm. The file appears
    whole or not at all (written beside it, then renamed)."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".png", ".pdf"):
        raise CalibrationError(f"{target}: the board is written as .png or .pdf; name it so")
    image = sheet_image(spec, dpi)
    data = encode_pdf(image, dpi) if suffix == ".pdf" else encode_png(image, dpi)
    try:
        write_atomic(target, data)
    except OSError as exc:
        raise CalibrationError(f"{target}: cannot write: {exc.strerror or exc}") from None
    return sheet_size_mm(spec)
