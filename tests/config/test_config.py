"""Config loading: TOML, the original cameras_config.json, and one clear line per mistake."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT
from zmqcam.config import ConfigError, default_config, from_dict, infer_kind, load_config, parse_config
from zmqcam.config.models import MIN_WATCHDOG
from zmqcam.process import HEARTBEAT_INTERVAL

ORIGINAL_JSON = ROOT / "config" / "cameras_config.json"

# the original deployment, as the issue gives it: (rotate, src, width, front, back)
ORIGINAL = [
    (0, [[0, 92], [0, 325], [640, 349], [640, 116]], 680, 0, 632),
    (180, [[0, 227], [0, 393], [640, 429], [640, 203]], 720, 60, 585),
    (0, [[0, 140], [0, 368], [640, 264], [640, 131]], 910, 20, 515),
    (0, [[0, 76], [0, 387], [640, 312], [640, 103]], 695, 0, 695),
]


def _original_json(tmp_path: Path, **top: object) -> Path:
    cams = []
    for i, (rotate, src, width, front, back) in enumerate(ORIGINAL):
        cams.append(
            {
                "url": {"jpg": f"http://10.0.0.{i + 1}/jpg", "rtsp": f"rtsp://10.0.0.{i + 1}:554/mjpeg/1"},
                "rotate": rotate,
                "perspective": {"src": src, "width": width, "hight": 250},
                "concat_x": {"front": front, "back": back},
            }
        )
    path = tmp_path / "cameras_config.json"
    path.write_text(json.dumps({"camera": cams, **top}))
    return path


def test_original_json_loads_to_the_original_geometry(tmp_path: Path) -> None:
    """The original format, typo "hight" included, maps onto the same models and panorama size."""
    config = load_config(_original_json(tmp_path))
    assert [c.name for c in config.camera] == ["cam0", "cam1", "cam2", "cam3"]
    assert config.pano_size == (2347, 250)
    for cam, (rotate, src, width, front, back) in zip(config.camera, ORIGINAL, strict=True):
        assert cam.rotate == rotate
        assert cam.geometry.src == [[float(x), float(y)] for x, y in src]
        assert (cam.geometry.width, cam.geometry.height) == (width, 250)
        assert cam.crop_range == (front, back)
    # the snapshot URL is the default transport when a camera lists both
    assert config.camera[0].source == "http://10.0.0.1/jpg"
    assert config.camera[0].source_kind == "snapshot"


def test_original_json_matches_the_built_in_default_geometry(tmp_path: Path) -> None:
    """The built-in default (synthetic cameras) uses exactly the original deployment's geometry."""
    legacy = load_config(_original_json(tmp_path))
    builtin = default_config()
    for a, b in zip(legacy.camera, builtin.camera, strict=True):
        assert (a.rotate, a.geometry, a.crop_range) == (b.rotate, b.geometry, b.crop_range)


def test_shipped_original_format_example_loads() -> None:
    """config/cameras_config.json, shipped to show the original format still loads."""
    config = load_config(ORIGINAL_JSON)
    assert config.pano_size == (2347, 250)


def test_rtsp_transport_is_chosen_by_option_or_top_level_key(tmp_path: Path) -> None:
    """The original switched transport by editing an import; here it is one option."""
    by_option = load_config(_original_json(tmp_path), transport="rtsp")
    assert by_option.camera[2].source == "rtsp://10.0.0.3:554/mjpeg/1"
    assert by_option.camera[2].source_kind == "rtsp"
    by_key = load_config(_original_json(tmp_path, transport="rtsp"))
    assert by_key.camera[0].source_kind == "rtsp"
    # the option overrides the file
    assert load_config(_original_json(tmp_path, transport="rtsp"), transport="jpg").camera[0].source_kind == "snapshot"


def test_toml_with_every_section(tmp_path: Path) -> None:
    """The native TOML format loads with daemon, camera, stitch and http sections."""
    path = tmp_path / "rig.toml"
    path.write_text(
        """
[daemon]
run_dir = "/tmp/zc-rig"
log_level = "debug"

[[camera]]
name = "left"
source = "http://10.0.0.1:81/stream"
rotate = 90
fps = 15
idle_timeout = 0
perspective = { src = [[0, 0], [0, 640], [480, 640], [480, 0]], width = 480, height = 640 }
crop = { front = 10, back = 470 }

[[camera]]
name = "right"
source = "synthetic"
always_on = true
size = [480, 640]
endpoint = "tcp://0.0.0.0:5601"

[stitch]
extra_endpoints = ["tcp://0.0.0.0:5600"]
jpeg_quality = 70
stale_after = 1.5

[http]
host = "0.0.0.0"
port = 8080
token = "secret"
"""
    )
    config = load_config(path)
    left, right = config.camera
    assert left.source_kind == "mjpeg" and left.rotate == 90 and left.idle_timeout == 0
    assert right.always_on and right.geometry.width == 480 and right.geometry.height == 640
    assert config.camera_endpoint("left") == "ipc:///tmp/zc-rig/cam-left.sock"
    assert config.camera_endpoint("right") == "tcp://0.0.0.0:5601"
    assert config.pano_endpoints == ["ipc:///tmp/zc-rig/pano.sock", "tcp://0.0.0.0:5600"]
    assert config.pano_size == (460 + 480, 640)
    assert config.http.port == 8080


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("http://10.0.0.1/jpg", "snapshot"),
        ("http://10.0.0.1/capture", "snapshot"),
        ("http://10.0.0.1:81/stream", "mjpeg"),
        ("http://10.0.0.1/", "mjpeg"),
        ("rtsp://10.0.0.1:554/mjpeg/1", "rtsp"),
        ("/dev/video0", "device"),
        ("0", "device"),
        ("recordings/cam0.avi", "file"),
        ("synthetic", "synthetic"),
    ],
)
def test_source_kind_is_inferred_from_the_url(source: str, kind: str) -> None:
    """The grabber picks the protocol from the source URL when no kind is given."""
    assert infer_kind(source) == kind


def _errors(text: str, label: str = "bad.toml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, label=label)
    return info.value.lines


GOOD_CAMERA = """
[[camera]]
name = "cam0"
perspective = { src = [[0, 92], [0, 325], [640, 349], [640, 116]], width = 680, height = 250 }
crop = { front = 0, back = 632 }
"""


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('[[camera]]\nname = "Cam 0"\n', "bad.toml: camera[0].name: 'Cam 0': String should match pattern"),
        ('[[camera]]\nname = "a"\nrotate = 45\n', "bad.toml: camera[0].rotate: 45: Input should be 0, 90, 180 or 270"),
        ('[[camera]]\nname = "a"\nfps = "5"\n', "bad.toml: camera[0].fps: '5': Input should be a valid number"),
        ('[[camera]]\nname = "a"\nzoom = 2\n', "bad.toml: camera[0].zoom: 2: unknown key"),
        ('[[camera]]\nname = "a"\n"x.y\\nz" = 2\n', 'bad.toml: camera[0]."x.y\\nz": 2: unknown key'),
        (
            '[[camera]]\nname = "a"\nidle_timeout = -1\n',
            "bad.toml: camera[0].idle_timeout: -1: Input should be greater",
        ),
        ("[daemon]\n", "bad.toml: camera: '(missing)': required key is missing"),
        (
            GOOD_CAMERA.replace("back = 632", "back = 700"),
            "bad.toml: camera[0].crop.back: 700: must be <= perspective.width (680)",
        ),
        (
            GOOD_CAMERA.replace("front = 0", "front = 632"),
            "bad.toml: camera[0].crop.front: 632: must be less than crop.back (632)",
        ),
        (
            GOOD_CAMERA.replace("[640, 349]", "[0, 325]"),
            "bad.toml: camera[0].perspective.src: [[0.0, 92.0], [0.0, 325.0], [0.0, 325.0], [640.0, 116.0]]: "
            "the 4 points must be distinct",
        ),
        (
            GOOD_CAMERA.replace("[[0, 92], [0, 325], [640, 349], [640, 116]]", "[[0, 0], [0, 10], [0, 20], [10, 0]]"),
            "the 4 points must form a convex quad",
        ),
        (GOOD_CAMERA.replace("[640, 349]", "[nan, 349]"), "the points must be finite numbers"),
        (GOOD_CAMERA.replace("[640, 349]", "[inf, 349]"), "the points must be finite numbers"),
        (GOOD_CAMERA + GOOD_CAMERA, "bad.toml: camera[1].name: 'cam0': duplicate camera name (also camera[0])"),
        (
            GOOD_CAMERA.replace('"cam0"', '"pano"'),
            "bad.toml: camera[0].name: 'pano': 'pano' is the panorama's stream name: name the camera otherwise",
        ),
        (
            GOOD_CAMERA + GOOD_CAMERA.replace("cam0", "cam1").replace("height = 250", "height = 240"),
            "bad.toml: camera[1].perspective.height: 240: all stitched cameras need the same height (cam0 has 250)",
        ),
        (GOOD_CAMERA + '[stitch]\nendpoint = "udp://x"\n', "bad.toml: stitch.endpoint: 'udp://x': must be ipc://PATH"),
        (GOOD_CAMERA + "[daemon]\nrun_dir = '" + "/x" * 60 + "'\n", "ipc socket path longer than 107 bytes"),
        (
            GOOD_CAMERA + '[stitch]\ncameras = ["nope"]\n',
            "bad.toml: stitch.cameras[0]: 'nope': no camera has this name",
        ),
        ("[[camera]\n", "bad.toml: invalid TOML:"),
        (GOOD_CAMERA + "[daemon]\nwatchdog = 1.5\n", "bad.toml: daemon.watchdog: 1.5: must be 0 (off) or at least 3"),
        (GOOD_CAMERA + "[daemon]\nwatchdog = -1\n", "bad.toml: daemon.watchdog: -1: Input should be greater"),
        (GOOD_CAMERA + "[daemon]\nwatchdog = inf\n", "bad.toml: daemon.watchdog: inf: Input should be a finite number"),
        (
            GOOD_CAMERA + '[stitch.h264]\npreset = "placebo"\n',
            "bad.toml: stitch.h264.preset: 'placebo': Input should be 'ultrafast', 'superfast', 'veryfast' or 'faster'",
        ),
        (
            GOOD_CAMERA + "[stitch.h264]\ncrf = 60\n",
            "bad.toml: stitch.h264.crf: 60: Input should be less than or equal",
        ),
        (GOOD_CAMERA + "[stitch.h264]\nkeyint = 0\n", "bad.toml: stitch.h264.keyint: 0: Input should be greater"),
        (GOOD_CAMERA + "[stitch.h264]\nbitrate = 500\n", "bad.toml: stitch.h264.bitrate: 500: Input should be great"),
        (GOOD_CAMERA + '[stitch.h264]\neven = "odd"\n', "bad.toml: stitch.h264.even: 'odd': Input should be 'pad'"),
        (
            GOOD_CAMERA + '[[publish]]\nurl = "http://mediamtx:8554/zmqcam"\n',
            "bad.toml: publish[0].url: 'http://mediamtx:8554/zmqcam': must be rtsp://host[:port]/path or rtmp://",
        ),
        (GOOD_CAMERA + '[[publish]]\nurl = "rtsp:///zmqcam"\n', "bad.toml: publish[0].url: 'rtsp:///zmqcam': must be"),
        (GOOD_CAMERA + '[[publish]]\nurl = "rtsp://h:99999/x"\n', "bad.toml: publish[0].url: 'rtsp://h:99999/x': must"),
        (GOOD_CAMERA + "[[publish]]\n", "bad.toml: publish[0].url: '(missing)': required key is missing"),
        (
            GOOD_CAMERA + '[[publish]]\nurl = "rtsp://h/x"\ntimeout = 0\n',
            "bad.toml: publish[0].timeout: 0: Input should be greater",
        ),
        (
            GOOD_CAMERA
            + '[[publish]]\nurl = "rtsp://h/x"\nname = "a"\n[[publish]]\nurl = "rtmp://h/x/y"\nname = "a"\n',
            "bad.toml: publish[1].name: 'a': duplicate publish name (also publish[0])",
        ),
        (
            GOOD_CAMERA + '[[publish]]\nurl = "rtsp://h/x"\nstream = "cam0"\n',
            "bad.toml: publish[0].stream: 'cam0': only 'pano' is encoded to H.264",
        ),
        (
            GOOD_CAMERA + '[stitch]\nenabled = false\n[[publish]]\nurl = "rtsp://h/x"\n',
            "bad.toml: publish[0].stream: 'pano': needs the stitcher (stitch.enabled = true)",
        ),
    ],
)
def test_each_bad_config_gives_its_one_line_error(snippet: str, expected: str) -> None:
    """Every user mistake is named: file, key path, bad value, rule; one line each."""
    lines = _errors(snippet)
    assert any(expected in line for line in lines), lines
    assert all("\n" not in line and line.startswith("bad.toml: ") for line in lines)


def test_publish_targets_are_named_by_name_or_index() -> None:
    """``[[publish]]`` entries: rtsp(s):// and rtmp(s):// URLs, a name or else the index, the panorama
    by default, 5 s timeout."""
    text = GOOD_CAMERA + "".join(
        f'[[publish]]\nurl = "{url}"\n' + (f'name = "{name}"\n' if name else "")
        for url, name in [("rtsp://mediamtx:8554/zmqcam", "lan"), ("rtmps://live.example/app/key", None)]
    )
    targets = parse_config(text).publish_targets
    assert list(targets) == ["lan", "1"]
    assert targets["lan"].stream == "pano" and targets["lan"].timeout == 5.0
    assert targets["1"].url == "rtmps://live.example/app/key"


def test_several_mistakes_give_several_lines() -> None:
    """A config with three problems reports all three, not just the first."""
    lines = _errors('[[camera]]\nname = "A"\nrotate = 1\nfps = 0\n')
    assert len(lines) == 3, lines


def test_original_json_errors_name_the_original_keys(tmp_path: Path) -> None:
    """Errors in the original format point at the keys the user wrote (hight, concat_x)."""
    path = _original_json(tmp_path)
    data = json.loads(path.read_text())
    data["camera"][1]["concat_x"]["back"] = 900
    data["camera"][2]["perspective"]["hight"] = 240
    data["camera"][3]["rotate"] = 45
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.lines == [f"{path}: camera[3].rotate: 45: Input should be 0, 90, 180 or 270"]
    data["camera"][3]["rotate"] = 0
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{path}: camera[1].concat_x.back: 900: must be <= perspective.width (720)" in info.value.lines
    assert any(line.startswith(f"{path}: camera[2].perspective.hight: 240: all stitched") for line in info.value.lines)


def test_unreadable_and_invalid_json_files(tmp_path: Path) -> None:
    """A missing file or broken JSON is one line, not a traceback."""
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.lines == [f"{tmp_path / 'nope.toml'}: cannot read: No such file or directory"]
    bad = tmp_path / "bad.json"
    bad.write_text('{"camera": [}')
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert info.value.lines[0].startswith(f"{bad}: invalid JSON: ")


def test_defaults_match_the_original_behaviour() -> None:
    """Idle timeout 30 s and the stitched panorama of the original deployment by default."""
    config = default_config()
    assert all(c.idle_timeout == 30 and not c.always_on for c in config.camera)
    assert config.pano_size == (2347, 250)
    assert config.http.port == 5000 and config.http.host == "127.0.0.1"
    assert config.stitch.jpeg_quality == 80 and config.stitch.stale_after == 2.0
    with pytest.raises(ConfigError):
        from_dict({"camera": []}, label="x")  # a rig needs at least one camera


def test_check_config_command_prints_lines_and_exits_nonzero(tmp_path: Path) -> None:
    """`zmqcam-daemon check-config` prints each problem on one line, no traceback, exit 1."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[[camera]]\nname = "A"\nrotate = 1\n')
    proc = subprocess.run(
        [sys.executable, "-m", "zmqcam.cli", "check-config", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line]
    assert lines[:2] == [
        f"{bad}: camera[0].name: 'A': String should match pattern '^[a-z0-9_-]{{1,32}}$'",
        f"{bad}: camera[0].rotate: 1: Input should be 0, 90, 180 or 270",
    ]
    good = subprocess.run(
        [sys.executable, "-m", "zmqcam.cli", "check-config", str(ORIGINAL_JSON)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert good.returncode == 0, good.stderr
    assert "4 cameras" in good.stdout and "2347x250" in good.stdout


def test_shipped_configs_load_and_the_default_file_equals_the_built_in() -> None:
    """config/zmqcam.toml documents the built-in default exactly; the ESP32 rig example is valid."""
    assert load_config(ROOT / "config" / "zmqcam.toml") == default_config()
    rig = load_config(ROOT / "config" / "esp32cam-rig.toml")
    assert rig.pano_size == (2347, 250)
    assert {c.source_kind for c in rig.camera} == {"snapshot"}
    assert rig.http.host == "0.0.0.0"


def test_watchdog_is_on_by_default_and_0_turns_it_off() -> None:
    """``daemon.watchdog`` defaults to 10 s, 0 turns it off, and the shortest allowed is three
    heartbeats, so one late beat on a busy machine never counts as a hang."""
    assert default_config().daemon.watchdog == 10.0
    for value in (0, MIN_WATCHDOG, 60):
        assert parse_config(GOOD_CAMERA + f"[daemon]\nwatchdog = {value}\n").daemon.watchdog == value
    assert MIN_WATCHDOG >= 3 * HEARTBEAT_INTERVAL
