"""The one-remap-per-camera stitcher (zmqcam.image.remap) against the original rotate/warp/crop/hconcat pipeline."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from zmqcam.config import CameraConfig, default_config
from zmqcam.image.cards import NO_SIGNAL_COLOR, no_signal_card
from zmqcam.image.remap import PanoramaComposer, build_slot_map, camera_view_map, slot_map_for
from zmqcam.testing.reference import original_pipeline

# the tolerance of the fixed-point remap against warpPerspective (README, "How it works", the bullet
# "Stitching is one `cv2.remap` per camera")
MAX_DIFF = 3
MEAN_DIFF = 0.5


def photo(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients, soft-edged shapes and text, slightly blurred like a
    real lens. (Uniform noise would make any two interpolations differ by up to 255 and prove nothing.)"""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    planes = [128 + 90 * np.sin(xx / (60 + 20 * c) + c) * np.cos(yy / (50 + 15 * c) - 2 * c) for c in range(3)]
    img = np.clip(np.stack(planes, axis=-1), 0, 255).astype(np.uint8)
    for _ in range(20):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(8, width // 6)), int(rng.integers(8, height // 6)))
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, color, -1, cv2.LINE_AA)
    scale = width / 320
    cv2.putText(img, f"CAM {seed} 12:34", (width // 10, height // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255,) * 3, 3)
    return cv2.GaussianBlur(img, (0, 0), 1.5)


def assert_close(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    diff = np.abs(ours.astype(np.int16) - reference.astype(np.int16))
    assert diff.max() <= MAX_DIFF, f"max abs difference {diff.max()}"
    assert diff.mean() < MEAN_DIFF, f"mean abs difference {diff.mean():.3f}"


def is_convex(quad: list[list[float]]) -> bool:
    crosses = []
    for k in range(4):
        (ax, ay), (bx, by), (cx, cy) = quad[k], quad[(k + 1) % 4], quad[(k + 2) % 4]
        crosses.append((bx - ax) * (cy - by) - (by - ay) * (cx - bx))
    return all(c > 1 for c in crosses) or all(c < -1 for c in crosses)


def camera(rotate: int = 0, size: tuple[int, int] = (640, 480), **kw) -> CameraConfig:
    return CameraConfig.model_validate({"name": "a", "rotate": rotate, "size": list(size), **kw})


# an asymmetric quad (no symmetry could hide a swapped axis or corner) inside a 480x480 region, so it
# fits the rotated frame of a 640x480 camera for every rotation
QUAD = [[20.0, 35.0], [45.0, 410.0], [450.0, 372.0], [430.0, 12.0]]


def test_default_deployment_matches_original_pipeline():
    """Regression: the composed map (rotation, homography and crop folded into one remap) must give the
    panorama of the original pipeline for the original 4-camera geometry, black borders included."""
    cams = default_config().stitched_cameras
    frames = [photo(seed=i) for i in range(len(cams))]
    pano = PanoramaComposer(cams).compose(frames)
    reference = original_pipeline(frames, cams)
    assert pano.shape == (250, 2347, 3)
    assert_close(pano, reference)


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_rotation_matches_cv2_rotate(rotate):
    """Regression: each rotation's inverse in the map (90 = clockwise, 270 = counter-clockwise) must be
    exactly cv2.rotate's, on a non-square frame with an asymmetric quad and a crop."""
    cam = camera(rotate, perspective={"src": QUAD, "width": 500, "height": 260}, crop={"front": 15, "back": 470})
    frame = photo(seed=rotate)
    assert_close(PanoramaComposer([cam]).compose([frame]), original_pipeline([frame], [cam]))


@pytest.mark.parametrize("rotate", [90, 270])
def test_rotation_without_perspective_uses_the_rotated_frame(rotate):
    """Regression: with no perspective the geometry is the whole *rotated* frame (480x640 for a 640x480
    camera turned 90 degrees), not the configured size."""
    cam = camera(rotate)
    frame = photo(seed=3)
    pano = PanoramaComposer([cam]).compose([frame])
    assert pano.shape == (640, 480, 3)
    assert_close(pano, original_pipeline([frame], [cam]))
    # and with no perspective it is a plain rotation, pixel for pixel
    code = cv2.ROTATE_90_CLOCKWISE if rotate == 90 else cv2.ROTATE_90_COUNTERCLOCKWISE
    assert np.array_equal(pano, cv2.rotate(frame, code))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rotate=st.sampled_from([0, 90, 180, 270]),
    jitter=st.lists(st.floats(-40, 40), min_size=8, max_size=8),
    width=st.integers(80, 260),
    height=st.integers(60, 200),
    crop=st.tuples(st.floats(0, 0.45), st.floats(0.55, 1.0)),
)
def test_any_geometry_matches_original_pipeline(rotate, jitter, width, height, crop):
    """Property: for any rotation, any convex quad (a jittered rectangle), output size and crop, the
    composed map agrees with the original pipeline (small 200x160 frames keep this fast)."""
    fw, fh = 200, 160
    rw, rh = (fh, fw) if rotate in (90, 270) else (fw, fh)
    corners = [(50, 45), (50, rh - 45), (rw - 50, rh - 45), (rw - 50, 45)]
    src = [[float(x + jitter[2 * k]), float(y + jitter[2 * k + 1])] for k, (x, y) in enumerate(corners)]
    assume(is_convex(src))  # the config rejects anything else
    front, back = int(crop[0] * width), max(int(crop[1] * width), int(crop[0] * width) + 1)
    cam = camera(
        rotate,
        size=(fw, fh),
        perspective={"src": src, "width": width, "height": height},
        crop={"front": front, "back": back},
    )
    frame = photo(fw, fh, seed=1)
    assert_close(PanoramaComposer([cam]).compose([frame]), original_pipeline([frame], [cam]))


def test_slot_map_writes_in_place_into_a_column_view():
    """Regression: cv2.remap(dst=pano[:, x0:x1]) must fill the panorama itself. A column slice is not
    contiguous; if OpenCV reallocated instead, the panorama would silently stay black."""
    cam = default_config().stitched_cameras[2]
    frame = photo(seed=7)
    smap = slot_map_for(cam)
    pano = np.zeros((250, 1000, 3), np.uint8)
    view = pano[:, 100 : 100 + smap.out_size[0]]
    assert not view.flags["C_CONTIGUOUS"]
    out = smap.apply(frame, view)
    assert out is view
    contiguous = cv2.remap(frame, smap.map1, smap.map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    assert np.array_equal(pano[:, 100 : 100 + smap.out_size[0]], contiguous)
    assert not pano[:, :100].any() and not pano[:, 100 + smap.out_size[0] :].any()


def test_compose_returns_the_same_buffer():
    """The documented contract: one preallocated panorama, overwritten by every compose (no per-frame
    allocation, no hconcat copy)."""
    cams = default_config().stitched_cameras
    composer = PanoramaComposer(cams)
    first = composer.compose([photo(seed=i) for i in range(4)])
    before = first.copy()
    second = composer.compose([photo(seed=i + 10) for i in range(4)])
    assert second is first is composer.panorama
    assert not np.array_equal(second, before)
    assert [(s.name, s.x0, s.x1) for s in composer.slots] == [
        ("cam0", 0, 632),
        ("cam1", 632, 1157),
        ("cam2", 1157, 1652),
        ("cam3", 1652, 2347),
    ]
    assert composer.size == default_config().pano_size


@pytest.mark.parametrize("frame_size", [(320, 240), (800, 600), (1280, 720)])
def test_frame_of_another_size_rebuilds_the_map(frame_size, caplog):
    """Regression: a camera that switches resolution must not crash the stitcher nor be sampled with the
    old map; its quad (in pixels of the configured size) is rescaled, which is what the original
    pipeline gives with the scaled quad. Logged once, not once per frame."""
    cams = default_config().stitched_cameras
    composer = PanoramaComposer(cams)
    w, h = frame_size
    frames = [photo(seed=0), photo(w, h, seed=1), photo(seed=2), photo(seed=3)]
    with caplog.at_level(logging.INFO, logger="zmqcam.image.remap"):
        pano = composer.compose(frames).copy()
        composer.compose(frames)
    assert sum("cam1" in r.getMessage() and f"{w}x{h}" in r.getMessage() for r in caplog.records) == 1
    # the reference: the original pipeline with cam1's quad scaled by new / configured size
    sx, sy = w / 640, h / 480
    geo = cams[1].geometry
    scaled = cams[1].model_copy(
        update={"perspective": geo.model_copy(update={"src": [[x * sx, y * sy] for x, y in geo.src]})}
    )
    reference = original_pipeline(frames, [cams[0], scaled, cams[2], cams[3]])
    assert_close(pano, reference)
    # back to the configured size: the original map, still right
    frames[1] = photo(seed=1)
    assert_close(composer.compose(frames), original_pipeline(frames, cams))


def test_missing_frame_shows_no_signal_card():
    """Regression: a camera without a frame shows its NO SIGNAL card in its slot (replacing whatever
    the slot showed before) and leaves every other slot exactly as it would be."""
    cams = default_config().stitched_cameras
    composer = PanoramaComposer(cams)
    frames = [photo(seed=i) for i in range(4)]
    full = composer.compose(frames).copy()
    pano = composer.compose([frames[0], None, frames[2], frames[3]])
    slot = composer.slots[1]
    card = pano[:, slot.x0 : slot.x1]
    assert np.array_equal(card, no_signal_card(slot.x1 - slot.x0, 250, "cam1"))
    # a dark grey card with light text on it
    assert np.mean(np.all(card == NO_SIGNAL_COLOR, axis=-1)) > 0.7
    assert (card.max(axis=-1) > 150).sum() > 500
    assert np.array_equal(pano[:, : slot.x0], full[:, : slot.x0])
    assert np.array_equal(pano[:, slot.x1 :], full[:, slot.x1 :])
    # and the camera coming back replaces the card
    assert np.array_equal(composer.compose(frames), full)


def test_unusable_frames_do_not_crash(caplog):
    """Regression: whatever a decoder hands over (grey, BGRA, float, empty), compose must not raise:
    grey and BGRA are converted, the rest shows NO SIGNAL."""
    cams = default_config().stitched_cameras
    composer = PanoramaComposer(cams)
    bgr = photo(seed=0)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    with caplog.at_level(logging.WARNING, logger="zmqcam.image.remap"):
        pano = composer.compose([grey, cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), bgr.astype(np.float32), bgr[:0]])
    reference = original_pipeline([cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), bgr, bgr, bgr], cams)
    for i in (0, 1):
        s = composer.slots[i]
        assert_close(pano[:, s.x0 : s.x1], reference[:, s.x0 : s.x1])
    for i in (2, 3):
        s = composer.slots[i]
        assert np.array_equal(pano[:, s.x0 : s.x1], composer.card(i))
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2


def test_view_map_inverts_the_slot_map():
    """Regression (synthetic cameras): camera_view_map is the forward direction of build_slot_map, so
    a panorama pixel mapped back to the frame and forward again lands where it started."""
    for cam, x0 in zip(default_config().stitched_cameras, (0, 632, 1157, 1652), strict=True):
        geo = cam.geometry
        front, back = cam.crop_range
        mapx, mapy = camera_view_map(cam, (640, 480), x0)
        smap = build_slot_map(cam.rotate, geo.src, geo.width, geo.height, front, back, (640, 480))
        fx, fy = cv2.split(cv2.convertMaps(smap.map1, smap.map2, cv2.CV_32FC2)[0])
        inside = (fx >= 0) & (fx <= 639) & (fy >= 0) & (fy <= 479)
        assert inside.mean() > 0.95
        # sample the view map at the (fractional) frame positions
        px = cv2.remap(mapx, fx, fy, cv2.INTER_LINEAR)[inside]
        py = cv2.remap(mapy, fx, fy, cv2.INTER_LINEAR)[inside]
        ys, xs = np.nonzero(inside)
        assert np.abs(px - (xs + x0)).max() < 0.15
        assert np.abs(py - ys).max() < 0.15


def test_camera_cycling_sizes_stays_bounded(caplog):
    """Regression: a misbehaving stream that changes size every frame must neither grow the map cache
    without bound nor flood the log (one line per camera and size), and stays correct throughout."""
    cam = default_config().stitched_cameras[0]
    composer = PanoramaComposer([cam])
    sizes = [(320 + 16 * k, 240 + 12 * k) for k in range(8)]
    with caplog.at_level(logging.INFO, logger="zmqcam.image.remap"):
        for _ in range(2):
            for w, h in sizes:
                frame = photo(w, h, seed=w)
                pano = composer.compose([frame])
                scaled = cam.model_copy(
                    update={
                        "perspective": cam.geometry.model_copy(
                            update={"src": [[x * w / 640, y * h / 480] for x, y in cam.geometry.src]}
                        )
                    }
                )
                assert_close(pano, original_pipeline([frame], [scaled]))
    assert len(caplog.records) == len(sizes)
    assert len(composer._maps[0]) <= 4
    assert (640, 480) in composer._maps[0]
