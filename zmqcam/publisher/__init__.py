"""Publish targets: one process per ``[[publish]]`` entry pushing ``pano h264`` to a media server
(``zmqcam.publisher.publisher``)."""

from zmqcam.publisher.publisher import Publisher, run_publisher

__all__ = ["Publisher", "run_publisher"]
