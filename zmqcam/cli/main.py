"""``zmqcam-daemon``: the parser, and the one place where errors become lines and exit codes.

Every error a user can cause prints one line on stderr (one per problem for a config) and exits
non-zero, without a traceback: ``dispatch`` turns ``ConfigError``, ``StartError``,
``RecordingError``, ``CalibrationError`` and ``UsageError`` into that; the commands just raise them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from zmqcam.cli import board, calibrate, check_config, import_config, keygen, record, reload, start, status, stop
from zmqcam.errors import CalibrationError, ConfigError, NotRunning, RecordingError, StartError, UsageError
from zmqcam.names import ALL_PARTS, PARTS

#: every command, in the order ``--help`` lists them; each module has ``add_command(subparsers)``
COMMANDS = (start, stop, status, reload, check_config, keygen, record, board, calibrate, import_config)

EXIT_USAGE = 1
#: LSB: "program is not running"
EXIT_NOT_RUNNING = 3
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zmqcam-daemon", description="A camera frame bus for rigs of IP cameras.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "role", ALL_PARTS) != ALL_PARTS:
        bad = set(args.role.split(",")) - set(PARTS)
        if bad:
            print(f"zmqcam-daemon: --role: unknown part(s) {', '.join(sorted(bad))}", file=sys.stderr)
            return 2
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run a parsed command: user errors become one line on stderr and an exit code."""
    try:
        return int(args.func(args))
    except NotRunning as exc:
        print(exc, file=sys.stderr)
        return EXIT_NOT_RUNNING
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return EXIT_USAGE
    except StartError as exc:
        print(f"zmqcam-daemon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (RecordingError, CalibrationError, UsageError) as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
