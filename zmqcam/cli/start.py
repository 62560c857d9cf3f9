"""``zmqcam-daemon start [-c CONFIG] [--detach] [--port N] [--run-dir DIR] [--role PARTS] [-v]``."""

from __future__ import annotations

import argparse
import subprocess
import sys

from zmqcam.cli.common import Subparsers, add_daemon_arguments, load_args_config, until
from zmqcam.config import Config
from zmqcam.errors import UsageError
from zmqcam.names import ALL_PARTS, LOG_FILE, PARTS
from zmqcam.supervisor.run_dir import daemon_running, prepare_run_dir
from zmqcam.supervisor.supervisor import serve

#: how long ``--detach`` waits for the daemon in the background to hold its run_dir
DETACH_TIMEOUT = 30.0


def cmd_start(args: argparse.Namespace) -> int:
    config, path = load_args_config(args)
    if args.detach:
        return _detach(args, config)
    return serve(config, path, role=args.role, announce=lambda line: print(line, flush=True))


def _detach(args: argparse.Namespace, config: Config) -> int:
    """Start the daemon in a new session, logging to run_dir/zmqcam.log; return once it is up."""
    prepare_run_dir(config.run_dir)
    argv = [sys.executable, "-m", "zmqcam.cli", *[a for a in sys.argv[1:] if a != "--detach"]]
    if sys.argv[1:2] != ["start"]:  # called as a function (tests): rebuild the command line
        argv = [sys.executable, "-m", "zmqcam.cli", "start", "--role", args.role]
        if args.config:
            argv += ["-c", args.config]
    log_path = config.run_dir / LOG_FILE
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file, start_new_session=True, close_fds=True
        )

    def up() -> bool:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise UsageError(tail[0] if tail else f"zmqcam-daemon: failed to start (exit {proc.returncode})")
        return daemon_running(config.run_dir) == proc.pid

    if not until(up, DETACH_TIMEOUT):
        raise UsageError(f"zmqcam-daemon: not up after {DETACH_TIMEOUT:.0f} s; see {log_path}")
    print(f"zmqcam: started in the background (pid {proc.pid}); log: {log_path}")
    return 0


def add_command(subparsers: Subparsers) -> None:
    start = add_daemon_arguments(subparsers.add_parser("start", help="run the daemon (foreground unless --detach)"))
    start.add_argument("--detach", action="store_true", help="run in the background with a pid file in run_dir")
    start.add_argument("--role", default=ALL_PARTS, help=f"{ALL_PARTS} (default), or a comma list of {','.join(PARTS)}")
    start.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    start.set_defaults(func=cmd_start)
