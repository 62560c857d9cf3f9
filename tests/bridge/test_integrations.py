"""README's "Home Assistant, Frigate, go2rtc, VLC and ffmpeg" and "Monitoring with Prometheus",
checked against a real daemon with the very credentials they show: every URL answers as the client
that uses it expects (a multipart JPEG stream for the MJPEG players, a JPEG of the asked width for
Home Assistant's still image, basic auth as Home Assistant and VLC send it, ``?token=`` for go2rtc,
Frigate and ffmpeg), the ffmpeg commands run as written, and every metric the alerts use exists.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import simplejpeg
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import ROOT, Daemon, free_port, needs, wait_for
from zmqcam.config import default_config_dict
from zmqcam.config.toml import render_toml

README = (ROOT / "README.md").read_text(encoding="utf-8")
#: the host the README's examples name, and the port they use
HOST = "zmqcam-host:5000"
HTTP = {"token": "s3cret-token", "basic_user": "viewer", "basic_password": "s3cret", "metrics_token": "s3cret-metrics"}
URL = re.compile(r"https?://[^\s\"'`<>|)]*" + re.escape(HOST) + r"[^\s\"'`<>|)]*")


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


INTEGRATIONS = section("Home Assistant, Frigate, go2rtc, VLC and ffmpeg")
PROMETHEUS = section("Monitoring with Prometheus")


@dataclass
class Rig:
    base: str
    pano_size: tuple[int, int]

    def local(self, url: str) -> str:
        """A README URL pointed at the test rig (credentials kept)."""
        return url.replace(HOST, self.base)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    home = tmp_path_factory.mktemp("integrations")
    data = default_config_dict(str(Path(os.path.realpath(home)) / "run"))
    data["camera"] = data["camera"][:2]
    for cam in data["camera"]:
        cam.update(fps=10.0, idle_timeout=2.0)
    port = free_port()
    data["http"] = {"port": port, **HTTP}
    path = home / "rig.toml"
    path.write_text(render_toml(data))
    daemon = Daemon(["-c", str(path)], cwd=home)
    try:
        base = f"127.0.0.1:{port}"
        wait_for(lambda: _answers(f"http://{base}/status"), 30, interval=0.2, message="the bridge to answer /status")
        from zmqcam.config import from_dict

        yield Rig(base, from_dict(data).pano_size)
    finally:
        daemon.terminate()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, auth=(HTTP["basic_user"], HTTP["basic_password"]), timeout=2).status_code == 200
    except requests.RequestException:
        return False


def _request(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its user:password, and those as basic auth (as players send them)."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc)), (parts.username, parts.password or "")


def _needs_basic_auth(url: str) -> bool:
    """Home Assistant's table: its username and password go with the URLs."""
    row = next((line for line in INTEGRATIONS.splitlines() if url in line), "")
    return row.startswith("| panorama") or row.startswith("| camera")


def test_the_readme_names_urls_of_every_kind() -> None:
    urls = set(URL.findall(INTEGRATIONS))
    paths = {urlsplit(u).path for u in urls}
    assert {"/stream", "/stream/cam0", "/snapshot.jpg", "/snapshot/cam0.jpg"} <= paths, paths
    assert any("token=" in u for u in urls) and any("@" in u for u in urls)


@pytest.mark.parametrize("url", sorted(set(URL.findall(INTEGRATIONS))))
def test_each_url_answers_as_its_client_expects(rig: Rig, url: str) -> None:
    """Streams: multipart/x-mixed-replace whose first part is a whole JPEG of the stream's size (what
    Home Assistant's MJPEG camera, go2rtc, Frigate's ffmpeg and VLC read). Still images: a JPEG, of
    the width asked for. Without the credentials shown, 401."""
    target, basic = _request(rig.local(url))
    if basic is None and _needs_basic_auth(url):
        basic = (HTTP["basic_user"], HTTP["basic_password"])
    bare = target.split("?")[0]
    assert requests.get(bare, timeout=10, stream=True).status_code == 401, "open without credentials"
    path = urlsplit(target).path
    with requests.get(target, auth=basic, timeout=(5, 15), stream=True) as response:
        assert response.status_code == 200, response.text[:200]
        ctype = response.headers["Content-Type"]
        if path.startswith("/stream"):
            assert ctype.startswith("multipart/x-mixed-replace;boundary="), ctype
            body = b""
            for chunk in response.iter_content(65536):
                body += chunk
                start = body.find(b"\xff\xd8")
                end = body.find(b"\xff\xd9", start)
                if start >= 0 and end >= 0:
                    jpeg = body[start : end + 2]
                    break
            else:
                raise AssertionError("the stream ended before a whole JPEG")
            expected = rig.pano_size if path == "/stream" else (640, 480)
        else:
            assert ctype == "image/jpeg"
            jpeg = response.content
            width = re.search(r"[?&]width=(\d+)", target)
            if path == "/snapshot.jpg":
                expected = (int(width.group(1)), round(rig.pano_size[1] * int(width.group(1)) / rig.pano_size[0]))
            else:
                expected = (640, 480)
    height, width_px, _, _ = simplejpeg.decode_jpeg_header(jpeg)
    assert (width_px, height) == expected


def test_the_ffmpeg_commands_run_as_written(rig: Rig, tmp_path: Path) -> None:
    """README's ffmpeg lines, run by the real ffmpeg against the rig: a panorama JPEG, an H.264 file."""
    needs(shutil.which("ffmpeg") is not None, "needs ffmpeg (Debian package ffmpeg; .ci/run installs it)")
    commands = [line for line in INTEGRATIONS.splitlines() if line.startswith("ffmpeg ")]
    assert len(commands) == 2
    for line in commands:
        program, *args = shlex.split(rig.local(line))
        args = ["2" if a == "60" and args[i - 1] == "-t" else a for i, a in enumerate(args)]  # 2 s, not a minute
        done = subprocess.run([program, "-loglevel", "error", *args], cwd=tmp_path, capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr.decode(errors="replace")[-1000:]
    height, width, _, _ = simplejpeg.decode_jpeg_header((tmp_path / "panorama.jpg").read_bytes())
    assert (width, height) == rig.pano_size
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width", "-of", "csv=p=0", "cam0.mp4"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.stdout.strip() == "h264,640", probe.stdout + probe.stderr


def test_the_scrape_config_and_alerts_use_what_metrics_serves(rig: Rig) -> None:
    """The scrape config's credentials open /metrics, and every metric and label value the alerts
    use is served."""
    token = re.search(r"credentials: (\S+)", PROMETHEUS)
    assert token is not None and token.group(1) == HTTP["metrics_token"]
    response = requests.get(
        f"http://{rig.base}/metrics", headers={"Authorization": f"Bearer {token.group(1)}"}, timeout=5
    )
    assert response.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items())))
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }
    names = {name for name, _ in samples}
    expressions = re.findall(r"expr: (.+)", PROMETHEUS)
    assert len(expressions) == 2
    for expr in expressions:
        for name in re.findall(r"\bzmqcam_[a-z_]+", expr):
            assert name in names, f"{name} (in {expr!r}) is not served"
        for label, label_value in re.findall(r'(\w+)="([^"]+)"', expr):
            assert any((label, label_value) in labels for _, labels in samples), (label, label_value)


def test_snapshot_sizes_are_cached_per_frame_and_bad_ones_refused(rig: Rig) -> None:
    """?width=&height=&quality=: exactly the size asked for (one side keeps the aspect ratio); the
    same frame and size asked twice is encoded once; bad values and resizing a stream are 400 with
    a one-line reason."""
    auth = (HTTP["basic_user"], HTTP["basic_password"])
    base = f"http://{rig.base}"

    def snapshot(query: str) -> requests.Response:
        return requests.get(f"{base}/snapshot/cam0.jpg{query}", auth=auth, timeout=10)

    small = snapshot("?width=320&height=100&quality=30")
    assert small.status_code == 200
    assert simplejpeg.decode_jpeg_header(small.content)[:2] == (100, 320)
    tall = snapshot("?height=120")
    assert simplejpeg.decode_jpeg_header(tall.content)[:2] == (120, 160)

    def resized() -> int:
        status = requests.get(f"{base}/status", auth=auth, timeout=5).json()
        return int(status["http"]["snapshots_resized"])

    # two requests for the same new frame and size while a viewer keeps the camera live: one encode
    with requests.get(f"{base}/stream/cam0", auth=auth, stream=True, timeout=(5, 15)):
        before = resized()
        first, second = snapshot("?width=200"), snapshot("?width=200")
        assert first.status_code == second.status_code == 200
        same_frame = first.headers["X-Zmqcam-Seq"] == second.headers["X-Zmqcam-Seq"]
        assert resized() - before == (1 if same_frame else 2)
        if same_frame:
            assert first.content == second.content
    for query, reason in (
        ("?width=0", "width must be a whole number from 1 to 4096, got '0'"),
        ("?width=5000", "width must be a whole number from 1 to 4096, got '5000'"),
        ("?height=1.5", "height must be a whole number from 1 to 4096, got '1.5'"),
        ("?quality=101", "quality must be a whole number from 1 to 100, got '101'"),
        ("?width=10&width=20", "width is given more than once"),
    ):
        bad = snapshot(query)
        assert bad.status_code == 400 and bad.text == f"400: {reason}\n", (query, bad.text)
    stream = requests.get(f"{base}/stream?width=320", auth=auth, timeout=10)
    assert stream.status_code == 400
    assert stream.text == "400: width: streams are never resized (only /snapshot.jpg takes it)\n"
