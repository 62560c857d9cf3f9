"""Test doubles and helpers shipped with zmqcam, for its test suite and benchmarks and for trying
zmqcam without camera hardware. Apart from the product: it may import anything, nothing imports it.

zmqcam.testing.fakecam      a fake ESP32-CAM (the CameraWebServer firmware's wire format)
zmqcam.testing.rtsp_server  a GStreamer RTSP server launcher
zmqcam.testing.reference    the original stitch pipeline, the reference the remap is measured against
zmqcam.testing.daemon       free ports, test configs, the daemon as a subprocess
"""
