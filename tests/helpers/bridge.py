"""The HTTP bridge as a test runs it: a rig config, the bridge process on a free port, its /status."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests

from tests.helpers.processes import Children
from tests.helpers.waiting import wait_for
from zmqcam.bridge import read_announce, run_bridge
from zmqcam.config import Config, default_config_dict, from_dict
from zmqcam.names import LOOPBACK

#: the bridge tests' cameras: a rate that keeps the CPU load small, and a short idle timeout
FPS = 15
IDLE_TIMEOUT = 1.0


def build_config(run_dir: str | Path, cameras: int = 2, **sections: dict[str, Any]) -> Config:
    data = default_config_dict(str(run_dir))
    data["camera"] = data["camera"][:cameras]
    for cam in data["camera"]:
        cam.update({"idle_timeout": IDLE_TIMEOUT, "fps": FPS})
    for key, value in sections.items():
        data.setdefault(key, {}).update(value)
    return from_dict(data, label="<test>")


def start_bridge(children: Children, config: Config, **kwargs: Any) -> tuple[Any, str]:
    """Start the bridge on a free port (port 0) and return (process, base URL)."""
    proc = children.start(run_bridge, config, **kwargs)
    info = wait_for(lambda: read_announce(config.run_dir), 30, message="the bridge to listen")
    return proc, f"http://{LOOPBACK}:{info['port']}"


def get_status(url: str) -> dict[str, Any]:
    response = requests.get(url + "/status", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    status: dict[str, Any] = response.json()
    return status
