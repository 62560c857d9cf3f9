"""The fake ESP32-CAM as a process: ``python -m zmqcam.testing.fakecam --port 8080`` (stream on 8081)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from zmqcam.testing.fakecam.camera import FakeCam


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zmqcam.testing.fakecam",
        description="A fake ESP32-CAM (CameraWebServer firmware): snapshots on PORT, the stream on PORT+1.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0 picks free ports (see the READY line)")
    parser.add_argument("--stream-port", type=int, default=None, help="default: PORT+1")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--quality", type=int, default=12, help="sensor quality 0 (best) .. 63")
    parser.add_argument("--capture-delay", type=float, default=0.15)
    parser.add_argument(
        "--picture",
        action="append",
        metavar="JPEG",
        help="serve this picture instead of the test pattern (repeat it: served in turn)",
    )
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    pictures = None
    if args.picture:
        try:
            pictures = [Path(p).read_bytes() for p in args.picture]
        except OSError as exc:
            parser.error(f"--picture: {exc.filename}: {exc.strerror}")
    try:
        cam = FakeCam(
            args.host,
            args.port,
            stream_port=args.stream_port,
            size=(width, height),
            fps=args.fps,
            quality=args.quality,
            capture_delay=args.capture_delay,
            source=pictures,
        )
    except ValueError as exc:
        parser.error(f"--picture: {exc}")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    cam.start()
    try:
        print(f"READY {cam.port} {cam.stream_port}", flush=True)
        print(f"snapshots: {cam.capture_url}  stream: {cam.stream_url}  faults: {cam.base_url}/fake/stats", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        cam.stop()
    return 0
