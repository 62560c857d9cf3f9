"""``GET /metrics`` as Prometheus reads it: a real daemon (grabbers, stitcher, bridge under the
supervisor), scraped over HTTP and parsed by ``prometheus_client.parser``, the library Prometheus'
own Python tooling uses. One daemon for the module: two synthetic cameras, a viewers' token and a
scraper's ``metrics_token``."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import Daemon, free_port, wait_for
from zmqcam.bridge.metrics import STATES
from zmqcam.config import default_config_dict
from zmqcam.config.toml import render_toml

VIEWER_TOKEN = "viewer-secret"
METRICS_TOKEN = "scrape-secret"

#: every family a scrape of a whole rig has, and its type
FAMILIES = {
    "zmqcam_camera_state": "gauge",
    "zmqcam_camera_fps": "gauge",
    "zmqcam_camera_subscribers": "gauge",
    "zmqcam_camera_frames": "counter",
    "zmqcam_camera_bytes": "counter",
    "zmqcam_camera_reconnects": "counter",
    "zmqcam_camera_timeouts": "counter",
    "zmqcam_camera_decode_errors": "counter",
    "zmqcam_camera_drops": "counter",
    "zmqcam_camera_warmup_frames": "counter",
    "zmqcam_stitcher_running": "gauge",
    "zmqcam_stitcher_fps": "gauge",
    "zmqcam_stitcher_target_fps": "gauge",
    "zmqcam_stitcher_stale_slots": "gauge",
    "zmqcam_stitcher_panoramas": "counter",
    "zmqcam_stitcher_compose_seconds": "summary",
    "zmqcam_http_clients": "gauge",
    "zmqcam_http_frames_sent": "counter",
    "zmqcam_http_frames_skipped": "counter",
    "zmqcam_http_sent_bytes": "counter",
    "zmqcam_http_responses": "counter",
    "zmqcam_http_refused_connections": "counter",
    "zmqcam_process_cpu_seconds": "counter",
    "zmqcam_process_resident_memory_bytes": "gauge",
    "zmqcam_process_restarts": "counter",
    "zmqcam_process_hangs": "counter",
}


@dataclass
class Rig:
    url: str
    run_dir: Path
    daemon: Daemon


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    home = tmp_path_factory.mktemp("metrics")
    run_dir = Path(os.path.realpath(home)) / "run"
    data = default_config_dict(str(run_dir))
    data["camera"] = data["camera"][:2]
    for cam in data["camera"]:
        cam.update(fps=10.0, idle_timeout=1.0)
    port = free_port()
    data["http"] = {"port": port, "token": VIEWER_TOKEN, "metrics_token": METRICS_TOKEN}
    path = home / "rig.toml"
    path.write_text(render_toml(data))
    daemon = Daemon(["-c", str(path)], cwd=home)
    try:
        url = f"http://127.0.0.1:{port}"
        # the stitcher's families come from its status: the rig is ready once the bridge heard from
        # every process (a scrape before that lacks them, which is right: nothing is known yet)
        wait_for(lambda: _ok(url), 30, interval=0.2, message="every family in /metrics")
        yield Rig(url, run_dir, daemon)
    finally:
        daemon.terminate()


def _ok(url: str) -> bool:
    try:
        families = scrape(url)
    except (OSError, requests.RequestException):
        return False
    return all(name in families for name in FAMILIES)


def scrape(url: str, token: str = METRICS_TOKEN) -> dict[str, object]:
    """One scrape, parsed: family name -> family."""
    response = requests.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, object], name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` (the family, or ``name`` as a sample name) with ``labels``."""
    family_name = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    family = families[family_name]
    found = [
        s.value
        for s in family.samples  # type: ignore[attr-defined]
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, family.samples)  # type: ignore[attr-defined]
    return float(found[0])


class Viewer:
    """A /stream client reading in a thread until closed."""

    def __init__(self, url: str) -> None:
        self.response = requests.get(
            url + "/stream", headers={"Authorization": f"Bearer {VIEWER_TOKEN}"}, stream=True, timeout=(5, 15)
        )
        assert self.response.status_code == 200
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for _ in self.response.iter_content(65536):
                if self._stop.is_set():
                    return
        except Exception:
            # closing the response under a reading thread makes http.client fail in several ways
            if not self._stop.is_set():
                raise

    def close(self) -> None:
        self._stop.set()
        self.response.close()
        self._thread.join(5)


def test_families_are_present_and_change_as_frames_flow(rig: Rig) -> None:
    """Every family of the rig is there with its type; the camera state is one series per state with
    1 for the current one; while a viewer watches, frames, panoramas, compose time, frames and bytes
    sent grow, the cameras are live and each process reports CPU seconds and memory."""
    before = scrape(rig.url)
    for name, kind in FAMILIES.items():
        assert name in before, f"{name} missing"
        assert before[name].type == kind, (name, before[name].type)  # type: ignore[attr-defined]
    states = [s for s in before["zmqcam_camera_state"].samples if s.labels["camera"] == "cam0"]  # type: ignore[attr-defined]
    assert sorted(s.labels["state"] for s in states) == sorted(STATES)
    assert sum(s.value for s in states) == 1.0
    frames_before = value(before, "zmqcam_camera_frames_total", camera="cam0")
    viewer = Viewer(rig.url)
    try:

        def flowing() -> dict[str, object] | None:
            now = scrape(rig.url)
            live = value(now, "zmqcam_camera_state", camera="cam0", state="live") == 1.0
            grown = value(now, "zmqcam_camera_frames_total", camera="cam0") >= frames_before + 10
            sent = value(now, "zmqcam_http_frames_sent_total", stream="pano") >= 5
            return now if live and grown and sent else None

        during = wait_for(flowing, 30, interval=0.3, message="frames counted in /metrics")
        assert value(during, "zmqcam_http_clients", stream="pano") == 1.0
        assert value(during, "zmqcam_stitcher_running") == 1.0
        assert value(during, "zmqcam_stitcher_target_fps") == 10.0
        assert value(during, "zmqcam_stitcher_panoramas_total") > 0
        assert value(during, "zmqcam_stitcher_compose_seconds_count") > 0
        assert (
            0
            < value(during, "zmqcam_stitcher_compose_seconds_sum")
            < value(during, "zmqcam_stitcher_compose_seconds_count")
        )
        assert value(during, "zmqcam_stitcher_encode_seconds_count") > 0
        assert value(during, "zmqcam_http_sent_bytes_total", stream="pano") > 10_000
        assert value(during, "zmqcam_camera_bytes_total", camera="cam1") > 0
        assert value(during, "zmqcam_camera_subscribers", camera="cam0", kind="raw") == 1.0
        assert value(during, "zmqcam_http_responses_total", code="200") >= 1
        for process in ("grabber:cam0", "grabber:cam1", "stitcher", "bridge"):
            assert value(during, "zmqcam_process_cpu_seconds_total", process=process) > 0
            assert value(during, "zmqcam_process_resident_memory_bytes", process=process) > 10_000_000
        later = wait_for(
            lambda: (
                (s := scrape(rig.url))
                and value(s, "zmqcam_stitcher_panoramas_total") > value(during, "zmqcam_stitcher_panoramas_total")
                and s
            ),
            10,
            interval=0.3,
            message="the panorama count to grow",
        )
        assert value(later, "zmqcam_camera_frames_total", camera="cam0") > value(
            during, "zmqcam_camera_frames_total", camera="cam0"
        )
    finally:
        viewer.close()
    # nobody watches: the stitcher stops and the cameras go to sleep, as the gauges say
    wait_for(
        lambda: (
            (s := scrape(rig.url))
            and value(s, "zmqcam_camera_state", camera="cam0", state="asleep") == 1.0
            and value(s, "zmqcam_stitcher_running") == 0.0
        ),
        15,
        interval=0.3,
        message="the cameras asleep in /metrics",
    )


def test_same_auth_as_the_rest_of_http_or_the_metrics_token(rig: Rig) -> None:
    """/metrics takes the viewers' credentials or metrics_token; without either it is 401 with a
    challenge. The scraper's token opens /metrics only."""
    assert requests.get(rig.url + "/metrics", timeout=5).status_code == 401
    wrong = requests.get(rig.url + "/metrics", headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and "Bearer" in wrong.headers["WWW-Authenticate"]
    assert scrape(rig.url, VIEWER_TOKEN)
    assert scrape(rig.url, METRICS_TOKEN)
    assert requests.get(rig.url + f"/metrics?token={METRICS_TOKEN}", timeout=5).status_code == 200
    for path in ("/status", "/snapshot.jpg"):
        response = requests.get(rig.url + path, headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=5)
        assert response.status_code == 401, path


def test_process_restarts_are_counted_per_child(rig: Rig) -> None:
    """A grabber SIGKILLed is restarted by the supervisor, and /metrics counts the restart for that
    child alone."""
    children = wait_for(lambda: rig.daemon.state(rig.run_dir).get("children"), 10, message="the process table")
    before = scrape(rig.url)
    assert value(before, "zmqcam_process_restarts_total", process="grabber:cam1") == 0.0
    os.kill(children["grabber:cam1"]["pid"], signal.SIGKILL)

    def restarted() -> dict[str, object] | None:
        now = scrape(rig.url)
        return now if value(now, "zmqcam_process_restarts_total", process="grabber:cam1") == 1.0 else None

    after = wait_for(
        restarted,
        20,
        interval=0.3,
        message="the restart counted",
    )
    assert value(after, "zmqcam_process_restarts_total", process="grabber:cam0") == 0.0
    assert value(after, "zmqcam_process_restarts_total", process="stitcher") == 0.0
