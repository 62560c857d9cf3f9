"""``record --h264``: the panorama's H.264 from a real daemon remuxed into ``pano.mp4``, much smaller
than the MJPEG recording of the same span; a daemon started on its ``replay.toml`` serves the
recorded panorama; calibrate reads an MP4 recording of cameras as it reads an MJPEG one."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import Daemon, psnr, wait_for, write_config
from zmqcam import Subscriber
from zmqcam.calibration.preview import frames_from_recording
from zmqcam.cli.main import main as cli_main
from zmqcam.config import Config, load_config
from zmqcam.config.toml import render_toml
from zmqcam.recording.format import MANIFEST, PANORAMA_CAMERA, REPLAY_CONFIG, Recording, RecordingWriter
from zmqcam.sources.synthetic import SyntheticSource, scene_offsets
from zmqcam.testing.daemon import daemon_command
from zmqcam.video import EncoderSettings, H264Encoder, Mp4Reader

SECONDS = 3.0


@dataclass
class Recorded:
    config: Config
    h264: Path  # record --h264
    mjpeg: Path  # record, the same span


@pytest.fixture(scope="module")
def recorded() -> Iterator[Recorded]:
    """Both recordings of one real daemon (two synthetic cameras at 10 fps), made at the same time."""
    tmp = Path(tempfile.mkdtemp(prefix="zc-rec264-", dir="/tmp"))
    path = write_config(tmp / "zmqcam.toml", tmp / "run", cameras=2)
    daemon = Daemon(["-c", str(path)], cwd=tmp, log=tmp / "daemon.log")
    try:
        wait_for(lambda: daemon.state(tmp / "run").get("children"), 30, message="the daemon's process table")
        runs = [
            subprocess.Popen(
                daemon_command("record", "-c", str(path), *extra, "--duration", str(SECONDS), str(tmp / out)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for out, extra in (("h264", ["--h264"]), ("mjpeg", []))
        ]
        for run in runs:
            _, err = run.communicate(timeout=60)
            assert run.returncode == 0, err
        yield Recorded(load_config(path), tmp / "h264", tmp / "mjpeg")
    finally:
        daemon.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


def test_record_h264_writes_the_panorama_as_mp4_a_fraction_of_the_mjpeg(recorded: Recorded) -> None:
    """``pano.mp4`` holds the panorama at its own size (the encoder's even padding cropped back),
    from a keyframe, with capture times that advance at the cameras' pace; no camera file (no camera
    publishes h264); per second recorded it is less than a third of the MJPEG recording's bytes."""
    files = sorted(p.name for p in recorded.h264.iterdir())
    assert files == sorted([MANIFEST, REPLAY_CONFIG, "pano.mp4"]), files
    with Mp4Reader(recorded.h264 / "pano.mp4") as reader:
        assert reader.size == recorded.config.pano_size
        frames = list(reader.frames())
    assert len(frames) >= SECONDS * 10 * 0.5 and frames[0].keyframe
    assert frames[0].image.shape == (recorded.config.pano_size[1], recorded.config.pano_size[0], 3)
    gaps = np.diff([f.capture_ns for f in frames]) / 1e9
    assert gaps.min() > 0 and 0.05 < float(np.median(gaps)) < 0.2, "10 fps, in capture order"
    mp4 = Recording(recorded.h264)
    mjpeg = Recording(recorded.mjpeg)
    assert mp4.names == ["pano"] and mjpeg.names == ["cam0", "cam1"]

    def bytes_per_second(recording: Recording) -> float:
        span = recording.span()
        assert span is not None
        size = sum(recording.video_path(n).stat().st_size for n in recording.names)
        return size / (span.period_ns / 1e9)

    ratio = bytes_per_second(mp4) / bytes_per_second(mjpeg)
    print(f"pano.mp4 / the cameras' MJPEG, bytes per second: {ratio:.3f}")
    assert ratio < 1 / 3


def test_a_daemon_on_the_h264_recordings_replay_config_serves_the_recorded_panorama(recorded: Recorded) -> None:
    """``replay.toml`` of an H.264 recording plays ``pano.mp4`` as the one camera ``panorama``
    covering the whole panorama: a daemon started on it publishes panoramas of the recorded size
    that are the recorded pictures (PSNR > 30 dB against the nearest one)."""
    replay = load_config(recorded.h264 / REPLAY_CONFIG)
    assert [c.name for c in replay.camera] == [PANORAMA_CAMERA] and replay.pano_size == recorded.config.pano_size
    assert not replay.publish
    tmp = Path(tempfile.mkdtemp(prefix="zc-replay264-", dir="/tmp"))
    data = replay.model_dump(mode="json", exclude_defaults=True)
    data["daemon"]["run_dir"] = str(tmp / "run")  # beside the recording daemon
    path = tmp / "replay.toml"
    path.write_text(render_toml(data))
    daemon = Daemon(["-c", str(path)], cwd=tmp, log=tmp / "daemon.log")
    try:
        wait_for(lambda: daemon.state(tmp / "run").get("children"), 30, message="the replaying daemon")
        with Subscriber("pano", endpoint=f"ipc://{tmp / 'run'}/pano.sock") as sub:
            ok, frame = sub.read(timeout=60)
            assert ok and frame is not None
            live = frame.image.copy()
    finally:
        daemon.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    with Mp4Reader(recorded.h264 / "pano.mp4") as reader:
        best = max(psnr(live, f.image) for f in reader.frames())
    assert live.shape[1::-1] == recorded.config.pano_size
    assert best > 30, f"the replayed panorama is none of the recorded ones ({best:.1f} dB)"


def test_calibrate_reads_an_mp4_recording_of_cameras(tmp_path: Path, recorded: Recorded) -> None:
    """A recording whose cameras are MP4 tracks (what ``record --h264`` writes for cameras that
    publish h264): calibrate's frames come out of it as its MJPEG frames would (PSNR > 30 dB against
    the pictures encoded), and ``calibrate --from`` renders its preview from it."""
    config = recorded.config
    offsets = scene_offsets(config)
    writer = RecordingWriter(tmp_path / "rec", config, ["pano", *(c.name for c in config.camera)], h264=True)
    shown: dict[str, list[np.ndarray]] = {}
    for cam in config.camera:
        source = SyntheticSource(cam, scene_offset=offsets[cam.name])
        width, height = cam.size
        encoder = H264Encoder(width, height, EncoderSettings(keyint=5))
        for i in range(6):
            picture = source.render(1000.0 + i / 10)
            unit = encoder.encode(picture, 1_700_000_000_000_000_000 + i * 100_000_000)
            writer.write_h264(
                cam.name, unit.data, unit.keyframe, unit.capture_ns, (width, height), encoder.coded_size, 10
            )
            shown.setdefault(cam.name, []).append(picture)
        encoder.close()
    writer.close()
    assert Recording(tmp_path / "rec").names == ["cam0", "cam1"]
    assert "cam0.mp4" in (tmp_path / "rec" / REPLAY_CONFIG).read_text(), "a replay plays the camera tracks"
    frames = frames_from_recording(config, str(tmp_path / "rec"), at=0.3)
    for cam in config.camera:
        got = frames[cam.name]
        assert got is not None and psnr(got, shown[cam.name][3]) > 30
    out = tmp_path / "preview.png"
    assert cli_main(["calibrate", "--from", str(tmp_path / "rec"), str(out)]) == 0
    assert out.stat().st_size > 0


def test_record_h264_without_the_stitcher_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``record --h264`` needs the panorama's H.264: with ``stitch.enabled = false`` it says so in one
    line and exits 1, writing nothing."""
    path = write_config(tmp_path / "zmqcam.toml", tmp_path / "run", cameras=1, sections={"stitch": {"enabled": False}})
    assert cli_main(["record", "--h264", "-c", str(path), "--duration", "1", str(tmp_path / "rec")]) == 1
    err = capsys.readouterr().err.strip()
    assert "--h264" in err and "stitch.enabled = false" in err and "\n" not in err, err
    assert not (tmp_path / "rec").exists()
