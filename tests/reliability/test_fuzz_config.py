"""Fuzzing the config loaders: every input either loads or yields ConfigError lines, nothing else."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zmqcam.config import ConfigError, default_config_dict, parse_config

_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
_KEYS = [
    "camera",
    "daemon",
    "stitch",
    "http",
    "url",
    "jpg",
    "rtsp",
    "rotate",
    "perspective",
    "src",
    "width",
    "hight",
    "height",
    "concat_x",
    "front",
    "back",
    "name",
    "source",
    "crop",
    "fps",
    "transport",
    "size",
]
_config_like = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(_KEYS), inner, max_size=6),
    max_leaves=40,
)


def _check(text: str, is_json: bool) -> None:
    try:
        parse_config(text, label="fuzz", is_json=is_json)
    except ConfigError as exc:
        assert exc.lines and all(line.startswith("fuzz: ") and "\n" not in line for line in exc.lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300))
def test_any_text_as_toml_or_json(text: str) -> None:
    """Arbitrary text never raises anything but ConfigError, in either format."""
    _check(text, is_json=False)
    _check(text, is_json=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_config_like)
def test_config_shaped_json(data: object) -> None:
    """JSON documents built from the config's own key names hit the validators, never crash them."""
    _check(json.dumps({"camera": data} if not isinstance(data, dict) else data), is_json=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 3), st.sampled_from(["rotate", "perspective", "crop", "fps", "name", "size", "source"]), _values)
def test_one_corrupted_field_of_a_valid_config(index: int, key: str, value: object) -> None:
    """A valid rig with one field replaced by anything: loads, or one-line errors."""
    data = default_config_dict("/tmp/zc-fuzz")
    data["camera"][index][key] = value
    lines = []
    for k in ("daemon",):
        lines.append(f"[{k}]\nrun_dir = {json.dumps(data[k]['run_dir'])}")
    for cam in data["camera"]:
        lines.append("[[camera]]")
        for k, v in cam.items():
            lines.append(f"{k} = {_toml_value(v)}")
    text = "\n".join(lines)
    _check(text, is_json=False)


def _toml_value(v: object) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return '""'
    if isinstance(v, float):
        return repr(v) if v == v and abs(v) != float("inf") else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, int):
        return str(v)
    return json.dumps(str(v))
