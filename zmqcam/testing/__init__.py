"""Test doubles shipped with zmqcam: a fake ESP32-CAM (``fakecam``) and a GStreamer RTSP server
launcher (``rtsp_server``), for the test suite and for trying zmqcam without camera hardware."""
