"""H.264 with PyAV's libx264: BGR frames in, one Annex B access unit per frame out, and back.

The encoder is set up for live viewing, not for files: ``tune=zerolatency`` (no lookahead, no frame
threads, so every frame comes out of ``encode`` as its own access unit at once), no B-frames (decode
order = display order, so a muxer never waits for a later frame), a keyframe (IDR) every ``keyint``
frames and no scene-cut keyframes in between (a viewer joins at a predictable cost), and SPS/PPS
repeated before every keyframe (x264's repeat-headers) so a consumer can start at any keyframe with
nothing else. Output is Annex B (start codes), x264's own format when no global header is asked for.

H.264 4:2:0 needs even widths and heights. ``even="pad"`` (default) repeats the last column or row,
so no pixel is lost and ``H264Decoder(size=...)`` crops it off again; ``even="crop"`` drops it.

Colour: BGR -> I420 with OpenCV (BT.601, limited range: 0.7 ms at 2348x250, three times faster than
swscale), and the stream says so in its VUI, so browsers and ffmpeg convert back with the same
matrix.

Settings (``scripts/bench.py`` section 9, and this module's sweep ``scripts/bench_h264.py``; 2347x250,
one core): veryfast CRF 22 takes 5-7.5 ms per panorama and gives 1/9 of MJPEG q80's bytes at an SSIM
within 0.002 (clean content) to 0.01 (sensor noise, which x264 smooths away and JPEG keeps);
superfast is 1-3 ms cheaper for 20-80 % more bytes; ultrafast is Baseline profile and misses the
quality or the bytes goal on noisy content at every CRF. One thread: sliced threads gained nothing
at 250 rows and would take the JPEG path's core. Under load, medians rise 10-50 % and p95s double.

PyAV notes: a ``CodecContext`` has no ``close()`` (drop the reference); ``framerate`` needs a
Fraction; a decoder with frame threads delays its output by one frame per thread, hence
``thread_count = 1``; after a corrupt unit the decoder is made anew, as FFmpeg would otherwise show
smeared references until the next IDR.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, NamedTuple, get_args

import av
import av.error
import cv2
import numpy as np
from av.video.codeccontext import VideoCodecContext

from zmqcam.config.models import H264Config, H264Preset
from zmqcam.errors import VideoError
from zmqcam.video.timeline import TIME_BASE, Timeline

__all__ = [
    "PRESETS",
    "AccessUnit",
    "EncoderSettings",
    "H264Decoder",
    "H264Encoder",
    "codec_of",
    "coded_size",
    "is_keyframe",
]

#: the x264 presets fast enough for a live panorama on one core (slowest last), as the config names them
PRESETS: tuple[str, ...] = get_args(H264Preset)
_DEFAULTS = H264Config()
_NAL_IDR = 5
_NAL_SPS = 7
_NAL_PPS = 8


@dataclass(frozen=True)
class EncoderSettings:
    """How to encode. ``bitrate`` (bits/s), when set, replaces ``crf`` by average-bitrate control with
    a one-second VBV buffer (a bounded rate for a link of known size); else quality is constant."""

    preset: str = _DEFAULTS.preset
    crf: int = _DEFAULTS.crf
    bitrate: int | None = _DEFAULTS.bitrate
    #: frames between keyframes: a new viewer waits up to this long for its first picture
    keyint: int = 30
    #: libx264 threads; 1 leaves the other core to the JPEG path (sliced threads above 1)
    threads: int = 1
    #: nominal frame rate: x264's rate control and the muxers' guess of a frame's duration
    fps: float = 30.0
    even: Literal["pad", "crop"] = _DEFAULTS.even

    def __post_init__(self) -> None:
        problems = []
        if self.preset not in PRESETS:
            problems.append(f"preset {self.preset!r}: must be one of {', '.join(PRESETS)}")
        if not 0 <= self.crf <= 51:
            problems.append(f"crf {self.crf}: must be 0..51")
        if self.bitrate is not None and self.bitrate < 10_000:
            problems.append(f"bitrate {self.bitrate}: must be >= 10000 bits/s")
        if self.keyint < 1:
            problems.append(f"keyint {self.keyint}: must be >= 1")
        if not 1 <= self.threads <= 16:
            problems.append(f"threads {self.threads}: must be 1..16")
        if not 0 < self.fps <= 240:
            problems.append(f"fps {self.fps}: must be in (0, 240]")
        if self.even not in ("pad", "crop"):
            problems.append(f"even {self.even!r}: must be 'pad' or 'crop'")
        if problems:
            raise VideoError("; ".join(problems))


class AccessUnit(NamedTuple):
    """One encoded frame: Annex B bytes (SPS+PPS+IDR for a keyframe), its timestamp in ``TIME_BASE``
    from the encoder's first frame, and the capture time it was made from."""

    data: bytes
    keyframe: bool
    pts: int
    capture_ns: int


def coded_size(width: int, height: int, even: Literal["pad", "crop"] = "pad") -> tuple[int, int]:
    """The size H.264 carries for a ``width`` x ``height`` source: both made even."""
    step = 1 if even == "pad" else -1
    return width + (width % 2) * step, height + (height % 2) * step


def _nal_headers(data: bytes, limit: int = 8) -> Iterator[int]:
    """Where the header byte of each of the first ``limit`` NAL units of an Annex B access unit is
    (after its start code 00 00 01)."""
    at = data.find(b"\x00\x00\x01")
    for _ in range(limit):
        if at < 0 or at + 3 >= len(data):
            return
        yield at + 3
        at = data.find(b"\x00\x00\x01", at + 3)


def _nal_types(data: bytes, limit: int = 8) -> list[int]:
    """The types of the first ``limit`` NAL units of an Annex B access unit."""
    return [data[header] & 0x1F for header in _nal_headers(data, limit)]


def codec_of(data: bytes) -> str | None:
    """The RFC 6381 codec (``avc1.PPCCLL``: profile, constraint flags, level) of the SPS in an Annex B
    access unit, or None when it holds none: what ``codec_string`` reads from an init segment's avcC,
    for a consumer that has not muxed anything yet."""
    for header in _nal_headers(data, limit=len(data)):  # every unit: the SPS need not come first
        if data[header] & 0x1F == _NAL_SPS:
            # the three bytes after the SPS's header; an SPS cut shorter than that gives none
            return "avc1." + data[header + 1 : header + 4].hex() if header + 4 <= len(data) else None
    return None


def is_keyframe(data: bytes) -> bool:
    """Whether an Annex B access unit can start a decoder: it holds SPS, PPS and an IDR slice."""
    types = _nal_types(data)
    return _NAL_IDR in types and _NAL_SPS in types and _NAL_PPS in types


class H264Encoder:
    """BGR frames of one size -> one ``AccessUnit`` per frame. Not thread-safe; ``close`` when done."""

    def __init__(self, width: int, height: int, settings: EncoderSettings | None = None) -> None:
        self.settings = settings or EncoderSettings()
        if width < 2 or height < 2:
            raise VideoError(f"frame size {width}x{height}: needs at least 2x2 pixels")
        self.size = (width, height)
        self.coded_size = coded_size(width, height, self.settings.even)
        self.timeline = Timeline()
        self.frames = 0
        self._force_idr = False
        s = self.settings
        ctx: VideoCodecContext = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = self.coded_size
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = Fraction(s.fps).limit_denominator(1001)
        ctx.thread_count = s.threads
        ctx.thread_type = "SLICE"  # frame threads would hold frames back; slices do not
        # BT.601 limited range, which is what cv2's BGR2YUV_I420 produces
        ctx.color_range = 1  # AVCOL_RANGE_MPEG
        ctx.colorspace = 6  # AVCOL_SPC_SMPTE170M
        ctx.color_primaries = 6
        ctx.color_trc = 6
        x264 = [
            f"keyint={s.keyint}",
            f"min-keyint={s.keyint}",
            "scenecut=0",  # keyframes only on the keyint grid: predictable bytes and join time
            "bframes=0",
            "repeat-headers=1",  # SPS/PPS before every IDR: start anywhere at a keyframe
            "open-gop=0",
        ]
        options = {"preset": s.preset, "tune": "zerolatency", "forced-idr": "1"}
        if s.bitrate is None:
            options["crf"] = str(s.crf)
        else:
            ctx.bit_rate = s.bitrate
            kbps = max(1, s.bitrate // 1000)
            x264 += [f"vbv-maxrate={kbps}", f"vbv-bufsize={kbps}"]
        options["x264-params"] = ":".join(x264)
        ctx.options = options
        try:
            ctx.open()
        except av.error.FFmpegError as exc:
            raise VideoError(f"libx264 refused {s}: {exc}") from exc
        self._ctx: VideoCodecContext | None = ctx

    def request_keyframe(self) -> None:
        """Make the next frame a keyframe (e.g. for a publish target that just reconnected)."""
        self._force_idr = True

    def encode(self, image: np.ndarray, capture_ns: int) -> AccessUnit:
        """Encode one BGR frame of the encoder's size, captured at ``capture_ns`` (ns since the epoch)."""
        w, h = self.size
        if image.shape != (h, w, 3) or image.dtype != np.uint8:
            raise VideoError(f"frame {image.shape} {image.dtype}: expected ({h}, {w}, 3) uint8 BGR")
        cw, ch = self.coded_size
        if (cw, ch) != (w, h):
            if cw > w or ch > h:
                image = cv2.copyMakeBorder(image, 0, ch - h, 0, cw - w, cv2.BORDER_REPLICATE)
            else:
                image = image[:ch, :cw]
        yuv: np.ndarray = cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420)
        frame = av.VideoFrame.from_ndarray(yuv.astype(np.uint8, copy=False), format="yuv420p")
        frame.pts = self.timeline.stamp(capture_ns)
        frame.time_base = TIME_BASE
        if self._force_idr:
            frame.pict_type = av.video.frame.PictureType.I
            self._force_idr = False
        if self._ctx is None:
            raise VideoError("the encoder is closed")
        packets = self._ctx.encode(frame)
        if len(packets) != 1:  # zerolatency + sliced threads never delays or splits a frame
            raise VideoError(f"libx264 returned {len(packets)} packets for one frame; expected 1")
        packet = packets[0]
        self.frames += 1
        return AccessUnit(bytes(packet), bool(packet.is_keyframe), int(frame.pts), capture_ns)

    def close(self) -> None:
        # nothing to flush: with zerolatency and no B-frames libx264 holds no frame back; PyAV frees
        # the encoder with its last reference
        self._ctx = None

    def __enter__(self) -> H264Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class H264Decoder:
    """Annex B access units -> BGR frames, starting at the first keyframe it is given.

    ``size`` (the source's width, height, e.g. the bus header's ``w``, ``h``) crops the even padding
    off again. Access units before the first keyframe are counted in ``waiting`` and give None; so
    does everything after a corrupt one until the next keyframe (a decoder that lost a reference
    would show smeared pictures until then).
    """

    def __init__(self, size: tuple[int, int] | None = None) -> None:
        self.size = size
        self.frames = 0
        self.waiting = 0
        self.corrupt = 0
        self._synced = False
        self._ctx = self._open()

    @staticmethod
    def _open() -> VideoCodecContext:
        ctx: VideoCodecContext = av.CodecContext.create("h264", "r")
        ctx.thread_count = 1  # frame threads delay output by one frame per thread
        return ctx

    def decode(self, data: bytes, keyframe: bool | None = None) -> np.ndarray | None:
        """One access unit -> its BGR frame (None while waiting for a keyframe). ``keyframe`` is the
        bus header's flag; without it the NAL units say."""
        if keyframe is None:
            keyframe = is_keyframe(data)
        if not self._synced:
            if not keyframe:
                self.waiting += 1
                return None
            self._synced = True
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.error.FFmpegError as exc:
            self.corrupt += 1
            self._synced = False
            self._ctx = self._open()
            raise VideoError(f"corrupt access unit ({len(data)} bytes): {exc}") from exc
        if not frames:
            return None
        self.frames += 1
        image: np.ndarray = frames[-1].to_ndarray(format="bgr24")
        if self.size is not None:
            w, h = self.size
            if image.shape[1] > w or image.shape[0] > h:
                image = np.ascontiguousarray(image[:h, :w])
        return image
