"""``zmqcam-daemon record [-c CONFIG] [--cameras a,b] [--h264] [--duration S] OUT_DIR``: the cameras'
JPEG streams, untouched, into a recording (``zmqcam.recording``), until Ctrl-C or the duration ends;
with ``--h264``, the panorama's H.264 (and the cameras', where published) remuxed into MP4."""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import zmq

from zmqcam.cli.common import Subparsers, add_config_arguments, load_args_config
from zmqcam.errors import UsageError
from zmqcam.recording.format import REPLAY_CONFIG
from zmqcam.recording.recorder import Progress, Recorder


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM set ``stop``: the loop then closes the files between two frames."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    saved = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in saved.items():
            signal.signal(sig, old)


def cmd_record(args: argparse.Namespace) -> int:
    config, _ = load_args_config(args)
    if args.cameras:
        cameras = [c.strip() for c in args.cameras.split(",") if c.strip()]
        unknown = [c for c in cameras if c not in {cam.name for cam in config.camera}]
        if unknown or not cameras:
            known = ", ".join(c.name for c in config.camera)
            raise UsageError(
                f"--cameras: no camera named {', '.join(unknown) or '(none)'} in the config (known: {known})"
            )
    else:
        cameras = [c.name for c in config.camera]
    if args.h264 and not config.stitch.enabled:
        raise UsageError("--h264 records the panorama's H.264 (pano h264): this config has stitch.enabled = false")
    if args.duration is not None and not args.duration > 0:
        raise UsageError(f"--duration: must be a positive number of seconds, not {args.duration:g}")
    stop = threading.Event()
    ctx = zmq.Context()
    try:
        try:
            recorder = Recorder(config, args.out_dir, list(dict.fromkeys(cameras)), ctx, h264=args.h264)
        except OSError as exc:  # RecordingError goes to the dispatcher as it is
            raise UsageError(str(exc)) from None
        print(f"recording {', '.join(recorder.cameras)} to {recorder.out_dir} (Ctrl-C stops)", flush=True)
        with _stop_on_signals(stop), recorder:
            try:
                recorder.run(stop, args.duration, Progress())
            except OSError as exc:  # the disk is full, say: what was written so far stays valid
                raise UsageError(f"{recorder.out_dir}: cannot write: {exc.strerror or exc}") from None
    finally:
        ctx.term()
    if not recorder.frames:
        raise UsageError(f"no frames received from {', '.join(recorder.required)}: is the daemon running?")
    print(f"replay it: zmqcam-daemon start -c {recorder.out_dir / REPLAY_CONFIG}")
    return 0


def add_command(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "record",
        help="record the cameras' JPEG streams (untouched) with their timestamps",
        description="Record each camera's JPEG frames, untouched, to OUT_DIR/<cam>.mjpeg with a timestamp "
        "index (<cam>.idx.csv); with --h264, the panorama's H.264 to OUT_DIR/pano.mp4. Needs the daemon "
        "running. Ctrl-C stops cleanly.",
    )
    add_config_arguments(p)
    p.add_argument("--cameras", help="comma-separated camera names (default: every camera)")
    p.add_argument(
        "--h264",
        action="store_true",
        help="record the panorama's H.264 (and each camera's, where published) as MP4, remuxed: about a tenth "
        "of the MJPEG's size",
    )
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (default: at Ctrl-C)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="directory for the recording (created; must not hold one)")
    p.set_defaults(func=cmd_record)
