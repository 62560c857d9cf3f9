"""``zmqcam-daemon``: start, stop, status, reload, check-config and keygen.

Every error a user can cause prints one line on stderr and exits non-zero, without a traceback.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from zmqcam.config import Config, config_file, load_config, resolve_config
from zmqcam.errors import ConfigError, NotRunning, StartError, UsageError
from zmqcam.names import ALL_PARTS, BRIDGE, LOG_FILE, PANO, PARTS, STATE_FILE, local_host

EXIT_NOT_RUNNING = 3  # LSB: "program is not running"


def load_args_config(args: argparse.Namespace, check_keys: bool = True) -> tuple[Config, str | None]:
    """The config named by -c, else ./config/zmqcam.toml, else the built-in default."""
    path = config_file(getattr(args, "config", None))
    try:
        config = resolve_config(path, transport=getattr(args, "transport", None), check_keys=check_keys)
    except ConfigError as exc:
        raise UsageError("\n".join(exc.lines)) from None
    if getattr(args, "verbose", False):
        config = config.model_copy(update={"daemon": config.daemon.model_copy(update={"log_level": "debug"})})
    if getattr(args, "run_dir", None):
        config = config.model_copy(update={"daemon": config.daemon.model_copy(update={"run_dir": args.run_dir})})
    if getattr(args, "port", None) is not None:
        config = config.model_copy(update={"http": config.http.model_copy(update={"port": args.port})})
    return config, (str(Path(path).resolve()) if path else None)


def cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.path, transport=args.transport)
    except ConfigError as exc:
        raise UsageError("\n".join(exc.lines)) from None
    width, height = config.pano_size
    print(f"{args.path}: OK, {len(config.camera)} cameras, panorama {width}x{height}")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from zmqcam.supervisor.supervisor import serve

    config, path = load_args_config(args)
    if args.detach:
        return _detach(args, config)
    try:
        return serve(config, path, role=args.role, announce=lambda line: print(line, flush=True))
    except StartError as exc:
        raise UsageError(f"zmqcam-daemon: {exc}") from None


def _detach(args: argparse.Namespace, config: Config) -> int:
    """Start the daemon in a new session, logging to run_dir/zmqcam.log; return once it is up."""
    from zmqcam.supervisor.run_dir import daemon_running, prepare_run_dir

    try:
        prepare_run_dir(config.run_dir)
    except StartError as exc:
        raise UsageError(f"zmqcam-daemon: {exc}") from None
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
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise UsageError(tail[0] if tail else f"zmqcam-daemon: failed to start (exit {proc.returncode})")
        if daemon_running(config.run_dir) == proc.pid:
            print(f"zmqcam: started in the background (pid {proc.pid}); log: {log_path}")
            return 0
        time.sleep(0.1)
    raise UsageError(f"zmqcam-daemon: not up after 30 s; see {log_path}")


def _running_pid(config: Config) -> int:
    from zmqcam.supervisor.run_dir import daemon_running

    pid = daemon_running(config.run_dir)
    if pid is None:
        raise NotRunning(f"zmqcam: not running (run_dir {config.run_dir})")
    return pid


def cmd_stop(args: argparse.Namespace) -> int:
    config, _ = load_args_config(args, check_keys=False)  # the daemon checked them when it started
    pid = _running_pid(config)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + args.timeout
    from zmqcam.supervisor.run_dir import daemon_running

    while time.monotonic() < deadline:
        if daemon_running(config.run_dir) is None:
            print(f"zmqcam: stopped (pid {pid})")
            return 0
        time.sleep(0.1)
    raise UsageError(f"zmqcam-daemon: pid {pid} did not stop within {args.timeout:.0f} s")


def cmd_reload(args: argparse.Namespace) -> int:
    config, _ = load_args_config(args, check_keys=False)  # the daemon checked them when it started
    pid = _running_pid(config)
    os.kill(pid, signal.SIGHUP)
    print(f"zmqcam: asked pid {pid} to reload its config (see its log for the outcome)")
    return 0


def gather_status(config: Config) -> dict[str, Any]:
    """The daemon's process table, and the status of every stream its role publishes or reads."""
    from zmqcam.bus.status import collect_status
    from zmqcam.supervisor.roles import parse_role, reachable_streams

    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((config.run_dir / STATE_FILE).read_text())
    role = state.get("role", ALL_PARTS) if isinstance(state.get("role"), str) else ALL_PARTS
    expected = reachable_streams(config, role)
    streams = collect_status(config, streams=expected)
    http: dict[str, Any] | None = None
    if config.http.enabled and BRIDGE in parse_role(role):
        host = local_host(config.http.host)
        from zmqcam.bridge import read_announce
        from zmqcam.bridge.listener import local_client_ssl_context

        port = (read_announce(config.run_dir) or {}).get("port", config.http.port)
        tls = local_client_ssl_context(config.http)  # None: plain http
        request = urllib.request.Request(f"{'https' if tls else 'http'}://{host}:{port}/status")
        if config.http.token:
            request.add_header("Authorization", f"Bearer {config.http.token}")
        elif config.http.basic_user is not None and config.http.basic_password is not None:
            pair = f"{config.http.basic_user}:{config.http.basic_password}".encode()
            request.add_header("Authorization", "Basic " + base64.b64encode(pair).decode("ascii"))
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(request, timeout=2, context=tls) as response,
        ):
            http = json.loads(response.read()).get("http")
    return {"daemon": state, "role": role, "expected": expected, "streams": streams, "http": http}


def cmd_status(args: argparse.Namespace) -> int:
    config, _ = load_args_config(args, check_keys=False)  # the daemon checked them when it started
    pid = _running_pid(config)
    status = gather_status(config)
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    role = f", role {status['role']}" if status["role"] != ALL_PARTS else ""
    print(f"zmqcam: running (pid {pid}){role}, config {status['daemon'].get('config', '?')}")
    print(f"{'process':<18} {'state':<9} {'pid':>7} {'restarts':>8}")
    for name, child in status["daemon"].get("children", {}).items():
        error = f"  {child['error']}" if child.get("error") else ""
        print(f"{name:<18} {child['state']:<9} {child['pid'] or '-':>7} {child['restarts']:>8}{error}")
    print(f"{'stream':<10} {'state':<11} {'fps':>6} {'subscribers':>11}  {'reconnects':>10}")
    for cam in config.camera:
        s = status["streams"].get(cam.name)
        if cam.name not in status["expected"]:
            continue  # neither published nor read by this daemon's role
        if s is None:
            print(f"{cam.name:<10} {'no reply':<11}")
            continue
        subs = sum(v for k, v in s.get("subscribers", {}).items() if k != "status")
        print(f"{cam.name:<10} {s['state']:<11} {s['fps']:>6.1f} {subs:>11}  {s.get('reconnects', 0):>10}")
    pano = status["streams"].get(PANO)
    if pano is None and PANO in status["expected"]:
        print(f"{PANO:<10} {'no reply':<11}")
    elif pano is not None:
        subs = sum(v for k, v in pano.get("subscribers", {}).items() if k != "status")
        print(f"{PANO:<10} {'on' if pano['upstream'] else 'idle':<11} {pano['fps']:>6.1f} {subs:>11}")
    if status["http"] is not None:
        print(f"http clients: {status['http'].get('clients', 0)}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from zmqcam.bus import curve

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
            f"  {key_dir / (args.client + curve.SECRET_SUFFIX)} (its secret key) and "
            f"{key_dir / (curve.SERVER + curve.PUBLIC_SUFFIX)} (the rig's public key), nothing else:\n"
            f'  Subscriber("pano", endpoint="tcp://RIG-HOST:5600", server_key="{curve.SERVER}.key", '
            f'client_key="{args.client}.key_secret")'
        )
    else:
        print(
            f'zmqcam: set in the config:  [curve] key_dir = "{key_dir.resolve()}"\n'
            f"  and copy {key_dir} (scp -rp, it stays private) to every host that runs part of the rig."
        )
    return 0


def add_config_arguments(
    p: argparse.ArgumentParser, config_help: str = "config file (TOML, or the original cameras_config.json)"
) -> None:
    """-c, --transport and --run-dir, read by ``load_args_config``; every command that needs the
    daemon's config takes them."""
    p.add_argument("-c", "--config", help=config_help)
    p.add_argument("--transport", choices=["jpg", "rtsp"], help="original-format configs: which camera URL to use")
    p.add_argument("--run-dir", help="override daemon.run_dir")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zmqcam-daemon", description="A camera frame bus for rigs of IP cameras.")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        add_config_arguments(p)
        p.add_argument("--port", type=int, help="override http.port")
        return p

    start = with_config(sub.add_parser("start", help="run the daemon (foreground unless --detach)"))
    start.add_argument("--detach", action="store_true", help="run in the background with a pid file in run_dir")
    start.add_argument("--role", default=ALL_PARTS, help=f"{ALL_PARTS} (default), or a comma list of {','.join(PARTS)}")
    start.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    start.set_defaults(func=cmd_start)

    stop = with_config(sub.add_parser("stop", help="stop a running daemon"))
    stop.add_argument("--timeout", type=float, default=15.0)
    stop.set_defaults(func=cmd_stop)

    status = with_config(sub.add_parser("status", help="processes, cameras, subscribers; exit 3 when not running"))
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    reload = with_config(sub.add_parser("reload", help="re-read the config (like SIGHUP)"))
    reload.set_defaults(func=cmd_reload)

    check = sub.add_parser("check-config", help="validate a config file and print every problem")
    check.add_argument("path")
    check.add_argument("--transport", choices=["jpg", "rtsp"], help="original-format configs: which URL to use")
    check.set_defaults(func=cmd_check_config)

    keygen = sub.add_parser("keygen", help="make CURVE keys for tcp endpoints (see [curve] key_dir)")
    keygen.add_argument("dir", help="the key directory (created mode 0700)")
    keygen.add_argument("--client", metavar="NAME", help="add and authorize one client pair for a remote program")
    keygen.set_defaults(func=cmd_keygen)

    from zmqcam import calibrate, import_config
    from zmqcam.recording import recorder as record

    for module in (record, calibrate, import_config):
        module.add_command(sub)
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
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run_single(name: str, add: Callable[[Any], None], argv: Sequence[str] | None) -> int:
    """Run one subcommand on its own (``python -m zmqcam.record ...``), as ``zmqcam-daemon NAME``."""
    parser = argparse.ArgumentParser(prog="zmqcam-daemon")
    add(parser.add_subparsers(dest="command", required=True))
    return dispatch(parser.parse_args([name, *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
