"""An ESP32-CAM's sensor settings (``camera[].controls``), applied through the CameraWebServer
firmware's ``GET /control?var=<name>&val=<int>`` and read back from its ``GET /status``.

The HTTP sources apply them in ``open``, before the first frame is asked for, so every published
frame is taken with them; on every (re)connect, since a camera that rebooted forgot them. Where:
the firmware's control server (port 80) is the snapshot URL's own server; the MJPEG stream runs on a
second server one port above it (81), so a stream URL's control server is its port minus one
(``/stream`` on port 80 itself, as some firmwares serve it, keeps port 80).

What can go wrong is reported, never fatal (the camera keeps streaming with what it has):

* a value the camera accepted but ``/status`` shows otherwise did not stick: a warning;
* a variable the firmware refuses (HTTP 500: it does not know it, or cannot take the value): an
  error naming it; the other settings are still applied;
* no ``/control`` at all (404), or the control server unreachable: one error, the rest skipped.

A variable ``/status`` does not report (the stock firmware omits ``vflip``) is listed as unverified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from zmqcam.config.esp32 import describe_control
from zmqcam.errors import SourceError
from zmqcam.sources._common import ChunkedDecoder, HttpConnection, HttpResponse, HttpUrl, parse_http_url

if TYPE_CHECKING:
    from zmqcam.config import CameraConfig

__all__ = ["ControlsReport", "Esp32Controls", "control_server"]

CONTROL_PATH = "/control"
STATUS_PATH = "/status"
#: the firmware starts its stream server on the control server's port + 1 (80 and 81)
STREAM_PORT_OFFSET = 1
#: a /control or /status answer longer than this is not the firmware's (its status JSON is < 1 KiB)
MAX_ANSWER_BYTES = 64 * 1024


@dataclass
class ControlsReport:
    """What applying a camera's controls did, as its status shows it."""

    #: name -> value as the camera reports it after applying (as sent where it reports nothing)
    applied: dict[str, int] = field(default_factory=dict)
    #: names ``/status`` does not report, so whether they stuck is not known
    unverified: list[str] = field(default_factory=list)
    #: values that did not stick
    warnings: list[str] = field(default_factory=list)
    #: variables refused, or the control server unreachable
    errors: list[str] = field(default_factory=list)

    def as_status(self) -> dict[str, Any]:
        return {
            "applied": dict(self.applied),
            "shown": " ".join(describe_control(name, value) for name, value in self.applied.items()),
            "unverified": list(self.unverified),
            "warnings": list(self.warnings),
            "errors": list(self.errors),
        }


def control_server(camera: CameraConfig) -> HttpUrl:
    """The firmware's control server for a camera's source URL (see the module docstring)."""
    url = parse_http_url(camera.source, default_path="/")
    if camera.source_kind == "mjpeg" and url.port != 80:
        url = dataclasses.replace(url, port=url.port - STREAM_PORT_OFFSET)
    return dataclasses.replace(url, path=STATUS_PATH)


class _Refused(Exception):
    """The firmware answered a control with an error status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Esp32Controls:
    """Applies one camera's controls on one keep-alive connection to its control server. ``close``
    may be called from another thread to abort (the grabber releasing the camera)."""

    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera
        self._lock = threading.Lock()
        self._conn: HttpConnection | None = None
        self._closed = False

    def apply(self) -> ControlsReport:
        report = ControlsReport()
        wanted = self.camera.control_values
        if not wanted:
            return report
        try:
            url = control_server(self.camera)
        except SourceError as exc:
            report.errors.append(f"controls: {exc}")
            return report
        conn = HttpConnection(url)
        with self._lock:
            if self._closed:
                return report
            self._conn = conn
        try:
            self._apply(conn, wanted, report)
        finally:
            conn.close()
        return report

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn = self._conn
        if conn is not None:
            conn.close()

    def _apply(self, conn: HttpConnection, wanted: dict[str, int], report: ControlsReport) -> None:
        where = conn.url.describe().removesuffix(STATUS_PATH)
        sent: dict[str, int] = {}
        try:
            for name, value in wanted.items():
                try:
                    self._get(conn, f"{CONTROL_PATH}?var={quote(name)}&val={value}")
                except _Refused as refused:
                    if refused.status == 404:
                        report.errors.append(
                            f"controls: {where} has no {CONTROL_PATH} (HTTP 404): not the CameraWebServer firmware?"
                        )
                        return
                    report.errors.append(
                        f"controls: {name} = {value}: the camera refused it (HTTP {refused.status}: "
                        "a variable this firmware does not know, or a value it cannot take)"
                    )
                    continue
                sent[name] = value
            try:
                status = json.loads(self._get(conn, STATUS_PATH))
            except (_Refused, ValueError, UnicodeDecodeError):
                status = None
        except SourceError as exc:
            report.errors.append(f"controls: {exc}")
            report.applied.update(sent)
            return
        if not isinstance(status, dict):
            report.unverified.extend(sent)
            report.applied.update(sent)
            return
        for name, value in sent.items():
            shown = status.get(name)
            if not isinstance(shown, int) or isinstance(shown, bool):
                report.unverified.append(name)
                report.applied[name] = value
                continue
            report.applied[name] = shown
            if shown != value:
                report.warnings.append(
                    f"controls: {describe_control(name, value)} did not stick: "
                    f"the camera reports {describe_control(name, shown)}"
                )

    def _get(self, conn: HttpConnection, path: str) -> bytes:
        """One request on the kept-alive connection (reconnecting once if the camera closed it); the
        body of a 200, else _Refused."""
        cam = self.camera
        for attempt in range(2):
            fresh = not conn.connected
            if fresh:
                conn.connect(cam.connect_timeout)
            try:
                conn.send_request({"Connection": "keep-alive"}, cam.read_timeout, path=path)
                resp = conn.read_head(cam.read_timeout, busy_if_silent=False)
                body = _read_body(conn, resp, time.monotonic() + cam.read_timeout)
            except SourceError:
                conn.drop()
                if fresh or attempt:
                    raise
                continue  # esp_http_server closes idle connections: once more on a new one
            if not resp.keep_alive:
                conn.drop()
            if resp.status != 200:
                raise _Refused(resp.status)
            return body
        raise AssertionError("unreachable")  # pragma: no cover


def _read_body(conn: HttpConnection, resp: HttpResponse, deadline: float) -> bytes:
    """The body of a short answer: by Content-Length, chunked, or until the camera closes."""
    length = resp.content_length
    decoder = ChunkedDecoder() if resp.chunked else None
    body = bytearray()
    while True:
        if decoder is None and length is not None and len(body) >= length:
            del body[length:]
            return bytes(body)
        if decoder is not None and decoder.done:
            return bytes(body)
        if len(body) > MAX_ANSWER_BYTES:
            raise SourceError(f"{conn.url.describe()}: an answer longer than {MAX_ANSWER_BYTES} bytes")
        data = conn.recv(max(0.001, deadline - time.monotonic()))
        if not data:
            if decoder is None and length is None:
                conn.drop()
                return bytes(body)
            raise SourceError(f"{conn.url.describe()}: connection lost in the middle of an answer")
        body += decoder.feed(data) if decoder is not None else data


class Esp32Settings:
    """What an HTTP source does for its camera's controls: ``_apply_controls()`` at the start of
    ``open`` and ``_abort_controls()`` in ``close``; the outcome is ``controls_report``."""

    camera: CameraConfig
    #: what the last ``open`` applied; None for a camera without controls
    controls_report: ControlsReport | None = None
    _controls: Esp32Controls | None = None

    def _apply_controls(self) -> None:
        if not self.camera.controls:
            return
        controls = Esp32Controls(self.camera)
        self._controls = controls
        try:
            self.controls_report = controls.apply()
        finally:
            self._controls = None

    def _abort_controls(self) -> None:
        controls = self._controls
        if controls is not None:
            with contextlib.suppress(Exception):
                controls.close()
