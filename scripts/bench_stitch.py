"""Section 1: stitch cost per panorama, zmqcam's remap path vs the original pipeline, plus JPEG encode;
and seams: cut, feather and feather + gain side by side on one core (the CPU's SIMD level printed)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import simplejpeg

from zmqcam.config import default_config
from zmqcam.image.remap import PanoramaComposer
from zmqcam.sources.synthetic import SyntheticSource, scene_offsets
from zmqcam.testing.reference import original_pipeline
from zmqcam.testing.spread import capture_spreads, snapshot_fakes


def source_frames(n: int) -> tuple[list[Any], list[list[np.ndarray]]]:
    """The original geometry's cameras and ``n`` sets of synthetic 640x480 frames (one per camera)."""
    config = default_config()
    cams = config.stitched_cameras
    offsets = scene_offsets(config)
    sources = [SyntheticSource(c, scene_offset=offsets[c.name]) for c in cams]
    t0 = time.time()
    sets = [[s.render(t0 + k / 30.0) for s in sources] for k in range(n)]
    return cams, sets


def _time_ms(fn: Any, sets: list[list[np.ndarray]], repeat: int) -> list[float]:
    out = []
    for k in range(repeat):
        frames = sets[k % len(sets)]
        t = time.perf_counter()
        fn(frames)
        out.append((time.perf_counter() - t) * 1000)
    return out


def simd_level() -> str:
    """The SIMD instruction sets OpenCV's kernels may use on this CPU (``cv2.getCPUFeaturesLine``: the
    ones marked * are dispatched at run time), the highest last."""
    line = str(cv2.getCPUFeaturesLine()).split()
    return line[-1].lstrip("*") if line else "unknown"


#: the cameras' exposure differences the gains have to undo (so that the lookup tables are applied)
CAMERA_GAINS = (1.08, 0.86, 1.0, 1.12)


def seams(cams: list[Any], sets: list[list[np.ndarray]], repeat: int) -> dict[str, Any]:
    """Per panorama on one core: the cut (the plain remap), feathered seams (32 px bands at the
    original geometry's crop margins) and feather + gain, on frames whose cameras differ in exposure."""
    lit = [[cv2.convertScaleAbs(f, alpha=g) for f, g in zip(frames, CAMERA_GAINS, strict=True)] for frames in sets]
    out: dict[str, Any] = {"simd": simd_level()}
    clock = [0.0]

    def composed(composer: PanoramaComposer) -> Any:
        def compose(frames: list[np.ndarray]) -> None:
            clock[0] += 1 / 30  # the gains' smoothing sees 30 panoramas a second
            composer.compose(frames, now=clock[0])

        return compose

    variants: dict[str, dict[str, Any]] = {
        "cut": {},
        "feather": {"seam": "feather"},
        "feather_gain": {"seam": "feather", "exposure": "gain"},
    }
    composers = {label: composed(PanoramaComposer(cams, **options)) for label, options in variants.items()}
    # interleaved, one panorama of each in turn: a load change on a shared machine then weighs on all
    # three alike, and the differences (what seams and gains add) stay fair
    times: dict[str, list[float]] = {label: [] for label in composers}
    for k in range(10 + repeat):
        for label, compose in composers.items():
            times[label].extend(_time_ms(compose, [lit[k % len(lit)]], 1))
    for label, measured in times.items():
        out[f"{label}_ms"] = float(np.median(measured[10:]))
    out["feather_added_ms"] = out["feather_ms"] - out["cut_ms"]
    out["feather_gain_added_ms"] = out["feather_gain_ms"] - out["cut_ms"]
    out["feather_gain_vs_cut"] = out["feather_gain_ms"] / out["cut_ms"]
    return out


def sync_spread() -> dict[str, Any]:
    """Capture spread (ms, median) of a daemon on four fake snapshot ESP32-CAMs, ``stitch.sync`` off
    and on (the cameras answer 10 ms apart, as real ones differ)."""
    with tempfile.TemporaryDirectory(prefix="zmqcam-bench-") as tmp, snapshot_fakes() as fakes:
        free = float(np.median(capture_spreads(Path(tmp) / "free", fakes, sync=False, panoramas=30)))
        synced = float(np.median(capture_spreads(Path(tmp) / "sync", fakes, sync=True, panoramas=30)))
    return {"free_ms": free, "sync_ms": synced, "sync_vs_free": synced / free if free else None}


def run(quick: bool) -> dict[str, Any]:
    repeat = 30 if quick else 300
    cams, sets = source_frames(4 if quick else 16)
    composer = PanoramaComposer(cams)
    default_threads = cv2.getNumThreads()
    result: dict[str, Any] = {"pano_size": list(composer.size), "repeat": repeat}
    try:
        for label, threads in (("one_core", 1), ("default_threads", default_threads)):
            cv2.setNumThreads(threads)
            # warm up both
            _time_ms(composer.compose, sets, 5)
            _time_ms(lambda f: original_pipeline(f, cams), sets, 5)
            remap = _time_ms(composer.compose, sets, repeat)
            orig = _time_ms(lambda f: original_pipeline(f, cams), sets, repeat)
            pano = composer.compose(sets[0]).copy()

            def enc(_f: Any, pano: np.ndarray = pano) -> None:
                simplejpeg.encode_jpeg(pano, quality=80, colorspace="BGR", colorsubsampling="420")

            def enc_cv2(_f: Any, pano: np.ndarray = pano) -> None:
                cv2.imencode(".jpg", pano)

            jpeg = _time_ms(enc, sets, repeat)
            jpeg_cv2 = _time_ms(enc_cv2, sets, repeat)
            rm, om, jm = float(np.median(remap)), float(np.median(orig)), float(np.median(jpeg))
            result[label] = {
                "threads": threads,
                "remap_ms": rm,
                "original_ms": om,
                "speedup": om / rm,
                "jpeg_encode_ms": jm,
                "stitch_plus_encode_ms": rm + jm,
                # the original encoded with cv2.imencode (quality 95) once per client per frame
                "original_stitch_plus_imencode_ms": om + float(np.median(jpeg_cv2)),
                "jpeg_bytes": len(simplejpeg.encode_jpeg(pano, quality=80, colorspace="BGR", colorsubsampling="420")),
            }
        cv2.setNumThreads(1)
        result["seams"] = seams(cams, sets, repeat)
    finally:
        cv2.setNumThreads(default_threads)
    if not quick:  # two daemon starts: left out of the quick run
        result["spread"] = sync_spread()
    one = result["one_core"]
    result["goals"] = {
        "remap >= 1.5x faster than original (one core)": one["speedup"] >= 1.5,
        "stitch + encode <= 6 ms (one core)": one["stitch_plus_encode_ms"] <= 6.0,
        "feather + gain add <= 1 ms (one core)": result["seams"]["feather_gain_added_ms"] <= 1.0,
    }
    return result
