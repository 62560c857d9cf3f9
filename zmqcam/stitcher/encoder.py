"""``pano h264``: the panorama encoded to H.264 once, in a thread of its own, only while subscribed.

The stitcher makes one ``PanoEncoder`` when ``pano h264`` gets its first subscriber and drops it
(thread, libx264 and all) when the last one leaves, so with nobody wanting H.264 nothing is encoded
and no encoder exists (``h264_encoders`` and ``h264_encoded`` in the stitcher's status stay flat).

The stitcher's loop must never wait for libx264 (5-8 ms a panorama, more on a loaded machine): it
``offer``s each panorama to a latest-only slot and goes on with the JPEG path. The encoder thread
takes whatever is newest; a panorama replaced in the slot before the thread got to it is counted in
``h264_skipped`` and never encoded. The thread hands each access unit, as a finished bus message,
back over an inproc PAIR socket (ZeroMQ sockets are not shared between threads); the stitcher's
loop polls that socket and publishes what it reads on its XPUB.

Every message carries one access unit (Annex B; a keyframe holds SPS, PPS and an IDR, so a consumer
can start at any keyframe) and the panorama's header (seq and capture time the same as its ``pano
raw``/``pano jpeg``, sources, stale, spread), plus in ``x``: ``key``, ``coded_w``/``coded_h``,
``fps``, ``codec`` (``zmqcam.bus.protocol`` validates them), ``gop``, the seq of the keyframe the
unit depends on, and ``au``, the unit's number in the encoder's stream (0, 1, 2, ...: a consumer that
sees a number missing lost a unit on the bus and must wait for the next keyframe).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq

from zmqcam.bus import protocol
from zmqcam.config.models import H264Config
from zmqcam.errors import VideoError
from zmqcam.names import PANO
from zmqcam.video.h264 import EncoderSettings, H264Encoder, codec_of

log = logging.getLogger(__name__)

#: encoded messages queued from the thread to the stitcher's loop before the thread drops one (the
#: loop reads them within a poll; more would only delay them)
_HANDOFF_HWM = 4
_FORWARD_LIMIT = 16
_JOIN_TIMEOUT = 5.0
#: the stitcher's H.264 counters (see ``PanoEncoder``); ``h264_encoders`` counts encoders started
H264_COUNTERS = ("h264_encoders", "h264_offered", "h264_skipped", "h264_encoded", "h264_errors", "h264_dropped")


def encoder_settings(cfg: H264Config, fps: float) -> EncoderSettings:
    """``[stitch.h264]`` as the encoder takes it: ``keyint`` seconds become frames at ``fps``."""
    return EncoderSettings(
        preset=cfg.preset,
        crf=cfg.crf,
        bitrate=cfg.bitrate,
        keyint=max(1, round(cfg.keyint * fps)),
        threads=1,  # the other core belongs to the JPEG path (sliced threads gained nothing at 250 rows)
        fps=fps,
        even=cfg.even,
    )


class PanoEncoder:
    """One encoder thread: panoramas in through ``offer``, bus messages out on ``handoff``.

    ``counters`` is the stitcher's own dict and ``timed`` its timer, so the totals outlive each encoder:
    ``h264_offered`` (panoramas offered), ``h264_skipped`` (replaced in the slot before the thread
    took them), ``h264_encoded``, ``h264_errors`` (frames libx264 refused), ``h264_dropped`` (messages
    lost between thread and loop) and ``h264_encode_seconds`` (BGR -> I420 -> H.264).
    """

    def __init__(
        self,
        ctx: zmq.Context[Any],
        settings: EncoderSettings,
        size: tuple[int, int],
        counters: dict[str, int],
        timed: Callable[[str, float], None],
    ) -> None:
        self.settings = settings
        self.size = size
        self.counters = counters
        self.timed = timed  # (what, perf_counter at its start): adds the time spent to the stitcher's
        self._cond = threading.Condition()
        #: the newest panorama not yet taken by the thread: (image, seq, capture_ns, extra)
        self._slot: tuple[np.ndarray, int, int, dict[str, Any]] | None = None
        self._stopping = False
        address = f"inproc://zmqcam-h264-{id(self):x}-{time.monotonic_ns()}"
        #: the loop's end: poll it, then ``forward``
        self.handoff = ctx.socket(zmq.PAIR)
        self.handoff.setsockopt(zmq.LINGER, 0)
        self.handoff.setsockopt(zmq.RCVHWM, _HANDOFF_HWM)
        self.handoff.bind(address)
        # the thread's end: made here, used only by the thread from its start on (the thread's start
        # is the memory barrier ZeroMQ asks for when a socket changes threads)
        self._out = ctx.socket(zmq.PAIR)
        self._out.setsockopt(zmq.LINGER, 0)
        self._out.setsockopt(zmq.SNDHWM, _HANDOFF_HWM)
        self._out.connect(address)
        self._thread = threading.Thread(target=self._run, name="zmqcam-h264", daemon=True)
        self._thread.start()

    def offer(self, image: np.ndarray, seq: int, capture_ns: int, extra: dict[str, Any]) -> None:
        """Give the thread the newest panorama (copied: the composer reuses its buffer). Never waits
        for an encode in progress; a panorama still in the slot is replaced and counted skipped."""
        frame = (image.copy(), seq, capture_ns, extra)
        with self._cond:
            if self._slot is not None:
                self.counters["h264_skipped"] += 1
            self._slot = frame
            self.counters["h264_offered"] += 1
            self._cond.notify()

    def forward(self, pub: zmq.Socket[Any]) -> None:
        """Publish the messages the thread has finished (called by the loop when ``handoff`` polls in)."""
        for _ in range(_FORWARD_LIMIT):
            try:
                parts = self.handoff.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            with contextlib.suppress(zmq.Again):  # a full subscriber queue drops, as for every kind
                pub.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)

    def _take(self) -> tuple[np.ndarray, int, int, dict[str, Any]] | None:
        with self._cond:
            while self._slot is None and not self._stopping:
                self._cond.wait()
            frame, self._slot = self._slot, None
            return None if self._stopping else frame

    def _run(self) -> None:
        try:
            encoder = H264Encoder(*self.size, self.settings)
        except VideoError as exc:  # the config's settings are checked at load: libx264 itself failed
            self.counters["h264_errors"] += 1
            log.error("pano h264: cannot start the encoder: %s", exc)
            self._out.close(linger=0)
            return
        width, height = self.size
        coded_w, coded_h = encoder.coded_size
        codec: str | None = None
        gop = 0
        number = 0
        try:
            while (frame := self._take()) is not None:
                image, seq, capture_ns, extra = frame
                started = time.perf_counter()
                try:
                    unit = encoder.encode(image, capture_ns)
                except VideoError as exc:
                    self.counters["h264_errors"] += 1
                    log.warning("pano h264: %s", exc)
                    continue
                self.timed("h264_encode_seconds", started)
                self.counters["h264_encoded"] += 1
                if unit.keyframe:
                    gop = seq
                    codec = codec_of(unit.data) or codec
                header = {
                    **extra,
                    "key": unit.keyframe,
                    "coded_w": coded_w,
                    "coded_h": coded_h,
                    "fps": self.settings.fps,
                    "codec": codec,
                    "gop": gop,
                    "au": number,
                }
                number += 1
                parts = protocol.encode(PANO, protocol.H264, seq, capture_ns, unit.data, width, height, header)
                try:
                    self._out.send_multipart(parts, flags=zmq.NOBLOCK)
                except zmq.Again:
                    self.counters["h264_dropped"] += 1
        finally:
            encoder.close()
            self._out.close(linger=0)

    def stop(self) -> None:
        """End the thread (after the encode in progress) and close both ends of the handoff."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(_JOIN_TIMEOUT)
        if self._thread.is_alive():  # libx264 stuck: the thread is a daemon and dies with the process
            log.warning("pano h264: the encoder thread did not stop within %g s", _JOIN_TIMEOUT)
        self.handoff.close(linger=0)
