"""H.264 vs MJPEG on the original geometry: encode time on one core, bytes per frame, quality.

Content: the built-in rig's four synthetic cameras at 30 fps, each frame JPEG-compressed as a camera
would send it (quality 80) and decoded, then stitched into the 2347x250 panorama, as the daemon does.
``--noise SIGMA`` adds per-frame Gaussian sensor noise to the camera frames (real small sensors are
noisy; noise is what costs a video codec most). Quality is SSIM (luma, 11x11 Gaussian window) and
PSNR (BGR) of the decoded frames against the panorama they were made from.

Run pinned to one core for the encode times: ``taskset -c 0 python scripts/bench_h264.py``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import cv2
import numpy as np
import simplejpeg

from zmqcam.config import default_config
from zmqcam.image.remap import PanoramaComposer
from zmqcam.sources.synthetic import SyntheticSource, scene_offsets
from zmqcam.video.h264 import PRESETS, EncoderSettings, H264Decoder, H264Encoder

FPS = 30.0
MJPEG_QUALITY = 80


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
    warm = ms[5:]
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
