"""``zmqcam-daemon board OUT.png|OUT.pdf [--squares 16x4] [--square-mm 17] [--marker-mm M] [--dpi 300]
[--dict 4x4_250] [--first-id N]``: the ChArUco sheet to print for ``calibrate --auto``
(``zmqcam.calibration.board``), and what to do with it.

It prints the board's physical size (what a ruler must measure on the printout), the flags
``calibrate --auto`` needs when they are not the defaults, and the command for the next sheet, with
its own markers, for a rig longer than one sheet.
"""

from __future__ import annotations

import argparse
import shlex

from zmqcam.calibration.board import (
    DEFAULT_DICTIONARY,
    DEFAULT_DPI,
    DEFAULT_SQUARE_MM,
    DEFAULT_SQUARES,
    BoardSpec,
    parse_board_spec,
    parse_dpi,
    write_sheet,
)
from zmqcam.cli.common import Subparsers


def add_board_arguments(p: argparse.ArgumentParser) -> None:
    """The flags that name a board, for ``board`` and ``calibrate --auto`` alike (``--first-id``
    only for ``board``: the calibration tells sheets apart by their markers)."""
    cols, rows = DEFAULT_SQUARES
    p.add_argument("--squares", metavar="COLSxROWS", help=f"squares along and across (default {cols}x{rows})")
    p.add_argument("--square-mm", metavar="MM", help=f"side of one square (default {DEFAULT_SQUARE_MM:g})")
    p.add_argument("--marker-mm", metavar="MM", help="side of one marker (default 3/4 of the square)")
    p.add_argument("--dict", dest="dictionary", metavar="NAME", help=f"ArUco dictionary (default {DEFAULT_DICTIONARY})")


def board_from_args(args: argparse.Namespace) -> BoardSpec:
    """The board the flags name (CalibrationError naming a bad flag)."""
    return parse_board_spec(
        args.squares, args.square_mm, args.marker_mm, args.dictionary, getattr(args, "first_id", None)
    )


def _next_sheet_command(spec: BoardSpec, out: str, dpi: int) -> str | None:
    """The command that writes the next sheet (its own markers), or None when the dictionary is full."""
    if spec.sheet + 1 >= spec.sheets:
        return None
    following = spec.for_sheet(spec.sheet + 1)
    stem, dot, suffix = out.rpartition(".")
    name = f"{stem}-{following.sheet + 1}.{suffix}" if dot else f"{out}-{following.sheet + 1}"
    flags = following.board_flags() + ([] if dpi == DEFAULT_DPI else ["--dpi", str(dpi)])
    return shlex.join(["zmqcam-daemon", "board", name, *flags])


def cmd_board(args: argparse.Namespace) -> int:
    spec = board_from_args(args)
    dpi = parse_dpi(args.dpi)
    sheet_w, sheet_h = write_sheet(spec, args.out, dpi)
    board_w, board_h = spec.size_mm
    flags = spec.calibrate_flags()
    print(f"wrote {args.out}: {spec.describe()}")
    print(
        f"print it at 100 % (actual size, no 'fit to page'): the board must measure {board_w:g} x {board_h:g} mm "
        f"edge to edge (the sheet {sheet_w:g} x {sheet_h:g} mm at {dpi} dpi)"
    )
    if flags:
        print(f"calibrate with these board flags: zmqcam-daemon calibrate --auto {shlex.join(flags)} ...")
    else:
        print("calibrate with: zmqcam-daemon calibrate --auto ... (the default board: no board flags needed)")
    following = _next_sheet_command(spec, args.out, dpi)
    if following is not None:
        print(f"a rig longer than one sheet: lay more sheets end to end, each with its own markers: {following}")
    return 0


def add_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "board",
        help="write the ChArUco board to print for calibrate --auto (PNG or PDF)",
        description="Write a printable ChArUco board (PNG or PDF, at its physical size) for "
        "`calibrate --auto`, and print its size and the flags calibrate needs for it.",
    )
    add_board_arguments(p)
    p.add_argument("--dpi", metavar="N", help=f"printer resolution (default {DEFAULT_DPI})")
    p.add_argument(
        "--first-id", metavar="N", help="first marker id: another sheet of a long rig (a multiple of the markers)"
    )
    p.add_argument("out", metavar="OUT.png|OUT.pdf", help="the sheet to write")
    p.set_defaults(func=cmd_board)
