#!/usr/bin/env python3
"""zmqcam benchmarks, each figure beside a baseline measured in the same run.

    scripts/bench [--quick] [--json PATH] [--only stitch,bus,daemon,calibrate,h264]   (or python scripts/bench.py ...)

The baselines need the ``bench`` extra (imagezmq, flask): ``scripts/bench`` installs it into the
quick start's ./.venv; a Python without them skips those baselines, saying so in one line and in the
table.

Sections (the original deployment's geometry: 4 cameras 640x480 -> 2347x250, 30 fps):
 1 stitch cost: remap path vs the original pipeline, one core and default threads; + JPEG encode;
   seams: cut, feather, feather + gain per panorama on one core (the CPU's SIMD level printed);
   snapshot capture spread with stitch.sync vs without (full run only: two daemon starts)
 2 bus: throughput, latency at 30 fps, slow subscriber frame age; vs imagezmq (and plain pyzmq)
 3 end to end: capture -> Subscriber, -> HTTP /stream client (vs the rebuilt Flask original) and, in
   the same window, -> /stream.mp4 client (each fragment's capture time from X-Capture-Origin-Ns + its
   tfdt, to its last byte received), beside /stream's; goal p99 under half a second
 4 viewers: N /stream clients, fps per client and daemon CPU; vs the rebuilt Flask original
 5 idle: daemon CPU with cameras asleep (fake MJPEG ESP32-CAMs); vs the goal
 6 wake-up: new viewer -> first live panorama, cameras asleep; vs the goal (+ the camera's start), with
   the ESP32 cameras' default warm-up and without it (the warm-up's cost)
 7 memory: peak RSS at the most viewers, and after connect/disconnect cycles; vs before the cycles
 8 calibrate: calibrate --auto on four cameras (seconds); vs the board detection alone
 9 h264: bytes per second per viewer, H.264 vs MJPEG, SSIM of each against pano raw; H.264 encode
   ms per panorama on one core (vs the JPEG encode); the CPU's SIMD level

Loopback only. Every process is started in its own session and stopped by its pid. Bounded: a full
run takes about 3-4 minutes, --quick about 30 s. Nothing here asserts a goal; "goals" in the JSON
just says which were met on this machine.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_common import (
    SCRIPTS,
    CpuMeter,
    Daemon,
    http_json,
    process_tree,
    ratio,
    rss_kb,
    start_script,
    stop_process,
    summary,
    system_busy,
)

from zmqcam.config.toml import render_toml
from zmqcam.testing.daemon import fake_camera_config, free_port

FPS = 30.0
#: issue 16: "latency shown to a viewer stays under half a second" (capture -> fragment received)
MP4_LATENCY_GOAL_MS = 500.0
#: the baselines' libraries (the ``bench`` extra) -> what is skipped without them
BASELINE_LIBRARIES = {"imagezmq": ("2 bus", "imagezmq PUB/SUB"), "flask": ("3-4", "the rebuilt Flask original")}
INSTALL_HINT = "scripts/bench installs it, or: pip install -e '.[bench]'"


def missing_baselines() -> list[str]:
    """The baseline libraries this Python cannot import (their baselines are then skipped)."""
    missing = []
    for module in BASELINE_LIBRARIES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    return missing


# ---------------------------------------------------------------------------------------------
# helpers


def run_viewers(
    port: int, args: list[str], on_counting: Any = None, on_done: Any = None, timeout: float = 120.0
) -> dict[str, Any]:
    """Run scripts/bench_viewers.py; call ``on_counting(pid)`` when it starts counting and
    ``on_done()`` when its counting window is over (it is still running then); return its JSON."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTS / "bench_viewers.py"), "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    window = None
    out: dict[str, Any] = {}
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("COUNTING"):
                window = on_counting(proc.pid) if on_counting else None
            elif line.startswith("{"):
                if on_done:
                    on_done()
                out = json.loads(line)
                break
    finally:
        stop_process(proc)
    out["window"] = window
    if on_done:
        on_done()
    return out


class Sampler:
    """Samples CPU (from the start) and the peak RSS of a process tree until stopped."""

    def __init__(self, root: int, client: int | None = None) -> None:
        self.root = root
        self.meter = CpuMeter(root)
        self.client = CpuMeter(client) if client else None
        self.sys0 = system_busy()
        self.peak_rss_kb = rss_kb(process_tree(root))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.peak_rss_kb = max(self.peak_rss_kb, rss_kb(process_tree(self.root)))

    def stop(self) -> dict[str, Any]:
        cores = self.meter.cores()
        busy, total = system_busy()
        machine = (busy - self.sys0[0]) / max(1.0, total - self.sys0[1]) * (os.cpu_count() or 1)
        client = self.client.cores() if self.client else None
        self.by_process = {k: round(v, 4) for k, v in self.meter.by_process().items()}
        self._stop.set()
        self._thread.join(timeout=2)
        self.peak_rss_kb = max(self.peak_rss_kb, rss_kb(process_tree(self.root)))
        return {
            "cpu_cores": cores,
            "peak_rss_mb": self.peak_rss_kb / 1024,
            "cpu_by_process": self.by_process,
            # the whole machine (cores busy) and the viewers' own process: on a 2-core machine the
            # clients and the fake cameras compete with the daemon
            "machine_cores_busy": machine,
            "client_cpu_cores": client,
        }


def viewers_step(
    port: int, root: int, clients: int, duration: float, warmup: float, latency: bool = False, path: str = "/stream"
) -> dict[str, Any]:
    holder: dict[str, Any] = {}

    def on_counting(client_pid: int) -> None:
        holder["s"] = Sampler(root, client_pid)

    def on_done() -> None:
        if "s" in holder and "r" not in holder:
            holder["r"] = holder["s"].stop()

    args = ["--clients", str(clients), "--duration", str(duration), "--warmup", str(warmup), "--path", path]
    if latency:
        args.append("--latency")
    out = run_viewers(port, args, on_counting, on_done, timeout=duration + warmup + 60)
    sampled = holder.get("r") or {"cpu_cores": None, "peak_rss_mb": None, "cpu_by_process": {}}
    fps = out.get("fps") or []
    return {
        "clients": clients,
        "fps_median": float(np.median(fps)) if fps else None,
        "fps_worst": min(fps) if fps else None,
        "at_full_rate": sum(1 for f in fps if f >= 0.9 * FPS),
        "failed": out.get("failed"),
        "latency_ms": out.get("latency_ms", []),
        **sampled,
    }


def bridge_cores(row: dict[str, Any]) -> float | None:
    """The bridge process's CPU (cores) in a viewers step."""
    found = [cores for title, cores in (row.get("cpu_by_process") or {}).items() if "bridge" in title]
    return sum(found) if found else None


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def read_until_live(port: int, path: str = "/stream", timeout: float = 10.0) -> dict[str, float | None]:
    """Connect to /stream and read parts until one holds a frame captured after connecting.

    Returns seconds from connecting to: the first part marked live ("first_live", whatever its
    capture time), and the first part whose X-Timestamp is later than the connect ("first_new": a
    frame the woken cameras really took)."""
    t0 = time.monotonic()
    wall0 = time.time()
    got: dict[str, float | None] = {"first_live": None, "first_new": None, "first_live_age_ms": None}
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        buf = b""
        pos = 0
        while time.monotonic() - t0 < timeout and got["first_new"] is None:
            s.settimeout(max(0.05, timeout - (time.monotonic() - t0)))
            chunk = s.recv(262144)
            if not chunk:
                break
            buf += chunk
            while True:  # every complete part in buf
                k = buf.find(b"Content-Length: ", pos)
                if k < 0:
                    break
                j = buf.find(b"\r\n\r\n", k)
                if j < 0:
                    break
                head = buf[k:j].decode("latin-1")
                n = int(head.split("\r\n", 1)[0][16:])
                if len(buf) < j + 4 + n:
                    break
                pos = j + 4 + n
                fields = dict(line.split(": ", 1) for line in head.split("\r\n") if ": " in line)
                now = time.monotonic() - t0
                if fields.get("X-Zmqcam-State") == "live":
                    ts = float(fields.get("X-Timestamp", "0"))
                    if got["first_live"] is None:
                        got["first_live"] = now
                        got["first_live_age_ms"] = (time.time() - ts) * 1000
                    if ts > wall0:
                        got["first_new"] = now
                        break
    return got


def camera_first_jpeg(stream_port: int, timeout: float = 10.0) -> float | None:
    """The fake camera's own start time: connect to its /stream -> first complete JPEG."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", stream_port), timeout=timeout) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        buf = b""
        while time.monotonic() - t0 < timeout:
            chunk = s.recv(262144)
            if not chunk:
                return None
            buf += chunk
            i = buf.find(b"\xff\xd8")
            if i >= 0 and buf.find(b"\xff\xd9", i) >= 0:
                return time.monotonic() - t0
    return None


def cameras_released(stream_ports: list[int], timeout: float) -> bool:
    """Wait until no fake camera has a stream client (asks each fake's /fake/stats)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if all(http_json(p - 1, "/fake/stats").get("active_stream_clients") == 0 for p in stream_ports):
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return False


def measure_wakeups(d: Daemon, ports: list[int], reps: int) -> dict[str, Any]:
    """Section 6: ``reps`` times, with every camera really asleep, a new viewer -> the first live panorama
    made of frames the woken cameras took."""
    wakes, cam_starts, really_asleep = [], [], []
    first_live: list[float] = []
    first_live_age: list[float] = []
    warmup = next(iter(d.status()["cameras"].values()), {}).get("warmup")
    for _ in range(reps):
        # asleep for real: every fake camera has no stream client (the daemon let go of it)
        released = cameras_released(ports, timeout=10.0)
        d.wait_cameras("asleep", 5)
        start = camera_first_jpeg(ports[0])
        if start is not None:
            cam_starts.append(start * 1000)
        released = released and cameras_released(ports, timeout=5.0)
        really_asleep.append(released)
        w = read_until_live(d.port)
        if w["first_new"] is not None:
            wakes.append(w["first_new"] * 1000)
        if w["first_live"] is not None:
            first_live.append(w["first_live"] * 1000)
            first_live_age.append(w["first_live_age_ms"] or 0.0)
        time.sleep(1.5)  # past idle_timeout (1 s): the grabbers close the cameras again
    return {
        "warmup": warmup,
        "ms": summary(wakes),
        "each_ms": wakes,
        # the first part marked live may hold a frame taken before the viewer came (cached
        # upstream while the cameras were going to sleep): when, and how old it was
        "first_live_part_ms": first_live,
        "first_live_part_age_ms": first_live_age,
        "camera_own_start_ms": summary(cam_starts),
        "attempts": reps,
        "cameras_released_before_each": really_asleep,
    }


def reload_daemon(d: Daemon, config: dict[str, Any], applied: Any, timeout: float = 20.0) -> None:
    """Rewrite the daemon's config and reload it (SIGHUP); wait until ``applied()`` says it took."""
    # what the daemon's command line set (--run-dir, --port) must stay as it is
    config = {
        **config,
        "daemon": {"run_dir": d.run_dir, "log_level": "warning"},
        "http": {**config.get("http", {}), "port": d.port},
    }
    Path(d.config_path).write_text(render_toml(config))
    os.kill(d.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            if applied():
                return
        time.sleep(0.2)
    raise RuntimeError(f"the reloaded config did not take within {timeout} s")


# ---------------------------------------------------------------------------------------------
# sections


def section_stitch(quick: bool, missing: list[str]) -> dict[str, Any]:
    import bench_stitch

    return bench_stitch.run(quick)


def section_bus(quick: bool, missing: list[str]) -> dict[str, Any]:
    import bench_bus

    return bench_bus.run(quick, skip=missing)


def section_calibrate(quick: bool, missing: list[str]) -> dict[str, Any]:
    import bench_calibrate

    return bench_calibrate.run(quick)


def section_h264(quick: bool, missing: list[str]) -> dict[str, Any]:
    import bench_h264

    return bench_h264.run(quick)


def section_daemon(quick: bool, missing: list[str]) -> dict[str, Any]:
    """Sections 3-7 on one daemon reading four fake ESP32-CAMs (MJPEG, 30 fps, separate processes),
    then the rebuilt Flask original reading the same cameras.

    Order: idle (5) and wake-up (6) first, while the cameras have never been wanted; then end to end
    (3), viewers (4) and memory (7)."""
    from zmqcam import Subscriber

    idle_dur = 1.0 if quick else 20.0
    reps = 1 if quick else 3
    e2e_dur = 1.0 if quick else 10.0
    # a smoke run: one step, the one the goals name (10 viewers, where the baseline falls behind)
    steps = (10,) if quick else (1, 10, 50, 100, 300)
    base_steps = (10,) if quick else (1, 10, 50)
    vdur, vwarm = (1.0, 1.0) if quick else (5.0, 2.0)
    ncycles = 50 if quick else 1000
    out: dict[str, Any] = {}
    fakes = []
    try:
        ports = []
        for _ in range(4):
            proc, line = start_script(["-m", "zmqcam.testing.fakecam", "--port", "0", "--fps", str(FPS)])
            fakes.append(proc)
            ports.append(int(line.split()[2]))
        config = fake_camera_config(ports, idle_timeout=1.0)
        with Daemon(config) as d:
            d.wait_ready()
            # -- 5: idle
            asleep = d.wait_cameras("asleep", 10)
            time.sleep(0.5)
            s = Sampler(d.pid)
            time.sleep(idle_dur)
            idle = s.stop()
            out["idle"] = {
                "cameras_asleep": asleep,
                "seconds": idle_dur,
                "cpu_percent_of_one_core": idle["cpu_cores"] * 100,
                "rss_mb": idle["peak_rss_mb"],
                "cpu_by_process": idle["cpu_by_process"],
            }
            # -- 6: wake-up, with the ESP32 cameras' default warm-up, then without it (reloaded)
            out["wakeup"] = measure_wakeups(d, ports, reps)
            no_warmup = json.loads(json.dumps(config))
            for cam in no_warmup["camera"]:
                cam["warmup"] = 0
            reload_daemon(d, no_warmup, lambda: all(c.get("warmup") == "0 s" for c in d.status()["cameras"].values()))
            out["wakeup"]["without_warmup"] = measure_wakeups(d, ports, reps)
            # -- 3: end to end, a Subscriber (pano raw, in this process), an MJPEG and an fMP4 viewer
            # at once: the same panoramas, the same load on the machine
            sub = Subscriber("pano", endpoint=f"ipc://{d.run_dir}/pano.sock")
            lat: list[float] = []
            http_result: dict[str, Any] = {}
            mp4_result: dict[str, Any] = {}

            def http_client() -> None:
                http_result.update(viewers_step(d.port, d.pid, 1, e2e_dur, 1.5, latency=True))

            def mp4_client() -> None:
                # a longer warm-up: the encoder starts with this viewer and its first keyframe
                mp4_result.update(viewers_step(d.port, d.pid, 1, e2e_dur, 2.0, latency=True, path="/stream.mp4"))

            t = threading.Thread(target=http_client)
            t.start()
            t_mp4 = threading.Thread(target=mp4_client)
            t_mp4.start()
            sub.read(timeout=15)  # the cameras wake up
            t_end = time.monotonic() + 1.0 + e2e_dur
            while time.monotonic() < t_end:
                ok, frame = sub.read(timeout=2.0)
                if ok and frame is not None:
                    lat.append((time.time_ns() - frame.capture_ns) / 1e6)
            sub.close()
            t.join(timeout=e2e_dur + 60)
            t_mp4.join(timeout=e2e_dur + 60)
            out["e2e"] = {
                "subscriber_ms": summary(lat),
                "http_ms": summary(http_result.get("latency_ms", [])),
                "http_fps": http_result.get("fps_median"),
                # capture -> the fragment's last byte received (X-Capture-Origin-Ns + tfdt)
                "mp4_ms": summary(mp4_result.get("latency_ms", [])),
                "mp4_fps": mp4_result.get("fps_median"),
            }
            # -- 4 and 7: viewers, CPU, RSS
            rows = []
            for n in steps:
                row = viewers_step(d.port, d.pid, n, vdur, vwarm)
                row.pop("latency_ms")
                rows.append(row)
            out["viewers"] = {"steps": rows}
            # -- 4 for H.264: the same number of /stream.mp4 viewers, the bridge's CPU beside MJPEG's
            mp4_rows = []
            for n in (steps[0],) if quick else (100,):
                row = viewers_step(d.port, d.pid, n, vdur, vwarm + 1.0, path="/stream.mp4")
                row.pop("latency_ms")
                mjpeg = viewers_step(d.port, d.pid, n, vdur, vwarm)
                row["bridge_cores"] = bridge_cores(row)
                row["mjpeg_bridge_cores"] = bridge_cores(mjpeg)
                row["bridge_cores_vs_mjpeg"] = ratio(row["bridge_cores"], row["mjpeg_bridge_cores"])
                mp4_rows.append(row)
            out["viewers"]["mp4_steps"] = mp4_rows
            time.sleep(0.5)
            rss_before = rss_kb(d.tree()) / 1024
            cyc = run_viewers(d.port, ["--cycles", str(ncycles), "--concurrency", "10"], timeout=120)
            time.sleep(1.0)
            rss_after = rss_kb(d.tree()) / 1024
            out["memory"] = {
                "peak_rss_mb_at_max_viewers": rows[-1]["peak_rss_mb"],
                "max_viewers": rows[-1]["clients"],
                "rss_mb_before_cycles": rss_before,
                "rss_mb_after_cycles": rss_after,
                "cycles": cyc.get("cycles"),
                "cycle_errors": cyc.get("errors"),
                "cycle_first_part_ms": summary(cyc.get("first_part_ms", [])),
            }
        # -- the baseline: the original serving architecture, on the same cameras
        if "flask" in missing:
            out["e2e"]["baseline_http_ms"] = summary([])
            out["viewers"]["baseline_steps"] = []
            return _daemon_ratios(out)
        port = free_port()
        proc, _ = start_script(
            [str(SCRIPTS / "bench_flask.py"), "--port", str(port), "--cams", ",".join(map(str, ports))]
        )
        try:
            wait_port(port)
            base_e2e = viewers_step(port, proc.pid, 1, e2e_dur, 2.0, latency=True)
            out["e2e"]["baseline_http_ms"] = summary(base_e2e["latency_ms"])
            base_rows = []
            for n in base_steps:
                row = viewers_step(port, proc.pid, n, vdur, vwarm)
                row.pop("latency_ms")
                base_rows.append(row)
            out["viewers"]["baseline_steps"] = base_rows
        finally:
            stop_process(proc)
    finally:
        for p in fakes:
            stop_process(p)
    return _daemon_ratios(out)


def _daemon_ratios(out: dict[str, Any]) -> dict[str, Any]:
    """Sections 3-7: ratios to the baselines and the goals."""
    e = out["e2e"]
    e["http_median_vs_baseline"] = ratio(e["http_ms"]["median"], e["baseline_http_ms"]["median"])
    e["http_p99_vs_baseline"] = ratio(e["http_ms"]["p99"], e["baseline_http_ms"]["p99"])
    e["mp4_median_vs_http"] = ratio(e["mp4_ms"]["median"], e["http_ms"]["median"])
    e["mp4_p99_vs_goal"] = ratio(e["mp4_ms"]["p99"], MP4_LATENCY_GOAL_MS)
    mp4_goal = f"/stream.mp4 p99 < {MP4_LATENCY_GOAL_MS:g} ms (latency shown to a viewer under half a second)"
    e["goals"] = {
        "HTTP median < 15 ms": (e["http_ms"]["median"] or 1e9) < 15,
        "HTTP p99 < 40 ms": (e["http_ms"]["p99"] or 1e9) < 40,
        mp4_goal: (e["mp4_ms"]["p99"] or 1e9) < MP4_LATENCY_GOAL_MS,
    }
    v = out["viewers"]
    base_by_n = {r["clients"]: r for r in v["baseline_steps"]}
    for r in v["steps"]:
        b = base_by_n.get(r["clients"])
        r["fps_worst_vs_baseline"] = ratio(r["fps_worst"], b["fps_worst"]) if b else None
        r["cpu_vs_baseline"] = ratio(r["cpu_cores"], b["cpu_cores"]) if b else None
    last = v["steps"][-1]
    base10 = base_by_n.get(10)
    v["goals"] = {
        f"{last['clients']} viewers all at full rate": last["at_full_rate"] == last["clients"],
        f"daemon under one core at {last['clients']} viewers": (last["cpu_cores"] or 9) < 1.0,
        "baseline cannot hold 10 clients at full rate": base10 is not None and base10["at_full_rate"] < 10,
    }
    for r in v.get("mp4_steps", []):
        v["goals"][f"{r['clients']} /stream.mp4 viewers at full rate, bridge under half a core"] = (
            r["at_full_rate"] == r["clients"] and (r["bridge_cores"] or 9) < 0.5
        )
    m = out["memory"]
    m["after_vs_before_cycles"] = ratio(m["rss_mb_after_cycles"], m["rss_mb_before_cycles"])
    m["goals"] = {"RSS does not grow over connect/disconnect cycles (< 5 %)": (m["after_vs_before_cycles"] or 9) < 1.05}
    wk = out["wakeup"]
    bare = wk["without_warmup"]
    # what the warm-up costs a new viewer: the same wake-up with it and without it
    wk["warmup_cost_ms"] = (
        wk["ms"]["median"] - bare["ms"]["median"]
        if wk["ms"]["median"] is not None and bare["ms"]["median"] is not None
        else None
    )
    wk["with_warmup_vs_without"] = ratio(wk["ms"]["median"], bare["ms"]["median"])
    wk["goal_ms"] = 500 + (wk["camera_own_start_ms"]["median"] or 0.0)
    wk["vs_goal"] = ratio(wk["ms"]["max"], wk["goal_ms"])
    wk["goals"] = {
        "wake-up < 500 ms + camera start, without warm-up": (bare["ms"]["max"] or 1e9) < wk["goal_ms"],
        "wake-up < 500 ms + camera start + warm-up": (wk["ms"]["max"] or 1e9)
        < wk["goal_ms"] + 1000 * warmup_seconds(wk["warmup"]),
    }
    i = out["idle"]
    i["vs_goal"] = ratio(i["cpu_percent_of_one_core"], 1.0)
    i["goals"] = {"idle < 1 % of one core": i["cpu_percent_of_one_core"] < 1.0}
    return out


# ---------------------------------------------------------------------------------------------
# the table


def warmup_seconds(shown: Any) -> float:
    """Seconds of a warm-up as status shows it ("0.5 s"); a frame count counts as nothing here."""
    text = str(shown or "")
    return float(text[:-2]) if text.endswith(" s") else 0.0


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(section, figure, zmqcam, baseline, ratio) rows."""
    rows: list[tuple[str, str, str, str, str]] = []
    st = results.get("stitch")
    if st:
        for label in ("one_core", "default_threads"):
            r = st[label]
            rows.append(
                (
                    "1 stitch",
                    f"stitch ms/pano ({label}, {r['threads']} thr)",
                    _f(r["remap_ms"]),
                    _f(r["original_ms"]) + " original",
                    _f(r["remap_ms"] / r["original_ms"]),
                )
            )
            rows.append(
                (
                    "1 stitch",
                    f"stitch+encode ms ({label})",
                    _f(r["stitch_plus_encode_ms"]),
                    _f(r["original_stitch_plus_imencode_ms"]) + " orig+imencode",
                    _f(r["stitch_plus_encode_ms"] / r["original_stitch_plus_imencode_ms"]),
                )
            )
        sm = st.get("seams")
        if sm:
            rows.append(
                (
                    "1 stitch",
                    f"cut / feather / feather+gain ms (1 thr, {sm['simd']})",
                    f"{_f(sm['cut_ms'])}/{_f(sm['feather_ms'])}/{_f(sm['feather_gain_ms'])}",
                    _f(sm["cut_ms"]) + " cut",
                    _f(sm["feather_gain_vs_cut"]),
                )
            )
        sp = st.get("spread")
        if sp:
            rows.append(
                (
                    "1 stitch",
                    "snapshot capture spread ms, sync (median)",
                    _f(sp["sync_ms"]),
                    _f(sp["free_ms"]) + " without sync",
                    _f(sp["sync_vs_free"]),
                )
            )
    bus = results.get("bus")
    if bus:
        by = {(c["transport"], c["mode"], c["impl"], c["subscribers"]): c for c in bus["cases"]}
        for c in bus["cases"]:
            if c["impl"] != "zmqcam":
                continue
            t, m, n = c["transport"], c["mode"], c["subscribers"]
            if m == "throughput":
                b = by.get((t, m, "imagezmq", n), {})
                rows.append(
                    (
                        "2 bus",
                        f"{t} {n} sub: frames/s per sub (min)",
                        _f(c.get("fps_per_sub_min"), 0),
                        _f(b.get("fps_per_sub_min"), 0) + " imagezmq",
                        _f(c.get("fps_per_sub_min_vs_imagezmq")),
                    )
                )
                rows.append(
                    (
                        "2 bus",
                        f"{t} {n} sub: GB/s total",
                        _f(c.get("gb_s_total")),
                        _f(b.get("gb_s_total")) + " imagezmq",
                        _f(c.get("gb_s_total_vs_imagezmq")),
                    )
                )
            elif m == "latency_30fps":
                b = by.get((t, m, "imagezmq", n), {})
                rows.append(
                    (
                        "2 bus",
                        f"{t} {n} sub: latency@30fps med/p99 ms",
                        f"{_f(c.get('latency_median_ms'))}/{_f(c.get('latency_p99_ms'))}",
                        f"{_f(b.get('latency_median_ms'))}/{_f(b.get('latency_p99_ms'))} imagezmq",
                        _f(c.get("latency_median_ms_vs_imagezmq")),
                    )
                )
            else:
                b = by.get((t, m, "imagezmq", n), {})
                p = by.get((t, m, "pyzmq_hwm2", n), {})
                rows.append(
                    (
                        "2 bus",
                        f"{t} slow sub: frame age med/max ms",
                        f"{_f(c.get('age_median_ms'), 0)}/{_f(c.get('age_max_ms'), 0)}",
                        f"{_f(b.get('age_median_ms'), 0)}/{_f(b.get('age_max_ms'), 0)} imagezmq; "
                        f"{_f(p.get('age_median_ms'), 0)}/{_f(p.get('age_max_ms'), 0)} pyzmq hwm2",
                        _f(c.get("age_max_ms_vs_imagezmq"), 3),
                    )
                )
    e = results.get("e2e")
    if e:
        rows.append(
            (
                "3 e2e",
                "capture->Subscriber med/p99 ms",
                f"{_f(e['subscriber_ms']['median'])}/{_f(e['subscriber_ms']['p99'])}",
                "-",
                "-",
            )
        )
        rows.append(
            (
                "3 e2e",
                "capture->HTTP /stream med/p99 ms",
                f"{_f(e['http_ms']['median'])}/{_f(e['http_ms']['p99'])}",
                f"{_f(e['baseline_http_ms']['median'])}/{_f(e['baseline_http_ms']['p99'])} flask",
                _f(e["http_median_vs_baseline"]),
            )
        )
        rows.append(
            (
                "3 e2e",
                "capture->HTTP /stream.mp4 fragment med/p99 ms",
                f"{_f(e['mp4_ms']['median'])}/{_f(e['mp4_ms']['p99'])}",
                f"{_f(e['http_ms']['median'])}/{_f(e['http_ms']['p99'])} /stream; goal p99 {MP4_LATENCY_GOAL_MS:g}",
                _f(e["mp4_median_vs_http"]),
            )
        )
    v = results.get("viewers")
    if v:
        base = {r["clients"]: r for r in v["baseline_steps"]}
        for r in v["steps"]:
            b = base.get(r["clients"])
            btxt = (
                f"{_f(b['fps_median'], 1)}/{_f(b['fps_worst'], 1)} fps, {_f(b['cpu_cores'])} cores flask"
                if b
                else "not run"
            )
            rows.append(
                (
                    "4 viewers",
                    f"{r['clients']} clients: fps med/worst, daemon cores",
                    f"{_f(r['fps_median'], 1)}/{_f(r['fps_worst'], 1)} fps, {_f(r['cpu_cores'])} cores"
                    f" (clients {_f(r.get('client_cpu_cores'))}, machine {_f(r.get('machine_cores_busy'))})",
                    btxt,
                    _f(r.get("fps_worst_vs_baseline")),
                )
            )
    for r in (v or {}).get("mp4_steps", []):
        rows.append(
            (
                "4 viewers",
                f"{r['clients']} /stream.mp4 clients: fps med/worst, bridge cores",
                f"{_f(r['fps_median'], 1)}/{_f(r['fps_worst'], 1)} fps, bridge {_f(r['bridge_cores'])} cores",
                f"bridge {_f(r['mjpeg_bridge_cores'])} cores with {r['clients']} /stream clients",
                _f(r["bridge_cores_vs_mjpeg"]),
            )
        )
    i = results.get("idle")
    if i:
        rows.append(
            (
                "5 idle",
                f"daemon CPU % over {i['seconds']:g} s, cameras asleep",
                _f(i["cpu_percent_of_one_core"], 3),
                "1.0 goal",
                _f(i["vs_goal"]),
            )
        )
    w = results.get("wakeup")
    if w:
        bare = w["without_warmup"]
        rows.append(
            (
                "6 wake-up",
                f"viewer -> first live pano med/max ms, warm-up {w['warmup']}",
                f"{_f(w['ms']['median'], 0)}/{_f(w['ms']['max'], 0)}",
                f"{_f(w['goal_ms'], 0)} goal (500 + camera start {_f(w['camera_own_start_ms']['median'], 0)})",
                _f(w["vs_goal"]),
            )
        )
        rows.append(
            (
                "6 wake-up",
                "same, warm-up 0: med/max ms (warm-up cost)",
                f"{_f(bare['ms']['median'], 0)}/{_f(bare['ms']['max'], 0)} (+{_f(w['warmup_cost_ms'], 0)} ms)",
                f"{_f(w['goal_ms'], 0)} goal",
                _f(ratio(bare["ms"]["max"], w["goal_ms"])),
            )
        )
    m = results.get("memory")
    if m:
        rows.append(
            ("7 memory", f"peak RSS MB at {m['max_viewers']} viewers", _f(m["peak_rss_mb_at_max_viewers"], 0), "-", "-")
        )
        rows.append(
            (
                "7 memory",
                f"RSS MB after {m['cycles']} connect/disconnect",
                _f(m["rss_mb_after_cycles"], 0),
                _f(m["rss_mb_before_cycles"], 0) + " before",
                _f(m["after_vs_before_cycles"], 3),
            )
        )
    c = results.get("calibrate")
    if c:
        frames = f"{c['cameras']} cameras x {c['frames_per_camera']} frames"
        rows.append(
            (
                "8 calibrate",
                f"calibrate --auto command s ({frames})",
                _f(c["command_s"]),
                _f(c["detection_s"]) + " detection alone",
                _f(c["command_vs_detection"]),
            )
        )
        rows.append(
            (
                "8 calibrate",
                "calibrate_rig s, 1 placement",
                _f(c["calibrate_s"]),
                _f(c["detection_s"]),
                _f(c["calibrate_vs_detection"]),
            )
        )
        rows.append(
            (
                "8 calibrate",
                "calibrate_rig s, 3 placements chained",
                _f(c["chained_calibrate_s"]),
                _f(c["chained_detection_s"]),
                _f(c["chained_vs_detection"]),
            )
        )
    h = results.get("h264")
    if h:
        for label in ("clean", "noise_3"):
            r = h.get(label)
            if not r:
                continue
            rows.append(
                (
                    "9 h264",
                    f"KB/s per viewer ({label}), SSIM vs pano raw",
                    f"{_f(r['h264_bytes_per_s_per_viewer'] / 1000, 0)} KB/s, SSIM {_f(r['h264']['ssim'], 4)}",
                    f"{_f(r['mjpeg_bytes_per_s_per_viewer'] / 1000, 0)} KB/s, SSIM {_f(r['mjpeg']['ssim'], 4)} MJPEG",
                    _f(r["bytes_vs_mjpeg"], 3),
                )
            )
            rows.append(
                (
                    "9 h264",
                    f"encode ms/pano, one core ({label}, {h['simd']})",
                    f"{_f(r['h264']['encode_ms'])} (p95 {_f(r['h264']['encode_ms_p95'])})",
                    _f(r["mjpeg"]["encode_ms"]) + " JPEG",
                    _f(r["encode_ms_vs_mjpeg"]),
                )
            )
    return rows


def print_table(rows: list[tuple[str, str, str, str, str]]) -> None:
    head = ("section", "figure", "zmqcam", "baseline (same run)", "ratio")
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(5)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes and durations (a smoke run)")
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    ap.add_argument(
        "--only",
        default="stitch,bus,daemon,calibrate,h264",
        help="comma list of: stitch, bus, daemon (sections 3-7), calibrate, h264",
    )
    a = ap.parse_args(argv)
    wanted = [s.strip() for s in a.only.split(",") if s.strip()]
    sections = {
        "stitch": section_stitch,
        "bus": section_bus,
        "daemon": section_daemon,
        "calibrate": section_calibrate,
        "h264": section_h264,
    }
    results: dict[str, Any] = {
        "quick": a.quick,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    missing = missing_baselines()
    for module in missing:
        what = BASELINE_LIBRARIES[module][1]
        print(f"bench: {module} is not installed, so {what} is skipped ({INSTALL_HINT})", file=sys.stderr)
    results["missing_baselines"] = missing
    t0 = time.monotonic()
    for name in wanted:
        ts = time.monotonic()
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        try:
            got = sections[name](a.quick, missing)
            if name == "daemon":
                results.update(got)
            else:
                results[name] = got
        except Exception as exc:  # one failing section must not lose the others
            results[name] = {"error": repr(exc)}
            print(f"[{name}] failed: {exc!r}", file=sys.stderr, flush=True)
        print(f"[{name}] {time.monotonic() - ts:.1f} s", file=sys.stderr, flush=True)
    results["seconds"] = time.monotonic() - t0
    ok = {k: v for k, v in results.items() if isinstance(v, dict) and "error" not in v}
    rows = table(ok)
    for module in missing:
        section, what = BASELINE_LIBRARIES[module]
        rows.append((section, f"baseline: {what}", "-", f"not run: {module} is not installed ({INSTALL_HINT})", "-"))
    print_table(rows)
    goals = {f"{k}: {g}": met for k, v in ok.items() for g, met in (v.get("goals") or {}).items()}
    print()
    for g, met in goals.items():
        print(f"{'MET   ' if met else 'MISSED'}  {g}")
    print(f"\n{'quick' if a.quick else 'full'} run, {results['seconds']:.0f} s, {os.cpu_count()} CPUs")
    results["goals"] = goals
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1, default=float))
    return 1 if any("error" in v for v in results.values() if isinstance(v, dict)) else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    os._exit(code)  # no lingering zmq/multiprocessing teardown
