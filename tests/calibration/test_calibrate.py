"""`calibrate`: one PNG with each camera's quad and crop over its frame, and the panorama under them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import simplejpeg

from tests.helpers import Children, wait_for
from zmqcam.bus.status import collect_status
from zmqcam.calibration.preview import CROP_COLOR, DIM, GAP, LABEL_HEIGHT, QUAD_COLOR
from zmqcam.cli.main import main as cli_main
from zmqcam.config import Config
from zmqcam.config.toml import render_toml
from zmqcam.grabber import run_grabber
from zmqcam.image.remap import PanoramaComposer
from zmqcam.recording.format import RecordingWriter
from zmqcam.sources.synthetic import SyntheticSource, scene_offsets

# the built-in default's first two cameras (the original deployment): quads in rotated-frame pixels
CAM0_QUAD = [(0, 92), (0, 325), (640, 349), (640, 116)]  # rotate 0, crop 0..632 of 680
CAM1_QUAD = [(0, 227), (0, 393), (640, 429), (640, 203)]  # rotate 180, crop 60..585 of 720
CAM1_X = 640 + GAP
PANO_Y = LABEL_HEIGHT + 480 + GAP + LABEL_HEIGHT


def synthetic_frames(config: Config, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    offsets = scene_offsets(config)
    frames = {}
    for cam in config.camera:
        frame = SyntheticSource(cam, scene_offset=offsets[cam.name]).render(1000.0)
        frames[cam.name] = frame if size is None else cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
    return frames


def record(path: Path, config: Config, frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A one-frame recording of ``frames``; returns the frames as the recording holds them (decoded)."""
    writer = RecordingWriter(path, config, [c.name for c in config.camera])
    decoded = {}
    for name, frame in frames.items():
        jpeg = simplejpeg.encode_jpeg(frame, quality=90, colorspace="BGR")
        writer.write(
            name, jpeg, 1, 1_700_000_000_000_000_000, 1_700_000_000_000_000_000, frame.shape[1], frame.shape[0]
        )
        decoded[name] = simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
    writer.close()
    return decoded


def near(image: np.ndarray, x: float, y: float, color: tuple[int, int, int], r: int = 1) -> bool:
    """Whether a pixel within ``r`` of (x, y) has exactly ``color``."""
    xi, yi = round(x), round(y)
    patch = image[yi - r : yi + r + 1, xi - r : xi + r + 1].reshape(-1, 3)
    return bool((patch == color).all(axis=1).any())


def midpoint(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return (a[0] + b[0]) / 2, (a[1] + b[1]) / 2


def warped_to_frame(quad: list[tuple[int, int]], width: int, height: int, x: float, y: float) -> tuple[float, float]:
    """A point of the warped image, mapped back into the frame (the original's own matrix, inverted)."""
    rect = np.float32([(0, 0), (0, height), (width, height), (width, 0)])
    m = cv2.getPerspectiveTransform(rect, np.float32(quad))
    px, py = cv2.perspectiveTransform(np.float64([[[x, y]]]), m)[0, 0]
    return float(px), float(py)


def test_png_from_a_recording_shows_quads_crops_and_the_exact_panorama(
    make_config: Callable[..., Config], tmp_path: Path, capsys: Any
) -> None:
    """`calibrate --from REC OUT.png` (config: the recorded one): the image is 1288x782 for two
    640x480 cameras over a 1157x250 panorama; each quad edge is green where the config's numbers
    put it (cam1 rotated 180); the crop's front column is red where it falls; what the panorama
    does not use is dimmed; and the panorama is exactly what the stitcher makes of the frames."""
    config = make_config(cameras=2)
    frames = record(tmp_path / "rec", config, synthetic_frames(config))
    out = tmp_path / "cal.png"
    assert cli_main(["calibrate", "--from", str(tmp_path / "rec"), str(out)]) == 0
    assert f"wrote {out} (1288x782)" in capsys.readouterr().out
    image = cv2.imread(str(out))
    assert image.shape == (782, 1288, 3)

    for x0, quad in ((0, CAM0_QUAD), (CAM1_X, CAM1_QUAD)):
        for a, b in ((0, 3), (1, 2)):  # the top and bottom edges
            mx, my = midpoint(quad[a], quad[b])
            assert near(image, x0 + mx, LABEL_HEIGHT + my, QUAD_COLOR), (x0, a, b)
            assert not near(image, x0 + mx, LABEL_HEIGHT + my + (12 if a == 0 else -12), QUAD_COLOR, r=2)
    # cam1 keeps columns 60..585 of its 720-wide warp: the front column, mapped back into the frame
    fx, fy = warped_to_frame(CAM1_QUAD, 720, 250, 60, 125)
    assert near(image, CAM1_X + fx, LABEL_HEIGHT + fy, CROP_COLOR)
    # inside the kept region the frame is untouched; above the quad it is dimmed
    cam0 = image[LABEL_HEIGHT : LABEL_HEIGHT + 480, :640].astype(int)
    assert np.array_equal(cam0[200, 300], frames["cam0"][200, 300])
    assert np.abs(cam0[30, 300] - (frames["cam0"][30, 300] * DIM).astype(int)).max() <= 1
    rotated = cv2.rotate(frames["cam1"], cv2.ROTATE_180)
    assert np.array_equal(image[LABEL_HEIGHT + 300, CAM1_X + 320], rotated[300, 320])

    pano = PanoramaComposer(config.stitched_cameras).compose([frames["cam0"], frames["cam1"]])
    assert np.array_equal(image[PANO_Y : PANO_Y + 250, :1157], pano)


def test_candidate_quad_and_crop_preview_without_editing_the_config(
    make_config: Callable[..., Config], tmp_path: Path, capsys: Any
) -> None:
    """--camera cam0 --src ... --crop ... draws the candidate, stitches with it, and prints the TOML
    lines to paste; the config file is left alone."""
    config = make_config(cameras=2)
    cfg = tmp_path / "rig.toml"
    cfg.write_text(render_toml(config.model_dump(mode="json", exclude_defaults=True)))
    before = cfg.read_text()
    frames = record(tmp_path / "rec", config, synthetic_frames(config))
    out = tmp_path / "cal.png"
    quad = [(10, 50), (10, 300), (600, 330), (600, 60)]
    src = ",".join(f"{x},{y}" for x, y in quad)
    args = ["-c", str(cfg), "--from", str(tmp_path / "rec"), "--camera", "cam0", "--src", src, "--crop", "20,600"]
    assert cli_main(["calibrate", *args, str(out)]) == 0
    printed = capsys.readouterr().out
    assert "perspective = { src = [[10, 50], [10, 300], [600, 330], [600, 60]], width = 680, height = 250 }" in printed
    assert "crop = { front = 20, back = 600 }" in printed
    assert cfg.read_text() == before
    image = cv2.imread(str(out))
    assert image.shape == (782, 1288, 3)
    mx, my = midpoint(quad[0], quad[3])
    assert near(image, mx, LABEL_HEIGHT + my, QUAD_COLOR)
    old = midpoint(CAM0_QUAD[0], CAM0_QUAD[3])
    assert not near(image, old[0], LABEL_HEIGHT + old[1], QUAD_COLOR, r=2)
    candidate = config.model_dump()
    candidate["camera"][0]["perspective"]["src"] = [list(map(float, p)) for p in quad]
    candidate["camera"][0]["crop"] = {"front": 20, "back": 600}
    candidate_config = Config.model_validate(candidate)
    pano = PanoramaComposer(candidate_config.stitched_cameras).compose([frames["cam0"], frames["cam1"]])
    assert np.array_equal(image[PANO_Y : PANO_Y + 250, : 580 + 525], pano)


def test_missing_and_resized_frames(make_config: Callable[..., Config], tmp_path: Path, capsys: Any) -> None:
    """A camera the recording lacks is a NO SIGNAL card with its quad still drawn; a camera recorded
    at another resolution (320x240) gets its quad scaled to it, as the stitcher scales its map."""
    config = make_config(cameras=2)
    small = synthetic_frames(config, size=(320, 240))
    record(tmp_path / "rec", config.model_copy(update={"camera": config.camera[:1]}), {"cam0": small["cam0"]})
    out = tmp_path / "cal.png"
    assert cli_main(["calibrate", "-c", _write(config, tmp_path), "--from", str(tmp_path / "rec"), str(out)]) == 0
    assert "no frame from cam1" in capsys.readouterr().out
    image = cv2.imread(str(out))
    assert image.shape == (782, max(320 + GAP + 640, 1157), 3)
    mx, my = midpoint(CAM0_QUAD[0], CAM0_QUAD[3])
    assert near(image, mx / 2, LABEL_HEIGHT + my / 2, QUAD_COLOR)
    x1 = 320 + GAP
    mx, my = midpoint(CAM1_QUAD[1], CAM1_QUAD[2])
    assert near(image, x1 + mx, LABEL_HEIGHT + my, QUAD_COLOR)


def _write(config: Config, tmp_path: Path) -> str:
    path = tmp_path / "rig.toml"
    path.write_text(render_toml(config.model_dump(mode="json", exclude_defaults=True)))
    return str(path)


def test_live_frames_from_running_grabbers(
    make_config: Callable[..., Config], children: Children, tmp_path: Path, capsys: Any
) -> None:
    """--live takes a fresh frame from the grabber; with nothing running it says so."""
    config = make_config(cameras=1, camera={"fps": 10.0, "idle_timeout": 1.0})
    cfg = _write(config, tmp_path)
    assert cli_main(["calibrate", "-c", cfg, "--live", "--timeout", "0.3", str(tmp_path / "none.png")]) == 1
    err = capsys.readouterr().err
    assert "no frame from any camera" in err and len(err.strip().splitlines()) == 1
    for cam in config.camera:
        children.start(run_grabber, config, cam.name)
    wait_for(lambda: len(collect_status(config, timeout=2.0, streams=["cam0"])) == 1, 30, message="grabber")
    out = tmp_path / "live.png"
    assert cli_main(["calibrate", "-c", cfg, "--live", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "frames from the running daemon" in printed and "no frame from" not in printed
    image = cv2.imread(str(out))
    assert image.shape == (782, 640, 3)
    # pictures, not NO SIGNAL cards: the synthetic scene is colourful
    assert image[LABEL_HEIGHT : LABEL_HEIGHT + 480, :640].std() > 20 and image[PANO_Y:, :632].std() > 20


def test_user_errors_are_one_line(make_config: Callable[..., Config], tmp_path: Path, capsys: Any) -> None:
    """Bad candidate numbers, a candidate without --camera, an unknown camera, a non-PNG output,
    a missing recording: exit 1 with one line each, no traceback."""
    config = make_config(cameras=2)
    cfg = _write(config, tmp_path)
    record(tmp_path / "rec", config, synthetic_frames(config))
    rec = ["--from", str(tmp_path / "rec")]
    cases = [
        ([*rec, "--camera", "cam0", "--src", "1,2,3", "o.png"], "--src"),
        ([*rec, "--camera", "cam0", "--src", "0,0,640,480,0,480,640,0", "o.png"], "convex"),
        ([*rec, "--camera", "cam0", "--crop", "10,9999", "o.png"], "crop.back"),
        ([*rec, "--src", "0,0,0,1,1,1,1,0", "o.png"], "--camera"),
        ([*rec, "--camera", "cam9", "--crop", "0,10", "o.png"], "cam9"),
        ([*rec, "o.jpg"], "PNG"),
        (["--from", str(tmp_path / "nothing"), "o.png"], "nothing"),
    ]
    for args, expected in cases:
        assert cli_main(["calibrate", "-c", cfg, *args]) == 1, args
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, (args, err)
