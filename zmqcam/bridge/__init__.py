"""The HTTP bridge: MJPEG and fMP4 (H.264) streams, snapshots, status and a small page, served by aiohttp.

zmqcam.bridge.server    the process: endpoints, per-client writers, limits, run_bridge
zmqcam.bridge.hub       the ZeroMQ side: a Channel (newest frame + waiting writers) per stream, and the
                        Mp4Channel of /stream.mp4 (pano h264 muxed once into fMP4)
zmqcam.bridge.listener  the listening socket: TLS, connection cap, request-head deadline
zmqcam.bridge.report    the body of /status
zmqcam.bridge.metrics   the body of /metrics (prometheus_client, a collector on the bridge's own registry)
zmqcam.bridge.auth      optional bearer token / basic credentials
zmqcam.bridge.page      the page at /
"""

from zmqcam.bridge.server import Bridge, read_announce, run_bridge

__all__ = ["Bridge", "read_announce", "run_bridge"]
