"""``zmqcam-daemon stop [-c CONFIG]``: SIGTERM the running daemon and wait until it is gone."""

from __future__ import annotations

import argparse
import os
import signal

from zmqcam.cli.common import Subparsers, add_daemon_arguments, load_args_config, running_pid, until
from zmqcam.errors import UsageError
from zmqcam.supervisor.run_dir import daemon_running


def cmd_stop(args: argparse.Namespace) -> int:
    config, _ = load_args_config(args, check_keys=False)  # the daemon checked them when it started
    pid = running_pid(config)
    os.kill(pid, signal.SIGTERM)
    if not until(lambda: daemon_running(config.run_dir) is None, args.timeout):
        raise UsageError(f"zmqcam-daemon: pid {pid} did not stop within {args.timeout:.0f} s")
    print(f"zmqcam: stopped (pid {pid})")
    return 0


def add_command(subparsers: Subparsers) -> None:
    stop = add_daemon_arguments(subparsers.add_parser("stop", help="stop a running daemon"))
    stop.add_argument("--timeout", type=float, default=15.0)
    stop.set_defaults(func=cmd_stop)
