"""Words zmqcam defines once: stream and role names, the default config path, the run_dir's files,
and the rule that turns a wildcard bind address into one a local program can connect to.

The ground floor of the house (see README, "How it works"): it imports nothing of zmqcam, and every
module that needs one of these words imports it from here rather than spelling it again.
"""

from __future__ import annotations

from pathlib import Path

#: the stream name of the stitched panorama (topics ``pano raw``, ``pano jpeg``, ``pano status``)
PANO = "pano"
#: the key of the bridge's /stream.mp4 viewers among its viewer counts (/status ``http.streams``)
MP4_VIEWERS = f"{PANO}.mp4"
#: camera and stream names appear in topics, file names and URLs, so they are kept to a safe alphabet
STREAM_NAME_PATTERN = r"^[a-z0-9_-]{1,32}$"

#: the parts of the pipeline a daemon can run (``--role``), in start order
GRABBERS = "grabbers"
STITCHER = "stitcher"
BRIDGE = "bridge"
PARTS = (GRABBERS, STITCHER, BRIDGE)
#: ``--role`` for every part
ALL_PARTS = "all"

#: the config used when none is named, relative to the working directory
DEFAULT_CONFIG_PATH = Path("config") / "zmqcam.toml"

#: files in the run directory (besides the ipc sockets)
PID_FILE = "zmqcam.pid"
LOCK_FILE = "zmqcam.lock"
#: the supervisor's process table, read by ``zmqcam-daemon status``
STATE_FILE = "daemon.json"
#: where the bridge listens, for the tools on this host and for tests
ANNOUNCE_FILE = "bridge.json"
#: the log of a daemon started with ``--detach``
LOG_FILE = "zmqcam.log"

#: what ``ps`` shows before each process's name: ``zmqcam:grabber:cam0``, ``zmqcam:stitcher``
TITLE_PREFIX = "zmqcam:"
#: the supervisor's own process name
DAEMON = "daemon"


def grabber_name(camera: str) -> str:
    """The name of a camera's grabber process in the process table and in ``ps``."""
    return f"grabber:{camera}"


def publish_name(target: str) -> str:
    """The name of a ``[[publish]]`` target's process in the process table and in ``ps``."""
    return f"{PUBLISH_PREFIX}{target}"


#: the process table's names of publish targets start with this (``publish:NAME``)
PUBLISH_PREFIX = "publish:"


def process_title(name: str) -> str:
    """What ``ps`` and the log lines show for a process: ``zmqcam:grabber:cam0``."""
    return TITLE_PREFIX + name


#: the address a local program uses to reach a server bound to a wildcard host
LOOPBACK = "127.0.0.1"
#: bind addresses meaning "every interface" (HTTP hosts and ZeroMQ tcp endpoints)
WILDCARD_HOSTS = ("0.0.0.0", "*", "::", "")


def is_wildcard(host: str) -> bool:
    return host in WILDCARD_HOSTS


def local_host(host: str) -> str:
    """Where a program on this host connects to reach a server bound to ``host``: a wildcard
    address becomes loopback, any other host stays as it is."""
    return LOOPBACK if is_wildcard(host) else host


def tcp_host(endpoint: str) -> str | None:
    """The host of a ``tcp://HOST:PORT`` endpoint, else None."""
    if not endpoint.startswith("tcp://"):
        return None
    host, sep, _ = endpoint[len("tcp://") :].rpartition(":")
    return host if sep else None


def connect_endpoint(bind: str) -> str:
    """The endpoint a local consumer connects to for a bound one (a wildcard host -> loopback)."""
    host = tcp_host(bind)
    if host is None or not is_wildcard(host):
        return bind
    return "tcp://" + LOOPBACK + bind[len("tcp://") + len(host) :]
