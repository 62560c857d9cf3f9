"""The original serving architecture, rebuilt as the baseline of scripts/bench.py.

    python scripts/bench_flask.py --port P      # prints "READY <port>" once listening

As the original server.py: a Flask app run threaded; ``updateFrame`` (a thread) grabs the four
cameras while someone read in the last 30 s, stitches each set with the original pipeline (per
frame getPerspectiveTransform + warpPerspective + crop + hconcat) and stores it as ``now_frame``;
every ``/stream`` client runs ``gen_frames``, which re-encodes the shared latest frame with
``cv2.imencode('.jpg', ...)`` in an unpaced loop. The cameras are the same fake ESP32-CAM MJPEG
streams the daemon under test reads (``--cams``; one reader thread per camera, ``cv2.imdecode``),
or zmqcam's synthetic ones rendered in process. Added for measuring only: each part carries
Content-Length and the frame's capture time as X-Timestamp, as zmqcam's parts do.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

import cv2
import numpy as np
from flask import Flask, Response

from zmqcam.config import default_config, from_dict
from zmqcam.sources.mjpeg import MjpegSource
from zmqcam.sources.synthetic import SyntheticSource, scene_offsets
from zmqcam.testing.daemon import fake_camera_config
from zmqcam.testing.reference import original_pipeline

app = Flask(__name__)
now_frame = None
now_ts = 0.0
readTime = 0.0
FPS = 30.0


latest: list = []  # per camera: (BGR frame, capture time in s) or None


def grab(index: int, camera: object) -> None:
    """One camera's reader: the MJPEG stream, each JPEG decoded with cv2.imdecode as the original."""
    src = MjpegSource(camera)
    while True:
        try:
            src.open(5.0)
            while True:
                f = src.read(5.0)
                img = cv2.imdecode(np.frombuffer(f.data, np.uint8), cv2.IMREAD_COLOR)
                latest[index] = (img, f.capture_ns / 1e9)
        except Exception:  # the original simply retried
            src.close()
            time.sleep(0.5)


def updateFrame(stream_ports: list[int]) -> None:
    global now_frame, now_ts
    if stream_ports:
        config = from_dict(fake_camera_config(stream_ports, 30.0))
        cams = config.stitched_cameras
        latest.extend([None] * len(cams))
        for i, cam in enumerate(cams):
            threading.Thread(target=grab, args=(i, cam), daemon=True).start()
        sources = None
    else:
        config = default_config()
        cams = config.stitched_cameras
        offsets = scene_offsets(config)
        sources = [SyntheticSource(c, scene_offset=offsets[c.name]) for c in cams]
        for s in sources:
            s.open(5.0)
    nxt = time.monotonic()
    while True:
        if time.time() - readTime > 30:  # nobody read for 30 s: cameras closed
            time.sleep(0.05)
            nxt = time.monotonic()
            continue
        delay = nxt - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        nxt = max(nxt + 1.0 / FPS, time.monotonic() - 1.0 / FPS)
        if sources is not None:
            capture = time.time()
            frames = [s.render(capture) for s in sources]
        else:
            got = list(latest)
            if any(g is None for g in got):
                continue
            frames = [g[0] for g in got]
            capture = max(g[1] for g in got)
        frame = original_pipeline(frames, cams)
        now_frame, now_ts = frame, capture


def gen_frames():
    global readTime
    while True:
        readTime = time.time()
        frame, ts = now_frame, now_ts
        if frame is None:
            time.sleep(0.01)
            continue
        _ret, buffer = cv2.imencode(".jpg", frame)
        data = buffer.tobytes()
        yield (
            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
            + str(len(data)).encode()
            + b"\r\nX-Timestamp: "
            + f"{ts:.6f}".encode()
            + b"\r\n\r\n"
            + data
            + b"\r\n"
        )


@app.route("/stream")
def stream() -> Response:
    global readTime
    readTime = time.time()
    return Response(gen_frames(), mimetype="multipart/x-mixed-replace; boundary=frame")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cams", default="", help="comma list of fake ESP32-CAM stream ports (default: synthetic)")
    a = ap.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    ports = [int(p) for p in a.cams.split(",") if p]
    threading.Thread(target=updateFrame, args=(ports,), daemon=True).start()
    print(f"READY {a.port}", flush=True)
    app.run(host="127.0.0.1", port=a.port, threaded=True)


if __name__ == "__main__":
    main()
