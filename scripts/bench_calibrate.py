"""Section 8: ``calibrate --auto`` on four 640x480 cameras (the rendered conveyor scene of the tests),
against its own first step measured in the same run: finding the board's corners in the frames.

- detection: ``detect_sets`` on the frames (the baseline: what no calibration can skip);
- calibration: ``calibrate_rig`` on the same frames (detection, solving, the panorama frame);
- the command: ``zmqcam-daemon calibrate --auto --from REC --write NEW.toml`` as a user runs it (a
  new Python process: imports, reading the recording, the PNG and the config written);

each from one placement (sheets end to end) and, for the library, from three placements chained.
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from zmqcam.calibration.rig import calibrate_rig, detect_sets
from zmqcam.cli.calibrate_auto import DEFAULT_FRAMES
from zmqcam.config import default_config
from zmqcam.recording.format import RecordingWriter
from zmqcam.testing.daemon import daemon_command
from zmqcam.testing.scene import Scene, chain_placements, default_sheets

#: the issue's "finishes in a few seconds", for the whole command
GOAL_S = 5.0


def _seconds(fn: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _record(path: Path, scene: Scene, frames: int) -> None:
    """A recording of the scene, as ``zmqcam-daemon record`` writes one (10 fps)."""
    config = default_config()
    names = [c.name for c in config.camera]
    writer = RecordingWriter(path, config, names)
    start = time.time_ns()
    for i in range(frames):
        for name in names:
            t = start + i * 100_000_000
            writer.write(name, scene.jpeg(name, i), i + 1, t, t, 640, 480)
    writer.close()


def run(quick: bool) -> dict[str, Any]:
    frames = 2 if quick else DEFAULT_FRAMES
    repeat = 1 if quick else 3
    names = [c.name for c in default_config().stitched_cameras]
    single = Scene(boards=default_sheets())
    chained = [Scene(boards=boards) for boards in chain_placements()]
    one = [{name: [single.frame(name, i) for i in range(frames)] for name in names}]
    three = [{name: [s.frame(name, i) for i in range(frames)] for name in names} for s in chained]
    out: dict[str, Any] = {"cameras": len(names), "frames_per_camera": frames}
    out["detection_s"] = _seconds(lambda: detect_sets(one, names), repeat)
    out["calibrate_s"] = _seconds(lambda: calibrate_rig(one, names), repeat)
    out["chained_detection_s"] = _seconds(lambda: detect_sets(three, names), repeat)
    out["chained_calibrate_s"] = _seconds(lambda: calibrate_rig(three, names), repeat)
    with tempfile.TemporaryDirectory(prefix="zc-bench-cal-") as tmp:
        _record(Path(tmp) / "rec", single, frames)
        command = daemon_command(
            "calibrate", "--auto", "--from", "rec", "--frames", str(frames), "--write", "new.toml", "cal.png"
        )

        def run_command() -> None:
            subprocess.run(command, cwd=tmp, check=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=120)

        out["command_s"] = _seconds(run_command, repeat)
    out["calibrate_vs_detection"] = out["calibrate_s"] / out["detection_s"]
    out["chained_vs_detection"] = out["chained_calibrate_s"] / out["chained_detection_s"]
    out["command_vs_detection"] = out["command_s"] / out["detection_s"]
    out["goal_s"] = GOAL_S
    out["goals"] = {f"calibrate --auto on {len(names)} cameras within {GOAL_S:g} s": out["command_s"] <= GOAL_S}
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=False), indent=1))
