"""The printable ChArUco board: what is printed is what the calibration detects, sheets never share a
marker, every bad flag gets one line naming it, and the files print at the board's physical size."""

from __future__ import annotations

import re
import shlex
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from zmqcam.calibration.board import (
    DEFAULT_DPI,
    MARGIN_MM,
    BoardSpec,
    encode_pdf,
    encode_png,
    parse_board_spec,
    parse_dpi,
    sheet_image,
    sheet_size_mm,
    write_sheet,
)
from zmqcam.calibration.detect import detect_camera
from zmqcam.cli.board import board_from_args
from zmqcam.cli.main import build_parser
from zmqcam.cli.main import main as cli_main
from zmqcam.errors import CalibrationError


@pytest.mark.parametrize(
    "spec",
    [BoardSpec(), BoardSpec(10, 5, 25.0, 0.7, "5x5_100", 25), BoardSpec(6, 3, 40.0, 0.8, "apriltag_36h11")],
    ids=["default", "10x5-5x5_100-sheet2", "6x3-apriltag"],
)
def test_printed_sheet_is_detected_with_every_corner_where_the_spec_puts_it(spec: BoardSpec) -> None:
    """The sheet's board is the spec's board: every inner corner is found, with the sheet's own
    marker ids, at its physical position at the sheet's DPI within half a printer dot (drawn with
    OpenCV's whole pixels per square as they come, the rounding added up to 1.3 dots)."""
    dpi = 100
    image = sheet_image(spec, dpi)
    detection = detect_camera("sheet", [image], spec)
    assert [v.sheet for v in detection.views] == [spec.sheet]
    view = detection.views[0]
    assert sorted(view.ids.tolist()) == list(range(spec.corners))
    assert view.markers == spec.markers
    px_per_mm = dpi / 25.4
    # the board starts at the whole pixel nearest the margin; pixel centres are at integers
    expected = spec.corner_mm[view.ids] * px_per_mm + round(MARGIN_MM * px_per_mm) - 0.5
    assert np.abs(view.image_px - expected).max() < 0.5
    width, height = sheet_size_mm(spec)
    assert image.shape == (round(height * px_per_mm), round(width * px_per_mm))


def test_sheets_side_by_side_have_disjoint_markers_and_are_told_apart() -> None:
    """--first-id sheets never share a marker id, and two sheets in one picture are found as two."""
    spec = BoardSpec()
    ids = [set(range(spec.for_sheet(k).first_id, spec.for_sheet(k).first_id + spec.markers)) for k in range(3)]
    assert not (ids[0] & ids[1] or ids[1] & ids[2] or ids[0] & ids[2])
    assert spec.sheets == 250 // spec.markers
    left, right = sheet_image(spec.for_sheet(0), 100), sheet_image(spec.for_sheet(2), 100)
    both = np.hstack([left, right])
    detection = detect_camera("two", [both], spec)
    assert [(v.sheet, len(v.ids)) for v in detection.views] == [(0, spec.corners), (2, spec.corners)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"squares": "16"}, "--squares 16: needs COLSxROWS, e.g. 16x4"),
        ({"squares": "16x2"}, "--squares 16x2: needs 3 to 100 squares each way (the inner corners must span two rows)"),
        ({"square_mm": "abc"}, "--square-mm abc: not a number"),
        ({"square_mm": "-3"}, "--square-mm -3: must be a positive number"),
        ({"square_mm": "17", "marker_mm": "17"}, "--marker-mm 17: must be 30% to 95% of the square (5.1 to 16.15 mm)"),
        ({"dictionary": "nope"}, "--dict nope: unknown; use one of"),
        ({"first_id": "5"}, "--first-id 5: must be a multiple of 32 (the markers on one 16x4 board): 0, 32, 64, ..."),
        ({"first_id": "-32"}, "--first-id -32: needs a whole number >= 0"),
        (
            {"first_id": "224"},
            "--first-id 224: the 4x4_250 dictionary has 250 markers; the last 16x4 sheet starts at 192",
        ),
        ({"squares": "40x30"}, "--squares 40x30: needs 600 markers, the 4x4_250 dictionary has 250"),
    ],
)
def test_bad_board_flags_get_one_line_naming_the_flag(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(CalibrationError) as info:
        parse_board_spec(**kwargs)
    text = str(info.value)
    assert text.startswith(message)
    assert "\n" not in text


@pytest.mark.parametrize("text", ["12", "3000", "3OO", ""])
def test_bad_dpi_gets_one_line(text: str) -> None:
    with pytest.raises(CalibrationError, match=re.escape(f"--dpi {text}: needs a whole number from 72 to 2400")):
        parse_dpi(text)


def test_flags_name_exactly_what_differs_from_the_defaults() -> None:
    """The board command prints the flags calibrate --auto needs: none for the default board, the
    differing ones otherwise; --first-id only to print the same sheet again."""
    assert parse_board_spec() == BoardSpec()
    assert BoardSpec().calibrate_flags() == []
    spec = parse_board_spec("12x5", "20", "15", "DICT_5X5_250", "60")
    assert spec == BoardSpec(12, 5, 20.0, 0.75, "5x5_250", 60)
    assert spec.calibrate_flags() == ["--squares", "12x5", "--square-mm", "20", "--dict", "5x5_250"]
    assert parse_board_spec(marker_mm="14").calibrate_flags() == ["--marker-mm", "14"]
    assert spec.board_flags()[-2:] == ["--first-id", "60"]
    assert spec.size_mm == (240.0, 100.0)
    assert "marker ids 60-89 (sheet 3)" in spec.describe()


def test_png_records_its_dpi_so_it_prints_at_size() -> None:
    image = sheet_image(BoardSpec(), DEFAULT_DPI)
    data = encode_png(image, DEFAULT_DPI)
    at = data.index(b"pHYs")
    length = struct.unpack(">I", data[at - 4 : at])[0]
    x, y, unit = struct.unpack(">IIB", data[at + 4 : at + 4 + length])
    assert (x, y, unit) == (11811, 11811, 1)  # 300 dpi in pixels per metre
    assert struct.unpack(">I", data[at + 4 + length : at + 8 + length])[0] == zlib.crc32(data[at : at + 4 + length])


def test_pdf_holds_the_sheet_at_physical_size_on_a4() -> None:
    """The PDF is well formed (its xref points at each object) and places the sheet's pixels, exactly,
    at the sheet's size in points on an A4 landscape page."""
    spec = BoardSpec()
    image = sheet_image(spec, 200)
    pdf = encode_pdf(image, 200)
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    xref = int(re.search(rb"startxref\n(\d+)", pdf).group(1))  # type: ignore[union-attr]
    offsets = [int(m) for m in re.findall(rb"(\d{10}) 00000 n", pdf[xref:])]
    for number, offset in enumerate(offsets, start=1):
        assert pdf[offset:].startswith(f"{number} 0 obj".encode())
    media = re.search(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert media is not None
    assert (float(media.group(1)), float(media.group(2))) == pytest.approx((297 / 25.4 * 72, 210 / 25.4 * 72), abs=0.01)
    placed = re.search(rb"q ([\d.]+) 0 0 ([\d.]+) ", pdf)
    assert placed is not None
    width, height = sheet_size_mm(spec)
    assert float(placed.group(1)) == pytest.approx(width / 25.4 * 72, abs=0.3)
    assert float(placed.group(2)) == pytest.approx(height / 25.4 * 72, abs=0.3)
    stream = re.search(rb"/Length (\d+) >>\nstream\n", pdf)
    assert stream is not None
    start = stream.end()
    pixels = zlib.decompress(pdf[start : start + int(stream.group(1))])
    assert pixels == image.tobytes()


def test_write_sheet_writes_png_or_pdf_and_nothing_for_another_name(tmp_path: Path) -> None:
    assert write_sheet(BoardSpec(), tmp_path / "board.png", 100) == sheet_size_mm(BoardSpec())
    assert (tmp_path / "board.png").read_bytes().startswith(b"\x89PNG")
    write_sheet(BoardSpec(), tmp_path / "board.pdf", 100)
    assert (tmp_path / "board.pdf").read_bytes().startswith(b"%PDF")
    with pytest.raises(CalibrationError, match=r"board\.jpg: the board is written as \.png or \.pdf; name it so"):
        write_sheet(BoardSpec(), tmp_path / "board.jpg")
    with pytest.raises(CalibrationError, match="cannot write"):
        write_sheet(BoardSpec(), tmp_path / "missing" / "board.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["board.pdf", "board.png"]


# ---------------------------------------------------------------------------------------------
# the command


def test_board_command_writes_the_sheet_and_says_how_to_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`board OUT.png`: the sheet is the default board (every corner detected, sheet 1), and the
    command says its physical size, that calibrate needs no board flags, and how to print the next
    sheet; for another board, the flags it prints are exactly the ones calibrate --auto takes to find
    that board again, and the next sheet's command carries them too."""
    monkeypatch.chdir(tmp_path)
    assert cli_main(["board", "board.png", "--dpi", "100"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"wrote board.png: {BoardSpec().describe()}"
    assert "the board must measure 272 x 68 mm edge to edge (the sheet 292 x 101.2 mm at 100 dpi)" in out[1]
    assert "no board flags needed" in out[2]
    assert out[3].endswith("zmqcam-daemon board board-2.png --first-id 32 --dpi 100")
    image = cv2.imread("board.png", cv2.IMREAD_GRAYSCALE)
    view = detect_camera("sheet", [image], BoardSpec()).views[0]
    assert (view.sheet, len(view.ids)) == (0, BoardSpec().corners)

    flags = ["--squares", "10x5", "--square-mm", "25", "--dict", "5x5_100"]
    assert cli_main(["board", "long.pdf", *flags, "--first-id", "25"]) == 0
    out = capsys.readouterr().out.splitlines()
    printed = re.fullmatch(r"calibrate with these board flags: zmqcam-daemon calibrate --auto (.*) \.\.\.", out[2])
    assert printed is not None, out
    args = build_parser().parse_args(["calibrate", "--auto", *shlex.split(printed.group(1))])
    assert board_from_args(args) == BoardSpec(10, 5, 25.0, dictionary="5x5_100")
    assert out[3].endswith(f"zmqcam-daemon board long-3.pdf {' '.join(flags)} --first-id 50")
    assert Path("long.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["b.png", "--first-id", "5"], "--first-id 5: must be a multiple of 32"),
        (["b.png", "--dpi", "10"], "--dpi 10: needs a whole number from 72 to 2400"),
        (["b.jpg"], "b.jpg: the board is written as .png or .pdf"),
        (["missing/b.png"], "missing/b.png: cannot write"),
    ],
)
def test_board_command_mistakes_are_one_line_and_write_nothing(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["board", *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
