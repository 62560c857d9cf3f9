"""``zmqcam-daemon keygen DIR [--client NAME]``: CURVE keys for tcp endpoints (see [curve] key_dir)."""

from __future__ import annotations

import argparse
from pathlib import Path

from zmqcam.bus import curve
from zmqcam.cli.common import Subparsers
from zmqcam.config.keyfiles import PUBLIC_SUFFIX, SECRET_SUFFIX, SERVER
from zmqcam.errors import UsageError
from zmqcam.names import PANO


def cmd_keygen(args: argparse.Namespace) -> int:
    key_dir = Path(args.dir)
    try:
        made = curve.add_client(key_dir, args.client) if args.client else curve.keygen(key_dir)
    except (OSError, ValueError) as exc:
        raise UsageError(f"zmqcam-daemon: keygen: {exc}") from None
    for path in made:
        print(f"zmqcam: wrote {path}")
    if args.client:
        print(
            f"zmqcam: {args.client} may subscribe from the next connection on. Give the program on the other host\n"
            f"  {key_dir / (args.client + SECRET_SUFFIX)} (its secret key) and "
            f"{key_dir / (SERVER + PUBLIC_SUFFIX)} (the rig's public key), nothing else:\n"
            f'  Subscriber("{PANO}", endpoint="tcp://RIG-HOST:5600", server_key="{SERVER}{PUBLIC_SUFFIX}", '
            f'client_key="{args.client}{SECRET_SUFFIX}")'
        )
    else:
        print(
            f'zmqcam: set in the config:  [curve] key_dir = "{key_dir.resolve()}"\n'
            f"  and copy {key_dir} (scp -rp, it stays private) to every host that runs part of the rig."
        )
    return 0


def add_command(subparsers: Subparsers) -> None:
    keygen = subparsers.add_parser("keygen", help="make CURVE keys for tcp endpoints (see [curve] key_dir)")
    keygen.add_argument("dir", help="the key directory (created mode 0700)")
    keygen.add_argument("--client", metavar="NAME", help="add and authorize one client pair for a remote program")
    keygen.set_defaults(func=cmd_keygen)
