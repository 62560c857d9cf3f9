"""Frames for a board calibration from a recording (``zmqcam-daemon record``): one recording is one
placement of the board, a still scene, so any of its frames will do; a few spread over the whole
recording are taken per camera, and the detection averages them (``zmqcam.calibration.detect``).

    frame_set = frame_set_from_recording("rec-cam0-cam1", ["cam0", "cam1", "cam2"], frames=5)
    # {"cam0": [5 BGR frames], "cam1": [...]}: cameras the recording lacks are left out
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from zmqcam.errors import RecordingError
from zmqcam.recording.format import Recording

__all__ = ["frame_set_from_recording"]


def _spread(count: int, frames: int) -> list[int]:
    """``frames`` indices spread evenly over ``count`` frames (each in the middle of its share),
    without repeats when the recording has fewer frames than asked for."""
    return sorted({min(count - 1, int((k + 0.5) * count / frames)) for k in range(frames)})


def frame_set_from_recording(
    path: str | os.PathLike[str], cameras: Sequence[str], frames: int
) -> dict[str, list[np.ndarray | None]]:
    """Up to ``frames`` decoded frames of each of ``cameras`` that the recording at ``path`` holds,
    spread over the whole recording (a JPEG that does not decode is None, as a missing frame).
    RecordingError when it is not a recording or holds none of ``cameras``."""
    recording = Recording(path)
    present = [name for name in cameras if name in recording.names]
    if not present:
        raise RecordingError(
            f"{recording.path}: holds none of the cameras to calibrate ({', '.join(cameras)}); "
            f"it has {', '.join(recording.names)}"
        )
    out: dict[str, list[np.ndarray | None]] = {}
    for name in present:
        with recording.track(name) as track:
            if not track.entries:
                continue
            out[name] = [track.picture(i) for i in _spread(len(track.entries), frames)]
    return out
