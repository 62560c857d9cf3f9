"""The public face of zmqcam, pinned: the names ``from zmqcam import ...`` offers, and the original
``Camera.py`` API that ``zmqcam.client`` keeps (README, "Reading frames from Python").

A name added to or dropped from ``zmqcam.__all__`` fails here until this list says so on purpose;
each name must also be importable, and be what its documentation says it is.
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import zmqcam

PUBLIC_NAMES = [
    "CalibrationError",
    "Camera",
    "CameraConfig",
    "Config",
    "ConfigError",
    "CorruptFrame",
    "Frame",
    "NotRunning",
    "ProtocolError",
    "PushError",
    "RecordingError",
    "SourceBusy",
    "SourceEnded",
    "SourceError",
    "SourceTimeout",
    "StartError",
    "Subscriber",
    "UsageError",
    "VideoError",
    "ZmqcamError",
    "__version__",
    "default_config",
    "load_config",
]


def test_public_names_are_pinned() -> None:
    assert sorted(zmqcam.__all__) == PUBLIC_NAMES


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_each_public_name_is_importable(name: str) -> None:
    module = __import__("zmqcam", fromlist=[name])  # what `from zmqcam import <name>` does
    assert getattr(module, name) is not None


def test_every_error_is_in_the_tree() -> None:
    """Every exception zmqcam exports derives from ZmqcamError, so one except clause catches them all,
    and every one the tree (zmqcam.errors) defines is exported."""
    values = [getattr(zmqcam, n) for n in PUBLIC_NAMES]
    errors = [v for v in values if inspect.isclass(v) and issubclass(v, BaseException)]
    tree = importlib.import_module("zmqcam.errors")
    defined = [v for v in vars(tree).values() if inspect.isclass(v) and v.__module__ == tree.__name__]
    assert sorted(e.__name__ for e in errors) == sorted(e.__name__ for e in defined)
    assert all(issubclass(e, zmqcam.ZmqcamError) for e in errors)
    assert issubclass(zmqcam.NotRunning, zmqcam.UsageError)


def test_the_original_camera_api_is_where_scripts_import_it() -> None:
    """Scripts written for the original Camera.py change one import (README): zmqcam.client.Camera,
    also under the original's names jpg_cam and rtsp_cam, with start/read/close."""
    client = importlib.import_module("zmqcam.client")
    assert client.Camera is zmqcam.Camera and client.Subscriber is zmqcam.Subscriber
    assert client.jpg_cam is client.Camera and client.rtsp_cam is client.Camera
    for method in ("start", "read", "close"):
        assert callable(getattr(client.Camera, method))
