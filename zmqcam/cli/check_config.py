"""``zmqcam-daemon check-config PATH``: every problem of a config, one line each; exit 1 if any."""

from __future__ import annotations

import argparse

from zmqcam.cli.common import Subparsers
from zmqcam.config import load_config


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.path, transport=args.transport)
    width, height = config.pano_size
    print(f"{args.path}: OK, {len(config.camera)} cameras, panorama {width}x{height}")
    return 0


def add_command(subparsers: Subparsers) -> None:
    check = subparsers.add_parser("check-config", help="validate a config file and print every problem")
    check.add_argument("path")
    check.add_argument("--transport", choices=["jpg", "rtsp"], help="original-format configs: which URL to use")
    check.set_defaults(func=cmd_check_config)
