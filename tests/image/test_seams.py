"""Seams and exposure in the composer (zmqcam.image.blend, zmqcam.image.exposure), in-process on the
rendered conveyor scene seen through its true geometry: four cameras, each with its own gain and colour
cast, neighbours overlapping. A feathered seam shows no step where a cut shows the cameras' difference;
gain compensation makes neighbours agree where `off` leaves them apart by the injected gains, follows
a light change smoothly; `cut` with `off` is the plain remap, byte for byte, and stays the default
without overlaps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests.helpers import ROOT
from tests.helpers.rig import neutral, scene_config_dict
from zmqcam.config import Config, from_dict, load_config
from zmqcam.errors import ConfigError
from zmqcam.image.blend import seam_bands
from zmqcam.image.exposure import TIME_CONSTANT
from zmqcam.image.remap import PanoramaComposer, slot_map_for
from zmqcam.testing.scene import Scene

#: a step across seam columns this many times smaller than the cut's counts as "no visible step"
FEATHER_VS_CUT = 0.35
#: neighbours agree within this many grey levels once the gains have settled
AGREE_LEVELS = 2.0


class Rig:
    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.config: Config = from_dict(scene_config_dict(scene.cameras))
        self.cameras = self.config.stitched_cameras
        self.frames = self.frames_of(scene)
        reference = PanoramaComposer(self.cameras)
        #: the belt as gain-1, cast-free cameras stitch it: what each camera's gain is measured against
        self.truth = reference.compose(self.frames_of(neutral(scene))).copy()
        self.slots = reference.slots

    def frames_of(self, scene: Scene) -> list[np.ndarray]:
        frames = scene.frames(0)
        return [frames[c.name] for c in self.cameras]

    def composer(self, **options: object) -> PanoramaComposer:
        return PanoramaComposer(self.cameras, **options)  # type: ignore[arg-type]

    def mismatch(self, pano: np.ndarray, k: int) -> np.ndarray:
        """Per channel, in grey levels: how much brighter camera k shows the belt than camera k+1,
        next to their seam (40 columns each side, outside the band), measured against the truth."""
        seam = self.slots[k].x1
        left, right = slice(seam - 60, seam - 20), slice(seam + 20, seam + 60)
        level = self.truth[:, seam - 60 : seam + 60].reshape(-1, 3).mean(0)

        def gain(cols: slice) -> np.ndarray:
            return pano[:, cols].reshape(-1, 3).mean(0) / self.truth[:, cols].reshape(-1, 3).mean(0)

        return (gain(left) - gain(right)) * level

    def settled(self, composer: PanoramaComposer, frames: list[np.ndarray], seconds: float = 5.0) -> np.ndarray:
        pano = composer.compose(frames, now=0.0)
        for step in range(1, int(seconds * 10) + 1):
            pano = composer.compose(frames, now=step / 10)
        return pano


def step_at(pano: np.ndarray, column: int) -> float:
    """Mean absolute difference between two neighbouring columns, ``column - 1`` and ``column``."""
    return float(np.abs(pano[:, column].astype(np.float64) - pano[:, column - 1]).mean())


@pytest.fixture(scope="module")
def rig() -> Rig:
    return Rig(Scene())


def test_defaults_follow_the_overlaps(rig: Rig) -> None:
    """A calibrated config (with overlaps) feathers and matches gains by default; the original
    cameras_config.json, which has none, keeps the hard cut and the cameras' own exposure."""
    assert (rig.config.seam_mode, rig.config.exposure_mode, rig.config.stitch.sync) == ("feather", "gain", True)
    original = load_config(ROOT / "config" / "cameras_config.json")
    assert not original.has_overlaps
    assert (original.seam_mode, original.exposure_mode) == ("cut", "off")
    with pytest.raises(ConfigError, match=r"stitch\.seam"):
        from_dict({**scene_config_dict(rig.scene.cameras), "stitch": {"seam": "blend"}})


def test_cut_is_the_plain_remap_byte_for_byte(rig: Rig) -> None:
    """`cut` with `off` (and the composer's default) is each slot's remap, as before seams existed; a
    feather changes only the bands' columns, not one byte elsewhere."""
    height = rig.config.pano_size[1]
    plain = np.concatenate(
        [
            slot_map_for(cam).apply(frame, np.empty((height, slot.x1 - slot.x0, 3), np.uint8))
            for cam, slot, frame in zip(rig.cameras, rig.slots, rig.frames, strict=True)
        ],
        axis=1,
    )
    assert np.array_equal(rig.composer().compose(rig.frames), plain)
    assert np.array_equal(rig.composer(seam="cut", exposure="off").compose(rig.frames), plain)
    feathered = rig.composer(seam="feather").compose(rig.frames)
    outside = np.ones(plain.shape[1], bool)
    for band in seam_bands(rig.cameras, rig.slots, 32):
        outside[band.x0 : band.x1] = False
    assert np.array_equal(feathered[:, outside], plain[:, outside])
    assert not np.array_equal(feathered, plain)


def test_feather_leaves_no_step_at_the_seams(rig: Rig) -> None:
    """Across each seam's columns a cut shows the cameras' difference (a step several times the belt's
    own texture from column to column); feathered, the step is gone."""
    cut = rig.composer(seam="cut").compose(rig.frames).copy()
    feathered = rig.composer(seam="feather").compose(rig.frames).copy()
    for slot in rig.slots[:-1]:
        seam = slot.x1
        assert step_at(feathered, seam) < FEATHER_VS_CUT * step_at(cut, seam), seam


def test_band_width_is_feather_px_capped_by_the_overlap(rig: Rig) -> None:
    overlaps = [c.overlap for c in rig.cameras[:-1]]
    assert all(o is not None and o >= 32 for o in overlaps)
    assert [b.width for b in seam_bands(rig.cameras, rig.slots, 32)] == [32, 32, 32]
    assert [b.width for b in seam_bands(rig.cameras, rig.slots, 8)] == [8, 8, 8]
    assert [b.width for b in seam_bands(rig.cameras, rig.slots, 1000)] == overlaps
    for band in seam_bands(rig.cameras, rig.slots, 32):
        assert band.x0 < band.seam < band.x1 and band.seam == rig.slots[band.left].x1


def test_gain_makes_neighbours_agree(rig: Rig) -> None:
    """With `off` neighbours differ near each seam by the gains and casts the scene gave them; after a
    few seconds of `gain` they agree within a couple of levels, in every channel."""
    off = rig.composer(seam="feather", exposure="off").compose(rig.frames).copy()
    gained = rig.settled(rig.composer(seam="feather", exposure="gain"), rig.frames)
    cams = rig.scene.cameras
    for k in range(len(cams) - 1):
        injected = np.array(cams[k].cast) * cams[k].gain - np.array(cams[k + 1].cast) * cams[k + 1].gain
        level = rig.truth[:, rig.slots[k].x1 - 60 : rig.slots[k].x1 + 60].reshape(-1, 3).mean(0)
        assert np.allclose(rig.mismatch(off, k), injected * level, atol=3.0), k
        assert np.abs(injected * level).max() > 10
        assert np.abs(rig.mismatch(gained, k)).max() <= AGREE_LEVELS, (k, rig.mismatch(gained, k))


def test_a_light_change_is_followed_without_flicker(rig: Rig) -> None:
    """cam1's exposure jumps (its auto exposure reacted to something): the gains move to the new
    solution monotonically, in every channel, without overshoot, most of the way within 3 time
    constants; neighbours agree again."""
    composer = rig.composer(seam="feather", exposure="gain")
    rig.settled(composer, rig.frames)
    assert composer.gains is not None
    brighter = Scene([replace(c, gain=c.gain * 1.3) if c.name == "cam1" else c for c in rig.scene.cameras])
    frames = rig.frames_of(brighter)
    history = [composer.gains.gains.copy()]
    pano = None
    for step in range(1, 61):  # 6 s at 10 panoramas a second
        pano = composer.compose(frames, now=5.0 + step / 10)
        history.append(composer.gains.gains.copy())
    gains = np.array(history)  # time x camera x channel
    moves = np.diff(gains, axis=0)
    total = gains[-1] - gains[0]
    assert np.abs(total[1]).min() > 0.1  # cam1's gains came down by the 1.3 it went up
    for cam in range(gains.shape[1]):
        for channel in range(3):
            direction = np.sign(total[cam, channel])
            assert (moves[:, cam, channel] * direction >= -1e-9).all(), (cam, channel)  # never back
    after = int(3 * TIME_CONSTANT * 10)
    assert (np.abs(gains[after] - gains[-1]) <= 0.1 * np.abs(total) + 1e-3).all()
    assert pano is not None
    for k in range(3):
        assert np.abs(rig.mismatch(pano, k)).max() <= AGREE_LEVELS + 1.0


def test_a_missing_camera_holds_the_gains_and_cuts_its_seams(rig: Rig) -> None:
    """cam2 drops out: its slot is NO SIGNAL, untouched by gains or feathering, and the others keep
    the gains they had (no drift back to 1 for lack of a neighbour)."""
    composer = rig.composer(seam="feather", exposure="gain")
    rig.settled(composer, rig.frames)
    assert composer.gains is not None
    before = composer.gains.gains.copy()
    frames: list[np.ndarray | None] = list(rig.frames)
    frames[2] = None
    for step in range(30):
        pano = composer.compose(frames, now=10.0 + step / 10)
    assert np.array_equal(pano[:, rig.slots[2].x0 : rig.slots[2].x1], composer.card(2))
    assert np.allclose(composer.gains.gains, before, atol=1e-6)


def test_without_overlaps_asking_for_seams_and_gains_uses_the_columns_at_hand(rig: Rig) -> None:
    """The same rig with its overlaps left out of the config (a hand-written one): cut and off by
    default; `gain` asked for compares the columns on each side of each seam and takes most of the
    cameras' difference away (rougher than with overlaps: the columns show neighbouring belt, not the
    same); `feather` asked for blends across the crop margins."""
    data = scene_config_dict(rig.scene.cameras)
    for table in data["camera"]:
        table.pop("overlap", None)
    config = from_dict(data)
    assert (config.seam_mode, config.exposure_mode) == ("cut", "off")
    cameras = config.stitched_cameras

    def total_mismatch(pano: np.ndarray) -> float:
        return sum(float(np.abs(rig.mismatch(pano, k)).sum()) for k in range(len(cameras) - 1))

    off = PanoramaComposer(cameras).compose(rig.frames).copy()
    gained = rig.settled(PanoramaComposer(cameras, exposure="gain"), rig.frames)
    assert total_mismatch(gained) < 0.25 * total_mismatch(off)
    feathered = PanoramaComposer(cameras, seam="feather").compose(rig.frames)
    for slot in rig.slots[:-1]:
        assert step_at(feathered, slot.x1) < FEATHER_VS_CUT * step_at(off, slot.x1)
