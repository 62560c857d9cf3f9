"""``zmqcam-daemon import-config cameras_config.json > zmqcam.toml``: the original JSON as commented TOML.

The conversion goes through the same loader the daemon uses (``zmqcam.config.load_config``), so the
TOML says exactly what the JSON meant: camera names cam0, cam1, ..., the URL the chosen transport
picks (with the other one left as a comment), ``hight`` spelled ``height``, ``concat_x`` as ``crop``.
Loading the TOML gives the same ``Config`` as loading the JSON. Nothing else is written: every other
setting keeps its default, listed commented out where it matters for a rig like the original.

The TOML writer behind it is ``zmqcam.config.toml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zmqcam.cli.common import Subparsers
from zmqcam.config import infer_kind, load_config
from zmqcam.config.toml import render_toml, toml_value
from zmqcam.errors import UsageError

#: comments written above a key (the first time it appears), by "table.key"
KEY_COMMENTS: dict[str, str] = {
    "camera.name": 'Unique; lowercase letters, digits, "_" and "-". Used in topics, URLs (/stream/cam0) and logs.',
    "camera.source": "What to read: an http:// URL (.../capture or .../jpg: JPEG snapshots; ...:81/stream: MJPEG),\n"
    'rtsp://..., /dev/videoN or a device index, a video file, or "synthetic".',
    "camera.kind": "The protocol: snapshot, mjpeg, rtsp, device, file, replay or synthetic. Written only where the\n"
    "URL does not imply it; remove it when you change the URL to one that does.",
    "camera.rotate": "Rotation applied first, in degrees clockwise: 0, 90, 180 or 270.",
    "camera.perspective": "The quad in the rotated frame that becomes a width x height image: corners top-left,\n"
    'bottom-left, bottom-right, top-right (the original\'s "perspective"; "height" was "hight").',
    "camera.crop": 'The columns [front, back) of the warped image kept in the panorama (the original\'s "concat_x").',
}

_HEADER = """\
zmqcam configuration, converted from {source} by `zmqcam-daemon import-config`.
Check it with: zmqcam-daemon check-config <this file>. Every setting not written here keeps its
default; config/zmqcam.toml in the zmqcam repository lists them all."""

_TRAILER = """\
[stitch]
# cameras = ["cam0", "cam1"]       # stitch a subset (default: all, in order)
# extra_endpoints = ["tcp://0.0.0.0:5600"]   # the panorama for consumers on other hosts
# stale_after = 2.0                # seconds without a frame before a slot shows NO SIGNAL

[http]
# The original served GET /stream on port 5000 to everyone; zmqcam listens on this machine only
# unless host says otherwise.
# host = "0.0.0.0"
# port = 5000
"""


# ---------------------------------------------------------------------------------------------
# the conversion


def convert(path: str | Path, transport: str | None = None) -> str:
    """The original-format config at ``path`` as commented TOML. Raises ConfigError."""
    config = load_config(path, transport=transport)
    raw = json.loads(Path(path).read_text(encoding="utf-8"))  # valid: load_config just parsed it
    cameras = []
    notes: dict[tuple[str, int], str] = {}
    for i, cam in enumerate(config.camera):
        geo = cam.geometry
        cameras.append(
            {
                "name": cam.name,
                "source": cam.source,
                "kind": cam.kind,
                "rotate": cam.rotate,
                "perspective": {"src": geo.src, "width": geo.width, "height": geo.height},
                "crop": {"front": cam.crop_range[0], "back": cam.crop_range[1]},
            }
        )
        urls = raw["camera"][i].get("url", {})
        # the URL the transport did not pick, to switch by hand
        for kind, url in (("snapshot", urls.get("jpg")), ("rtsp", urls.get("rtsp"))):
            if url and url != cam.source:
                # kind only where the URL does not imply it, as for the camera itself
                also = f", kind = {toml_value(kind)}" if infer_kind(url) != kind else ""
                notes[("camera", i)] = f"the original also listed: source = {toml_value(url)}{also}"
    header = _HEADER.format(source=Path(path).name)
    return render_toml({"camera": cameras}, header=header, comments=KEY_COMMENTS, notes=notes) + "\n" + _TRAILER


# ---------------------------------------------------------------------------------------------
# the command


def cmd_import_config(args: argparse.Namespace) -> int:
    if Path(args.path).suffix.lower() != ".json":
        raise UsageError(f"{args.path}: not a .json file (import-config reads the original cameras_config.json)")
    text = convert(args.path, transport=args.transport)
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


def add_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "import-config",
        help="convert the original cameras_config.json to commented TOML",
        description="Convert the original cameras_config.json to a commented zmqcam TOML config (on stdout).",
    )
    p.add_argument("path", help="the original cameras_config.json")
    p.add_argument("--transport", choices=["jpg", "rtsp"], help="which camera URL to use when both are listed")
    p.add_argument("-o", "--output", help="write this file instead of stdout")
    p.set_defaults(func=cmd_import_config)
