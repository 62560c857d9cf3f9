"""The config used when none is named: ``./config/zmqcam.toml`` if present, else the built-in default,
four synthetic cameras with the original deployment's geometry (panorama 2347x250).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from zmqcam.config.loading import from_dict, load_config
from zmqcam.config.models import Config
from zmqcam.names import DEFAULT_CONFIG_PATH

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


def config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``path`` when named, else ``./config/zmqcam.toml`` when present, else
    None (the built-in default)."""
    if path is not None:
        return Path(path)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None


def resolve_config(
    config: Config | str | os.PathLike[str] | None = None, *, transport: str | None = None, check_keys: bool = True
) -> Config:
    """The config a program uses: ``config`` itself, the file it names, else ``./config/zmqcam.toml``
    when present, else the built-in default. ConfigError for a file that does not load."""
    if isinstance(config, Config):
        return config
    path = config_file(config)
    if path is None:
        return default_config()
    return load_config(path, transport=transport, check_keys=check_keys)
