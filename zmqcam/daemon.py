"""The supervisor behind ``zmqcam-daemon start``: spawns, watches, restarts and stops every process.

Children (spawn start method, one process each): a grabber per camera, the stitcher, the HTTP bridge.
A child that crashes is restarted with backoff, at most ``RESTART_BUDGET`` times per
``RESTART_WINDOW`` seconds; past that it is reported as failed and the rest keep serving (frigate's
watchdog pattern). A child that exits cleanly is left alone. SIGTERM/SIGINT stop everything in
reverse start order; SIGHUP reloads the config, restarting only the children whose part changed.

Roles (``--role``): a daemon runs all three parts, or some of them, so that one config serves a
rig split over hosts: ``--role grabbers`` near the cameras binds their endpoints, ``--role
stitcher,bridge`` elsewhere connects to them (``Config.consumer_endpoint``). Everything that
touches endpoints here (port checks, socket clean-up, the announcement) follows the role.

The run directory holds the ipc sockets, ``zmqcam.pid``, a ``zmqcam.lock`` held for the daemon's
life (so a second daemon on the same run_dir is refused, and a SIGKILLed one leaves nothing that
blocks the next start) and ``daemon.json``, the process table that ``zmqcam-daemon status`` reads.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import signal
import socket
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path
from typing import Any

from zmqcam.bus.status import all_streams
from zmqcam.config import Config, load_config
from zmqcam.errors import ConfigError, StartError
from zmqcam.files import write_atomic
from zmqcam.grabber import run_grabber
from zmqcam.names import (
    ALL_PARTS,
    BRIDGE,
    DAEMON,
    GRABBERS,
    LOCK_FILE,
    PANO,
    PARTS,
    PID_FILE,
    STATE_FILE,
    STITCHER,
    grabber_name,
    local_host,
    process_title,
)
from zmqcam.process import name_process, setup_logging
from zmqcam.sources import rig_arguments

log = logging.getLogger("zmqcam.daemon")

RESTART_BUDGET = 5
RESTART_WINDOW = 60.0
RESTART_DELAY_START = 0.25
RESTART_DELAY_CAP = 10.0
STOP_TIMEOUT = 3.0


@dataclass
class ChildSpec:
    name: str  # "grabber:cam0", "stitcher", "bridge"
    target: Callable[..., None]
    args: tuple[Any, ...]
    #: what the child depends on; a reload restarts the child only when this changes
    fingerprint: str


@dataclass
class Child:
    spec: ChildSpec
    process: multiprocessing.process.BaseProcess | None = None
    state: str = "starting"  # running, backoff, failed, stopped
    restarts: int = 0
    crashes: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=RESTART_BUDGET + 1))
    next_start: float = 0.0
    delay: float = RESTART_DELAY_START
    last_exit: int | None = None
    started_at: float = 0.0


def parse_role(role: str) -> set[str]:
    """``--role``: "all", or a comma list of grabbers, stitcher, bridge (checked by the CLI)."""
    return set(PARTS) if role == ALL_PARTS else {part.strip() for part in role.split(",")}


def child_specs(config: Config, role: str = ALL_PARTS) -> list[ChildSpec]:
    """The processes a config needs, in start order (grabbers, stitcher, bridge)."""
    from zmqcam.bridge import run_bridge
    from zmqcam.stitcher import run_stitcher

    roles = parse_role(role)
    curve = config.curve.key_dir
    specs = []
    if GRABBERS in roles:
        for cam in config.camera:
            extra = rig_arguments(config, cam)
            fp = _fingerprint(cam.model_dump(), config.camera_endpoint(cam), config.daemon.log_level, extra, curve)
            specs.append(ChildSpec(grabber_name(cam.name), run_grabber, (config, cam.name), fp))
    if STITCHER in roles and config.stitch.enabled:
        geometry = [(c.model_dump(), config.consumer_endpoint(c.name)) for c in config.stitched_cameras]
        fp = _fingerprint(config.stitch.model_dump(), geometry, config.run_dir, config.daemon.log_level, curve)
        specs.append(ChildSpec(STITCHER, run_stitcher, (config,), fp))
    if BRIDGE in roles and config.http.enabled:
        streams = [(c.name, c.source_kind, config.consumer_endpoint(c.name)) for c in config.camera]
        pano = config.consumer_endpoint(PANO) if config.stitch.enabled else None
        fp = _fingerprint(config.http.model_dump(), streams, pano, config.pano_size, config.daemon.log_level, curve)
        specs.append(ChildSpec(BRIDGE, run_bridge, (config,), fp))
    return specs


def bound_endpoints(config: Config, role: str = ALL_PARTS) -> list[tuple[str, str]]:
    """(what, endpoint) for every endpoint the processes of ``role`` bind."""
    roles = parse_role(role)
    bound = []
    if GRABBERS in roles:
        bound += [(f"camera {c.name}", config.camera_endpoint(c)) for c in config.camera]
    if STITCHER in roles and config.stitch.enabled:
        bound += [("stitch", e) for e in config.pano_endpoints]
    return bound


def published_streams(config: Config, role: str = ALL_PARTS) -> list[str]:
    """The streams the processes of ``role`` publish: their cameras, and the panorama."""
    roles = parse_role(role)
    own = [c.name for c in config.camera] if GRABBERS in roles else []
    if STITCHER in roles and config.stitch.enabled:
        own.append(PANO)
    return own


def upstream_streams(config: Config, role: str = ALL_PARTS) -> list[str]:
    """The streams the processes of ``role`` read from another daemon (a part this one does not run)."""
    roles = parse_role(role)
    wanted: list[str] = []
    if STITCHER in roles and config.stitch.enabled:
        wanted += [c.name for c in config.stitched_cameras]
    if BRIDGE in roles and config.http.enabled:
        wanted += all_streams(config)
    own = set(published_streams(config, role))
    return [s for s in dict.fromkeys(wanted) if s not in own]


def reachable_streams(config: Config, role: str = ALL_PARTS) -> list[str]:
    """What ``zmqcam-daemon status`` asks a daemon of ``role`` about: the streams it publishes and
    the ones it reads from other daemons."""
    return list(dict.fromkeys(published_streams(config, role) + upstream_streams(config, role)))


def check_upstreams(config: Config, role: str = ALL_PARTS) -> None:
    """A part split off to another daemon must be reachable: an ipc endpoint inside this daemon's
    own run_dir can be bound by nobody else (the run_dir is locked to one daemon)."""
    if not child_specs(config, role):
        raise StartError(f"--role {role}: nothing to run with this config (stitch or http disabled)")
    run_dir = str(config.run_dir).rstrip("/") + "/"
    for stream in upstream_streams(config, role):
        endpoint = config.consumer_endpoint(stream)
        if endpoint.startswith("ipc://") and endpoint[len("ipc://") :].startswith(run_dir):
            key = "stitch" if stream == PANO else f"camera[{config.camera.index(config.camera_named(stream))}]"
            raise StartError(
                f"--role {role}: {stream} is published at {endpoint}, inside this daemon's own run_dir, where no "
                f"other daemon can bind it; give {key} a tcp:// endpoint (and a connect address) to split the rig"
            )


def _fingerprint(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------
# the run directory


def prepare_run_dir(path: Path) -> None:
    """Create the run dir 0700, or check an existing one is ours and private."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise StartError(f"run_dir {path}: cannot create: {exc.strerror}") from None
    info = path.stat()
    if info.st_uid != os.getuid():
        raise StartError(
            f"run_dir {path}: owned by uid {info.st_uid}, not by you (uid {os.getuid()}); refusing to use it"
        )
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)  # ours but too open: anyone could connect to the ipc sockets
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartError(f"run_dir {path}: not writable")


@contextlib.contextmanager
def run_dir_lock(path: Path) -> Iterator[None]:
    """Hold the run dir's lock; a second daemon on the same run_dir gets a one-line StartError."""
    fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = read_pid(path)
            raise StartError(f"another zmqcam daemon (pid {pid or '?'}) is already running on run_dir {path}") from None
        yield
    finally:
        os.close(fd)


def read_pid(run_dir: Path) -> int | None:
    try:
        return int((run_dir / PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def daemon_running(run_dir: Path) -> int | None:
    """The pid of the daemon holding ``run_dir``, or None (a stale pid file does not count)."""
    lock = run_dir / LOCK_FILE
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(run_dir) or -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def check_ports(config: Config, role: str = ALL_PARTS) -> None:
    """Fail early, with one line, when a TCP port the daemon needs is taken."""
    wanted: list[tuple[str, str, int]] = []
    if BRIDGE in parse_role(role) and config.http.enabled:
        wanted.append(("http", config.http.host, config.http.port))
    for what, endpoint in bound_endpoints(config, role):
        if endpoint.startswith("tcp://"):
            host, _, port_text = endpoint[6:].rpartition(":")
            wanted.append((what, "0.0.0.0" if host == "*" else host, int(port_text)))
    for what, host, port in wanted:
        if port == 0:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise StartError(f"{what}: cannot listen on {host}:{port}: {exc.strerror}") from None


def remove_sockets(config: Config, role: str = ALL_PARTS) -> None:
    """Unlink the ipc socket files of the parts this daemon runs (only those: another daemon may
    be serving the others from the same directory)."""
    for _, endpoint in bound_endpoints(config, role):
        if endpoint.startswith("ipc://"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(endpoint[len("ipc://") :])


# ---------------------------------------------------------------------------------------------
# the supervisor


class Supervisor:
    def __init__(self, config: Config, config_path: str | None = None, role: str = ALL_PARTS) -> None:
        self.config = config
        self.config_path = config_path
        self.role = role
        self.children: dict[str, Child] = {}
        self.order: list[str] = []
        self._mp = multiprocessing.get_context("spawn")
        self._stop = False
        self._reload = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # -- signals

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        # the handlers run between bytecodes; the wakeup fd also interrupts the wait below
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)

    # -- children

    def _spawn(self, child: Child) -> None:
        spec = child.spec
        proc = self._mp.Process(target=spec.target, args=spec.args, name=process_title(spec.name), daemon=False)
        proc.start()
        child.process = proc
        child.state = "running"
        child.started_at = time.monotonic()
        log.info("started %s (pid %s)", spec.name, proc.pid)

    def start_children(self, specs: list[ChildSpec]) -> None:
        for spec in specs:
            child = Child(spec)
            self.children[spec.name] = child
            self.order.append(spec.name)
            self._spawn(child)
        self.write_state()

    def _reap(self, now: float) -> None:
        for child in self.children.values():
            proc = child.process
            if proc is None or child.state != "running" or proc.is_alive():
                continue
            proc.join(0)
            code = proc.exitcode
            child.last_exit = code
            child.process = None
            if code == 0:
                child.state = "stopped"
                log.info("%s exited cleanly; not restarting it", child.spec.name)
                continue
            why = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            child.crashes.append(now)
            recent = [t for t in child.crashes if now - t <= RESTART_WINDOW]
            if len(recent) > RESTART_BUDGET:
                child.state = "failed"
                log.error(
                    "%s crashed (%s) %d times within %.0f s: giving up on it; the rest keep serving",
                    child.spec.name,
                    why,
                    len(recent),
                    RESTART_WINDOW,
                )
                continue
            # a child that ran well for a while starts over with a short delay
            if now - child.started_at > RESTART_WINDOW:
                child.delay = RESTART_DELAY_START
            child.state = "backoff"
            child.next_start = now + child.delay
            log.warning("%s crashed (%s); restarting in %.1f s", child.spec.name, why, child.delay)
            child.delay = min(RESTART_DELAY_CAP, child.delay * 2)
        self.write_state()

    def _restart_due(self, now: float) -> None:
        for child in self.children.values():
            if child.state == "backoff" and now >= child.next_start:
                child.restarts += 1
                self._spawn(child)
                self.write_state()

    def _next_deadline(self, now: float) -> float:
        starts = [c.next_start for c in self.children.values() if c.state == "backoff"]
        return max(0.0, min(starts) - now) if starts else 5.0

    def _stop_child(self, child: Child) -> None:
        proc = child.process
        if proc is not None and proc.is_alive() and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)

    def _join_children(self, children: list[Child]) -> None:
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children:
            proc = child.process
            if proc is None:
                continue
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive() and proc.pid is not None:
                log.warning("%s did not stop within %.0f s; killing it", child.spec.name, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.join(2.0)
            child.process = None
            child.state = "stopped"

    def stop_all(self) -> None:
        """Stop in reverse start order: consumers first, so nothing reconnects to a dying producer."""
        children = [self.children[name] for name in reversed(self.order)]
        for child in children:
            self._stop_child(child)
        self._join_children(children)

    # -- reload

    def reload(self) -> None:
        if self.config_path is None:
            log.warning("reload: running on the built-in default config; nothing to re-read")
            return
        try:
            new_config = load_config(self.config_path)
        except ConfigError as exc:
            for line in exc.lines:
                log.error("reload rejected: %s", line)
            log.error("keeping the running config")
            return
        if new_config.run_dir != self.config.run_dir:
            log.error("reload rejected: run_dir cannot change while running (restart the daemon instead)")
            return
        new_specs = child_specs(new_config, self.role)
        new_names = [s.name for s in new_specs]
        changed = [
            name
            for name in self.order
            if name not in new_names
            or self.children[name].spec.fingerprint != next(s for s in new_specs if s.name == name).fingerprint
        ]
        stopping = [self.children[name] for name in reversed(self.order) if name in changed]
        for child in stopping:
            self._stop_child(child)
        self._join_children(stopping)
        old = self.children
        self.children = {}
        for spec in new_specs:
            if spec.name in old and spec.name not in changed:
                self.children[spec.name] = old[spec.name]
                self.children[spec.name].spec = spec
            else:
                child = Child(spec)
                self.children[spec.name] = child
                self._spawn(child)
        self.order = new_names
        self.config = new_config
        kept = [n for n in new_names if n in old and n not in changed]
        log.info("reloaded %s: restarted %s; kept %s", self.config_path, changed or "nothing", kept or "nothing")
        self.write_state()

    # -- state file

    def write_state(self) -> None:
        table = {
            name: {
                "state": c.state,
                "pid": c.process.pid if c.process is not None else None,
                "restarts": c.restarts,
                "last_exit": c.last_exit,
            }
            for name, c in self.children.items()
        }
        state = {
            "pid": os.getpid(),
            "config": self.config_path or "<built-in default>",
            "role": self.role,
            "children": table,
        }
        write_atomic(self.config.run_dir / STATE_FILE, json.dumps(state, indent=1))

    # -- main loop

    def run(self) -> None:
        """Watch the children until a stop signal; the caller holds the run dir lock."""
        self.start_children(child_specs(self.config, self.role))
        try:
            while not self._stop:
                sentinels: list[Any] = [c.process.sentinel for c in self.children.values() if c.process is not None]
                wait_for_any([*sentinels, self._wake_r], timeout=self._next_deadline(time.monotonic()))
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
                now = time.monotonic()
                if self._stop:
                    break
                self._reap(now)
                self._restart_due(now)
                if self._reload:
                    self._reload = False
                    self.reload()
                if self.children and all(c.state in ("stopped", "failed") for c in self.children.values()):
                    log.error("every process has stopped or failed; exiting")
                    break
        finally:
            log.info("stopping")
            self.stop_all()
            self.write_state()


def serve(
    config: Config, config_path: str | None, role: str = ALL_PARTS, announce: Callable[[str], None] = print
) -> int:
    """Run the daemon in the foreground until SIGTERM/SIGINT. Raise StartError for user errors."""
    setup_logging(config.daemon.log_level)
    name_process(process_title(DAEMON))
    run_dir = config.run_dir
    prepare_run_dir(run_dir)
    with run_dir_lock(run_dir):
        check_upstreams(config, role)
        check_ports(config, role)
        # a daemon killed with SIGKILL left its sockets: remove them before anyone connects
        remove_sockets(config, role)
        write_atomic(run_dir / PID_FILE, f"{os.getpid()}\n")
        supervisor = Supervisor(config, config_path, role)
        supervisor.install_signals()
        for line in where_to_look(config, role):
            announce(line)
        try:
            supervisor.run()
        finally:
            remove_sockets(config, role)
            for name in (PID_FILE, STATE_FILE):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(run_dir / name)
    return 0


def where_to_look(config: Config, role: str = ALL_PARTS) -> list[str]:
    roles = parse_role(role)
    curve = config.curve.key_dir is not None

    def show(endpoint: str) -> str:
        return endpoint + (" (CURVE)" if curve and endpoint.startswith("tcp://") else "")

    lines = []
    if config.http.enabled and BRIDGE in roles:
        host = local_host(config.http.host)
        base = f"{'https' if config.http.tls_cert else 'http'}://{host}:{config.http.port}"
        lines.append(f"zmqcam: panorama at {base}/stream (page: {base}/)")
    if config.stitch.enabled and STITCHER in roles:
        shown = ", ".join(show(e) for e in config.pano_endpoints)
        lines.append(f"zmqcam: panorama topics 'pano raw' / 'pano jpeg' on {shown}")
    if GRABBERS in roles:
        for cam in config.camera:
            lines.append(f"zmqcam: camera {cam.name} ({cam.source_kind}) on {show(config.camera_endpoint(cam))}")
    for stream in upstream_streams(config, role):
        what = "panorama" if stream == PANO else f"camera {stream}"
        lines.append(f"zmqcam: reading {what} from {show(config.consumer_endpoint(stream))}")
    if not curve and any(e.startswith("tcp://") for _, e in bound_endpoints(config, role)):
        lines.append("zmqcam: tcp endpoints are not encrypted; see [curve] key_dir and `zmqcam-daemon keygen`")
    return lines
