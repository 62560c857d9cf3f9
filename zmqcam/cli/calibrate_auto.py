"""``zmqcam-daemon calibrate --auto``: the rig's geometry from a printed board lying on the belt
(``zmqcam.calibration.rig``), written as a config or printed as the lines to paste.

    zmqcam-daemon calibrate --auto -c RIG.toml --live --write NEW.toml [OUT.png]
    zmqcam-daemon calibrate --auto -c RIG.toml --from REC1 --from REC2 ... [--write NEW.toml]

Frames: ``--live`` takes ``--frames`` fresh frames of every camera from the running daemon for each
placement of the board; when that placement does not link every camera (a rig longer than the
sheets), it asks on the terminal for the next one ("lay the board where cam1 and cam2 overlap, then
press Enter") and takes another set, until the placements chain every camera. ``--from`` takes the
same from recordings, one recording per placement.

What it prints: per camera the markers and corners it saw, the reprojection error in pixels and on
the belt in mm, and the overlap with its neighbours in mm; then the panorama. What it writes: the
calibration PNG (every frame with its new quad and crop and the corners found, the new panorama
under them) and, with ``--write``, the whole config with the new geometry (the original file is
never touched); without ``--write``, the TOML lines to paste.

Every failure is one line and exit 1, and then nothing is written: no config and no PNG either. A
PNG of a failed calibration would show a panorama made from geometry that is wrong by definition;
to see what the cameras see, ``zmqcam-daemon calibrate OUT.png`` (the preview) draws their frames.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from zmqcam.calibration.board import BoardSpec
from zmqcam.calibration.detect import CameraDetection
from zmqcam.calibration.preview import decode_frame
from zmqcam.calibration.recorded import frame_set_from_recording
from zmqcam.calibration.rig import (
    MAX_ERROR_PX,
    RigCalibration,
    calibrate_detections,
    coverage,
    detect_sets,
    render_calibration,
)
from zmqcam.cli.board import board_from_args
from zmqcam.client import Subscriber
from zmqcam.config import Config, default_config_dict, parse_config
from zmqcam.config.legacy import legacy_dict
from zmqcam.config.toml import render_toml
from zmqcam.errors import CalibrationError, ConfigError, UsageError
from zmqcam.files import write_atomic
from zmqcam.recording.format import Recording

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

#: frames per camera and placement: the detection averages them (sensor noise, JPEG ringing)
DEFAULT_FRAMES = 5
MAX_FRAMES = 100
#: the calibration PNG when no OUT.png is given, in the working directory
DEFAULT_PNG = "calibration.png"
#: placements --live asks for at most, per camera (a rig needs one per pair of neighbours at most;
#: the rest is room for a placement that linked nothing new)
PLACEMENTS_PER_CAMERA = 3
#: config keys holding a path relative to the config file: rebased when the new file lies elsewhere
_RELATIVE_PATHS = (("curve", "key_dir"), ("http", "tls_cert"), ("http", "tls_key"))


def _number(text: str | None, flag: str) -> float | None:
    """A number flag (its range is the calibration's to check); None when not given."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{flag} {text}: not a number") from None


def _integer(text: str | None, flag: str) -> int | None:
    """A whole-number flag (its range is the calibration's to check); None when not given."""
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{flag} {text}: needs a whole number") from None


def _frames(text: str | None) -> int:
    if text is None:
        return DEFAULT_FRAMES
    if not text.strip().isdigit() or not 1 <= int(text) <= MAX_FRAMES:
        raise UsageError(f"--frames {text}: needs a whole number from 1 to {MAX_FRAMES}")
    return int(text)


# ---------------------------------------------------------------------------------------------
# frames


def capture_live(config: Config, names: Sequence[str], frames: int, timeout: float) -> dict[str, list[np.ndarray]]:
    """``frames`` new frames of each camera from the running daemon, all cameras subscribed at once
    (they wake together) and read in turn, so that it takes about ``frames`` frame intervals.
    UsageError when a camera sends nothing for ``timeout`` seconds."""
    subs = [Subscriber(name, kind="jpeg", config=config) for name in names]
    got: dict[str, list[np.ndarray]] = {name: [] for name in names}
    try:
        for _ in range(frames):
            for sub in subs:
                deadline = time.monotonic() + timeout
                while True:
                    ok, frame = sub.read(timeout=max(0.0, deadline - time.monotonic()))
                    if not ok or frame is None:
                        break
                    image = decode_frame(frame.jpeg)
                    if image is not None:  # a corrupt JPEG: wait for the next one
                        got[sub.stream].append(image)
                        break
                if not ok:
                    silent = [name for name, seen in got.items() if not seen]
                    if len(silent) == len(names):
                        raise UsageError(
                            f"no frame from any camera within {timeout:g} s: is the daemon running "
                            "(zmqcam-daemon start)? Or use --from RECORDING"
                        )
                    raise UsageError(
                        f"{sub.stream}: no frame within {timeout:g} s (zmqcam-daemon status says why); "
                        "every camera must deliver frames to calibrate"
                    )
    finally:
        for sub in subs:
            sub.close()
    return got


def _seen_line(number: int, detections: Mapping[str, CameraDetection], names: Sequence[str]) -> str:
    seen = []
    for name in names:
        det = detections.get(name)
        corners = det.corners if det is not None else 0
        seen.append(f"{name} {corners} corners" if corners else f"{name} no board")
    return f"placement {number}: {', '.join(seen)}"


def _ask(question: str) -> bool:
    """Print ``question`` and wait for Enter on the terminal: True to go on, False for q or end of input."""
    print(f"{question}, then press Enter (q and Enter: stop) ", end="", flush=True)
    answer = sys.stdin.readline()
    return bool(answer) and answer.strip().lower() not in ("q", "quit")


def live_detections(
    config: Config, names: Sequence[str], board: BoardSpec, frames: int, timeout: float
) -> tuple[list[dict[str, list[np.ndarray]]], list[dict[str, CameraDetection]], bool]:
    """Frame sets from the running daemon, one per placement, until the placements link every camera;
    on a terminal it asks for each next placement. The sets, what was detected in them, and whether
    the rig is linked (False only without a terminal: the caller says what to do)."""
    interactive = sys.stdin.isatty()
    sets: list[dict[str, list[np.ndarray]]] = []
    detections: list[dict[str, CameraDetection]] = []
    for number in range(1, PLACEMENTS_PER_CAMERA * len(names) + 1):
        frame_set = capture_live(config, names, frames, timeout)
        sets.append(frame_set)
        detections += detect_sets([frame_set], names, board)
        print(_seen_line(number, detections[-1], names), flush=True)
        linked = coverage(detections, names, board)
        if linked.complete or not interactive:
            return sets, detections, linked.complete
        if not _ask(f"Next: {linked.advice()}"):
            raise CalibrationError(f"stopped before every camera was linked: {linked.advice()}")
    raise CalibrationError(
        f"{len(sets)} placements and still not every camera is linked: {coverage(detections, names, board).advice()}"
    )


# ---------------------------------------------------------------------------------------------
# the config to write


def source_data(args: argparse.Namespace, path: str | None) -> tuple[dict[str, Any], Path]:
    """The config being calibrated as TOML-shaped data, as its file says it (not the defaults filled
    in), and the directory its relative paths are relative to."""
    if path is not None:
        file = Path(path)
        text = file.read_text(encoding="utf-8")  # it loaded a moment ago
        if file.suffix.lower() == ".json":
            return legacy_dict(json.loads(text), label=path, transport=args.transport), file.parent
        return tomllib.loads(text), file.parent
    if args.recording:
        data = Recording(args.recording[0]).config_data
        if data is not None:
            return data, Path.cwd()
    return default_config_dict(), Path.cwd()


def rebased(data: dict[str, Any], old_dir: Path, new_dir: Path) -> dict[str, Any]:
    """``data`` with its relative file paths (CURVE keys, TLS files) made relative to ``new_dir``, so
    that the new file finds what the old one named."""
    if old_dir.resolve() == new_dir.resolve():
        return data
    for table, key in _RELATIVE_PATHS:
        section = data.get(table)
        value = section.get(key) if isinstance(section, dict) else None
        if isinstance(value, str) and value and not os.path.isabs(os.path.expanduser(value)):
            assert isinstance(section, dict)
            section[key] = os.path.relpath(old_dir.resolve() / value, new_dir.resolve())
    return data


def _header(result: RigCalibration, origin: str) -> str:
    return (
        f"Written by `zmqcam-daemon calibrate --auto` from {origin}: each camera's rotate, perspective, crop and\n"
        f"overlap, and stitch.cameras, are new; everything else is as it was.\n"
        f"Board: {result.board.describe()}.\n"
        f"Panorama {result.size[0]}x{result.size[1]} px at {result.px_per_mm:g} px/mm, "
        f"left to right {', '.join(result.order)}."
    )


def _check_writable(path: Path, what: str) -> None:
    directory = path.parent
    if not directory.is_dir():
        raise UsageError(f"{path}: no such directory {directory} for the {what}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{path}: cannot write the {what} into {directory} (permission denied)")


def _write(path: Path, data: str | bytes, what: str) -> None:
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise UsageError(f"{path}: cannot write the {what}: {exc.strerror or exc}") from None


# ---------------------------------------------------------------------------------------------


def cmd_auto(args: argparse.Namespace, config: Config, config_path: str | None) -> int:
    """``calibrate --auto`` (``zmqcam.cli.calibrate`` parses the arguments and loads the config)."""
    if args.camera is not None or args.src is not None or args.crop is not None:
        raise UsageError("--auto finds every camera's geometry itself; --camera, --src and --crop are for the preview")
    board = board_from_args(args)
    frames = _frames(args.frames)
    max_error = _number(args.max_error, "--max-error")
    options: dict[str, Any] = {
        "px_per_mm": _number(args.px_per_mm, "--px-per-mm"),
        "height": _integer(args.height, "--height"),
        "max_error_px": MAX_ERROR_PX if max_error is None else max_error,
    }
    png = Path(args.out or DEFAULT_PNG)
    if png.suffix.lower() != ".png":
        raise UsageError(f"{png}: the calibration image is a PNG; name it *.png")
    _check_writable(png, "calibration PNG")
    new: Path | None = None
    if args.write is not None:
        new = Path(args.write)
        if new.suffix.lower() != ".toml":
            raise UsageError(f"--write {new}: the new config is TOML; name it *.toml")
        if config_path is not None and new.resolve() == Path(config_path).resolve():
            raise UsageError(
                f"--write {new}: that is the config being calibrated; write a new file (the old one stays as it was)"
            )
        _check_writable(new, "new config")
    stitched = config.stitched_cameras
    names = [c.name for c in stitched]
    sizes = {c.name: (int(c.size[0]), int(c.size[1])) for c in stitched}

    if args.recording:
        sets: list[dict[str, list[np.ndarray | None]]] = []
        for path in args.recording:
            sets.append(frame_set_from_recording(path, names, frames))
        absent = [name for name in names if not any(name in s for s in sets)]
        if absent:
            raise CalibrationError(
                f"{', '.join(absent)}: in none of the recordings; record every camera (zmqcam-daemon record)"
            )
        detections = detect_sets(sets, names, board)
        for number, found in enumerate(detections, start=1):
            print(_seen_line(number, found, names))
        linked = True
        origin = ", ".join(args.recording)
    else:
        live_sets, detections, linked = live_detections(config, names, board, frames, args.timeout)
        sets = [{name: list(fs) for name, fs in s.items()} for s in live_sets]
        origin = "the running daemon"
    try:
        result = calibrate_detections(detections, names, board, sizes=sizes, **options)
    except CalibrationError as exc:
        if linked:
            raise
        raise CalibrationError(
            f"{exc} (no terminal to ask for the next placement: record one per pair of neighbours with "
            "zmqcam-daemon record, then calibrate --from each recording)"
        ) from None

    new_config = result.apply_to_config(config)
    chosen = result.clearest_sets()
    shown = {name: next((f for f in sets[chosen[name]].get(name, []) if f is not None), None) for name in names}
    image = render_calibration(new_config, result, shown, frame_sets=chosen)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover - imencode fails only on unsupported arrays
        raise UsageError(f"{png}: cannot encode the calibration PNG")
    text = None
    if new is not None:
        data, old_dir = source_data(args, config_path)
        updated = rebased(result.apply_to_data(data), old_dir, new.parent)
        text = render_toml(updated, header=_header(result, config_path or origin))
        try:  # the file must load as it will be read (relative paths from its own directory)
            parse_config(text, label=str(new), base_dir=new.parent)
        except ConfigError as exc:
            raise CalibrationError(f"the new config would not load: {exc.lines[0]}") from None

    for line in result.report_lines():
        print(line)
    if new is not None and text is not None:
        _write(new, text, "new config")
    _write(png, encoded.tobytes(), "calibration PNG")
    print(f"wrote {png} ({image.shape[1]}x{image.shape[0]}): the corners found, the new quads and crops, the panorama")
    if new is not None:
        print(f"wrote {new}: check it with zmqcam-daemon check-config {new}, then start the daemon on it")
    else:
        print("paste into the config (or use --write NEW.toml):")
        print(result.toml_lines(), end="")
    return 0


def add_auto_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``calibrate --auto`` (besides the board flags and --live/--from)."""
    p.add_argument(
        "--auto", action="store_true", help="find every camera's geometry from the board (zmqcam-daemon board)"
    )
    p.add_argument("--write", metavar="NEW.toml", help="--auto: write the whole config with the new geometry here")
    p.add_argument("--frames", metavar="N", help=f"--auto: frames per camera and placement (default {DEFAULT_FRAMES})")
    p.add_argument("--px-per-mm", metavar="X", help="--auto: panorama scale (default: about the cameras' own)")
    p.add_argument("--height", metavar="PX", help="--auto: panorama height (default: the band every camera sees)")
    p.add_argument(
        "--max-error", metavar="PX", help=f"--auto: largest reprojection error accepted (default {MAX_ERROR_PX:g})"
    )
