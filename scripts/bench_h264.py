"""Section 9 of scripts/bench.py: H.264 vs MJPEG on the original geometry, what each viewer costs.

Bytes per second per viewer of ``pano h264`` at the default ``[stitch.h264]`` settings beside
``pano jpeg`` at the default ``stitch.jpeg_quality``, each with the SSIM of its decoded frames
against the panorama (``pano raw``) it was made from, and the encode time per panorama on one core
(the encoder thread's work: BGR -> I420 -> libx264), with the CPU's SIMD level (libx264 and the
colour conversion depend on it).

Content: the built-in rig's four synthetic cameras at 30 fps, each frame JPEG-compressed as a camera
would send it (quality 80) and decoded, then stitched into the 2347x250 panorama, as the daemon does.
``--noise SIGMA`` adds per-frame Gaussian sensor noise to the camera frames (real small sensors are
noisy; noise is what costs a video codec most). Quality is SSIM (luma, 11x11 Gaussian window) and
PSNR (BGR) of the decoded frames against the panorama they were made from.

Alone, it sweeps presets and CRFs (how the defaults were chosen; on one core:
``taskset -c 0 python scripts/bench_h264.py --noise 3``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import simplejpeg

from zmqcam.config import default_config
from zmqcam.config.models import H264Config
from zmqcam.image.remap import PanoramaComposer
from zmqcam.sources.synthetic import SyntheticSource, scene_offsets
from zmqcam.stitcher.encoder import encoder_settings
from zmqcam.video.h264 import PRESETS, EncoderSettings, H264Decoder, H264Encoder

FPS = 30.0
MJPEG_QUALITY = default_config().stitch.jpeg_quality


def simd_level() -> str:
    """The widest x86 SIMD extension this CPU has (what libx264 and OpenCV pick their code by)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        flags = []
    for flag in ("avx512f", "avx2", "avx", "sse4_2", "sse4_1", "ssse3", "sse2"):
        if flag in flags:
            return flag
    return "unknown (not x86, or no /proc/cpuinfo)"


@contextlib.contextmanager
def one_core() -> Iterator[None]:
    """Run the block pinned to one CPU (the encoder thread runs on one core in the stitcher)."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def run(quick: bool) -> dict[str, Any]:
    """The section: the clean synthetic scene (and, in a full run, with sensor noise sigma 3)."""
    frames = 20 if quick else 150
    settings = encoder_settings(H264Config(), FPS)
    out: dict[str, Any] = {
        "simd": simd_level(),
        "settings": {"preset": settings.preset, "crf": settings.crf, "keyint": settings.keyint},
        "frames": frames,
    }
    for label, noise in [("clean", 0.0)] + ([] if quick else [("noise_3", 3.0)]):
        panos = panoramas(frames, noise)
        ref = mjpeg(panos)
        with one_core():
            got = h264(panos, settings)
        out[label] = {
            "mjpeg": ref,
            "h264": got,
            "mjpeg_bytes_per_s_per_viewer": ref["bytes"] * FPS,
            "h264_bytes_per_s_per_viewer": got["bytes"] * FPS,
            "bytes_vs_mjpeg": got["bytes"] / ref["bytes"],
            "ssim_minus_mjpeg": got["ssim"] - ref["ssim"],
            "encode_ms_vs_mjpeg": got["encode_ms"] / ref["encode_ms"],
        }
    out["pano_size"] = list(panos[0].shape[1::-1])
    clean = out["clean"]
    out["goals"] = {
        "H.264 bytes <= 1/5 of MJPEG's (clean)": clean["bytes_vs_mjpeg"] <= 0.2,
        "H.264 SSIM >= MJPEG's - 0.01 (clean)": clean["ssim_minus_mjpeg"] >= -0.01,
        "H.264 encode <= 8 ms per panorama, one core": clean["h264"]["encode_ms"] <= 8.0,
    }
    return out


def panoramas(n: int, noise: float, seed: int = 1) -> list[np.ndarray]:
    config = default_config()
    cams = config.stitched_cameras
    offsets = scene_offsets(config)
    sources = [SyntheticSource(c, scene_offset=offsets[c.name]) for c in cams]
    composer = PanoramaComposer(cams)
    rng = np.random.default_rng(seed)
    t0 = time.time()
    out = []
    for k in range(n):
        frames = []
        for s in sources:
            frame = s.render(t0 + k / FPS)
            if noise > 0:
                frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
            jpeg = simplejpeg.encode_jpeg(frame, quality=MJPEG_QUALITY, colorspace="BGR", colorsubsampling="420")
            frames.append(simplejpeg.decode_jpeg(jpeg, colorspace="BGR"))
        out.append(composer.compose(frames).copy())
    return out


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of the luma planes (Wang et al. 2004, 11x11 Gaussian window, sigma 1.5)."""
    x = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(v: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(v, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s.mean())


def mjpeg(panos: list[np.ndarray]) -> dict[str, Any]:
    sizes, ms, ss, ps = [], [], [], []
    for p in panos:
        t = time.perf_counter()
        jpeg = simplejpeg.encode_jpeg(p, quality=MJPEG_QUALITY, colorspace="BGR", colorsubsampling="420")
        ms.append((time.perf_counter() - t) * 1000)
        sizes.append(len(jpeg))
        back = simplejpeg.decode_jpeg(jpeg, colorspace="BGR")
        ss.append(ssim(p, back))
        ps.append(cv2.PSNR(p, back))
    return {"encode_ms": float(np.median(ms)), "bytes": float(np.mean(sizes)), "ssim": float(np.mean(ss)),
            "psnr": float(np.mean(ps))}  # fmt: skip


def h264(panos: list[np.ndarray], settings: EncoderSettings) -> dict[str, Any]:
    h, w = panos[0].shape[:2]
    sizes, ms, ss, ps, key = [], [], [], [], []
    with H264Encoder(w, h, settings) as enc:
        dec = H264Decoder(size=(w, h))
        t0 = time.time_ns()
        for k, p in enumerate(panos):
            t = time.perf_counter()
            au = enc.encode(p, t0 + int(k * 1e9 / FPS))
            ms.append((time.perf_counter() - t) * 1000)
            sizes.append(len(au.data))
            if au.keyframe:
                key.append(len(au.data))
            back = dec.decode(au.data, au.keyframe)
            assert back is not None
            ss.append(ssim(p, back))
            ps.append(cv2.PSNR(p, back))
    warm = ms[5:] if len(ms) > 10 else ms
    return {"encode_ms": float(np.median(warm)), "encode_ms_p95": float(np.percentile(warm, 95)),
            "bytes": float(np.mean(sizes)), "keyframe_bytes": float(np.mean(key)), "ssim": float(np.mean(ss)),
            "psnr": float(np.mean(ps))}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--crf", type=int, nargs="*", default=[23, 26, 28])
    ap.add_argument("--presets", nargs="*", default=list(PRESETS))
    ap.add_argument("--bitrate", type=int, nargs="*", default=[])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    panos = panoramas(args.frames, args.noise)
    result: dict[str, Any] = {"size": list(panos[0].shape[1::-1]), "noise": args.noise, "mjpeg_q80": mjpeg(panos)}
    ref = result["mjpeg_q80"]
    print(f"MJPEG q{MJPEG_QUALITY}: {ref['bytes']:.0f} B/frame, SSIM {ref['ssim']:.4f}, PSNR {ref['psnr']:.2f} dB, "
          f"{ref['encode_ms']:.2f} ms")  # fmt: skip
    runs: list[tuple[str, int, int | None]] = [(p, c, None) for p in args.presets for c in args.crf]
    runs += [(p, 0, b) for p in args.presets for b in args.bitrate]
    for preset, crf, bitrate in runs:
        settings = EncoderSettings(preset=preset, crf=crf or 23, bitrate=bitrate, keyint=int(FPS), threads=args.threads)
        r = h264(panos, settings)
        label = f"{preset} " + (f"crf {crf}" if bitrate is None else f"{bitrate // 1000} kbit/s")
        result[label] = r
        print(f"{label:22s} {r['encode_ms']:5.2f} ms (p95 {r['encode_ms_p95']:5.2f})  {r['bytes']:7.0f} B/frame "
              f"(1/{ref['bytes'] / r['bytes']:4.1f} of MJPEG, keyframes {r['keyframe_bytes']:.0f})  "
              f"SSIM {r['ssim']:.4f} ({r['ssim'] - ref['ssim']:+.4f})  PSNR {r['psnr']:.2f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
