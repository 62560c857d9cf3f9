"""Synchronized snapshot capture (``stitch.sync``): four fake ESP32-CAMs answering ``/capture`` after
slightly different delays (as real ones do), stitched by a daemon with and without sync. Without it
each grabber asks one interval after its previous answer, so the cameras drift apart in phase and a
panorama's frames are up to a frame interval apart; with it every grabber asks on the same clock
tick and the panorama's spread shrinks to the cameras' differences in answering. Compared as an
ordering on the same fake cameras, never as an absolute time (the benchmark prints the figures)."""

from __future__ import annotations

import statistics
from pathlib import Path

from zmqcam.stitcher.sync import closest_frames
from zmqcam.testing.spread import capture_spreads, snapshot_fakes

#: synchronized, the median spread is at most this share of the unsynchronized one (measured 0.15-0.25)
SYNC_VS_FREE = 0.5


def test_synchronized_snapshots_are_taken_closer_together(tmp_path: Path) -> None:
    with snapshot_fakes() as fakes:
        free = capture_spreads(tmp_path / "free", fakes, sync=False)
        synced = capture_spreads(tmp_path / "sync", fakes, sync=True)
    assert statistics.median(synced) <= SYNC_VS_FREE * statistics.median(free), (synced, free)


def test_stream_frames_closest_in_capture_time_within_one_interval() -> None:
    """Stream cameras cannot be triggered: the stitcher takes, per camera, the kept frame closest in
    capture time to the newest frame of the camera furthest behind, but never one more than a frame
    interval older than that camera's newest (no more than one interval of added latency)."""
    ms = 1_000_000
    interval = 100 * ms
    # cam0 is furthest behind (newest at 300 ms); cam1's frame at 320 is closer than its newest (390)
    assert closest_frames([[200 * ms, 300 * ms], [220 * ms, 320 * ms, 390 * ms]], [interval] * 2) == [1, 1]
    # the closest frame (250) is more than an interval older than cam1's newest (400): not taken
    assert closest_frames([[300 * ms], [250 * ms, 360 * ms, 400 * ms]], [interval] * 2) == [0, 1]
    # frames already together stay the newest
    assert closest_frames([[100 * ms, 200 * ms], [101 * ms, 201 * ms]], [interval] * 2) == [1, 1]
