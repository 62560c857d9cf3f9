"""The fake ESP32-CAM itself: faithful to the CameraWebServer firmware on the wire, controllable,
and prompt to stop. Read with plain sockets and requests, never with zmqcam's sources."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from zmqcam.sources._common import ChunkedDecoder, jpeg_size
from zmqcam.testing.fakecam import BOUNDARY, FakeCam
from zmqcam.testing.scene import Scene, default_sheets

pytestmark = pytest.mark.timeout(30)

PART_RE = r"Content-Type: image/jpeg\r\nContent-Length: (\d+)\r\nX-Timestamp: \d+\.\d{6}\r\n\r\n"


def http_get(port: int, path: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return sock


def recv_until(sock: socket.socket, marker: bytes, limit: int = 1 << 20) -> bytes:
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before {marker!r}: {data[:200]!r}")
        data += chunk
        assert len(data) < limit
    return data


def read_chunk(sock: socket.socket, buf: bytearray) -> bytes:
    """One HTTP chunk, raw (as esp_http_server's httpd_resp_send_chunk wrote it)."""
    while b"\r\n" not in buf:
        buf += sock.recv(65536)
    line, _, rest = bytes(buf).partition(b"\r\n")
    size = int(line, 16)
    del buf[:]
    buf += rest
    while len(buf) < size + 2:
        buf += sock.recv(65536)
    data = bytes(buf[:size])
    assert buf[size : size + 2] == b"\r\n"
    del buf[: size + 2]
    return data


def no_data_for(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        sock.recv(1)
    except TimeoutError:
        return True
    return False


def test_capture_matches_firmware(fakecam: FakeCam) -> None:
    """Guards the snapshot wire format: image/jpeg with Content-Length, Content-Disposition,
    Access-Control-Allow-Origin and X-Timestamp (<sec>.<usec> uptime), after the 150 ms LED delay;
    /jpg (the original deployment's firmware URL) serves the same."""
    with requests.Session() as http:
        start = time.monotonic()
        r = http.get(fakecam.capture_url, timeout=3)
        assert time.monotonic() - start >= 0.14
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "image/jpeg"
        assert r.headers["Content-Disposition"] == "inline; filename=capture.jpg"
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert re.fullmatch(r"\d+\.\d{6}", r.headers["X-Timestamp"])
        assert jpeg_size(r.content) == (640, 480)
        assert fakecam.was_sent(r.content)
        r2 = http.get(fakecam.jpg_url, timeout=3)
        assert r2.status_code == 200 and jpeg_size(r2.content) == (640, 480)
        assert r2.content != r.content  # a new picture each time (frame counter)
    assert fakecam.capture_connections == 1  # kept alive


def test_status_and_control(fakecam: FakeCam) -> None:
    """Guards /status JSON and /control: 404 on missing args, 500 on unknown var, framesize
    (esp32-camera framesize_t: 5 = QVGA) changes the picture size."""
    with requests.Session() as http:
        status = http.get(fakecam.status_url, timeout=3).json()
        assert status["framesize"] == 8 and "quality" in status
        assert http.get(fakecam.base_url + "/control?var=quality", timeout=3).status_code == 404
        assert http.get(fakecam.base_url + "/control", timeout=3).status_code == 404
        assert http.get(fakecam.base_url + "/control?var=warp&val=1", timeout=3).status_code == 500
        r = http.get(fakecam.base_url + "/control?var=framesize&val=5", timeout=3)
        assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert http.get(fakecam.status_url, timeout=3).json()["framesize"] == 5
        assert jpeg_size(http.get(fakecam.capture_url, timeout=3).content) == (320, 240)
        assert http.get(fakecam.base_url + "/nope", timeout=3).status_code == 404


def test_stream_wire_format(fakecam: FakeCam) -> None:
    """Guards the firmware's exact stream format: boundary with no space after ';', chunked
    encoding, per frame three chunks (boundary before the part, headers with Content-Length and
    X-Timestamp, JPEG), never a closing boundary."""
    with http_get(fakecam.stream_port, "/stream") as sock:
        head = recv_until(sock, b"\r\n\r\n")
        head_text, _, rest = head.partition(b"\r\n\r\n")
        lines = head_text.decode().split("\r\n")
        assert lines[0] == "HTTP/1.1 200 OK"
        assert f"Content-Type: multipart/x-mixed-replace;boundary={BOUNDARY}" in lines
        assert "Transfer-Encoding: chunked" in lines
        assert "Access-Control-Allow-Origin: *" in lines
        buf = bytearray(rest)
        for _ in range(3):
            assert read_chunk(sock, buf) == b"\r\n--" + BOUNDARY.encode() + b"\r\n"
            part = read_chunk(sock, buf).decode()
            m = re.fullmatch(
                r"Content-Type: image/jpeg\r\nContent-Length: (\d+)\r\nX-Timestamp: \d+\.\d{6}\r\n\r\n", part
            )
            assert m, part
            jpeg = read_chunk(sock, buf)
            assert len(jpeg) == int(m.group(1))
            assert jpeg_size(jpeg) == (640, 480)
            assert fakecam.was_sent(jpeg)


def test_second_stream_client_waits_like_the_firmware(fakecam: FakeCam) -> None:
    """Guards single-client behaviour: a second stream client is accepted but gets no response
    while the first streams, and is served as soon as the first leaves."""
    first = http_get(fakecam.stream_port, "/stream")
    second = http_get(fakecam.stream_port, "/stream")  # the TCP connect succeeds
    try:
        recv_until(first, b"\r\n\r\n")
        assert fakecam.wait_until(lambda: fakecam.waiting_stream_clients == 1)
        assert no_data_for(second, 0.5)
        assert fakecam.active_stream_clients == 1
        first.close()
        second.settimeout(2)
        head = recv_until(second, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK")
        assert fakecam.stream_connections == 2 and fakecam.stream_clients_served == 1
    finally:
        first.close()
        second.close()
    assert fakecam.wait_until(lambda: fakecam.open_connections == 0)


def test_waiting_client_that_leaves_is_forgotten(fakecam: FakeCam) -> None:
    """Guards the counters tests rely on: a waiting client that gives up is not counted."""
    with http_get(fakecam.stream_port, "/stream") as first:
        recv_until(first, b"\r\n\r\n")
        second = http_get(fakecam.stream_port, "/stream")
        assert fakecam.wait_until(lambda: fakecam.waiting_stream_clients == 1)
        second.close()
        assert fakecam.wait_until(lambda: fakecam.waiting_stream_clients == 0)


def test_stall_and_resume(fakecam: FakeCam) -> None:
    """Guards fault injection: stall stops the stream mid-way (and leaves new clients without a
    response); resume continues the same stream."""
    with http_get(fakecam.stream_port, "/stream") as sock:
        recv_until(sock, b"\r\n\r\n")
        fakecam.stall()
        time.sleep(0.2)  # let a frame in flight finish
        sock.settimeout(0.05)
        with pytest.raises(TimeoutError):
            while True:
                sock.recv(65536)
        assert no_data_for(sock, 0.4)
        fakecam.resume()
        sock.settimeout(2)
        assert sock.recv(65536)


def test_faults_change_frames(fakecam: FakeCam) -> None:
    """Guards corrupt/truncate/drop injection on captures: bad JPEGs are really bad, a drop
    closes the connection without a response."""
    with requests.Session() as http:
        fakecam.corrupt_next()
        body = http.get(fakecam.capture_url, timeout=3).content
        with pytest.raises(Exception, match="JPEG"):
            jpeg_size(body)
        fakecam.truncate_next()
        r = http.get(fakecam.capture_url, timeout=3)
        assert int(r.headers["Content-Length"]) == len(r.content)
        with pytest.raises(Exception, match="truncated"):
            jpeg_size(r.content)
    fakecam.drop_next()
    with http_get(fakecam.port, "/capture") as sock:
        sock.settimeout(2)
        assert sock.recv(100) == b""


def test_refuse_and_accept_again(fakecam: FakeCam) -> None:
    """Guards 'camera offline': refused connections while refusing, by itself after the
    given time, or at once after accept_again()."""
    fakecam.refuse()
    for port in (fakecam.port, fakecam.stream_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    fakecam.accept_again()
    socket.create_connection(("127.0.0.1", fakecam.stream_port), timeout=1).close()
    fakecam.refuse(0.3)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", fakecam.port), timeout=1).close()
    time.sleep(0.5)
    with requests.get(fakecam.capture_url, timeout=3) as r:
        assert r.status_code == 200


def test_drop_clients_and_counters(fakecam: FakeCam) -> None:
    """Guards drop_clients() and open_connections (how tests see that a connection closed)."""
    sock = http_get(fakecam.stream_port, "/stream")
    try:
        recv_until(sock, b"\r\n\r\n")
        assert fakecam.wait_until(lambda: fakecam.open_connections == 1 and fakecam.active_stream_clients == 1)
        fakecam.drop_clients()
        sock.settimeout(2)
        with pytest.raises(AssertionError, match="closed"):
            recv_until(sock, b"never")
    finally:
        sock.close()
    assert fakecam.wait_until(lambda: fakecam.open_connections == 0 and fakecam.active_stream_clients == 0)


def test_stop_is_prompt_with_clients_everywhere() -> None:
    """Guards stop(): it ends every thread while an active, a waiting, a stalled capture and an
    idle keep-alive client are still connected (none of them can hold a thread; how fast it is on
    a busy machine is not asserted, only that no thread waits for a client)."""
    cam = FakeCam(fps=20).start()
    socks = [
        http_get(cam.stream_port, "/stream"),
        http_get(cam.stream_port, "/stream"),
        socket.create_connection(("127.0.0.1", cam.port), timeout=2),
    ]
    try:
        assert cam.wait_until(lambda: cam.stream_frames_sent > 0 and cam.waiting_stream_clients == 1)
        cam.stall()
        socks.append(http_get(cam.port, "/capture"))
        time.sleep(0.2)
        cam.stop(timeout=10.0)  # the clients are still connected: stop() must not wait for them
        assert cam.errors == []
        assert all(not t.is_alive() for t in cam._threads)
    finally:
        for sock in socks:
            sock.close()


def test_runs_as_a_process_with_http_fault_control() -> None:
    """Guards `python -m zmqcam.testing.fakecam`: READY line, /fake/ control endpoint, and a
    prompt exit on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zmqcam.testing.fakecam", "--port", "0", "--size", "320x240", "--fps", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), line + (proc.stderr.read() if proc.poll() is not None else "")
        port, stream_port = (int(v) for v in line.split()[1:3])
        assert stream_port == port + 1
        with requests.Session() as http:
            stats = http.get(f"http://127.0.0.1:{port}/fake/truncate?count=2", timeout=3).json()
            assert stats["pending_faults"] == ["truncate", "truncate"]
            stats = json.loads(http.get(f"http://127.0.0.1:{port}/fake/clear", timeout=3).text)
            assert stats["pending_faults"] == []
            assert jpeg_size(http.get(f"http://127.0.0.1:{port}/capture", timeout=3).content) == (320, 240)
            assert http.get(f"http://127.0.0.1:{port}/fake/bogus", timeout=3).status_code == 404
        proc.terminate()
        assert proc.wait(3) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(3)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_chunked_stream_decodes(fakecam: FakeCam) -> None:
    """Guards that the stream is valid chunked encoding end to end (what curl or a browser sees)."""
    with http_get(fakecam.stream_port, "/stream") as sock:
        head = recv_until(sock, b"\r\n\r\n")
        decoder = ChunkedDecoder()
        body = decoder.feed(head.partition(b"\r\n\r\n")[2])
        while body.count(BOUNDARY.encode()) < 3:
            body += decoder.feed(sock.recv(65536))
        assert body.startswith(b"\r\n--" + BOUNDARY.encode() + b"\r\n")
        assert BOUNDARY.encode() + b"--" not in body


def test_serves_given_pictures_through_both_ports(tmp_path: Path) -> None:
    """Guards FakeCam(source=...): the pictures a test hands it (here the rendered calibration scene)
    are sent byte for byte, in turn, through the stream and /capture in the firmware's wire format;
    set_source switches to others from the next frame on, a callable gets each frame's number, None
    brings the test pattern back; and anything but JPEGs is refused at once."""
    scene = Scene(boards=default_sheets())
    pictures = [scene.jpeg("cam0", i) for i in range(3)]
    with FakeCam(fps=20.0, capture_delay=0.0, source=pictures) as cam:
        with http_get(cam.stream_port, "/stream") as sock:
            head = recv_until(sock, b"\r\n\r\n")
            buf = bytearray(head.partition(b"\r\n\r\n")[2])
            sent = []
            for _ in range(4):
                assert read_chunk(sock, buf) == b"\r\n--" + BOUNDARY.encode() + b"\r\n"
                assert re.fullmatch(PART_RE, read_chunk(sock, buf).decode())
                sent.append(read_chunk(sock, buf))
        first = pictures.index(sent[0])  # in turn, from wherever the stream joined
        assert sent == [pictures[(first + k) % 3] for k in range(4)]
        other = scene.jpeg("cam1", 0)
        cam.set_source([other])
        with requests.Session() as http:
            assert http.get(cam.capture_url, timeout=3).content == other
            cam.set_source(lambda seq: pictures[0] if seq % 2 else other)
            got = {http.get(cam.capture_url, timeout=3).content for _ in range(2)}
            assert got == {pictures[0], other}
            cam.set_source(None)
            pattern = http.get(cam.capture_url, timeout=3).content
            assert pattern not in (*pictures, other) and jpeg_size(pattern) == (640, 480)
        with pytest.raises(ValueError, match="JPEG"):
            cam.set_source([b"not a jpeg"])
        assert cam.errors == []
    picture = tmp_path / "cam0.jpg"
    picture.write_bytes(pictures[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "zmqcam.testing.fakecam", "--port", "0", "--picture", str(picture)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY"), line
        port = int(line.split()[1])
        assert requests.get(f"http://127.0.0.1:{port}/capture", timeout=3).content == pictures[0]
    finally:
        proc.terminate()
        proc.wait(5)
        assert proc.stdout is not None
        proc.stdout.close()
    missing = subprocess.run(
        [sys.executable, "-m", "zmqcam.testing.fakecam", "--port", "0", "--picture", str(tmp_path / "nope.jpg")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "--picture" in missing.stderr and "Traceback" not in missing.stderr
