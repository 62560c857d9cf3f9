"""Configuration: TOML (native) and the original ``cameras_config.json`` format, one model.

zmqcam.config.models    the pydantic models and what follows from them (geometry, endpoints, slots)
zmqcam.config.loading   load_config / parse_config / from_dict: validation and cross checks
zmqcam.config.messages  every problem as one line: file, key path, value, rule
zmqcam.config.legacy    the original cameras_config.json
zmqcam.config.keyfiles  the CURVE key directory's layout and checks
zmqcam.config.defaults  the built-in default and which config a program uses when none is named
zmqcam.config.toml      the TOML writer
"""

from zmqcam.config.defaults import ORIGINAL_GEOMETRY, config_file, default_config, default_config_dict, resolve_config
from zmqcam.config.loading import from_dict, from_legacy, load_config, parse_config
from zmqcam.config.models import (
    MAX_IPC_PATH,
    SOURCE_KINDS,
    CameraConfig,
    Config,
    Crop,
    CurveConfig,
    DaemonConfig,
    HttpConfig,
    Perspective,
    PublishConfig,
    Slot,
    StitchConfig,
    default_run_dir,
    infer_kind,
    panorama_slots,
)
from zmqcam.errors import ConfigError

__all__ = [
    "MAX_IPC_PATH",
    "ORIGINAL_GEOMETRY",
    "SOURCE_KINDS",
    "CameraConfig",
    "Config",
    "ConfigError",
    "Crop",
    "CurveConfig",
    "DaemonConfig",
    "HttpConfig",
    "Perspective",
    "PublishConfig",
    "Slot",
    "StitchConfig",
    "config_file",
    "default_config",
    "default_config_dict",
    "default_run_dir",
    "from_dict",
    "from_legacy",
    "infer_kind",
    "load_config",
    "panorama_slots",
    "parse_config",
    "resolve_config",
]
