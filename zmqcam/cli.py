"""``zmqcam-daemon``: the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zmqcam.config import Config, load_config
from zmqcam.errors import ConfigError


def _fail(lines: Sequence[str], code: int = 1) -> int:
    for line in lines:
        print(line, file=sys.stderr)
    return code


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.path, transport=args.transport)
    except ConfigError as exc:
        return _fail(exc.lines)
    print(describe(config, args.path))
    return 0


def describe(config: Config, origin: str) -> str:
    width, height = config.pano_size
    return f"{origin}: OK, {len(config.camera)} cameras, panorama {width}x{height}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zmqcam-daemon", description="A camera frame bus for rigs of IP cameras.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate a config file and print every problem")
    check.add_argument("path")
    check.add_argument("--transport", choices=["jpg", "rtsp"], help="original-format configs: which URL to use")
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
