"""Shared helpers of scripts/bench.py: statistics, /proc accounting, the daemon under test (on
``zmqcam.testing.daemon``, which the tests use too).

Loopback only; every process started here is stopped by its own pid (and its own session).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from zmqcam.config.toml import render_toml
from zmqcam.testing.daemon import DaemonProcess, free_port

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return float(s[k])


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median": quantile(values, 0.5),
        "p99": quantile(values, 0.99),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
    }


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


# ---------------------------------------------------------------------------------------------
# /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] == "Z":
            continue
        parents.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # utime, stime are fields 14, 15 of stat (1-based); fields[0] here is field 3 (state)
            total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    return total


class CpuMeter:
    """CPU of a process tree over a window, in cores (1.0 = one core busy)."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.pids = process_tree(root)
        self.t0 = time.monotonic()
        self.c0 = cpu_seconds(self.pids)
        self._per0 = {pid: cpu_seconds([pid]) for pid in self.pids}

    def by_process(self) -> dict[str, float]:
        """Cores per process title (``zmqcam:stitcher`` ...) over the window so far."""
        elapsed = max(1e-9, time.monotonic() - self.t0)
        out: dict[str, float] = {}
        for pid in self.pids:
            c0 = self._per0.get(pid)
            c1 = cpu_seconds([pid])
            if c0 is None or c1 == 0:
                continue
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
            except OSError:
                title = str(pid)
            title = title.rsplit("/", 1)[-1][:40]
            out[title] = out.get(title, 0.0) + (c1 - c0) / elapsed
        return out

    def cores(self) -> float:
        # the same pids as at the start: a process that appeared later is not counted from zero
        return (cpu_seconds(self.pids) - self.c0) / max(1e-9, time.monotonic() - self.t0)


# ---------------------------------------------------------------------------------------------
# TOML (just enough for a zmqcam config dict)


# ---------------------------------------------------------------------------------------------
# the daemon under test


def http_json(port: int, path: str, timeout: float = 2.0) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return json.loads(r.read())


class Daemon:
    """``zmqcam-daemon start`` in its own session, with a generated config and run dir, logging to a file."""

    def __init__(self, config: dict[str, Any], log_level: str = "warning") -> None:
        self.tmp = tempfile.mkdtemp(prefix="zb")
        self.run_dir = os.path.join(self.tmp, "run")
        self.port = free_port()
        config = dict(config)
        config["daemon"] = {"run_dir": self.run_dir, "log_level": log_level}
        self.config_path = os.path.join(self.tmp, "bench.toml")
        Path(self.config_path).write_text(render_toml(config))
        self.log_path = os.path.join(self.tmp, "daemon.log")
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        args = ["-c", self.config_path, "--run-dir", self.run_dir, "--port", str(self.port)]
        self.process = DaemonProcess(args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        self.proc = self.process.proc

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.log_tail()}")
            with contextlib.suppress(OSError, ValueError):
                http_json(self.port, "/status", timeout=1.0)
                return
            time.sleep(0.1)
        raise RuntimeError(f"daemon not serving within {timeout} s: {self.log_tail()}")

    def status(self) -> dict[str, Any]:
        return http_json(self.port, "/status")

    def camera_states(self) -> dict[str, str]:
        try:
            cams = self.status().get("cameras", {})
        except (OSError, ValueError):
            return {}
        return {name: str(c.get("state")) for name, c in cams.items()}

    def wait_cameras(self, state: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.camera_states()
            if states and all(s == state for s in states.values()):
                return True
            time.sleep(0.1)
        return False

    def tree(self) -> list[int]:
        return process_tree(self.pid)

    def log_tail(self, n: int = 2000) -> str:
        try:
            return Path(self.log_path).read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        self.process.terminate(timeout=10)
        self._log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_script(
    args: list[str], ready_prefix: str = "READY", timeout: float = 20.0
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python <args>`` in its own session and wait for its READY line; return (proc, line)."""
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    import select

    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(ready_prefix):
                return proc, line.strip()
        if proc.poll() is not None:
            break
    stop_process(proc)
    raise RuntimeError(f"{args[0]} did not become ready")


def stop_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def system_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return float(total - idle), float(total)
