"""The synthetic camera: stitching its frames reconstructs the scene, it paces itself, it closes cleanly."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from zmqcam.config import CameraConfig, default_config
from zmqcam.errors import SourceError
from zmqcam.image.remap import PanoramaComposer
from zmqcam.sources.synthetic import SyntheticSource, render_scene, scene_offsets

T = 1_700_000_123.456  # a fixed scene time


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


def covered(composer: PanoramaComposer, frame_sizes: list[tuple[int, int]]) -> np.ndarray:
    """The panorama pixels that every camera fully sees: compose all-white frames, keep what stays
    white, minus a margin where interpolation mixes in the black border."""
    white = composer.compose([np.full((h, w, 3), 255, np.uint8) for w, h in frame_sizes])
    mask = np.all(white == 255, axis=-1).astype(np.uint8)
    return cv2.erode(mask, np.ones((5, 5), np.uint8)).astype(bool)


def test_scene_offsets_are_the_slot_starts():
    """The grabber hands each synthetic camera its slot x0; it must match the composer's slots."""
    config = default_config()
    composer = PanoramaComposer(config.stitched_cameras)
    assert scene_offsets(config) == {s.name: s.x0 for s in composer.slots}
    assert scene_offsets(config) == {"cam0": 0, "cam1": 632, "cam2": 1157, "cam3": 1652}


def test_stitched_synthetic_cameras_reconstruct_the_scene():
    """Regression: the default config's synthetic cameras see the scene through the inverse of their
    rotation and perspective, so the stitched panorama must be the ground-truth scene (up to two
    resamplings) wherever the cameras see it (~37 dB); a slot offset off by 3 px gives ~23 dB, one camera
    not rotated ~18 dB."""
    config = default_config()
    cams = config.stitched_cameras
    offsets = scene_offsets(config)
    sources = [SyntheticSource(c, scene_offset=offsets[c.name]) for c in cams]
    frames = [s.render(T) for s in sources]
    for frame in frames:
        assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8
    composer = PanoramaComposer(cams)
    mask = covered(composer, [(640, 480)] * 4)
    assert mask.mean() > 0.95
    pano = composer.compose(frames)
    truth = render_scene(*config.pano_size, T)
    assert psnr(pano[mask], truth[mask]) > 34
    for slot in composer.slots:  # every camera, not just on average
        m = mask[:, slot.x0 : slot.x1]
        assert psnr(pano[:, slot.x0 : slot.x1][m], truth[:, slot.x0 : slot.x1][m]) > 33
    # the scene moves: a tenth of a second later it is measurably different
    assert psnr(render_scene(*config.pano_size, T + 0.1), truth) < 30


@pytest.mark.parametrize("rotate", [90, 270])
def test_rotated_synthetic_camera_reconstructs_the_scene(rotate):
    """Regression: the forward rotation of the synthetic camera must be the inverse of the stitcher's
    (90 = clockwise), or a camera mounted sideways shows the scene turned or mirrored."""
    cam = CameraConfig(
        name="side",
        rotate=rotate,
        size=[320, 240],
        # the quad leaves a frame corner free for the name / counter overlay, as the default rig's do
        perspective={"src": [[30.0, 40.0], [40.0, 290.0], [200.0, 280.0], [190.0, 30.0]], "width": 250, "height": 250},
    )
    frame = SyntheticSource(cam, scene_offset=400).render(T)
    assert frame.shape == (240, 320, 3)
    composer = PanoramaComposer([cam])
    mask = covered(composer, [(320, 240)])
    pano = composer.compose([frame])
    truth = render_scene(250, 250, T, x_offset=400)
    assert mask.mean() > 0.9
    assert psnr(pano[mask], truth[mask]) > 33


def test_render_scene_is_a_pure_function_of_the_window():
    """Regression: the ground truth must not depend on the window it is rendered in (each camera renders
    its own window); allow only a few anti-aliased edge pixels of shapes a window clips."""
    big = render_scene(1600, 400, T, 0, -100)
    assert np.array_equal(render_scene(1600, 400, T, 0, -100), big)
    for x, y, w, h in [(50, 30, 300, 100), (777, -100, 611, 333), (1234, 0, 50, 250)]:
        part = render_scene(w, h, T, x, y)
        diff = np.abs(part.astype(np.int16) - big[y + 100 : y + 100 + h, x : x + w])
        assert np.count_nonzero(diff.max(axis=-1) > 2) <= 0.001 * w * h


def test_read_paces_to_fps_and_frames_change():
    """Regression: the synthetic camera is the daemon's default; it must never deliver faster than
    its fps, and wait by sleeping, not spinning, with frames that move, each a new array of the
    configured size. (How close to the fps it stays on a busy machine is not a test's business.)"""
    fps = 10.0
    cam = CameraConfig(name="pace", size=[160, 120], fps=fps)
    source = SyntheticSource(cam)
    source.open(1.0)
    try:
        start = time.monotonic()
        cpu = time.thread_time()  # this thread's CPU only: read() waits in the caller's thread
        frames = [source.read(1.0) for _ in range(4)]
        elapsed = time.monotonic() - start
        cpu = time.thread_time() - cpu
    finally:
        source.close()
    waited = 3 / fps  # the first frame at once, then one per interval
    assert elapsed >= waited * 0.95, f"4 frames in {elapsed:.3f} s: faster than {fps:g} fps"
    assert [f.capture_ns for f in frames] == sorted(f.capture_ns for f in frames)
    # it slept: rendering four small frames costs a few ms of CPU, spinning through the waits at
    # least a third of them even when a loaded machine gives this thread a third of a core
    assert cpu < waited / 10, f"{cpu * 1000:.0f} ms of CPU in {elapsed * 1000:.0f} ms: it spun"
    for f in frames:
        assert not f.is_jpeg and (f.width, f.height) == (160, 120) and f.data.shape == (120, 160, 3)
    assert frames[0].data is not frames[1].data
    assert not np.array_equal(frames[0].data, frames[-1].data)
    assert source.frames == 4


def test_close_interrupts_a_waiting_read_and_is_idempotent():
    """Regression: shutdown closes sources from another thread; a slow synthetic camera (0.5 fps) must
    not hold the grabber for its whole frame interval, and close must be safe to repeat."""
    source = SyntheticSource(CameraConfig(name="slow", size=[64, 48], fps=0.5))
    source.open(1.0)
    source.read(1.0)  # the first frame comes at once; the next is due in 2 s
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            source.read(5.0)
        except SourceError as exc:
            errors.append(exc)

    thread = threading.Thread(target=reader)
    start = time.monotonic()
    thread.start()
    time.sleep(0.05)
    source.close()
    thread.join(1.0)
    assert not thread.is_alive() and time.monotonic() - start < 1.0
    assert len(errors) == 1
    source.close()
    with pytest.raises(SourceError):
        source.read(1.0)
    # and it can be opened again
    source.open(1.0)
    assert source.read(1.0).data.shape == (48, 64, 3)
    source.close()


def test_background_is_rendered_once_not_per_frame():
    """Regression: 4 synthetic cameras at 30 fps share a 2-core machine with the stitcher; rendering
    the static background per frame costs ~50 ms, so frames must only copy the cached background
    and draw the moving things. Checked by counting background renders, not by timing (the cost
    itself is measured in scripts/bench.py, where noise cannot fail a test)."""
    from zmqcam.sources import synthetic

    config = default_config()
    cam = config.stitched_cameras[2]  # the widest view of the default rig
    synthetic._background.cache_clear()
    source = SyntheticSource(cam, scene_offset=scene_offsets(config)[cam.name])
    source.open(1.0)
    frames = [source.render(T + k / 30).copy() for k in range(20)]
    source.close()
    info = synthetic._background.cache_info()
    assert info.misses == 1, f"the background was rendered {info.misses} times for 20 frames"
    assert info.hits >= 20
    assert any(not np.array_equal(frames[0], f) for f in frames[1:]), "the moving things did not move"
