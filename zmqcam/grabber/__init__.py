"""The grabber: one process per camera, the only holder of the camera connection.

zmqcam.grabber.grabber  the main thread: XPUB, demand, idle timer, status; ``run_grabber``
zmqcam.grabber.capture  the capture thread: the source, reconnects with backoff, pacing
"""

from zmqcam.grabber.capture import BACKOFF_CAP, Backoff
from zmqcam.grabber.grabber import Grabber, run_grabber

__all__ = ["BACKOFF_CAP", "Backoff", "Grabber", "run_grabber"]
