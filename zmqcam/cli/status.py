"""``zmqcam-daemon status [-c CONFIG] [--json]``: processes, camera states and fps, subscribers, publish
targets; exit 3 when no daemon runs."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import urllib.request
from typing import Any

from zmqcam.bridge import read_announce
from zmqcam.bridge.listener import local_client_ssl_context
from zmqcam.bridge.report import publish_status
from zmqcam.bus.status import HUNG, collect_status
from zmqcam.cli.common import Subparsers, add_daemon_arguments, load_args_config, running_pid
from zmqcam.config import Config
from zmqcam.names import ALL_PARTS, BRIDGE, PANO, STATE_FILE, local_host
from zmqcam.supervisor.roles import parse_role, reachable_streams
from zmqcam.video.push import BACKOFF


def gather_status(config: Config) -> dict[str, Any]:
    """The daemon's process table, and the status of every stream its role publishes or reads."""
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads((config.run_dir / STATE_FILE).read_text())
    role = state.get("role", ALL_PARTS) if isinstance(state.get("role"), str) else ALL_PARTS
    expected = reachable_streams(config, role)
    streams = collect_status(config, streams=expected)
    http: dict[str, Any] | None = None
    if config.http.enabled and BRIDGE in parse_role(role):
        host = local_host(config.http.host)
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
    pid = running_pid(config)
    status = gather_status(config)
    if args.json:
        print(json.dumps(status, indent=1))
        return 0
    role = f", role {status['role']}" if status["role"] != ALL_PARTS else ""
    print(f"zmqcam: running (pid {pid}){role}, config {status['daemon'].get('config', '?')}")
    print(f"{'process':<18} {'state':<9} {'pid':>7} {'restarts':>8}")
    for name, child in status["daemon"].get("children", {}).items():
        # why a child could not start, as it reported
        error = f"  {child['error']}" if child.get("error") else ""
        # why the watchdog stopped it: while it is being restarted, and after (how often)
        if child.get("hung"):
            hung = child["hung"] if child["state"] == HUNG else f"hung {child.get('hangs', 1)}x, last: {child['hung']}"
            error += f"  {hung}"
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
        controls = s.get("controls")
        if isinstance(controls, dict):
            # what the camera reports after the last (re)connect applied them, and what went wrong
            print(f"{'':<10} controls: {controls.get('shown') or 'none applied'}")
            for problem in [*controls.get("errors", []), *controls.get("warnings", [])]:
                print(f"{'':<10} {problem}")
    pano = status["streams"].get(PANO)
    if pano is None and PANO in status["expected"]:
        print(f"{PANO:<10} {'no reply':<11}")
    elif pano is not None:
        subs = sum(v for k, v in pano.get("subscribers", {}).items() if k != "status")
        print(f"{PANO:<10} {'on' if pano['upstream'] else 'idle':<11} {pano['fps']:>6.1f} {subs:>11}")
        seam, exposure = pano.get("seam", "cut"), pano.get("exposure", "off")
        print(f"{'':<10} seam {seam}, exposure {exposure}, capture spread {pano.get('spread_ms', 0):.1f} ms")
        gains = {name: cam["gain"] for name, cam in pano.get("cameras", {}).items() if cam.get("gain")}
        if gains:
            shown = ", ".join(f"{name} {' '.join(f'{g:.2f}' for g in gain)}" for name, gain in gains.items())
            print(f"{'':<10} gains (B G R): {shown}")
    if status["http"] is not None:
        print(f"http clients: {status['http'].get('clients', 0)}")
    targets = publish_status(status["daemon"].get("children", {}))
    if targets:
        print(f"{'publish':<10} {'state':<11} {'connects':>8} {'failures':>8} {'sent':>8} {'dropped':>8}  url")
        for name, t in targets.items():
            counts = f"{t['connects']:>8} {t['failures']:>8} {t['sent']:>8} {t['dropped']:>8}"
            print(f"{name:<10} {t['state']:<11} {counts}  {t['url']}")
            if t["last_error"]:
                retry = f" (retry in {t['retry_in']:.1f} s)" if t["state"] == BACKOFF else ""
                print(f"{'':<10} last error: {t['last_error']}{retry}")
    return 0


def add_command(subparsers: Subparsers) -> None:
    status = add_daemon_arguments(
        subparsers.add_parser("status", help="processes, cameras, subscribers; exit 3 when not running")
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)
