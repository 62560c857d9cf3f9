"""Section 2: the frame bus. 640x480 raw frames, one publisher, 1 and 4 subscribers, ipc and tcp.

zmqcam (``sockets.make_publisher`` + ``protocol.send_frame``, read with ``zmqcam.Subscriber``) against
imagezmq 1.2 in PUB/SUB mode (``ImageSender(REQ_REP=False)`` / ``ImageHub(REQ_REP=False)``, its
defaults) and, for the slow reader, plain pyzmq PUB/SUB with SNDHWM = RCVHWM = 2. Every publisher
and subscriber is its own process (fork), so the figures include no GIL sharing.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import time
from collections.abc import Collection
from typing import Any

import numpy as np
from bench_common import summary

from zmqcam.testing.daemon import free_port

W, H = 640, 480
FRAME_BYTES = W * H * 3
STREAM = "cam0"
_MP = mp.get_context("fork")


def _image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (H, W, 3), dtype=np.uint8)


def _publisher(
    impl: str, endpoint: str, rate: float | None, duration: float, nsubs: int, ready: Any, out: Any, stop: Any
) -> None:
    import zmq

    image = _image()
    sent = 0
    try:
        if impl == "zmqcam":
            from zmqcam.bus import protocol, sockets

            ctx = zmq.Context()
            pub = sockets.make_publisher(ctx, [endpoint])
            demand = sockets.Demand()
            topic = protocol.topic(STREAM, protocol.RAW)
            deadline = time.monotonic() + 15
            while demand.subscribers(topic) < nsubs and time.monotonic() < deadline:
                if pub.poll(100):
                    sockets.drain_subscriptions(pub, demand)

            def send(seq: int) -> None:
                protocol.send_frame(pub, STREAM, protocol.RAW, seq, time.time_ns(), image, W, H)

            sock = pub
        elif impl == "imagezmq":
            import imagezmq

            sender = imagezmq.ImageSender(connect_to=endpoint, REQ_REP=False)
            sock = sender.zmq_socket
            ctx = sender.zmq_context
            _wait_ready(ready, nsubs)

            def send(seq: int) -> None:
                sender.send_image(str(time.time_ns()), image)

        else:  # plain pyzmq, HWM 2 on both sides
            ctx = zmq.Context()
            sock = ctx.socket(zmq.PUB)
            sock.setsockopt(zmq.SNDHWM, 2)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(endpoint)
            _wait_ready(ready, nsubs)

            def send(seq: int) -> None:
                sock.send_multipart([str(time.time_ns()).encode(), memoryview(image)], copy=False)

        t_end = time.monotonic() + duration
        nxt = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= t_end or (sent % 16 == 0 and stop.is_set()):
                break
            if rate:
                if now < nxt:
                    time.sleep(nxt - now)
                nxt += 1.0 / rate
            send(sent)
            sent += 1
        sock.close(linger=0)
        ctx.term()
    finally:
        out.put(("pub", sent))


def _wait_ready(ready: Any, nsubs: int) -> None:
    deadline = time.monotonic() + 15
    got = 0
    while got < nsubs and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            ready.get(timeout=0.2)
            got += 1
    time.sleep(0.3)  # PUB/SUB slow joiner: let the subscriptions reach the publisher


def _subscriber(impl: str, endpoint: str, mode: str, duration: float, ready: Any, out: Any) -> None:
    import zmq

    result: dict[str, Any] = {"frames": 0}
    try:
        if impl == "zmqcam":
            from zmqcam import Subscriber

            sub = Subscriber(STREAM, endpoint=endpoint, context=zmq.Context())

            def recv() -> tuple[int, Any] | None:
                ok, frame = sub.read(timeout=2.0)
                if not ok or frame is None:
                    return None
                return frame.capture_ns, frame.image

            def close() -> None:
                sub.close()

            def received() -> int:
                return sub.received

        elif impl == "imagezmq":
            import imagezmq

            hub = imagezmq.ImageHub(open_port=endpoint, REQ_REP=False)
            hub.zmq_socket.setsockopt(zmq.RCVTIMEO, 2000)
            hub.zmq_socket.setsockopt(zmq.LINGER, 0)
            count = [0]

            def recv() -> tuple[int, Any] | None:
                try:
                    msg, image = hub.recv_image()
                except zmq.Again:
                    return None
                count[0] += 1
                return int(msg), image

            def close() -> None:
                hub.close()

            def received() -> int:
                return count[0]

        else:
            ctx = zmq.Context()
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, 2)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVTIMEO, 2000)
            sock.setsockopt(zmq.SUBSCRIBE, b"")
            sock.connect(endpoint)
            count = [0]

            def recv() -> tuple[int, Any] | None:
                try:
                    ts, payload = sock.recv_multipart(copy=False)
                except zmq.Again:
                    return None
                count[0] += 1
                return int(bytes(ts.buffer)), np.frombuffer(payload.buffer, np.uint8)

            def close() -> None:
                sock.close(linger=0)
                ctx.term()

            def received() -> int:
                return count[0]

        ready.put(1)
        first = None
        deadline = time.monotonic() + 15
        while first is None and time.monotonic() < deadline:
            first = recv()
        if first is None:
            result["error"] = "no frame"
        else:
            t0 = time.monotonic()
            n0 = received()
            reads = 0
            lat: list[float] = []
            ages: list[tuple[float, float]] = []
            while time.monotonic() - t0 < duration:
                got = recv()
                if got is None:
                    break
                reads += 1
                age_ms = (time.time_ns() - got[0]) / 1e6
                if mode == "latency":
                    lat.append(age_ms)
                elif mode == "slow":
                    ages.append((time.monotonic() - t0, age_ms))
                    time.sleep(0.050)  # the slow reader's work
            elapsed = time.monotonic() - t0
            result.update(frames=received() - n0, reads=reads, elapsed=elapsed, latency_ms=lat, ages=ages)
        close()
    except Exception as exc:  # reported, never hangs the bench
        result["error"] = repr(exc)
    finally:
        out.put(("sub", result))


def _run_case(impl: str, endpoint: str, mode: str, nsubs: int, duration: float, rate: float | None) -> dict[str, Any]:
    ready, out, stop = _MP.Queue(), _MP.Queue(), _MP.Event()
    subs = [_MP.Process(target=_subscriber, args=(impl, endpoint, mode, duration, ready, out)) for _ in range(nsubs)]
    for p in subs:
        p.start()
    pub = _MP.Process(target=_publisher, args=(impl, endpoint, rate, duration + 20.0, nsubs, ready, out, stop))
    pub.start()
    results: list[dict[str, Any]] = []
    sent = 0
    deadline = time.monotonic() + duration + 30
    while len(results) < nsubs + 1 and time.monotonic() < deadline:
        try:
            kind, value = out.get(timeout=0.5)
        except queue.Empty:
            continue
        if kind == "pub":
            sent = value
            results.append({})
        else:
            results.append(value)
            if sum(1 for r in results if r) >= nsubs:
                stop.set()
    for p in [*subs, pub]:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
    subres = [r for r in results if r]
    errors = [r["error"] for r in subres if "error" in r]
    case: dict[str, Any] = {"impl": impl, "subscribers": nsubs, "sent": sent}
    if errors or len(subres) < nsubs:
        case["error"] = errors[0] if errors else "subscriber missing"
    if mode == "throughput":
        fps = [r["frames"] / r["elapsed"] for r in subres if r.get("elapsed")]
        case["fps_per_sub_min"] = min(fps) if fps else None
        case["fps_per_sub_median"] = float(np.median(fps)) if fps else None
        case["gb_s_total"] = sum(fps) * FRAME_BYTES / 1e9 if fps else None
    elif mode == "latency":
        lat = [x for r in subres for x in r.get("latency_ms", [])]
        case.update({f"latency_{k}_ms": v for k, v in summary(lat).items() if k in ("median", "p99", "max")})
        case["reads"] = len(lat)
    else:
        ages = [a for r in subres for a in r.get("ages", [])]
        values = [a for _, a in ages]
        tail = [a for t, a in ages if t >= duration - 1.0] or values[-5:]
        case.update({f"age_{k}_ms": v for k, v in summary(values).items() if k in ("median", "p99", "max")})
        case["age_last_second_ms"] = float(np.mean(tail)) if tail else None
        case["reads"] = len(values)
    return case


def run(quick: bool, skip: Collection[str] = ()) -> dict[str, Any]:
    """Every case; the baseline implementations named in ``skip`` (their library is missing) are left out."""
    tdur = 0.5 if quick else 2.0
    ldur = 0.5 if quick else 3.0
    sdur = 0.5 if quick else 10.0
    fanouts = (1,) if quick else (1, 4)
    # a smoke run measures the one transport the daemon uses on one host; tcp takes the same code path
    transports = ("ipc",) if quick else ("ipc", "tcp")
    tmp = tempfile.mkdtemp(prefix="zbb")
    result: dict[str, Any] = {"frame": f"{W}x{H} BGR ({FRAME_BYTES} bytes)", "cases": []}
    try:
        n = 0
        for transport in transports:

            def endpoint(transport: str = transport) -> str:
                nonlocal n
                n += 1
                if transport == "ipc":
                    return f"ipc://{tmp}/b{n}.sock"
                return f"tcp://127.0.0.1:{free_port()}"

            for nsubs in fanouts:
                for impl in [i for i in ("zmqcam", "imagezmq") if i not in skip]:
                    case = _run_case(impl, endpoint(), "throughput", nsubs, tdur, None)
                    result["cases"].append({"transport": transport, "mode": "throughput", **case})
                    case = _run_case(impl, endpoint(), "latency", nsubs, ldur, 30.0)
                    result["cases"].append({"transport": transport, "mode": "latency_30fps", **case})
            for impl in [i for i in ("zmqcam", "imagezmq", "pyzmq_hwm2") if i not in skip]:
                case = _run_case(impl, endpoint(), "slow", 1, sdur, 30.0)
                result["cases"].append({"transport": transport, "mode": "slow_subscriber", **case})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # ratios against the baseline measured just now
    by = {(c["transport"], c["mode"], c["impl"], c["subscribers"]): c for c in result["cases"]}
    for c in result["cases"]:
        if c["impl"] != "zmqcam":
            continue
        base = by.get((c["transport"], c["mode"], "imagezmq", c["subscribers"]), {})
        keys = ("fps_per_sub_min", "gb_s_total", "latency_median_ms", "latency_p99_ms", "age_max_ms", "age_median_ms")
        for key in keys:
            if c.get(key) is not None and base.get(key):
                c[f"{key}_vs_imagezmq"] = c[key] / base[key]
    zc = [c for c in result["cases"] if c["impl"] == "zmqcam"]
    result["goals"] = {
        "throughput >= imagezmq": all(
            c.get("fps_per_sub_min_vs_imagezmq", 0) >= 1.0 for c in zc if c["mode"] == "throughput"
        ),
        "latency at 30 fps no worse than imagezmq (median)": all(
            c.get("latency_median_ms_vs_imagezmq", 9) <= 1.0 for c in zc if c["mode"] == "latency_30fps"
        ),
        "slow subscriber reads frames < 50 ms old": all(
            (c.get("age_max_ms") or 1e9) < 50 for c in zc if c["mode"] == "slow_subscriber"
        ),
    }
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=1))
    os._exit(0)
