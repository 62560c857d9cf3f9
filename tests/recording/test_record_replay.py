"""Recording a rig and replaying it: the files, the timing, and the stitched output, frame for frame."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import simplejpeg
import zmq

from tests.helpers import Children, wait_for
from zmqcam import Subscriber
from zmqcam.bus.status import collect_status
from zmqcam.cli.main import main as cli_main
from zmqcam.config import Config, load_config
from zmqcam.config.toml import render_toml
from zmqcam.errors import CorruptFrame, SourceError
from zmqcam.grabber import run_grabber
from zmqcam.image.remap import PanoramaComposer
from zmqcam.recording.format import INDEX_HEADER, MANIFEST, REPLAY_CONFIG, Recording, RecordingWriter, Track
from zmqcam.recording.recorder import Progress, Recorder
from zmqcam.sources.replay import ReplaySource
from zmqcam.sources.synthetic import SyntheticSource, scene_offsets
from zmqcam.stitcher import run_stitcher

#: how late a replayed frame may be delivered, and how far apart two replaying grabbers may start:
#: a few milliseconds on an idle machine; generous, for a loaded 2-core one
REPLAY_LAG_NS = 500_000_000


def write_config(config: Config, path: Path) -> Path:
    path.write_text(render_toml(config.model_dump(mode="json", exclude_defaults=True)))
    return path


def start_recorder(config: Config, config_path: Path, rec: Path) -> subprocess.Popen[str]:
    """``python -m zmqcam.record -c CONFIG REC`` as a user starts it, its output piped."""
    command = [sys.executable, "-m", "zmqcam.record", "-c", str(write_config(config, config_path)), str(rec)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def start_rig(config: Config, children: Children, target: Callable[..., None], stitcher: bool = False) -> list[Any]:
    procs = [children.start(target, config, cam.name) for cam in config.camera]
    if stitcher:
        procs.append(children.start(run_stitcher, config))
    # only the processes started here: a stitcher that does not run would only be waited for
    expected = [cam.name for cam in config.camera] + (["pano"] if stitcher else [])
    wait_for(
        lambda: len(collect_status(config, timeout=2.0, streams=expected)) == len(expected), 30, message="rig status"
    )
    return procs


def index_lines(path: Path) -> int:
    try:
        return path.read_text().count("\n") - 1
    except OSError:
        return 0


def read_all(track: Track) -> list[bytes]:
    return [track.read(i) for i in range(len(track))]


def decode(jpeg: bytes) -> np.ndarray:
    return simplejpeg.decode_jpeg(jpeg, colorspace="BGR")


def test_replay_of_a_recorded_rig_stitches_to_the_same_panoramas(
    make_config: Callable[..., Config], children: Children, tmp_path: Path
) -> None:
    """Record two synthetic cameras with `record` (stopped by Ctrl-C), replay the recording through
    grabbers and a stitcher: every replayed JPEG is the recorded one, byte for byte, in recorded
    order and at recorded timing, and every panorama the replay's stitcher publishes equals the
    recorded frames it names, stitched offline. Guards the whole record -> replay path."""
    config = make_config(cameras=2, camera={"fps": 10.0, "idle_timeout": 1.0}, stitch={"stale_after": 1.0})
    names = [c.name for c in config.camera]
    live = start_rig(config, children, run_grabber)
    rec = tmp_path / "rec"
    proc = start_recorder(config, tmp_path / "rig.toml", rec)
    try:
        wait_for(lambda: all(index_lines(rec / f"{n}.idx.csv") >= 20 for n in names), 20, message="20 frames each")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    for p in live:
        children.stop(p)
    # not a terminal: whole progress lines, no carriage returns, and a summary
    assert "\r" not in out and "recording " in out and "recorded " in out, out
    assert f"zmqcam-daemon start -c {rec / REPLAY_CONFIG}" in out

    recording = Recording(rec)
    assert recording.names == names
    manifest = json.loads((rec / MANIFEST).read_text())
    assert manifest["ended_ns"] and manifest["span"]["first_ns"] == recording.span().first_ns
    recorded: dict[str, list[bytes]] = {}
    captured: dict[str, list[int]] = {}
    for name in names:
        with recording.track(name) as track:
            frames = read_all(track)
            assert track.damaged == 0 and len(frames) >= 20
            assert all(f[:2] == b"\xff\xd8" and f[-2:] == b"\xff\xd9" for f in frames)
            seqs = [e.seq for e in track.entries]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            gaps = np.diff([e.capture_ns for e in track.entries]) / 1e6
            assert 90 < np.median(gaps) < 110, gaps  # 10 fps, as the rig captured it
            assert all(e.recv_ns >= e.capture_ns for e in track.entries)
            recorded[name], captured[name] = frames, [e.capture_ns for e in track.entries]
        # common tools open the video: OpenCV's FFmpeg backend reads every frame of it
        cap = cv2.VideoCapture(str(rec / f"{name}.mjpeg"), cv2.CAP_FFMPEG)
        count = 0
        while cap.read()[0]:
            count += 1
        cap.release()
        assert count == len(recorded[name])

    # the replay: the recorder's own replay.toml, through the validator a user's start goes through;
    # grabbers playing the recording, a stitcher, and a second recorder on the replay
    rconfig = load_config(rec / REPLAY_CONFIG)
    assert [(c.name, c.source_kind, c.source) for c in rconfig.camera] == [
        (n, "replay", str((rec / f"{n}.mjpeg").resolve())) for n in names
    ]
    start_rig(rconfig, children, run_grabber, stitcher=True)
    ctx: zmq.Context[Any] = zmq.Context()
    panoramas = []
    stop = threading.Event()
    with Recorder(rconfig, tmp_path / "replayed", names, ctx) as again:
        worker = threading.Thread(target=again.run, args=(stop, 2.0))
        worker.start()
        try:
            # the recorder is subscribed before the stitcher wakes the cameras, so it sees frame 1
            wait_for(lambda: all(again.writer.frames(n) for n in names), 10, message="replayed frames")
            with Subscriber("pano", config=rconfig) as sub:
                while worker.is_alive():
                    ok, frame = sub.read(timeout=0.5)
                    if ok and not frame.extra["stale"]:
                        panoramas.append((frame.seq, frame.extra["sources"], frame.image.copy()))
        finally:
            stop.set()
            worker.join()
    ctx.term()

    replayed = Recording(tmp_path / "replayed")
    for name in names:
        with replayed.track(name) as track:
            frames = read_all(track)
            entries = track.entries
        n = len(recorded[name])
        assert len(frames) >= 15, name
        # the grabber numbers replayed frames 1, 2, ...: frame s is recorded frame s-1, nothing skipped
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert all(f == recorded[name][i % n] for i, f in enumerate(frames)), f"{name}: replayed bytes differ"
        # timestamps: replay start + recorded offsets, exactly; delivered on that schedule, never
        # ahead of it (how far behind on a loaded machine is a figure, not a promise)
        t0, r0 = entries[0].capture_ns, captured[name][0]
        for i, e in enumerate(entries[: n - 1]):
            assert abs((e.capture_ns - t0) - (captured[name][i] - r0)) < 1_000_000, (name, i)
            assert 0 <= e.recv_ns - e.capture_ns < REPLAY_LAG_NS, (name, i, (e.recv_ns - e.capture_ns) / 1e6)
    # the rig's relative timing: the cameras' first frames are as far apart as when recorded
    first = {n: Track(rec / f"{n}.mjpeg") for n in names}
    try:
        skew_recorded = first["cam1"].entries[0].capture_ns - first["cam0"].entries[0].capture_ns
    finally:
        for t in first.values():
            t.close()
    with replayed.track("cam0") as t0_, replayed.track("cam1") as t1_:
        skew_replayed = t1_.entries[0].capture_ns - t0_.entries[0].capture_ns
    # each grabber starts its replay when it wakes, so the two starts differ by how soon each grabber
    # process ran after the stitcher's subscription: milliseconds idle, more on a loaded machine
    assert abs(skew_replayed - skew_recorded) < REPLAY_LAG_NS, (skew_recorded / 1e6, skew_replayed / 1e6)

    # the panoramas: each equals the recorded frames it names, decoded and stitched offline
    composer = PanoramaComposer(config.stitched_cameras)
    seqs = [p[0] for p in panoramas]
    assert seqs == sorted(seqs)
    compared = 0
    for _, used, image in panoramas:
        by_name = {s["name"]: s["seq"] for s in used}
        frames_used = [recorded[n][(by_name[n] - 1) % len(recorded[n])] for n in names]
        expected = composer.compose([decode(f) for f in frames_used])
        assert np.array_equal(image, expected), f"panorama from {by_name} differs from the recording stitched"
        compared += 1
    assert compared >= 5, f"only {compared} live panoramas compared"


def test_recorder_survives_a_camera_dropping_out_and_a_kill_leaves_a_valid_prefix(
    make_config: Callable[..., Config], children: Children, tmp_path: Path
) -> None:
    """A grabber killed mid-recording: the recorder says so, keeps recording the other camera and
    picks the camera up again when it returns. SIGKILLing the recorder itself leaves files whose
    every indexed frame is a whole JPEG (the replay span is then measured, not read)."""
    config = make_config(cameras=2, camera={"fps": 10.0, "idle_timeout": 1.0})
    procs = start_rig(config, children, run_grabber)
    rec = tmp_path / "rec"
    proc = start_recorder(config, tmp_path / "rig.toml", rec)
    try:
        wait_for(lambda: index_lines(rec / "cam1.idx.csv") >= 5, 20, message="cam1 recording")
        os.kill(procs[1].pid, signal.SIGKILL)
        before = index_lines(rec / "cam1.idx.csv")
        time.sleep(2.2)  # LOST_AFTER (2 s) and a poll
        children.start(run_grabber, config, "cam1")
        wait_for(lambda: index_lines(rec / "cam1.idx.csv") >= before + 3, 20, message="cam1 back")
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "cam1: no frames for" in out and "cam1: frames again" in out, out
    recording = Recording(rec)
    assert "span" not in recording.manifest  # killed: the manifest was never finished
    assert recording.span() is not None
    with recording.track("cam0") as cam0, recording.track("cam1") as cam1:
        for track in (cam0, cam1):
            assert all(f[:2] == b"\xff\xd8" and f[-2:] == b"\xff\xd9" for f in read_all(track))
        seqs = [e.seq for e in cam1.entries]
        restart = next(i for i in range(1, len(seqs)) if seqs[i] < seqs[i - 1])  # the new grabber counts from 1
        gone, back = cam1.entries[restart - 1].capture_ns, cam1.entries[restart].capture_ns
        assert back - gone > 2_000_000_000
        # cam0 went on at its 10 fps meanwhile
        assert sum(gone < e.capture_ns < back for e in cam0.entries) >= (back - gone) / 1e8 - 2


# ---------------------------------------------------------------------------------------------
# the format and the replay source, without processes


def jpeg_of(value: int, size: tuple[int, int] = (32, 24)) -> bytes:
    image = np.full((size[1], size[0], 3), value, np.uint8)
    return simplejpeg.encode_jpeg(image, quality=90, colorspace="BGR")


def write_recording(
    out: Path, config: Config, times_ms: dict[str, list[float]], t0_ns: int = 1_700_000_000_000_000_000
) -> dict[str, list[bytes]]:
    """A recording with frames at the given times (ms after ``t0_ns``); returns each camera's JPEGs."""
    written: dict[str, list[bytes]] = {}
    writer = RecordingWriter(out, config, list(times_ms))
    for name, times in times_ms.items():
        written[name] = []
        for i, ms in enumerate(times):
            jpeg = jpeg_of(10 * i + 5)
            capture_ns = t0_ns + int(ms * 1e6)
            writer.write(name, jpeg, i + 1, capture_ns, capture_ns + 1000, 32, 24)
            written[name].append(jpeg)
    writer.close()
    return written


def replay_source(config: Config, rec: Path, name: str, **update: Any) -> ReplaySource:
    cam = config.camera_named(name).model_copy(update={"kind": "replay", "source": str(rec), **update})
    return ReplaySource(cam)


def test_replay_source_keeps_the_rig_timing_gaps_and_loop_period(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """Each frame is due at open + its offset from the rig's first frame (any camera), gaps included;
    capture_ns is that due time; a loop starts one interval after the rig's last frame."""
    config = make_config(cameras=2)
    times = {"cam0": [0, 50, 100, 150], "cam1": [120, 170, 420]}  # cam1 starts late and has a gap
    written = write_recording(tmp_path / "rec", config, times)
    for name in ("cam0", "cam1"):
        source = replay_source(config, tmp_path / "rec", name)
        source.open(1.0)
        try:
            opened, opened_ns = time.monotonic(), time.time_ns()
            got = []
            for _ in range(len(times[name]) + 1):  # one more: the start of the second loop
                frame = source.read(1.0)
                got.append((time.monotonic() - opened, frame))
        finally:
            source.close()
        # the period: 420 ms span + the median interval (50 ms)
        expected_ms = [*times[name], 470 + times[name][0]]
        first_ns = got[0][1].capture_ns
        # the schedule starts at open(): before open() returned, and not long before
        started_ns = first_ns - expected_ms[0] * 1_000_000
        assert 0 <= opened_ns - started_ns < 1e9, (name, (opened_ns - started_ns) / 1e6)
        for (elapsed, frame), ms, jpeg in zip(got, expected_ms, [*written[name], written[name][0]], strict=True):
            assert frame.is_jpeg and frame.data == jpeg and (frame.width, frame.height) == (32, 24)
            # never ahead of its due time (how far behind on a loaded machine is the benchmark's business)
            assert elapsed >= ms / 1000 - 0.005, (name, ms, elapsed)
            # capture_ns is the due time: the recorded offsets exactly (a replay more than a second
            # late starts its schedule over, which no machine running this test is)
            assert frame.capture_ns - first_ns == (ms - expected_ms[0]) * 1_000_000, (name, ms)


def test_replay_source_end_close_and_damage(make_config: Callable[..., Config], tmp_path: Path) -> None:
    """Without loop the end is a SourceError; close() ends a long recorded gap at once; a recording
    directory works as the source; bytes that are not a JPEG are a CorruptFrame, not a crash."""
    config = make_config(cameras=1)
    write_recording(tmp_path / "rec", config, {"cam0": [0, 30_000]})
    source = replay_source(config, tmp_path / "rec", "cam0", loop=False)
    source.open(1.0)
    source.read(1.0)
    closer = threading.Timer(0.3, source.close)
    closer.start()
    t0 = time.monotonic()
    with pytest.raises(SourceError):
        source.read(1.0)  # waiting out the 30 s gap
    assert time.monotonic() - t0 < 2.0
    closer.join()

    write_recording(tmp_path / "short", config, {"cam0": [0, 10]})
    source = replay_source(config, tmp_path / "short", "cam0", loop=False)
    source.open(1.0)
    source.read(1.0)
    source.read(1.0)
    with pytest.raises(SourceError, match="end of recording"):
        source.read(1.0)
    source.close()

    with (tmp_path / "short" / "cam0.mjpeg").open("r+b") as f:
        f.write(b"XX")  # the first frame's SOI
    source = replay_source(config, tmp_path / "short", "cam0")
    source.open(1.0)
    with pytest.raises(CorruptFrame):
        source.read(1.0)
    assert source.read(1.0).data[:2] == b"\xff\xd8"
    source.close()

    with pytest.raises(SourceError, match="no such file"):
        replay_source(config, tmp_path / "nothing", "cam0").open(1.0)


def test_a_torn_recording_reads_as_its_valid_prefix(make_config: Callable[..., Config], tmp_path: Path) -> None:
    """What a recorder killed mid-frame leaves: half a JPEG after the last indexed one, and half an
    index line (or a line whose bytes never reached the video). The reader returns the frames before."""
    config = make_config(cameras=1)
    written = write_recording(tmp_path / "rec", config, {"cam0": [0, 100, 200, 300]})["cam0"]
    video, index = tmp_path / "rec" / "cam0.mjpeg", tmp_path / "rec" / "cam0.idx.csv"
    size = video.stat().st_size
    with video.open("ab") as f:
        f.write(jpeg_of(200)[:100])
    with index.open("a") as f:
        f.write(f"{size},5000,5,1,1,32,24\n")  # names bytes that are not there
        f.write(f"{size},100,6,1,")  # torn
    with Track(video) as track:
        assert read_all(track) == written
        assert track.damaged == 1
    assert index.read_text().startswith(INDEX_HEADER + "\n")


def test_record_user_errors_are_one_line(make_config: Callable[..., Config], tmp_path: Path, capsys: Any) -> None:
    """Unknown cameras, a bad duration and a directory that already holds a recording: exit 1, one line."""
    config = make_config(cameras=2)
    cfg = str(write_config(config, tmp_path / "rig.toml"))
    write_recording(tmp_path / "old", config, {"cam0": [0]})
    cases = [
        (["--cameras", "cam0,cam9"], "cam9"),
        (["--duration", "-1"], "--duration"),
        ([], "already holds a recording"),
    ]
    for extra, expected in cases:
        assert cli_main(["record", "-c", cfg, *extra, str(tmp_path / "old")]) == 1
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_progress_redraws_in_place_only_on_a_terminal() -> None:
    """On a terminal the progress line is redrawn with \\r; elsewhere it is whole lines, at most one per interval."""
    tty, log = io.StringIO(), io.StringIO()
    for stream, is_tty in ((tty, True), (log, False)):
        progress = Progress(stream, tty=is_tty, interval=1.0)
        progress.update("a", 0.0)
        progress.update("b", 0.5)  # too soon
        progress.update("c", 1.0)
        progress.note("cam1: lost")
    assert tty.getvalue().startswith("\ra\rc") and tty.getvalue().endswith("cam1: lost\n")
    assert log.getvalue() == "a\nc\ncam1: lost\n"


# ---------------------------------------------------------------------------------------------
# through the daemon, once the replay kind is registered


def test_daemon_started_with_replay_toml_serves_the_recording(
    make_config: Callable[..., Config], tmp_path: Path
) -> None:
    """`zmqcam-daemon start -c OUT_DIR/replay.toml` (written by the recorder) runs the rig from the
    recording: panoramas come, with every camera live, equal to the recorded frames stitched."""
    config = make_config(cameras=2, camera={"fps": 10.0}, http={"enabled": False})
    rec = tmp_path / "rec"
    writer = RecordingWriter(rec, config, ["cam0", "cam1"])
    offsets = scene_offsets(config)
    recorded: dict[str, list[bytes]] = {}
    for cam in config.camera:
        synthetic = SyntheticSource(cam, scene_offset=offsets[cam.name])
        recorded[cam.name] = []
        for i in range(20):
            jpeg = simplejpeg.encode_jpeg(synthetic.render(1000.0 + i / 10), quality=80, colorspace="BGR")
            t = 1_700_000_000_000_000_000 + i * 100_000_000
            writer.write(cam.name, jpeg, i + 1, t, t, 640, 480)
            recorded[cam.name].append(jpeg)
    writer.close()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "zmqcam.cli", "start", "-c", str(rec / REPLAY_CONFIG)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        composer = PanoramaComposer(config.stitched_cameras)
        with Subscriber("pano", config=config) as sub:
            compared = 0
            deadline = time.monotonic() + 30
            while compared < 3 and time.monotonic() < deadline:
                ok, frame = sub.read(timeout=1.0)
                if not ok or frame.extra["stale"]:
                    continue
                used = {s["name"]: s["seq"] for s in frame.extra["sources"]}
                frames = [decode(recorded[n][(used[n] - 1) % 20]) for n in ("cam0", "cam1")]
                assert np.array_equal(frame.image, composer.compose(frames))
                compared += 1
        assert compared == 3
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.communicate()
