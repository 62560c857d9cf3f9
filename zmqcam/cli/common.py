"""What the commands share: the config arguments (``-c``, ``--transport``, ``--run-dir``, ``--port``)
and loading the config they name, and finding the running daemon."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from zmqcam.config import Config, config_file, resolve_config
from zmqcam.errors import NotRunning
from zmqcam.supervisor.run_dir import daemon_running

#: argparse's ``add_subparsers()`` result, which each command module adds its parser to
Subparsers = argparse._SubParsersAction


def add_config_arguments(
    p: argparse.ArgumentParser, config_help: str = "config file (TOML, or the original cameras_config.json)"
) -> None:
    """-c, --transport and --run-dir, read by ``load_args_config``; every command that needs the
    daemon's config takes them."""
    p.add_argument("-c", "--config", help=config_help)
    p.add_argument("--transport", choices=["jpg", "rtsp"], help="original-format configs: which camera URL to use")
    p.add_argument("--run-dir", help="override daemon.run_dir")


def add_daemon_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The config arguments and --port: the commands that start or talk to a daemon."""
    add_config_arguments(p)
    p.add_argument("--port", type=int, help="override http.port")
    return p


def load_args_config(args: argparse.Namespace, check_keys: bool = True) -> tuple[Config, str | None]:
    """The config named by -c, else ./config/zmqcam.toml, else the built-in default, with the
    overrides of the command line; and the config file's absolute path (None: built-in).
    ConfigError (one line per problem) when it does not load."""
    path = config_file(getattr(args, "config", None))
    config = resolve_config(path, transport=getattr(args, "transport", None), check_keys=check_keys)
    if getattr(args, "verbose", False):
        config = config.model_copy(update={"daemon": config.daemon.model_copy(update={"log_level": "debug"})})
    if getattr(args, "run_dir", None):
        config = config.model_copy(update={"daemon": config.daemon.model_copy(update={"run_dir": args.run_dir})})
    if getattr(args, "port", None) is not None:
        config = config.model_copy(update={"http": config.http.model_copy(update={"port": args.port})})
    return config, (str(Path(path).resolve()) if path else None)


def until(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``predicate`` every ``interval`` seconds for up to ``timeout``; whether it came true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def running_pid(config: Config) -> int:
    """The pid of the daemon on the config's run_dir; NotRunning (exit 3) when there is none."""
    pid = daemon_running(config.run_dir)
    if pid is None:
        raise NotRunning(f"zmqcam: not running (run_dir {config.run_dir})")
    return pid
