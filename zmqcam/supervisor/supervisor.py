"""The supervisor behind ``zmqcam-daemon start``: spawns, watches, restarts and stops every process.

Children (spawn start method, one process each, each in the shell of ``zmqcam.process``): a grabber
per camera, the stitcher, the HTTP bridge and one per ``[[publish]]`` target, as the role says
(``zmqcam.supervisor.roles``). A child
that crashes is restarted with backoff, at most ``RESTART_BUDGET`` times per ``RESTART_WINDOW``
seconds; past that it is reported as failed and the rest keep serving (frigate's watchdog pattern).
A child that exits cleanly is left alone. SIGTERM/SIGINT stop everything in reverse start order;
SIGHUP reloads the config, restarting only the children whose part changed. The process table
goes to ``daemon.json`` in the run directory (``zmqcam.supervisor.run_dir``), with what a child
reports with its heartbeat (a publish target's connection, ``zmqcam.process.REPORT``).

The watchdog: a hung process is a dead process. Every child beats from its own main loop over its
Link (``zmqcam.process.Heartbeat``); a child that has sent no heartbeat, or only "unhealthy" ones,
for ``daemon.watchdog`` seconds is logged with what it last said, shown ``hung``, sent SIGTERM,
SIGKILLed ``STOP_TIMEOUT`` later if still there (a stopped or deadlocked process ignores SIGTERM),
reaped, and restarted under the same budget and backoff as a crash. Start-up is not a hang: until
its first heartbeat (sent once its loop runs) a child has ``START_GRACE`` (at least the watchdog)
for imports and set-up, which can take long (remap tables of a large panorama, a busy machine).
The supervisor itself tells systemd it is ready and alive (``zmqcam.supervisor.systemd``), from
the same loop, so that a hung supervisor is restarted by systemd.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as wait_for_any
from typing import Any

from zmqcam.bus.status import BACKOFF, FAILED, HUNG, RUNNING, STARTING, STOPPED
from zmqcam.config import Config, load_config
from zmqcam.errors import ConfigError
from zmqcam.files import write_atomic
from zmqcam.names import (
    ALL_PARTS,
    BRIDGE,
    DAEMON,
    GRABBERS,
    PANO,
    PID_FILE,
    STATE_FILE,
    STITCHER,
    local_host,
    process_title,
    publish_name,
)
from zmqcam.process import ALIVE, EXIT_START_FAILED, REPORT, UNHEALTHY, name_process, read_link, setup_logging
from zmqcam.publisher.publisher import shown_url
from zmqcam.supervisor.roles import (
    ChildSpec,
    bound_endpoints,
    check_upstreams,
    child_specs,
    parse_role,
    upstream_streams,
)
from zmqcam.supervisor.run_dir import check_ports, prepare_run_dir, remove_sockets, run_dir_lock
from zmqcam.supervisor.systemd import Notifier

log = logging.getLogger(__name__)

RESTART_BUDGET = 5
RESTART_WINDOW = 60.0
RESTART_DELAY_START = 0.25
RESTART_DELAY_CAP = 10.0
STOP_TIMEOUT = 3.0
#: seconds a child has for imports and set-up before its first heartbeat (at least the watchdog): a
#: dozen processes importing numpy, OpenCV and aiohttp at once on a small board take a while, and so
#: do the remap tables of a large panorama
START_GRACE = 30.0
#: the supervisor wakes at least this often with nothing to do
IDLE_WAKE = 5.0


@dataclass
class Child:
    spec: ChildSpec
    process: multiprocessing.process.BaseProcess | None = None
    state: str = STARTING  # running, hung, backoff, failed, stopped
    restarts: int = 0
    crashes: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=RESTART_BUDGET + 1))
    next_start: float = 0.0
    delay: float = RESTART_DELAY_START
    last_exit: int | None = None
    started_at: float = 0.0
    #: the supervisor's end of the child's Link (zmqcam.process)
    link: Connection | None = None
    #: why the child could not start, as it reported (shown by ``zmqcam-daemon status`` until a
    #: later start succeeds)
    error: str | None = None
    #: monotonic time of the child's newest healthy heartbeat; 0: none since it was started
    last_beat: float = 0.0
    #: what its newest heartbeat said was wrong, while it says so
    unhealthy: str | None = None
    #: how often the watchdog stopped it, and why the last time
    hangs: int = 0
    hung: str | None = None
    #: while hung and still there: when it gets SIGKILL
    kill_at: float = 0.0
    #: what its newest heartbeat reported about its work (``zmqcam.process.REPORT``; a publish
    #: target's connection), written to the process table; None: nothing reported since its start
    report: dict[str, Any] | None = None

    def waiting_restart(self) -> bool:
        """Crashed or hung, gone, and waiting out its restart delay."""
        return self.state == BACKOFF or (self.state == HUNG and self.process is None)


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
        self.notifier = Notifier()
        #: the process table changed since daemon.json was written (heartbeats wake the loop every
        #: second, so the file is written only when something in it changed)
        self._dirty = False

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
        self._close_link(child)
        reader, writer = self._mp.Pipe(duplex=False)
        proc = self._mp.Process(
            target=spec.target, args=spec.args, kwargs={"link": writer}, name=process_title(spec.name), daemon=False
        )
        proc.start()
        writer.close()  # the child has its own copy; ours would keep the pipe open after it exits
        child.link = reader
        child.process = proc
        child.state = RUNNING
        child.started_at = time.monotonic()
        child.last_beat = 0.0
        child.unhealthy = None
        child.kill_at = 0.0
        child.report = None
        log.info("started %s (pid %s)", spec.name, proc.pid)

    def start_children(self, specs: list[ChildSpec]) -> None:
        for spec in specs:
            child = Child(spec)
            self.children[spec.name] = child
            self.order.append(spec.name)
            self._spawn(child)
        self.write_state()

    def _reap(self, now: float) -> None:
        reaped = False
        for child in self.children.values():
            proc = child.process
            if proc is None or child.state not in (RUNNING, HUNG) or proc.is_alive():
                continue
            reaped = True
            proc.join(0)
            code = proc.exitcode
            child.last_exit = code
            child.process = None
            self._read_link(child, now)
            self._close_link(child)
            hung = child.state == HUNG
            if code == 0 and not hung:
                child.state = STOPPED
                log.info("%s exited cleanly; not restarting it", child.spec.name)
                continue
            ended = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
            if hung:
                # stopped on purpose, however it ended: it is restarted like a crash
                why = f"hung ({child.hung}) and was stopped ({ended})"
            elif code == EXIT_START_FAILED and child.error is not None:
                why = f"crashed at start-up ({child.error})"
            else:
                why = f"crashed ({ended})"
            child.crashes.append(now)
            recent = [t for t in child.crashes if now - t <= RESTART_WINDOW]
            if len(recent) > RESTART_BUDGET:
                child.state = FAILED
                log.error(
                    "%s %s %d times within %.0f s: giving up on it; the rest keep serving",
                    child.spec.name,
                    why,
                    len(recent),
                    RESTART_WINDOW,
                )
                continue
            # a child that ran well for a while starts over with a short delay
            if now - child.started_at > RESTART_WINDOW:
                child.delay = RESTART_DELAY_START
            if not hung:  # a hung child shows "hung" until it runs again
                child.state = BACKOFF
            child.next_start = now + child.delay
            log.warning("%s %s; restarting in %.1f s", child.spec.name, why, child.delay)
            child.delay = min(RESTART_DELAY_CAP, child.delay * 2)
        if reaped:
            self.write_state()

    def _restart_due(self, now: float) -> None:
        for child in self.children.values():
            if child.waiting_restart() and now >= child.next_start:
                child.restarts += 1
                self._spawn(child)
                self.write_state()

    # -- the watchdog

    @property
    def watchdog(self) -> float:
        """``daemon.watchdog`` seconds; 0: off."""
        return self.config.daemon.watchdog

    def _watch_deadline(self, child: Child) -> float | None:
        """When a running child counts as hung unless it beats first; None: never."""
        if not self.watchdog or child.state != RUNNING:
            return None
        if child.last_beat:
            return child.last_beat + self.watchdog
        return child.started_at + max(self.watchdog, START_GRACE)

    def _watch(self, now: float) -> None:
        """Stop every child whose heartbeat is overdue; SIGKILL a hung one that outlived its grace."""
        for child in self.children.values():
            deadline = self._watch_deadline(child)
            if deadline is not None and now >= deadline:
                self._stop_hung(child, now)
            proc = child.process
            if child.state == HUNG and proc is not None and proc.pid is not None and now >= child.kill_at:
                child.kill_at = float("inf")  # once; the reap follows through its sentinel
                name, pid = child.spec.name, proc.pid
                log.warning("%s (pid %s) ignored SIGTERM for %.0f s; killing it", name, pid, STOP_TIMEOUT)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)

    def _stop_hung(self, child: Child, now: float) -> None:
        proc = child.process
        pid = proc.pid if proc is not None else None
        if child.last_beat:
            silent = f"{now - child.last_beat:.1f} s"
            what = f"unhealthy for {silent}: {child.unhealthy}" if child.unhealthy else f"no heartbeat for {silent}"
        else:
            what = f"no heartbeat {now - child.started_at:.1f} s after its start"
        child.state = HUNG
        child.hangs += 1
        child.hung = what
        child.kill_at = now + STOP_TIMEOUT
        log.error(
            "%s (pid %s) is hung: %s (watchdog %g s); stopping it, SIGKILL after %.0f s",
            child.spec.name,
            pid,
            what,
            self.watchdog,
            STOP_TIMEOUT,
        )
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        self.write_state()

    def _next_deadline(self, now: float) -> float:
        """Seconds until the loop has something to do: a restart, a watchdog deadline, a SIGKILL of
        a hung child, a ping to systemd."""
        due = [c.next_start for c in self.children.values() if c.waiting_restart()]
        due += [d for d in map(self._watch_deadline, self.children.values()) if d is not None]
        due += [c.kill_at for c in self.children.values() if c.state == HUNG and c.process is not None]
        if self.notifier.next_ping is not None:
            due.append(self.notifier.next_ping)
        return max(0.0, min(min(due) - now, IDLE_WAKE)) if due else IDLE_WAKE

    def _stop_child(self, child: Child) -> None:
        proc = child.process
        if proc is not None and proc.is_alive() and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)

    def _read_link(self, child: Child, now: float) -> None:
        """Take what the child reported over its Link: that it started, or why it could not, and its
        heartbeat: "alive", or "unhealthy" with a reason, which the watchdog counts as no heartbeat.
        At its end (the child exited) the link is closed."""
        if child.link is None:
            return
        try:
            for message in read_link(child.link):
                error = child.error
                if message.get("started") is True:
                    child.error = None
                if isinstance(message.get("error"), str):
                    child.error = message["error"]
                self._dirty |= child.error != error
                report = message.get(REPORT)
                if isinstance(report, dict) and report != child.report:
                    child.report = report
                    self._dirty = True
                if isinstance(message.get(UNHEALTHY), str):
                    child.unhealthy = message[UNHEALTHY]
                if message.get(ALIVE) is True:
                    if not child.last_beat:
                        log.debug("%s: first heartbeat %.1f s after its start", child.spec.name, now - child.started_at)
                    child.unhealthy = None
                    child.last_beat = now
        except (EOFError, OSError):
            self._close_link(child)

    @staticmethod
    def _close_link(child: Child) -> None:
        if child.link is not None:
            child.link.close()
            child.link = None

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
            child.state = STOPPED
            self._close_link(child)

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
        self.notifier.reloading()
        try:
            self._reload_config(self.config_path)
        finally:
            self.notifier.ready()

    def _reload_config(self, config_path: str) -> None:
        try:
            new_config = load_config(config_path)
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
        log.info("reloaded %s: restarted %s; kept %s", config_path, changed or "nothing", kept or "nothing")
        self.write_state()

    # -- state file

    def write_state(self) -> None:
        table = {
            name: {
                "state": c.state,
                "pid": c.process.pid if c.process is not None else None,
                "restarts": c.restarts,
                "last_exit": c.last_exit,
                "error": c.error,
                "hangs": c.hangs,
                "hung": c.hung,
                **({"report": c.report} if c.report is not None else {}),
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
        self._dirty = False

    # -- main loop

    def run(self) -> None:
        """Watch the children until a stop signal; the caller holds the run dir lock."""
        self.start_children(child_specs(self.config, self.role))
        self.notifier.ready()
        try:
            while not self._stop:
                sentinels: list[Any] = [c.process.sentinel for c in self.children.values() if c.process is not None]
                links: list[Any] = [c.link for c in self.children.values() if c.link is not None]
                wait_for_any([*sentinels, *links, self._wake_r], timeout=self._next_deadline(time.monotonic()))
                with contextlib.suppress(BlockingIOError):
                    self._wake_r.recv(4096)
                now = time.monotonic()
                if self._stop:
                    break
                for child in self.children.values():
                    self._read_link(child, now)
                self._reap(now)
                self._restart_due(now)
                self._watch(now)
                self.notifier.ping(now)
                if self._dirty:
                    self.write_state()
                if self._reload:
                    self._reload = False
                    self.reload()
                if self.children and all(c.state in (STOPPED, FAILED) for c in self.children.values()):
                    log.error("every process has stopped or failed; exiting")
                    break
        finally:
            log.info("stopping")
            self.notifier.stopping()
            self.stop_all()
            self.write_state()
            self.notifier.close()


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
    if BRIDGE in roles:
        for name, target in config.publish_targets.items():
            lines.append(f"zmqcam: publishing {target.stream} h264 to {shown_url(target.url)} ({publish_name(name)})")
    for stream in upstream_streams(config, role):
        what = "panorama" if stream == PANO else f"camera {stream}"
        lines.append(f"zmqcam: reading {what} from {show(config.consumer_endpoint(stream))}")
    if not curve and any(e.startswith("tcp://") for _, e in bound_endpoints(config, role)):
        lines.append("zmqcam: tcp endpoints are not encrypted; see [curve] key_dir and `zmqcam-daemon keygen`")
    return lines
