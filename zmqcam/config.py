"""Configuration: TOML (native) and the original ``cameras_config.json`` format, one model.

``load_config(path)`` returns a validated ``Config`` or raises ``ConfigError`` whose ``lines`` say,
one per problem, the file, the key path, the bad value and the rule it breaks. Nothing here ever
lets a pydantic or parser traceback reach the user.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zmqcam.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

#: camera names appear in topics, file names and URLs, so they are kept to a safe alphabet
NAME_PATTERN = r"^[a-z0-9_-]{1,32}$"
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
    name: Annotated[str, Field(pattern=NAME_PATTERN)]
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

    @property
    def source_kind(self) -> str:
        """The protocol of this camera, explicit or inferred from ``source``."""
        if self.kind is not None:
            return self.kind
        return infer_kind(self.source)

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


class DaemonConfig(_Model):
    run_dir: str = Field(default_factory=default_run_dir)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class StitchConfig(_Model):
    enabled: bool = True
    #: cameras stitched left to right; default: every camera in config order
    cameras: list[Annotated[str, Field(pattern=NAME_PATTERN)]] | None = None
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
    #: serve https with this PEM certificate (chain) and private key; both or neither. Relative to the
    #: config file's directory; made absolute and loaded once when the config is loaded
    tls_cert: str | None = None
    tls_key: str | None = None


class CurveConfig(_Model):
    #: ZeroMQ CURVE keys (``zmqcam-daemon keygen DIR``); None: tcp endpoints are plain. Relative to
    #: the config file's directory; made absolute when the config is loaded (see ``zmqcam.security``)
    key_dir: str | None = None


class Config(_Model):
    daemon: DaemonConfig = Field(default_factory=DaemonConfig)
    camera: Annotated[list[CameraConfig], Field(min_length=1)]
    stitch: StitchConfig = Field(default_factory=StitchConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    curve: CurveConfig = Field(default_factory=CurveConfig)

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
        if stream == "pano":  # protocol.PANO; config does not import the wire format
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
    def pano_size(self) -> tuple[int, int]:
        cams = self.stitched_cameras
        width = sum(c.crop_range[1] - c.crop_range[0] for c in cams)
        return width, cams[0].geometry.height


def connect_endpoint(bind: str) -> str:
    """The endpoint a local consumer connects to for a bound one (a wildcard host -> loopback)."""
    return re.sub(r"^tcp://(\*|0\.0\.0\.0):", "tcp://127.0.0.1:", bind)


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


# ---------------------------------------------------------------------------------------------
# loading


def load_config(path: str | os.PathLike[str], *, transport: str | None = None) -> Config:
    """Load a TOML or original-format JSON config. ``transport`` ("jpg" or "rtsp") picks the URL
    of original-format cameras that list both; it overrides the file's top-level ``transport``.
    A relative ``curve.key_dir`` is relative to the file's directory."""
    p = Path(path)
    label = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{label}: cannot read: {getattr(exc, 'strerror', None) or exc}"]) from None
    return parse_config(text, label=label, is_json=p.suffix.lower() == ".json", transport=transport, base_dir=p.parent)


def parse_config(
    text: str,
    *,
    label: str = "<config>",
    is_json: bool = False,
    transport: str | None = None,
    base_dir: Path | None = None,
) -> Config:
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError([f"{label}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"]) from None
        except RecursionError:
            raise ConfigError([f"{label}: invalid JSON: nested too deeply"]) from None
        return from_legacy(data, label=label, transport=transport)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{label}: invalid TOML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{label}: invalid TOML: nested too deeply"]) from None
    return from_dict(data, label=label, base_dir=base_dir)


def from_dict(
    data: Any, *, label: str = "<config>", rename: dict[str, str] | None = None, base_dir: Path | None = None
) -> Config:
    """Validate a TOML-shaped dict. ``rename`` maps key names back to the user's file format;
    ``base_dir`` is what a relative ``curve.key_dir`` is relative to (default: the working directory)."""
    if not isinstance(data, dict):
        raise ConfigError([f"{label}: the top level must be a table, got {_show(data)}"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_lines(exc, label, rename)) from None
    problems = [_line(label, path, value, msg, rename) for path, value, msg in _cross_checks(config)]
    if problems:
        raise ConfigError(problems)
    if config.curve.key_dir is not None:
        config = _with_checked_keys(config, label, base_dir)
    if config.http.tls_cert is not None and config.http.tls_key is not None:
        config = _with_checked_tls(config, label, base_dir)
    return config


def _absolute(path: str, base_dir: Path | None) -> str:
    """A path from the config made absolute: ``~`` expanded, a relative one taken from ``base_dir``
    (the config file's directory; the working directory for a config built in code). The children
    may run elsewhere, so they get it absolute. ValueError for a ``~user`` part with a NUL byte."""
    return os.path.abspath(Path(base_dir or ".") / os.path.expanduser(path))


def _with_checked_keys(config: Config, label: str, base_dir: Path | None) -> Config:
    """``config`` with ``curve.key_dir`` made absolute (children may run elsewhere), after checking
    that every key file is there and valid: a missing key is a config error, not a crash at start."""
    from zmqcam import security  # imports zmq.auth; only configs that use CURVE need it

    value = config.curve.key_dir
    assert value is not None
    try:
        key_dir = Path(_absolute(value, base_dir))
    except ValueError as exc:  # a NUL byte in a ~user part
        raise ConfigError([_line(label, "curve.key_dir", value, str(exc), None)]) from None
    problems = [
        _line(label, "curve.key_dir", value, f"{str(path)!r}: {reason}", None)
        for path, reason in security.key_dir_problems(key_dir)
    ]
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={"curve": CurveConfig(key_dir=str(key_dir))})


#: what each TLS file must contain, checked first so that a swapped or wrong file gets a clear reason
_PEM_MARKERS = {
    "tls_cert": (b"-----BEGIN CERTIFICATE-----", "a PEM certificate"),
    "tls_key": (b"PRIVATE KEY-----", "a PEM private key"),
}


def _with_checked_tls(config: Config, label: str, base_dir: Path | None) -> Config:
    """``config`` with ``http.tls_cert`` and ``tls_key`` made absolute, after loading them once: a
    missing, unreadable or mismatched file is a config error, not a bridge that fails at start."""
    import ssl

    paths: dict[str, str] = {}
    problems = []
    for key, (marker, what) in _PEM_MARKERS.items():
        value = getattr(config.http, key)
        try:
            paths[key] = _absolute(value, base_dir)
            with open(paths[key], "rb") as file:
                content = file.read(1 << 20)
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            reason = f"cannot read: {getattr(exc, 'strerror', None) or exc}"
            problems.append(_line(label, f"http.{key}", value, reason, None))
            continue
        if marker not in content:
            problems.append(_line(label, f"http.{key}", value, f"not {what}", None))
    if not problems:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(paths["tls_cert"], paths["tls_key"])
        except ssl.SSLError as exc:
            why = str(exc.reason or exc)
            reason = "does not match tls_key" if "MISMATCH" in why else f"cannot be loaded with tls_key: {why}"
            problems.append(_line(label, "http.tls_cert", config.http.tls_cert, reason, None))
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={"http": config.http.model_copy(update=paths)})


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _line(label: str, path: str, value: Any, msg: str, rename: dict[str, str] | None) -> str:
    for new, old in (rename or {}).items():
        path = path.replace(new, old)
    return f"{label}: {path}: {_show(value)}: {msg}"


_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _loc_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif any(c in str(part) for c in "[]()"):
            continue  # pydantic's name for a union member or validator, not a key of the file
        elif _BARE_KEY.match(str(part)):
            out += ("." if out else "") + str(part)
        else:
            # a key the user wrote with odd characters (a dot, a space, a newline) is quoted as
            # TOML would write it, so the message stays one unambiguous line
            out += ("." if out else "") + json.dumps(str(part))
    return out or "(top level)"


def _pydantic_lines(exc: ValidationError, label: str, rename: dict[str, str] | None) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        # union members (e.g. "int | None") report once per member; the "none" one adds nothing
        if err["type"] == "none_required":
            continue
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        value = err.get("input", None) if err["type"] != "missing" else "(missing)"
        line = _line(label, _loc_path(tuple(err["loc"])), value, msg, rename)
        if line not in lines:
            lines.append(line)
    return lines


def _cross_checks(config: Config) -> Iterator[tuple[str, Any, str]]:
    names: dict[str, int] = {}
    for i, cam in enumerate(config.camera):
        where = f"camera[{i}]"
        if cam.name in names:
            yield f"{where}.name", cam.name, f"duplicate camera name (also camera[{names[cam.name]}])"
        names.setdefault(cam.name, i)
        # a typo in a URL scheme would otherwise silently become a missing file
        scheme_typo = "://" in cam.source and not cam.source.lower().startswith("file://")
        if cam.kind is None and scheme_typo and cam.source_kind == "file":
            yield f"{where}.source", cam.source, "unknown URL scheme (use http://, rtsp:// or file://)"
        geo = cam.geometry
        if cam.perspective is not None:
            pts = [tuple(p) for p in cam.perspective.src]
            if not all(math.isfinite(v) for p in pts for v in p):
                yield f"{where}.perspective.src", cam.perspective.src, "the points must be finite numbers"
            elif len(set(pts)) != 4:
                yield f"{where}.perspective.src", cam.perspective.src, "the 4 points must be distinct"
            elif not _is_convex_quad(cam.perspective.src):
                yield (
                    f"{where}.perspective.src",
                    cam.perspective.src,
                    "the 4 points must form a convex quad (top-left, bottom-left, bottom-right, top-right)",
                )
        front, back = cam.crop_range
        if not front < back:
            yield f"{where}.crop.front", front, f"must be less than crop.back ({back})"
        if back > geo.width:
            yield f"{where}.crop.back", back, f"must be <= perspective.width ({geo.width})"
        for key, endpoint in (("endpoint", cam.endpoint), ("connect", cam.connect)):
            if endpoint is not None:
                yield from _check_endpoint(f"{where}.{key}", config.expand(endpoint), connect=key == "connect")
    if config.stitch.cameras is not None:
        for j, name in enumerate(config.stitch.cameras):
            if name not in names:
                yield f"stitch.cameras[{j}]", name, "no camera has this name"
        if not config.stitch.cameras:
            yield "stitch.cameras", [], "must name at least one camera"
    stitched = [c for c in config.camera if config.stitch.cameras is None or c.name in config.stitch.cameras]
    yield from _check_overlaps(config)
    if config.stitch.enabled and stitched:
        height = stitched[0].geometry.height
        for cam in stitched[1:]:
            if cam.geometry.height != height:
                i = config.camera.index(cam)
                yield (
                    f"camera[{i}].perspective.height",
                    cam.geometry.height,
                    f"all stitched cameras need the same height ({stitched[0].name} has {height})",
                )
    yield from _check_endpoint("stitch.endpoint", config.expand(config.stitch.endpoint))
    for j, endpoint in enumerate(config.stitch.extra_endpoints):
        yield from _check_endpoint(f"stitch.extra_endpoints[{j}]", config.expand(endpoint))
    if config.stitch.connect is not None:
        yield from _check_endpoint("stitch.connect", config.expand(config.stitch.connect), connect=True)
    if (config.http.basic_user is None) != (config.http.basic_password is None):
        yield "http.basic_user", config.http.basic_user, "basic_user and basic_password go together"
    if (config.http.tls_cert is None) != (config.http.tls_key is None):
        yield "http.tls_cert", config.http.tls_cert, "tls_cert and tls_key go together"


def _check_overlaps(config: Config) -> Iterator[tuple[str, Any, str]]:
    """A camera's ``overlap`` must fit in the margins its warped image and the next one's have beyond
    their crops, and needs a next camera."""
    known = {c.name for c in config.camera}
    order = [n for n in config.stitch.cameras if n in known] if config.stitch.cameras is not None else None
    stitched = [config.camera_named(n) for n in order] if order is not None else list(config.camera)
    for k, cam in enumerate(stitched):
        if cam.overlap is None:
            continue
        where = f"camera[{config.camera.index(cam)}].overlap"
        if k + 1 == len(stitched):
            yield where, cam.overlap, "the last stitched camera has no next camera to overlap"
            continue
        nxt = stitched[k + 1]
        margin = cam.geometry.width - cam.crop_range[1] + nxt.crop_range[0]
        if cam.overlap > margin:
            yield (
                where,
                cam.overlap,
                f"must be <= the columns past crop.back ({cam.geometry.width - cam.crop_range[1]}) plus "
                f"{nxt.name}'s crop.front ({nxt.crop_range[0]})",
            )


def _check_endpoint(path: str, endpoint: str, connect: bool = False) -> Iterator[tuple[str, Any, str]]:
    if endpoint.startswith("ipc://"):
        if len(endpoint) - len("ipc://") > MAX_IPC_PATH:
            yield path, endpoint, f"ipc socket path longer than {MAX_IPC_PATH} bytes (use a shorter run_dir)"
    elif not re.match(r"^tcp://[^:/\s]+:\d{1,5}$", endpoint):
        yield path, endpoint, "must be ipc://PATH or tcp://HOST:PORT"
    elif connect and re.match(r"^tcp://(\*|0\.0\.0\.0):", endpoint):
        yield path, endpoint, "consumers cannot connect to a wildcard address: name the publisher's host"


def _is_convex_quad(points: list[list[float]]) -> bool:
    signs = []
    for k in range(4):
        ax, ay = points[k]
        bx, by = points[(k + 1) % 4]
        cx, cy = points[(k + 2) % 4]
        cross = (bx - ax) * (cy - by) - (by - ay) * (cx - bx)
        if abs(cross) < 1e-9:
            return False
        signs.append(cross > 0)
    return all(signs) or not any(signs)


# ---------------------------------------------------------------------------------------------
# the original cameras_config.json format


class _LegacyUrl(_Model):
    jpg: str | None = None
    rtsp: str | None = None


class _LegacyPerspective(_Model):
    src: Annotated[list[Point], Field(min_length=4, max_length=4)]
    width: Annotated[int, Field(gt=0)]
    # the original spelled it "hight"; "height" is accepted too
    hight: Annotated[int, Field(gt=0)] | None = None
    height: Annotated[int, Field(gt=0)] | None = None


class _LegacyConcat(_Model):
    front: Annotated[int, Field(ge=0)]
    back: Annotated[int, Field(gt=0)]


class _LegacyCamera(_Model):
    url: _LegacyUrl
    rotate: Literal[0, 90, 180, 270] = 0
    perspective: _LegacyPerspective
    concat_x: _LegacyConcat


class _LegacyConfig(_Model):
    camera: Annotated[list[_LegacyCamera], Field(min_length=1)]
    #: which URL to use when a camera lists both: "jpg" (default) or "rtsp"
    transport: Literal["jpg", "rtsp"] = "jpg"


#: new key path fragments -> the original's, so errors name the keys the user actually wrote
_LEGACY_NAMES = {".crop.": ".concat_x.", "perspective.height": "perspective.hight", ".source": ".url"}


def from_legacy(data: Any, *, label: str = "<config>", transport: str | None = None) -> Config:
    """Map the original ``cameras_config.json`` onto ``Config``; camera names are cam0, cam1, ..."""
    if not isinstance(data, dict):
        raise ConfigError([f"{label}: the top level must be an object, got {_show(data)}"])
    try:
        legacy = _LegacyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_pydantic_lines(exc, label, None)) from None
    if transport is not None and transport not in ("jpg", "rtsp"):
        raise ConfigError([f"{label}: transport: {transport!r}: must be 'jpg' or 'rtsp'"])
    chosen = transport or legacy.transport
    cameras = []
    problems = []
    for i, cam in enumerate(legacy.camera):
        height = cam.perspective.hight if cam.perspective.hight is not None else cam.perspective.height
        if height is None:
            problems.append(f"{label}: camera[{i}].perspective.hight: (missing): required key is missing")
            continue
        urls = {"jpg": cam.url.jpg, "rtsp": cam.url.rtsp}
        source = urls[chosen] or urls["jpg"] or urls["rtsp"]
        if not source:
            problems.append(f"{label}: camera[{i}].url: {{}}: needs a 'jpg' or an 'rtsp' URL")
            continue
        cameras.append(
            {
                "name": f"cam{i}",
                "source": source,
                "kind": "rtsp" if source == urls["rtsp"] else "snapshot",
                "rotate": cam.rotate,
                "perspective": {"src": cam.perspective.src, "width": cam.perspective.width, "height": height},
                "crop": {"front": cam.concat_x.front, "back": cam.concat_x.back},
            }
        )
    if problems:
        raise ConfigError(problems)
    return from_dict({"camera": cameras}, label=label, rename=_LEGACY_NAMES)


# ---------------------------------------------------------------------------------------------
# the built-in default: the original deployment's geometry, seen by synthetic cameras

ORIGINAL_GEOMETRY: list[dict[str, Any]] = [
    {"rotate": 0, "src": [[0, 92], [0, 325], [640, 349], [640, 116]], "width": 680, "crop": (0, 632)},
    {"rotate": 180, "src": [[0, 227], [0, 393], [640, 429], [640, 203]], "width": 720, "crop": (60, 585)},
    {"rotate": 0, "src": [[0, 140], [0, 368], [640, 264], [640, 131]], "width": 910, "crop": (20, 515)},
    {"rotate": 0, "src": [[0, 76], [0, 387], [640, 312], [640, 103]], "width": 695, "crop": (0, 695)},
]


def default_config_dict(run_dir: str | None = None) -> dict[str, Any]:
    """Four synthetic cameras with the original deployment's geometry (panorama 2347x250)."""
    cameras = []
    for i, g in enumerate(ORIGINAL_GEOMETRY):
        cameras.append(
            {
                "name": f"cam{i}",
                "source": "synthetic",
                "rotate": g["rotate"],
                "perspective": {"src": [[float(x), float(y)] for x, y in g["src"]], "width": g["width"], "height": 250},
                "crop": {"front": g["crop"][0], "back": g["crop"][1]},
            }
        )
    data: dict[str, Any] = {"camera": cameras}
    if run_dir is not None:
        data["daemon"] = {"run_dir": run_dir}
    return data


def default_config(run_dir: str | None = None) -> Config:
    return from_dict(default_config_dict(run_dir), label="<built-in default>")
