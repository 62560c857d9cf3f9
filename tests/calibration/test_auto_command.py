"""`zmqcam-daemon calibrate --auto` end to end: a real daemon reading four fake ESP32-CAMs (MJPEG, the
firmware's wire format) that show the rendered conveyor scene with the board on it (one camera upside
down, each with its own gain, colour cast, noise and JPEG). The command recovers geometry whose
panorama is the top-down truth (seams aligned, high PSNR in every slot), from one placement, from one
placement per pair of neighbours on a terminal that asks for the next one, and from recordings made
with `record`; the config it writes passes `check-config` and a daemon started on it serves that
panorama. Every failure says what to do in one line and writes nothing.

One daemon serves the whole module; the last test stops it to start one on the new config (the
fakes, like ESP32-CAMs, serve one stream client at a time).
"""

from __future__ import annotations

import itertools
import os
import pty
import re
import select
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import ROOT, Daemon, cli, psnr, wait_for
from zmqcam.bus.status import collect_status
from zmqcam.calibration.board import BoardSpec
from zmqcam.calibration.frame import rotation_matrix
from zmqcam.calibration.solve import transform
from zmqcam.cli.main import main as cli_main
from zmqcam.client import Subscriber
from zmqcam.config import CameraConfig, Config, default_config, default_config_dict, from_dict, load_config
from zmqcam.config.toml import render_toml
from zmqcam.image.remap import PanoramaComposer, homography
from zmqcam.recording.format import RecordingWriter
from zmqcam.testing.daemon import daemon_command, fake_camera_config
from zmqcam.testing.fakecam import FakeCam
from zmqcam.testing.scene import BoardPlacement, Scene, chain_placements, default_cameras, default_sheets

#: the fakes' frame rate: enough for a still board, light on a shared machine
FPS = 5.0
#: distinct noisy JPEGs per camera, served in turn (rendering one takes tens of ms: rendered once)
PICTURES = 3
#: frames per camera and placement the command takes (its default is 5; 3 keeps the tests short)
FRAMES = "3"
#: as in test_auto: each slot against what its camera makes of the truth (measured 27.7-30.8 dB;
#: one pixel off measures 19.7-27.4 dB)
MIN_PSNR = 26.0
#: the issue's bound on seam misalignment, panorama pixels
SEAM_PX = 1.5
#: how far any panorama pixel may land from where one similarity (a metric top-down view) puts it
FIT_PX = 1.0
NAMES = [c.name for c in default_cameras()]
NO_TERMINAL = (
    r" \(no terminal to ask for the next placement: record one per pair of neighbours with zmqcam-daemon record, "
    r"then calibrate --from each recording\)"
)

Pictures = dict[str, list[bytes]]


def pictures(scene: Scene, change: Callable[[str, np.ndarray], np.ndarray] | None = None) -> Pictures:
    """What each fake serves: ``PICTURES`` frames of the scene per camera, ``change`` applied to the pixels."""
    out: Pictures = {}
    for name in NAMES:
        jpegs = [scene.jpeg(name, i) for i in range(PICTURES)]
        if change is not None:
            jpegs = [bytes(cv2.imencode(".jpg", change(name, scene.frame(name, i)))[1]) for i in range(PICTURES)]
        out[name] = jpegs
    return out


def barrel(name: str, frame: np.ndarray) -> np.ndarray:
    """cam1's lens bends straight lines (strong barrel distortion); the others are left as they are."""
    if name != "cam1":
        return frame
    h, w = frame.shape[:2]
    k = np.array([[470.0, 0, (w - 1) / 2], [0, 470.0, (h - 1) / 2], [0, 0, 1]])
    mapx, mapy = cv2.initUndistortRectifyMap(k, np.array([-0.35, 0.12, 0, 0]), None, k, (w, h), cv2.CV_32FC1)
    return cv2.remap(frame, mapx, mapy, cv2.INTER_LINEAR)


def gap_scene() -> Scene:
    """cam2 and cam3 200 mm further along: a strip of belt between cam1's and cam2's views that neither
    sees, bridged by a sheet whose ends each camera sees; sheets across the other overlaps."""
    cams = [replace(c, x_mm=c.x_mm + 200) if c.name in ("cam2", "cam3") else c for c in default_cameras()]
    spec = BoardSpec()
    y = float(np.mean([c.y_mm for c in cams]))
    boards = [
        BoardPlacement(spec.for_sheet(k), (a.x_mm + b.x_mm) / 2, y, 0.5 * (-1) ** k)
        for k, (a, b) in enumerate(itertools.pairwise(cams))
    ]
    return Scene(cameras=cams, boards=boards)


# ---------------------------------------------------------------------------------------------
# the rig


class Rig:
    """Four fake ESP32-CAMs and a daemon on them (the original deployment's geometry as the old config)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.fakes = [FakeCam(fps=FPS).start() for _ in NAMES]
        data = fake_camera_config([f.stream_port for f in self.fakes], idle_timeout=2.0)
        data["daemon"] = {"run_dir": str(tmp / "run")}
        data["http"] = {"enabled": False}
        from_dict(data)  # the test's own config must be valid
        self.path = tmp / "rig.toml"
        self.text = render_toml(data)
        self.path.write_text(self.text)
        self.config = load_config(self.path)
        self.daemon: Daemon | None = Daemon(["-c", str(self.path)], cwd=tmp)
        wait_for(lambda: len(collect_status(self.config, timeout=1.0)) >= len(NAMES), 30, message="the grabbers")

    def show(self, shown: Pictures) -> None:
        """Every fake serves ``shown`` from now on; a fake that is streaming has sent two of them
        before this returns, so no frame of the scene before is still on its way."""
        sent = [f.stream_frames_sent for f in self.fakes]
        for fake, name in zip(self.fakes, NAMES, strict=True):
            fake.set_source(shown[name])
        for fake, before in zip(self.fakes, sent, strict=True):
            wait_for(
                lambda f=fake, b=before: f.active_stream_clients == 0 or f.stream_frames_sent >= b + 2,  # type: ignore[misc]
                10,
                message="fresh frames",
            )

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            _, err = self.daemon.terminate()
            assert self.daemon.proc.returncode == 0 and "Traceback" not in err, err
            self.daemon = None

    def close(self) -> None:
        self.stop_daemon()
        for fake in self.fakes:
            fake.stop()
        assert not [e for f in self.fakes for e in f.errors]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    rig = Rig(tmp_path_factory.mktemp("calibrate-auto"))
    try:
        yield rig
    finally:
        rig.close()


@pytest.fixture(scope="module")
def single() -> Scene:
    """Sheets end to end along the rig: one set of frames calibrates it."""
    return Scene(boards=default_sheets())


@pytest.fixture(scope="module")
def single_pictures(single: Scene) -> Pictures:
    return pictures(single)


# ---------------------------------------------------------------------------------------------
# what a calibrated config makes of the scene


class Geometry:
    """A config's panorama measured against the scene's true cameras: per slot, where each panorama
    pixel lands on the belt (through the camera's true homography)."""

    def __init__(self, config: Config, scene: Scene) -> None:
        self.config = config
        self.scene = scene
        self.cameras = config.stitched_cameras
        self.composer = PanoramaComposer(self.cameras)
        self.size = config.pano_size
        #: per camera: 3x3 panorama pixels -> belt mm, through that camera
        self.belt_from_pano = [
            self._belt_from_pano(cam, slot.x0) for cam, slot in zip(self.cameras, self.composer.slots, strict=True)
        ]
        points = [
            np.array(
                [[x, y] for x in np.linspace(slot.x0, slot.x1 - 1, 12) for y in np.linspace(0, self.size[1] - 1, 6)]
            )
            for slot in self.composer.slots
        ]
        pano = np.concatenate(points)
        belt = np.concatenate([transform(h, p) for h, p in zip(self.belt_from_pano, points, strict=True)])
        #: the one similarity that best maps the panorama onto the belt (a top-down view is one)
        self.similarity = _fit_similarity(pano, belt)
        self.px_per_mm = 1 / float(np.sqrt(abs(np.linalg.det(self.similarity[:2, :2]))))
        self.fit_px = float(np.linalg.norm(transform(self.similarity, pano) - belt, axis=1).max()) * self.px_per_mm

    def _belt_from_pano(self, cam: CameraConfig, x0: int) -> np.ndarray:
        geo = cam.geometry
        front, _ = cam.crop_range
        size = (int(cam.size[0]), int(cam.size[1]))
        warped_from_pano = np.array([[1.0, 0, front - x0], [0, 1.0, 0], [0, 0, 1.0]])
        camera_from_warped = np.linalg.inv(rotation_matrix(cam.rotate, size)) @ np.linalg.inv(
            homography(geo.src, geo.width, geo.height)
        )
        return np.linalg.inv(self.scene.camera(cam.name).homography) @ camera_from_warped @ warped_from_pano

    def seams_px(self) -> list[float]:
        """Per seam, the farthest apart (panorama pixels) the two cameras put any pixel of the columns
        both warped images cover: 0 for a perfect seam."""
        out = []
        for k in range(len(self.cameras) - 1):
            left, right = self.cameras[k], self.cameras[k + 1]
            seam = self.composer.slots[k + 1].x0
            start, stop = seam - right.crop_range[0], seam + left.geometry.width - left.crop_range[1]
            grid = np.array([[x, y] for x in range(start, stop) for y in np.linspace(0, self.size[1] - 1, 9)])
            a, b = transform(self.belt_from_pano[k], grid), transform(self.belt_from_pano[k + 1], grid)
            out.append(float(np.linalg.norm(a - b, axis=1).max()) * self.px_per_mm)
        return out

    def slot_psnr(self, pano: np.ndarray, match_colours: bool = False) -> dict[str, float]:
        """Each slot of ``pano`` against what its camera makes of the top-down truth (its gain and
        cast; ``match_colours``: the slot's own per-channel gain fitted instead, for a stitcher that
        evens out exposure)."""
        truth = self.scene.topdown(np.linalg.inv(self.similarity), self.size)
        out = {}
        for slot in self.composer.slots:
            got = pano[:, slot.x0 : slot.x1]
            want = truth[:, slot.x0 : slot.x1]
            if match_colours:
                g, w = got.astype(np.float64), want.astype(np.float64)
                gains = (g * w).sum(axis=(0, 1)) / (w * w).sum(axis=(0, 1))
                want = np.clip(w * gains + 0.5, 0, 255).astype(np.uint8)
            else:
                want = self.scene.photometric(slot.name, want)
            out[slot.name] = psnr(got, want)
        return out

    def composed(self) -> np.ndarray:
        """The panorama zmqcam's remap makes of the scene's frames (frame 0 of each camera)."""
        return self.composer.compose([self.scene.frame(c.name, 0) for c in self.cameras]).copy()


def _fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3: the rotation, uniform scale and shift (not mirrored) that best maps ``src`` onto ``dst``."""
    x, y = src[:, 0], src[:, 1]
    one, zero = np.ones_like(x), np.zeros_like(x)
    a = np.concatenate([np.column_stack([x, -y, one, zero]), np.column_stack([y, x, zero, one])])
    (p, q, tx, ty), *_ = np.linalg.lstsq(a, np.concatenate([dst[:, 0], dst[:, 1]]), rcond=None)
    return np.array([[p, -q, tx], [q, p, ty], [0, 0, 1.0]])


def assert_recovers(config: Config, scene: Scene) -> Geometry:
    """The config's panorama is a top-down view of the scene's belt: one similarity within
    ``FIT_PX``, seams within ``SEAM_PX``, every slot matching the truth."""
    geometry = Geometry(config, scene)
    assert geometry.fit_px < FIT_PX, geometry.fit_px
    seams = geometry.seams_px()
    assert len(seams) == len(NAMES) - 1 and max(seams) <= SEAM_PX, seams
    measured = geometry.slot_psnr(geometry.composed())
    assert min(measured.values()) >= MIN_PSNR, measured
    return geometry


def report_lines(stdout: str) -> dict[str, str]:
    """The per-camera lines the command printed."""
    lines = {}
    for line in stdout.splitlines():
        m = re.match(r"(cam\d): \d+ markers, \d+ corners in \d+ frames", line)
        if m:
            lines[m.group(1)] = line
    return lines


def calibrate(rig: Rig, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli("calibrate", "--auto", "-c", str(rig.path), "--frames", FRAMES, *args, cwd=cwd, timeout=120)


# ---------------------------------------------------------------------------------------------
# success


@pytest.fixture(scope="module")
def live_single(rig: Rig, single_pictures: Pictures, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`calibrate --auto --live --write NEW.toml` with every sheet in place: (NEW.toml, what it printed)."""
    out = tmp_path_factory.mktemp("live-single")
    rig.show(single_pictures)
    done = calibrate(rig, out, "--live", "--write", "new.toml")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return out / "new.toml", done.stdout


def test_live_calibration_recovers_the_rig_and_writes_the_whole_config(
    rig: Rig, single: Scene, live_single: tuple[Path, str]
) -> None:
    """The new config's panorama is the top-down truth (seams aligned, every slot high PSNR); it
    keeps everything else of the old config, passes check-config, and the old file is untouched;
    the command said per camera what it saw and how well it fits, and wrote the calibration PNG."""
    new, stdout = live_single
    config = load_config(new)
    assert_recovers(config, single)
    assert [c.rotate for c in config.stitched_cameras] == [0, 180, 0, 0]
    old = load_config(rig.path)
    assert [c.source for c in config.camera] == [c.source for c in old.camera]
    assert config.run_dir == old.run_dir and config.http.enabled is False
    assert all((c.overlap or 0) >= 16 for c in config.camera[:3]) and config.camera[3].overlap is None
    assert rig.path.read_text() == rig.text  # the old file untouched
    checked = cli("check-config", str(new))
    assert checked.returncode == 0 and "OK, 4 cameras" in checked.stdout, checked.stderr

    assert "placement 1: cam0 " in stdout and "no board" not in stdout
    lines = report_lines(stdout)
    assert list(lines) == NAMES
    for line in lines.values():
        m = re.search(r"reprojection error (\d+\.\d\d) px \((\d+\.\d\d) mm\); overlap with (.*)$", line)
        assert m, line
        assert float(m.group(1)) < 0.5 and float(m.group(2)) < 0.5, line
        assert re.fullmatch(r"(cam\d \d+ mm \(\d+ px\)(, )?)+", m.group(3)), line
    assert "overlap with cam1" in lines["cam0"] and "cam0" in lines["cam1"] and "cam2" in lines["cam1"]
    assert re.search(r"^panorama \d+x\d+ px at [\d.]+ px/mm", stdout, re.M)
    png = new.parent / "calibration.png"
    assert f"wrote {png.name} (" in stdout and f"wrote {new.name}" in stdout
    image = cv2.imread(str(png))
    width, height = config.pano_size
    assert image is not None and image.shape[1] >= width
    assert (image[-height:, :width] == Geometry(config, single).composed()).mean() > 0.99  # the new panorama


def test_without_write_it_prints_the_lines_to_paste(rig: Rig, single_pictures: Pictures, tmp_path: Path) -> None:
    """Without --write nothing but the PNG is written, and the TOML lines printed are the geometry."""
    rig.show(single_pictures)
    done = calibrate(rig, tmp_path, "--live", "cal.png")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cal.png"]
    pasted = done.stdout[done.stdout.index("# cam0: paste into its [[camera]] table") :]
    for name in NAMES:
        assert f"# {name}: paste into its [[camera]] table" in pasted
    assert re.search(r"^perspective = \{ src = \[\[.*\]\], width = \d+, height = \d+ \}$", pasted, re.M)
    assert 'cameras = ["cam0", "cam1", "cam2", "cam3"]' in pasted


def _read_until(fd: int, marker: str, seconds: float = 60) -> str:
    """What the terminal shows until ``marker`` appears (or the program ends)."""
    text = ""
    deadline = time.monotonic() + seconds
    while marker not in text:
        left = deadline - time.monotonic()
        assert left > 0, f"no {marker!r} on the terminal; it shows: {text!r}"
        readable, _, _ = select.select([fd], [], [], min(left, 1.0))
        if not readable:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the program ended and closed the terminal
            break
        if not chunk:
            break
        text += chunk.decode(errors="replace")
    return text


def _on_a_terminal(rig: Rig, cwd: Path, *args: str) -> tuple[subprocess.Popen[str], int]:
    master, slave = pty.openpty()
    command = daemon_command("calibrate", "--auto", "-c", str(rig.path), "--frames", FRAMES, *args)
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=subprocess.PIPE, text=True, cwd=cwd)
    os.close(slave)
    return proc, master


def test_on_a_terminal_it_asks_for_each_next_placement(rig: Rig, tmp_path: Path) -> None:
    """One sheet moved across one overlap after the other: after each placement the command says
    which cameras are linked and where the board goes next, waits for Enter, and once the placements
    chain every camera it calibrates the rig as from one placement."""
    chain = chain_placements()
    scenes = [Scene(boards=boards) for boards in chain]
    rig.show(pictures(scenes[0]))
    proc, terminal = _on_a_terminal(rig, tmp_path, "--live", "--write", "new.toml")
    try:
        shown = _read_until(terminal, "press Enter")
        assert "placement 1: cam0 " in shown and "cam2 no board, cam3 no board" in shown
        assert "Next: lay the board where cam1 and cam2 overlap (linked so far: cam0, cam1)" in shown
        rig.show(pictures(scenes[1]))
        os.write(terminal, b"\n")
        shown = _read_until(terminal, "press Enter")
        assert "Next: lay the board where cam2 and cam3 overlap (linked so far: cam0, cam1, cam2)" in shown
        rig.show(pictures(scenes[2]))
        os.write(terminal, b"\n")
        shown = _read_until(terminal, "wrote new.toml")
        assert proc.wait(60) == 0, proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        os.close(terminal)
    assert "placement 3:" in shown and "placement 4" not in shown
    assert_recovers(load_config(tmp_path / "new.toml"), scenes[0])


def test_on_a_terminal_q_stops_and_writes_nothing(rig: Rig, tmp_path: Path) -> None:
    rig.show(pictures(Scene(boards=chain_placements()[0])))
    proc, terminal = _on_a_terminal(rig, tmp_path, "--live", "--write", "new.toml")
    try:
        _read_until(terminal, "press Enter")
        os.write(terminal, b"q\n")
        assert proc.wait(30) == 1
        err = proc.communicate()[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(terminal)
    assert err == (
        "stopped before every camera was linked: lay the board where cam1 and cam2 overlap "
        "(linked so far: cam0, cam1)\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_from_recordings_one_per_placement(rig: Rig, tmp_path: Path) -> None:
    """`record` each placement, then `calibrate --auto --from` every recording (no -c: the config
    the rig was recorded with): the same rig, and the new config keeps the recorded one's cameras."""
    recordings = []
    scenes = [Scene(boards=boards) for boards in chain_placements()]
    for k, scene in enumerate(scenes):
        rig.show(pictures(scene))
        recordings += ["--from", str(tmp_path / f"placement{k}")]
        made = cli("record", "-c", str(rig.path), "--duration", "2", recordings[-1], cwd=tmp_path)
        assert made.returncode == 0, made.stderr
    done = cli("calibrate", "--auto", "--frames", FRAMES, *recordings, "--write", "new.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "placement 3: cam0 no board, cam1 no board, cam2 " in done.stdout
    config = load_config(tmp_path / "new.toml")
    assert [c.source for c in config.camera] == [c.source for c in rig.config.camera]
    assert_recovers(config, scenes[0])


# ---------------------------------------------------------------------------------------------
# failures: one line, exit 1, nothing written


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no board", r"cam2 sees no board \(0 markers\): lay the board where cam1 and cam2 overlap" + NO_TERMINAL),
        (
            "gap",
            r"cam1 and cam2 do not overlap: a \d+ mm gap on the belt between their views; aim them closer together "
            r"\(neighbours must share a strip of belt\)",
        ),
        (
            "lens",
            r"cam1: reprojection error \d+\.\d px \(limit 2 px\): the board moved during the frames, is not flat, "
            r"or the lens distorts; keep the belt still and the board flat",
        ),
    ],
)
def test_failures_say_what_to_do_and_write_nothing(
    rig: Rig, single: Scene, tmp_path: Path, case: str, message: str
) -> None:
    """A camera that sees no board (only the first pair has a sheet, and no terminal to ask for the
    next placement), neighbours with a strip of belt between them that neither sees, a lens that bends
    the board's lines: each the one line that says which camera and what to do, exit 1, and neither
    the new config nor the PNG."""
    shown = {
        "no board": lambda: pictures(Scene(boards=chain_placements()[0])),
        "gap": lambda: pictures(gap_scene()),
        "lens": lambda: pictures(single, barrel),
    }[case]()
    rig.show(shown)
    done = calibrate(rig, tmp_path, "--live", "--write", "new.toml", "cal.png")
    assert done.returncode == 1, done.stdout
    assert re.fullmatch(message + "\n", done.stderr), done.stderr
    assert list(tmp_path.iterdir()) == []


def test_user_mistakes_are_one_line(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flags that cannot work are refused before any frame is taken; the old config is never the
    target; a daemon that is not running is named."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stopped").mkdir()
    data = fake_camera_config([f.stream_port for f in rig.fakes], idle_timeout=2.0)
    data["daemon"] = {"run_dir": str(tmp_path / "stopped")}
    (tmp_path / "stopped.toml").write_text(render_toml(data))
    cases = [
        (["-c", str(rig.path), "--live", "--write", str(rig.path)], "that is the config being calibrated"),
        (["-c", str(rig.path), "--live", "--write", "new.json"], "--write new.json: the new config is TOML"),
        (["-c", str(rig.path), "--live", "out.jpg"], "out.jpg: the calibration image is a PNG"),
        (["-c", str(rig.path), "--live", "--write", "no/such/dir/new.toml"], "no such directory"),
        (["-c", str(rig.path), "--live", "--frames", "0"], "--frames 0: needs a whole number from 1 to 100"),
        (["-c", str(rig.path), "--live", "--squares", "16"], "--squares 16: needs COLSxROWS"),
        (["-c", str(rig.path), "--live", "--px-per-mm", "x"], "--px-per-mm x: not a number"),
        (["-c", str(rig.path), "--live", "--camera", "cam0", "--crop", "0,10"], "--camera, --src and --crop"),
        (["-c", str(rig.path), "--from", str(tmp_path / "none")], "no such recording directory"),
        (["-c", str(tmp_path / "stopped.toml"), "--live", "--timeout", "0.5"], "no frame from any camera within 0.5 s"),
    ]
    for args, expected in cases:
        assert cli_main(["calibrate", "--auto", *args]) == 1, args
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, (args, err)
    assert cli_main(["calibrate", "--write", "new.toml", "out.png"]) == 1
    assert capsys.readouterr().err == "--write goes with --auto\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped", "stopped.toml"]


def _recording(path: Path, scene: Scene) -> None:
    """A recording of the scene as `record` writes one (the built-in rig's config inside)."""
    writer = RecordingWriter(path, default_config(), NAMES)
    for i in range(PICTURES):
        for name in NAMES:
            t = 1_700_000_000_000_000_000 + i * 100_000_000
            writer.write(name, scene.jpeg(name, i), i + 1, t, t, 640, 480)
    writer.close()


def test_write_keeps_the_original_format_and_finds_the_files_the_old_config_named(
    single: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--write from the original cameras_config.json gives a TOML config with its cameras' URLs; from
    a TOML config whose CURVE key_dir is relative to it, a new file in another directory still names
    the same keys."""
    monkeypatch.chdir(tmp_path)
    _recording(tmp_path / "rec", single)
    legacy = ROOT / "config" / "cameras_config.json"
    args = ["calibrate", "--auto", "--from", "rec", "--frames", FRAMES]
    assert cli_main([*args, "-c", str(legacy), "--write", "from-json.toml"]) == 0
    converted = load_config("from-json.toml")
    assert [c.source for c in converted.camera] == [c.source for c in load_config(legacy).camera]
    assert converted.camera[1].rotate == 180 and converted.camera[0].overlap

    assert cli_main(["keygen", "keys"]) == 0
    data = default_config_dict(str(tmp_path / "run"))
    data["curve"] = {"key_dir": "keys"}
    Path("rig.toml").write_text(render_toml(data))
    Path("calibrated").mkdir()
    assert cli_main([*args, "-c", "rig.toml", "--write", "calibrated/rig.toml"]) == 0
    capsys.readouterr()
    written = Path("calibrated/rig.toml").read_text()
    assert 'key_dir = "../keys"' in written
    assert load_config("calibrated/rig.toml").curve.key_dir == str(tmp_path / "keys")


# ---------------------------------------------------------------------------------------------
# last: the daemon on the new config (stops the module's daemon: the fakes serve one client each)


def test_a_daemon_started_on_the_new_config_serves_the_true_panorama(
    rig: Rig, single: Scene, single_pictures: Pictures, live_single: tuple[Path, str]
) -> None:
    """What the daemon publishes on the new config is the top-down truth in every slot (colours
    matched per slot, so that a stitcher evening out exposure passes too)."""
    new, _ = live_single
    rig.stop_daemon()
    rig.show(single_pictures)
    config = load_config(new)
    daemon = Daemon(["-c", str(new)], cwd=new.parent)
    try:
        with Subscriber("pano", config=config) as sub:

            def whole() -> list[np.ndarray]:
                ok, frame = sub.read(timeout=1.0)
                return [] if not ok or frame is None or frame.extra.get("stale") else [frame.image]

            (pano,) = wait_for(whole, 60, interval=0.0, message="a panorama with every camera live")
        assert (pano.shape[1], pano.shape[0]) == config.pano_size
        measured = Geometry(config, single).slot_psnr(pano, match_colours=True)
        assert min(measured.values()) >= MIN_PSNR, measured
    finally:
        _, err = daemon.terminate()
    assert daemon.proc.returncode == 0 and "Traceback" not in err, err
