"""Roles: which parts of the pipeline a daemon runs (``--role``), and what follows from that.

A daemon runs all three parts, or some of them, so that one config serves a rig split over hosts:
``--role grabbers`` near the cameras binds their endpoints, ``--role stitcher,bridge`` elsewhere
connects to them (``Config.consumer_endpoint``). From the role and the config follow the child
processes to start, the endpoints they bind, the streams they publish and the ones they read from
another daemon; everything the supervisor does with endpoints (port checks, socket clean-up, the
announcement, ``zmqcam-daemon status``) follows them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zmqcam.bridge import run_bridge
from zmqcam.bus.status import all_streams
from zmqcam.config import Config
from zmqcam.errors import StartError
from zmqcam.grabber import run_grabber
from zmqcam.names import ALL_PARTS, BRIDGE, GRABBERS, PANO, PARTS, STITCHER, grabber_name, publish_name
from zmqcam.publisher import run_publisher
from zmqcam.sources import rig_arguments
from zmqcam.stitcher import run_stitcher


@dataclass
class ChildSpec:
    name: str  # "grabber:cam0", "stitcher", "bridge", "publish:NAME"
    target: Callable[..., None]
    args: tuple[Any, ...]
    #: what the child depends on; a reload restarts the child only when this changes
    fingerprint: str


def parse_role(role: str) -> set[str]:
    """``--role``: "all", or a comma list of grabbers, stitcher, bridge (checked by the CLI)."""
    return set(PARTS) if role == ALL_PARTS else {part.strip() for part in role.split(",")}


def child_specs(config: Config, role: str = ALL_PARTS) -> list[ChildSpec]:
    """The processes a config needs, in start order (grabbers, stitcher, bridge)."""
    roles = parse_role(role)
    curve = config.curve.key_dir
    specs = []
    if GRABBERS in roles:
        for cam in config.camera:
            extra = rig_arguments(config, cam)
            fp = _fingerprint(
                cam.model_dump(),
                config.camera_endpoint(cam),
                config.daemon.log_level,
                extra,
                curve,
                config.synchronized(cam),
            )
            specs.append(ChildSpec(grabber_name(cam.name), run_grabber, (config, cam.name), fp))
    if STITCHER in roles and config.stitch.enabled:
        geometry = [(c.model_dump(), config.consumer_endpoint(c.name)) for c in config.stitched_cameras]
        fp = _fingerprint(config.stitch.model_dump(), geometry, config.run_dir, config.daemon.log_level, curve)
        specs.append(ChildSpec(STITCHER, run_stitcher, (config,), fp))
    if BRIDGE in roles and config.http.enabled:
        streams = [(c.name, c.source_kind, config.consumer_endpoint(c.name)) for c in config.camera]
        pano = config.consumer_endpoint(PANO) if config.stitch.enabled else None
        fp = _fingerprint(config.http.model_dump(), streams, pano, config.pano_size, config.daemon.log_level, curve)
        specs.append(ChildSpec(BRIDGE, run_bridge, (config,), fp))
    if BRIDGE in roles:
        # publish targets serve the outside world like the bridge, and run where it runs (whether
        # or not http is enabled); each its own process, so a stuck server costs only its restart
        for name, target in config.publish_targets.items():
            endpoint = config.consumer_endpoint(target.stream)
            fp = _fingerprint(target.model_dump(), endpoint, config.daemon.log_level, curve)
            specs.append(ChildSpec(publish_name(name), run_publisher, (config, name), fp))
    return specs


def bound_endpoints(config: Config, role: str = ALL_PARTS) -> list[tuple[str, str]]:
    """(what, endpoint) for every endpoint the processes of ``role`` bind."""
    roles = parse_role(role)
    bound = []
    if GRABBERS in roles:
        bound += [(f"camera {c.name}", config.camera_endpoint(c)) for c in config.camera]
    if STITCHER in roles and config.stitch.enabled:
        bound += [("stitch", e) for e in config.pano_endpoints]
    return bound


def published_streams(config: Config, role: str = ALL_PARTS) -> list[str]:
    """The streams the processes of ``role`` publish: their cameras, and the panorama."""
    roles = parse_role(role)
    own = [c.name for c in config.camera] if GRABBERS in roles else []
    if STITCHER in roles and config.stitch.enabled:
        own.append(PANO)
    return own


def upstream_streams(config: Config, role: str = ALL_PARTS) -> list[str]:
    """The streams the processes of ``role`` read from another daemon (a part this one does not run)."""
    roles = parse_role(role)
    wanted: list[str] = []
    if STITCHER in roles and config.stitch.enabled:
        wanted += [c.name for c in config.stitched_cameras]
    if BRIDGE in roles and config.http.enabled:
        wanted += all_streams(config)
    if BRIDGE in roles:
        wanted += [target.stream for target in config.publish]
    own = set(published_streams(config, role))
    return [s for s in dict.fromkeys(wanted) if s not in own]


def reachable_streams(config: Config, role: str = ALL_PARTS) -> list[str]:
    """What ``zmqcam-daemon status`` asks a daemon of ``role`` about: the streams it publishes and
    the ones it reads from other daemons."""
    return list(dict.fromkeys(published_streams(config, role) + upstream_streams(config, role)))


def check_upstreams(config: Config, role: str = ALL_PARTS) -> None:
    """A part split off to another daemon must be reachable: an ipc endpoint inside this daemon's
    own run_dir can be bound by nobody else (the run_dir is locked to one daemon)."""
    if not child_specs(config, role):
        raise StartError(f"--role {role}: nothing to run with this config (stitch or http disabled, no [[publish]])")
    run_dir = str(config.run_dir).rstrip("/") + "/"
    for stream in upstream_streams(config, role):
        endpoint = config.consumer_endpoint(stream)
        if endpoint.startswith("ipc://") and endpoint[len("ipc://") :].startswith(run_dir):
            key = "stitch" if stream == PANO else f"camera[{config.camera.index(config.camera_named(stream))}]"
            raise StartError(
                f"--role {role}: {stream} is published at {endpoint}, inside this daemon's own run_dir, where no "
                f"other daemon can bind it; give {key} a tcp:// endpoint (and a connect address) to split the rig"
            )


def _fingerprint(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)
