"""A fake ESP32-CAM: a test double faithful to the CameraWebServer firmware (esp32-camera
``app_httpd.cpp``), for the tests and for trying zmqcam without hardware.

Port P (the firmware's ``camera_httpd``, port 80 on a camera):

* ``/capture`` (and ``/jpg``, the URL of the original deployment's firmware): one JPEG, taken
  150 ms after the request (the firmware lights the LED 150 ms before ``esp_camera_fb_get``),
  with ``Content-Disposition: inline; filename=capture.jpg``, ``Access-Control-Allow-Origin: *``
  and ``X-Timestamp: <sec>.<usec>`` of the camera's uptime clock. Requests are served one at a
  time (the firmware's httpd runs handlers in one task); connections are kept alive.
* ``/status``: JSON as the firmware's status_handler writes it (``xclk``, ``pixformat``, then
  ``framesize``, ``quality``, ... ``led_intensity``; not ``vflip``, which the firmware omits).
* ``/control?var=<name>&val=<int>``: the firmware's whole variable list
  (``zmqcam.config.esp32.CONTROL_VARIABLES``); 404 when an argument is missing, 500 for an unknown
  variable; ``framesize`` (the esp32-camera ``framesize_t`` index, 8 = VGA) changes the size.
  ``cam.fail_control("awb")`` makes a known variable answer 500 too, ``cam.ignore_control("aec")``
  answers 200 and keeps the old value (a setting that does not stick); ``cam.control_requests``
  lists every request received.
* ``/fake/...``: fault injection for a fake running as a process (not in the firmware), see
  ``_fake_control``; ``/fake/stats`` returns the counters as JSON.

Port P+1 (``stream_httpd``, port 81 on a camera): ``/stream`` in the firmware's exact wire format::

    HTTP/1.1 200 OK
    Content-Type: multipart/x-mixed-replace;boundary=123456789000000000000987654321
    Transfer-Encoding: chunked
    Access-Control-Allow-Origin: *
    X-Framerate: 60

then per frame three HTTP chunks (``httpd_resp_send_chunk``): ``\\r\\n--<boundary>\\r\\n``,
``Content-Type: image/jpeg\\r\\nContent-Length: <n>\\r\\nX-Timestamp: <sec>.<usec>\\r\\n\\r\\n``
and the JPEG; never a closing boundary. Like the firmware it serves one stream client: a second
one is accepted and left waiting, without a byte of response, until the first one leaves.

Frames: a moving test picture with a frame counter, JPEG-encoded at the configured size and fps;
or given pictures (``FakeCam(source=...)``, ``set_source``): a list of JPEGs served in turn, or a
callable that returns the JPEG of each frame number, e.g. a rendered scene
(``zmqcam.testing.scene.Scene.jpegs``), sent through the same wire format at the same fps.

Use in tests (a thread in the test process)::

    with FakeCam(fps=20) as cam:          # ports picked free; cam.port, cam.stream_port
        url = cam.stream_url              # http://127.0.0.1:<P+1>/stream
        cam.stall(); cam.resume()         # send nothing (new clients get no response)
        cam.corrupt_next(); cam.truncate_next(); cam.drop_next()   # next frame(s), any client
        cam.set_size(320, 240); cam.drop_clients(); cam.refuse(2.0); cam.accept_again()
        cam.wait_until(lambda: cam.active_stream_clients == 0)
        cam.set_source([jpeg0, jpeg1])   # serve these pictures in turn (None: the test pattern again)

``SilentServer`` is a port that accepts connections and never answers (a camera hung at boot).

As a process: ``python -m zmqcam.testing.fakecam --port 8080 [--picture a.jpg ...]`` (stream on 8081); it prints
``READY <port> <stream_port>`` once listening and stops on SIGTERM/SIGINT.

The package: ``wire`` (the firmware's bytes and the socket plumbing), ``base`` (state, frames,
threads, HTTP plumbing), ``faults`` (fault injection), ``snapshot_port`` (port P),
``stream_port`` (port P+1), ``camera`` (``FakeCam``: both ports on one state), ``silent``
(``SilentServer``), ``command`` (the process).
"""

from zmqcam.testing.fakecam.base import FrameSource
from zmqcam.testing.fakecam.camera import FakeCam
from zmqcam.testing.fakecam.command import main
from zmqcam.testing.fakecam.silent import SilentServer
from zmqcam.testing.fakecam.wire import BOUNDARY, FRAMESIZES

__all__ = ["BOUNDARY", "FRAMESIZES", "FakeCam", "FrameSource", "SilentServer", "main"]
