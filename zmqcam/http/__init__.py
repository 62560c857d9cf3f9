"""The HTTP bridge: MJPEG streams, snapshots, status and a small page, served by aiohttp.

zmqcam.http.server  the process: endpoints, per-client writers, limits, run_bridge
zmqcam.http.hub     the ZeroMQ side: a Channel (newest frame + waiting writers) per stream
zmqcam.http.listener  the listening socket: TLS, connection cap, request-head deadline
zmqcam.http.report  the body of /status
zmqcam.http.auth    optional bearer token / basic credentials
zmqcam.http.page    the page at / and the "waking up" card
"""

from zmqcam.http.server import Bridge, read_announce, run_bridge

__all__ = ["Bridge", "read_announce", "run_bridge"]
