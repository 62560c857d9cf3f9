"""``zmqcam-daemon calibrate [-c CONFIG] [--from RECORDING | --live] [--camera NAME --src x,y,... --crop F,B] OUT.png``:
the calibration preview (``zmqcam.calibration.preview``) as a PNG. With ``--auto``, the geometry
itself, found from a printed board (``zmqcam.cli.calibrate_auto``).

Frames come from a recording (``--from DIR``, at ``--at`` seconds into it; the config defaults to the
one the rig was recorded with) or from the running daemon (``--live``, the default). ``--camera
NAME --src ...`` and ``--crop`` try other numbers for one camera without editing the config, and
print the TOML lines to paste once they look right.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np

from zmqcam.calibration.preview import decode_frame, frames_from_recording, render
from zmqcam.cli import calibrate_auto
from zmqcam.cli.board import add_board_arguments
from zmqcam.cli.common import Subparsers, add_config_arguments, load_args_config
from zmqcam.client import Subscriber
from zmqcam.config import Config, from_dict
from zmqcam.config.toml import toml_value
from zmqcam.errors import ConfigError, UsageError
from zmqcam.recording.format import Recording


def frames_live(config: Config, timeout: float) -> dict[str, np.ndarray | None]:
    """One fresh frame per camera from the running daemon; None for a camera silent for ``timeout`` s."""
    frames: dict[str, np.ndarray | None] = {}
    subs = [Subscriber(cam.name, kind="jpeg", config=config) for cam in config.camera]
    try:
        deadline = time.monotonic() + timeout
        for sub in subs:  # all subscribed at once: the cameras wake up together
            ok, frame = sub.read(timeout=max(0.0, deadline - time.monotonic()))
            frames[sub.stream] = decode_frame(frame.jpeg) if ok and frame is not None else None
    finally:
        for sub in subs:
            sub.close()
    return frames


#: flags that mean something only with --auto, and their argparse names
_AUTO_ONLY = {
    "--write": "write",
    "--frames": "frames",
    "--px-per-mm": "px_per_mm",
    "--height": "height",
    "--max-error": "max_error",
    "--squares": "squares",
    "--square-mm": "square_mm",
    "--marker-mm": "marker_mm",
    "--dict": "dictionary",
}


def _numbers(text: str, count: int, option: str, meaning: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"{option}: {text!r}: needs {count} comma-separated numbers ({meaning})") from None
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{option}: {text!r}: needs {count} comma-separated numbers ({meaning})")
    return values


def with_candidate(config: Config, camera: str, src: str | None, crop: str | None) -> Config:
    """``config`` with one camera's quad and/or crop replaced (validated like a config file; a
    ConfigError names what is wrong with the candidate)."""
    data = config.model_dump(mode="json")
    cams = [c for c in data["camera"] if c["name"] == camera]
    if not cams:
        known = ", ".join(c.name for c in config.camera)
        raise UsageError(f"--camera: no camera named {camera!r} in the config (known: {known})")
    geo = config.camera_named(camera).geometry
    if src is not None:
        xy = _numbers(src, 8, "--src", "x,y of the corners top-left, bottom-left, bottom-right, top-right")
        cams[0]["perspective"] = {
            "src": [xy[i : i + 2] for i in range(0, 8, 2)],
            "width": geo.width,
            "height": geo.height,
        }
    if crop is not None:
        front, back = _numbers(crop, 2, "--crop", "front,back")
        if not (front.is_integer() and back.is_integer()):
            raise UsageError(f"--crop: {crop!r}: front and back are whole columns")
        cams[0]["crop"] = {"front": int(front), "back": int(back)}
    return from_dict(data, label="calibrate")


def _config(args: argparse.Namespace) -> tuple[Config, str | None]:
    """-c CONFIG; else the config the (first) recording was made with; else the usual default. And
    the config file's path (None: a recording's or the built-in)."""
    if args.config is None and args.recording:
        data = Recording(args.recording[0]).config_data
        if data is not None:
            try:
                return from_dict(data, label=f"{args.recording[0]} (the recorded config)"), None
            except ConfigError as exc:
                raise ConfigError([*exc.lines, "give the config to use with -c"]) from None
    return load_args_config(args)


def cmd_calibrate(args: argparse.Namespace) -> int:
    if args.auto:
        config, path = _config(args)
        return calibrate_auto.cmd_auto(args, config, path)
    auto_only = [flag for flag, value in _AUTO_ONLY.items() if getattr(args, value) is not None]
    if auto_only:
        raise UsageError(f"{auto_only[0]} goes with --auto")
    if args.out is None:
        raise UsageError("calibrate needs OUT.png, the image to write (or --auto)")
    if len(args.recording or []) > 1:
        raise UsageError("--from: the preview shows one recording; several go with --auto")
    recording = args.recording[0] if args.recording else None
    if Path(args.out).suffix.lower() != ".png":
        raise UsageError(f"{args.out}: the output is a PNG; name it *.png")
    if (args.src is not None or args.crop is not None) != (args.camera is not None):
        raise UsageError("--camera NAME goes with --src x1,y1,...,x4,y4 and/or --crop FRONT,BACK")
    config = _config(args)[0]
    if args.camera is not None:
        config = with_candidate(config, args.camera, args.src, args.crop)
    if recording is not None:
        frames = frames_from_recording(config, recording, args.at)
        origin = f"recording {recording}"
    else:
        frames = frames_live(config, args.timeout)
        origin = "the running daemon"
        if not any(f is not None for f in frames.values()):
            raise UsageError(
                f"no frame from any camera within {args.timeout:g} s: is the daemon running "
                "(zmqcam-daemon start)? Or use --from RECORDING"
            )
    image, layout = render(config, frames)
    if not cv2.imwrite(args.out, image):
        raise UsageError(f"{args.out}: cannot write the PNG")
    missing = [name for name, frame in frames.items() if frame is None]
    print(f"wrote {args.out} ({layout.size[0]}x{layout.size[1]}), frames from {origin}")
    if missing:
        print(f"no frame from {', '.join(missing)}: shown as NO SIGNAL")
    if args.camera is not None:
        cam = config.camera_named(args.camera)
        geo = cam.geometry
        print(f"candidate for {cam.name} (paste into its [[camera]] table):")
        print(f"perspective = {toml_value({'src': geo.src, 'width': geo.width, 'height': geo.height})}")
        print(f"crop = {toml_value({'front': cam.crop_range[0], 'back': cam.crop_range[1]})}")
    return 0


def add_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="draw each camera's quad and crop over its frame, and the panorama, in one PNG",
        description="Draw each camera frame with its perspective quad (green) and crop lines (red), and the "
        "panorama they make, into one PNG.",
    )
    add_config_arguments(p, config_help="config file (default: a recording's own config, else the usual one)")
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--from",
        dest="recording",
        action="append",
        metavar="RECORDING",
        help="frames from a recording directory (--auto: one per placement of the board; repeat it)",
    )
    source.add_argument("--live", action="store_true", help="frames from the running daemon (the default)")
    p.add_argument("--at", type=float, default=0.0, metavar="S", help="--from: seconds into the recording (default 0)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S", help="--live: wait this long for frames")
    p.add_argument("--camera", metavar="NAME", help="preview other numbers for this camera (with --src/--crop)")
    p.add_argument("--src", metavar="x,y,...", help="candidate quad: x1,y1,...,x4,y4 (TL, BL, BR, TR)")
    p.add_argument("--crop", metavar="FRONT,BACK", help="candidate crop columns")
    calibrate_auto.add_auto_arguments(p)
    add_board_arguments(p)
    p.add_argument(
        "out",
        metavar="OUT.png",
        nargs="?",
        help=f"the image to write (--auto: default {calibrate_auto.DEFAULT_PNG})",
    )
    p.set_defaults(func=cmd_calibrate)
