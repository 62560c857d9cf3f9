"""Loading a config: TOML (native) or the original ``cameras_config.json``, into one ``Config``.

``load_config(path)`` returns a validated ``Config`` or raises ``ConfigError`` whose ``lines`` say,
one per problem, the file, the key path, the bad value and the rule it breaks
(``zmqcam.config.messages``). Besides what each key allows, it checks what only the whole config
can tell (duplicate names, crops beyond the warp, stitched heights, endpoints) and that the files it
names are usable: the CURVE keys (``zmqcam.config.keyfiles``) and the TLS certificate. Nothing here
ever lets a pydantic or parser traceback reach the user.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from zmqcam.config.esp32 import CONTROL_NAME_PATTERN, ESP32_KINDS, control_value, parse_warmup
from zmqcam.config.keyfiles import key_dir_problems
from zmqcam.config.legacy import LEGACY_NAMES, legacy_dict
from zmqcam.config.messages import problem_line, pydantic_lines, show_value
from zmqcam.config.models import MAX_IPC_PATH, MIN_WATCHDOG, PUBLISH_SCHEMES, CameraConfig, Config, CurveConfig
from zmqcam.errors import ConfigError
from zmqcam.names import PANO, is_wildcard, tcp_host

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib


def load_config(path: str | os.PathLike[str], *, transport: str | None = None, check_keys: bool = True) -> Config:
    """Load a TOML or original-format JSON config. ``transport`` ("jpg" or "rtsp") picks the URL
    of original-format cameras that list both; it overrides the file's top-level ``transport``.
    A relative ``curve.key_dir`` is relative to the file's directory. ``check_keys=False`` leaves the key
    files unchecked, for the commands that only talk to a running daemon (a key that went bad since
    it started must not keep anyone from stopping it or reading its status)."""
    p = Path(path)
    label = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{label}: cannot read: {getattr(exc, 'strerror', None) or exc}"]) from None
    return parse_config(
        text,
        label=label,
        is_json=p.suffix.lower() == ".json",
        transport=transport,
        base_dir=p.parent,
        check_keys=check_keys,
    )


def parse_config(
    text: str,
    *,
    label: str = "<config>",
    is_json: bool = False,
    transport: str | None = None,
    base_dir: Path | None = None,
    check_keys: bool = True,
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
    return from_dict(data, label=label, base_dir=base_dir, check_keys=check_keys)


def from_dict(
    data: Any,
    *,
    label: str = "<config>",
    rename: dict[str, str] | None = None,
    base_dir: Path | None = None,
    check_keys: bool = True,
) -> Config:
    """Validate a TOML-shaped dict. ``rename`` maps key names back to the user's file format;
    ``base_dir`` is what a relative ``curve.key_dir`` is relative to (default: the working directory)."""
    if not isinstance(data, dict):
        raise ConfigError([f"{label}: the top level must be a table, got {show_value(data)}"])
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(pydantic_lines(exc, label, rename)) from None
    problems = [problem_line(label, path, value, msg, rename) for path, value, msg in _cross_checks(config)]
    if problems:
        raise ConfigError(problems)
    if config.curve.key_dir is not None:
        config = _with_checked_keys(config, label, base_dir, check_keys)
    if config.http.tls_cert is not None and config.http.tls_key is not None:
        config = _with_checked_tls(config, label, base_dir)
    return config


def _absolute(path: str, base_dir: Path | None) -> str:
    """A path from the config made absolute: ``~`` expanded, a relative one taken from ``base_dir``
    (the config file's directory; the working directory for a config built in code). The children
    may run elsewhere, so they get it absolute. ValueError for a ``~user`` part with a NUL byte."""
    return os.path.abspath(Path(base_dir or ".") / os.path.expanduser(path))


def _with_checked_keys(config: Config, label: str, base_dir: Path | None, check: bool) -> Config:
    """``config`` with ``curve.key_dir`` made absolute (children may run elsewhere), after checking
    (unless not ``check``) that every key file is there and valid: a missing key is a config error,
    not a crash at start."""
    value = config.curve.key_dir
    assert value is not None
    try:
        key_dir = Path(_absolute(value, base_dir))
    except ValueError as exc:  # a NUL byte in a ~user part
        raise ConfigError([problem_line(label, "curve.key_dir", value, str(exc), None)]) from None
    problems = [
        problem_line(label, "curve.key_dir", value, f"{str(path)!r}: {reason}", None)
        for path, reason in (key_dir_problems(key_dir) if check else [])
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
            problems.append(problem_line(label, f"http.{key}", value, reason, None))
            continue
        if marker not in content:
            problems.append(problem_line(label, f"http.{key}", value, f"not {what}", None))
    if not problems:
        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(paths["tls_cert"], paths["tls_key"])
        except ssl.SSLError as exc:
            why = str(exc.reason or exc)
            reason = "does not match tls_key" if "MISMATCH" in why else f"cannot be loaded with tls_key: {why}"
            problems.append(problem_line(label, "http.tls_cert", config.http.tls_cert, reason, None))
    if problems:
        raise ConfigError(problems)
    return config.model_copy(update={"http": config.http.model_copy(update=paths)})


def _cross_checks(config: Config) -> Iterator[tuple[str, Any, str]]:
    if 0 < config.daemon.watchdog < MIN_WATCHDOG:
        yield "daemon.watchdog", config.daemon.watchdog, f"must be 0 (off) or at least {MIN_WATCHDOG:g} seconds"
    names: dict[str, int] = {}
    for i, cam in enumerate(config.camera):
        where = f"camera[{i}]"
        if cam.name in names:
            yield f"{where}.name", cam.name, f"duplicate camera name (also camera[{names[cam.name]}])"
        names.setdefault(cam.name, i)
        if cam.name == PANO:
            # its topics would be the stitcher's: two publishers of one stream on the bus
            yield (
                f"{where}.name",
                cam.name,
                f"{PANO!r} is the panorama's stream name: name the camera otherwise",
            )
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
        yield from _check_esp32(where, cam)
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
    yield from _check_publish(config)
    if (config.http.basic_user is None) != (config.http.basic_password is None):
        yield "http.basic_user", config.http.basic_user, "basic_user and basic_password go together"
    if (config.http.tls_cert is None) != (config.http.tls_key is None):
        yield "http.tls_cert", config.http.tls_cert, "tls_cert and tls_key go together"


def _check_publish(config: Config) -> Iterator[tuple[str, Any, str]]:
    names: dict[str, int] = {}
    for i, target in enumerate(config.publish):
        where = f"publish[{i}]"
        try:
            url = urlsplit(target.url)
            usable = url.scheme.lower() in PUBLISH_SCHEMES and bool(url.hostname) and url.port != 0
        except ValueError:  # a bad IPv6 literal or port
            usable = False
        if not usable:
            yield (
                f"{where}.url",
                target.url,
                "must be rtsp://host[:port]/path or rtmp://host[:port]/app/key (rtsps://, rtmps:// for TLS)",
            )
        name = target.name if target.name is not None else str(i)
        if name in names:
            yield f"{where}.name", name, f"duplicate publish name (also publish[{names[name]}])"
        names.setdefault(name, i)
        if target.stream != PANO:
            yield f"{where}.stream", target.stream, f"only {PANO!r} is encoded to H.264 (cameras have no h264 topic)"
        elif not config.stitch.enabled:
            yield f"{where}.stream", target.stream, "needs the stitcher (stitch.enabled = true)"


def _check_esp32(where: str, cam: CameraConfig) -> Iterator[tuple[str, Any, str]]:
    """``controls`` (only for an ESP32's HTTP sources, values the firmware takes) and ``warmup``."""
    if cam.controls and cam.source_kind not in ESP32_KINDS:
        yield (
            f"{where}.controls",
            cam.controls,
            f"only for an ESP32-CAM over HTTP (kind {' or '.join(ESP32_KINDS)}), not {cam.source_kind}",
        )
    for name, value in cam.controls.items():
        if not CONTROL_NAME_PATTERN.match(name):
            yield f"{where}.controls", name, "not a firmware variable name (lower-case letters, digits, _)"
            continue
        try:
            control_value(name, value)
        except ValueError as exc:
            yield f"{where}.controls.{name}", value, str(exc)
    if cam.warmup is not None:
        try:
            parse_warmup(cam.warmup)
        except ValueError as exc:
            yield f"{where}.warmup", cam.warmup, str(exc)


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
    elif connect and is_wildcard(tcp_host(endpoint) or ""):
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


def from_legacy(data: Any, *, label: str = "<config>", transport: str | None = None) -> Config:
    """Map the original ``cameras_config.json`` onto ``Config``; camera names are cam0, cam1, ..."""
    return from_dict(legacy_dict(data, label=label, transport=transport), label=label, rename=LEGACY_NAMES)
