"""A real RTSP server for tests and demos: GStreamer's gst-rtsp-server serving a live test picture.

It plays the part of an ESP32-CAM running the Micro-RTSP firmware (``rtsp://<ip>:554/mjpeg/1``,
RTP/JPEG) or of an IP camera sending H.264.

Two halves live in this file:

* the server, a standalone script that must run under Debian's ``/usr/bin/python3``, because
  python3-gi (GObject introspection, ``gir1.2-gst-rtsp-server-1.0``) is not importable from a
  virtualenv or pyenv Python::

      /usr/bin/python3 zmqcam/testing/rtsp_server.py --port 8554 --path /mjpeg/1 \\
          --codec mjpeg --size 640x480 --fps 15

  It binds 127.0.0.1 (``--host`` to change), prints ``READY <port> <url>`` on stdout once it
  listens (``--port 0`` picks a free port; read it from that line), and stops promptly on SIGTERM
  or SIGINT. ``--check`` prints one JSON line saying whether the GStreamer pieces exist.

* ``RtspServer``, a launcher for tests, importable from any Python (it only imports the standard
  library): it starts the script as a subprocess, waits for ``READY``, and stops it by PID.
  ``rtsp_support()`` says whether (and why not) RTSP tests can run on this machine.

Nothing at module level imports gi, so the launcher half loads anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

#: the interpreter that has python3-gi (Debian's system Python)
SYSTEM_PYTHON = os.environ.get("ZMQCAM_GI_PYTHON", "/usr/bin/python3")
SCRIPT = os.path.abspath(__file__)
CODECS = ("mjpeg", "h264")


# ---------------------------------------------------------------------------------------------
# the server (runs under /usr/bin/python3 with python3-gi)


def _pipeline(codec: str, width: int, height: int, fps: int, quality: int, overlay: bool = True) -> str:
    src = (
        f"videotestsrc is-live=true pattern=ball ! "
        f"video/x-raw,width={width},height={height},framerate={fps}/1 ! "
        + ('timeoverlay font-desc="Sans 24" ! ' if overlay else "")
        + "videoconvert ! "
    )
    if codec == "mjpeg":
        # what the ESP32 Micro-RTSP firmware sends: RTP/JPEG (RFC 2435), payload type 26
        enc = f"video/x-raw,format=I420 ! jpegenc quality={quality} ! rtpjpegpay name=pay0 pt=26"
    else:
        enc = (
            f"video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
            f"key-int-max={max(1, fps)} bitrate=2000 ! video/x-h264,profile=baseline ! "
            f"rtph264pay name=pay0 pt=96 config-interval=1"
        )
    return f"( {src}{enc} )"


def _check() -> dict[str, Any]:
    """Which pieces this interpreter has: gi, gst-rtsp-server and the encoders."""
    result: dict[str, Any] = {"gi": False, "rtsp_server": False, "mjpeg": False, "h264": False, "reason": ""}
    try:
        import gi

        result["gi"] = True
        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import Gst, GstRtspServer  # noqa: F401

        result["rtsp_server"] = True
    except (ImportError, ValueError) as exc:
        result["reason"] = f"python3-gi / gst-rtsp-server not importable by {sys.executable}: {exc}"
        return result
    Gst.init(None)

    def have(*names: str) -> list[str]:
        return [n for n in names if Gst.ElementFactory.find(n) is None]

    missing = have("videotestsrc", "videoconvert", "jpegenc", "rtpjpegpay")
    result["mjpeg"] = not missing
    if missing:
        result["reason"] = f"GStreamer elements missing: {', '.join(missing)} (gstreamer1.0-plugins-base/good)"
    missing_h264 = have("x264enc", "rtph264pay")
    result["h264"] = result["mjpeg"] and not missing_h264
    if missing_h264:
        result["h264_reason"] = f"GStreamer elements missing: {', '.join(missing_h264)} (gstreamer1.0-plugins-ugly)"
    return result


def serve(args: argparse.Namespace) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    width, height = (int(v) for v in args.size.lower().split("x"))
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    # the clock overlay (pango plugin) is a nicety: without it the ball still moves
    overlay = Gst.ElementFactory.find("timeoverlay") is not None
    factory.set_launch(_pipeline(args.codec, width, height, args.fps, args.quality, overlay))
    # one pipeline shared by every client, like a camera; a new client joins the running stream
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.path, factory)
    pool = server.get_session_pool()
    if args.max_sessions > 0:
        pool.set_max_sessions(args.max_sessions)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on {args.host}:{args.port}", flush=True)
        return 1
    port = server.get_bound_port()
    loop = GLib.MainLoop()

    def cleanup() -> bool:
        # without this a killed client's session blocks new ones until its timeout (60 s)
        pool.cleanup()
        return True

    def quit_loop(*_: Any) -> bool:
        loop.quit()
        return False

    GLib.timeout_add(500, cleanup)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGTERM, quit_loop)
    GLib.unix_signal_add(GLib.PRIORITY_HIGH, signal.SIGINT, quit_loop)
    if args.duration > 0:
        GLib.timeout_add(int(args.duration * 1000), quit_loop)
    print(f"READY {port} rtsp://{args.host}:{port}{args.path}", flush=True)
    loop.run()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="RTSP test server (GStreamer) for zmqcam")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port (see the READY line)")
    parser.add_argument("--path", default="/mjpeg/1")
    parser.add_argument("--codec", choices=CODECS, default="mjpeg")
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--quality", type=int, default=80, help="JPEG quality (mjpeg)")
    parser.add_argument("--max-sessions", type=int, default=0, help="0: unlimited; 1: like an ESP32")
    parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0: never)")
    parser.add_argument("--check", action="store_true", help="print what is available as JSON and exit")
    args = parser.parse_args(argv)
    if args.check:
        print(json.dumps(_check()), flush=True)
        return 0
    if not args.path.startswith("/"):
        parser.error("--path must start with /")
    return serve(args)


# ---------------------------------------------------------------------------------------------
# the launcher (any Python; standard library only)

_support_cache: dict[str, Any] | None = None


def rtsp_support() -> dict[str, Any]:
    """What ``SYSTEM_PYTHON`` can serve: ``{"mjpeg": bool, "h264": bool, "reason": str, ...}``.

    ``reason`` (and ``h264_reason``) explain a False, for ``pytest.skip``. Cached per process."""
    global _support_cache
    if _support_cache is None:
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            _support_cache = {"mjpeg": False, "h264": False, "reason": f"{SYSTEM_PYTHON} not found"}
        else:
            try:
                out = subprocess.run(
                    [SYSTEM_PYTHON, SCRIPT, "--check"], capture_output=True, text=True, timeout=30, check=False
                )
                _support_cache = json.loads(out.stdout.strip().splitlines()[-1])
            except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
                _support_cache = {"mjpeg": False, "h264": False, "reason": f"{SCRIPT} --check failed: {exc}"}
    return dict(_support_cache)


class RtspServer:
    """Runs the server script as a subprocess. Use as a context manager or call start()/stop().

    ``url`` is valid after ``start()``. ``kill()`` simulates a crash (SIGKILL: the kernel closes
    the sockets), ``freeze()``/``thaw()`` a hung camera (SIGSTOP: sockets stay open, nothing is
    sent). ``stop()`` always ends the process, frozen or not, by its PID."""

    def __init__(
        self,
        codec: str = "mjpeg",
        size: tuple[int, int] = (640, 480),
        fps: int = 15,
        path: str = "/mjpeg/1",
        port: int = 0,
        max_sessions: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}")
        self.codec = codec
        self.size = size
        self.fps = fps
        self.path = path
        self.host = host
        self.port = port
        self.max_sessions = max_sessions
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self._frozen = False
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> RtspServer:
        cmd = [
            SYSTEM_PYTHON,
            SCRIPT,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--path",
            self.path,
            "--codec",
            self.codec,
            "--size",
            f"{self.size[0]}x{self.size[1]}",
            "--fps",
            str(self.fps),
            "--max-sessions",
            str(self.max_sessions),
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        lines: list[str] = []
        ready = threading.Event()
        proc = self.proc

        def read_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.strip())
                if line.startswith(("READY", "ERROR")):
                    ready.set()
            ready.set()  # EOF: the process ended

        self._reader = threading.Thread(target=read_stdout, name="rtsp-server-stdout", daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or not lines or not lines[-1].startswith("READY"):
            self.stop()
            raise RuntimeError(f"RTSP server did not start within {timeout} s: {lines[-3:]}")
        _, port, url = lines[-1].split(maxsplit=2)
        self.port = int(port)
        self.url = url
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def freeze(self) -> None:
        if self.running():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGSTOP)
            self._frozen = True

    def thaw(self) -> None:
        if self.running() and self._frozen:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)
        self._frozen = False

    def kill(self) -> None:
        """SIGKILL, as a crash or power loss of the server process (its sockets get closed)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._frozen = False

    def stop(self, timeout: float = 5.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            if self._frozen:
                os.kill(proc.pid, signal.SIGCONT)
                self._frozen = False
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        self.proc = None

    def __enter__(self) -> RtspServer:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
