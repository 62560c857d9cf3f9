"""H.264 building blocks, pure (no sockets, no processes), all through PyAV (FFmpeg, libx264):
encode and decode access units (``h264``), fragmented MP4 for browsers and players (``fmp4``), push
to a media server (``push``), record to and read from MP4 files (``mp4file``); ``mse_player.js`` is
the browser side of ``fmp4``."""

from zmqcam.errors import VideoError
from zmqcam.video.fmp4 import Fragment, FragmentMuxer, LiveFragments, codec_string
from zmqcam.video.h264 import AccessUnit, EncoderSettings, H264Decoder, H264Encoder, coded_size, is_keyframe
from zmqcam.video.mp4file import Mp4Reader, Mp4Recorder, RecordedFrame
from zmqcam.video.push import Pusher, PushError, PushWorker
from zmqcam.video.timeline import TIME_BASE, Timeline

__all__ = [
    "TIME_BASE",
    "AccessUnit",
    "EncoderSettings",
    "Fragment",
    "FragmentMuxer",
    "H264Decoder",
    "H264Encoder",
    "LiveFragments",
    "Mp4Reader",
    "Mp4Recorder",
    "PushError",
    "PushWorker",
    "Pusher",
    "RecordedFrame",
    "Timeline",
    "VideoError",
    "codec_string",
    "coded_size",
    "is_keyframe",
]
