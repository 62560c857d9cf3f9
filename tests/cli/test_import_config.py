"""`import-config`: the original cameras_config.json as commented TOML that loads to the same Config."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.helpers import ROOT
from zmqcam.cli.import_config import convert
from zmqcam.cli.main import main as cli_main
from zmqcam.config import load_config
from zmqcam.config.toml import render_toml, toml_value
from zmqcam.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

ORIGINAL = ROOT / "config" / "cameras_config.json"


@pytest.mark.parametrize("transport", [None, "jpg", "rtsp"])
def test_original_deployment_round_trips(tmp_path: Path, transport: str | None) -> None:
    """config/cameras_config.json -> TOML -> load_config gives the Config loading the JSON gives,
    for either transport; the TOML explains its keys and keeps the URL not chosen as a comment."""
    text = convert(ORIGINAL, transport=transport)
    path = tmp_path / "zmqcam.toml"
    path.write_text(text)
    assert load_config(path) == load_config(ORIGINAL, transport=transport)
    assert text.count("[[camera]]") == 4 and "# Rotation applied first" in text
    other = "http://192.168.1.101/jpg" if transport == "rtsp" else "rtsp://192.168.1.101:554/mjpeg/1"
    assert f'# the original also listed: source = "{other}"' in text


def test_command_writes_stdout_or_a_file_and_errors_are_one_line(tmp_path: Path, capsys: Any) -> None:
    """`import-config cameras_config.json > zmqcam.toml` and `-o FILE`; a broken or non-JSON input
    exits 1 with the loader's one-line messages, no traceback."""
    assert cli_main(["import-config", str(ORIGINAL)]) == 0
    assert capsys.readouterr().out == convert(ORIGINAL)
    assert cli_main(["import-config", str(ORIGINAL), "--transport", "rtsp", "-o", str(tmp_path / "out.toml")]) == 0
    assert load_config(tmp_path / "out.toml") == load_config(ORIGINAL, transport="rtsp")
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    data = json.loads(ORIGINAL.read_text())
    data["camera"][1]["rotate"] = 45
    del data["camera"][2]["concat_x"]
    bad.write_text(json.dumps(data))
    for path, expected in ((bad, ["camera[1].rotate", "camera[2].concat_x"]), (ROOT / "config" / "zmqcam.toml", [])):
        assert cli_main(["import-config", str(path)]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and all(e in err for e in expected), err
        assert len(err.strip().splitlines()) == max(1, len(expected))


def test_toml_values_survive_tomllib() -> None:
    """Strings with quotes, backslashes, control characters and non-ASCII, floats and nested
    tables come back from tomllib as written."""
    data = {
        "s": 'a "q" \\ \t\n\x01\x7f é 💡',
        "f": [0.1, -2.5, 1e300, 3.0, 92.0],
        "t": {"a": [[0, 1.5], [2, 3]], "b": True, "c": None},
        "arr": [{"name": "x"}, {"name": "y", "z": {"q": 1}}],
    }
    parsed = tomllib.loads(render_toml(data, header="a header\nin two lines"))
    assert parsed == {
        "s": data["s"],
        "f": data["f"],
        "t": {"a": [[0, 1.5], [2, 3]], "b": True},
        "arr": [{"name": "x"}, {"name": "y", "z": {"q": 1}}],
    }
    assert tomllib.loads(f"v = {toml_value(math.inf)}")["v"] == math.inf


urls = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)


@st.composite
def legacy_configs(draw: st.DrawFn) -> dict[str, Any]:
    cameras = []
    for _ in range(draw(st.integers(1, 3))):
        x0, y0 = draw(st.integers(0, 100)), draw(st.integers(0, 100))
        w, h = draw(st.integers(50, 600)), draw(st.integers(50, 400))
        jitter = draw(st.lists(st.floats(-20, 20, allow_nan=False), min_size=8, max_size=8))
        quad = [[x0, y0], [x0, y0 + h], [x0 + w, y0 + h], [x0 + w, y0]]
        src = [[p[0] + jitter[2 * i], p[1] + jitter[2 * i + 1]] for i, p in enumerate(quad)]
        width = draw(st.integers(10, 1000))
        front = draw(st.integers(0, width - 1))
        url = {k: draw(urls) for k in draw(st.sampled_from([["jpg"], ["rtsp"], ["jpg", "rtsp"]]))}
        cameras.append(
            {
                "url": url,
                "rotate": draw(st.sampled_from([0, 90, 180, 270])),
                "perspective": {"src": src, "width": width, "hight": 250},
                "concat_x": {"front": front, "back": draw(st.integers(front + 1, width))},
            }
        )
    return {"camera": cameras}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=legacy_configs(), transport=st.sampled_from([None, "jpg", "rtsp"]))
def test_any_valid_original_config_round_trips(tmp_path: Path, data: dict[str, Any], transport: str | None) -> None:
    """Whatever the URLs contain and whatever the numbers are, the TOML loads to the same Config."""
    source = tmp_path / "cameras_config.json"
    source.write_text(json.dumps(data), encoding="utf-8")
    try:
        expected = load_config(source, transport=transport)
    except ConfigError:
        assume(False)
        return
    target = tmp_path / "zmqcam.toml"
    target.write_text(convert(source, transport=transport), encoding="utf-8")
    assert load_config(target) == expected
