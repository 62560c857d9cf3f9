"""``zmqcam-daemon reload [-c CONFIG]``: the same as SIGHUP, the daemon re-reads its config."""

from __future__ import annotations

import argparse
import os
import signal

from zmqcam.cli.common import Subparsers, add_daemon_arguments, load_args_config, running_pid


def cmd_reload(args: argparse.Namespace) -> int:
    config, _ = load_args_config(args, check_keys=False)  # the daemon checks the new config itself
    pid = running_pid(config)
    os.kill(pid, signal.SIGHUP)
    print(f"zmqcam: asked pid {pid} to reload its config (see its log for the outcome)")
    return 0


def add_command(subparsers: Subparsers) -> None:
    reload = add_daemon_arguments(subparsers.add_parser("reload", help="re-read the config (like SIGHUP)"))
    reload.set_defaults(func=cmd_reload)
