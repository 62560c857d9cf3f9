"""The config's shape: pydantic models of every section, and the properties derived from them.

Loading a file into these models, with one-line errors, is ``zmqcam.config.loading``; the models
here only say what a valid config is and what follows from it (a camera's geometry and crop, where
each process binds and where consumers connect, each camera's slot in the panorama).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from zmqcam.config.esp32 import DEFAULT_ESP32_WARMUP, ESP32_KINDS, Warmup, control_value, parse_warmup
from zmqcam.names import PANO, STREAM_NAME_PATTERN, connect_endpoint

#: the kernel limit on a unix socket path (sun_path is 108 bytes including the NUL)
MAX_IPC_PATH = 107
SOURCE_KINDS = ("synthetic", "snapshot", "mjpeg", "rtsp", "device", "file", "replay")

Point = Annotated[list[float], Field(min_length=2, max_length=2)]
PositiveSeconds = Annotated[float, Field(gt=0)]


def default_run_dir() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK):
        return os.path.join(runtime, "zmqcam")
    return os.path.join(tempfile.gettempdir(), f"zmqcam-{os.getuid()}")


class _Model(BaseModel):
    # strict: a config value of the wrong type is an error, never silently coerced ("5" is not 5)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Perspective(_Model):
    #: the quad in the (rotated) camera frame, corners top-left, bottom-left, bottom-right, top-right
    src: Annotated[list[Point], Field(min_length=4, max_length=4)]
    width: Annotated[int, Field(gt=0, le=16384)]
    height: Annotated[int, Field(gt=0, le=16384)]


class Crop(_Model):
    front: Annotated[int, Field(ge=0)] = 0
    #: exclusive; defaults to the perspective width (keep the whole warped image)
    back: Annotated[int, Field(gt=0)] | None = None


class CameraConfig(_Model):
    name: Annotated[str, Field(pattern=STREAM_NAME_PATTERN)]
    #: a URL (http://, rtsp://, file://), a path, a device (/dev/video0 or an index) or a kind
    source: Annotated[str, Field(min_length=1)] = "synthetic"
    #: the protocol; inferred from ``source`` when omitted (see ``source_kind``)
    kind: Literal["synthetic", "snapshot", "mjpeg", "rtsp", "device", "file", "replay"] | None = None
    #: expected frame size [width, height]; the synthetic camera renders at this size
    size: Annotated[list[Annotated[int, Field(gt=0, le=16384)]], Field(min_length=2, max_length=2)] = [
        640,
        480,
    ]
    rotate: Literal[0, 90, 180, 270] = 0
    perspective: Perspective | None = None
    crop: Crop = Crop()
    #: panorama pixels this camera's warped image shares with the next stitched camera's, around the
    #: seam (``perspective.width - crop.back`` plus the next camera's ``crop.front``): where a seam can
    #: be blended. Written by ``calibrate --auto``; None: not known (a hard cut)
    overlap: Annotated[int, Field(ge=0, le=16384)] | None = None
    #: frames per second cap; the synthetic camera produces exactly this rate
    fps: Annotated[float, Field(gt=0, le=240)] = 30.0
    #: seconds without any subscriber before the camera connection is closed (0: at once)
    idle_timeout: Annotated[float, Field(ge=0)] = 30.0
    #: keep the camera open even when nobody watches
    always_on: bool = False
    #: where the grabber publishes; default ipc://{run_dir}/cam-<name>.sock
    endpoint: str | None = None
    #: where consumers connect, when not where the grabber binds (a grabber on another host binds
    #: tcp://0.0.0.0:5601, consumers connect tcp://grabber-host:5601); see ``Config.consumer_endpoint``
    connect: str | None = None
    #: quality used when the grabber itself must encode JPEG (raw sources)
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 80
    connect_timeout: PositiveSeconds = 3.0
    read_timeout: PositiveSeconds = 5.0
    #: RTSP only: "tcp" is robust through NAT and loss; "udp" is what some cameras need
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    #: file sources: start over at the end
    loop: bool = True
    #: ESP32-CAM sensor settings, the CameraWebServer firmware's ``/control`` variables (``framesize``
    #: also by name, "VGA"), applied on every (re)connect before frames are published; see ``zmqcam.config.esp32``
    #: (values checked by the loader, one line per problem, rather than by pydantic's union messages)
    controls: dict[str, Any] = {}
    #: frames held back after each (re)connect while the sensor settles: seconds, or "N frames";
    #: None: ``DEFAULT_ESP32_WARMUP`` for an ESP32 (snapshot, mjpeg), 0 for the others
    warmup: Any = None

    @property
    def source_kind(self) -> str:
        """The protocol of this camera, explicit or inferred from ``source``."""
        if self.kind is not None:
            return self.kind
        return infer_kind(self.source)

    @property
    def warmup_period(self) -> Warmup:
        """The warm-up after each (re)connect (the config's, else the kind's default). The loader has
        checked ``warmup``, so this does not fail for a loaded config."""
        if self.warmup is None:
            return Warmup(seconds=DEFAULT_ESP32_WARMUP if self.source_kind in ESP32_KINDS else 0.0)
        return parse_warmup(self.warmup)

    @property
    def control_values(self) -> dict[str, int]:
        """``controls`` as the firmware takes them (a framesize name made its index), in config order."""
        return {name: control_value(name, value) for name, value in self.controls.items()}

    @property
    def geometry(self) -> Perspective:
        """The perspective, defaulting to the whole (rotated) frame."""
        if self.perspective is not None:
            return self.perspective
        w, h = self.size
        if self.rotate in (90, 270):
            w, h = h, w
        return Perspective(
            src=[[0.0, 0.0], [0.0, float(h)], [float(w), float(h)], [float(w), 0.0]],
            width=w,
            height=h,
        )

    @property
    def crop_range(self) -> tuple[int, int]:
        back = self.crop.back if self.crop.back is not None else self.geometry.width
        return self.crop.front, back


#: the shortest ``daemon.watchdog``: three heartbeats (``zmqcam.process.HEARTBEAT_INTERVAL``, 1 s), so
#: that one late beat on a busy machine never counts as a hang
MIN_WATCHDOG = 3.0


class DaemonConfig(_Model):
    run_dir: str = Field(default_factory=default_run_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: seconds a child may go without a heartbeat (or stay unhealthy) before the supervisor restarts
    #: it as hung; 0 turns the watchdog off (see ``zmqcam.supervisor.supervisor``)
    watchdog: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 10.0


#: the x264 presets fast enough for a live panorama on one core, fastest first (``zmqcam.video.h264``)
H264Preset = Literal["ultrafast", "superfast", "veryfast", "faster"]


class H264Config(_Model):
    """``[stitch.h264]``: how ``pano h264`` is encoded (only while someone subscribes to it). The
    defaults are what ``scripts/bench.py`` chose: at most 1/5 of MJPEG's bytes at about its SSIM, about
    5-8 ms per 2347x250 panorama on one core."""

    preset: H264Preset = "veryfast"
    #: constant quality (0 best .. 51 worst); ignored when ``bitrate`` is set
    crf: Annotated[int, Field(ge=0, le=51)] = 22
    #: bits per second, average, for a link of known size; None: constant quality (``crf``)
    bitrate: Annotated[int, Field(ge=10_000, le=1_000_000_000)] | None = None
    #: seconds between keyframes: a new viewer's first picture comes within this long
    keyint: Annotated[float, Field(gt=0, le=60, allow_inf_nan=False)] = 1.0
    #: H.264 4:2:0 needs even sides: "pad" repeats the last column/row, "crop" drops it
    even: Literal["pad", "crop"] = "pad"


class StitchConfig(_Model):
    enabled: bool = True
    #: cameras stitched left to right; default: every camera in config order
    cameras: list[Annotated[str, Field(pattern=STREAM_NAME_PATTERN)]] | None = None
    endpoint: str = "ipc://{run_dir}/pano.sock"
    #: more endpoints to bind, e.g. "tcp://0.0.0.0:5556" for consumers on other hosts
    extra_endpoints: list[str] = []
    #: where consumers connect, when the stitcher runs on another host (e.g. "tcp://stitch-host:5600")
    connect: str | None = None
    jpeg_quality: Annotated[int, Field(ge=1, le=100)] = 80
    #: seconds without a frame before a camera's slot shows NO SIGNAL
    stale_after: PositiveSeconds = 2.0
    #: longest wait for slow cameras before emitting; default 1.5 frame intervals of the slowest
    max_wait: PositiveSeconds | None = None
    #: how neighbouring slots meet: "cut" (a hard edge, the original pipeline) or "feather" (blended
    #: across a band around the seam); None: feather when a stitched camera has an ``overlap``, else cut
    seam: Literal["cut", "feather"] | None = None
    #: width of a feathered seam's band in panorama pixels (capped by each seam's overlap)
    feather_px: Annotated[int, Field(ge=2, le=1024)] = 32
    #: "gain": per camera and channel gains that make neighbours agree in their overlaps; "off": the
    #: cameras' pixels as they come. None: gain when a stitched camera has an ``overlap``, else off
    exposure: Literal["off", "gain"] | None = None
    #: snapshot cameras of the panorama request frames on a shared clock tick, and each panorama takes
    #: the frames closest in capture time (``zmqcam.stitcher.sync``)
    sync: bool = True
    h264: H264Config = Field(default_factory=H264Config)


class HttpConfig(_Model):
    enabled: bool = True
    #: 127.0.0.1 unless you mean it: set "0.0.0.0" to serve a camera LAN
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 5000
    max_clients: Annotated[int, Field(ge=1, le=10000)] = 500
    #: how long /snapshot waits for sleeping cameras to deliver a fresh frame
    snapshot_timeout: PositiveSeconds = 5.0
    #: access control: a bearer token, or HTTP basic credentials (user and password)
    token: str | None = None
    basic_user: str | None = None
    basic_password: str | None = None
    #: a bearer token for GET /metrics alone (Prometheus scrapers), besides ``token``/basic credentials
    metrics_token: str | None = None
    #: serve https with this PEM certificate (chain) and private key; both or neither. Relative to the
    #: config file's directory; made absolute and loaded once when the config is loaded
    tls_cert: str | None = None
    tls_key: str | None = None


class CurveConfig(_Model):
    #: ZeroMQ CURVE keys (``zmqcam-daemon keygen DIR``); None: tcp endpoints are plain. Relative to
    #: the config file's directory; made absolute when the config is loaded (see ``zmqcam.config.keyfiles``)
    key_dir: str | None = None


#: the URL schemes a ``[[publish]]`` target may use: RTSP ANNOUNCE/RECORD (as MediaMTX accepts) and
#: RTMP, each also over TLS
PUBLISH_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps")


class PublishConfig(_Model):
    """``[[publish]]``: push a stream's H.264 to a media server, remuxed (``zmqcam.publisher``)."""

    #: rtsp://host[:port]/path (MediaMTX: rtsp://host:8554/zmqcam) or rtmp://host[:port]/app/key
    url: Annotated[str, Field(min_length=1)]
    #: the target's name in status, logs and ``ps`` (``publish:NAME``); default: its index
    name: Annotated[str, Field(pattern=STREAM_NAME_PATTERN)] | None = None
    #: the stream pushed (its ``<stream> h264`` topic); only the panorama is encoded to H.264
    stream: Annotated[str, Field(pattern=STREAM_NAME_PATTERN)] = PANO
    #: seconds a connect or a write may take: the RTSP socket timeout, and a write stuck longer than
    #: this makes the target unhealthy, so the watchdog restarts it ``daemon.watchdog`` later
    timeout: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 5.0


class Config(_Model):
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    camera: Annotated[list[CameraConfig], Field(min_length=1)]
    stitch: StitchConfig = Field(default_factory=StitchConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    curve: CurveConfig = Field(default_factory=CurveConfig)
    publish: list[PublishConfig] = []

    @property
    def publish_targets(self) -> dict[str, PublishConfig]:
        """Every ``[[publish]]`` entry by its name (its ``name``, else its index), in config order."""
        return {target.name if target.name is not None else str(i): target for i, target in enumerate(self.publish)}

    @property
    def run_dir(self) -> Path:
        return Path(os.path.expanduser(self.daemon.run_dir))

    def expand(self, endpoint: str) -> str:
        return endpoint.replace("{run_dir}", str(self.run_dir))

    def camera_named(self, name: str) -> CameraConfig:
        for cam in self.camera:
            if cam.name == name:
                return cam
        raise KeyError(name)

    def camera_endpoint(self, cam: CameraConfig | str) -> str:
        """The endpoint the camera's grabber binds."""
        if isinstance(cam, str):
            cam = self.camera_named(cam)
        return self.expand(cam.endpoint or "ipc://{run_dir}/cam-" + cam.name + ".sock")

    def consumer_endpoint(self, stream: str) -> str:
        """Where every consumer (stitcher, bridge, status, record, ``Subscriber``) connects for
        ``stream``, "pano" or a camera name: its ``connect`` if set, else where its producer binds
        (a wildcard host made loopback). KeyError for an unknown camera."""
        if stream == PANO:
            bound, connect = self.pano_endpoints[0], self.stitch.connect
        else:
            cam = self.camera_named(stream)
            bound, connect = self.camera_endpoint(cam), cam.connect
        return self.expand(connect) if connect is not None else connect_endpoint(bound)

    @property
    def stitched_cameras(self) -> list[CameraConfig]:
        if self.stitch.cameras is None:
            return list(self.camera)
        return [self.camera_named(n) for n in self.stitch.cameras]

    @property
    def pano_endpoints(self) -> list[str]:
        """Every endpoint the stitcher binds; the first is the local one consumers use."""
        return [self.expand(self.stitch.endpoint)] + [self.expand(e) for e in self.stitch.extra_endpoints]

    @property
    def has_overlaps(self) -> bool:
        """Whether any stitched camera has a known ``overlap`` with its neighbour (what the seam and
        exposure defaults follow)."""
        return any(c.overlap is not None for c in self.stitched_cameras)

    @property
    def seam_mode(self) -> str:
        """``stitch.seam``, else feather where overlaps are known, cut otherwise."""
        if self.stitch.seam is not None:
            return self.stitch.seam
        return "feather" if self.has_overlaps else "cut"

    @property
    def exposure_mode(self) -> str:
        """``stitch.exposure``, else gain where overlaps are known, off otherwise."""
        if self.stitch.exposure is not None:
            return self.stitch.exposure
        return "gain" if self.has_overlaps else "off"

    def synchronized(self, camera: CameraConfig) -> bool:
        """Whether ``camera`` requests its snapshots on the panorama's shared clock tick: a stitched
        snapshot camera while ``stitch.sync`` is on (a stream camera cannot be triggered)."""
        stitch = self.stitch
        return (
            stitch.enabled
            and stitch.sync
            and camera.source_kind == "snapshot"
            and any(c.name == camera.name for c in self.stitched_cameras)
        )

    @property
    def pano_fps(self) -> float:
        """The panorama's nominal rate: the slowest stitched camera's ``fps``."""
        return min(cam.fps for cam in self.stitched_cameras)

    @property
    def pano_size(self) -> tuple[int, int]:
        """(width, height) of the panorama."""
        cams = self.stitched_cameras
        return panorama_slots(cams)[-1].x1, cams[0].geometry.height


class Slot(NamedTuple):
    """One camera's columns [x0, x1) in the panorama."""

    name: str
    x0: int
    x1: int


def panorama_slots(cameras: Sequence[CameraConfig]) -> tuple[Slot, ...]:
    """Where each camera's crop lands in the panorama, left to right: the one computation of slot
    offsets, for the panorama's size, the stitcher's composer and the synthetic scene."""
    slots = []
    x = 0
    for cam in cameras:
        front, back = cam.crop_range
        slots.append(Slot(cam.name, x, x + back - front))
        x += back - front
    return tuple(slots)


def infer_kind(source: str) -> str:
    """The protocol a ``source`` string names (see README, Configuration)."""
    s = source.strip()
    low = s.lower()
    if low in SOURCE_KINDS:
        return low
    if low.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if low.startswith(("http://", "https://")):
        # the ESP32 firmware: /capture and /jpg are snapshots; :81/stream and / are MJPEG
        path = re.sub(r"^https?://[^/]*", "", low).split("?")[0]
        if path.endswith((".jpg", ".jpeg", "/capture", "/jpg", "/snapshot")):
            return "snapshot"
        return "mjpeg"
    if low.startswith("/dev/video") or s.isdigit():
        return "device"
    return "file"
