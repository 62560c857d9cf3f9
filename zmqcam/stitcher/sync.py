"""Synchronized capture, the stitcher's half: for each panorama, the frames closest in capture time.

Stream cameras cannot be triggered; each runs at its own phase, so the newest frames of two cameras
can be up to a frame interval apart, and a moving object tears at the seam by that much. The stitcher
keeps each camera's last few frames (``RECENT_FRAMES``) and picks, per camera, the one whose capture
time is closest to the newest frame of the camera that is furthest behind, among the frames no more
than one frame interval older than that camera's newest: a panorama never gets more than one frame
interval of extra latency for it. Snapshot cameras are also triggered together (the grabber's half,
``zmqcam.grabber.capture.next_tick``); the choice then mostly takes the newest frames.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["RECENT_FRAMES", "closest_frames"]

#: frames kept per camera to choose from (the newest and up to two before it)
RECENT_FRAMES = 3


def closest_frames(captures: Sequence[Sequence[int]], intervals_ns: Sequence[int]) -> list[int]:
    """Per camera, the index into its ``captures`` (capture times in ns, oldest first, at least one)
    of the frame to stitch: closest to the newest capture of the camera furthest behind, among the
    frames at most ``intervals_ns`` (that camera's frame interval) older than its newest."""
    if not captures:
        return []
    reference = min(times[-1] for times in captures)
    picks = []
    for times, interval in zip(captures, intervals_ns, strict=True):
        newest = times[-1]
        candidates = [i for i, t in enumerate(times) if newest - t <= interval]
        picks.append(min(candidates, key=lambda i: (abs(times[i] - reference), -i)))
    return picks
